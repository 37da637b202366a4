"""Faults a deployment survives, with real processes: concurrent writers, a SIGKILLed run.

Each test drives `tests/job_runner.py` in separate processes against a real DAGSTER_HOME and a
real DuckDB file, the way `dagster dev` or a second user would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
from conftest import ROOT

RUNNER = str(ROOT / "tests" / "job_runner.py")
# Small: these tests are about processes, not data volume.
WORLD = dict(n_news=200, n_users=120, n_days=3, impressions_per_day=60, seed=5)


def _env(root: Path, home: Path, llm_url: str = "") -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GENRE_ENV": "local",
        "GENRE_DATA_DIR": str(root / "data"),
        "GENRE_SOURCE": "mind",
        "GENRE_SOURCE_PATH": str(root / "mind"),
        "GENRE_LANDING_DIR": str(root / "landing"),
        "PYTHONPATH": str(ROOT / "tests"),
    }
    if llm_url:
        env.update(
            GENRE_LLM_BACKEND="openai", GENRE_LLM_BASE_URL=llm_url, GENRE_LLM_MODEL="fake-genre"
        )
    return env


def _world(root: Path):
    from genre_dagster.demo import DemoWorldConfig, generate_world

    config = DemoWorldConfig(**WORLD)
    generate_world(config, root / "mind")
    return config


def _source_days(root: Path) -> dict:
    from genre_dagster.ingest import SourceFile, behavior_days

    files = [SourceFile(root / "mind" / s / "behaviors.tsv", s) for s in ("train", "dev")]
    return {d.isoformat(): n for d, n in behavior_days(files).items()}


def _query(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def test_two_runs_at_once_take_turns_on_the_duckdb_file(tmp_path):
    """Two deployments (separate Dagster instances, so no shared pool) ingest two days into the
    same DuckDB file at the same moment, while a third process holds the file: both wait their
    turn and succeed, with no lock error and every row stored once."""
    from genre_dagster.duckdb_lock import exclusive

    _world(tmp_path)
    days = sorted(_source_days(tmp_path))[:2]
    db = tmp_path / "data" / "genre.duckdb"
    procs = []
    with exclusive(db, "test holder"):
        for i, day in enumerate(days):
            env = _env(tmp_path, tmp_path / f"home{i}")
            procs.append(
                subprocess.Popen(
                    [sys.executable, RUNNER, "run", "ingest_day", day, "raw"],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        time.sleep(8)  # both processes are up and blocked on the file by now
        assert all(p.poll() is None for p in procs), "a run finished while the file was held"
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for proc, out in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, out[-3000:]
        assert "lock on file" not in out and "IOException" not in out
    assert any("waits for the DuckDB file" in out for out in outputs)
    expected = _source_days(tmp_path)
    rows = dict(_query(db, "select day::varchar, count(*) from raw.behaviors group by 1"))
    assert rows == {day: expected[day] for day in days}
    (dups,) = _query(db, "select count(*) - count(distinct impression_id) from raw.behaviors")[0]
    assert dups == 0


def _instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def _wait_for_step(home: Path, step: str, proc: subprocess.Popen, timeout: float = 600) -> str:
    """Block until the newest run in `home` has started a step whose key contains `step`."""
    deadline = time.monotonic() + timeout
    with _instance(home) as instance:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the run ended before {step}: {proc.stdout.read()[-3000:]}"
            records = instance.get_run_records(limit=1)
            if records:
                run_id = records[0].dagster_run.run_id
                events = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
                if any(step in (e.step_key or "") for e in events):
                    return run_id
            time.sleep(0.3)
    raise AssertionError(f"no step {step} started within {timeout}s")


GROUPS = ["raw", "features", "enrichment", "embeddings"]


def test_a_run_killed_mid_way_then_reexecuted_from_failure_loses_and_duplicates_nothing(tmp_path):
    """SIGKILL the process of a nightly run while it embeds, mark the run failed (what run
    monitoring does for a dead worker), re-execute from failure: the run completes and every
    table holds each row exactly once, with nothing missing."""
    from llm_fakes import fake_llm_server

    from genre_dagster.definitions import defs

    _world(tmp_path)
    home = tmp_path / "home"
    db = tmp_path / "data" / "genre.duckdb"
    last_day = sorted(_source_days(tmp_path))[-1]
    with fake_llm_server() as server:
        env = _env(tmp_path, home, server.base_url)
        ingest = subprocess.run(
            [sys.executable, RUNNER, "ingest"], env=env, capture_output=True, text=True
        )
        assert ingest.returncode == 0, ingest.stdout[-2000:] + ingest.stderr[-2000:]
        proc = subprocess.Popen(
            [sys.executable, RUNNER, "run", "nightly_refresh", last_day, *GROUPS],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        run_id = _wait_for_step(home, "news_embeddings", proc)
        time.sleep(1.0)  # in the middle of encoding and writing the embedding cache
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        with _instance(home) as instance:
            run = instance.get_run_by_id(run_id)
            assert run.status == dg.DagsterRunStatus.STARTED  # nobody told the instance
            instance.report_run_failed(run)
            done = {
                e.dagster_event.asset_key
                for e in instance.all_logs(
                    run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
                )
            }
        selected = dg.AssetSelection.groups(*GROUPS).resolve(defs.resolve_asset_graph())
        assert done and not (selected <= done), "the kill came too late to test anything"

        again = subprocess.run(
            [sys.executable, RUNNER, "reexecute", run_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

    with _instance(home) as instance:
        child = instance.get_run_records(limit=1)[0].dagster_run
        assert child.parent_run_id == run_id and child.status == dg.DagsterRunStatus.SUCCESS
        redone = {
            e.dagster_event.asset_key
            for e in instance.all_logs(
                child.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            )
        }
    assert done | redone >= selected  # every asset of the night exists
    assert not done & redone  # from failure: finished steps were not run twice

    expected = _source_days(tmp_path)
    assert dict(_query(db, "select day::varchar, count(*) from raw.behaviors group by 1")) == (
        expected
    )
    unique = {
        "raw.behaviors": "impression_id",
        "raw.news": "news_id",
        "main.impressions": "impression_id, position",
        "enrichment.news_summaries": "news_id",
        "enrichment.user_profiles": "user_id",
        "enrichment.synthetic_items": "news_id",
        "embeddings.news_embeddings": "news_id, field",
        "embeddings.text_embeddings": "model_id, text_hash",
    }
    for table, key in unique.items():
        (rows, distinct) = _query(db, f"select count(*), count(distinct ({key})) from {table}")[0]
        assert rows == distinct > 0, f"{table}: {rows} rows, {distinct} distinct ({key})"
    (candidates, impressions) = _query(
        db,
        "select (select sum(len(candidate_ids)) from raw.behaviors), "
        "(select count(*) from main.impressions)",
    )[0]
    assert impressions == candidates
    per_field = dict(
        _query(db, "select field, count(*) from embeddings.news_embeddings group by 1")
    )
    (items,) = _query(
        db,
        "select (select count(*) from main.stg_news) "
        "+ (select count(*) from enrichment.synthetic_items)",
    )[0]
    assert per_field and all(n == items for n in per_field.values())
    (summaries, cached) = _query(
        db,
        "select (select count(*) from enrichment.news_summaries), (select count(*) from "
        "enrichment.llm_responses where role = 'summarizer' and status = 'ok')",
    )[0]
    assert summaries == cached > 0  # every finished answer, before and after the kill, published
