"""A grouped bar chart as a self-contained SVG file, with no plotting library.

``kvgraph eval retrieval --out`` draws one per run: a group of bars per metric (``hit_rate@5``,
``mrr@10``...), one bar per retriever, the value printed above each bar. matplotlib would add
about 100 MB to an install (measured: matplotlib, fontTools, Pillow and friends) for one chart;
an SVG is plain text that every browser, editor and docs site shows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from kvgraph.errors import InvalidInputError

__all__ = ["PALETTE", "grouped_bar_svg"]

# Colour-blind-safe (Okabe-Ito) first, then Tableau's; cycles when there are more series.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#56B4E9",
    "#D55E00",
    "#F0E442",
    "#000000",
    "#8C564B",
    "#7F7F7F",
)

_BAR = 14  # px per bar
_GROUP_GAP = 18  # px between groups
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 16, 40, 56
_PLOT_H = 220
_LEGEND_ROW = 16
_CHAR_W = 6.6  # average width of a 11px sans-serif character, for layout only


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}"


def _nice_max(v: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^n at or above ``v`` (a readable axis top)."""
    if v <= 0:
        return 1.0
    exp = math.floor(math.log10(v))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        top = step * 10.0**exp
        if top >= v - 1e-12:
            return top
    return 10.0 ** (exp + 1)


def grouped_bar_svg(
    groups: Sequence[str],
    series: Mapping[str, Sequence[float]],
    path: str | os.PathLike[str],
    title: str = "",
    y_max: float | None = None,
) -> Path:
    """Write a grouped bar chart: ``groups`` along the x axis, one bar per ``series`` entry in each.

    ``series[name][i]`` is the bar of ``name`` in group ``groups[i]``; NaN draws no bar. The y axis
    runs from 0 to ``y_max`` (default 1.0 when every value is in [0, 1], else a round number above
    the largest). Returns the path written.
    """
    names = list(series)
    if not groups or not names:
        raise InvalidInputError("a bar chart needs at least one group and one series")
    for name in names:
        if len(series[name]) != len(groups):
            raise InvalidInputError(
                f"series {name!r} has {len(series[name])} values for {len(groups)} groups ({', '.join(groups)})"
            )
    values = [float(v) for name in names for v in series[name] if not math.isnan(float(v))]
    if any(v < 0 for v in values):
        raise InvalidInputError("bar values must be >= 0")
    biggest = max(values, default=0.0)
    top = y_max if y_max is not None else (1.0 if biggest <= 1.0 else _nice_max(biggest))
    if top <= 0:
        raise InvalidInputError(f"y_max must be positive, got {top!r}")

    group_w = len(names) * _BAR
    plot_w = len(groups) * group_w + (len(groups) + 1) * _GROUP_GAP
    legend_w = max(len(n) for n in names) * _CHAR_W + 24
    width = int(_LEFT + max(plot_w, legend_w) + _RIGHT)
    legend_h = len(names) * _LEGEND_ROW
    height = int(_TOP + _PLOT_H + _BOTTOM + legend_h)
    base_y = _TOP + _PLOT_H

    def y_of(v: float) -> float:
        return base_y - _PLOT_H * min(v, top) / top

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
    ]
    if title:
        out.append(f'<text x="{width / 2:.1f}" y="20" text-anchor="middle" font-size="13">{escape(title)}</text>')
    for i in range(5):  # horizontal grid lines and y labels at 0, 1/4, ... of the axis
        v = top * i / 4
        y = y_of(v)
        out.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="#dddddd"/>')
        out.append(f'<text x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    out.append(f'<line x1="{_LEFT}" y1="{base_y}" x2="{_LEFT + plot_w}" y2="{base_y}" stroke="#333333"/>')
    for g, group in enumerate(groups):
        x0 = _LEFT + _GROUP_GAP + g * (group_w + _GROUP_GAP)
        for s, name in enumerate(names):
            v = float(series[name][g])
            if math.isnan(v):
                continue
            x, y = x0 + s * _BAR, y_of(v)
            colour = PALETTE[s % len(PALETTE)]
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{_BAR - 2}" height="{base_y - y:.1f}" '
                f'fill="{colour}"><title>{escape(name)}, {escape(group)}: {v:.4g}</title></rect>'
            )
            # the value, written upwards above the bar so neighbouring labels do not overlap
            tx, ty = x + (_BAR - 2) / 2 + 3, y - 3
            out.append(
                f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="8" transform="rotate(-90 {tx:.1f} {ty:.1f})">'
                f"{_fmt(v)}</text>"
            )
        out.append(f'<text x="{x0 + group_w / 2:.1f}" y="{base_y + 16}" text-anchor="middle">{escape(group)}</text>')
    ly = base_y + 34
    for s, name in enumerate(names):
        y = ly + s * _LEGEND_ROW
        colour = PALETTE[s % len(PALETTE)]
        out.append(f'<rect x="{_LEFT}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        out.append(f'<text x="{_LEFT + 16}" y="{y}">{escape(name)}</text>')
    out.append("</svg>")
    p = Path(path)
    p.write_text("\n".join(out) + "\n", encoding="utf-8")
    return p
