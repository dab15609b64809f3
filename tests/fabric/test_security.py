"""Security against real nats-servers: loopback only, credentials, TLS, accounts, permissions."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import nkeys
import pytest
import structlog
import trustme

from diaspora import Actor, ActorRuntime, Message
from diaspora.errors import AuthorizationFailed, ConfigError, PermissionDenied, StreamNotFound
from diaspora.fabric import (
    Auth,
    EmbeddedCluster,
    EmbeddedServer,
    Fabric,
    Inbound,
    Permissions,
    ServerTls,
    Tls,
    User,
    workflow_permissions,
)
from diaspora.fabric._serverauth import render_security
from diaspora.testing import wait_until
from diaspora.testing._streams import read_stream
from tests.fabric.operator_rig import Key, Operator

pytestmark = pytest.mark.anyio

LOOPBACK = "127.0.0.1"


def listen_hosts(config: str) -> list[str]:
    """The host of every ``listen:``/``http:`` line of a nats-server config."""
    return [m.group(2) for m in re.finditer(r'^\s*(listen|http):\s*"?([^:"]+):', config, re.M)]


# -- nothing listens beyond loopback -----------------------------------------------------


async def test_embedded_cluster_binds_every_port_to_loopback() -> None:
    async with EmbeddedCluster(2) as cluster:
        for server in cluster.servers:
            config = server.config_path.read_text()
            hosts = listen_hosts(config)
            assert len(hosts) == 3, config  # client, monitoring, cluster
            assert set(hosts) == {LOOPBACK}
            varz = await server.monitor("varz")
            assert varz["host"] == LOOPBACK
            assert varz["http_host"] == LOOPBACK
            assert varz["cluster"]["addr"] == LOOPBACK
            assert varz["https_port"] == 0


async def test_secured_server_still_binds_loopback(tmp_path: Path) -> None:
    users = [User("app", password="pw")]
    async with EmbeddedServer(users=users) as server:
        assert set(listen_hosts(server.config_path.read_text())) == {LOOPBACK}
        varz = await server.monitor("varz")
        assert (varz["host"], varz["http_host"], varz["auth_required"]) == (
            LOOPBACK,
            LOOPBACK,
            True,
        )


# -- credentials --------------------------------------------------------------------------


async def round_trip(fabric: Fabric, subject: str = "sec.check") -> None:
    await fabric.ensure_stream(subject)
    ack = await fabric.publish(subject, {"ok": True})
    assert await fabric.stream_bounds(subject) == (ack.seq, ack.seq)


async def test_user_and_password_from_an_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEC_TEST_PASSWORD", "s3cret")
    async with EmbeddedServer(users=[User("app", password="s3cret")]) as server:
        auth = Auth(user="app", password_env="SEC_TEST_PASSWORD")
        async with Fabric(server.url, name="pw", auth=auth) as fabric:
            await round_trip(fabric)
            # the ordered publisher opens its own connections: they carry the credentials too
            runtime_out = await _run_doubler(fabric, "sec")
            assert runtime_out == list(range(0, 20, 2))


async def test_wrong_password_is_a_clear_authorization_error() -> None:
    async with EmbeddedServer(users=[User("app", password="right")]) as server:
        with pytest.raises(AuthorizationFailed) as caught:
            async with Fabric(server.url, auth=Auth(user="app", password="wrong")):
                pass
        message = str(caught.value)
        assert server.url in message
        assert "authorization failed for user 'app'" in message
        assert "wrong" not in message  # no secret in the message
        with pytest.raises(AuthorizationFailed, match="authorization failed for no credentials"):
            async with Fabric(server.url):
                pass


async def test_a_reconnect_the_server_refuses_is_logged_with_the_reason(tmp_path: Path) -> None:
    store = tmp_path / "store"
    async with EmbeddedServer(users=[User("app", password="old")], store_dir=store) as server:
        auth = Auth(user="app", password="old")
        async with Fabric(server.url, auth=auth, backoff_initial=0.02, backoff_max=0.1) as fabric:
            await server.stop()
            rotated = EmbeddedServer(port=server.port, users=[User("app", password="new")])
            with structlog.testing.capture_logs() as logs:
                async with rotated:
                    await wait_until(
                        lambda: any(e["event"] == "fabric_refused" for e in logs),
                        timeout=20,
                        what="the refused reconnect logged",
                    )
            (first, *_) = [e for e in logs if e["event"] == "fabric_refused"]
            assert "authorization failed for user 'app'" in first["reason"]
            assert first["log_level"] == "error"
            assert not fabric.is_connected


async def test_token_from_an_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEC_TEST_TOKEN", "t0k3n")
    async with EmbeddedServer(users=[User(token="t0k3n")]) as server:
        async with Fabric(server.url, auth=Auth(token_env="SEC_TEST_TOKEN")) as fabric:
            await round_trip(fabric)
        with pytest.raises(AuthorizationFailed, match="authorization failed for a token"):
            async with Fabric(server.url, auth=Auth(token="other")):
                pass


async def test_nkey_seed_file(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "user.nk"
    seed_file.write_bytes(seed)
    async with EmbeddedServer(users=[User(nkey=public)]) as server:
        async with Fabric(server.url, auth=Auth(nkey_seed_file=seed_file)) as fabric:
            await round_trip(fabric)
        other = tmp_path / "other.nk"
        other.write_bytes(nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
        with pytest.raises(AuthorizationFailed, match="nkey seed"):
            async with Fabric(server.url, auth=Auth(nkey_seed_file=other)):
                pass


async def test_creds_file_with_a_user_jwt(tmp_path: Path) -> None:
    operator = Operator()
    async with EmbeddedServer(extra_config=operator.server_config()) as server:
        creds = operator.creds(tmp_path / "app.creds")
        async with Fabric(server.url, name="jwt", auth=Auth(creds_file=creds)) as fabric:
            await round_trip(fabric)
        stranger = Key.new(nkeys.PREFIX_BYTE_ACCOUNT)  # not an account the operator signed
        forged = operator.creds(tmp_path / "forged.creds", signer=stranger)
        with pytest.raises(AuthorizationFailed, match=r"creds file .*forged\.creds"):
            async with Fabric(server.url, auth=Auth(creds_file=forged)):
                pass


async def test_missing_secret_env_var_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SEC_TEST_UNSET", raising=False)
    auth = Auth(user="app", password_env="SEC_TEST_UNSET", where="wf.toml: fabric")
    with pytest.raises(ConfigError, match=r"wf.toml: fabric.password_env: .*\$SEC_TEST_UNSET"):
        async with Fabric("nats://127.0.0.1:1", auth=auth):
            pass


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def write_cert(ca: trustme.CA, tmp_path: Path, name: str) -> tuple[Path, Path]:
    cert = ca.issue_cert(LOOPBACK, "localhost")
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for blob in cert.cert_chain_pems[1:]:
        blob.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return cert_file, key_file


@pytest.fixture
async def tls_server(ca: trustme.CA, tmp_path: Path) -> AsyncIterator[EmbeddedServer]:
    cert_file, key_file = write_cert(ca, tmp_path, "server")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    tls = ServerTls(cert_file=cert_file, key_file=key_file, ca_file=ca_file, verify=True)
    async with EmbeddedServer(tls=tls) as server:
        yield server


async def test_tls_with_a_client_certificate(
    tls_server: EmbeddedServer, ca: trustme.CA, tmp_path: Path
) -> None:
    assert (await tls_server.monitor("varz"))["tls_required"] is True
    cert_file, key_file = write_cert(ca, tmp_path, "client")
    tls = Tls(ca_file=tmp_path / "ca.pem", cert_file=cert_file, key_file=key_file)
    async with Fabric(tls_server.url, name="tls", auth=Auth(tls=tls)) as fabric:
        await round_trip(fabric)
        assert await _run_doubler(fabric, "tls") == list(range(0, 20, 2))


async def test_tls_server_not_trusted_is_a_clear_error(
    tls_server: EmbeddedServer, ca: trustme.CA, tmp_path: Path
) -> None:
    cert_file, key_file = write_cert(ca, tmp_path, "client")
    untrusted = Tls(cert_file=cert_file, key_file=key_file)  # the system CAs only
    with pytest.raises(AuthorizationFailed, match=r"TLS certificate not accepted.*tls.ca_file"):
        async with Fabric(tls_server.url, auth=Auth(tls=untrusted)):
            pass


# -- accounts and permissions -------------------------------------------------------------


class Doubler(Actor):
    """Doubles ``x``; one output is large enough to go through the object store."""

    inputs = ("wf.numbers",)

    async def handle(self, msg: Message) -> None:
        x = msg.data["x"]
        await self.emit(
            msg.subject.rsplit(".", 1)[0] + ".doubled",
            {"x": 2 * x, "blob": b"z" * (300_000 if x == 3 else 1)},
        )


async def _run_doubler(fabric: Fabric, prefix: str, n: int = 10) -> list[int]:
    """Run :class:`Doubler` on ``<prefix>.numbers`` until all ``n`` doubled; the outputs."""
    source, sink = f"{prefix}.numbers", f"{prefix}.doubled"
    await fabric.ensure_stream(source)
    await fabric.ensure_stream(sink)
    for x in range(n):
        await fabric.publish(source, {"x": x})
    runtime = ActorRuntime(Doubler, fabric, id=f"{prefix}-doubler", inputs=(source,))

    async def done() -> bool:
        return (await fabric.stream_bounds(sink))[1] >= n

    async with anyio.create_task_group() as tg:
        await tg.start(runtime.run)
        await wait_until(done, timeout=30, interval=0.05)
        runtime.request_stop()
    out = await read_stream(fabric, sink, stream=sink.replace(".", "_"))
    assert len(out[3].data["blob"]) == 300_000
    return [m.data["x"] for m in out]


def accounts() -> dict[str, object]:
    return {
        "WF": {
            "users": [
                User("app", password="app", permissions=workflow_permissions("wf.>")),
                User(
                    "sensor",
                    password="sensor",
                    permissions=Permissions(publish=("raw.>",), subscribe=("_INBOX.>",)),
                ),
            ],
            "jetstream": True,
        },
        "OTHER": {"users": [{"user": "other", "password": "other"}], "jetstream": True},
    }


@pytest.fixture
async def accounts_server() -> AsyncIterator[EmbeddedServer]:
    # a blob of 300 kB must go through the object store: below the default 8 MiB limit
    async with EmbeddedServer(accounts=accounts(), max_payload=256 * 1024) as server:
        yield server


def test_accounts_render_like_the_measured_config() -> None:
    config = render_security(accounts=accounts())
    assert '"WF": { jetstream: enabled, users: [{user: "app", password: "app", permissions:' in (
        config
    )
    assert "SYS: { users: [] }" in config
    assert config.endswith("system_account: SYS")


async def test_actor_runs_end_to_end_with_the_minimal_permissions(
    accounts_server: EmbeddedServer,
) -> None:
    async with Fabric(accounts_server.url, name="app", auth=Auth(user="app", password="app")) as f:
        assert await _run_doubler(f, "wf") == list(range(0, 20, 2))
        # the permissions are enforced, not decoration: outside wf.> is refused
        with pytest.raises(PermissionDenied, match=r"'elsewhere\.x'") as caught:
            await f.publish("elsewhere.x", {"no": 1})
        assert (caught.value.subject, caught.value.operation) == ("elsewhere.x", "publish")


async def test_another_account_sees_nothing_of_the_workflow(
    accounts_server: EmbeddedServer,
) -> None:
    app = Auth(user="app", password="app")
    other = Auth(user="other", password="other")
    async with (
        Fabric(accounts_server.url, name="app", auth=app) as wf,
        Fabric(accounts_server.url, name="other", auth=other) as outsider,
    ):
        await wf.ensure_stream("wf.numbers")
        await wf.publish("wf.numbers", {"x": 1})
        with pytest.raises(StreamNotFound):
            await outsider.stream_bounds("wf.numbers")
        seen_inside: list[Inbound] = []
        seen_outside: list[Inbound] = []

        async def inside(msg: Inbound) -> None:
            seen_inside.append(msg)

        async def outside(msg: Inbound) -> None:
            seen_outside.append(msg)

        async with (
            wf.subscription("wf.live", inside, flush=True),
            outsider.subscription("wf.live", outside, flush=True),
        ):
            assert await wf.publish_core("wf.live", b"hello")
            await wait_until(lambda: bool(seen_inside), timeout=10)
            # the outsider's own publish reaches its own account only
            assert await outsider.publish_core("wf.live", b"spoof")
            await wait_until(lambda: bool(seen_outside), timeout=10)
        assert [m.data for m in seen_inside] == [b"hello"]
        assert [m.data for m in seen_outside] == [b"spoof"]


async def test_publish_without_permission_names_the_subject(
    accounts_server: EmbeddedServer,
) -> None:
    async with (
        Fabric(accounts_server.url, name="app", auth=Auth(user="app", password="app")) as app,
        Fabric(
            accounts_server.url,
            name="sensor",
            auth=Auth(user="sensor", password="sensor"),
            events_stream=False,  # may not create streams
        ) as sensor,
    ):
        await app.ensure_stream("wf.numbers")
        with pytest.raises(PermissionDenied) as caught:
            await sensor.publish("wf.numbers", {"x": 1}, timeout=30)
        message = str(caught.value)
        assert "user 'sensor'" in message
        assert "publish to 'wf.numbers'" in message
        assert caught.value.subject == "wf.numbers"
        assert await app.stream_bounds("wf.numbers") == (0, 0)

        async def ignore(msg: Inbound) -> None:
            pass

        with pytest.raises(PermissionDenied, match=r"subscribe to 'wf\.numbers'"):
            async with sensor.subscription("wf.numbers", ignore, flush=True):
                pass
        with pytest.raises(PermissionDenied, match=r"publish to 'wf\.service'"):
            await sensor.request("wf.service", b"?", timeout=30)
