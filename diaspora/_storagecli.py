"""``diaspora storage stat|repair|adapt|sweep``: a resilient storage bucket from the shell.

Every command opens the bucket on a fabric connected to ``--url`` (one
site's server), over ``--sites`` (``name`` or ``name=domain``, comma
separated; the order matters: it picks the manifest sites, like ``--meta``
and the policy's ``lose``, so give what the writers use). ``--policy`` is
an inline TOML table of :class:`~diaspora.storage.Policy` fields
(``'{ layout = "rs:3+2", lose = 2 }'``). The long commands (``repair``,
``adapt``) show a progress bar on a terminal and nothing elsewhere; the
result goes to stdout, as text or with ``--json`` one JSON object.

    diaspora storage stat   --url nats://hub:4222 --sites hub,a,b,c --bucket ck [NAME ...]
    diaspora storage repair --url ... --sites ... --bucket ck [NAME] [--move]
    diaspora storage adapt  --url ... --sites ... --bucket ck --policy '{ layout = "rs:2+1" }'
    diaspora storage sweep  --url ... --sites ... --bucket ck --min-age 600
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tomllib
from typing import Any

from diaspora.errors import ConfigError, FabricUnavailable, StorageError
from diaspora.exitcode import ExitCode
from diaspora.fabric import Fabric
from diaspora.observe import Progress
from diaspora.storage import RepairReport, Storage, StorageSpec

__all__ = ["add_storage_command"]


def add_storage_command(sub: Any) -> None:
    """Add ``storage`` (with ``stat``, ``repair``, ``adapt``, ``sweep``) to the subcommands."""
    storage = sub.add_parser("storage", help="a resilient storage bucket: stat, repair, adapt")
    ops = storage.add_subparsers(dest="storage_command", required=True)
    helps = {
        "stat": "the objects (or NAMEs' chunks): size, layouts, bytes stored",
        "repair": "rebuild lost and corrupt fragments (after a site came back or was replaced)",
        "adapt": "one adaptation pass: probe the sites, re-lay out chunks the policy wants",
        "sweep": "delete orphan fragments (named by no manifest) older than --min-age",
    }
    for name, text in helps.items():
        op = ops.add_parser(name, help=text)
        op.add_argument("--url", required=True, help="NATS URL of one site's server")
        op.add_argument("--sites", required=True, help="name or name=domain, comma separated")
        op.add_argument("--bucket", required=True, help="the storage bucket")
        op.add_argument("--meta", help="the first manifest site (default: the first of --sites)")
        op.add_argument("--here", help="the site --url is (default: the first of --sites)")
        op.add_argument("--policy", default="{}", help="an inline TOML table of Policy fields")
        op.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
        op.add_argument("--json", action="store_true", help="the result as one JSON object")
        if name == "stat":
            op.add_argument("names", nargs="*", help="objects to show chunk by chunk")
        if name == "repair":
            op.add_argument("name", nargs="?", help="only this object")
            op.add_argument("--move", action="store_true", help="rebuild lost sites' elsewhere")
        if name == "sweep":
            op.add_argument("--min-age", type=float, default=600.0, help="seconds (default 600)")
        op.set_defaults(observe=_main)


def spec_of(args: argparse.Namespace) -> StorageSpec:
    """The bucket the arguments name (:class:`ConfigError` naming the bad argument)."""
    sites: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in args.sites.split(","))):
        name, _, domain = part.partition("=")
        sites[name] = domain or name
    try:
        policy = tomllib.loads(f"policy = {args.policy}")["policy"]
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--policy {args.policy!r}: not an inline TOML table ({exc})") from None
    table = {"sites": sites, "bucket": args.bucket, "policy": policy}
    if args.meta:
        table["meta"] = args.meta
    return StorageSpec.from_table(table, "diaspora storage --sites/--bucket/--meta/--policy")


def _main(args: argparse.Namespace) -> int:
    import anyio

    try:
        spec = spec_of(args)
    except ConfigError as exc:
        print(f"diaspora storage: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        return int(anyio.run(_run, args, spec))
    except (StorageError, FabricUnavailable) as exc:
        print(f"diaspora storage {args.storage_command}: {exc}", file=sys.stderr)
        return ExitCode.FAILED


async def _run(args: argparse.Namespace, spec: StorageSpec) -> int:
    here = args.here or next(iter(spec.sites))
    async with (
        Fabric(args.url, name="diaspora-storage", request_timeout=args.timeout) as fabric,
        spec.open(fabric, here=here) as store,
    ):
        result = await _COMMANDS[args.storage_command](store, args)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return ExitCode.OK


async def _stat(store: Storage, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in args.names or await store.names():
        m = await store.stat(name)
        ratio = m.stored / m.size if m.size else 0.0
        if args.names:
            chunks = [
                {"size": c.size, "layout": str(c.layout), "sites": [f.site for f in c.fragments]}
                for c in m.chunks
            ]
            out[name] = {"size": m.size, "stored": m.stored, "sha256": m.sha256, "chunks": chunks}
        else:
            layouts = sorted({str(c.layout) for c in m.chunks})
            out[name] = f"{m.size} B, {len(m.chunks)} chunks {'/'.join(layouts)}, x{ratio:.2f}"
    return out


async def _repair(store: Storage, args: argparse.Namespace) -> dict[str, Any]:
    names = [args.name] if args.name else await store.names()
    total = RepairReport()
    with Progress(f"repair {store.bucket}", total=len(names)) as bar:
        for name in names:
            report = await store.repair(name, move=args.move)
            for field in dataclasses.fields(RepairReport):
                mine = getattr(total, field.name)
                setattr(total, field.name, mine + getattr(report, field.name))
            bar.advance(note=f"{name}: {report.rebuilt} rebuilt")
    return {
        "objects": total.objects,
        "chunks": total.chunks,
        "rebuilt": total.rebuilt,
        "moved": total.moved,
        "bytes_read": total.bytes_read,
        "bytes_written": total.bytes_written,
        "seconds": round(total.seconds, 3),
        "waiting": [list(w) for w in total.waiting],
        "lost": [list(c) for c in total.lost],
        "manifests": total.manifests,
    }


async def _adapt(store: Storage, args: argparse.Namespace) -> dict[str, Any]:
    with Progress(f"adapt {store.bucket}") as bar:
        report = await store.adapt()
        bar.update(note=f"{len(report.changed)} chunks moved")
    return {
        "changed": [f"{n}[{i}] {old} -> {new}" for n, i, old, new in report.changed],
        "bytes_moved": report.bytes_moved,
        "seconds": round(report.seconds, 3),
        "rate_limit": report.rate_limit,
        "slow": report.slow,
    }


async def _sweep(store: Storage, args: argparse.Namespace) -> dict[str, Any]:
    return {"deleted": await store.sweep(min_age=args.min_age)}


_COMMANDS = {"stat": _stat, "repair": _repair, "adapt": _adapt, "sweep": _sweep}
