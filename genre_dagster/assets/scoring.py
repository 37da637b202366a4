"""Trained scorers, one asset each, composed by configuration (see scoring/variants.py).

Every scorer is trained on the train split, validated on the validation split, saved through the
model store under `<kind>-<config hash>`, and described by a one-row table in schema `scoring`.
"""

import json
import time
from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.scoring.inputs import embedding_fields
from genre_dagster.scoring.registry import NEURAL_KINDS
from genre_dagster.scoring.variants import DEFAULT_SCORERS, ENSEMBLE_MEMBERS, ScorerSpec
from genre_dagster.settings import HISTORY_CAP

GROUP = "scoring"
FEATURE_DEPS = [
    t.key for t in (wh.IMPRESSION_SPLITS, wh.STG_BEHAVIORS, wh.ITEM_DAILY_STATS, wh.USER_SEGMENTS)
]
EMBEDDINGS = wh.NEWS_EMBEDDINGS.key
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
            "day is N days past it (validation is still recomputed); empty = the model store's "
            "default (GENRE_RETRAIN_EVERY_DAYS)"
        ),
    )
    force_retrain: bool = Field(default=False, description="train tonight whatever the cadence")


def _row(
    spec: ScorerSpec,
    scorer,
    path,
    val,
    seconds: float,
    trained_through,
    trained_at: datetime | None = None,
    retrained: bool = True,
    requested_config_hash: str | None = None,
    inactive: dict[str, str] | None = None,
) -> pl.DataFrame:
    """The scorer's one-row table. `config_hash` names the published model; the cadence compares
    `requested_config_hash`, the configuration asked for (they differ when a GENRE plug-in had
    no input and the base configuration was trained instead: `inactive_plugins` says why)."""
    return pl.DataFrame(
        {
            "name": [spec.name],
            "variant": [spec.variant],
            "kind": [scorer.kind],
            "scorer_id": [scorer.scorer_id],
            "config_hash": [scorer.config_hash],
            "requested_config_hash": [requested_config_hash or scorer.config_hash],
            "config_json": [json.dumps(scorer.config, sort_keys=True, default=str)],
            "artifact_path": [str(path)],
            # whether the published model reads profiles / histories with GENRE's synthetic
            # items (False when the plug-in was inactive): evaluation and serving follow them
            "profile": [bool(scorer.config.get("profile", False))],
            "generated_history": [bool(scorer.config.get("generated_history", False))],
            "inactive_plugins": [json.dumps(inactive or {}, sort_keys=True)],
            "val_auc": [float(val["auc"])],
            "val_impressions": [int(val["n_impressions"])],
            "train_seconds": [round(seconds, 2)],
            "trained_at": [trained_at or datetime.now(UTC).replace(tzinfo=None)],
            "trained_through": [trained_through],
            "retrained": [retrained],
        },
        schema_overrides={"trained_through": pl.Date},
    )


def _previous_model(conn, name: str):
    """The model the scorer's table published last and its row, or (None, None)."""
    from genre_dagster.scoring.cadence import PreviousModel

    frame = wh.read_table(conn, f"{GROUP}.{name}")
    if frame is None or frame.is_empty():
        return None, None
    row = frame.row(0, named=True)
    requested = row.get("requested_config_hash") or row["config_hash"]
    return PreviousModel(row["scorer_id"], requested, row.get("trained_through")), row


def _train_through(conn, need: tuple[str, ...] = ("train",)):
    """The newest train day. A split in `need` without labelled impressions is a configuration
    problem no retry fixes: the step fails once, naming the days found and the setting."""
    from genre_dagster.scoring.splits import describe_splits

    report = describe_splits(conn)
    if set(need) & set(report.empty):
        raise dg.Failure(description=report.problem(), allow_retries=False)
    return report.days["train"][-1][0]


def _plugin_inputs_exist(conn, plugins) -> bool:
    """Whether the table feeding any of the GENRE `plugins` holds a row."""
    from genre_dagster.scoring.plugins import PLUGIN_TABLES

    for key in plugins:
        table = PLUGIN_TABLES[key]
        if wh.table_exists(conn, table):
            if conn.execute(f"select count(*) > 0 from {table}").fetchone()[0]:
                return True
    return False


