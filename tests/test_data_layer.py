"""The whole data layer on a small generated world: real Dagster runs, real dbt, real DuckDB."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import polars as pl
import pytest
from conftest import TINY  # noqa: E402

from genre_dagster.demo import generate_extra_days
from genre_dagster.pipeline import refresh


def _lines(path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line)


@pytest.fixture(scope="module")
def world(news_world):
    """The generated news world after its first nightly run (session fixture in conftest)."""
    return news_world


# a neural base scorer and its GENRE variants
VARIANT_SUFFIXES = ("", "_summary", "_profile", "_generated", "_genre_all")


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
    # data checks all pass; only monitoring checks may fail (the world's last day is shifted)
    data_failures = [c for c in last["checks_failed"] if not c.startswith("monitoring/")]
    assert data_failures == [], data_failures
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


# --- the stages above the data layer, materialized by the same nightly run -------------------


def test_enrichment_tables_hold_validated_answers(world):
    (summaries, items) = _query(
        world,
        "select (select count(*) from enrichment.news_summaries), "
        "(select count(*) from main.stg_news)",
    )[0]
    assert 0 < summaries <= items
    categories = {c for (c,) in _query(world, "select distinct category from main.stg_news")}
    topics = {
        t for (t,) in _query(world, "select distinct unnest(topics) from enrichment.user_profiles")
    }
    assert topics and topics <= categories  # only the vocabulary is ever stored
    generated = _query(world, "select category, news_id from enrichment.synthetic_items")
    assert generated and all(c in categories and n.startswith("S") for c, n in generated)


def test_embeddings_cover_every_item_and_field(world):
    rows = dict(
        _query(
            world,
            "select field, count(distinct news_id) from embeddings.news_embeddings group by 1",
        )
    )
    (items,) = _query(
        world,
        "select (select count(*) from main.stg_news) "
        "+ (select count(*) from enrichment.synthetic_items)",
    )[0]
    assert set(rows) == {"title", "abstract", "summary"}  # what the default scorers read
    assert all(n == items for n in rows.values())
    (dims,) = _query(
        world, "select list_distinct(list(len(vector))) from embeddings.news_embeddings"
    )[0]
    assert dims == [384]  # the real offline MiniLM


def test_leaderboard_has_every_scorer_variant_and_references(world):
    rows = _query(
        world, "select scorer, segment, auc, auc_low, auc_high from evaluation.leaderboard"
    )
    scorers = {s for s, *_ in rows}
    assert {
        "popularity",
        "content_similarity",
        "matrix_factorization",
        "sklearn_ranker",
        "nrms",
        "nrms_summary",
        "nrms_profile",
        "nrms_generated",
        "nrms_genre_all",
        "naml",
        "naml_summary",
        "naml_profile",
        "naml_generated",
        "naml_genre_all",
        "ensemble",
        "random",
        "oracle",
    } <= scorers
    assert {seg for _, seg, *_ in rows} == {"all", "warm", "cold"}
    auc = {s: a for s, seg, a, *_ in rows if seg == "all"}
    assert auc["oracle"] > max(a for s, a in auc.items() if s != "oracle")
    assert abs(auc["random"] - 0.5) < 0.08
    # every AUC with its 95% bootstrap interval over the impressions
    for scorer, segment, value, low, high in rows:
        if value != value:  # NaN: a segment without impressions has no interval either
            assert segment != "all" and low != low and high != high, (scorer, segment)
            continue
        assert low - 1e-12 <= value <= high + 1e-12, (scorer, segment)
    widths = {high - low for s, seg, _, low, high in rows if seg == "all"}
    assert min(widths) > 0 and len(widths) > 1  # real intervals, not one constant


def test_the_leaderboard_draws_the_evaluation_page_and_keeps_its_history(world):
    """The leaderboard's run writes the plotly page beside the monitoring reports, links it from
    its metadata and from index.html, and appends its rows to the nightly history."""
    from pathlib import Path

    from genre_dagster.evaluation.report_page import CHART_TITLES

    instance, settings = world["instance"], world["settings"]
    event = instance.get_latest_materialization_event(dg.AssetKey(["evaluation", "leaderboard"]))
    metadata = event.asset_materialization.metadata
    (day,) = _query(
        world,
        "select max(b.day) from main.impression_splits s join main.stg_behaviors b "
        "using (impression_id) where s.split = 'test'",
    )[0]
    page = Path(metadata["evaluation_page_path"].value)
    assert page == settings.reports_dir / f"evaluation_{day}_{event.run_id[:8]}.html"
    url = settings.reports_url.rstrip("/")
    assert metadata["evaluation_page"].value == f"{url}/{page.name}"
    assert metadata["report_index"].value == f"{url}/index.html"
    text = page.read_text(encoding="utf-8")
    assert '<script src="http' not in text  # plotly.js inline: no network needed
    assert all(title in text for title in CHART_TITLES.values())
    scorers = {s for (s,) in _query(world, "select distinct scorer from evaluation.leaderboard")}
    assert all(scorer in text for scorer in scorers)
    index = (settings.reports_dir / "index.html").read_text(encoding="utf-8")
    assert 'id="evaluation"' in index and f'href="{page.name}"' in index
    assert page.with_suffix(".json").exists()

    tonight = _query(
        world,
        "select h.scorer, h.segment, h.auc, l.auc, h.auc_low, l.auc_low, h.day from "
        "evaluation.leaderboard_history h join evaluation.leaderboard l using (scorer, segment) "
        f"where h.run_id = '{event.run_id}'",
    )
    assert len(tonight) == len(scorers) * 3
    for scorer, segment, h_auc, l_auc, h_low, l_low, h_day in tonight:
        assert (h_auc, h_low) == pytest.approx((l_auc, l_low)), (scorer, segment)
        assert h_day == day
    # one set of rows per leaderboard run so far: earlier runs are kept
    key = dg.AssetKey(["evaluation", "leaderboard"])
    materialized = {r.run_id for r in instance.fetch_materializations(key, limit=1000).records}
    stored = {
        r for (r,) in _query(world, "select distinct run_id from evaluation.leaderboard_history")
    }
    assert stored == materialized
    history = instance.get_latest_materialization_event(
        dg.AssetKey(["evaluation", "leaderboard_history"])
    )
    assert history.run_id == event.run_id  # one step writes both tables


def test_leaderboard_puts_each_genre_variant_next_to_its_base(world):
    """Every GENRE variant row holds its base and the AUC difference on the same impressions,
    with a paired-bootstrap interval and a verdict; the metadata shows them as a table."""
    from genre_dagster.scoring.variants import variant_bases

    rows = _query(
        world,
        "select scorer, segment, base, auc, auc_delta, auc_delta_low, auc_delta_high, "
        "auc_delta_verdict from evaluation.leaderboard",
    )
    by = {(r[0], r[1]): r for r in rows}
    bases = variant_bases()
    assert set(bases.values()) == {"nrms", "naml"}
    assert len(bases) == 8
    for (scorer, segment), (_, _, base, auc, delta, low, high, verdict) in by.items():
        if scorer not in bases:
            assert base is delta is low is high is verdict is None, scorer
            continue
        assert base == bases[scorer]
        # paired over the impressions where AUC is defined (the same for both): the
        # difference of the two averaged AUCs
        assert delta == pytest.approx(auc - by[(base, segment)][3], abs=1e-9), scorer
        assert low <= delta <= high
        expected = "helps" if low > 0 else "hurts" if high < 0 else "no clear effect"
        assert verdict == expected
    intervals = {(by[(v, "all")][5], by[(v, "all")][6]) for v in bases}
    assert len(intervals) > 1  # real intervals, not one constant
    event = world["instance"].get_latest_materialization_event(
        dg.AssetKey(["evaluation", "leaderboard"])
    )
    metadata = event.asset_materialization.metadata
    table = metadata["GENRE variants vs base"].value
    for variant, base in bases.items():
        (line,) = [x for x in table.splitlines() if x.startswith(f"| {variant} |")]
        assert f"| {base} |" in line and by[(variant, "all")][7] in line
        delta = by[(variant, "all")][4]
        assert metadata[f"auc_delta/{variant}"].value == pytest.approx(delta, abs=1e-5)


def test_prediction_files_follow_the_official_format(world):
    from genre_dagster.evaluation.prediction_file import read_mind_prediction_file

    files = list((world["settings"].data_dir / "predictions").glob("*/test_*.txt"))
    assert files
    ranks = read_mind_prediction_file(files[0])
    (n_test,) = _query(world, "select count(*) from main.impression_splits where split = 'test'")[0]
    assert len(ranks) == n_test
    assert all(sorted(r) == list(range(1, len(r) + 1)) for r in ranks.values())


def test_recommendations_exclude_seen_and_synthetic_items_and_are_explained(world):
    (seen,) = _query(
        world,
        "select count(*) from serving.recommendations r join main.user_histories h "
        "using (user_id) where list_contains(h.history, r.news_id)",
    )[0]
    assert seen == 0
    (synthetic,) = _query(
        world,
        "select count(*) from serving.recommendations r "
        "join enrichment.synthetic_items s using (news_id)",
    )[0]
    assert synthetic == 0
    rows = _query(
        world,
        "select count(*), count(distinct user_id), max(rank), bool_and(explanation <> ''), "
        "count(distinct scorer_id), count(distinct run_id) from serving.recommendations",
    )[0]
    total, users, max_rank, explained, scorers, runs = rows
    assert total == users * 10 or max_rank <= 10
    assert explained and scorers == 1 and runs == 1
    kinds = {
        k for (k,) in _query(world, "select distinct explanation_kind from serving.recommendations")
    }
    assert kinds <= {"similar_history", "profile_topic", "popularity", "freshness"}


def test_synthetic_items_are_never_candidates_or_labels(world):
    (n,) = _query(
        world,
        "select count(*) from main.impressions i join enrichment.synthetic_items s using (news_id)",
    )[0]
    assert n == 0


def test_promotion_guard_blocks_a_worse_scorer_and_lists_keep_the_serving_one(world, tmp_path):
    import shutil

    from dagster_duckdb import DuckDBResource

    from genre_dagster.assets.serving import challenger, promotion_guard, serving_scorer
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    database = tmp_path / "genre.duckdb"  # dbt views name the catalog after the file
    shutil.copy(world["settings"].duckdb_path, database)
    with duckdb.connect(str(database)) as conn:
        (serving_before, serving_auc, serving_name) = conn.sql(
            "select serving_id, serving_val_auc, serving_name from serving.serving_scorer "
            "order by decided_at desc limit 1"
        ).fetchone()
        (worse,) = conn.execute(
            "select scorer from evaluation.leaderboard where segment = 'all' "
            "and scorer not in ('random', 'oracle', 'ensemble', ?) order by scorer limit 1",
            [serving_name],
        ).fetchone()
        (worse_id,) = conn.sql(f"select scorer_id from scoring.{worse}").fetchone()
        assert worse_id != serving_before
        # a re-trained scorer that is now the best of its run but clearly worse than serving
        conn.execute("update evaluation.leaderboard set val_auc = 0.51")
        conn.execute(
            "update evaluation.leaderboard set val_auc = ? where scorer = ?",
            [serving_auc - 0.05, worse],
        )
    resources = {
        "io_manager": DuckDBPolarsTablesIOManager(database=str(database)),
        "duckdb": DuckDBResource(database=str(database)),
    }
    leaderboard = dg.AssetSpec(dg.AssetKey(["evaluation", "leaderboard"]))
    result = dg.materialize(
        [leaderboard, challenger, serving_scorer, promotion_guard],
        resources=resources,
        selection=[challenger.key, serving_scorer.key],
        raise_on_error=False,
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    guard = checks["promotion_guard"]
    with duckdb.connect(str(database), read_only=True) as conn:
        (challenger_id,) = conn.sql("select scorer_id from serving.challenger").fetchone()
        latest = conn.sql(
            "select promoted, serving_id, reason from serving.serving_scorer "
            "order by decided_at desc limit 1"
        ).fetchone()
    assert challenger_id == worse_id
    assert not guard.passed
    assert guard.severity == dg.AssetCheckSeverity.WARN
    assert latest[0] is False and latest[1] == serving_before
    assert "keeps serving" in latest[2]


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
        (verdict,) = _query(
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


def _recommend(world, tmp_path, config: dict):
    """Materialize only the lists (with `config`) on a copy of the world's database."""
    import shutil

    from genre_dagster.assets.serving import SERVING, recommendations
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    database = tmp_path / "genre.duckdb"  # dbt views name the catalog after the file
    shutil.copy(world["settings"].duckdb_path, database)
    resources = dict(world["defs"].resources)
    from dagster_duckdb import DuckDBResource

    resources["duckdb"] = DuckDBResource(database=str(database))
    resources["io_manager"] = DuckDBPolarsTablesIOManager(database=str(database))
    result = dg.materialize(
        [dg.AssetSpec(SERVING), recommendations],
        selection=[recommendations.key],
        resources=resources,
        run_config={"ops": {"serving__recommendations": {"config": config}}},
    )
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    with duckdb.connect(str(database), read_only=True) as conn:
        mix = dict(
            conn.sql(
                "select n.category, count(*) / sum(count(*)) over () from "
                "serving.recommendations r join main.stg_news n using (news_id) group by 1"
            ).fetchall()
        )
    return mat.metadata, mix


