"""Trained scorers, one asset each, composed by configuration (see scoring/variants.py).

Every scorer is trained on the train split, validated on the validation split, saved through the
model store under `<kind>-<config hash>`, and described by a one-row table in schema `scoring`.
Whether a night trains, reuses or loads a model is decided in `scoring/nightly.py`.
"""

import json
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.scoring import nightly
from genre_dagster.scoring.inputs import embedding_fields, is_tuned
from genre_dagster.scoring.registry import NEURAL_KINDS
from genre_dagster.scoring.variants import DEFAULT_SCORERS, ENSEMBLE_MEMBERS, ScorerSpec
from genre_dagster.settings import HISTORY_CAP
from genre_dagster.step_budget import budgeted

GROUP = "scoring"
FEATURE_DEPS = [
    t.key for t in (wh.IMPRESSION_SPLITS, wh.STG_BEHAVIORS, wh.ITEM_DAILY_STATS, wh.USER_SEGMENTS)
]
EMBEDDINGS = wh.NEWS_EMBEDDINGS.key
LAYER_STATES = wh.LAYER_STATES.key
PROFILE_EMBEDDINGS = wh.USER_PROFILE_EMBEDDINGS.key
SYNTHETIC = wh.SYNTHETIC_ITEMS.key


class ScorerConfig(dg.Config):
    """Launchpad overrides of a scorer's composition and hyper-parameters."""

    overrides_json: str = Field(
        default="{}",
        description=(
            'JSON merged into the scorer config, e.g. {"user_encoder": "gru", "epochs": 3} or '
            '{"fields": ["title", "summary"], "predictor": "mlp"}; unknown keys are rejected'
        ),
    )
    max_history: int = Field(default=HISTORY_CAP, description="most recent history items per user")
    retrain_every_days: int | None = Field(
        default=None,
        description=(
            "0 = train on every run; N = reuse the published model until the newest training "
            "day is N days past it (validated on tonight's data, or read from the scores "
            "the last leaderboard kept of the same impressions); empty = the model store's "
            "default (GENRE_RETRAIN_EVERY_DAYS)"
        ),
    )
    force_retrain: bool = Field(default=False, description="train tonight whatever the cadence")


@contextmanager
def _failing_once() -> Iterator[None]:
    """An unusable split is a configuration problem no retry fixes: the step fails once."""
    try:
        yield
    except nightly.SplitsUnusable as unusable:
        raise dg.Failure(description=str(unusable), allow_retries=False) from None


def _metadata(spec: ScorerSpec, outcome: nightly.Outcome) -> dict:
    """What a person wants to see of a scorer's night."""
    scorer, val, reason, inputs = outcome.scorer, outcome.val, outcome.reason, outcome.inputs
    extra = {"retrained": reason is not None, "retrain_reason": reason or "within cadence"}
    if reason is None:  # a reused model: scored on tonight's validation day, or read back
        extra["validation_source"] = outcome.log["validation_source"]
    if outcome.inactive:
        extra["inactive_plugins"] = dg.MetadataValue.json(outcome.inactive)
    if reason:
        extra["train_impressions"] = inputs.splits["train"].n_impressions
    if spec.profile:
        from genre_dagster.scoring.inputs import profile_coverage

        # coverage of the users it learned from; of tonight's validation users when reused
        users = inputs.splits["train" if "train" in inputs.splits else "validation"].user_ids
        extra["profile_coverage"] = round(profile_coverage(inputs.profiles, users), 4)
    if spec.generated_history:
        extra["users_with_generated_items"] = len(inputs.extra_history or {})
    row = outcome.row
    return {
        "scorer_id": scorer.scorer_id,
        "config_hash": scorer.config_hash,
        "validation_auc": float(val["auc"]),
        "validation_mrr": float(val["mrr"]),
        "train_seconds": round(outcome.seconds, 2),
        "trained_through": str(row["trained_through"][0]),
        "artifact": dg.MetadataValue.path(str(outcome.path)),
        "config": dg.MetadataValue.json(json.loads(row["config_json"][0])),
        "training_log": dg.MetadataValue.json(json.loads(json.dumps(outcome.log, default=str))),
        **extra,
    }