def _fit_and_validate(scorer, inputs) -> tuple[dict, dict]:
    train, valid = inputs.splits["train"], inputs.splits["validation"]
    if train.n_impressions == 0:
        raise RuntimeError("the train split is empty: check the split boundaries")
    extra = {}
    if scorer.config.get("profile"):
        extra = {"profiles": inputs.profiles, "valid_profiles": inputs.profiles}
    log = scorer.fit(train, inputs.items, valid if valid.n_impressions else None, **extra)
    best = _best_epoch_metrics(log or {})
    return log or {}, best if best is not None else _validate(scorer, inputs)


def _best_epoch_metrics(log: dict) -> dict | None:
    """Validation metrics of the kept epoch, when training validated on the same split after
    every epoch (neural scorers): scoring the split once more would give the same numbers."""
    epochs = {e.get("epoch"): e for e in log.get("epochs") or []}
    best = epochs.get(log.get("best_epoch"))
    return best.get("val_metrics") if best else None


def _validate(scorer, inputs) -> dict:
    """Metrics of a fitted scorer on the validation split."""
    from genre_dagster.evaluation.metrics import evaluate_impressions

    valid = inputs.splits["validation"]
    score_kw = {"profiles": inputs.profiles} if scorer.config.get("profile") else {}
    return evaluate_impressions(valid, scorer.score(valid, inputs.items, **score_kw))


def _validate_once(scorer, inputs, model_store: ModelStore) -> dict:
    """`_validate`, unless tonight's validation of this very model on the same data is saved
    (variants whose plug-in was off publish their base scorer's model)."""
    from genre_dagster.scoring.plugins import training_fingerprint

    profiles = bool(scorer.config.get("profile"))
    fingerprint = training_fingerprint(inputs, ("validation",), profiles=profiles)
    known = model_store.recall_validation(scorer.scorer_id, fingerprint)
    if known is not None:
        return known
    val = _plain_metrics(_validate(scorer, inputs))
    model_store.remember_validation(scorer.scorer_id, fingerprint, val)
    return val


def _plain_metrics(val: dict) -> dict:
    """Metrics as JSON-safe numbers (they are saved with the artifact)."""
    return {k: int(v) if k.startswith("n_") else float(v) for k, v in val.items()}


def _train_or_reuse(context, spec, requested, inputs, model_store, force, train_through):
    """Train the `requested` scorer, or load the artifact of an identical training.

    A GENRE plug-in with no input among the training users is switched off first (the base
    configuration is trained, see scoring/plugins.py). An artifact of the same scorer id whose
    training fingerprint (items, embeddings, train and validation impressions, profiles) equals
    tonight's is that training already done, e.g. by the base scorer's asset: it is loaded.
    Returns (scorer, log, validation metrics, train seconds, inactive plug-ins, how).
    """
    from genre_dagster.scoring.inputs import without_generated_history
    from genre_dagster.scoring.plugins import inactive_plugins, training_fingerprint, without
    from genre_dagster.scoring.registry import create_scorer

    inactive = inactive_plugins(requested.config, inputs, ("train",))
    scorer = requested
    if inactive:  # the base configuration: the same config with the plug-in(s) switched off
        scorer = create_scorer(spec.kind, without(requested.config, inactive))
    if "generated_history" in inactive:  # ... on the base's data (validation histories too)
        inputs = without_generated_history(inputs)
    for key, why in inactive.items():
        context.log.warning(f"{spec.name}: GENRE plug-in {key!r} is off tonight: {why}")
    fingerprint = training_fingerprint(
        inputs, ("train", "validation"), profiles=bool(scorer.config.get("profile"))
    )
    record = None if force else model_store.training_record(scorer.scorer_id)
    if record is not None and record.get("fingerprint") == fingerprint:
        how = f"same configuration and data as the training by {record.get('trained_by')}"
        return (
            model_store.load(scorer.scorer_id),
            {},
            record["val_metrics"],
            float(record["train_seconds"]),
            inactive,
            how,
        )
    started = time.perf_counter()
    log, val = _fit_and_validate(scorer, inputs)
    seconds = time.perf_counter() - started
    model_store.save(
        scorer,
        {
            "fingerprint": fingerprint,
            "trained_by": spec.name,
            "trained_through": str(train_through),
            "train_seconds": round(seconds, 2),
            "val_metrics": _plain_metrics(val),
        },
    )
    return scorer, log, val, seconds, inactive, None


