"""Inline SVG bar charts for the HTML reports (no JavaScript, no network)."""

from __future__ import annotations

from html import escape

WIDTH = 640
BAR = 22
GAP = 6
LABEL = 170
TICKS = 4  # gridlines of a fixed scale: 0, 25, 50, 75, 100 %


def bar_chart(
    title: str,
    labels: list[str],
    values: list[float | None],
    percent: bool = False,
    scale: float | None = None,
) -> str:
    """A horizontal bar chart; ``None`` values are drawn as "n/a". ``scale``: the value of a full
    bar, with gridlines (a score out of 100, a rate out of 1); None: the largest value."""
    top = 28
    height = top + len(labels) * (BAR + GAP) + (24 if scale else 10)
    peak = scale or max([v for v in values if v is not None] or [1]) or 1
    span = WIDTH - LABEL - 70
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text x="0" y="16" font-size="14" font-weight="bold">{escape(title)}</text>',
    ]
    if scale:
        bottom = top + len(labels) * (BAR + GAP)
        for k in range(TICKS + 1):
            x = LABEL + span * k / TICKS
            tick = scale * k / TICKS
            text = f"{tick:.0%}" if percent else f"{tick:g}"
            parts.append(
                f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>'
            )
            parts.append(
                f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#666">{text}</text>'
            )
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = top + i * (BAR + GAP)
        parts.append(f'<text x="{LABEL - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text x="{LABEL + 4}" y="{y + 15}" fill="#888">n/a</text>')
            continue
        w = max(1.0, span * min(value, peak) / peak) if value else 0.0
        shown = f"{value:.0%}" if percent else f"{value:g}"
        parts.append(
            f'<rect class="bar" x="{LABEL}" y="{y}" width="{w:.1f}" height="{BAR}" fill="#3b7dd8">'
            f"<title>{escape(label)}: {shown}</title></rect>"
        )
        parts.append(f'<text x="{LABEL + w + 4:.1f}" y="{y + 15}">{shown}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
