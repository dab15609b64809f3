"""A running tree's control subject: start a child of a named supervisor by request/reply.

The process that runs a tree serves
``diaspora.control.supervisor.<root>.>`` (``diaspora run`` does; in Python,
``async with serve_control(fabric, supervisor)``). A request on
``diaspora.control.supervisor.<supervisor path>.start_child`` carries a
msgpack map ``{"args": {...}, "request": "<id>"}``; the supervisor at that
path (a ``simple_one_for_one`` one) starts a child with the args, and the
answer is ``{"ok": true, "child": "<actor id>"}`` or ``{"ok": false,
"error": "..."}``. A request id seen before gets its first answer again, so a
trigger repeating a request after a crash starts one child, not two (while
the serving process lives).

>>> control_subject("root.workers", "start_child")
'diaspora.control.supervisor.root.workers.start_child'
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

from diaspora.errors import DiasporaError
from diaspora.fabric import Fabric
from diaspora.fabric._control import Answerer, control_request
from diaspora.fabric._naming import check_subject
from diaspora.log import get_logger
from diaspora.supervision._supervisor import Supervisor

__all__ = ["CONTROL_PREFIX", "control_subject", "request_start_child", "serve_control"]

CONTROL_PREFIX: Final = "diaspora.control.supervisor"

_log = get_logger(component="control")


def control_subject(supervisor: str, op: str) -> str:
    """The subject on which ``supervisor`` (its dotted path) serves ``op``."""
    return check_subject(f"{CONTROL_PREFIX}.{supervisor}.{op}", where="control", reserved_ok=True)


async def request_start_child(
    fabric: Fabric,
    supervisor: str,
    args: Mapping[str, Any],
    *,
    request_id: str,
    timeout: float = 10.0,
) -> str | None:
    """Ask the running tree to start a child of ``supervisor``; the new actor's id.

    Raises :class:`~diaspora.errors.ControlError` naming the subject when
    nobody serves it, nobody answers in ``timeout`` s, or the supervisor refused.
    """
    reply = await control_request(
        fabric,
        control_subject(supervisor, "start_child"),
        {"args": dict(args), "request": request_id},
        timeout=timeout,
        nobody=f"is the tree whose supervisor is {supervisor!r} running under `diaspora run` "
        "(or serve_control(fabric, supervisor))?",
    )
    child = reply.get("child")
    return child if isinstance(child, str) else None


class _Server:
    def __init__(self, root: Supervisor) -> None:
        self._root = root
        self.answerer = Answerer(self._answer)

    async def _answer(self, subject: str, request: Mapping[str, Any]) -> dict[str, Any]:
        path, _, op = subject.removeprefix(CONTROL_PREFIX + ".").rpartition(".")
        if op != "start_child":
            return {"ok": False, "error": f"unknown operation {op!r} (known: start_child)"}
        args = request.get("args", {})
        if not isinstance(args, Mapping):
            return {"ok": False, "error": f"args {args!r} is not a map"}
        supervisor = await self._find(path)
        if supervisor is None:
            return {"ok": False, "error": f"no running supervisor {path!r} in this tree"}
        try:
            runnable = await supervisor.start_child(dict(args))
        except (DiasporaError, TypeError) as exc:
            return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        child = getattr(runnable, "id", None)
        _log.info("child_started_by_request", supervisor=path, child=child)
        return {"ok": True, "child": child if isinstance(child, str) else None}

    async def _find(self, path: str) -> Supervisor | None:
        supervisor = self._root
        while supervisor.name != path:
            if not path.startswith(supervisor.name + "."):
                return None
            for record in await supervisor.which_children():
                found = record.runnable
                if isinstance(found, Supervisor) and (
                    path == found.name or path.startswith(found.name + ".")
                ):
                    supervisor = found
                    break
            else:
                return None
        return supervisor


@contextlib.asynccontextmanager
async def serve_control(fabric: Fabric, supervisor: Supervisor) -> AsyncIterator[None]:
    """Serve the control subjects of ``supervisor``'s tree for the ``async with`` block.

    >>> async def run(fabric: Fabric, root: Supervisor) -> None:
    ...     async with serve_control(fabric, root):
    ...         await root.run()
    """
    server = _Server(supervisor)
    subject = f"{CONTROL_PREFIX}.{supervisor.name}.>"
    async with fabric.subscription(subject, server.answerer.handle, flush=True):
        yield