def build_scorer_asset(spec: ScorerSpec) -> dg.AssetsDefinition:
    """An asset that trains, validates and saves the scorer described by `spec`."""
    deps = [*FEATURE_DEPS, EMBEDDINGS]
    if spec.profile:
        deps.append(PROFILE_EMBEDDINGS)
    if spec.generated_history:
        deps.append(SYNTHETIC)

    @dg.asset(
        name=spec.name,
        key_prefix=[GROUP],
        deps=deps,
        group_name=GROUP,
        kinds={"pytorch" if spec.kind in NEURAL_KINDS else "scikitlearn", "duckdb"},
        pool="duckdb",
        description=f"{spec.description} GENRE variant: {spec.variant}.",
    )
    def _scorer(
        context: dg.AssetExecutionContext,
        config: ScorerConfig,
        duckdb: DuckDBResource,
        model_store: ModelStore,
    ) -> pl.DataFrame:
        from genre_dagster.scoring.cadence import retrain_reason
        from genre_dagster.scoring.inputs import load_scorer_inputs
        from genre_dagster.scoring.registry import create_scorer

        scorer_config = {**spec.config, **json.loads(config.overrides_json or "{}")}
        requested = create_scorer(spec.kind, scorer_config)
        every_days = (
            model_store.retrain_every_days
            if config.retrain_every_days is None
            else config.retrain_every_days
        )
        with duckdb.get_connection() as conn:
            previous, previous_row = _previous_model(conn, spec.name)
            train_through = _train_through(conn)
            reason = retrain_reason(
                previous,
                requested.config_hash,
                train_through,
                every_days,
                previous is not None and model_store.path_of(previous.scorer_id).exists(),
                config.force_retrain,
            )
            was_inactive = json.loads((previous_row or {}).get("inactive_plugins") or "{}")
            # A reused model is only re-validated: the train split is not needed, unless the
            # model was trained with a plug-in off and the plug-in's input table has rows now
            # (do any of them belong to training users?).
            recheck = reason is None and _plugin_inputs_exist(conn, was_inactive)
            inputs = load_scorer_inputs(
                conn,
                ("train", "validation") if reason or recheck else ("validation",),
                embedding_fields(requested.config),
                profile=spec.profile,
                generated_history=spec.generated_history,
                max_history=config.max_history,
            )
        if recheck:
            from genre_dagster.scoring.plugins import inactive_plugins

            now_inactive = inactive_plugins(requested.config, inputs, ("train",))
            appeared = sorted(set(was_inactive) - set(now_inactive))
            if appeared:
                reason = f"input of the GENRE plug-in(s) {appeared} appeared since the last model"
        inactive = was_inactive
        if reason is None:  # within the cadence: last model, validated on tonight's data
            from genre_dagster.scoring.inputs import without_generated_history

            scorer = model_store.load(previous.scorer_id)
            # a model trained with generated history off is validated as its base scorer is
            plain = "generated_history" in was_inactive
            checked = without_generated_history(inputs) if plain else inputs
            log, val = {}, _validate_once(scorer, checked, model_store)
            path = model_store.path_of(scorer.scorer_id)
            seconds = float(previous_row["train_seconds"])
            context.log.info(
                f"{scorer.scorer_id}: reused (trained through {previous.trained_through}, "
                f"retrain every {every_days} day(s)); validation AUC {val['auc']:.4f}"
            )
            row = _row(
                spec, scorer, path, val, seconds, previous.trained_through,
                previous_row["trained_at"], retrained=False,
                requested_config_hash=requested.config_hash, inactive=inactive,
            )  # fmt: skip
        else:
            scorer, log, val, seconds, inactive, shared = _train_or_reuse(
                context, spec, requested, inputs, model_store, config.force_retrain,
                train_through,
            )  # fmt: skip
            path = model_store.path_of(scorer.scorer_id)
            done = f"loaded ({shared})" if shared else f"trained in {seconds:.1f} s"
            context.log.info(
                f"{scorer.scorer_id}: {done} ({reason}); validation AUC {val['auc']:.4f}"
            )
            row = _row(
                spec, scorer, path, val, seconds, train_through,
                requested_config_hash=requested.config_hash, inactive=inactive,
            )  # fmt: skip
            if shared:
                reason = f"{reason}; {shared}"
        extra_meta = {"retrained": reason is not None, "retrain_reason": reason or "within cadence"}
        if inactive:
            extra_meta["inactive_plugins"] = dg.MetadataValue.json(inactive)
        if reason:
            extra_meta["train_impressions"] = inputs.splits["train"].n_impressions
        if spec.profile:
            from genre_dagster.scoring.inputs import profile_coverage

            # coverage of the users it learned from; of tonight's validation users when reused
            users = inputs.splits["train" if "train" in inputs.splits else "validation"].user_ids
            extra_meta["profile_coverage"] = round(profile_coverage(inputs.profiles, users), 4)
        if spec.generated_history:
            extra_meta["users_with_generated_items"] = len(inputs.extra_history or {})
        context.add_output_metadata(
            {
                "scorer_id": scorer.scorer_id,
                "config_hash": scorer.config_hash,
                "validation_auc": float(val["auc"]),
                "validation_mrr": float(val["mrr"]),
                "train_seconds": round(seconds, 2),
                "trained_through": str(row["trained_through"][0]),
                "artifact": dg.MetadataValue.path(str(path)),
                "config": dg.MetadataValue.json(json.loads(row["config_json"][0])),
                "training_log": dg.MetadataValue.json(json.loads(json.dumps(log, default=str))),
                **extra_meta,
            }
        )
        return row

    return _scorer