def test_steering_parameters_and_instructions_change_the_lists_as_specified(world, tmp_path):
    _, plain = _recommend(world, tmp_path, {})
    top = max(plain, key=plain.get)
    meta, steered = _recommend(
        world, tmp_path, {"exclude_categories": [top], "category_weights": {"news": 2.0}}
    )
    assert top not in steered  # an excluded category never comes through
    assert steered.get("news", 0) > plain.get("news", 0)
    assert meta["steering_mix_shift"].value > 0.1
    assert json.loads(json.dumps(meta["steering_applied"].value))["all"]["exclude_categories"] == [
        top
    ]

    meta, by_instruction = _recommend(
        world, tmp_path, {"instruction": "more local news please, no celebrity gossip"}
    )
    assert "entertainment" not in by_instruction
    assert by_instruction.get("news", 0) > plain.get("news", 0)

    meta, unmapped = _recommend(world, tmp_path, {"instruction": "make it better"})
    assert "could not map" in meta["steering_notes"].value
    assert unmapped == plain  # lists unchanged


def test_cold_segment_steering_leaves_warm_users_alone(world, tmp_path):
    meta, _ = _recommend(
        world, tmp_path, {"segments_json": '{"cold": {"exclude_categories": ["sports"]}}'}
    )
    with duckdb.connect(str(tmp_path / "genre.duckdb"), read_only=True) as conn:
        rows = conn.sql(
            "select g.segment, count(*) filter (where n.category = 'sports'), "
            "count(distinct r.steering) from serving.recommendations r "
            "join main.user_segments g using (user_id) join main.stg_news n using (news_id) "
            "group by 1"
        ).fetchall()
    by_segment = {seg: (sports, variants) for seg, sports, variants in rows}
    assert by_segment["cold"][0] == 0
    assert by_segment["warm"][1] == 1 and by_segment["cold"][1] == 1


