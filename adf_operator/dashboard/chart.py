"""A small server-rendered SVG chart of a flow's recent runs: rows written as bars (coloured by
phase) and duration as a line, oldest run on the left. No JavaScript, no chart library: the page
stays readable with scripts off and under a strict Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

from adf_operator.dashboard.views import RunView

WIDTH, HEIGHT = 640, 180
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 80, 56, 12, 24
PHASE_CLASS = {
    "Succeeded": "ok",
    "Failed": "bad",
    "Cancelled": "muted",
    "Running": "busy",
    "Pending": "busy",
}


def runs_chart(runs: Sequence[RunView]) -> Markup:
    """The chart for `runs` (newest first, as listed); an empty Markup when there are none."""
    if not runs:
        return Markup("")
    ordered = list(reversed(runs))
    rows = [r.rows_written or 0 for r in ordered]
    seconds = [r.duration_seconds for r in ordered]
    top_rows = max(max(rows), 1)
    top_seconds = max([s for s in seconds if s is not None] + [1.0])
    plot_w = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    slot = plot_w / len(ordered)
    bar_w = max(2.0, slot * 0.6)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        'role="img" '
        f'aria-label="Rows written and duration of the last {len(ordered)} runs">',
        f"<title>Rows written (bars, left axis) and duration (line, right axis) of the last "
        f"{len(ordered)} runs</title>",
        f'<line class="axis" x1="{PAD_LEFT}" y1="{PAD_TOP + plot_h}" '
        f'x2="{PAD_LEFT + plot_w}" y2="{PAD_TOP + plot_h}"/>',
        _label(PAD_LEFT - 4, PAD_TOP + 10, f"{top_rows:,} rows", "end"),
        _label(PAD_LEFT - 4, PAD_TOP + plot_h, "0", "end"),
        _label(PAD_LEFT + plot_w + 4, PAD_TOP + 10, _seconds(top_seconds), "start"),
    ]
    points = []
    for i, (run, count, took) in enumerate(zip(ordered, rows, seconds, strict=True)):
        x = PAD_LEFT + slot * i + (slot - bar_w) / 2
        height = plot_h * count / top_rows
        css = PHASE_CLASS.get(run.phase or "", "muted")
        tip = f"{run.name}: {run.phase or 'no phase'}, {count:,} rows written"
        if took is not None:
            tip += f", {_seconds(took)}"
            points.append(
                (PAD_LEFT + slot * i + slot / 2, PAD_TOP + plot_h - plot_h * took / top_seconds)
            )
        parts.append(
            f'<rect class="bar {css}" x="{x:.1f}" y="{PAD_TOP + plot_h - height:.1f}" '
            f'width="{bar_w:.1f}" height="{max(height, 1.0):.1f}">'
            f"<title>{escape(tip)}</title></rect>"
        )
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline class="duration" points="{path}"/>')
        parts.extend(
            f'<circle class="duration" cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in points
        )
    parts.append(_label(PAD_LEFT, HEIGHT - 6, "older", "start"))
    parts.append(_label(PAD_LEFT + plot_w, HEIGHT - 6, "newer", "end"))
    parts.append("</svg>")
    return Markup("".join(parts))


def _label(x: float, y: float, text: str, anchor: str) -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}">{escape(text)}</text>'


def _seconds(value: float) -> str:
    if value < 120:
        return f"{value:.0f} s"
    return f"{value / 60:.1f} min"
