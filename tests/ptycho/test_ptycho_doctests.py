"""The examples in the ptycho modules' docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["simulate", "metrics", "epie", "model", "_edge", "actors", "standin", "_control", "_lag"]

pytestmark = pytest.mark.filterwarnings(
    "ignore:.*treespec.*:FutureWarning", "ignore:.*val_dataloader.*", "ignore:.*workers.*"
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    if name in ("model", "_edge", "actors", "_control"):
        pytest.importorskip("torch")
    module = importlib.import_module(f"actors.ptycho.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
