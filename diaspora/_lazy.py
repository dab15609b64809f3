"""Lazy package namespaces: a package exports names whose modules load on first use.

>>> getattr_, dir_ = lazy_exports("pkg", {"dumps": "json"}, ["dumps"], {})
>>> getattr_("dumps").__name__, dir_()[:1]
('dumps', ['__doc__'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    homes: Mapping[str, str],
    exported: Sequence[str],
    namespace: MutableMapping[str, Any],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package``: ``homes`` maps each name to
    the module defining it; a name, once loaded, goes into ``namespace`` (the package's
    globals) so later lookups skip the hook."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(exported) | {"__doc__", "__name__", "__path__"})

    return __getattr__, __dir__
