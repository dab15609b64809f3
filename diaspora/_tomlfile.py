"""Reading TOML files people write: every error names the file and the field path.

The supervision-tree files (:mod:`diaspora.workflow._config`) and the
fault scenarios of ``sims/`` both read their documents with a subclass of
:class:`TomlReader`, which checks one value at a time and raises
:class:`~diaspora.errors.ConfigError` with ``<source>: <field path>: <what is wrong>``.

>>> reader = TomlReader("tree.toml")
>>> document = load_toml('[supervisor]\\nintensity = "3"', "tree.toml")
>>> reader.integer(document["supervisor"]["intensity"], "supervisor.intensity", minimum=0)
Traceback (most recent call last):
...
diaspora.errors.ConfigError: tree.toml: supervisor.intensity: '3' is a string, expected an integer
>>> reader.keys({"intensty": 3}, "supervisor", frozenset({"intensity", "period"}))
Traceback (most recent call last):
...
diaspora.errors.ConfigError: tree.toml: supervisor.intensty: unknown key (did you mean \
'intensity'?); expected one of intensity, period
"""

from __future__ import annotations

import datetime
import difflib
import math
import tomllib
from collections.abc import Mapping
from enum import Enum
from typing import Any, TypeVar

from diaspora.errors import ConfigError

__all__ = ["TomlReader", "kind_of", "load_toml"]

_E = TypeVar("_E", bound=Enum)


def load_toml(text: str, source: str) -> dict[str, Any]:
    """Parse ``text``; invalid TOML is a :class:`ConfigError` naming ``source``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc


def kind_of(value: object) -> str:
    """What a TOML value is, in words (``'an integer'``, ``'a table'``...)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return "a date/time"
    return type(value).__name__


class TomlReader:
    """Checks the values of one document read from ``source``."""

    #: Whether :meth:`string` refuses empty and blank strings.
    non_empty_strings = False

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, what: str) -> ConfigError:
        """The error to raise about the field at ``where``."""
        return ConfigError(f"{self.source}: {where}: {what}")

    def table(self, value: object, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected a table")
        return value

    def keys(
        self,
        table: Mapping[str, Any],
        where: str,
        allowed: frozenset[str],
        reserved: frozenset[str] = frozenset(),
    ) -> None:
        """Refuse keys not in ``allowed`` (nor ``reserved``), suggesting the closest one."""
        for key in table:
            if key in allowed or key in reserved:
                continue
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            also = f" (reserved: {', '.join(sorted(reserved))})" if reserved else ""
            raise self.fail(
                f"{where}.{key}" if where else key,
                f"unknown key{hint}; expected one of {', '.join(sorted(allowed))}{also}",
            )

    def required(self, table: Mapping[str, Any], key: str, where: str, what: str) -> Any:
        if key not in table:
            raise self.fail(where, f"missing required key {key!r} ({what})")
        return table[key]

    def string(self, value: object, where: str) -> str:
        if not isinstance(value, str) or (self.non_empty_strings and not value.strip()):
            expected = "a non-empty string" if self.non_empty_strings else "a string"
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected {expected}")
        return value

    def strings(self, value: object, where: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected an array of strings")
        return tuple(self.string(item, f"{where}[{n}]") for n, item in enumerate(value))

    def boolean(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected true or false")
        return value

    def integer(self, value: object, where: str, *, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected an integer")
        if value < minimum:
            raise self.fail(where, f"{value!r} must be >= {minimum}")
        return value

    def number(self, value: object, where: str, *, positive: bool = False) -> float:
        """A finite number, ``>= 0`` (``> 0`` if ``positive``)."""
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected a number")
        if value < 0 or (positive and value == 0):
            raise self.fail(where, f"{value!r} must be {'>' if positive else '>='} 0")
        return float(value)

    def seconds(self, value: object, where: str) -> float:
        """A duration in seconds, ``> 0``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected seconds (a number)")
        if not value > 0:
            raise self.fail(where, f"{value!r} must be > 0 seconds")
        return float(value)

    def pair(self, value: object, where: str, what: str) -> tuple[Any, Any]:
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(where, f"{value!r} is {kind_of(value)}, expected [{what}]")
        return value[0], value[1]

    def choice(self, value: object, enum: type[_E], where: str) -> _E:
        """The member of ``enum`` whose value is ``value``."""
        names = [member.value for member in enum]
        if isinstance(value, str):
            for member in enum:
                if member.value == value:
                    return member
        raise self.fail(where, f"{value!r} is not one of {', '.join(names)}")
