"""Render a report as a text table, CSV, Markdown or HTML (with inline SVG charts).

The text, Markdown and HTML forms are for people: readable column headers, numbers right-aligned,
the total row last, rates in %, changes signed (rates in percentage points), and the overdue tasks
below. CSV is for spreadsheets and scripts: the figures' keys as headers and plain numbers (rates
as fractions), the total row included (grid ``Total``).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from html import escape
from typing import Any

from airgrid.reports.build import Report
from airgrid.reports.svg import bar_chart

FORMATS = ("table", "csv", "md", "html")
LABELS = {
    "rank": "Rank",
    "grid": "Grid",
    "name": "Name",
    "tasks": "Tasks",
    "patrols": "Patrols",
    "patrols_due": "Patrols due",
    "patrol_completion_rate": "Patrol completion",
    "inspections": "Source inspections",
    "problems_found": "Problems found",
    "site_visits": "Site visits",
    "feedback": "Feedback received",
    "on_time": "On time",
    "on_time_rate": "On-time rate",
    "reminders": "Reminders sent",
    "escalated": "Escalated",
    "escalated_to_l1": "Escalated to level 1",
    "closed_in_period": "Closed in period",
    "open_at_end": "Open at end",
    "dispatched": "Dispatched",
    "critical": "Critical",
    "major": "Major",
    "minor": "Minor",
    "level3_grids": "Level-3 grids",
    "closed": "Closed",
    "median_feedback_h": "Median feedback (h)",
    "closure_rate": "Closure rate",
    "sources_found": "Sources found",
    "top_source": "Top source",
    "stations": "Stations",
    "repeat_alarms": "Repeat alarms",
    "score": "Score",
    "grade": "Grade",
}
TEXT = {"grid", "name", "top_source", "grade"}  # left-aligned; every other column is a number
OVERDUE = {
    "task_id": "Task",
    "station": "Station",
    "grid": "Responsible grid",
    "level": "Level",
    "state": "State",
    "severity": "Severity",
    "dispatched_at": "Dispatched",
    "deadline_at": "Feedback deadline",
    "overdue_h": "Overdue by",
}
OVERDUE_TEXT = {"task_id", "station", "grid", "state", "severity", "dispatched_at", "deadline_at"}


def _columns(report: Report) -> list[str]:
    """Rank (assessment), grid, name, then the figures, each change right after its figure."""
    first = ["rank"] if report.kind == "assessment" else []
    keys = list(report.rows[0]) if report.rows else []
    rest = [c for c in keys if c not in ("grid", "name", "rank") and not c.endswith("_change")]
    out = [*first, "grid", "name"]
    for c in rest:
        out.append(c)
        if f"{c}_change" in keys:
            out.append(f"{c}_change")
    return out


def _label(report: Report, column: str) -> str:
    if column.endswith("_change"):
        return f"vs {report.previous.label}" if report.previous else "change"
    return LABELS.get(column, column.replace("_", " ").capitalize())


def _cell(column: str, value: Any, human: bool = True) -> str:
    if value is None:
        return "-" if human else ""
    if isinstance(value, datetime):
        return value.isoformat()
    if not human:
        return str(value)
    if column.endswith("_rate_change"):
        return f"{value * 100:+.0f} pp"
    if column.endswith("_change"):
        return f"{value:+.1f}" if isinstance(value, float) else f"{value:+d}"
    if column.endswith("_rate") and isinstance(value, float):
        return f"{value:.0%}"
    if column == "top_source":
        return str(value).replace("_", " ")
    return str(value)


def _local(report: Report, value: Any) -> str:
    return value.astimezone(report.period.zone).strftime("%Y-%m-%d %H:%M") if value else "-"


def _heading(report: Report) -> str:
    p = report.period
    return (
        f"{report.title}, {p.label} ({p.first_day} to {p.end_day} exclusive, {p.zone.key}); "
        f"{report.city}, {report.scope}"
    )


def _overdue_heading(report: Report) -> str:
    when = _local(report, report.cutoff)
    return f"Overdue tasks at {when} ({report.period.zone.key}): {len(report.overdue)}"


def _overdue_cells(report: Report) -> list[list[str]]:
    def cell(column: str, value: Any) -> str:
        if column.endswith("_at"):
            return _local(report, value)
        if column == "overdue_h":
            return _duration(value)
        return _cell(column, value)

    return [[cell(c, t[c]) for c in OVERDUE] for t in report.overdue]


def _duration(hours: float) -> str:
    """``38 h``, or ``11 d 14 h`` from two days on."""
    whole = int(hours)
    return f"{whole} h" if whole < 48 else f"{whole // 24} d {whole % 24} h"


def render(report: Report, fmt: str) -> str:
    return {"table": table, "csv": to_csv, "md": markdown, "html": html}[fmt](report)


def _text_table(
    header: list[str], rows: list[list[str]], left: list[bool], rule_before_last: bool
) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        out = [c.ljust(w) if lft else c.rjust(w) for c, w, lft in zip(cells, widths, left, strict=True)]
        return "  ".join(out).rstrip()

    lines = [line(header), "  ".join("-" * w for w in widths)]
    for i, r in enumerate(rows):
        if rule_before_last and i == len(rows) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append(line(r))
    return lines


def _human_rows(report: Report, cols: list[str]) -> list[list[str]]:
    rows = [*report.rows, *([report.total] if report.total else [])]
    return [[_cell(c, r.get(c)) for c in cols] for r in rows]


def table(report: Report) -> str:
    cols = _columns(report)
    lines = [_heading(report), ""]
    if report.rows:
        header = [_label(report, c) for c in cols]
        lines += _text_table(header, _human_rows(report, cols), [c in TEXT for c in cols], True)
    else:
        lines.append("(no activity in this period)")
    lines += ["", _overdue_heading(report)]
    if report.overdue:
        lines += _text_table(
            list(OVERDUE.values()), _overdue_cells(report), [c in OVERDUE_TEXT for c in OVERDUE], False
        )
    lines += ["", *report.notes, *_extra_lines(report)]
    return "\n".join(lines) + "\n"


def _extra_lines(report: Report) -> list[str]:
    if not report.extra:
        return []
    out = ["", "Data quality: dead letters and rejected feedback by reason"]
    totals: dict[tuple[str, str], int] = {}
    for r in report.extra:
        totals[(r["topic"], r["reason_code"])] = totals.get((r["topic"], r["reason_code"]), 0) + r["count"]
    out += [f"  {topic:<18} {reason:<20} {n:>6}" for (topic, reason), n in sorted(totals.items())]
    return out


def to_csv(report: Report) -> str:
    cols = _columns(report)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["period", *cols])
    for r in [*report.rows, *([report.total] if report.total else [])]:
        w.writerow([report.period.label, *(_cell(c, r.get(c), human=False) for c in cols)])
    return buf.getvalue()


def _md_table(header: list[str], rows: list[list[str]], left: list[bool]) -> list[str]:
    def esc(v: str) -> str:
        return v.replace("|", "\\|")

    out = ["| " + " | ".join(esc(h) for h in header) + " |"]
    out.append("|" + "|".join("---" if lft else "---:" for lft in left) + "|")
    out += ["| " + " | ".join(esc(v) for v in r) + " |" for r in rows]
    return out


def markdown(report: Report) -> str:
    cols = _columns(report)
    lines = [f"# {report.title}: {report.period.label}", "", _heading(report), ""]
    if report.rows:
        cells = _human_rows(report, cols)
        if report.total:
            cells[-1] = [f"**{v}**" if v not in ("", "-") else v for v in cells[-1]]
        lines += _md_table([_label(report, c) for c in cols], cells, [c in TEXT for c in cols])
    else:
        lines.append("_No activity in this period._")
    lines += ["", f"## {_overdue_heading(report)}", ""]
    if report.overdue:
        lines += _md_table(
            list(OVERDUE.values()), _overdue_cells(report), [c in OVERDUE_TEXT for c in OVERDUE]
        )
    lines += ["", *(f"- {n}" for n in report.notes)]
    extra = _extra_lines(report)
    if extra:
        lines += ["", "```", *extra[1:], "```"]
    return "\n".join(lines) + "\n"


def _html_rows(cells: list[list[str]], left: list[bool], tag: str = "td") -> str:
    return "".join(
        "<tr>"
        + "".join(
            f'<{tag} class="{"txt" if lft else "num"}">{escape(v)}</{tag}>'
            for v, lft in zip(r, left, strict=True)
        )
        + "</tr>"
        for r in cells
    )


def html(report: Report) -> str:
    cols = _columns(report)
    left = [c in TEXT for c in cols]
    labels = [str(r["grid"]) for r in report.rows]
    charts = []
    for title, col, scale in report.charts:
        values = [r.get(col) for r in report.rows]
        charts.append(bar_chart(title, labels, values, percent=col.endswith("_rate"), scale=scale))
    cells = _human_rows(report, cols)
    body, foot = (cells[:-1], cells[-1:]) if report.total else (cells, [])
    head = _html_rows([[_label(report, c) for c in cols]], left, "th")
    over_left = [c in OVERDUE_TEXT for c in OVERDUE]
    overdue = (
        f"<table><thead>{_html_rows([list(OVERDUE.values())], over_left, 'th')}</thead>"
        f"<tbody>{_html_rows(_overdue_cells(report), over_left)}</tbody></table>"
        if report.overdue
        else ""
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    extra = "<pre>" + escape("\n".join(_extra_lines(report))) + "</pre>" if report.extra else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(report.title)}: {escape(report.period.label)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; }}
th {{ background: #f0f4fa; }} .num {{ text-align: right; }} .txt {{ text-align: left; }}
tfoot td {{ font-weight: bold; border-top: 2px solid #888; }}
.charts svg {{ display: block; margin: 1em 0; }}
</style></head>
<body>
<h1>{escape(report.title)}: {escape(report.period.label)}</h1>
<p>{escape(_heading(report))}</p>
<div class="charts">
{"".join(charts) if report.rows else "<p>No activity in this period.</p>"}
</div>
<table><thead>{head}</thead><tbody>{_html_rows(body, left)}</tbody>
<tfoot>{_html_rows(foot, left)}</tfoot></table>
<h2>{escape(_overdue_heading(report))}</h2>
{overdue}
<ul>{notes}</ul>
{extra}
</body></html>
"""