def _night_state(world) -> dict:
    q = lambda sql: _query(world, sql)[0]  # noqa: E731
    return {
        "days": q("select count(distinct day) from raw.behaviors")[0],
        "impressions": q("select count(*), count(distinct impression_id) from raw.behaviors"),
        "list_runs": {
            r for (r,) in _query(world, "select distinct run_id from serving.recommendations")
        },
        "decisions": q("select count(*) from serving.serving_scorer")[0],
        "test_day": q("select max(day) from main.impression_splits where split = 'test'")[0],
        "llm_answers": q("select count(*) from enrichment.llm_responses where status = 'ok'")[0],
        "reports": q("select count(*) from monitoring.interaction_drift")[0],
        "evaluations": q("select count(distinct run_id) from evaluation.leaderboard_history")[0],
    }


def test_three_nights_over_three_new_days(world):
    """Sensor and schedule find each new landing day exactly once; every night rebuilds the
    lists, the evaluation and the promotion history; nothing earlier is duplicated or lost."""
    from genre_dagster.automation import landing_files_sensor, nightly_refresh_schedule

    instance = world["instance"]
    resources = {"source": world["defs"].resources["source"]}
    landing = world["settings"].landing_dir
    cursor = None
    before = _night_state(world)
    for night in range(3):
        generate_extra_days(world["config"], world["root"] / "mind", landing, 1, first=night)
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
            result = landing_files_sensor(ctx)
        assert isinstance(result, dg.SensorResult)
        assert len(result.run_requests) == 1
        new_day = result.run_requests[0].partition_key
        cursor = result.cursor
        with dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor) as ctx:
            assert isinstance(landing_files_sensor(ctx), dg.SkipReason)  # exactly once
        with dg.build_schedule_context(instance=instance, resources=resources) as ctx:
            requests = nightly_refresh_schedule(ctx)
        assert [r.partition_key for r in requests] == [new_day]
        assert requests[0].run_key == f"nightly-{new_day}"

        report = refresh(world["defs"], instance)
        assert report.success, report.runs
        assert [r["day"] for r in report.runs] == [new_day]
        after = _night_state(world)
        assert after["days"] == before["days"] + 1
        count, distinct = after["impressions"]
        assert count == distinct > before["impressions"][0]  # new rows, no duplicates
        assert after["list_runs"] == {report.runs[0]["run_id"]}  # lists rebuilt tonight
        assert after["decisions"] == before["decisions"] + 1
        assert str(after["test_day"]) == new_day  # evaluation moved to the newest day
        assert after["llm_answers"] >= before["llm_answers"]  # the cache never loses answers
        assert after["reports"] == before["reports"] + 1  # one new report a night, old kept
        assert after["evaluations"] == before["evaluations"] + 1  # the leaderboard's history too
        before = after


