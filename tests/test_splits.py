"""Splits that fail fast with the fix, and a split rule for a one-day `train/` folder.

A MIND-format folder whose `train/` holds one day and `dev/` another (a common cut) would leave
the time split without a train day: a seeded user holdout of that day becomes validation
instead. A configuration that leaves a split empty fails the blocking check on
`impression_splits` in seconds, naming the days and the setting, and no scorer trains on it.
"""

from __future__ import annotations

import dagster as dg
import duckdb
import pytest
from llm_worlds import build_world, run_assets


@pytest.fixture(scope="module")
def one_day_train(tmp_path_factory):
    from genre_dagster.demo import DemoWorldConfig

    config = DemoWorldConfig(n_news=400, n_users=600, n_days=2, impressions_per_day=500, seed=5)
    return build_world(tmp_path_factory.mktemp("one_day_train"), config)


def _splits(database) -> dict:
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.sql(
            "select s.split, s.split_rule, count(*), count(distinct s.day), "
            "count(distinct b.user_id) from main.impression_splits as s "
            "join main.stg_behaviors as b using (impression_id) "
            "where s.split <> 'unlabeled' group by all"
        ).fetchall()
    return {split: {"rule": rule, "n": n, "days": d, "users": u} for split, rule, n, d, u in rows}


def test_a_one_day_train_folder_holds_out_a_share_of_users_for_validation(one_day_train):
    splits = _splits(one_day_train["settings"].duckdb_path)
    assert {s["rule"] for s in splits.values()} == {"user_holdout"}
    assert splits["train"]["days"] == splits["validation"]["days"] == 1
    users = splits["train"]["users"] + splits["validation"]["users"]
    share = splits["validation"]["users"] / users
    assert 0.05 < share < 0.15  # holdout_share 0.1 of the users, by a hash
    with duckdb.connect(str(one_day_train["settings"].duckdb_path), read_only=True) as conn:
        (shared,) = conn.sql(
            "select count(*) from (select user_id from main.impression_splits join "
            "main.stg_behaviors using (impression_id) group by user_id "
            "having count(distinct split) filter (where split in ('train', 'validation')) > 1)"
        ).fetchone()
    assert shared == 0  # a user is in train or in validation, never both


def test_the_split_check_passes_and_reports_the_rule(one_day_train):
    from genre_dagster.scoring.splits import describe_splits

    with duckdb.connect(str(one_day_train["settings"].duckdb_path), read_only=True) as conn:
        report = describe_splits(conn)
    assert report.rule == "user_holdout" and report.empty == []
    assert "user holdout" in report.summary()
    assert report.days["train"][0][0] == report.days["validation"][0][0]  # the same day


def test_a_split_left_empty_fails_the_blocking_check_and_no_scorer_trains(one_day_train, tmp_path):
    """validation_start on the first day leaves no train day: an explicit boundary never falls
    back to the holdout. The check fails naming the days and the setting, and the scorer after
    it does not run."""
    import shutil

    from genre_dagster.assets.features import dbt_features
    from genre_dagster.assets.quality_checks import splits_are_usable
    from genre_dagster.assets.scoring import scorer_assets

    database = tmp_path / "genre.duckdb"
    shutil.copy(one_day_train["settings"].duckdb_path, database)
    with duckdb.connect(str(database), read_only=True) as conn:
        (first,) = conn.sql("select min(day) from main.stg_behaviors").fetchone()
    popularity = next(a for a in scorer_assets if a.key.path[-1] == "popularity")
    config = {"ops": {"dbt_features": {"config": {"validation_start": str(first)}}}}
    result = run_assets(one_day_train, database, [dbt_features, splits_are_usable, popularity],
                        config)  # fmt: skip
    assert not result.success
    (check,) = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.check_name == "splits_are_usable"
    ]
    assert not check.passed
    assert str(first) in check.description and "validation_start" in check.description
    assert "train: no day" in check.description
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "impression_splits" in materialized and "popularity" not in materialized


def test_a_scorer_on_an_empty_train_split_fails_once_without_retries(one_day_train, tmp_path):
    """Run on its own (no check in the run), the scorer's guard raises a Failure that the retry
    policy does not retry, with the same message."""
    import shutil

    from genre_dagster.assets.features import dbt_features
    from genre_dagster.assets.scoring import scorer_assets

    database = tmp_path / "genre.duckdb"
    shutil.copy(one_day_train["settings"].duckdb_path, database)
    with duckdb.connect(str(database), read_only=True) as conn:
        (first,) = conn.sql("select min(day) from main.stg_behaviors").fetchone()
    config = {"ops": {"dbt_features": {"config": {"validation_start": str(first)}}}}
    assert run_assets(one_day_train, database, [dbt_features], config).success
    popularity = next(a for a in scorer_assets if a.key.path[-1] == "popularity")
    result = run_assets(one_day_train, database, [popularity],
                        retry_policy=dg.RetryPolicy(max_retries=2))  # fmt: skip
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(failures) == 1 and retries == []
    message = failures[0].step_failure_data.error.message
    assert "empty split: train" in message and "validation_start" in message
