"""``diaspora dashboard``: a live, read-only web page of a running workflow (starlette, uvicorn).

``GET /`` is the page: its panels (tree, plots of lag and rate, timeline,
sites, alerts, views, pools) are HTML rendered on the server; ``GET
/stream`` sends them again as server-sent events whenever the model
changes (at most 4 times a second, and at least every 2 s), and the page's
few lines of script swap them in; the browser's ``EventSource`` reconnects
by itself. ``GET /state`` is the model's snapshot as JSON.

It serves on loopback unless told otherwise; any other address needs a
token (``--bind 0.0.0.0 --token T``), which every request must carry
(``?token=T`` or ``Authorization: Bearer T``).

>>> check_bind("127.0.0.1", None)
>>> check_bind("0.0.0.0", None)
Traceback (most recent call last):
...
diaspora.errors.ConfigError: diaspora dashboard: --bind 0.0.0.0 is not a loopback address: ...
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any, Final

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from diaspora.errors import ConfigError
from diaspora.observe._cli import observer
from diaspora.observe._page import PAGE
from diaspora.observe._panels import render_panels
from diaspora.observe._watch import Watcher

__all__ = ["check_bind", "make_app", "run_dashboard"]

_MIN_GAP_S: Final = 0.25
_KEEPALIVE_S: Final = 2.0


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback ``host`` without a ``token``, saying what to pass."""
    if _is_loopback(host):
        return
    if not token:
        raise ConfigError(
            f"diaspora dashboard: --bind {host} is not a loopback address: anyone who reaches "
            "it would see the workflow; pass --token T as well (the page is then opened as "
            "http://HOST:PORT/?token=T), or leave --bind out to serve on 127.0.0.1 only"
        )
    if len(token) < 16:
        raise ConfigError(
            "diaspora dashboard: --token is shorter than 16 characters; use a long random one "
            "(python -c 'import secrets; print(secrets.token_urlsafe())')"
        )


def make_app(
    watcher: Watcher, *, token: str | None = None, closing: anyio.Event | None = None
) -> Starlette:
    """The dashboard's ASGI app over ``watcher``'s model (``token``: required of each request).

    Setting ``closing`` ends the event streams, so that the server can stop.
    """
    closing = closing if closing is not None else anyio.Event()

    frames = _FrameCache(watcher)

    def allowed(request: Request) -> bool:
        if token is None:
            return True
        given = request.query_params.get("token", "")
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer "):
            given = auth.removeprefix("Bearer ")
        return hmac.compare_digest(given.encode(), token.encode())

    def refused() -> Response:
        return Response("a token is required: open the page as /?token=T\n", status_code=403)

    async def page(request: Request) -> Response:
        if not allowed(request):
            return refused()
        suffix = f"?token={token}" if token else ""
        body = PAGE.replace("{{STREAM}}", f"stream{suffix}")
        panels = render_panels(watcher.model.snapshot())
        for name, html in panels.items():
            body = body.replace(f"{{{{{name}}}}}", html)
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    async def state(request: Request) -> Response:
        if not allowed(request):
            return refused()
        return JSONResponse(watcher.model.snapshot())

    async def stream(request: Request) -> Response:
        if not allowed(request):
            return refused()
        return StreamingResponse(
            _frames(frames, watcher, request, closing),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return Starlette(
        routes=[Route("/", page), Route("/state", state), Route("/stream", stream)],
    )


class _FrameCache:
    """One rendering per model version and second, shared by every open page."""

    def __init__(self, watcher: Watcher) -> None:
        self._watcher = watcher
        self._key: tuple[int, int] | None = None
        self._frame = ""

    def frame(self) -> tuple[int, str]:
        model = self._watcher.model
        key = (model.version, int(time.time()))  # the clocks on the page move each second
        if key != self._key:
            snapshot = model.snapshot()
            data = json.dumps({"version": model.version, "panels": render_panels(snapshot)})
            self._key, self._frame = key, f"event: panels\nid: {model.version}\ndata: {data}\n\n"
        return key[0], self._frame


async def _frames(
    frames: _FrameCache, watcher: Watcher, request: Request, closing: anyio.Event
) -> AsyncIterator[str]:
    """Server-sent events: the panels now, then at every change (and every 2 s)."""
    yield "retry: 1000\n\n"
    while not await request.is_disconnected():
        sent = anyio.current_time()
        version, frame = frames.frame()
        yield frame
        with anyio.move_on_after(_KEEPALIVE_S):
            async with anyio.create_task_group() as wait:  # a change, or the server stopping

                async def stop_waiting(ready: Awaitable[Any]) -> None:
                    await ready
                    wait.cancel_scope.cancel()

                wait.start_soon(stop_waiting, watcher.changed(version))
                wait.start_soon(stop_waiting, closing.wait())
        if closing.is_set():
            return
        # at most one frame per _MIN_GAP_S, but at once after a quiet spell
        await anyio.sleep(max(0.0, sent + _MIN_GAP_S - anyio.current_time()))


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals alone: Ctrl-C is the command's to handle."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    watcher: Watcher,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    ready: anyio.Event | None = None,
    bound: list[int] | None = None,
) -> None:
    """Serve the dashboard (and run ``watcher``) until cancelled; ``bound`` gets the port."""
    check_bind(host, token)
    closing = anyio.Event()
    config = uvicorn.Config(
        make_app(watcher, token=token, closing=closing),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    stopped = anyio.Event()

    async def run_server() -> None:
        try:
            with anyio.CancelScope(shield=True):  # it stops when told: should_exit, below
                await server.serve()
        finally:
            stopped.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watcher.run)
        tg.start_soon(run_server)
        while not server.started:
            if stopped.is_set():
                raise ConfigError(f"diaspora dashboard: cannot serve on {host}:{port}")
            await anyio.sleep(0.02)
        if bound is not None:
            bound += [s.getsockname()[1] for srv in server.servers for s in srv.sockets]
        if ready is not None:
            ready.set()
        try:
            await anyio.sleep_forever()
        finally:
            closing.set()
            server.should_exit = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await stopped.wait()


def run_dashboard(args: argparse.Namespace) -> int:
    """The ``dashboard`` command: serve until Ctrl-C (exit status 0)."""
    check_bind(args.bind, args.token)

    async def main() -> None:
        async with observer(args.url, "dashboard") as fabric:
            watcher = Watcher(fabric, history=args.history, monitors=args.monitor)
            ready, bound = anyio.Event(), list[int]()
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    lambda: serve(
                        watcher, host=args.bind, port=args.port, token=args.token,
                        ready=ready, bound=bound,
                    )
                )  # fmt: skip
                await ready.wait()
                suffix = f"?token={args.token}" if args.token else ""
                host = f"[{args.bind}]" if ":" in args.bind else args.bind
                print(
                    f"diaspora dashboard: http://{host}:{bound[0]}/{suffix}",
                    file=sys.stderr,
                    flush=True,
                )

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(main)
    return 0
