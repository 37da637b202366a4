"""Splits that fail fast with the fix, and a split rule for a one-day `train/` folder.

A MIND-format folder whose `train/` holds one day and `dev/` another (a common cut) would leave
the time split without a train day: a seeded user holdout of that day becomes validation
instead. A configuration that leaves a split empty fails the blocking check on
`impression_splits` in seconds, naming the days and the setting, and no scorer trains on it.
`genre-dagster run` plans the split from the source files before any work (the same rule in
Python, `plan_splits`, checked here against what dbt made) and stops there on an empty split.
"""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import duckdb
import pytest
from llm_worlds import NO_LLM_CALLS, run_assets, small_network_ops, world_settings

from genre_dagster.scoring.splits import DayCount, SplitSettings, describe_splits, plan_splits


@pytest.fixture(scope="module")
def one_day_train(tmp_path_factory):
    """A MIND-format folder with a one-day train/ and a one-day dev/, after `refresh` ran the
    whole main job on it as `genre-dagster run` does (small networks, no LLM call: the cost of
    the graph itself); the tests below rebuild copies of its warehouse with other settings."""
    from genre_dagster.definitions import build_definitions
    from genre_dagster.demo import DemoWorldConfig, generate_world
    from genre_dagster.pipeline import refresh

    root = tmp_path_factory.mktemp("one_day_train")
    config = DemoWorldConfig(n_news=400, n_users=600, n_days=2, impressions_per_day=500, seed=5)
    generate_world(config, root / "mind")
    settings = world_settings(root)
    defs = build_definitions(settings)
    run_config = {"ops": {**NO_LLM_CALLS["ops"], **small_network_ops()}}
    lines: list[str] = []
    log_file = root / "logs" / "run.log"
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        report = refresh(
            defs, instance, run_config=run_config, on_step=lines.append, log_file=log_file
        )
    return {
        "config": config,
        "root": root,
        "settings": settings,
        "defs": defs,
        "report": report,
        "step_lines": lines,
        "log_file": log_file,
    }


def _dbt_report(database):
    with duckdb.connect(str(database), read_only=True) as conn:
        return describe_splits(conn)


def _planned(world, settings: SplitSettings | None = None):
    return plan_splits(
        world["defs"].resources["source"].impression_days(), settings or SplitSettings()
    )


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
    # the CLI's preflight plans the same split from the files, without dbt
    plan = _planned(one_day_train, SplitSettings(validation_start=str(first)))
    assert (plan.rule, plan.days, plan.estimated) == ("time", _dbt_report(database).days, False)


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


def test_the_split_plan_agrees_with_dbt_on_a_one_day_train_folder(one_day_train):
    """Days, rule and test counts are dbt's; the held-out day's impressions add up, and the
    validation estimate (holdout_share of them) is near the share the user hash picked."""
    dbt = _dbt_report(one_day_train["settings"].duckdb_path)
    plan = _planned(one_day_train)
    assert plan.rule == dbt.rule == "user_holdout" and plan.estimated
    assert {s: [d for d, _ in days] for s, days in plan.days.items()} == {
        s: [d for d, _ in days] for s, days in dbt.days.items()
    }
    assert plan.days["test"] == dbt.days["test"]
    held_out = plan.impressions["train"] + plan.impressions["validation"]
    assert held_out == dbt.impressions["train"] + dbt.impressions["validation"]
    assert plan.impressions["validation"] == round(0.1 * held_out)
    assert 0.5 < dbt.impressions["validation"] / plan.impressions["validation"] < 2
    assert "~" in plan.summary() and "user holdout" in plan.summary()


def _day(n: int) -> date:
    return date(2019, 11, 10) + timedelta(days=n)


def _counts(*rows: tuple[int, str, int]) -> list[DayCount]:
    return [DayCount(_day(d), folder, folder != "test", n) for d, folder, n in rows]


@pytest.mark.parametrize(
    ("rows", "settings", "rule", "expected"),
    [
        pytest.param(
            [(1, "train", 10), (2, "train", 20), (3, "train", 30), (4, "dev", 40)],
            SplitSettings(),
            "time",
            {"train": [(1, 10), (2, 20)], "validation": [(3, 30)], "test": [(4, 40)]},
            id="dev_folder_is_test",
        ),
        pytest.param(
            [(1, "train", 10), (2, "train", 20), (3, "train", 30), (4, "train", 40)],
            SplitSettings(test_days=2),
            "time",
            {"train": [(1, 10)], "validation": [(2, 20)], "test": [(3, 30), (4, 40)]},
            id="newest_test_days",
        ),
        pytest.param(
            [(1, "train", 10), (2, "train", 20), (3, "dev", 40), (4, "test", 99)],
            SplitSettings(validation_days=2),
            "user_holdout",
            {"train": [(1, 9), (2, 18)], "validation": [(1, 1), (2, 2)], "test": [(3, 40)]},
            id="holdout_over_two_days_unlabelled_test_folder_ignored",
        ),
        pytest.param(
            [(1, "train", 10), (2, "dev", 40)],
            SplitSettings(holdout_share=0),
            "time",
            {"validation": [(1, 10)], "test": [(2, 40)]},
            id="holdout_off",
        ),
        pytest.param(
            [(1, "train", 10), (2, "train", 20), (3, "dev", 40)],
            SplitSettings(validation_start=str(_day(1))),
            "time",
            {"validation": [(1, 10), (2, 20)], "test": [(3, 40)]},
            id="explicit_validation_start_never_falls_back",
        ),
        pytest.param(
            [(1, "train", 10), (2, "dev", 20), (3, "train", 30)],
            SplitSettings(),
            "time",
            {"train": [(1, 10)], "validation": [(2, 20)], "test": [(3, 30)]},
            id="dev_not_newest_is_like_any_day",
        ),
        pytest.param(
            [(1, "train", 10), (2, "train", 20), (3, "train", 30)],
            SplitSettings(test_start=str(_day(2)), validation_start=str(_day(2))),
            "time",
            {"train": [(1, 10)], "test": [(2, 20), (3, 30)]},
            id="explicit_boundaries",
        ),
        pytest.param([(1, "train", 10)], SplitSettings(), "time", {"test": [(1, 10)]}, id="one"),
        pytest.param([(1, "test", 10)], SplitSettings(), "none", {}, id="nothing_labelled"),
    ],
)
def test_the_split_plan_applies_the_dbt_rule(rows, settings, rule, expected):
    plan = plan_splits(_counts(*rows), settings)
    assert plan.rule == rule
    assert plan.days == {s: [(_day(d), n) for d, n in days] for s, days in expected.items()}
    assert (plan.problem() is None) is (len(expected) == 3)


