"""The result of a monitoring report: Evidently snapshots, a JSON summary, and how both are saved.

A report has one or more *sections*, each an Evidently snapshot (data quality, for example, has
one for new items and one for new behaviors, which are different tables). `save` writes one
self-contained HTML page (our summary table on top, then the sections as one Evidently
dashboard) and the JSON summary next to it.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

VERDICTS = ("ok", "warn", "error")
SUMMARY_SCHEMA = "genre_dagster.monitoring/v1"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HEAD = re.compile(r"(<html lang=\"en\">\s*<head>)")
_BODY = re.compile(r"(<body>)\s*<div id=\"root_")


def threshold_verdict(value: float, warn: float, error: float) -> str:
    """`"error"` if value >= error, else `"warn"` if value >= warn, else `"ok"`.

    Higher values are worse (drift shares, drift scores). NaN/None cannot be judged and raise
    ValueError, as does warn > error.
    """
    if warn > error:
        raise ValueError(f"threshold_verdict: warn ({warn}) must be <= error ({error})")
    if value is None or math.isnan(float(value)):
        raise ValueError("threshold_verdict: value is missing (NaN/None); nothing to judge")
    if value >= error:
        return "error"
    if value >= warn:
        return "warn"
    return "ok"


def worst_verdict(verdicts: Sequence[str]) -> str:
    """The most severe of several verdicts (`ok` when there are none)."""
    for verdict in verdicts:
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
    return max(verdicts, key=VERDICTS.index, default="ok")


def jsonable(value: Any) -> Any:
    """Plain JSON types from numpy/pandas values; NaN and infinities become None (JSON has
    none), so a summary equals its JSON round trip."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value) if isinstance(value, set | frozenset) else value
        return [jsonable(v) for v in items]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if type(value).__module__.startswith("pandas"):  # NA / NaT (NaT is also a datetime)
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise ValueError(f"jsonable: cannot turn {type(value).__name__} into JSON ({value!r:.80})")


@dataclass
class ReportResult:
    """One monitoring report.

    Attributes:
        kind: report type (`interaction_drift`, `data_quality`, `embedding_drift`,
            `prediction_drift`, `recommendation_quality`).
        sections: section title -> Evidently snapshot, in display order.
        summary: compact JSON-ready numbers; always has `report` (= kind), `verdict`
            (`ok`/`warn`/`error`), `method` and `headline` ({"name", "value"}).
    """

    kind: str
    sections: dict[str, Any]
    summary: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.sections:
            raise ValueError(f"{self.kind}: a report needs at least one Evidently section")
        self.summary = jsonable(self.summary)
        missing = {"report", "verdict", "method", "headline"} - set(self.summary)
        if missing:
            raise ValueError(f"{self.kind}: summary lacks {sorted(missing)}")
        if self.summary["verdict"] not in VERDICTS:
            raise ValueError(f"{self.kind}: bad verdict {self.summary['verdict']!r}")

    @property
    def snapshot(self) -> Any:
        """The first (for most reports the only) Evidently snapshot."""
        return next(iter(self.sections.values()))

    def html(self, title: str) -> str:
        """The whole report as one self-contained HTML page."""
        return _page(title, self.summary, self.sections)

    def save(self, reports_dir: Path, name: str, day: str | date, run_id: str) -> tuple[Path, Path]:
        """Write `<name>_<day>_<run_id[:8]>.html` and `.json` into `reports_dir`.

        The JSON holds `name`, `day`, `run_id`, `created_at`, `html` (the page's file name) and
        `summary`; `write_report_index` reads these files. Returns (html_path, json_path).
        """
        html_path, json_path = report_paths(reports_dir, name, day, run_id)
        html_path.write_text(self.html(f"{name} — {day}"), encoding="utf-8")
        write_report_record(json_path, name, day, run_id, html_path, self.summary)
        return html_path, json_path


def _day_text(day: str | date) -> str:
    return day.isoformat() if isinstance(day, date) else str(day)


def report_paths(reports_dir: Path, name: str, day: str | date, run_id: str) -> tuple[Path, Path]:
    """(`<name>_<day>_<run_id[:8]>.html`, `.json`) in `reports_dir` (created): where a report
    of that name, day and run is saved. Name, day and run must be safe in a file name."""
    day, run = _day_text(day), str(run_id)[:8]
    for label, part in (("name", name), ("day", day), ("run_id", run)):
        if not _SAFE_NAME.match(part):
            raise ValueError(
                f"report file: {label} {part!r} must be letters, digits, '.', '_' or '-' "
                "(it becomes part of a file name)"
            )
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{name}_{day}_{run}"
    return reports_dir / f"{stem}.html", reports_dir / f"{stem}.json"


def write_report_record(
    json_path: Path,
    name: str,
    day: str | date,
    run_id: str,
    html_path: Path,
    summary: Mapping[str, Any],
) -> Path:
    """Write the JSON record `write_report_index` lists: `name`, `day`, `run_id`,
    `created_at`, `html` (the page's file name next to it) and `summary` (JSON-ready, with at
    least `report`, `verdict` and `headline`). Returns `json_path`."""
    summary = jsonable(summary)
    missing = {"report", "verdict", "headline"} - set(summary)
    if missing or summary["verdict"] not in VERDICTS:
        raise ValueError(f"{name}: summary lacks {sorted(missing)} or has a bad verdict")
    record = {
        "schema": SUMMARY_SCHEMA,
        "name": name,
        "day": _day_text(day),
        "run_id": str(run_id),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "html": Path(html_path).name,
        "summary": summary,
    }
    json_path = Path(json_path)
    json_path.write_text(json.dumps(record, indent=2, allow_nan=False), encoding="utf-8")
    return json_path


