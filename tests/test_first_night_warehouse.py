"""The data layer after the first nightly run: real Dagster runs, real dbt, real DuckDB.

The backfill, raw tables, dbt models, splits, features and their quality checks.
Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

import dagster as dg
import duckdb
import polars as pl
from conftest import TINY
from world_sql import query


def _lines(path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line)


def test_first_run_backfills_every_day_then_builds_the_graph(world):
    report = world["report"]
    assert report.success, report.runs
    days = [r["day"] for r in report.runs]
    assert len(days) == TINY["n_days"]
    assert days == sorted(days)
    assert [r["job"] for r in report.runs] == ["ingest_day"] * (TINY["n_days"] - 1) + [
        "nightly_refresh"
    ]
    materialized = world["instance"].get_materialized_partitions(dg.AssetKey(["raw", "behaviors"]))
    assert sorted(materialized) == days


def test_raw_counts_match_the_source_files(world):
    mind = world["root"] / "mind"
    behavior_lines = _lines(mind / "train" / "behaviors.tsv") + _lines(
        mind / "dev" / "behaviors.tsv"
    )
    assert query(world, "select count(*) from raw.behaviors")[0][0] == behavior_lines
    assert query(world, "select count(*) from main.quarantine")[0][0] == 0
    news_ids = {
        line.split("\t")[0]
        for split in ("train", "dev")
        for line in (mind / split / "news.tsv").read_text().splitlines()
    }
    assert query(world, "select count(*) from raw.news")[0][0] == len(news_ids)


def test_raw_user_ids_never_reach_duckdb(world):
    raw_users = {
        line.split("\t")[1]
        for split in ("train", "dev")
        for line in (world["root"] / "mind" / split / "behaviors.tsv").read_text().splitlines()
    }
    stored = {u for (u,) in query(world, "select distinct user_id from raw.behaviors")}
    assert stored and not stored & raw_users
    assert all(u.startswith("u_") and len(u) == 18 for u in stored)


def test_impressions_are_exploded_with_positions_and_labels(world):
    (n_candidates,) = query(world, "select sum(len(candidate_ids)) from raw.behaviors")[0]
    (rows, clicks) = query(world, "select count(*), sum(label) from main.impressions")[0]
    assert rows == n_candidates
    truth = pl.read_parquet(world["root"] / "mind" / "truth.parquet")
    assert rows == truth.height
    assert clicks == truth["label"].sum()
    # position 1 is the first candidate as shown in the file
    first = query(
        world,
        "select b.candidate_ids[1], i.news_id from raw.behaviors b join main.impressions i "
        "using (impression_id) where i.position = 1 limit 50",
    )
    assert all(a == b for a, b in first)


def test_time_based_splits_use_the_dev_folder_as_test(world):
    rows = query(
        world,
        "select s.split, min(b.day), max(b.day), count(*), bool_and(b.source_split = 'dev') "
        "from main.impression_splits s join main.stg_behaviors b using (impression_id) "
        "group by s.split",
    )
    by_split = {r[0]: r[1:] for r in rows}
    assert set(by_split) == {"train", "validation", "test"}
    assert by_split["train"][1] < by_split["validation"][0]
    assert by_split["validation"][1] < by_split["test"][0]
    assert by_split["test"][3] is True  # the dev folder is the evaluation split


def test_the_split_plan_from_the_files_is_the_split_dbt_made(world):
    """`genre-dagster run` plans the split from the source files before any work, with the
    rule of dbt's model rewritten in Python: on the normal layout it is dbt's, day for day
    and impression for impression (tests/test_splits.py: the one-day-train layout)."""
    from genre_dagster.scoring.splits import describe_splits, plan_splits

    plan = plan_splits(world["defs"].resources["source"].impression_days())
    with duckdb.connect(str(world["settings"].duckdb_path), read_only=True) as conn:
        made = describe_splits(conn)
    assert (plan.rule, plan.estimated) == ("time", False)
    assert plan.days == made.days and plan.rule == made.rule


def test_cold_users_are_about_a_fifth(world):
    (cold_share,) = query(
        world, "select avg(case when segment = 'cold' then 1.0 else 0 end) from main.user_segments"
    )[0]
    assert 0.08 < cold_share < 0.4


def test_histories_are_time_ordered_and_capped(world):
    (longest,) = query(world, "select max(history_length) from main.user_histories")[0]
    assert 0 < longest <= 50
    # the last history element is one of the user's clicks at their newest click time
    rows = query(
        world,
        """
        with clicks as (select user_id, news_id, time from main.impressions where label = 1),
        newest as (
            select user_id, list(news_id) as news_ids from clicks
            where (user_id, time) in (select user_id, max(time) from clicks group by user_id)
            group by user_id
        )
        select count(*), count(*) filter (where list_contains(n.news_ids, h.history[-1]))
        from newest n join main.user_histories h using (user_id)
        """,
    )
    total, matching = rows[0]
    assert total > 0
    assert matching == total


def test_item_daily_stats_add_up(world):
    (stats_impr, stats_clicks) = query(
        world, "select sum(impressions), sum(clicks) from main.item_daily_stats"
    )[0]
    (impr, clicks) = query(
        world, "select count(*), sum(label) from main.impressions where label is not null"
    )[0]
    assert (stats_impr, stats_clicks) == (impr, clicks)


def test_all_checks_passed(world):
    report = world["report"]
    last = report.runs[-1]
    # data checks all pass; only monitoring checks may fail (the world's last day is shifted)
    data_failures = [c for c in last["checks_failed"] if not c.startswith("monitoring/")]
    assert data_failures == [], data_failures
    # dbt tests and the Python quality checks all ran in the full-graph run
    names = set(last["checks_passed"])
    assert {"click_rate_bounds", "histories_reference_known_news", "row_conservation"} <= names
    assert any(name.startswith("unique_") for name in names)
    assert any(name.startswith("relationships_") for name in names)


def test_the_first_night_ran_under_a_low_duckdb_memory_limit(world):
    # conftest sets GENRE_DUCKDB_MEMORY_LIMIT low for the session's runs (issue 19: a
    # memory-bounded run of the small world still succeeds); dbt's models record what they got
    assert world["report"].success
    expected = (
        duckdb.connect(config={"memory_limit": world["duckdb_memory_limit"]})
        .execute("select current_setting('memory_limit')")
        .fetchone()[0]
    )
    event = world["instance"].get_latest_materialization_event(dg.AssetKey("impressions"))
    metadata = event.asset_materialization.metadata
    assert metadata["duckdb_memory_limit"].value == expected
    assert metadata["duckdb_threads"].value >= 1
    temp_dir = metadata["duckdb_temp_directory"].value
    assert temp_dir == str(world["settings"].data_dir / "duckdb_tmp" / "genre.duckdb.tmp")