def test_the_split_settings_defaults_are_the_dbt_vars_and_the_launchpad_config():
    import yaml

    from genre_dagster.assets.features import FeaturesConfig
    from genre_dagster.settings import DBT_PROJECT_DIR

    defaults = SplitSettings()
    dbt_vars = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    config = FeaturesConfig()
    for name in SplitSettings.__dataclass_fields__:
        assert getattr(defaults, name) == dbt_vars[name] == getattr(config, name), name
    assert SplitSettings(holdout_share=0.25, test_days=2).changed() == {
        "holdout_share": 0.25,
        "test_days": 2,
    }


@pytest.fixture
def cli_environment(monkeypatch, tmp_path):
    """`genre-dagster run` in a scratch data folder and instance; Dagster's and dbt's work is
    forbidden: the preflight must stop before it."""
    from genre_dagster import cli

    for name in ("GENRE_SOURCE", "GENRE_SOURCE_PATH", "GENRE_COLUMN_MAP", "GENRE_DOMAIN"):
        monkeypatch.setenv(name, "")
    monkeypatch.setenv("GENRE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))

    def no_dbt():
        raise AssertionError("the run went past the split preflight")

    monkeypatch.setattr(cli, "prepare_dbt", no_dbt)
    return tmp_path


@pytest.mark.parametrize("layout", ["one_labelled_day", "validation_start_on_the_first_day"])
def test_the_run_command_stops_in_seconds_when_no_train_data_is_left(
    one_day_train, cli_environment, capsys, layout
):
    """No train day at all, by the data (one labelled day: it is the test split) or by a flag
    (an explicit boundary never falls back to the holdout): the command fails before dbt,
    Dagster or any ingestion, printing the plan and naming the days and the flags."""
    import shutil
    import time

    from genre_dagster import cli

    mind = one_day_train["root"] / "mind"
    first, second = sorted(
        {c.day for c in one_day_train["defs"].resources["source"].impression_days()}
    )
    argv = ["run", "--source", "mind"]
    if layout == "one_labelled_day":
        folder = cli_environment / "one_day"
        shutil.copytree(mind / "train", folder / "train")
        argv += ["--path", str(folder)]
        days = [first]
    else:
        argv += ["--path", str(mind), "--validation-start", str(first)]
        days = [first, second]
    started = time.perf_counter()
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    seconds = time.perf_counter() - started
    message = str(stop.value)
    assert message.startswith("split preflight: empty split: train")
    assert all(str(day) in message for day in days)
    assert "--validation-start" in message and "--holdout-share" in message
    printed = capsys.readouterr().out
    assert "split: train: no day" in printed and "rule: " in printed
    assert seconds < 10, seconds
    data = cli_environment / "data"
    assert not (data / "genre.duckdb").exists()  # nothing ingested
    assert not (cli_environment / "home" / "history").exists()  # no Dagster run


def test_a_one_day_train_mind_folder_runs_the_whole_main_job_to_the_end(one_day_train):
    """The layout of issue 20 (train/ and dev/ one day each) through `refresh`, as `genre-dagster
    run` does: the user holdout gives train and validation, every scorer trains, the
    leaderboard and the lists are written. dbt's source tests run as checks of the raw assets,
    with no 'AssetObservation instead of an AssetCheckResult' warning in the run's log."""
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    report = one_day_train["report"]
    assert report.success, [r["failures"] for r in report.runs]
    assert [r["job"] for r in report.runs] == ["ingest_day", "nightly_refresh"]
    (splits,) = [line for line in one_day_train["step_lines"] if line.strip().startswith("splits:")]
    assert "user holdout" in splits

    names = [spec.name for spec in DEFAULT_SCORERS]
    with duckdb.connect(str(one_day_train["settings"].duckdb_path), read_only=True) as conn:
        aucs = dict(
            conn.sql(
                " union all ".join(f"select '{n}', val_auc from scoring.{n}" for n in names)
            ).fetchall()
        )
        board = {
            s for (s,) in conn.sql("select distinct scorer from evaluation.leaderboard").fetchall()
        }
        (users, items) = conn.sql(
            "select count(distinct user_id), count(distinct news_id) from serving.recommendations"
        ).fetchone()
    assert sorted(aucs) == sorted(names) and all(0 < auc < 1 for auc in aucs.values()), aucs
    assert set(names) <= board
    assert users > 0 and items > 0

    night = report.runs[-1]
    assert {"source_unique_raw_behaviors_impression_id", "source_not_null_raw_news_news_id"} <= set(
        night["checks_passed"]
    )
    log = one_day_train["log_file"].read_text()
    assert "source_unique_raw_behaviors_impression_id" in log
    assert "instead of an `AssetCheckResult`" not in log
