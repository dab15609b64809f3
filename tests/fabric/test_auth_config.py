"""Credentials and TLS in a workflow file's ``[fabric]``: parsed once, errors name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from diaspora.errors import ConfigError
from diaspora.fabric import Auth, EmbeddedServer, Fabric, Tls, User
from diaspora.workflow import load_config, parse_config

pytestmark = pytest.mark.anyio

TREE = """
[[supervisor.children]]
id = "ingest"
children = []
"""


def parse(fabric: str, tmp_path: Path) -> Auth | None:
    path = tmp_path / "wf.toml"
    path.write_text(f"[fabric]\n{fabric}\n{TREE}")
    return load_config(path).auth


def test_no_credentials_is_none(tmp_path: Path) -> None:
    assert parse('url = "nats://127.0.0.1:4222"', tmp_path) is None


def test_user_and_password_env(tmp_path: Path) -> None:
    auth = parse('user = "app"\npassword_env = "APP_PASSWORD"', tmp_path)
    assert auth == Auth(user="app", password_env="APP_PASSWORD")


def test_relative_paths_are_taken_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_text("not read until connect")
    (tmp_path / "user.creds").write_text("x")
    auth = parse('creds_file = "user.creds"\ntls = { ca_file = "certs/ca.pem" }', tmp_path)
    assert auth == Auth(
        creds_file=str(tmp_path / "user.creds"), tls=Tls(ca_file=str(tmp_path / "certs/ca.pem"))
    )


@pytest.mark.parametrize(
    ("fabric", "error"),
    [
        (
            'user = "app"\npassword = "x"\npassword_env = "P"',
            "wf.toml: fabric: password and password_env are both set: keep one",
        ),
        ('password_env = "P"', "wf.toml: fabric: a password needs a user"),
        ('user = "app"', "wf.toml: fabric: user 'app' has no password"),
        (
            'token = "t"\nnkey_seed_file = "x.nk"',
            "wf.toml: fabric: token and nkey_seed_file are both set",
        ),
        (
            'creds_file = "missing.creds"',
            "wf.toml: fabric.creds_file: 'missing.creds' is not a readable file",
        ),
        (
            'tls = { ca_file = "nope.pem" }',
            "wf.toml: fabric.tls.ca_file: 'nope.pem' is not a readable file",
        ),
        ('tls = { cafile = "x" }', "wf.toml: fabric.tls.cafile: unknown key (did you mean"),
        ('tls = { verify_hostname = "no" }', "wf.toml: fabric.tls.verify_hostname: 'no' is"),
        ('token = ""', "wf.toml: fabric.token: '' is a string, expected a non-empty string"),
        ('tls = { cert_file = "c.pem" }', "wf.toml: fabric.tls: cert_file and key_file go"),
        ('pasword_env = "P"', "wf.toml: fabric.pasword_env: unknown key (did you mean"),
    ],
)
def test_errors_name_the_file_and_field(
    fabric: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(ConfigError) as caught:
        parse(fabric, tmp_path)
    message = str(caught.value).replace(str(tmp_path) + "/", "")
    assert message.startswith(error), message


def test_secrets_stay_out_of_repr() -> None:
    text = repr(Auth(user="app", password="s3cret")) + repr(Auth(token="t0k3n"))
    assert "s3cret" not in text
    assert "t0k3n" not in text


async def test_the_file_credentials_connect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEC_CFG_PASSWORD", "pw")
    async with EmbeddedServer(users=[User("app", password="pw")]) as server:
        config = parse_config(
            f'[fabric]\nurl = "{server.url}"\nuser = "app"\npassword_env = "SEC_CFG_PASSWORD"\n'
            + TREE,
            source="wf.toml",
        )
        assert config.url is not None
        async with Fabric(list(config.url), auth=config.auth) as fabric:
            await fabric.ensure_stream("cfg.check")
            assert (await fabric.publish("cfg.check", 1)).seq == 1
