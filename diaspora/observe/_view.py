"""What ``diaspora top`` draws: a model's snapshot as rich tables (no terminal I/O here).

:func:`render` turns a snapshot (:meth:`WorkflowModel.snapshot`) and the
view's settings (:class:`TopState`: sort key, filter) into one renderable:
a header line, the tree (one row per actor and supervisor), the sites and
their links, the active alerts and the latest incidents.

>>> import io
>>> from rich.console import Console
>>> from diaspora.observe import WorkflowModel
>>> console = Console(file=io.StringIO(), width=120, record=True)
>>> console.print(render(WorkflowModel().snapshot(now=0.0), TopState()))
>>> "no actors seen yet" in console.export_text()
True
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

__all__ = ["SORTS", "TopState", "render"]

#: Sort keys ``s`` cycles through: the tree's own order first.
SORTS: Final = ("tree", "lag", "restarts", "inputs/s", "state")
_STATE_STYLE: Final = {
    "running": "green",
    "crashed": "bold red",
    "dead": "bold red",
    "gave_up": "bold red",
    "hung": "bold red",
    "backoff": "yellow",
    "stalled": "yellow",
    "restarting": "yellow",
    "stopped": "dim",
    "exited": "dim",
    "up": "green",
    "degraded": "yellow",
    "down": "bold red",
}


@dataclass(slots=True)
class TopState:
    """What the keys change: the sort key, its direction, the id filter, problems only."""

    sort: str = "tree"
    reverse: bool = False
    filter: str = ""
    problems_only: bool = False
    typing: bool = False  # "/" pressed: keys go to the filter until Enter

    def key(self, key: str) -> bool:
        """Apply one key; ``False`` when it asks to quit."""
        if self.typing:
            if key in ("\r", "\n"):
                self.typing = False
            elif key == "\x1b":
                self.typing, self.filter = False, ""
            elif key in ("\x7f", "\b"):
                self.filter = self.filter[:-1]
            elif key.isprintable():
                self.filter += key
            return True
        if key in ("q", "Q", "\x03"):
            return False
        if key == "s":
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        elif key == "r":
            self.reverse = not self.reverse
        elif key == "/":
            self.typing, self.filter = True, ""
        elif key == "\x1b":
            self.filter = ""
        elif key == "p":
            self.problems_only = not self.problems_only
        return True


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _clock(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S")


def _problem(row: dict[str, Any]) -> bool:
    return row["state"] not in ("running", "unknown") or bool(row["restarts"]) or bool(row["lag"])


def _sorted(rows: list[dict[str, Any]], state: TopState) -> list[dict[str, Any]]:
    if state.filter:
        rows = [r for r in rows if state.filter in r["id"]]
    if state.problems_only:
        rows = [r for r in rows if _problem(r)]
    keys = {
        "lag": lambda r: -(r["lag"] or 0),
        "restarts": lambda r: -r["restarts"],
        "inputs/s": lambda r: -(r["inputs_per_s"] or 0.0),
        "state": lambda r: r["state"],
    }
    if state.sort in keys:
        rows = sorted(rows, key=keys[state.sort])
    return list(reversed(rows)) if state.reverse else rows


def _tree(snap: dict[str, Any], state: TopState, max_rows: int | None) -> Table:
    table = Table(box=box.MINIMAL, title_justify="left", pad_edge=False)
    for name, justify, least in [
        ("actor", "left", 14), ("state", "left", 9), ("where", "left", 6), ("inc", "right", 3),
        ("rst", "right", 3), ("in/s", "right", 5), ("out/s", "right", 5), ("lag", "right", 4),
        ("lag s", "right", 5), ("policy", "left", 0), ("last error", "left", 0),
    ]:  # fmt: skip
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            min_width=least or None,
            overflow="ellipsis",
            no_wrap=True,
        )
    rows = _sorted(snap["tree"], state)
    hidden = 0
    if max_rows is not None and len(rows) > max_rows:
        hidden, rows = len(rows) - max_rows + 1, rows[: max(1, max_rows - 1)]
    for row in rows:
        indent = "  " * row["depth"] if state.sort == "tree" else ""
        where = row["site"] or ""
        if row["worker"]:
            where = f"{where}/{row['worker']}" if where else row["worker"]
        if row["pid"] and not where:
            where = f"pid {row['pid']}"
        policy = ", ".join(f"{s}={p}" for s, p in row["policy"].items())
        table.add_row(
            indent + row["id"],
            Text(row["state"], style=_STATE_STYLE.get(row["state"], "")),
            where,
            "" if row["kind"] == "supervisor" else str(row["incarnation"]),
            str(row["restarts"]) if row["kind"] != "supervisor" else "",
            _num(row["inputs_per_s"]),
            _num(row["outputs_per_s"]),
            _num(row["lag"]),
            _num(row["lag_s"]),
            policy,
            row["last_error"] or "",
        )
    if hidden:
        table.add_row(f"... {hidden} more rows: s sorts, / filters, p problems only")
    if not rows:
        table.add_row("no actors seen yet" if not snap["tree"] else "no row matches the filter")
    return table


def _sites(snap: dict[str, Any]) -> Table:
    table = Table(box=box.MINIMAL, pad_edge=False)
    for name in ("site", "link", "rtt ms", "in B/s", "out B/s", "pending B", "workers", "faults"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    for site in snap["sites"]:
        faults = " ".join(f"{k}({v})" if v else k for k, v in site["faults"].items())
        table.add_row(
            site["name"],
            Text(site["state"], style=_STATE_STYLE.get(site["state"], "")),
            _num(site["rtt_ms"], 2),
            _num(site["in_bytes_per_s"], 0),
            _num(site["out_bytes_per_s"], 0),
            _num(site["pending_bytes"]),
            site["workers"] or "",
            faults,
        )
    return table


def _incidents(snap: dict[str, Any], limit: int) -> Table:
    table = Table(box=box.MINIMAL, pad_edge=False)
    for name in ("at", "incident", "who", "recovery", "detail"):
        table.add_column(name, no_wrap=True, overflow="ellipsis")
    alerts = [dict(a, kind=f"ALERT {a['kind']}") for a in snap["alerts"]]
    latest = [i for i in reversed(snap["timeline"]) if not (i["alert"] and i["open"])][:limit]
    for item in [*alerts, *latest]:
        if item["open"]:
            recovery = Text("open", style="bold red")
        else:
            recovery = Text(f"{item['recovery_s']:.2f}s" if item["recovery_s"] else "")
        style = "bold red" if item["kind"].startswith("ALERT") else ""
        table.add_row(
            _clock(item["start"]), Text(item["kind"], style=style), item["who"], recovery,
            item["detail"],
        )  # fmt: skip
    return table


def render(
    snap: dict[str, Any], state: TopState, *, source: str = "", height: int | None = None
) -> RenderableType:
    """The whole screen for one snapshot; ``height`` (lines) limits the tree's rows."""
    connected = {True: "connected", False: "DISCONNECTED", None: ""}[snap["connected"]]
    sort = f"sort {state.sort}{' (reversed)' if state.reverse else ''}"
    shown = (
        f"filter /{state.filter}{'_' if state.typing else ''}"
        if state.filter or state.typing
        else ""
    )
    header = Text.assemble(
        ("diaspora top ", "bold"),
        f"{source}  {_clock(snap['now'])}  events {snap['events']}  ",
        (connected, "bold red" if snap["connected"] is False else "green"),
        f"  {sort}  {shown}{'  problems only' if state.problems_only else ''}",
    )
    keys = Text("q quit  s sort  r reverse  / filter  Esc clear  p problems only", style="dim")
    max_rows = None
    if height is not None:  # header, table rules, sites, the incidents, the keys
        max_rows = max(3, height - 22 - (len(snap["sites"]) + 4 if snap["sites"] else 0))
    parts: list[RenderableType] = [header, _tree(snap, state, max_rows)]
    if snap["sites"]:
        parts.append(_sites(snap))
    parts += [_incidents(snap, limit=8), keys]
    return Group(*parts)
