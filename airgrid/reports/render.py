"""Render a report as a text table, CSV, Markdown or HTML (with inline SVG charts)."""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Any

from airgrid.reports.build import Report
from airgrid.reports.svg import bar_chart

FORMATS = ("table", "csv", "md", "html")
RATES = ("rate",)


def _columns(report: Report) -> list[str]:
    first = ["rank"] if report.kind == "assessment" else []
    rest = [c for c in (report.rows[0] if report.rows else {}) if c not in ("grid", "name", "rank")]
    return [*first, "grid", "name", *rest]


def _cell(column: str, value: Any, human: bool = True) -> str:
    if value is None:
        return "-" if human else ""
    if human and column.endswith("_rate") and isinstance(value, float):
        return f"{value:.0%}"
    return str(value)


def _heading(report: Report) -> str:
    p = report.period
    return (
        f"{report.title}, {p.label} ({p.first_day} to {p.end_day} exclusive, {p.zone.key}); "
        f"{report.city}, {report.scope}"
    )


def render(report: Report, fmt: str) -> str:
    return {"table": table, "csv": to_csv, "md": markdown, "html": html}[fmt](report)


def table(report: Report) -> str:
    cols = _columns(report)
    cells = [[_cell(c, r.get(c)) for c in cols] for r in report.rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    lines = [_heading(report), ""]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not report.rows:
        lines.append("(no activity in this period)")
    lines += ["", *report.notes, *_extra_lines(report)]
    return "\n".join(lines) + "\n"


def _extra_lines(report: Report) -> list[str]:
    if not report.extra:
        return []
    out = ["", "Data quality: dead letters and rejected feedback by reason"]
    totals: dict[tuple[str, str], int] = {}
    for r in report.extra:
        totals[(r["topic"], r["reason_code"])] = totals.get((r["topic"], r["reason_code"]), 0) + r["count"]
    out += [f"  {topic:<18} {reason:<20} {n}" for (topic, reason), n in sorted(totals.items())]
    return out


def to_csv(report: Report) -> str:
    cols = _columns(report)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["period", *cols])
    for r in report.rows:
        w.writerow([report.period.label, *(_cell(c, r.get(c), human=False) for c in cols)])
    return buf.getvalue()


def markdown(report: Report) -> str:
    cols = _columns(report)
    lines = [f"# {report.title}: {report.period.label}", "", _heading(report), ""]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for r in report.rows:
        lines.append("| " + " | ".join(_cell(c, r.get(c)).replace("|", "\\|") for c in cols) + " |")
    if not report.rows:
        lines.append("\n_No activity in this period._")
    lines += ["", *(f"- {n}" for n in report.notes)]
    extra = _extra_lines(report)
    if extra:
        lines += ["", "```", *extra[1:], "```"]
    return "\n".join(lines) + "\n"


def html(report: Report) -> str:
    cols = _columns(report)
    labels = [str(r["grid"]) for r in report.rows]
    charts = []
    for title, col in report.charts:
        values = [r.get(col) for r in report.rows]
        charts.append(bar_chart(title, labels, values, percent=col.endswith("_rate")))
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(_cell(c, r.get(c)))}</td>" for c in cols) + "</tr>"
        for r in report.rows
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    extra = "<pre>" + escape("\n".join(_extra_lines(report))) + "</pre>" if report.extra else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(report.title)}: {escape(report.period.label)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th {{ background: #f0f4fa; }} td:nth-child(-n+3) {{ text-align: left; }}
.charts svg {{ display: block; margin: 1em 0; }}
</style></head>
<body>
<h1>{escape(report.title)}: {escape(report.period.label)}</h1>
<p>{escape(_heading(report))}</p>
<div class="charts">
{"".join(charts) if report.rows else "<p>No activity in this period.</p>"}
</div>
<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>
<ul>{notes}</ul>
{extra}
</body></html>
"""
