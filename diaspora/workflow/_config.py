"""Supervision trees in TOML files, parsed into the same specs a Python user builds.

A file has a ``[supervisor]`` table (the root) whose ``children`` are actors
(``actor = "package.module:Class"``) or nested supervisors (``children`` and/or
``strategy``), and an optional ``[fabric]`` table. Any child may run in its
own OS process (``process = true``). :func:`load_config` validates all of it
— keys, types, enums, ids, import paths, actor arguments — before anything
starts, and raises :class:`~diaspora.errors.ConfigError` naming the file, the
field path and what is wrong. The result's ``spec`` is a plain
:class:`~diaspora.supervision.SupervisorSpec` of
:func:`~diaspora.supervision.actor_child` /
:func:`~diaspora.supervision.process_child` specs with no fabric yet;
:meth:`TreeConfig.supervisor` binds it to one.

Keys (``*``: required)::

    [fabric]
    url = "nats://host:4222"          # or a list; omitted: $DIASPORA_URL, else embedded
    user = "app"                      # credentials (at most one way, see docs/fabric.md):
    password_env = "APP_PASSWORD"     # user + password/password_env, token/token_env,
                                      # nkey_seed_file, creds_file (paths: from this file)
    tls = { ca_file = "ca.pem" }      # and cert_file, key_file, verify_hostname, hostname

    [sites.edge]                      # optional: sites, one JetStream domain each
    domain = "edge"                   # * (diaspora.workflow._siteconfig)
    parent = "hpc"                    # leaf link to the parent site
    url = "nats://edge:4222"          # omitted: an embedded server (leaf_url: its leaf port)

    [[bridges]]                       # optional, with [sites]: a stream moved between sites
    subject = "edge.frames"           # * its origin stream is at `from`; readers at `to`
    from = "edge"                     # * consume the copy (up: a source; down: a mirror)
    to = "hpc"                        # *

    [supervisor]                      # the root supervisor
    name = "root"                     # first token of every actor id (default "root")
    site = "hpc"                      # with [sites]: where the root runs (default: the first)
    strategy = "one_for_one"          # one_for_all, rest_for_one, simple_one_for_one
    intensity = 1                     # restarts allowed ...
    period = 5.0                      # ... within this many seconds (finite, > 0)
    auto_shutdown = "never"           # any_significant, all_significant: stop the
                                      # supervisor when significant children end
    [supervisor.backoff]              # optional: initial, max, factor, jitter, reset_after

    [[supervisor.children]]           # an actor child
    id = "sum"                        # * letters, digits, '_', '-'
    actor = "mypkg.actors:RunningSum" # * an Actor subclass
    args = { scale = 2 }              # constructor keyword arguments
    inputs = ["numbers"]              # overrides the class's inputs
    site = "edge"                     # with [sites]: its site (default: its parent's)
    max_attempts = 3                  # handle failures before an input is dead-lettered
    on_poison = "retry"               # or "crash" (overrides the class's, see docs/actors.md)
    checkpoint_storage = { sites = { hub = "hub", a = "a" }, policy = { layout = "rep:2" } }
    restart = "permanent"             # transient, temporary
    shutdown = 5.0                    # seconds, "brutal_kill" or "infinity"
    significant = false               # true: its end may stop the supervisor
                                      # (transient/temporary, auto_shutdown set)
    process = false                   # true: run it in its own OS process
    heartbeat_timeout = 5.0           # process = true only: watchdog
    start_timeout = 60.0              # process = true only
    standby = true                    # process = true only: restart in a warm standby

    [[supervisor.children]]           # a nested supervisor child
    id = "ingest"                     # *
    strategy = "rest_for_one"         # and every supervisor key above (intensity...)
    children = [...]                  # and every non-actor child key above (restart...)

    [pools.recon]                     # optional: workers per site, total_min, provider,
    sites.hpc = { min = 2, max = 8 }  # intensity/period/retry_after (docs/pools.md); an actor
    provider = "process"              # child joins with pool = "recon" (and movable = true)

    [streams."edge1.temps"]           # a stream's QoS and retention (optional)
    qos = { rate = 100.0, max_lag_items = 500, policy = { kind = "decimate", k = 4 } }
    limits = { max_msgs = 100000, max_age = 3600.0, duplicate_window = 120.0 }

The ``qos`` table takes every key of :class:`~diaspora.streams.QosSpec`
(rate, max_lag_items, max_lag_seconds, max_latency, stall_deadline, policy,
reconstructor, reconstructor_args, fill_stalls); ``limits`` those of
:class:`~diaspora.fabric.StreamLimits`. ``diaspora run`` ensures these
streams, declares their QoS and ensures every actor's inputs before starting
the tree (:meth:`TreeConfig.declare_streams`). A child's ``qos`` or
``streams`` key, like any unknown key, is an error. Values are checked by the
specs themselves (:mod:`diaspora.supervision._spec`); the parser puts the
file and the field path in front of what they say.

>>> config = parse_config('''
... [supervisor]
... strategy = "one_for_all"
... intensity = 3
... [[supervisor.children]]
... id = "ingest"
... strategy = "rest_for_one"
... ''', source="demo.toml")
>>> config.name, config.spec.strategy.value, config.spec.children[0].start.strategy.value
('root', 'one_for_all', 'rest_for_one')
>>> parse_config('''
... [[supervisor.children]]
... id = "ingest"
... children = []
... restart = "sometimes"
... ''', source="demo.toml")
Traceback (most recent call last):
...
diaspora.errors.ConfigError: demo.toml: supervisor.children[0].restart: 'sometimes' is not one of
permanent, transient, temporary
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Final

from diaspora._importpath import resolve
from diaspora._tomlfile import TomlReader, kind_of, load_toml
from diaspora.actor import Actor, OnPoison, PoisonPolicy
from diaspora.errors import ConfigError
from diaspora.fabric._auth import AUTH_KEYS, Auth
from diaspora.fabric._fabric import StreamLimits
from diaspora.fabric._naming import check_input, check_subject
from diaspora.streams._qos import QosSpec
from diaspora.supervision._spec import (
    AutoShutdown,
    Backoff,
    ChildSpec,
    Restart,
    Strategy,
    SupervisorSpec,
    check_id,
    check_shutdown,
)
from diaspora.workflow._children import ACTOR_KEYS, ActorStart, check_actor_args, stored_checkpoints
from diaspora.workflow._monitorconfig import add_monitors
from diaspora.workflow._node import DEFAULT_HEARTBEAT_TIMEOUT, DEFAULT_START_TIMEOUT, process_child
from diaspora.workflow._poolconfig import Pooled, add_pools, pooled_actor
from diaspora.workflow._siteconfig import BridgeDecl, check_placements, parse_bridges, parse_sites
from diaspora.workflow._tree import StreamDecl, TreeConfig
from diaspora.workflow._triggers import parse_triggers
from diaspora.workflow._views import parse_views

__all__ = ["TreeConfig", "load_config", "parse_config"]

_STREAM_CHILD_KEYS: Final = frozenset({"qos", "streams"})  # older per-child keys: now [streams]
_TOP_KEYS: Final = frozenset(
    {"fabric", "supervisor", "streams", "sites", "bridges", "triggers", "views", "pools"}
) | {"monitors", "metrics"}
_STREAM_KEYS: Final = frozenset({"qos", "limits"})
_LIMIT_KEYS: Final = frozenset(
    {"max_msgs", "max_bytes", "max_age", "duplicate_window", "replicas", "storage"}
)
_FABRIC_KEYS: Final = frozenset({"url", "tls"}) | AUTH_KEYS
_SUPERVISOR_KEYS: Final = frozenset(
    {"strategy", "intensity", "period", "auto_shutdown", "backoff", "children"}
)
_ROOT_KEYS: Final = _SUPERVISOR_KEYS | {"name", "site"}
_NODE_KEYS: Final = frozenset({"process", "heartbeat_timeout", "start_timeout", "standby"})
_CHILD_KEYS: Final = frozenset({"id", "restart", "shutdown", "significant", "site"}) | _NODE_KEYS
_ACTOR_KEYS: Final = _CHILD_KEYS | ACTOR_KEYS
_NESTED_KEYS: Final = _CHILD_KEYS | _SUPERVISOR_KEYS
_BACKOFF_KEYS: Final = frozenset({"initial", "max", "factor", "jitter", "reset_after"})
DEFAULT_NAME: Final = "root"


def load_config(path: str | os.PathLike[str]) -> TreeConfig:
    """Read and validate a supervision-tree TOML file (messages name it as given)."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the config file: {exc}") from exc
    return parse_config(text, source=source)


