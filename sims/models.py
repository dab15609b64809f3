"""Reference models for scenarios whose workflow has no model of its own.

A model is ``model(key, values) -> outputs``: the outputs a key must have, one
per input, in input order, in the shapes :mod:`diaspora.codec` decodes to.
The reliability pipeline's is ``actors.pipeline:expected``.

>>> echo("k", [5, 7])
[{'key': 'k', 'i': 0, 'value': 5}, {'key': 'k', 'i': 1, 'value': 7}]
"""

from __future__ import annotations

from typing import Any

__all__ = ["echo"]


def echo(key: str, values: list[Any]) -> list[dict[str, Any]]:
    """Each input comes out unchanged: ``{"key", "i", "value"}``."""
    return [{"key": key, "i": index, "value": value} for index, value in enumerate(values)]
