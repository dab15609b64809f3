"""The ``diaspora`` command.

``diaspora actor PATH``
    Run one actor (``package.module:Class``) until SIGINT/SIGTERM, which stop
    it gracefully (finish the message at hand, checkpoint). Exit status 0 on a
    graceful stop, 1 when the actor crashed, 2 on a usage or config error
    (:class:`~diaspora.exitcode.ExitCode`).

``diaspora run FILE [--url URL]``
    Run a supervision tree from a TOML file (see
    :mod:`diaspora.workflow._config`) until SIGINT/SIGTERM, which stop it in
    reverse start order (a second signal kills what is left). The fabric is
    ``--url``, else the file's ``[fabric] url``, else ``$DIASPORA_URL``, else
    an embedded server. Supervision events are published under
    ``diaspora.events.supervision.>``. Exit status
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
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from diaspora._importpath import resolve
from diaspora.actor import Actor, ActorRuntime
from diaspora.errors import (
    ActorCrashed,
    ChildStartError,
    ConfigError,
    DiasporaError,
    RestartIntensityExceeded,
)
from diaspora.exitcode import ExitCode
from diaspora.fabric import Fabric
from diaspora.log import configure_logging, get_logger
from diaspora.supervision._runnable import run_until
from diaspora.workflow import load_config

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
    check = sub.add_parser("check", help="validate a supervision-tree TOML file without running")
    check.add_argument("file", help="the tree's TOML file")
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
    # with neither --url nor [fabric] url, the Fabric reads $DIASPORA_URL (else embeds a server)
    async with Fabric(args.url or config.url, name=config.name) as fabric:
        await config.declare_streams(fabric)
        await run_until(config.supervisor(fabric), _until_signal)
    return ExitCode.OK


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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diaspora`` console script."""
    args = _parser().parse_args(argv)
    configure_logging()
    log = get_logger()
    try:
        if args.command == "actor":
            return anyio.run(_run_actor, args)
        if args.command == "run":
            return anyio.run(_run_tree, args)
        if args.command == "check":
            return _check(args)
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
