"""Later nights on the session's news world: a rerun of the first night, three nights over
three new landing days (sensor and schedule), then a bad night (corrupt file, LLM outage, a
weekly retraining cadence) and the API key looked for everywhere those runs left traces.

These tests CHANGE the shared `news_world`, and each builds on the one before (the bad night is
the fourth extra day). So that every `test_first_night_*` module reads the first night whatever
order the files are collected or listed in, they all live in this module, in this order, marked
`later_nights`: conftest runs marked tests after every other test of the session. The `world`
fixture here records that the world has moved on; conftest's first-night `world` refuses it then.
"""

from __future__ import annotations

import dagster as dg
import pytest
from world_sql import query

from genre_dagster.demo import generate_extra_days
from genre_dagster.pipeline import refresh

pytestmark = pytest.mark.later_nights


@pytest.fixture(scope="module")
def world(news_world):
    """The session's news world, which this module changes: from here on it is no longer the
    first night's (the first-night `world` fixture in conftest checks this mark)."""
    news_world["later_nights"] = True
    return news_world


def test_rerun_replaces_partitions_instead_of_appending(world):
    before = query(world, "select count(*), count(distinct impression_id) from raw.behaviors")[0]
    report = refresh(world["defs"], world["instance"])
    assert report.success
    assert len(report.runs) == 1  # nothing new: the newest day is rebuilt
    after = query(world, "select count(*), count(distinct impression_id) from raw.behaviors")[0]
    assert before == after
    assert after[0] == after[1]


def _night_state(world) -> dict:
    q = lambda sql: query(world, sql)[0]  # noqa: E731
    return {
        "days": q("select count(distinct day) from raw.behaviors")[0],
        "impressions": q("select count(*), count(distinct impression_id) from raw.behaviors"),
        "list_runs": {
            r for (r,) in query(world, "select distinct run_id from serving.recommendations")
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
    before["nrms"] = query(world, "select scorer_id, trained_at, trained_through from scoring.nrms")
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
    return {u for (u,) in query(world, "select user_id from enrichment.synthetic_items")}


def _enrichment_counts(world) -> dict[str, int]:
    tables = ("news_summaries", "user_profiles", "synthetic_items")
    counts = {t: query(world, f"select count(*) from enrichment.{t}")[0][0] for t in tables}
    for status in ("ok", "failed"):
        counts[f"cache_{status}"] = query(
            world, f"select count(*) from enrichment.llm_responses where status = '{status}'"
        )[0][0]
    return counts


def test_a_corrupt_landing_file_is_quarantined_and_the_night_proceeds(world, bad_night):
    report = bad_night["report"]
    assert report.success, report.runs
    (run,) = report.runs  # the corrupt file brought no day of its own
    assert _night_state(world)["days"] == bad_night["before"]["days"] + 1
    rows = query(
        world,
        "select reason, count(*), any_value(day)::varchar from raw.behaviors_quarantine "
        f"where source_file = '{bad_night['corrupt']}' group by reason",
    )
    assert [(r, d) for r, _, d in rows] == [("unattributable_file", run["day"])]
    assert rows[0][1] > 0
    (in_dbt,) = query(
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
        for (u,) in query(
            world, "select user_id from main.user_histories where history_length between 1 and 5"
        )
    }
    kept = before["synthetic_users"] & still_cold
    assert kept and kept <= _synthetic_users(world)
    assert counts["cache_failed"] > before["enrichment"]["cache_failed"]  # failures recorded
    reasons = {
        e
        for (e,) in query(
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
    (scorer_id, trained_at, through, retrained, val_impressions) = query(
        world,
        "select scorer_id, trained_at, trained_through, retrained, val_impressions "
        "from scoring.nrms",
    )[0]
    assert (scorer_id, trained_at, through, retrained) == (old_id, old_at, old_through, False)
    assert val_impressions > 0
    (naml_retrained, naml_through) = query(
        world, "select retrained, trained_through from scoring.naml"
    )[0]
    assert naml_retrained and naml_through > old_through  # the default cadence: every run


def test_the_reused_model_reads_its_validation_from_last_nights_leaderboard(world, bad_night):
    """Tonight's validation day is the day last night's leaderboard scored with this very model:
    the step reads those scores instead of scoring the day again, and they are the scores it
    would have computed."""
    import duckdb

    from genre_dagster.evaluation.metrics import evaluate_impressions
    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.scoring.base import score_in_chunks
    from genre_dagster.scoring.inputs import embedding_fields, load_scorer_inputs

    (run,) = bad_night["report"].runs
    event = world["instance"].get_latest_materialization_event(dg.AssetKey(["scoring", "nrms"]))
    assert event.run_id == run["run_id"]
    metadata = event.asset_materialization.metadata
    assert metadata["retrained"].value is False
    assert "leaderboard's test split" in metadata["validation_source"].value
    (scorer_id, val_auc) = query(world, "select scorer_id, val_auc from scoring.nrms")[0]
    (validation_day,) = query(
        world, "select max(day) from main.impression_splits where split = 'validation'"
    )[0]
    (last_nights_auc,) = query(
        world,
        "select auc from evaluation.leaderboard_history where scorer = 'nrms' and "
        f"segment = 'all' and day = '{validation_day}' order by evaluated_at desc limit 1",
    )[0]
    assert val_auc == pytest.approx(last_nights_auc, abs=1e-12)
    # scored again from the warehouse, the model gives the same validation AUC
    scorer = ModelStore(root=str(world["settings"].models_dir)).load(scorer_id)
    with duckdb.connect(str(world["settings"].duckdb_path), read_only=True) as conn:
        inputs = load_scorer_inputs(
            conn, ("validation",), embedding_fields(scorer.config), configs=[scorer.config]
        )
    valid = inputs.splits["validation"]
    scores = score_in_chunks(scorer, valid, inputs.items, 0)
    assert evaluate_impressions(valid, scores)["auc"] == pytest.approx(val_auc, abs=1e-6)


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
    columns = query(
        world,
        "select table_schema, table_name, column_name from information_schema.columns "
        "where data_type like 'VARCHAR%' or data_type = 'JSON'",
    )
    for schema, table, column in columns:
        (hits,) = query(
            world,
            f'select count(*) from "{schema}"."{table}" '
            f"where contains(\"{column}\"::varchar, '{LLM_API_KEY}')",
        )[0]
        assert hits == 0, f"{schema}.{table}.{column}"
