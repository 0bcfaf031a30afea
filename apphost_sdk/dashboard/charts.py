"""Server-rendered SVG line charts for the metrics page.

The dashboard has no JavaScript build chain, so charts are plain inline SVG made here: axes with
the min/max value and the first/last time, one polyline per attribute set (series) and a legend
with each series' last value. Every text is escaped; the output is well-formed XML.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import attrs
from markupsafe import escape

#: At most this many series are drawn per chart; the view says how many more there were.
MAX_SERIES = 8
#: A series longer than this is thinned (evenly, always keeping its last point).
MAX_POINTS = 300
#: Series colours, distinguishable on light and dark backgrounds.
PALETTE = (
    "#2f81f7",
    "#e3702d",
    "#2da44e",
    "#d1242f",
    "#8250df",
    "#bf8700",
    "#1b7c83",
    "#cf4fa8",
)

_WIDTH = 640
_PLOT_HEIGHT = 160
_LEFT = 72  # room for the value labels
_RIGHT = 16
_TOP = 10
_AXIS = 22  # below the plot: the time labels
_LEGEND_ROW = 18
_LEGEND_CHARS = 80


@attrs.frozen
class Series:
    """One line of a chart: a label (its attribute set) and its points, oldest first."""

    label: str
    points: tuple[tuple[int, float], ...]  # (timestamp in ns since the epoch, value)
    last_label: str = ""  # the legend's text for the last value; the value itself when empty


def format_value(value: float, unit: str = "") -> str:
    """A short human form of a metric value (``1,204``, ``0.0123``, ``3.2e+09``) with its unit."""
    if not math.isfinite(value):
        text = str(value)
    elif value == int(value) and abs(value) < 1e15:
        text = f"{int(value):,}"
    elif abs(value) >= 1e6 or abs(value) < 1e-3:
        text = f"{value:.3g}"
    else:
        text = f"{value:.4g}"
    shown = display_unit(unit)
    return f"{text} {shown}" if shown else text


def display_unit(unit: str) -> str:
    """An OpenTelemetry unit as shown: ``1`` (dimensionless) is dropped, ``{request}`` loses
    its braces."""
    if unit == "1":
        return ""
    if unit.startswith("{") and unit.endswith("}"):
        return unit[1:-1]
    return unit


def line_chart_svg(series: Sequence[Series], *, unit: str = "", title: str = "") -> str:
    """An inline ``<svg class="chart">`` with the first :data:`MAX_SERIES` of ``series``.

    Non-finite values (NaN, infinities) are skipped; a chart with no point left says so.
    """
    shown = [_finite(s) for s in series[:MAX_SERIES]]
    shown = [s for s in shown if s.points]
    legend_rows = max(1, len(shown))
    height = _TOP + _PLOT_HEIGHT + _AXIS + legend_rows * _LEGEND_ROW + 4
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_WIDTH} {height}" '
        f'width="{_WIDTH}" height="{height}" role="img" aria-label="{escape(title)}" '
        'style="max-width:100%;height:auto">',
        f"<title>{escape(title)}</title>",
    ]
    if not shown:
        parts.append(
            f'<text class="no-data" x="{_WIDTH // 2}" y="{_TOP + _PLOT_HEIGHT // 2}" '
            'text-anchor="middle" fill="currentColor">No data points</text></svg>'
        )
        return "".join(parts)
    parts.extend(_plot(shown, unit))
    parts.extend(_legend(shown, unit))
    parts.append("</svg>")
    return "".join(parts)


def _finite(series: Series) -> Series:
    """``series`` without non-finite values, thinned to :data:`MAX_POINTS`."""
    points = [(t, v) for t, v in series.points if math.isfinite(v)]
    if len(points) > MAX_POINTS:
        step = math.ceil(len(points) / MAX_POINTS)
        thinned = points[::step]
        if thinned[-1] != points[-1]:
            thinned.append(points[-1])
        points = thinned
    return attrs.evolve(series, points=tuple(points))


def _plot(shown: list[Series], unit: str) -> list[str]:
    """The axes, their min/max labels and one polyline (plus a dot at its end) per series."""
    times = [t for s in shown for t, _ in s.points]
    values = [v for s in shown for _, v in s.points]
    t0, t1 = min(times), max(times)
    v0, v1 = min(values), max(values)
    if v0 == v1:  # a flat line sits in the middle
        pad = abs(v0) * 0.1 or 1.0
        lo, hi = v0 - pad, v1 + pad
    else:
        lo, hi = v0, v1
    left, right = _LEFT, _WIDTH - _RIGHT
    top, bottom = _TOP, _TOP + _PLOT_HEIGHT

    def x(t: int) -> float:
        if t1 == t0:
            return (left + right) / 2
        return left + (t - t0) / (t1 - t0) * (right - left)

    def y(v: float) -> float:
        return bottom - (v - lo) / (hi - lo) * (bottom - top)

    out = [
        f'<g class="axes" stroke="currentColor" stroke-opacity="0.4" fill="none">'
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}"/>'
        f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}"/></g>',
        '<g class="labels" fill="currentColor" font-size="11">',
        f'<text class="y-max" x="{left - 6}" y="{y(v1) + 4:.1f}" text-anchor="end">'
        f"{escape(format_value(v1, unit))}</text>",
        f'<text class="y-min" x="{left - 6}" y="{y(v0) + 4:.1f}" text-anchor="end">'
        f"{escape(format_value(v0, unit))}</text>",
        f'<text class="x-min" x="{left}" y="{bottom + 16}">{_clock(t0)}</text>',
        f'<text class="x-max" x="{right}" y="{bottom + 16}" text-anchor="end">{_clock(t1)}</text>',
        "</g>",
    ]
    for index, s in enumerate(shown):
        colour = PALETTE[index % len(PALETTE)]
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in s.points)
        last_t, last_v = s.points[-1]
        out.append(
            f'<g class="series" data-series="{escape(s.label)}">'
            f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5"/>'
            f'<circle cx="{x(last_t):.1f}" cy="{y(last_v):.1f}" r="2.5" fill="{colour}"/></g>'
        )
    return out


def _legend(shown: list[Series], unit: str) -> list[str]:
    """One legend row per series: its colour, label and last value."""
    out = ['<g class="legend" font-size="11" fill="currentColor">']
    base = _TOP + _PLOT_HEIGHT + _AXIS
    for index, s in enumerate(shown):
        colour = PALETTE[index % len(PALETTE)]
        row = base + index * _LEGEND_ROW
        last = s.last_label or format_value(s.points[-1][1], unit)
        text = f"{s.label}: {last}"
        short = text if len(text) <= _LEGEND_CHARS else text[: _LEGEND_CHARS - 1] + "…"
        out.append(
            f'<g class="legend-row"><title>{escape(text)}</title>'
            f'<rect x="{_LEFT}" y="{row}" width="10" height="10" fill="{colour}"/>'
            f'<text class="last-value" x="{_LEFT + 16}" y="{row + 9}">{escape(short)}</text></g>'
        )
    out.append("</g>")
    return out


def _clock(timestamp_ns: int) -> str:
    """Local wall-clock time of a timestamp, as the axis shows it."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp_ns / 1e9))
