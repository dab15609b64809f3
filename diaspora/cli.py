"""The ``diaspora`` command.

``diaspora actor PATH``
    Run one actor (``package.module:Class``) until SIGINT/SIGTERM, which stop
    it gracefully (finish the message at hand, checkpoint). Exit status 0 on a
    graceful stop, 1 when the actor crashed, 2 on a usage or config error
    (:class:`~diaspora.exitcode.ExitCode`).

``diaspora run FILE [--url URL] [--ephemeral] [--link-proxy] [--quiet | --json] [--every S]``
    Run a supervision tree from a TOML file (see
    :mod:`diaspora.workflow._config`) until SIGINT/SIGTERM, which stop it in
    reverse start order (a second signal kills what is left). The fabric is
    ``--url``, else the file's ``[fabric] url``, else ``$DIASPORA_URL``, else
    an embedded server whose store, with the actors' local state
    (histories), is kept in the state directory (``$DIASPORA_STATE_DIR``,
    default ``./.diaspora/``): run it again and every actor resumes from its
    checkpoint with every stream intact. ``--ephemeral`` throws both away on
    exit. A file with ``[sites]`` runs across them instead: one embedded
    server per site without a url (stores under ``sites/<site>/`` of the
    state directory), linked by leaf connections, each child on its site's
    server (:mod:`diaspora.workflow._siteconfig`); ``--link-proxy`` puts a
    link proxy obeying fault orders on every embedded site's uplink. Every
    stream the tree consumes (actors' inputs and ``[streams]``) exists
    before the first actor starts. Status lines go to stderr
    (``connecting``, ``running``, then every ``--every`` seconds a summary:
    inputs handled, outputs, restarts, lag; ``stopped``), as JSON lines on
    stdout with ``--json``, none with ``--quiet``
    (:mod:`diaspora.workflow._status`). Supervision events are published
    under ``diaspora.events.supervision.>``. Exit status
    (:class:`~diaspora.exitcode.ExitCode`):

    - 0: stopped by a signal (or the root supervisor returned) after an
      orderly shutdown;
    - 1: the root supervisor gave up (restart intensity exceeded), or another
      runtime failure (fabric unreachable...);
    - 2: usage or config error: nothing was started;
    - 3: a child failed to start; the ones started before it were stopped.

``diaspora check FILE``
    Validate a tree file without running it (imports the actors it names).
    Exit status 0 and a one-line summary, or 2 and the error on stderr.

``diaspora migrate ACTOR --to WORKER [--url URL] [--budget-ms MS] [--stop-and-copy]``
    Move the running instance of a migratable actor (one running with the
    :class:`~diaspora.compute.Migratable` stage) to the standby at
    ``WORKER`` (name workers after their site to move by site), live, with
    pre-copy rounds (:mod:`diaspora.compute._migrate`). Prints one JSON line
    (``from``/``origin``, ``to``, ``rounds``, ``bytes``, ``downtime_ms``);
    exit status 1 if the migration aborted (the source keeps running).

``diaspora status [--url URL] [--json]``
    The pools of a running tree: each site's workers (running, wanted, min
    and max), degraded sites and deficits, where each actor runs
    (:mod:`diaspora.compute._poolstatus`).
``diaspora events``, ``diaspora top``, ``diaspora dashboard``
    Read-only views of a running workflow (:mod:`diaspora.observe._cli`).

Every command imports ``actor = "mymodule:Cls"`` from the current directory
first, as ``python -m`` would.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import anyio
from anyio.abc import TaskStatus

from diaspora._importpath import resolve
from diaspora._storagecli import add_storage_command
from diaspora.actor import Actor, ActorRuntime
from diaspora.compute import MigrationPolicy, migrate
from diaspora.compute._poolstatus import show_pools
from diaspora.errors import (
    ActorCrashed,
    ChildStartError,
    ConfigError,
    DiasporaError,
    RestartIntensityExceeded,
)
from diaspora.exitcode import ExitCode
from diaspora.fabric import (
    BridgeMonitor,
    EmbeddedServer,
    Fabric,
    Sites,
    ensure_bridge,
    link_control_subject,
)
from diaspora.fabric._connection import split_urls
from diaspora.log import configure_logging, get_logger
from diaspora.observe import Progress
from diaspora.observe._cli import add_commands as add_observe_commands
from diaspora.supervision import Supervisor
from diaspora.supervision._runnable import run_until
from diaspora.triggers import serve_control
from diaspora.workflow import TreeConfig, load_config
from diaspora.workflow._state import StateDir
from diaspora.workflow._status import RunStatus

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diaspora", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    actor = sub.add_parser("actor", help="run one actor until SIGINT/SIGTERM")
    actor.add_argument("path", help="the actor class, package.module:Class")
    actor.add_argument("--id", help="actor id (default: the class name in lower case)")
    actor.add_argument("--url", help="NATS URL(s); default $DIASPORA_URL or an embedded server")
    actor.add_argument("--args", default="{}", help="constructor arguments as a JSON object")
    actor.add_argument("--inputs", help="comma-separated input subjects (overrides the class)")
    run = sub.add_parser("run", help="run a supervision tree from a TOML file until SIGINT/SIGTERM")
    run.add_argument("file", help="the tree's TOML file (see supervisors/)")
    run.add_argument(
        "--url", help="NATS URL(s); default the file's [fabric] url, $DIASPORA_URL, or embedded"
    )
    run.add_argument(
        "--link-proxy",
        action="store_true",
        help="with [sites]: a link proxy on every embedded site's uplink, obeying fault orders",
    )
    run.add_argument(
        "--ephemeral",
        action="store_true",
        help="embedded server only: keep no state (default: $DIASPORA_STATE_DIR or ./.diaspora)",
    )
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--quiet", action="store_true", help="no status lines")
    shown.add_argument("--json", action="store_true", help="status lines as JSON on stdout")
    run.add_argument(
        "--every", type=float, default=10.0, help="seconds between summary lines (default 10)"
    )
    move = sub.add_parser("migrate", help="move a running migratable actor to another worker")
    move.add_argument("actor", help="the actor id, e.g. root.counter")
    move.add_argument("--to", required=True, help="the worker (or site) whose standby takes it")
    move.add_argument("--url", help="NATS URL(s) of the running tree; default $DIASPORA_URL")
    move.add_argument("--budget-ms", type=float, default=20.0, help="downtime budget (default 20)")
    move.add_argument("--stop-and-copy", action="store_true", help="no pre-copy rounds")
    move.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    status = sub.add_parser("status", help="the pools of a running tree: workers per site")
    status.add_argument("--url", help="NATS URL(s) of the running tree; default $DIASPORA_URL")
    status.add_argument("--json", action="store_true", help="each pool's record as a JSON line")
    demo = sub.add_parser("demo", help="the main job: diaspora demo ptychography", add_help=False)
    demo.add_argument("rest", nargs=argparse.REMAINDER)  # main() hands it to sims.demo
    check = sub.add_parser("check", help="validate a supervision-tree TOML file without running")
    check.add_argument("file", help="the tree's TOML file")
    add_observe_commands(sub)
    add_storage_command(sub)
    return parser


async def _until_signal(stop: Callable[[], None], kill: Callable[[], None] | None = None) -> None:
    """Call ``stop`` on the first SIGINT/SIGTERM and ``kill`` (if any) on the second."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        seen = 0
        async for signum in signals:
            seen += 1
            get_logger().info("signal", signal=signal.Signals(signum).name, count=seen)
            if seen == 1:
                stop()
                if kill is None:
                    return
            else:
                assert kill is not None
                kill()
                return


