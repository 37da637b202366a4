"""The report history page: a static `index.html` listing every saved report."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from genre_dagster.monitoring.reports import SUMMARY_SCHEMA

INDEX_FILE = "index.html"


def read_report_records(reports_dir: Path) -> list[dict[str, Any]]:
    """The JSON records `ReportResult.save` wrote into `reports_dir`, newest day first (then
    newest creation time). Any other JSON file there raises ValueError: the folder belongs to
    the reports."""
    records = []
    for path in sorted(Path(reports_dir).glob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"report index: {path} is not valid JSON ({error})") from error
        if not isinstance(record, dict) or record.get("schema") != SUMMARY_SCHEMA:
            raise ValueError(f"report index: {path} is not a report summary ({SUMMARY_SCHEMA})")
        record["json"] = path.name
        records.append(record)
    records.sort(key=lambda r: (r["day"], r["created_at"]), reverse=True)
    return records


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_report_index(reports_dir: Path) -> Path:
    """Write `reports_dir/index.html`: one table per report name (alphabetical), rows newest
    day first, with verdict, headline number, drift share when there is one, and links to the
    HTML page and JSON summary. Returns the index path."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    records = read_report_records(reports_dir)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_name.setdefault(record["name"], []).append(record)
    parts = []
    for name in sorted(by_name):
        rows = []
        for r in by_name[name]:
            s = r["summary"]
            headline = s.get("headline") or {}
            verdict = html.escape(str(s.get("verdict")))
            rows.append(
                "<tr>"
                f"<td>{html.escape(r['day'])}</td>"
                f'<td class="verdict-{verdict}">{verdict}</td>'
                f"<td>{html.escape(str(headline.get('name', '')))}</td>"
                f"<td>{html.escape(_cell(headline.get('value')))}</td>"
                f"<td>{html.escape(_cell(s.get('drift_share')))}</td>"
                f"<td>{html.escape(', '.join(s.get('drifted_columns') or []))}</td>"
                f"<td>{html.escape(r['run_id'][:8])}</td>"
                f"<td>{html.escape(r['created_at'])}</td>"
                f'<td><a href="{html.escape(r["html"])}">report</a> '
                f'<a href="{html.escape(r["json"])}">json</a></td>'
                "</tr>"
            )
        parts.append(
            f'<h2 id="{html.escape(name)}">{html.escape(name)}</h2>\n<table>\n'
            "<tr><th>day</th><th>verdict</th><th>headline</th><th>value</th>"
            "<th>drift share</th><th>drifted columns</th><th>run</th><th>created (UTC)</th>"
            "<th>files</th></tr>\n" + "\n".join(rows) + "\n</table>"
        )
    body = "\n".join(parts) if parts else "<p>No reports yet.</p>"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Monitoring reports</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; font-size: 0.9em; }}
.verdict-ok {{ color: #1a7f37; }} .verdict-warn {{ color: #9a6700; font-weight: bold; }}
.verdict-error {{ color: #cf222e; font-weight: bold; }}
</style></head>
<body>
<h1>Monitoring reports</h1>
<p>{len(records)} reports. Newest day first in each table.</p>
{body}
</body></html>
"""
    path = reports_dir / INDEX_FILE
    path.write_text(page, encoding="utf-8")
    return path