@pytest.fixture(scope="module")
def bad_night(world):
    """A fourth night where things go wrong together: a corrupt behaviors file lands next to the
    new day, the LLM server answers 503 to everything (echoing the API key in its error body),
    and the NRMS scorer runs on a weekly retraining cadence."""
    import dataclasses
    import gzip

    from fake_chat_server import FakeChatServer

    from genre_dagster.definitions import build_definitions

    landing = world["settings"].landing_dir
    before = _night_state(world)
    before["enrichment"] = _enrichment_counts(world)
    before["synthetic_users"] = _synthetic_users(world)
    before["nrms"] = _query(
        world, "select scorer_id, trained_at, trained_through from scoring.nrms"
    )
    generate_extra_days(world["config"], world["root"] / "mind", landing, 1, first=3)
    corrupt = landing / "behaviors_zz_corrupt.tsv"
    corrupt.write_bytes(gzip.compress(b"U1\tnot a time\tN1-1\n" * 40))  # gzip by mistake
    with FakeChatServer(default_actions=["http503"]) as down:
        defs = build_definitions(dataclasses.replace(world["settings"], llm_base_url=down.base_url))
        weekly = {"ops": {"scoring__nrms": {"config": {"retrain_every_days": 7}}}}
        report = refresh(defs, world["instance"], run_config=weekly)
        llm_requests = down.total_requests
    return {"before": before, "report": report, "corrupt": corrupt, "llm_requests": llm_requests}


