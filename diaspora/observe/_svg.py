"""Small line plots drawn on the server as inline SVG: no plotting script in the page.

One polyline per series, a dot per point (so a reader, or a test, can count
them), the value axis from 0 to the largest value, the time axis over the
last ``window`` seconds.

>>> svg = line_plot("lag", {"root.sum": [(0.0, 0.0), (1.0, 50.0), (2.0, 10.0)]}, now=2.0)
>>> svg.count("<circle"), 'data-points="3"' in svg
(3, True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Final

__all__ = ["line_plot"]

#: Colours of successive series (colour-blind safe, Okabe-Ito).
PALETTE: Final = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def _fmt(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}"


def line_plot(
    title: str,
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    now: float,
    window: float | None = None,
    width: int = 420,
    height: int = 150,
) -> str:
    """An SVG plot of ``series`` (name to ``(time, value)`` points) over the last ``window`` s.

    ``None``: from the oldest point, at least 30 s and at most 300 s back.
    """
    if window is None:
        oldest = min((pts[0][0] for pts in series.values() if pts), default=now)
        window = min(300.0, max(30.0, now - oldest))
    left, right, top, bottom = 44, 8, 18, 20
    inner_w, inner_h = width - left - right, height - top - bottom
    start = now - window
    shown = {name: [(t, v) for t, v in points if t >= start] for name, points in series.items()}
    peak = max((v for pts in shown.values() for _, v in pts), default=0.0) or 1.0
    total = sum(len(pts) for pts in shown.values())

    def x(t: float) -> float:
        return left + (t - start) / window * inner_w

    def y(v: float) -> float:
        return top + inner_h - v / peak * inner_h

    parts = [
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" data-title="{escape(title)}" '
        f'data-points="{total}" role="img" aria-label="{escape(title)}">',
        f'<text x="{left}" y="12" class="plot-title">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + inner_h}" x2="{width - right}" y2="{top + inner_h}" '
        'class="axis"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + inner_h}" class="axis"/>',
        f'<text x="{left - 4}" y="{top + 4}" class="tick" text-anchor="end">{_fmt(peak)}</text>',
        f'<text x="{left - 4}" y="{top + inner_h}" class="tick" text-anchor="end">0</text>',
        f'<text x="{left}" y="{height - 4}" class="tick">-{window:.0f}s</text>',
        f'<text x="{width - right}" y="{height - 4}" class="tick" text-anchor="end">now</text>',
    ]
    for index, (name, points) in enumerate(sorted(shown.items())):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<g class="series" data-series="{escape(name)}" data-points="{len(points)}">')
        if len(points) > 1:
            parts.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/>'
            )
        parts += [
            f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="2" fill="{colour}">'
            f"<title>{escape(name)}: {_fmt(v)}</title></circle>"
            for t, v in points
        ]
        parts.append(
            f'<text x="{width - right}" y="{top + 12 * (index + 1)}" class="legend" '
            f'text-anchor="end" fill="{colour}">{escape(name)}</text></g>'
        )
    if total == 0:
        parts.append(
            f'<text x="{left + inner_w / 2}" y="{top + inner_h / 2}" class="tick" '
            'text-anchor="middle">no points yet</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
