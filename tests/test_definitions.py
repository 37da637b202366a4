"""The code location loads fast, without heavy imports, and holds the expected graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from genre_dagster.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "evidently", "sklearn", "sentence_transformers")


def test_code_location_loads_fast_without_heavy_imports():
    probe = (
        "import json, sys, time\n"
        "t = time.perf_counter()\n"
        "import genre_dagster.definitions\n"
        "elapsed = time.perf_counter() - t\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print(json.dumps({'seconds': elapsed, 'heavy': heavy}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    # dagster + dagster-dbt dominate (~3 s here); anything heavier is a regression
    assert result["seconds"] < 10


def test_graph_has_the_data_layer_assets_checks_jobs_and_automation():
    from genre_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {
        "raw/news",
        "raw/news_quarantine",
        "raw/news_repairs",
        "raw/behaviors",
        "raw/behaviors_quarantine",
        "stg_news",
        "stg_behaviors",
        "impressions",
        "user_histories",
        "user_segments",
        "impression_splits",
        "item_daily_stats",
        "quarantine",
    } <= keys
    checks = {k.name for k in graph.asset_check_keys}
    assert {"row_conservation", "click_rate_bounds", "behaviors_freshness"} <= checks
    assert any(name.startswith("relationships_impressions_news_id") for name in checks)
    assert defs.resolve_job_def("nightly_refresh") and defs.resolve_job_def("ingest_day")
    assert defs.resolve_schedule_def("nightly_refresh_schedule").cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("landing_files_sensor")
    # the behaviors table is partitioned by day
    assert graph.get(dg.AssetKey(["raw", "behaviors"])).partitions_def.name == "behavior_days"


def test_every_default_scorer_and_genre_variant_is_an_asset_the_leaderboard_reads():
    import yaml

    from genre_dagster.definitions import defs
    from genre_dagster.scoring.registry import NEURAL_KINDS
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    graph = defs.resolve_asset_graph()
    leaderboard = graph.get(dg.AssetKey(["evaluation", "leaderboard"]))
    scorers = {dg.AssetKey(["scoring", spec.name]) for spec in DEFAULT_SCORERS}
    assert scorers <= set(leaderboard.parent_keys)
    names = {spec.name for spec in DEFAULT_SCORERS}
    bases = ("nrms", "naml")
    variants = ("summary", "profile", "generated", "genre_all")
    assert {*bases, *(f"{b}_{v}" for b in bases for v in variants)} <= names
    # In prod every neural scorer's step goes where the torch steps go.
    steps = yaml.safe_load((ROOT / "deploy" / "k8s" / "gpu_executor.yaml").read_text())
    neural = {f"scoring__{s.name}" for s in DEFAULT_SCORERS if s.kind in NEURAL_KINDS}
    assert {f"scoring__{b}" for b in bases} <= neural <= set(steps["per_step_k8s_config"])
    assert graph.get(dg.AssetKey(["scoring", "naml"])).kinds >= {"pytorch"}


def test_every_duckdb_step_is_serialized_in_one_pool():
    from genre_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in [["raw", "news"], ["raw", "behaviors"], ["impressions"]]:
        node = graph.get(dg.AssetKey(key))
        assert node.pools == {"duckdb"}, key


def test_workspace_validates_with_the_dagster_cli():
    env = {**os.environ, "DAGSTER_HOME": str(ROOT / "dagster_home")}
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("dagster")),
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_settings_reject_unknown_environment_and_source():
    with pytest.raises(ValueError, match="GENRE_ENV"):
        load_settings({"GENRE_ENV": "staging"})
    with pytest.raises(ValueError, match="GENRE_SOURCE"):
        load_settings({"GENRE_SOURCE": "kaggle"})
    with pytest.raises(ValueError, match="GENRE_SOURCE_PATH"):
        load_settings({"GENRE_SOURCE": "mind"})


def test_environment_selects_the_resource_set(tmp_path):
    from genre_dagster.resources import build_resources

    local = build_resources(load_settings({"GENRE_DATA_DIR": str(tmp_path)}))
    assert local["duckdb"].database == str(tmp_path / "genre.duckdb")
    assert local["privacy"].require_key is False
    prod = build_resources(load_settings({"GENRE_ENV": "prod", "GENRE_DATA_DIR": str(tmp_path)}))
    assert prod["privacy"].require_key is True


def test_executor_follows_the_environment(tmp_path):
    """local: Dagster's multiprocess default; prod: the k8s step executor from
    deploy/k8s/gpu_executor.yaml, with a clear message when the prod extra is missing."""
    from genre_dagster.definitions import build_executor

    base = {"GENRE_DATA_DIR": str(tmp_path)}
    local = load_settings(base)
    assert local.executor == "multiprocess" and build_executor(local) is None
    with pytest.raises(ValueError, match="GENRE_EXECUTOR"):
        load_settings({**base, "GENRE_EXECUTOR": "ray"})
    prod = load_settings({**base, "GENRE_ENV": "prod"})
    assert prod.executor == "k8s" and prod.k8s_executor_config.is_file()
    try:
        import dagster_k8s  # noqa: F401  (the prod extra)
    except ImportError:
        with pytest.raises(ImportError, match=r"genre-dagster\[prod\]"):
            build_executor(prod)
    else:
        assert build_executor(prod).name == "k8s_gpu_executor"
    missing = load_settings(
        {**base, "GENRE_EXECUTOR": "k8s", "GENRE_K8S_EXECUTOR_CONFIG": "no.yaml"}
    )
    assert missing.k8s_executor_config.name == "no.yaml"


def test_retrain_cadence_setting_is_validated(tmp_path):
    base = {"GENRE_DATA_DIR": str(tmp_path)}
    assert load_settings(base).retrain_every_days == 0
    assert load_settings({**base, "GENRE_RETRAIN_EVERY_DAYS": "7"}).retrain_every_days == 7
    with pytest.raises(ValueError, match="GENRE_RETRAIN_EVERY_DAYS"):
        load_settings({**base, "GENRE_RETRAIN_EVERY_DAYS": "weekly"})


def test_encoder_device_and_dtype_follow_the_environment(tmp_path):
    from genre_dagster.embedding.devices import cpu_has_native_bf16
    from genre_dagster.resources import build_resources

    local = build_resources(load_settings({"GENRE_DATA_DIR": str(tmp_path)}))["encoder"]
    encoder = local.get_encoder()  # the real offline MiniLM
    assert encoder.device == "cpu"
    assert encoder.dtype == ("bf16" if cpu_has_native_bf16() else "fp32")
    vectors = encoder.encode(["Stocks rally as rates hold", "Quarterback throws four touchdowns"])
    assert vectors.shape == (2, 384)

    prod = build_resources(load_settings({"GENRE_ENV": "prod", "GENRE_DATA_DIR": str(tmp_path)}))[
        "encoder"
    ]
    assert (prod.device, prod.dtype) == ("cuda", "bf16")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="(?i)cuda"):
            prod.get_encoder()  # no silent fallback to CPU


def test_every_step_returns_freed_memory_after_it_ends():
    import platform

    from genre_dagster.definitions import defs
    from genre_dagster.memory import release_memory

    for name in ("ingest_day", "nightly_refresh"):
        hooks = {h.name for h in defs.resolve_job_def(name).hook_defs}
        assert {"release_memory_after_success", "release_memory_after_failure"} <= hooks
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert release_memory() is True  # glibc: malloc_trim exists and ran


def test_full_collection_follows_the_growth_of_the_process():
    import gc
    import weakref

    import numpy as np

    from genre_dagster import memory

    if memory.resident_mb() is None:
        pytest.skip("resident size is read from /proc (Linux)")

    class Cycle:
        def __init__(self, megabytes: int) -> None:
            self.me = self
            self.buffer = np.ones(megabytes * 2**20 // 8)

    gc.disable()  # only release_memory collects in here
    try:
        memory.release_memory(full=True)
        small = Cycle(16)
        gc.collect()  # survives a full collection: now in the oldest generation
        small_ref = weakref.ref(small)
        del small
        memory.release_memory()  # 16 MB of growth: young generations only
        assert small_ref() is not None

        large = Cycle(2 * int(memory.FULL_COLLECTION_GROWTH_MB))
        large_ref = weakref.ref(large)
        del large
        grown = memory.resident_mb()
        memory.release_memory()  # grown past the threshold: the full collection frees both
        assert large_ref() is None and small_ref() is None
        assert grown - memory.resident_mb() > memory.FULL_COLLECTION_GROWTH_MB
    finally:
        gc.enable()


def test_dbt_fingerprint_follows_project_files_and_database_not_build_output(tmp_path):
    from genre_dagster.cli import dbt_fingerprint

    (tmp_path / "models").mkdir()
    (tmp_path / "target").mkdir()
    model = tmp_path / "models" / "a.sql"
    model.write_text("select 1")
    first = dbt_fingerprint(tmp_path, "/data/genre.duckdb")
    (tmp_path / "target" / "manifest.json").write_text("{}")  # build output: ignored
    assert dbt_fingerprint(tmp_path, "/data/genre.duckdb") == first
    assert dbt_fingerprint(tmp_path, "/other/genre.duckdb") != first
    model.write_text("select 2")
    assert dbt_fingerprint(tmp_path, "/data/genre.duckdb") != first


def test_dbt_launchpad_defaults_equal_the_project_vars():
    # dbt_features passes only the vars that differ from these defaults, so that dbt keeps the
    # partial parse it was prepared with; the two sets of defaults must agree.
    import yaml

    from genre_dagster.assets.features import FeaturesConfig
    from genre_dagster.settings import DBT_PROJECT_DIR

    project_vars = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    assert FeaturesConfig().model_dump() == project_vars


def test_optional_scorers_join_the_graph_and_the_leaderboard_by_setting(tmp_path):
    import yaml

    from genre_dagster.definitions import build_definitions
    from genre_dagster.scoring.registry import NEURAL_KINDS
    from genre_dagster.scoring.variants import DEFAULT_SCORERS, ENSEMBLE_MEMBERS, OPTIONAL_SCORERS

    extra = "hybrid_naml,hybrid_naml_summary,sequential"
    settings = load_settings({"GENRE_DATA_DIR": str(tmp_path), "GENRE_EXTRA_SCORERS": extra})
    assert settings.extra_scorers == ("hybrid_naml", "hybrid_naml_summary", "sequential")
    graph = build_definitions(settings).resolve_asset_graph()
    leaderboard = graph.get(dg.AssetKey(["evaluation", "leaderboard"]))
    added = {dg.AssetKey(["scoring", name]) for name in settings.extra_scorers}
    assert added <= graph.get_all_asset_keys()
    assert added <= set(leaderboard.parent_keys)
    default = {dg.AssetKey(["scoring", spec.name]) for spec in DEFAULT_SCORERS}
    assert default <= set(leaderboard.parent_keys)
    # not named: not in the graph
    assert dg.AssetKey(["scoring", "sequential_profile"]) not in graph.get_all_asset_keys()
    # the optional bases join the ensemble; their GENRE variants do not
    members = {k.path[-1] for k in graph.get(dg.AssetKey(["scoring", "ensemble"])).parent_keys}
    assert {*ENSEMBLE_MEMBERS, "hybrid_naml", "sequential"} <= members
    assert "hybrid_naml_summary" not in members
    # the default graph holds none of them, and its ensemble only the default members
    plain = build_definitions(
        load_settings({"GENRE_DATA_DIR": str(tmp_path)})
    ).resolve_asset_graph()
    optional = {dg.AssetKey(["scoring", spec.name]) for spec in OPTIONAL_SCORERS}
    assert not optional & plain.get_all_asset_keys()
    plain_members = plain.get(dg.AssetKey(["scoring", "ensemble"])).parent_keys
    assert {k.path[-1] for k in plain_members if k.path[0] == "scoring"} == set(ENSEMBLE_MEMBERS)
    # in prod their steps go where the torch steps go
    steps = yaml.safe_load((ROOT / "deploy" / "k8s" / "gpu_executor.yaml").read_text())
    neural = {f"scoring__{s.name}" for s in OPTIONAL_SCORERS if s.kind in NEURAL_KINDS}
    assert neural and neural <= set(steps["per_step_k8s_config"])


def test_optional_scorer_names_are_checked(tmp_path):
    from genre_dagster.definitions import build_definitions

    def build(extra: str):
        env = {"GENRE_DATA_DIR": str(tmp_path), "GENRE_EXTRA_SCORERS": extra}
        return build_definitions(load_settings(env))

    with pytest.raises(ValueError, match="unknown scorer.*sasrec.*optional scorers: hybrid_naml"):
        build("sasrec")
    with pytest.raises(ValueError, match="sequential_summary need their base"):
        build("sequential_summary")