async def _run_tree(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    if not args.every > 0:
        raise ConfigError(f"--every: {args.every!r} must be a positive number of seconds")
    status = RunStatus(
        out=sys.stdout if args.json else sys.stderr, json=args.json, quiet=args.quiet
    )
    if config.sites:
        return await _run_sites(config, args, status)
    if args.link_proxy:
        raise ConfigError(f"--link-proxy: {config.source} declares no [sites] (no uplinks)")
    url = args.url or config.url
    if url is not None or os.environ.get("DIASPORA_URL"):
        if args.ephemeral:
            raise ConfigError(
                "--ephemeral: only for the embedded server (no --url, no [fabric] url)"
            )
        # with neither --url nor [fabric] url, the Fabric reads $DIASPORA_URL itself
        shown = ", ".join(split_urls(url or os.environ["DIASPORA_URL"]))
        status.say("connecting", f"connecting to {shown}", url=shown)
        return await _serve(config, args, status, url, shown)
    with StateDir.open(ephemeral=args.ephemeral) as state:
        async with EmbeddedServer(store_dir=state.store, name=f"{config.name}-embedded") as server:
            where = "no state kept (--ephemeral)" if state.ephemeral else f"state in {state.shown}"
            status.say(
                "connecting",
                f"connecting to {server.url} (embedded nats-server, {where})",
                url=server.url,
                embedded=True,
                state_dir=None if state.ephemeral else str(state.path),
            )
            code = await _serve(config, args, status, server.url, server.url)
        _say_kept(status, state)
        return code


async def _serve(
    config: TreeConfig,
    args: argparse.Namespace,
    status: RunStatus,
    url: str | Sequence[str] | None,
    shown: str,
) -> int:
    async with Fabric(url, name=config.name, auth=config.auth) as fabric:
        await config.declare_streams(fabric)
        return await _supervise(config, args, status, fabric, config.supervisor(fabric), shown)


async def _run_sites(config: TreeConfig, args: argparse.Namespace, status: RunStatus) -> int:
    """Start (or check) every site, then run the tree with each child on its site's fabric."""
    if args.url is not None:
        raise ConfigError(f"--url: {config.source} declares [sites]: give each site its url there")
    specs = config.sites
    if args.link_proxy:  # a proxy on every uplink Diaspora starts
        specs = tuple(
            dataclasses.replace(s, link_proxy=True) if s.embedded and s.parent else s for s in specs
        )
    with StateDir.open(ephemeral=args.ephemeral) as state:
        stores = None if state.ephemeral else state.path / "sites"
        async with (
            Sites(specs, state_dir=stores) as sites,
            contextlib.AsyncExitStack() as stack,
            anyio.create_task_group() as monitors,
        ):
            fabrics: dict[str, Fabric] = {}
            for spec in config.sites:
                site = sites[spec.name]
                kind = "embedded nats-server" if spec.embedded else "server"
                control = None if site.proxy is None else link_control_subject(spec.name)
                if control is not None:
                    kind += f", uplink through a link proxy obeying {control}"
                status.say(
                    "connecting",
                    f"site {spec.name}: {site.url} ({kind}, JetStream domain {spec.domain!r})",
                    site=spec.name,
                    url=site.url,
                    domain=spec.domain,
                    embedded=spec.embedded,
                    link_control=control,
                )
                fabric = Fabric(site.url, name=f"{config.name}-{spec.name}", auth=spec.auth)
                fabrics[spec.name] = await stack.enter_async_context(fabric)
            for name, fabric in fabrics.items():
                await config.declare_streams(fabric, site=name)
            for decl in config.bridges:  # the origins exist now: copy them to their readers
                bridge = decl.bridge(config.sites)
                await ensure_bridge(fabrics[decl.target], bridge)
                status.say(
                    "bridged",
                    f"bridge {decl.subject}: {decl.source} -> {decl.target} ({bridge.direction})",
                    subject=decl.subject,
                    source=decl.source,
                    target=decl.target,
                    direction=str(bridge.direction),
                )
            for decl in config.bridges:  # holes in a copy (an origin overflowed): lost events
                monitor = BridgeMonitor(fabrics[decl.target], decl.bridge(config.sites), keep=True)
                monitors.start_soon(monitor.run)
            root_site = config.site_of(config.name)
            assert root_site is not None  # the parser places the root when sites exist
            root = fabrics[root_site]
            supervisor = Supervisor(config.bind_sites(fabrics), name=config.name, on_event=root)
            shown = ", ".join(f"{name} {sites[name].url}" for name in fabrics)
            code = await _supervise(config, args, status, root, supervisor, shown)
            monitors.cancel_scope.cancel()
        _say_kept(status, state)
        return code


def _say_kept(status: RunStatus, state: StateDir) -> None:
    if not state.ephemeral:
        status.say(
            "state_kept",
            f"state kept in {state.shown}: run again to resume",
            state_dir=str(state.path),
        )


async def _supervise(
    config: TreeConfig,
    args: argparse.Namespace,
    status: RunStatus,
    fabric: Fabric,
    supervisor: Supervisor,
    shown: str,
) -> int:
    """Run ``supervisor`` until a signal, saying what runs and, periodically, how it goes."""
    actors = config.actors()

    async def until_signal(stop: Callable[[], None], kill: Callable[[], None]) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(status.summaries, fabric, actors, args.every)
            await _until_signal(stop, kill)
            tg.cancel_scope.cancel()

    running = _Running(
        status,
        f"running {config.name!r} on {shown}: {len(actors)} "
        f"actor{'s' if len(actors) != 1 else ''}"
        f"{' (' + ', '.join(actors) + ')' if actors else ''}; Ctrl-C to stop",
        url=shown,
        actors=list(actors),
    )
    async with status.watching(fabric), serve_control(fabric, supervisor):
        await run_until(supervisor, until_signal, task_status=running)
    status.say("stopped", "stopped")
    return ExitCode.OK


class _Running(TaskStatus[None]):
    """The tree's ``task_status``: once every child has started, say so."""

    def __init__(self, status: RunStatus, text: str, **fields: Any) -> None:
        self._status, self._text, self._fields = status, text, fields

    def started(self, value: None = None) -> None:
        self._status.say("running", self._text, **self._fields)


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{config.source}: ok: {config.summary()}")
    return ExitCode.OK


async def _run_actor(args: argparse.Namespace) -> int:
    cls = resolve(args.path, where="actor")
    if not (isinstance(cls, type) and issubclass(cls, Actor)):
        raise ConfigError(f"actor: {args.path!r} is not a diaspora Actor subclass")
    try:
        kwargs: Any = json.loads(args.args)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--args: not JSON: {exc}") from exc
    if not isinstance(kwargs, dict):
        raise ConfigError(f"--args: {args.args!r} is not a JSON object")
    inputs = [s for s in args.inputs.split(",") if s] if args.inputs else None
    async with Fabric(args.url, name=args.id or cls.__name__.lower()) as fabric:
        runtime = ActorRuntime(cls, fabric, id=args.id, args=kwargs, inputs=inputs)
        await run_until(runtime, lambda stop, _kill: _until_signal(stop))
    return ExitCode.OK


async def _migrate(args: argparse.Namespace) -> int:
    policy = MigrationPolicy(budget_ms=args.budget_ms, precopy=not args.stop_and_copy)
    async with Fabric(args.url, name="migrate") as fabric:
        with Progress(f"migrating {args.actor} to {args.to}"):  # a spinner, on a terminal only
            done = await migrate(
                fabric, args.actor, to=args.to, policy=policy, timeout=args.timeout
            )
    print(json.dumps({"actor": done.name, **done.fields()}))
    return ExitCode.OK


def _import_from_cwd() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` does."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diaspora`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:  # its own options, --help included: sims/demo
        configure_logging()
        from sims.demo import main as demo

        return demo(argv[1:])
    args = _parser().parse_args(argv)
    configure_logging()
    _import_from_cwd()
    log = get_logger()
    try:
        if hasattr(args, "observe"):
            return int(args.observe(args))
        if args.command == "actor":
            return anyio.run(_run_actor, args)
        if args.command == "run":
            return anyio.run(_run_tree, args)
        if args.command == "check":
            return _check(args)
        if args.command == "demo":
            from sims.demo import main as demo  # the twin and the workflow live in sims/

            return demo(args.rest)
        if args.command == "migrate":
            return anyio.run(_migrate, args)
        if args.command == "status":
            return anyio.run(partial(show_pools, args.url, as_json=args.json))
    except ConfigError as exc:
        print(f"diaspora: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except ActorCrashed as exc:
        log.error("actor_crashed", reason=repr(exc.reason))
        return ExitCode.FAILED
    except RestartIntensityExceeded as exc:
        log.error("gave_up", error=str(exc), cause=repr(exc.__cause__))
        return ExitCode.FAILED
    except ChildStartError as exc:
        log.error("start_failed", error=str(exc), child=exc.child, cause=repr(exc.__cause__))
        return ExitCode.START_FAILED
    except DiasporaError as exc:
        log.error("failed", error=str(exc))
        return ExitCode.FAILED
    return ExitCode.USAGE


if __name__ == "__main__":
    sys.exit(main())