def parse_config(text: str, *, source: str = "<config>") -> TreeConfig:
    """Validate TOML ``text``; ``source`` names it in error messages."""
    return _Parser(source).document(load_toml(text, source))


class _Parser(TomlReader):
    """Walks one document; every error names ``source`` and the field path."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        #: child path -> the site its table names, and where that table is
        self.placements: dict[str, str] = {}
        self.wheres: dict[str, str] = {}
        self.pooled: Pooled = {}  # the actors that run in a pool, by pool

    def place(self, table: dict[str, Any], where: str, path: str) -> None:
        if "site" in table:
            self.placements[path] = self.string(table["site"], f"{where}.site")
            self.wheres[path] = where

    def at(self, where: str) -> str:
        return f"{self.source}: {where}"

    # -- structure ---------------------------------------------------------------------

    def document(self, document: dict[str, Any]) -> TreeConfig:
        self.keys(document, "", _TOP_KEYS)
        streams = self.streams(document["streams"]) if "streams" in document else {}
        url = self.fabric(document["fabric"]) if "fabric" in document else None
        base = Path(self.source).parent if self.source != "<config>" else None
        auth = None
        if "fabric" in document:
            auth = Auth.from_mapping(document["fabric"], where=self.at("fabric"), base_dir=base)
        if "supervisor" not in document:
            raise ConfigError(
                f"{self.source}: missing required table [supervisor] (the root supervisor: "
                "strategy, intensity, period and its [[supervisor.children]])"
            )
        root = self.table(document["supervisor"], "supervisor")
        self.keys(root, "supervisor", _ROOT_KEYS)
        name = DEFAULT_NAME
        if "name" in root:
            name = check_id(
                self.string(root["name"], "supervisor.name"), self.at("supervisor.name")
            )
        sites = parse_sites(self, document["sites"], base) if "sites" in document else ()
        self.place(root, "supervisor", name)
        if sites and name not in self.placements:
            self.placements[name], self.wheres[name] = sites[0].name, "supervisor"
        spec = self.supervisor(root, "supervisor", name)
        if sites and url is not None:
            raise self.fail("fabric.url", "with [sites], give each site its own url")
        if sites and auth is not None:
            raise self.fail("fabric", "with [sites], give each site its own credentials and tls")
        if "triggers" in document:
            spec = self.triggers(document["triggers"], spec)
        if "views" in document:
            spec = self.views(document["views"], spec, name)
        spec = add_monitors(self, document, spec)  # [metrics] and [[monitors]]: the root's last
        spec, pools = add_pools(self, document.get("pools"), self.pooled, sites, spec)
        bridges: tuple[BridgeDecl, ...] = ()
        if "bridges" in document:
            if not sites:
                raise self.fail("bridges", "a bridge joins two sites: declare [sites.<name>]")
            bridges = parse_bridges(self, document["bridges"], sites)
        check_placements(self.source, sites, self.placements, self.wheres, spec, name, bridges)
        return TreeConfig(
            self.source,
            name,
            spec,
            url,
            streams,
            sites,
            dict(self.placements),
            auth,
            bridges,
            pools,
        )

    def triggers(self, value: object, root: SupervisorSpec) -> SupervisorSpec:
        """``[[triggers]]``: each a child of the root (``trigger-<name>``)."""
        return self.root_with(root, parse_triggers(value, self.source), "triggers")

    def views(self, value: object, root: SupervisorSpec, name: str) -> SupervisorSpec:
        """``[views.<name>]``: each a child of the root (id ``<name>``), placed like an actor."""
        children = []
        for child, table in parse_views(value, self.source):
            self.place(table, f"views.{child.id}", f"{name}.{child.id}")
            children.append(child)
        return self.root_with(root, children, "views")

    def root_with(
        self, root: SupervisorSpec, children: list[ChildSpec], key: str
    ) -> SupervisorSpec:
        """``root`` with the children a top-level table ``key`` declares added."""
        if children and root.strategy is Strategy.SIMPLE_ONE_FOR_ONE:
            raise self.fail(key, "the root is simple_one_for_one: it has no room for them")
        try:
            return dataclasses.replace(root, children=[*root.children, *children])
        except ConfigError as exc:
            raise self.from_spec(exc, key, "supervisor") from exc

    def streams(self, value: object) -> dict[str, StreamDecl]:
        """``[streams."<subject>"]`` tables: each stream's ``qos`` and retention ``limits``."""
        out: dict[str, StreamDecl] = {}
        for subject, table in self.table(value, "streams").items():
            where = f"streams.{subject}"
            check_subject(subject, where=self.at(where))
            table = self.table(table, where)
            self.keys(table, where, _STREAM_KEYS)
            qos = None
            if "qos" in table:
                qos = QosSpec.from_mapping(
                    self.table(table["qos"], f"{where}.qos"), where=self.at(f"{where}.qos")
                )
                qos.make_reconstructor()  # a reconstructor path must import now, not at a gap
            limits = None
            if "limits" in table:
                raw = self.table(table["limits"], f"{where}.limits")
                self.keys(raw, f"{where}.limits", _LIMIT_KEYS)
                try:
                    limits = StreamLimits(**raw)
                except (ConfigError, TypeError) as exc:
                    raise self.fail(f"{where}.limits", str(exc)) from exc
            out[subject] = StreamDecl(qos, limits)
        return out

    def fabric(self, value: object) -> tuple[str, ...] | None:
        table = self.table(value, "fabric")
        self.keys(table, "fabric", _FABRIC_KEYS)
        if "url" not in table:
            return None
        url = table["url"]
        urls = url if isinstance(url, list) else [url]
        if not urls:
            raise self.fail("fabric.url", "an empty list names no server")
        out = []
        for i, item in enumerate(urls):
            where = f"fabric.url[{i}]" if isinstance(url, list) else "fabric.url"
            text = self.string(item, where).strip()
            if not text:
                raise self.fail(where, "empty URL: omit fabric.url to use an embedded server")
            out.append(text)
        return tuple(out)

    def from_spec(self, exc: ConfigError, where: str, spec_path: str) -> ConfigError:
        """A spec's error (``supervisor.intensity: ...``) with the file and ``where`` in front."""
        message = str(exc)
        if message.startswith((f"{spec_path}.", f"{spec_path}:")):
            message = message.removeprefix(spec_path)
        else:
            message = f": {message}"
        return ConfigError(f"{self.source}: {where}{message}")

    def supervisor(self, table: dict[str, Any], where: str, path: str) -> SupervisorSpec:
        """The spec checks the values; unset keys take the spec's defaults."""
        flags: dict[str, Any] = {key: table[key] for key in ("intensity", "period") if key in table}
        if "strategy" in table:
            flags["strategy"] = self.choice(table["strategy"], Strategy, f"{where}.strategy")
        if "auto_shutdown" in table:
            flags["auto_shutdown"] = self.choice(
                table["auto_shutdown"], AutoShutdown, f"{where}.auto_shutdown"
            )
        if "backoff" in table:
            flags["backoff"] = self.backoff(table["backoff"], f"{where}.backoff")
        children = self.children(table.get("children", []), f"{where}.children", path)
        try:
            return SupervisorSpec(children, **flags)
        except ConfigError as exc:
            raise self.from_spec(exc, where, "supervisor") from exc

    def backoff(self, value: object, where: str) -> Backoff:
        table = self.table(value, where)
        self.keys(table, where, _BACKOFF_KEYS)
        try:
            return Backoff(**table)
        except ConfigError as exc:
            raise self.from_spec(exc, where, "backoff") from exc

    def children(self, value: object, where: str, path: str) -> list[ChildSpec]:
        if not isinstance(value, list):
            raise self.fail(
                where, f"{value!r} is {kind_of(value)}, expected an array of tables ([[...]])"
            )
        out = []
        for i, item in enumerate(value):
            child_where = f"{where}[{i}]"
            table = self.table(item, child_where)
            child_id = check_id(
                self.string(
                    self.required(table, "id", child_where, "the child's id"), f"{child_where}.id"
                ),
                self.at(f"{child_where}.id"),
            )
            child = self.child(table, child_where, f"{path}.{child_id}", child_id)
            if child is not None:
                out.append(child)
        return out

    def child(
        self, table: dict[str, Any], where: str, path: str, child_id: str
    ) -> ChildSpec | None:
        """The child's spec; ``None`` for an actor that runs in a pool (the pool has it)."""
        is_actor = "actor" in table
        is_supervisor = "children" in table or "strategy" in table
        if is_actor and is_supervisor:
            raise self.fail(
                where,
                "has both 'actor' (an actor child) and 'children'/'strategy' (a nested "
                "supervisor): a child is one or the other",
            )
        if not is_actor and not is_supervisor:
            raise self.fail(
                where,
                "needs 'actor' (an actor child: \"package.module:Class\") or 'children' "
                "(a nested supervisor)",
            )
        if stream_keys := sorted(_STREAM_CHILD_KEYS & table.keys()):
            raise self.fail(
                f"{where}.{stream_keys[0]}",
                "a stream's QoS is not set on a child: declare it once per subject in the "
                'top-level [streams."<subject>"] table (qos = {...}, limits = {...})',
            )
        if "movable" in table and "pool" not in table:
            raise self.fail(f"{where}.movable", 'only applies to an actor with pool = "<name>"')
        if "pool" in table:
            if not is_actor:
                raise self.fail(f"{where}.pool", "only an actor child runs in a pool")
            pool, actor = pooled_actor(self, table, where, path, self.actor(table, where))
            self.pooled.setdefault(pool, []).append((where, actor))
            return None
        if is_actor:
            self.keys(table, where, _ACTOR_KEYS)
        else:
            self.keys(table, where, _NESTED_KEYS)
        self.place(table, where, path)
        restart = Restart.PERMANENT
        if "restart" in table:
            restart = self.choice(table["restart"], Restart, f"{where}.restart")
        shutdown = None
        if "shutdown" in table:
            shutdown = check_shutdown(table["shutdown"], self.at(f"{where}.shutdown"))
        process = (
            self.boolean(table["process"], f"{where}.process") if "process" in table else False
        )
        significant = (
            self.boolean(table["significant"], f"{where}.significant")
            if "significant" in table
            else False
        )
        heartbeat_timeout = DEFAULT_HEARTBEAT_TIMEOUT
        start_timeout = DEFAULT_START_TIMEOUT
        for key in ("heartbeat_timeout", "start_timeout", "standby"):
            if key in table and not process:
                raise self.fail(f"{where}.{key}", "only applies to a child with process = true")
        if "heartbeat_timeout" in table:
            heartbeat_timeout = self.seconds(
                table["heartbeat_timeout"], f"{where}.heartbeat_timeout"
            )
        if "start_timeout" in table:
            start_timeout = self.seconds(table["start_timeout"], f"{where}.start_timeout")
        standby = self.boolean(table["standby"], f"{where}.standby") if "standby" in table else True
        target: ActorStart | SupervisorSpec = (
            self.actor(table, where) if is_actor else self.supervisor(table, where, path)
        )
        if not process:
            return ChildSpec(
                child_id, target, restart=restart, shutdown=shutdown, significant=significant
            )
        try:
            node = process_child(
                child_id,
                target,
                None,
                restart=restart,
                shutdown=shutdown,
                heartbeat_timeout=heartbeat_timeout,
                start_timeout=start_timeout,
                standby=standby,
            )
        except ConfigError as exc:
            raise self.fail(f"{where}.process", str(exc)) from exc
        return dataclasses.replace(node, significant=significant) if significant else node

    def actor(self, table: dict[str, Any], where: str) -> ActorStart:
        path = self.string(table["actor"], f"{where}.actor")
        cls = resolve(path, where=self.at(f"{where}.actor"))
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise self.fail(
                f"{where}.actor",
                f"{path!r} is {_describe(cls)}, not a diaspora Actor subclass",
            )
        args = self.table(table["args"], f"{where}.args") if "args" in table else {}
        check_actor_args(cls, args, self.at(f"{where}.args"))
        inputs = None
        if "inputs" in table:
            raw = table["inputs"]
            if not isinstance(raw, list):
                raise self.fail(
                    f"{where}.inputs", f"{raw!r} is {kind_of(raw)}, expected an array of subjects"
                )
            inputs = tuple(
                check_input(
                    self.string(s, f"{where}.inputs[{i}]"), where=self.at(f"{where}.inputs[{i}]")
                )
                for i, s in enumerate(raw)
            )
        poison = None
        if "max_attempts" in table or "on_poison" in table:
            poison = PoisonPolicy(
                max_attempts=self.integer(table["max_attempts"], f"{where}.max_attempts", minimum=1)
                if "max_attempts" in table
                else None,
                on_poison=self.choice(table["on_poison"], OnPoison, f"{where}.on_poison")
                if "on_poison" in table
                else None,
            )
        store = stored_checkpoints(table, self.at(f"{where}.checkpoint_storage"))
        return ActorStart(cls, None, args, inputs, poison=poison, checkpoint_storage=store)


def _describe(obj: object) -> str:
    if isinstance(obj, type):
        return f"the class {obj.__qualname__}"
    if callable(obj):
        return f"the callable {getattr(obj, '__qualname__', repr(obj))}"
    return f"{type(obj).__name__} {obj!r}"
