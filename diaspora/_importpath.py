"""Import paths in config files: ``"package.module:Name"`` (or ``"package.module.Name"``).

>>> resolve("diaspora.actor:Actor").__name__
'Actor'
>>> resolve("diaspora.nowhere:X", where="supervisor.children[0].actor")
Traceback (most recent call last):
...
diaspora.errors.ConfigError: supervisor.children[0].actor: 'diaspora.nowhere:X': cannot import ...
"""

from __future__ import annotations

import importlib
from typing import Any

from diaspora.errors import ConfigError

__all__ = ["resolve"]


def resolve(path: str, *, where: str = "import path") -> Any:
    """The object ``path`` names; :class:`ConfigError` naming ``where`` if it cannot be had."""
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{where}: {path!r} is not an import path like 'package.module:Name'")
    path = path.strip()
    module_name, colon, attr = path.partition(":")
    if not colon:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"{where}: {path!r} is not an import path like 'package.module:Name'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"{where}: {path!r}: cannot import module {module_name!r} ({exc}); "
            "is the package installed and on sys.path?"
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"{where}: {path!r}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"{where}: {path!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    return target