def build_scorer_asset(spec: ScorerSpec) -> dg.AssetsDefinition:
    """An asset that trains, validates and saves the scorer described by `spec`. A scorer with
    a fine-tuned text encoder reads the layer-state cache instead of the item embeddings."""
    deps = [*FEATURE_DEPS, LAYER_STATES if is_tuned(spec.config) else EMBEDDINGS]
    deps += [PROFILE_EMBEDDINGS] if spec.profile else []
    deps += [SYNTHETIC] if spec.generated_history else []

    @dg.asset(
        name=spec.name,
        key_prefix=[GROUP],
        deps=deps,
        group_name=GROUP,
        kinds={"pytorch" if spec.kind in NEURAL_KINDS else "scikitlearn", "duckdb"},
        pool="duckdb",
        description=f"{spec.description} GENRE variant: {spec.variant}.",
    )
    @budgeted
    def _scorer(
        context: dg.AssetExecutionContext,
        config: ScorerConfig,
        duckdb: DuckDBResource,
        model_store: ModelStore,
    ) -> pl.DataFrame:
        from genre_dagster.scoring.registry import create_scorer

        overrides = json.loads(config.overrides_json or "{}")
        requested = create_scorer(spec.kind, {**spec.config, **overrides})
        every_days = config.retrain_every_days
        with _failing_once(), duckdb.get_connection() as conn:
            tonight = nightly.read_tonight(
                conn, spec, requested, model_store,
                every_days=model_store.retrain_every_days if every_days is None else every_days,
                force=config.force_retrain, max_history=config.max_history,
            )  # fmt: skip
        outcome = nightly.train_or_reuse(
            tonight, spec, model_store, force=config.force_retrain, log=context.log
        )
        context.add_output_metadata(_metadata(spec, outcome))
        return outcome.row

    return _scorer


scorer_assets = [build_scorer_asset(spec) for spec in DEFAULT_SCORERS]


def build_ensemble(
    members: tuple[str, ...] = ENSEMBLE_MEMBERS, layer_states: bool = False
) -> dg.AssetsDefinition:
    """The ensemble asset over the scorers `members` (variants.ensemble_members); with
    `layer_states` a member fine-tunes its text encoder and reads the layer-state cache."""

    @dg.asset(
        key=[GROUP, "ensemble"],
        ins={name: dg.AssetIn([GROUP, name]) for name in members},
        deps=[*FEATURE_DEPS, EMBEDDINGS, *([LAYER_STATES] if layer_states else [])],
        group_name=GROUP,
        kinds={"scikitlearn", "duckdb"},
        pool="duckdb",
    )
    @budgeted
    def ensemble(
        context: dg.AssetExecutionContext,
        duckdb: DuckDBResource,
        model_store: ModelStore,
        **rows: pl.DataFrame,
    ) -> pl.DataFrame:
        """Ensemble of trained scorers; weights fit on the validation split to maximize its
        AUC."""
        from genre_dagster.scoring.ensemble import EnsembleScorer
        from genre_dagster.scoring.inputs import load_scorer_inputs

        fitted = [model_store.load(rows[name]["scorer_id"][0]) for name in members]
        fields = sorted({f for m in fitted for f in embedding_fields(m.config)})
        scorer = EnsembleScorer(members=fitted)
        # Weights are fit on the validation split; the train split only if members are refit.
        splits = ("train", "validation") if scorer.config["fit_members"] else ("validation",)
        with _failing_once(), duckdb.get_connection() as conn:
            train_through = nightly.train_through(conn, need=("train", "validation"))
            inputs = load_scorer_inputs(conn, splits, fields, configs=[m.config for m in fitted])
        outcome = nightly.train_ensemble(scorer, inputs, model_store, train_through)
        weights = dict(zip(members, [float(w) for w in scorer.weights], strict=True))
        context.add_output_metadata(
            {
                "scorer_id": scorer.scorer_id,
                "validation_auc": float(outcome.val["auc"]),
                "weights": dg.MetadataValue.json(weights),
                # members whose validation scores their own step saved tonight (not rescored)
                "member_scores_reused": int(outcome.log.get("member_scores_given", 0)),
                "artifact": dg.MetadataValue.path(str(outcome.path)),
            }
        )
        return outcome.row

    return ensemble


ensemble = build_ensemble()
