"""A graceful server restart: consumers are recreated on the server that came back, at once.

The server announces its shutdown to every pull request ("409 Server
Shutdown"). A consumer that recreated itself against the server going away
used to wait out the request timeout (5 s) before trying again; now the
reconnect abandons that attempt. The time to the next output is reported by
``python -m bench --only recovery``; this test checks the outputs and the
structural cause, not a duration.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
import structlog

from diaspora import ActorRuntime, codec
from diaspora.errors import FabricUnavailable
from diaspora.fabric import EmbeddedServer, Fabric
from diaspora.fabric._reader import read_stored
from diaspora.testing import Injector, wait_until
from tests.actor.sample_actors import PassThrough

pytestmark = pytest.mark.anyio


def _stopped(pid: int | None) -> bool:
    """Whether the process is stopped (state T in /proc): a SIGSTOP takes effect asynchronously."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


async def test_outputs_resume_after_restart_server_without_loss_or_duplicates(
    nats_server: EmbeddedServer,
) -> None:
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("source")
        await fabric.ensure_stream("sink")
        sent = 0

        async def outputs() -> list[int]:
            return [codec.decode(m.payload)["n"] async for m in read_stored(fabric, "sink")]

        async def publish(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                await fabric.publish("source", {"n": sent}, msg_id=f"in-{sent}", timeout=10)
                sent += 1

        runtime = ActorRuntime(PassThrough, fabric, id="pass")
        resumed: list[float] = []
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg, Injector(fabric, server=nats_server) as inj:
                await tg.start(runtime.run)
                await publish(20)
                await wait_until(
                    lambda: runtime.outputs_acked >= 20, timeout=20, what="first outputs"
                )
                for _ in range(2):
                    before = runtime.outputs_acked
                    await inj.restart_server()
                    back = time.monotonic()
                    await fabric.wait_connected(timeout=20)
                    await publish(10)
                    await wait_until(
                        lambda b=before: runtime.outputs_acked > b,
                        timeout=30,
                        what="outputs resumed",
                    )
                    resumed.append(time.monotonic() - back)
                    await wait_until(
                        lambda: runtime.outputs_acked >= sent, timeout=30, what="every output"
                    )
                runtime.request_stop()
        assert await outputs() == list(range(sent))  # each input's output once, in order
        timed_out = [
            e for e in logs if e["event"] == "consumer_create_failed" and "Timeout" in e["error"]
        ]
        assert timed_out == [], f"a consumer waited out a request to the old server: {timed_out}"
        print(f"outputs resumed {[round(s, 3) for s in resumed]} s after the server was back")


async def test_a_publish_whose_ack_left_with_the_old_server_is_sent_again(
    nats_server: EmbeddedServer,
) -> None:
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("acks")
        nats_server.pause()  # the request reaches the socket; no server reads it
        await wait_until(lambda: _stopped(nats_server.pid), what="server stopped by SIGSTOP")
        acks: list[object] = []
        sending = anyio.Event()
        with structlog.testing.capture_logs() as logs:
            async with anyio.create_task_group() as tg:

                async def publish() -> None:
                    sending.set()
                    acks.append(await fabric.publish("acks", {"n": 1}, msg_id="a-1", timeout=15))

                tg.start_soon(publish)
                await sending.wait()
                await wait_until(lambda: fabric.nc.pending_data_size == 0, what="publish sent")
                await nats_server.kill()  # the request and its answer are gone with it
                await nats_server.restart()
        assert [e["event"] for e in logs if e["event"] == "publish_resent"] == ["publish_resent"]
        stored = [m async for m in read_stored(fabric, "acks")]
        assert [(m.headers["Nats-Msg-Id"], codec.decode(m.payload)) for m in stored] == [
            ("a-1", {"n": 1})
        ]
        assert len(acks) == 1


async def test_publishes_ride_through_graceful_restarts(nats_server: EmbeddedServer) -> None:
    # while a server shuts down, its JetStream stops before its connections close: a
    # publish then gets "no responders", which is not "no such stream"; or its ack is lost
    async with Fabric(nats_server.url, backoff_initial=0.02, backoff_max=0.2) as fabric:
        await fabric.ensure_stream("flow")
        published = 0

        async def produce() -> None:
            nonlocal published
            while True:
                n = published
                await fabric.publish_bytes("flow", b"%d" % n, msg_id=f"p{n}", timeout=30)
                published += 1

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            for _ in range(6):
                before = published
                await wait_until(lambda b=before: published > b + 50, timeout=30, what="flowing")
                await nats_server.restart()
            await wait_until(lambda: published > 200, timeout=30, what="flowing after")
            tg.cancel_scope.cancel()
        stored = [int(m.payload) async for m in read_stored(fabric, "flow")]
        assert stored[:published] == list(range(published))


async def test_a_publish_to_a_subject_without_a_stream_says_so(fabric: Fabric) -> None:
    with pytest.raises(FabricUnavailable, match=r"no JetStream stream answered for 'nostream'"):
        await fabric.publish("nostream", {"x": 1}, timeout=30)