def markdown_summary(summary: Mapping[str, Any]) -> str:
    """A short Markdown verdict for Dagster metadata: verdict, headline, thresholds, drifted
    columns and the per-column table when the summary has one."""
    lines = [f"**{summary.get('report', 'report')}**: verdict **{summary.get('verdict')}**"]
    headline = summary.get("headline") or {}
    if headline:
        lines.append(f"- {headline.get('name')}: {_fmt(headline.get('value'))}")
    if "drift_share" in summary:
        lines.append(
            f"- drifted columns: {summary.get('n_drifted')} of {summary.get('n_columns')} "
            f"(share {_fmt(summary['drift_share'])}); dataset drift: "
            f"{summary.get('dataset_drift')}"
        )
        if summary.get("drifted_columns"):
            lines.append(f"- drifted: {', '.join(summary['drifted_columns'])}")
    if summary.get("thresholds"):
        pairs = ", ".join(f"{k} = {_fmt(v)}" for k, v in summary["thresholds"].items())
        lines.append(f"- thresholds: {pairs}")
    if summary.get("issues"):
        lines.append(f"- issues: {'; '.join(summary['issues'])}")
    lines.append(f"- method: {summary.get('method')}")
    columns = summary.get("columns") or {}
    if columns:
        lines += [
            "",
            "| column | method | statistic | threshold | drifted |",
            "|---|---|---|---|---|",
        ]
        for column, info in columns.items():
            lines.append(
                f"| {column} | {info.get('method')} | {_fmt(info.get('statistic'))} | "
                f"{_fmt(info.get('threshold'))} | {info.get('drifted')} |"
            )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _summary_rows(summary: Mapping[str, Any]) -> str:
    rows = []
    for key, value in summary.items():
        if key == "columns":
            continue
        text = json.dumps(value) if isinstance(value, dict | list) else _fmt(value)
        rows.append(f"<tr><th>{html.escape(key)}</th><td>{html.escape(text)}</td></tr>")
    return "\n".join(rows)


def _evidently_page(sections: Mapping[str, Any]) -> str:
    """One Evidently page for all sections: each snapshot's widgets under its section title,
    then all test results. One page holds one copy of Evidently's ~4 MB script bundle, where
    embedding each section's own page would repeat it. Uses the snapshot's widget lists (not
    public API; evidently is pinned to 0.7.23), rendered the way `Snapshot.get_html_str` does.
    """
    from evidently.core.metric_types import render_widgets
    from evidently.legacy.renderers.html_widgets import group_widget

    groups, tests = [], []
    for title, snapshot in sections.items():
        if not hasattr(snapshot, "_widgets") or not hasattr(snapshot, "_tests_widgets"):
            raise ValueError(
                "this Evidently version's snapshots have no widget lists; the combined page "
                "needs evidently 0.7.23"
            )
        groups.append(group_widget(title=title, widgets=snapshot._widgets))
        tests += snapshot._tests_widgets
    return render_widgets(groups + tests, as_iframe=False)


def _page(title: str, summary: Mapping[str, Any], sections: Mapping[str, Any]) -> str:
    page = _evidently_page(sections)
    verdict = html.escape(str(summary.get("verdict")))
    header = f"""<title>{html.escape(title)}</title>
<style>
.genre-summary {{ font-family: sans-serif; margin: 1em 1.5em; }}
.genre-summary table {{ border-collapse: collapse; }}
.genre-summary th, .genre-summary td {{ border: 1px solid #ccc; padding: 2px 8px;
text-align: left; vertical-align: top; font-size: 0.85em; }}
.verdict-ok {{ color: #1a7f37; }} .verdict-warn {{ color: #9a6700; }}
.verdict-error {{ color: #cf222e; }}
</style>"""
    block = f"""<div class="genre-summary">
<h1>{html.escape(title)}: <span class="verdict-{verdict}">{verdict}</span></h1>
<details open><summary>summary (also in the JSON file)</summary><table>
{_summary_rows(summary)}
</table></details>
</div>"""
    # Anchor on the template's own tags (user data inside the page could contain "<body>").
    for pattern, extra in ((_HEAD, header), (_BODY, block)):
        match = pattern.search(page)
        if match is None:
            raise ValueError(f"Evidently's page layout changed ({pattern.pattern} not found)")
        page = page[: match.end(1)] + "\n" + extra + page[match.end(1) :]
    return page


def run_report(
    metrics: list[Any],
    current: pd.DataFrame,
    reference: pd.DataFrame | None,
    definition: Any,
    *,
    include_tests: bool = True,
    additional: Mapping[str, tuple[pd.DataFrame, Any]] | None = None,
) -> Any:
    """Run an Evidently `Report(metrics)` on pandas frames and return its snapshot.

    `definition` is an `evidently.DataDefinition`; `additional` maps names (e.g.
    `current_train_data`) to (frame, definition). BLAS/OpenMP are limited to one thread while
    Evidently runs: on this shared 2-core machine sklearn's multi-threaded t-SNE (embedding
    drift) took 27 s instead of 2.3 s single-threaded.
    """
    from evidently import Dataset, Report
    from threadpoolctl import threadpool_limits

    def dataset(frame: pd.DataFrame, frame_definition: Any) -> Any:
        return Dataset.from_pandas(frame, data_definition=frame_definition)

    extra = {k: dataset(f, d) for k, (f, d) in (additional or {}).items()}
    with threadpool_limits(limits=1):
        return Report(metrics, include_tests=include_tests).run(
            current_data=dataset(current, definition),
            reference_data=None if reference is None else dataset(reference, definition),
            additional_data=extra or None,
        )
