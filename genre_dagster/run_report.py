"""What `genre-dagster run` prints: a line per step as it finishes, and a summary at the end.

Dagster's own log (every event, dbt's output) goes to the instance (the UI's Runs page) and to a
log file; the terminal gets what a user came for. Step lines are read from the instance's event
log by a thread that polls the running run, so they appear while the run goes on; the summary
reads the newest materialization of each asset (the numbers the UI shows) and the leaderboard
table.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# The one number that matters for a step, by the metadata its assets carry (first found wins).
_HEADLINE = (
    ("rows_accepted", "{:,} rows"),
    ("answered", "{} answered"),
    ("texts_encoded", "{:,} texts encoded"),
    ("validation_auc", "validation AUC {:.4f}"),
    ("verdict", "{}"),
    ("serving", "serving {}"),
    ("users", "{:,} users"),
)


def _value(entry: Any) -> Any:
    return getattr(entry, "value", entry)


def headline(metadata: dict[str, Any]) -> str:
    """The one number of a materialization, e.g. '16 answered, 0 failed' or 'AUC 0.61'."""
    for key, form in _HEADLINE:
        if key in metadata and _value(metadata[key]) is not None:
            text = form.format(_value(metadata[key]))
            if key == "rows_accepted" and _value(metadata.get("rows_quarantined")):
                text += f", {_value(metadata['rows_quarantined']):,} quarantined"
            if key == "answered":
                text += f", {_value(metadata.get('failed', 0))} failed"
            return text
    return ""


class StepPrinter:
    """Prints one line per finished step of the run `run_id` while it runs (a polling thread).

    `write` receives each line (print by default). Use as a context manager around the run."""

    def __init__(self, instance: Any, run_id: str, write: Callable[[str], None] = print) -> None:
        self.instance, self.run_id, self.write = instance, run_id, write
        self._cursor: str | None = None
        self._started: dict[str, float] = {}
        self._numbers: dict[str, list[str]] = {}
        self._peaks: dict[str, float] = {}  # a step's peak memory, from its outputs' metadata
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.lines: list[str] = []

    def __enter__(self) -> StepPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()  # whatever arrived after the last tick

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self.poll()

    def poll(self) -> None:
        """Read the events written since the last poll and print the finished steps."""
        from dagster import DagsterEventType

        wanted = {
            DagsterEventType.STEP_START,
            DagsterEventType.STEP_SUCCESS,
            DagsterEventType.STEP_FAILURE,
            DagsterEventType.ASSET_MATERIALIZATION,
            DagsterEventType.ASSET_CHECK_EVALUATION,
        }
        while True:
            page = self.instance.get_records_for_run(self.run_id, cursor=self._cursor, limit=500)
            self._cursor = page.cursor
            for record in page.records:
                event = record.event_log_entry.dagster_event
                if event is not None and event.event_type in wanted:
                    self._on(event, record.event_log_entry.timestamp)
            if not page.has_more:
                return

    def _on(self, event: Any, timestamp: float) -> None:
        from dagster import DagsterEventType

        step = event.step_key or "?"
        if event.event_type == DagsterEventType.STEP_START:
            self._started[step] = timestamp
            return
        if event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            self._on_check(event.event_specific_data)
            return
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            metadata = dict(materialization.metadata)
            number = headline(metadata)
            if "step_peak_rss_mb" in metadata:
                peak = float(_value(metadata["step_peak_rss_mb"]))
                self._peaks[step] = max(peak, self._peaks.get(step, 0.0))
            if number:
                self._numbers.setdefault(step, []).append(number)
            return
        seconds = timestamp - self._started.get(step, timestamp)
        numbers = self._numbers.get(step, [])
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.event_specific_data.error
            detail = (error.message.strip().splitlines() or ["failed"])[-1] if error else "failed"
            line = f"  FAILED {step:<34s} {seconds:6.1f} s  {detail[:300]}"
        else:
            shown = "; ".join(numbers[:2]) + (
                f"; +{len(numbers) - 2} more" if len(numbers) > 2 else ""
            )
            peak = f"{self._peaks[step]:,.0f} MB" if step in self._peaks else ""
            line = f"  ok     {step:<34s} {seconds:6.1f} s  {peak:>9s}  {shown}"
        self._emit(line)

    def _on_check(self, check: Any) -> None:
        """The split as soon as it is known (before any model work), and every failed ERROR
        check with what it says (WARN checks are in the summary's monitoring verdicts)."""
        metadata = {k: _value(v) for k, v in check.metadata.items()}
        if check.check_name == "splits_are_usable" and "splits" in metadata:
            self._emit(f"         splits: {metadata['splits']}")
        if not check.passed and check.severity.value == "ERROR":
            where = f"{check.asset_key.to_user_string()}:{check.check_name}"
            self._emit(f"  CHECK FAILED {where}: {(check.description or '')[:400]}")

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        self.write(line)


def write_run_log(instance: Any, run_id: str, path: Path) -> Path:
    """Append the run's whole event log (Dagster's messages, dbt's lines) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        for entry in instance.all_logs(run_id):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.timestamp))
            kind = entry.dagster_event.event_type_value if entry.dagster_event else entry.level
            message = entry.user_message or entry.message or ""
            out.write(f"{when} {run_id[:8]} {entry.step_key or '-'} {kind} {message}\n")
    return path


def _latest(instance: Any, *path: str) -> dict[str, Any]:
    import dagster as dg

    event = instance.get_latest_materialization_event(dg.AssetKey(list(path)))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: _value(v) for k, v in event.asset_materialization.metadata.items()}


def summary_lines(instance: Any, duckdb_path: str, top: int = 5) -> list[str]:
    """The end-of-run summary: data, LLM enrichment, leaderboard, GENRE variants, serving,
    monitoring, and what to open next. Only what the run materialized is shown."""
    lines: list[str] = _data_lines(duckdb_path)
    roles = [
        ("summaries", _latest(instance, "enrichment", "news_summaries")),
        ("profiles", _latest(instance, "enrichment", "user_profiles")),
        ("synthetic items", _latest(instance, "enrichment", "synthetic_items")),
    ]
    if any(meta for _, meta in roles):
        model = next((meta.get("model") for _, meta in roles if meta.get("model")), "?")
        lines.append(f"LLM enrichment ({model})")
        for name, meta in roles:
            if meta:
                lines.append(
                    f"  {name:<16s} answered {meta.get('answered', 0)}, cached "
                    f"{meta.get('cached', 0)}, failed {meta.get('failed', 0)}, published "
                    f"{meta.get('dagster/row_count', meta.get('row_count', 0))}"
                )
    lines += _leaderboard_lines(duckdb_path, top)
    serving = _latest(instance, "serving", "serving_scorer")
    lists = _latest(instance, "serving", "recommendations")
    if serving:
        lines += [
            "Serving",
            f"  {serving.get('serving')}: {serving.get('reason')}",
        ]
        if lists:
            lines.append(
                f"  lists for {lists.get('users', 0):,} users from {lists.get('pool_items', 0):,} "
                "items"
            )
    checks = [
        (name, _latest(instance, "monitoring", name))
        for name in (
            "data_quality",
            "interaction_drift",
            "embedding_drift",
            "prediction_drift",
            "recommendation_quality",
        )
    ]
    if any(meta for _, meta in checks):
        lines.append("Monitoring")
        for name, meta in checks:
            if meta:
                lines.append(f"  {name:<24s} {meta.get('verdict')}  {meta.get('report_path', '')}")
        index = next(
            (meta.get("report_index") for _, meta in checks if meta.get("report_index")), None
        )
        if index:
            lines.append(f"  all reports: {index}")
    lines += [
        "Next",
        "  make ui  -> Assets (lineage, metadata), Runs (full logs), Checks",
    ]
    return lines


def _data_lines(duckdb_path: str) -> list[str]:
    """Days, impressions, items and quarantined lines by reason, from the warehouse."""
    import duckdb

    from genre_dagster.warehouse import (
        IMPRESSION_SPLITS,
        QUARANTINE,
        STG_BEHAVIORS,
        STG_NEWS,
        table_exists,
    )

    if not Path(duckdb_path).exists():
        return []
    # read-only, so not through warehouse.connect (which opens for writing under the lock):
    # the summary is printed after the run and only reads
    with duckdb.connect(duckdb_path, read_only=True) as conn:
        if not (table_exists(conn, STG_BEHAVIORS) and table_exists(conn, STG_NEWS)):
            return []
        days, impressions, users, first, last = conn.execute(
            "select count(distinct day), count(*), count(distinct user_id), min(day), max(day) "
            f"from {STG_BEHAVIORS}"
        ).fetchone()
        (items,) = conn.execute(f"select count(*) from {STG_NEWS}").fetchone()
        reasons = (
            conn.execute(
                f"select entity, reason, count(*) from {QUARANTINE} group by all order by 3 desc"
            ).fetchall()
            if table_exists(conn, QUARANTINE)
            else []
        )
        splits = (
            conn.execute(
                f"select split, count(*) from {IMPRESSION_SPLITS} group by split order by split"
            ).fetchall()
            if table_exists(conn, IMPRESSION_SPLITS)
            else []
        )
    quarantined = ", ".join(f"{e} {r} {n:,}" for e, r, n in reasons) or "none"
    lines = [
        "Data",
        f"  {days} days ({first}..{last}), {impressions:,} impressions, {users:,} users, "
        f"{items:,} items",
        f"  quarantined lines: {quarantined}",
    ]
    if splits:
        lines.append("  splits: " + ", ".join(f"{s} {n:,}" for s, n in splits))
    return lines


def _leaderboard_lines(duckdb_path: str, top: int) -> list[str]:
    import duckdb

    from genre_dagster.warehouse import LEADERBOARD, table_exists

    if not Path(duckdb_path).exists():
        return []
    with duckdb.connect(duckdb_path, read_only=True) as conn:  # read-only: see _data_lines
        if not table_exists(conn, LEADERBOARD):
            return []
        rows = conn.execute(
            "select scorer, auc, base, auc_delta, auc_delta_low, auc_delta_high, "
            f"auc_delta_verdict, split from {LEADERBOARD} where segment = 'all' "
            "order by auc desc"
        ).fetchall()
    if not rows:
        return []
    references = {r[0]: r[1] for r in rows if r[0] in ("random", "oracle")}
    ranked = [r for r in rows if r[0] not in references]
    reference = ", ".join(f"{name} {auc:.4f}" for name, auc in sorted(references.items()))
    lines = [f"Leaderboard ({rows[0][7]} split, AUC over impressions; {reference})"]
    lines += [f"  {i}. {r[0]:<22s} {r[1]:.4f}" for i, r in enumerate(ranked[:top], 1)]
    variants = [r for r in rows if r[2] is not None]
    if variants:
        lines.append("GENRE variants vs base (AUC difference [95% interval])")
        for scorer, _, base, delta, low, high, verdict, _ in sorted(variants):
            if delta is None:
                continue
            lines.append(
                f"  {scorer:<18s} vs {base:<6s} {delta:+.4f} [{low:+.4f}, {high:+.4f}] {verdict}"
            )
    return lines
