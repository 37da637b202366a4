"""Monitoring after the first nightly run: the reports are written, linked and checked.

Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

from world_sql import query


def test_monitoring_reports_are_written_linked_and_checked(world):
    reports = world["settings"].reports_dir
    for name in (
        "interaction_drift",
        "data_quality",
        "embedding_drift",
        "prediction_drift",
        "recommendation_quality",
    ):
        pages = sorted(reports.glob(f"{name}_*.html"))
        assert pages, name
        html = pages[-1].read_text(errors="replace")
        assert "<html" in html.lower() and len(html) > 100_000
        assert pages[-1].with_suffix(".json").exists()
        (verdict,) = query(
            world, f"select verdict from monitoring.{name} order by day desc limit 1"
        )[0]
        assert verdict in ("ok", "warn", "error")
    index = (reports / "index.html").read_text()
    assert "interaction_drift" in index
    checks = set(world["report"].runs[-1]["checks_passed"]) | {
        c.split(":")[1] for c in world["report"].runs[-1]["checks_failed"]
    }
    assert {
        "drift_share_within_thresholds",
        "embedding_drift_within_thresholds",
        "prediction_drift_within_thresholds",
    } <= checks


def test_report_samples_are_drawn_in_duckdb_and_stable(world):
    """The reports that score impressions read at most `max_impressions` per window, chosen in
    DuckDB (a long window is never loaded whole): the same ones every time, in time order."""
    import duckdb

    from genre_dagster.scoring.loading import load_behaviors_between

    with duckdb.connect(str(world["settings"].duckdb_path), read_only=True) as conn:
        first, last = conn.execute("select min(day), max(day) from main.stg_behaviors").fetchone()
        every = load_behaviors_between(conn, first, last)
        some = load_behaviors_between(conn, first, last, 25)
        again = load_behaviors_between(conn, first, last, 25)
        more = load_behaviors_between(conn, first, last, every.height + 1)
    assert every.height > 25 and some.height == 25
    assert some["impression_id"].to_list() == again["impression_id"].to_list()
    assert set(some["impression_id"]) < set(every["impression_id"])
    assert some["time"].is_sorted() and every["time"].is_sorted()
    assert more.equals(every)
