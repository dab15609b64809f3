"""The dashboard's panels as HTML fragments, rendered on the server from a model's snapshot.

The page swaps each panel's inner HTML when the server sends new ones, so
it needs no script beyond that. Every row carries ``data-`` attributes
(``data-actor``, ``data-state``, ``data-restarts``, ``data-kind``,
``data-recovery``) for scripts and tests to read.

>>> from diaspora.observe import WorkflowModel
>>> panels = render_panels(WorkflowModel().snapshot(now=0.0))
>>> sorted(panels)
['alerts', 'plots', 'pools', 'sites', 'status', 'timeline', 'tree', 'views']
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from diaspora.observe._svg import line_plot

__all__ = ["render_panels"]


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def _clock(at: float | None) -> str:
    return "-" if at is None else datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3]


def _table(head: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _tree(snap: dict[str, Any]) -> str:
    rows = []
    for row in snap["tree"]:
        where = " / ".join(str(p) for p in (row["site"], row["worker"]) if p)
        if not where and row["pid"]:
            where = f"pid {row['pid']}"
        policy = ", ".join(f"{s}: {p}" for s, p in row["policy"].items())
        actor = row["kind"] != "supervisor"
        cells = [
            f'<td class="id" style="padding-left:{0.4 + 1.2 * row["depth"]:.1f}em">'
            f"{escape(row['id'])}</td>",
            f'<td class="state {escape(row["state"])}">{escape(row["state"])}</td>',
            f"<td>{escape(where)}</td>",
            f"<td class=n>{row['incarnation'] if actor else ''}</td>",
            f"<td class=n>{row['restarts'] if actor else ''}</td>",
            f"<td class=n>{_num(row['inputs_per_s'])}</td>",
            f"<td class=n>{_num(row['outputs_per_s'])}</td>",
            f"<td class=n>{_num(row['lag'])}</td>",
            f"<td class=n>{_num(row['lag_s'])}</td>",
            f"<td>{escape(policy)}</td>",
            f'<td class="error">{escape(row["last_error"] or "")}</td>',
        ]
        rows.append(
            f'<tr data-actor="{escape(row["id"])}" data-kind="{escape(row["kind"])}" '
            f'data-state="{escape(row["state"])}" data-restarts="{row["restarts"]}" '
            f'data-incarnation="{row["incarnation"]}">{"".join(cells)}</tr>'
        )
    head = ["actor", "state", "where", "inc", "restarts", "in/s", "out/s", "lag", "lag s"]
    return _table([*head, "policy", "last error"], rows, "no actors seen yet")


def _plots(snap: dict[str, Any]) -> str:
    inputs = {row["id"]: row["inputs"] for row in snap["tree"]}

    def label(name: str) -> str:  # the actor and the streams it reads
        streams = ", ".join(inputs.get(name, []))
        return f"{name} ← {streams}" if streams else name

    lag = {label(name): s["lag"] for name, s in snap["series"].items() if s["lag"]}
    rate = {label(name): s["rate"] for name, s in snap["series"].items() if s["rate"]}
    now = snap["now"]
    return (
        f'<div class="plot-box" id="lag-plot">{line_plot("lag (items)", lag, now=now)}</div>'
        f'<div class="plot-box" id="rate-plot">{line_plot("inputs/s", rate, now=now)}</div>'
    )


def _timeline(snap: dict[str, Any]) -> str:
    rows = []
    for item in reversed(snap["timeline"][-200:]):
        if item["open"]:
            recovery = '<span class="open">not recovered</span>'
        elif item["end"] == item["start"]:
            recovery = ""
        else:
            recovery = f"recovered in {item['recovery_s']:.3f} s"
        rows.append(
            f'<tr data-kind="{escape(item["kind"])}" data-who="{escape(item["who"])}" '
            f'data-open="{str(item["open"]).lower()}" '
            f'data-recovery="{"" if item["recovery_s"] is None else item["recovery_s"]}">'
            f"<td>{_clock(item['start'])}</td><td class=kind>{escape(item['kind'])}</td>"
            f"<td>{escape(item['who'])}</td><td>{recovery}</td>"
            f'<td class="detail">{escape(item["detail"])}</td></tr>'
        )
    return _table(["at", "what", "who", "recovery", "detail"], rows, "nothing happened yet")


def _sites(snap: dict[str, Any]) -> str:
    rows = []
    for site in snap["sites"]:
        faults = ", ".join(f"{k} {v}".strip() for k, v in site["faults"].items())
        rows.append(
            f'<tr data-site="{escape(site["name"])}" data-state="{escape(site["state"])}">'
            f"<td>{escape(site['name'])}</td>"
            f'<td class="state {escape(site["state"])}">{escape(site["state"])}</td>'
            f"<td class=n>{_num(site['rtt_ms'], 2)}</td>"
            f"<td class=n>{_num(site['in_bytes_per_s'], 0)}</td>"
            f"<td class=n>{_num(site['out_bytes_per_s'], 0)}</td>"
            f"<td class=n>{_num(site['pending_bytes'])}</td>"
            f"<td>{escape(site['workers'] or '')}</td><td>{escape(faults)}</td></tr>"
        )
    head = ["site", "link", "rtt ms", "in B/s", "out B/s", "pending B", "workers", "faults"]
    return _table(head, rows, "no sites seen")


def _alerts(snap: dict[str, Any]) -> str:
    items = [
        f'<li class="alert" data-who="{escape(a["who"])}"><b>{escape(a["kind"])}</b> '
        f"{escape(a['who'])} since {_clock(a['start'])}: {escape(a['detail'])}</li>"
        for a in snap["alerts"]
    ]
    return f"<ul>{''.join(items)}</ul>" if items else '<p class="empty">no active alerts</p>'


def _keyed(entries: dict[str, dict[str, Any]], empty: str) -> str:
    rows = []
    for name, fields in sorted(entries.items()):
        shown = ", ".join(
            f"{k}={_num(v)}"
            for k, v in fields.items()
            if k != "updated" and not isinstance(v, dict)
        )
        nested = [f"{k}: {escape(str(v))}" for k, v in fields.items() if isinstance(v, dict)]
        rows.append(
            f"<tr><td>{escape(name)}</td><td>{shown}{'; '.join(nested)}</td>"
            f"<td>{_clock(fields.get('updated'))}</td></tr>"
        )
    return _table(["name", "state", "updated"], rows, empty)


def _status(snap: dict[str, Any]) -> str:
    connected = {True: "connected", False: "disconnected", None: "connecting"}[snap["connected"]]
    return (
        f'<span class="conn {connected}" data-connected="{connected}">{connected}</span> '
        f"events {snap['events']} · last seq {snap['last_seq']} · {_clock(snap['now'])} UTC"
    )


def render_panels(snap: dict[str, Any]) -> dict[str, str]:
    """Each panel's inner HTML, by the id of its element in the page."""
    return {
        "status": _status(snap),
        "tree": _tree(snap),
        "plots": _plots(snap),
        "timeline": _timeline(snap),
        "sites": _sites(snap),
        "alerts": _alerts(snap),
        "views": _keyed(snap["views"], "no views seen"),
        "pools": _keyed(snap["pools"], "no pools seen"),
    }
