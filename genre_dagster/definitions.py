"""The Dagster code location: assembles assets, checks, jobs and resources. No logic here."""

from __future__ import annotations

import dagster as dg

from genre_dagster.assets import (
    embeddings,
    enrichment,
    evaluation,
    features,
    monitoring,
    quality_checks,
    raw,
    scoring,
    serving,
)
from genre_dagster.automation import (
    ingest_day_job,
    landing_files_sensor,
    nightly_refresh_job,
    nightly_refresh_schedule,
)
from genre_dagster.llm_outputs import import_llm_outputs_job
from genre_dagster.resources import build_resources
from genre_dagster.scoring.variants import (
    DEFAULT_SCORERS,
    ensemble_members,
    scorer_specs,
    tuned_specs,
)
from genre_dagster.settings import Settings, load_settings


def build_executor(settings: Settings) -> dg.ExecutorDefinition | None:
    """`multiprocess`: Dagster's default (one process per step, in-process selectable per run).
    `k8s` (prod default): one pod per step, configured by `deploy/k8s/gpu_executor.yaml` so that
    only the torch steps land on GPU nodes."""
    if settings.executor != "k8s":
        return None
    import yaml

    try:
        from dagster_k8s import k8s_job_executor
    except ImportError as exc:
        raise ImportError(
            "GENRE_EXECUTOR=k8s (the default for GENRE_ENV=prod) needs dagster-k8s: install the "
            "prod extra (pip install 'genre-dagster[prod]') or set GENRE_EXECUTOR=multiprocess"
        ) from exc
    path = settings.k8s_executor_config
    if not path.is_file():
        raise FileNotFoundError(f"k8s executor config {path} not found (GENRE_K8S_EXECUTOR_CONFIG)")
    return k8s_job_executor.configured(yaml.safe_load(path.read_text()), name="k8s_gpu_executor")


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """All definitions with the resource set of `settings` (default: from the environment)."""
    settings = settings or load_settings()
    specs = scorer_specs(settings.extra_scorers)
    extra = specs[len(DEFAULT_SCORERS) :]
    # the layer-state cache is in the graph only with a scorer that reads it
    tuned = tuned_specs(specs)
    members = ensemble_members(specs)
    tuned_member = any(spec.name in members for spec in tuned)
    modules = [raw, features, enrichment, embeddings, scoring, serving, monitoring]
    # the module's ensemble reads the default members; the graph's also reads the optional
    # bases it holds (built below)
    loaded = [a for a in dg.load_assets_from_modules(modules) if scoring.ensemble.key not in a.keys]
    return dg.Definitions(
        assets=[
            *loaded,
            scoring.build_ensemble(members, layer_states=tuned_member),
            *([embeddings.build_layer_states_asset(tuned)] if tuned else []),
            *(scoring.build_scorer_asset(spec) for spec in extra),
            evaluation.build_leaderboard(specs) if extra else evaluation.leaderboard,
        ],
        asset_checks=dg.load_asset_checks_from_modules([quality_checks, serving]),
        jobs=[ingest_day_job, nightly_refresh_job, import_llm_outputs_job],
        schedules=[nightly_refresh_schedule],
        sensors=[landing_files_sensor],
        resources=build_resources(settings),
        executor=build_executor(settings),
    )


defs = build_definitions()