def _synthetic_users(world) -> set[str]:
    return {u for (u,) in _query(world, "select user_id from enrichment.synthetic_items")}


def _enrichment_counts(world) -> dict[str, int]:
    tables = ("news_summaries", "user_profiles", "synthetic_items")
    counts = {t: _query(world, f"select count(*) from enrichment.{t}")[0][0] for t in tables}
    for status in ("ok", "failed"):
        counts[f"cache_{status}"] = _query(
            world, f"select count(*) from enrichment.llm_responses where status = '{status}'"
        )[0][0]
    return counts


def test_a_corrupt_landing_file_is_quarantined_and_the_night_proceeds(world, bad_night):
    report = bad_night["report"]
    assert report.success, report.runs
    (run,) = report.runs  # the corrupt file brought no day of its own
    assert _night_state(world)["days"] == bad_night["before"]["days"] + 1
    rows = _query(
        world,
        "select reason, count(*), any_value(day)::varchar from raw.behaviors_quarantine "
        f"where source_file = '{bad_night['corrupt']}' group by reason",
    )
    assert [(r, d) for r, _, d in rows] == [("unattributable_file", run["day"])]
    assert rows[0][1] > 0
    (in_dbt,) = _query(
        world, f"select count(*) from main.quarantine where source_file = '{bad_night['corrupt']}'"
    )[0]
    assert in_dbt == rows[0][1]  # visible in the unified quarantine model too


def test_an_llm_outage_keeps_enrichment_and_cache_and_the_lists_fresh(world, bad_night):
    before, report = bad_night["before"], bad_night["report"]
    after = _night_state(world)
    counts = _enrichment_counts(world)
    for table in ("news_summaries", "user_profiles", "cache_ok"):
        assert counts[table] == before["enrichment"][table] > 0, table  # nothing lost
    # Synthetic items belong to cold users: a user who clicked past the threshold tonight is
    # no longer cold; every user still cold keeps the item generated on an earlier night.
    still_cold = {
        u
        for (u,) in _query(
            world, "select user_id from main.user_histories where history_length between 1 and 5"
        )
    }
    kept = before["synthetic_users"] & still_cold
    assert kept and kept <= _synthetic_users(world)
    assert counts["cache_failed"] > before["enrichment"]["cache_failed"]  # failures recorded
    reasons = {
        e
        for (e,) in _query(
            world,
            "select error from enrichment.llm_responses "
            "where status = 'failed' and error is not null",
        )
    }
    assert any("503" in e or "circuit open" in e for e in reasons)
    # The circuit breaker: a dead server costs a handful of requests, not every item's retries.
    assert bad_night["llm_requests"] <= 30
    assert after["list_runs"] == {report.runs[0]["run_id"]}  # tonight's lists
    assert str(after["test_day"]) == report.runs[0]["day"]
    assert after["decisions"] == before["decisions"] + 1


