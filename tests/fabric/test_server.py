"""EmbeddedServer / EmbeddedCluster against real nats-server processes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from diaspora.errors import PublishTimeout, ServerNotFound, ServerStartError
from diaspora.fabric import EmbeddedCluster, EmbeddedServer, Fabric, ServerState, find_nats_server
from diaspora.testing import wait_until

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_file_stream_survives_kill_and_restart(nats_server: EmbeddedServer) -> None:
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1, reconnect_time_wait=0.05)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="KILLME", subjects=["killme"]))
    for i in range(1000):
        await js.publish("killme", str(i).encode())
    old_pid = nats_server.pid
    assert old_pid is not None

    await nats_server.kill()
    assert nats_server.state is ServerState.KILLED
    assert not alive(old_pid)
    await nats_server.restart()
    assert nats_server.pid != old_pid

    await wait_until(lambda: nc.is_connected, what="client reconnected")
    sub = await js.pull_subscribe("killme", durable=None)
    got: list[bytes] = []
    while len(got) < 1000:
        got += [m.data for m in await sub.fetch(250, timeout=5)]
    assert got == [str(i).encode() for i in range(1000)]
    await nc.close()


async def test_paused_server_times_out_publish_then_recovers(
    nats_server: EmbeddedServer, fabric: Fabric
) -> None:
    await fabric.ensure_stream("paused")
    await fabric.publish("paused", {"n": 0})
    nats_server.pause()
    try:
        with pytest.raises(PublishTimeout, match=r"not acknowledged within 0\.5s"):
            await fabric.publish("paused", {"n": 1}, timeout=0.5)
    finally:
        nats_server.resume()
    ack = await fabric.publish("paused", {"n": 2}, timeout=5)
    assert ack.seq >= 2


async def test_r3_stream_keeps_every_acknowledged_publish_when_a_member_dies(
    nats_cluster: EmbeddedCluster,
) -> None:
    async def quiet(exc: Exception) -> None:
        pass

    nc = await nats.connect(
        nats_cluster.urls, max_reconnect_attempts=-1, reconnect_time_wait=0.05, error_cb=quiet
    )
    js = nc.jetstream(timeout=2)
    await js.add_stream(StreamConfig(name="R3", subjects=["r3"], num_replicas=3))
    acked: dict[int, bytes] = {}
    failed = 0
    i = 0
    with anyio.fail_after(60):
        while len(acked) < 1500:
            if i == 500:
                # kill the stream leader's host mid-publish: the hardest member to lose
                leader = (await js.stream_info("R3")).cluster.leader  # type: ignore[union-attr]
                await next(s for s in nats_cluster.servers if s.name == leader).kill()
            payload = f"m{i}".encode()
            i += 1
            try:
                ack = await js.publish("r3", payload, timeout=1)
            except (nats.errors.Error, nats.js.errors.Error):
                failed += 1  # not acknowledged: may or may not be stored; retried as new
                await anyio.sleep(0.05)
                continue
            assert ack.seq not in acked
            acked[ack.seq] = payload
    assert failed > 0, "the leader's death should have interrupted some publishes"

    for seq, payload in acked.items():
        for attempt in range(20):
            try:
                stored = await js.get_msg("R3", seq)
                break
            except nats.errors.TimeoutError:
                if attempt == 19:
                    raise
        assert stored.data == payload, f"acknowledged publish seq {seq} differs"
    await nc.close()


async def test_restart_keeps_port_and_store(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with EmbeddedServer(store_dir=store) as server:
        port = server.port
        await server.stop()
        assert server.state is ServerState.STOPPED
        await server.restart()
        assert server.port == port
        assert server.store_dir == store
    # a given store dir belongs to the caller and is kept
    assert store.exists()


async def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIASPORA_NATS_SERVER", "/nonexistent/nats-server")
    with pytest.raises(ServerNotFound, match=r"\$DIASPORA_NATS_SERVER points at /nonexistent"):
        find_nats_server()


async def test_server_that_cannot_start_reports_its_log(tmp_path: Path) -> None:
    server = EmbeddedServer(extra_config="this is { not valid")
    with pytest.raises(ServerStartError, match="exited with code"):
        await server.start()
    await server.close()


async def test_fabric_without_url_starts_and_cleans_up_its_own_server() -> None:
    async with Fabric() as fabric:
        server = fabric.server
        assert server is not None
        pid = server.pid
        assert pid is not None
        assert alive(pid)
        dirs = [server.store_dir, server.log_path.parent]
        assert all(d.exists() for d in dirs)
        await fabric.ensure_stream("owned")
        await fabric.publish("owned", {"x": 1})
    assert not alive(pid)
    assert not any(d.exists() for d in dirs)
    assert fabric.server is None


async def test_process_dies_with_its_parent(tmp_path: Path) -> None:
    """A killed Python parent leaves no orphan nats-server behind."""
    script = tmp_path / "parent.py"
    pidfile = tmp_path / "pid"
    script.write_text(
        "import anyio, os, sys\n"
        "from diaspora.fabric import EmbeddedServer\n"
        "async def main():\n"
        "    async with EmbeddedServer() as s:\n"
        f"        open({str(pidfile)!r}, 'w').write(str(s.pid))\n"
        "        await anyio.sleep(60)\n"
        "anyio.run(main)\n"
    )
    proc = await anyio.open_process([sys.executable, str(script)])
    try:
        await wait_until(lambda: pidfile.exists() and pidfile.read_text(), timeout=30)
        pid = int(pidfile.read_text())
        assert alive(pid)
    finally:
        proc.kill()
        await proc.wait()
    await wait_until(lambda: not alive(pid), timeout=10, what="nats-server gone with parent")


def test_free_port_never_hands_out_a_port_it_gave_out_just_before(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket

    from diaspora.fabric import _serverproc as _server

    offered = iter([41001, 41001, 41001, 41002, 41001, 41003])

    class Fake:
        def __init__(self, *args: object) -> None:
            self.port = next(offered)

        def __enter__(self) -> Fake:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def bind(self, address: tuple[str, int]) -> None:
            return None

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(_server, "_RECENT_PORTS", type(_server._RECENT_PORTS)(maxlen=8))
    monkeypatch.setattr(socket, "socket", Fake)
    assert [_server.free_port() for _ in range(3)] == [41001, 41002, 41003]