scorer_assets = [build_scorer_asset(spec) for spec in DEFAULT_SCORERS]


@dg.asset(
    key=[GROUP, "ensemble"],
    ins={name: dg.AssetIn([GROUP, name]) for name in ENSEMBLE_MEMBERS},
    deps=[*FEATURE_DEPS, EMBEDDINGS],
    group_name=GROUP,
    kinds={"scikitlearn", "duckdb"},
    pool="duckdb",
)
def ensemble(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    model_store: ModelStore,
    **members: pl.DataFrame,
) -> pl.DataFrame:
    """Ensemble of trained scorers; weights fit on the validation split to maximize its AUC."""
    from genre_dagster.scoring.ensemble import EnsembleScorer
    from genre_dagster.scoring.inputs import load_scorer_inputs

    fitted = [model_store.load(members[name]["scorer_id"][0]) for name in ENSEMBLE_MEMBERS]
    fields = sorted({f for m in fitted for f in embedding_fields(m.config)})
    scorer = EnsembleScorer(members=fitted)
    # Weights are fit on the validation split; the train split only if members are refit.
    splits = ("train", "validation") if scorer.config["fit_members"] else ("validation",)
    with duckdb.get_connection() as conn:
        train_through = _train_through(conn, need=("train", "validation"))
        inputs = load_scorer_inputs(conn, splits, fields)
    spec = ScorerSpec("ensemble", "ensemble", variant="ensemble")
    started = time.perf_counter()
    valid = inputs.splits["validation"]
    if valid.n_impressions == 0:
        raise RuntimeError("the validation split is empty: the ensemble weights need it")
    log = scorer.fit(inputs.splits.get("train"), inputs.items, valid)
    val = log["val_metrics"]  # the members were scored on validation once, by the fit
    seconds = time.perf_counter() - started
    path = model_store.save(scorer)
    weights = dict(zip(ENSEMBLE_MEMBERS, [float(w) for w in scorer.weights], strict=True))
    context.add_output_metadata(
        {
            "scorer_id": scorer.scorer_id,
            "validation_auc": float(val["auc"]),
            "weights": dg.MetadataValue.json(weights),
            "artifact": dg.MetadataValue.path(str(path)),
        }
    )
    return _row(spec, scorer, path, val, seconds, train_through)
