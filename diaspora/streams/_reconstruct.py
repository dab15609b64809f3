"""Reconstructors: stand-ins for items that are lost for good.

When neither the stream nor the producer's history has an item, a
reconstructor may make one from its observed neighbours (the runtime marks
such items with the ``Diaspora-Reconstructed`` header). A reconstructor is
any object with a ``reconstruct(before, after, index, count)`` method:
``before`` and ``after`` are the decoded payloads of the items observed just
before and after the gap (either may be ``None`` at a stream's edge, never
both), ``index`` is ``0..count-1`` within the gap of ``count`` items.

>>> fill_gap(LinearInterpolation(), {"t": 0.0, "id": "a"}, {"t": 3.0, "id": "b"}, 2)
[{'t': 1.0, 'id': 'a'}, {'t': 2.0, 'id': 'a'}]
>>> fill_gap(HoldLast(), 7, None, 2)
[7, 7]
>>> fill_gap(load_reconstructor("zero_fill"), [1.5, 2], None, 1)
[[0.0, 0]]

Built-ins: :class:`HoldLast`, :class:`LinearInterpolation` and
:class:`ZeroFill`; :func:`load_reconstructor` finds one by name or import
path (``"pkg.mod:Class"``), as a config file names it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

if TYPE_CHECKING:
    pass

from diaspora._importpath import resolve
from diaspora.errors import ConfigError, ReconstructionError

__all__ = [
    "BUILTIN_RECONSTRUCTORS",
    "HoldLast",
    "LinearInterpolation",
    "ReconstructionError",
    "Reconstructor",
    "ZeroFill",
    "fill_gap",
    "load_reconstructor",
]


@runtime_checkable
class Reconstructor(Protocol):
    """Makes item ``index`` (``0..count-1``) of a gap of ``count`` lost items."""

    def reconstruct(self, before: Any | None, after: Any | None, index: int, count: int) -> Any:
        """A stand-in payload, from the neighbours' decoded payloads (one may be ``None``)."""
        ...


def _neighbour(before: Any | None, after: Any | None, count: int) -> Any:
    if before is None and after is None:
        raise ReconstructionError(
            f"cannot reconstruct a gap of {count} item(s) with no item observed on either side"
        )
    return before if before is not None else after


def _is_number(x: object) -> bool:
    import numpy as np

    return isinstance(x, int | float | complex | np.number) and not isinstance(x, bool | np.bool_)


def _is_numeric_array(x: object) -> bool:
    import numpy as np

    return isinstance(x, np.ndarray) and x.dtype.kind in "iufc"


class HoldLast:
    """Repeat the last observed item (the next one at the start of a stream).

    >>> HoldLast().reconstruct(None, {"x": 1}, 0, 3)
    {'x': 1}
    """

    def reconstruct(self, before: Any | None, after: Any | None, index: int, count: int) -> Any:
        return _neighbour(before, after, count)

    def __repr__(self) -> str:
        return "HoldLast()"


class LinearInterpolation:
    """Interpolate numbers and numeric arrays between the neighbours; hold everything else.

    Maps and equal-length lists are interpolated field by field. Integers
    (and integer arrays) are rounded back to integers; arrays of different
    shapes, booleans, strings and bytes hold the last observed value. At a
    stream's edge (one neighbour missing) it holds the other.

    >>> import numpy as np
    >>> LinearInterpolation().reconstruct(np.zeros(2), np.full(2, 4.0), 0, 3)
    array([1., 1.])
    >>> LinearInterpolation().reconstruct({"n": 10, "ok": True}, {"n": 20, "ok": False}, 1, 4)
    {'n': 14, 'ok': True}
    """

    def reconstruct(self, before: Any | None, after: Any | None, index: int, count: int) -> Any:
        held = _neighbour(before, after, count)
        if before is None or after is None:
            return held
        return _lerp(before, after, (index + 1) / (count + 1))

    def __repr__(self) -> str:
        return "LinearInterpolation()"


def _lerp(a: Any, b: Any, t: float) -> Any:
    import numpy as np

    if a is None or b is None:
        return b if a is None else a
    if _is_number(a) and _is_number(b):
        value = a + (b - a) * t
        if isinstance(a, int | np.integer) and isinstance(b, int | np.integer):
            return type(a)(round(value))
        return value
    if _is_numeric_array(a) and _is_numeric_array(b):
        if a.shape != b.shape:
            return a
        dtype = np.result_type(a, b)
        value = a + (b.astype(np.complex128 if dtype.kind == "c" else np.float64) - a) * t
        if dtype.kind in "iu":
            return np.rint(value).astype(dtype)
        return value.astype(dtype, copy=False)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out = {k: _lerp(v, b.get(k), t) for k, v in a.items()}
        out.update({k: v for k, v in b.items() if k not in a})
        return out
    if isinstance(a, list | tuple) and isinstance(b, list | tuple) and len(a) == len(b):
        items = [_lerp(x, y, t) for x, y in zip(a, b, strict=True)]
        return tuple(items) if isinstance(a, tuple) else items
    return a


