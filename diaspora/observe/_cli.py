"""The observe commands of ``diaspora``: ``events``, ``top`` and ``dashboard``.

``diaspora events [--url URL] [--follow] [--category C] [--actor A] [--site S] [--kind K]
[--since T] [--until T] [--json]``
    The events the stream holds (and, with ``--follow``, live ones), one line each.

``diaspora top [--url URL | FILE] [--monitor URL]... [--history S]``
    A live terminal view of the tree, the sites and the alerts; ``q`` quits.

``diaspora dashboard [--url URL] [--port P] [--bind ADDR --token T] [--monitor URL]...``
    The same, and plots and the timeline, as a web page (loopback unless told).

All three only read; they need the fabric's URL (``--url`` or ``$DIASPORA_URL``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import anyio

from diaspora.errors import ConfigError
from diaspora.fabric import Fabric
from diaspora.log import configure_logging
from diaspora.observe._eventscmd import parse_time, print_events
from diaspora.observe._reader import EventFilter

__all__ = ["add_commands", "observer"]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="NATS URL(s) of the fabric; default $DIASPORA_URL")


def add_commands(sub: Any) -> None:
    """Add ``events``, ``top`` and ``dashboard`` to the ``diaspora`` subcommands."""
    events = sub.add_parser("events", help="the events stream, decoded (replay, --follow)")
    _common(events)
    events.add_argument("--follow", "-f", action="store_true", help="go on with live events")
    for name in ("category", "actor", "site", "kind"):
        events.add_argument(f"--{name}", help=f"only events of this {name} (actor/site: a glob)")
    events.add_argument("--since", help="from this time: ISO 8601, Unix seconds or an age (10m)")
    events.add_argument("--until", help="up to this time (same forms)")
    events.add_argument("--json", action="store_true", help="JSON lines (the wire records)")
    events.set_defaults(observe=_events)

    top = sub.add_parser("top", help="a live terminal view of a running workflow")
    _common(top)
    top.add_argument("file", nargs="?", help="a file of `diaspora events --json` to show instead")
    top.add_argument("--every", type=float, default=2.0, help="seconds between frames off a tty")
    _views(top)
    top.set_defaults(observe=_top)

    dash = sub.add_parser("dashboard", help="a live web dashboard of a running workflow")
    _common(dash)
    dash.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765; 0: any)")
    dash.add_argument("--bind", default="127.0.0.1", help="address (non-loopback needs --token)")
    dash.add_argument("--token", help="the token a non-loopback page must be opened with")
    _views(dash)
    dash.set_defaults(observe=_dashboard)


def _views(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--monitor",
        action="append",
        default=[],
        help="a server's monitoring URL (http://host:8222), for its leaf links; repeatable",
    )
    parser.add_argument(
        "--history", type=float, default=3600.0, help="seconds of past events to replay first"
    )


def observer(url: str | None, command: str) -> Fabric:
    """A read-only fabric for ``command``: it creates nothing and needs a URL."""
    url = url or os.environ.get("DIASPORA_URL") or None
    if url is None:
        raise ConfigError(
            f"diaspora {command}: no fabric to read; pass --url nats://HOST:4222 "
            "or set $DIASPORA_URL"
        )
    return Fabric(url, name=f"observe-{command}", events_stream=False)


def _quiet_logs(level: str) -> None:
    configure_logging(os.environ.get("DIASPORA_LOG_LEVEL", level), force=True)


def _events(args: argparse.Namespace) -> int:
    _quiet_logs("WARNING")
    where = EventFilter(
        category=args.category,
        actor=args.actor,
        site=args.site,
        kind=args.kind,
        since=None if args.since is None else parse_time(args.since),
        until=None if args.until is None else parse_time(args.until, option="--until"),
    )

    async def main() -> None:
        async with observer(args.url, "events") as fabric:
            await print_events(fabric, where, follow=args.follow, as_json=args.json)

    try:
        anyio.run(main)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `diaspora events | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    return 0


def _top(args: argparse.Namespace) -> int:
    _quiet_logs("ERROR")
    from diaspora.observe._top import run_top  # rich: the observe extra

    return run_top(args)


def _dashboard(args: argparse.Namespace) -> int:
    _quiet_logs("WARNING")
    from diaspora.observe._dashboard import run_dashboard  # starlette, uvicorn: the extra

    return run_dashboard(args)