def test_a_weekly_cadence_reuses_the_model_but_still_validates(world, bad_night):
    (old_id, old_at, old_through) = bad_night["before"]["nrms"][0]
    (scorer_id, trained_at, through, retrained, val_impressions) = _query(
        world,
        "select scorer_id, trained_at, trained_through, retrained, val_impressions "
        "from scoring.nrms",
    )[0]
    assert (scorer_id, trained_at, through, retrained) == (old_id, old_at, old_through, False)
    assert val_impressions > 0
    (naml_retrained, naml_through) = _query(
        world, "select retrained, trained_through from scoring.naml"
    )[0]
    assert naml_retrained and naml_through > old_through  # the default cadence: every run


def test_the_api_key_appears_in_no_log_metadata_report_or_table(world, bad_night):
    """The key sits in the environment only. It was sent (and echoed back by the failing
    server), yet no event, metadata entry, file or table of the world contains it."""
    from conftest import LLM_API_KEY
    from dagster._serdes import serialize_value

    sent = {h.get("Authorization") for _, _, h in world["llm_server"].log}
    assert sent == {f"Bearer {LLM_API_KEY}"}
    instance = world["instance"]
    runs = instance.get_run_records()
    assert len(runs) >= 5
    for record in runs:
        for event in instance.all_logs(record.dagster_run.run_id):
            assert LLM_API_KEY not in serialize_value(event), record.dagster_run.run_id
        assert LLM_API_KEY not in serialize_value(record.dagster_run)
    key = LLM_API_KEY.encode()
    scanned = 0
    for path in world["root"].rglob("*"):
        if path.is_file():
            scanned += 1
            assert key not in path.read_bytes(), path
    assert scanned > 50
    columns = _query(
        world,
        "select table_schema, table_name, column_name from information_schema.columns "
        "where data_type like 'VARCHAR%' or data_type = 'JSON'",
    )
    for schema, table, column in columns:
        (hits,) = _query(
            world,
            f'select count(*) from "{schema}"."{table}" '
            f"where contains(\"{column}\"::varchar, '{LLM_API_KEY}')",
        )[0]
        assert hits == 0, f"{schema}.{table}.{column}"


def test_the_run_prints_a_line_per_step_and_a_summary_that_matches_the_tables(world):
    """What `genre-dagster run` shows: a line per finished step with its number, the whole log
    in a file, and a summary whose numbers are those of the warehouse and the assets."""
    from genre_dagster.run_report import summary_lines

    lines = world["step_lines"]
    steps = [line for line in lines if line.startswith("  ok ")]
    assert not [line for line in lines if line.startswith("  FAILED")]
    names = {line.split()[1] for line in steps}
    assert {"raw_news", "dbt_features", "scoring__nrms", "evaluation__leaderboard"} <= names
    # the split as soon as dbt has built it, before any model work
    (splits,) = [line for line in lines if line.strip().startswith("splits: ")]
    assert "train: " in splits and "validation: " in splits and "test: " in splits
    assert lines.index(splits) < lines.index(next(x for x in steps if "scoring__" in x))
    (summaries,) = [line for line in steps if line.split()[1] == "enrichment__news_summaries"]
    assert " answered, " in summaries and " s  " in summaries
    assert world["log_file"].stat().st_size > 0
    assert "STEP_SUCCESS" in world["log_file"].read_text()

    database = str(world["settings"].duckdb_path)
    summary = "\n".join(summary_lines(world["instance"], database))
    with duckdb.connect(database, read_only=True) as conn:
        impressions = conn.sql("select count(*) from main.stg_behaviors").fetchone()[0]
        best, auc = conn.sql(
            "select scorer, auc from evaluation.leaderboard where segment = 'all' and "
            "scorer not in ('random', 'oracle') order by auc desc limit 1"
        ).fetchone()
        answered = conn.sql("select count(*) from enrichment.news_summaries").fetchone()[0]
    assert f"{impressions:,} impressions" in summary
    assert f"1. {best:<22s} {auc:.4f}" in summary
    assert f"published {answered}" in summary
    for heading in ("Data", "LLM enrichment", "Leaderboard", "GENRE variants vs base",
                    "Serving", "Monitoring", "Next"):  # fmt: skip
        assert f"\n{heading}" in f"\n{summary}", heading