class ZeroFill:
    """Zeros shaped like the neighbour: numbers become 0, arrays ``zeros_like``; the rest holds.

    >>> import numpy as np
    >>> ZeroFill().reconstruct({"frame": np.ones((2, 2), np.uint16), "id": "det1"}, None, 0, 1)
    {'frame': array([[0, 0],
           [0, 0]], dtype=uint16), 'id': 'det1'}
    """

    def reconstruct(self, before: Any | None, after: Any | None, index: int, count: int) -> Any:
        return _zero(_neighbour(before, after, count))

    def __repr__(self) -> str:
        return "ZeroFill()"


def _zero(x: Any) -> Any:
    import numpy as np

    if isinstance(x, bool | np.bool_):
        return type(x)(False)
    if _is_number(x):
        return type(x)(0)
    if isinstance(x, np.ndarray):
        return np.zeros_like(x)
    if isinstance(x, Mapping):
        return {k: _zero(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        items = [_zero(v) for v in x]
        return tuple(items) if isinstance(x, tuple) else items
    return x


def fill_gap(
    reconstructor: Reconstructor, before: Any | None, after: Any | None, count: int
) -> list[Any]:
    """The ``count`` stand-ins for a gap between ``before`` and ``after``, in order.

    Raises :class:`ReconstructionError` when both neighbours are ``None`` or
    the reconstructor fails (the cause is chained).

    >>> fill_gap(LinearInterpolation(), 0, 10, 4)
    [2, 4, 6, 8]
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"fill_gap: count={count!r} must be an integer >= 0")
    if count == 0:
        return []
    _neighbour(before, after, count)
    out = []
    for index in range(count):
        try:
            out.append(reconstructor.reconstruct(before, after, index, count))
        except ReconstructionError:
            raise
        except Exception as exc:
            raise ReconstructionError(
                f"reconstructor {reconstructor!r} failed on item {index} of a gap of {count}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return out


class _FunctionReconstructor:
    """A plain function ``f(before, after, index, count, **args)`` as a reconstructor."""

    def __init__(self, function: Callable[..., Any], args: Mapping[str, Any]) -> None:
        self.function = function
        self.args = dict(args)

    def reconstruct(self, before: Any | None, after: Any | None, index: int, count: int) -> Any:
        return self.function(before, after, index, count, **self.args)

    def __repr__(self) -> str:
        return f"{self.function.__module__}:{self.function.__qualname__}"


#: The names :func:`load_reconstructor` knows without an import path.
BUILTIN_RECONSTRUCTORS: Final[Mapping[str, type[Reconstructor]]] = {
    "hold_last": HoldLast,
    "linear": LinearInterpolation,
    "linear_interpolation": LinearInterpolation,
    "zero_fill": ZeroFill,
}


def load_reconstructor(path: str, /, *, where: str = "reconstructor", **args: Any) -> Reconstructor:
    """The reconstructor named by ``path``, built with ``args``.

    ``path`` is a built-in name (``hold_last``, ``linear``, ``zero_fill``)
    or ``"package.module:Name"`` (or ``"package.module.Name"``) naming a
    class with a ``reconstruct`` method (instantiated with ``args``), such an
    object, or a function ``f(before, after, index, count, **args)``. Errors
    are :class:`~diaspora.errors.ConfigError` prefixed with ``where``.

    >>> load_reconstructor("diaspora.streams._reconstruct:HoldLast")
    HoldLast()
    >>> load_reconstructor("no_such_package.mod:Thing", where="qos.reconstructor")
    Traceback (most recent call last):
    ...
    diaspora.errors.ConfigError: qos.reconstructor: 'no_such_package.mod:Thing': cannot import ...
    """
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{where}: {path!r} is not a reconstructor name or import path")
    builtin = BUILTIN_RECONSTRUCTORS.get(path.strip().lower())
    if builtin is None and ":" not in path and "." not in path.strip():
        raise ConfigError(
            f"{where}: {path!r} is neither a built-in ({', '.join(BUILTIN_RECONSTRUCTORS)}) "
            "nor an import path like 'package.module:Name'"
        )
    target = builtin if builtin is not None else resolve(path.strip(), where=where)
    return _as_reconstructor(target, path, where, args)


def _as_reconstructor(target: Any, path: str, where: str, args: Mapping[str, Any]) -> Reconstructor:
    hint = "a reconstructor needs a method reconstruct(before, after, index, count)"
    if isinstance(target, type):
        if not callable(getattr(target, "reconstruct", None)):
            raise ConfigError(
                f"{where}: {path!r} is the class {target.__qualname__}, not a reconstructor: {hint}"
            )
        try:
            made: Reconstructor = target(**args)
        except Exception as exc:
            raise ConfigError(
                f"{where}: {path!r}: cannot construct {target.__qualname__} with {dict(args)!r}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return made
    if isinstance(target, Reconstructor) and callable(target.reconstruct):
        if args:
            raise ConfigError(
                f"{where}: {path!r} is an object, it takes no arguments (got {sorted(args)})"
            )
        return target
    if inspect.isfunction(target) or inspect.isbuiltin(target):
        return _FunctionReconstructor(target, args)
    raise ConfigError(
        f"{where}: {path!r} is a {type(target).__name__}, not a reconstructor: {hint}"
    )
