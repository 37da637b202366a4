"""The evaluation page writer on small frames: a self-contained plotly page, listed in the index."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime

import polars as pl
import pytest

from genre_dagster.evaluation.report_page import (
    CHART_TITLES,
    HISTORY_COLUMNS,
    PAGE_NAME,
    evaluation_summary,
    history_rows,
    write_evaluation_page,
)

SCORERS = {  # scorer -> (variant, base, AUC on all users)
    "nrms": ("title", None, 0.62),
    "nrms_summary": ("+ LLM summary", "nrms", 0.60),
    "popularity": ("classic", None, 0.55),
    "random": ("reference", None, 0.50),
    "oracle": ("true click probability", None, 0.80),
}


def small_leaderboard() -> pl.DataFrame:
    """A leaderboard of `SCORERS` for all, warm and cold users (also the browser test's)."""
    rows = []
    for scorer, (variant, base, auc) in SCORERS.items():
        for segment, shift, n in (("all", 0.0, 300), ("warm", 0.01, 240), ("cold", -0.03, 60)):
            value = auc + shift
            if scorer == "popularity" and segment == "cold":
                value = float("nan")  # no AUC there: a gap, not a crash
            rows.append(
                {
                    "scorer": scorer,
                    "variant": variant,
                    "segment": segment,
                    "auc": value,
                    "impressions": n,
                    "base": base,
                    "auc_delta": -0.02 if base else None,
                    "auc_delta_low": -0.03 if base else None,
                    "auc_delta_high": -0.01 if base else None,
                    "auc_delta_verdict": "hurts" if base else None,
                    "split": "test",
                    "auc_low": value - 0.02,
                    "auc_high": value + 0.02,
                }
            )
    return pl.DataFrame(rows)


def small_history(leaderboard: pl.DataFrame) -> pl.DataFrame:
    """Three nights of `leaderboard`, AUC rising a point a night."""
    nights = [
        history_rows(
            leaderboard.with_columns(pl.col("auc") - 0.01 * (3 - night)),
            date(2024, 3, 10 + night),
            f"run{night}abcdef",
            datetime(2024, 3, 11 + night, 2, 0, tzinfo=UTC),
        )
        for night in range(3)
    ]
    return pl.concat(nights)


def test_the_page_is_self_contained_with_the_four_charts_and_every_scorer(tmp_path):
    leaderboard = small_leaderboard()
    path = write_evaluation_page(
        leaderboard, small_history(leaderboard), tmp_path / "evaluation.html", title="Evaluation"
    )
    assert path == tmp_path / "evaluation.html" and path.exists()
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert '<script src="http' not in text and "<script src='http" not in text
    assert text.count("plotly.js v") == 1  # plotly.js inline, once
    assert text.count('class="plotly-graph-div"') == 4
    for title in CHART_TITLES.values():
        assert title in text, title
    for scorer in SCORERS:
        assert scorer in text, scorer
    assert "nrms_summary vs nrms" in text  # the variant against its base
    bundle = re.compile(r'<script type="text/javascript">/\*\*.*?</script>', re.S)
    assert "NaN" not in bundle.sub("", text, count=1)  # missing values are gaps (null)


def test_the_history_keeps_one_row_per_scorer_segment_and_run():
    leaderboard = small_leaderboard()
    rows = history_rows(leaderboard, date(2024, 3, 12), "abc", datetime(2024, 3, 13, tzinfo=UTC))
    assert rows.columns == list(HISTORY_COLUMNS)
    assert rows.height == leaderboard.height
    assert rows["evaluated_at"].dtype == pl.Datetime("us")  # UTC, stored without a zone
    assert set(rows["run_id"]) == {"abc"} and set(rows["day"]) == {date(2024, 3, 12)}


def test_the_summary_warns_when_a_genre_variant_hurts_and_is_listed_in_the_index(tmp_path):
    from genre_dagster.monitoring import read_report_records, write_report_index
    from genre_dagster.monitoring.reports import report_paths, write_report_record

    leaderboard = small_leaderboard()
    summary = evaluation_summary(leaderboard)
    assert summary["verdict"] == "warn" and summary["variants_hurting"] == ["nrms_summary"]
    assert summary["headline"] == {"name": "best AUC (nrms)", "value": pytest.approx(0.62)}
    helped = leaderboard.with_columns(auc_delta_verdict=pl.lit("helps"))
    assert evaluation_summary(helped)["verdict"] == "ok"

    html_path, json_path = report_paths(tmp_path, PAGE_NAME, date(2024, 3, 12), "0123456789")
    assert html_path.name == "evaluation_2024-03-12_01234567.html"
    write_evaluation_page(leaderboard, small_history(leaderboard), html_path)
    write_report_record(json_path, PAGE_NAME, date(2024, 3, 12), "0123456789", html_path, summary)
    record = json.loads(json_path.read_text())
    assert record["html"] == html_path.name and record["summary"]["report"] == PAGE_NAME
    text = write_report_index(tmp_path).read_text()
    assert 'id="evaluation"' in text and f'href="{html_path.name}"' in text
    assert [r["name"] for r in read_report_records(tmp_path)] == [PAGE_NAME]


def test_missing_columns_are_named():
    leaderboard = small_leaderboard()
    with pytest.raises(ValueError, match="auc_low"):
        write_evaluation_page(leaderboard.drop("auc_low"), small_history(leaderboard), "x.html")
    with pytest.raises(ValueError, match="run_id"):
        write_evaluation_page(leaderboard, small_history(leaderboard).drop("run_id"), "x.html")
