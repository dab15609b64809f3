"""The ``diaspora`` command.

``diaspora actor PATH``
    Run one actor (``package.module:Class``) until SIGINT/SIGTERM, which stop
    it gracefully (finish the message at hand, checkpoint). Exit status 0 on a
    graceful stop, 1 when the actor crashed, 2 on a usage or config error.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio

from diaspora.actor import Actor, ActorRuntime
from diaspora.errors import ActorCrashed, ConfigError, DiasporaError
from diaspora.fabric import Fabric
from diaspora.importpath import resolve
from diaspora.log import configure_logging, get_logger

__all__ = ["main"]

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="diaspora", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    actor = sub.add_parser("actor", help="run one actor until SIGINT/SIGTERM")
    actor.add_argument("path", help="the actor class, package.module:Class")
    actor.add_argument("--id", help="actor id (default: the class name in lower case)")
    actor.add_argument("--url", help="NATS URL(s); default $DIASPORA_URL or an embedded server")
    actor.add_argument("--args", default="{}", help="constructor arguments as a JSON object")
    actor.add_argument("--inputs", help="comma-separated input subjects (overrides the class)")
    return parser


async def _until_signal(stop: Callable[[], None]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            get_logger().info("signal", signal=signal.Signals(signum).name)
            stop()
            return


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
        async with anyio.create_task_group() as tg:
            tg.start_soon(_until_signal, runtime.request_stop)
            try:
                await runtime.run()
            finally:
                tg.cancel_scope.cancel()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diaspora`` console script."""
    args = _parser().parse_args(argv)
    configure_logging()
    log = get_logger()
    try:
        if args.command == "actor":
            return anyio.run(_run_actor, args)
    except ConfigError as exc:
        print(f"diaspora: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ActorCrashed as exc:
        log.error("actor_crashed", reason=repr(exc.reason))
        return EXIT_CRASHED
    except DiasporaError as exc:
        log.error("failed", error=str(exc))
        return EXIT_CRASHED
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
