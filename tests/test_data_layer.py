"""The whole data layer on a small generated world: real Dagster runs, real dbt, real DuckDB."""

from __future__ import annotations

import dagster as dg
import duckdb
import polars as pl
import pytest

from genre_dagster.demo import DemoWorldConfig, generate_extra_days, generate_world
from genre_dagster.pipeline import refresh
from genre_dagster.settings import Settings

TINY = dict(n_news=500, n_users=300, n_days=4, impressions_per_day=120, seed=11)


def _lines(path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("genre")
    config = DemoWorldConfig(**TINY)
    summary = generate_world(config, root / "mind")
    settings = Settings(
        env="local",
        data_dir=root / "data",
        source_kind="mind",
        source_path=root / "mind",
        landing_dir=root / "landing",
        demo_preset="small",
    )
    from genre_dagster.definitions import build_definitions

    defs = build_definitions(settings)
    home = root / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        report = refresh(defs, instance)
        yield {
            "root": root,
            "config": config,
            "summary": summary,
            "settings": settings,
            "defs": defs,
            "instance": instance,
            "report": report,
        }


def _query(world, sql: str):
    with duckdb.connect(str(world["settings"].duckdb_path), read_only=True) as conn:
        return conn.sql(sql).fetchall()


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
    assert _query(world, "select count(*) from raw.behaviors")[0][0] == behavior_lines
    assert _query(world, "select count(*) from main.quarantine")[0][0] == 0
    news_ids = {
        line.split("\t")[0]
        for split in ("train", "dev")
        for line in (mind / split / "news.tsv").read_text().splitlines()
    }
    assert _query(world, "select count(*) from raw.news")[0][0] == len(news_ids)


def test_raw_user_ids_never_reach_duckdb(world):
    raw_users = {
        line.split("\t")[1]
        for split in ("train", "dev")
        for line in (world["root"] / "mind" / split / "behaviors.tsv").read_text().splitlines()
    }
    stored = {u for (u,) in _query(world, "select distinct user_id from raw.behaviors")}
    assert stored and not stored & raw_users
    assert all(u.startswith("u_") and len(u) == 18 for u in stored)


def test_impressions_are_exploded_with_positions_and_labels(world):
    (n_candidates,) = _query(world, "select sum(len(candidate_ids)) from raw.behaviors")[0]
    (rows, clicks) = _query(world, "select count(*), sum(label) from main.impressions")[0]
    assert rows == n_candidates
    truth = pl.read_parquet(world["root"] / "mind" / "truth.parquet")
    assert rows == truth.height
    assert clicks == truth["label"].sum()
    # position 1 is the first candidate as shown in the file
    first = _query(
        world,
        "select b.candidate_ids[1], i.news_id from raw.behaviors b join main.impressions i "
        "using (impression_id) where i.position = 1 limit 50",
    )
    assert all(a == b for a, b in first)


def test_time_based_splits_use_the_dev_folder_as_test(world):
    rows = _query(
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


def test_cold_users_are_about_a_fifth(world):
    (cold_share,) = _query(
        world, "select avg(case when segment = 'cold' then 1.0 else 0 end) from main.user_segments"
    )[0]
    assert 0.08 < cold_share < 0.4


def test_histories_are_time_ordered_and_capped(world):
    (longest,) = _query(world, "select max(history_length) from main.user_histories")[0]
    assert 0 < longest <= 50
    # the last history element is one of the user's clicks at their newest click time
    rows = _query(
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
    (stats_impr, stats_clicks) = _query(
        world, "select sum(impressions), sum(clicks) from main.item_daily_stats"
    )[0]
    (impr, clicks) = _query(
        world, "select count(*), sum(label) from main.impressions where label is not null"
    )[0]
    assert (stats_impr, stats_clicks) == (impr, clicks)


def test_all_checks_passed(world):
    report = world["report"]
    last = report.runs[-1]
    assert last["checks_failed"] == [], last["checks_failed"]
    # dbt tests and the Python quality checks all ran in the full-graph run
    names = set(last["checks_passed"])
    assert {"click_rate_bounds", "histories_reference_known_news", "row_conservation"} <= names
    assert any(name.startswith("unique_") for name in names)
    assert any(name.startswith("relationships_") for name in names)


def test_rerun_replaces_partitions_instead_of_appending(world):
    before = _query(world, "select count(*), count(distinct impression_id) from raw.behaviors")[0]
    report = refresh(world["defs"], world["instance"])
    assert report.success
    assert len(report.runs) == 1  # nothing new: the newest day is rebuilt
    after = _query(world, "select count(*), count(distinct impression_id) from raw.behaviors")[0]
    assert before == after
    assert after[0] == after[1]


def test_new_landing_day_is_found_by_sensor_and_schedule(world):
    from genre_dagster.automation import landing_files_sensor, nightly_refresh_schedule

    landing = world["settings"].landing_dir
    generate_extra_days(world["config"], world["root"] / "mind", landing, 1)
    instance = world["instance"]
    resources = {"source": world["defs"].resources["source"]}

    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = landing_files_sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert len(result.run_requests) == 1
    new_day = result.run_requests[0].partition_key
    assert new_day not in instance.get_materialized_partitions(dg.AssetKey(["raw", "behaviors"]))
    # the same files again: nothing to launch (exactly once)
    with dg.build_sensor_context(
        instance=instance, resources=resources, cursor=result.cursor
    ) as context:
        again = landing_files_sensor(context)
    assert isinstance(again, dg.SkipReason)

    with dg.build_schedule_context(instance=instance, resources=resources) as context:
        requests = nightly_refresh_schedule(context)
    assert [r.partition_key for r in requests] == [new_day]
    assert requests[0].run_key == f"nightly-{new_day}"

    report = refresh(world["defs"], instance)
    assert report.success and [r["day"] for r in report.runs] == [new_day]
    (days,) = _query(world, "select count(distinct day) from raw.behaviors")[0]
    assert days == TINY["n_days"] + 1
