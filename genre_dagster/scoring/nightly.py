"""One scorer's night: train it, reuse the model it published, or load an identical training.

The scorer assets (`assets/scoring.py`) read tonight's inputs with `read_tonight` under one
warehouse connection, call `train_or_reuse`, and report the `Outcome`. No Dagster here: what
goes wrong raises plain exceptions (`SplitsUnusable` is the one no retry fixes).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from genre_dagster import warehouse as wh
from genre_dagster.scoring.inputs import embedding_fields
from genre_dagster.scoring.variants import ScorerSpec

SCHEMA = "scoring"  # the scorers' one-row tables: scoring.<name>
_log = logging.getLogger(__name__)


class SplitsUnusable(RuntimeError):
    """A split the scorer needs holds no labelled impressions: a configuration problem that no
    retry fixes (the message names the days found and the setting)."""


@dataclass
class Tonight:
    """What the warehouse says before a scorer's night: its last model and tonight's data."""

    requested: Any  # the scorer asked for (tonight's configuration, not fitted)
    previous: Any  # cadence.PreviousModel | None
    previous_row: dict | None
    train_through: date
    every_days: int
    reason: str | None  # why it trains tonight; None = reuse the previous model
    was_inactive: dict[str, str]  # plug-ins the previous model was trained without
    recheck: bool  # a plug-in's input table has rows now: did it become active?
    inputs: Any  # scoring.inputs.ScorerInputs


@dataclass
class Outcome:
    """A scorer's night: the published model, its one-row table and what to report."""

    scorer: Any
    log: dict
    val: dict
    seconds: float
    inactive: dict[str, str]
    reason: str | None  # None: reused within the cadence
    path: Path
    row: pl.DataFrame
    inputs: Any


def scorer_row(
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


def previous_model(conn, name: str):
    """The model the scorer's table published last and its row, or (None, None)."""
    from genre_dagster.scoring.cadence import PreviousModel

    frame = wh.read_table(conn, f"{SCHEMA}.{name}")
    if frame is None or frame.is_empty():
        return None, None
    row = frame.row(0, named=True)
    requested = row.get("requested_config_hash") or row["config_hash"]
    return PreviousModel(row["scorer_id"], requested, row.get("trained_through")), row


def train_through(conn, need: tuple[str, ...] = ("train",)) -> date:
    """The newest train day; `SplitsUnusable` when a split in `need` has no labelled impression."""
    from genre_dagster.scoring.splits import describe_splits

    report = describe_splits(conn)
    if set(need) & set(report.empty):
        raise SplitsUnusable(report.problem())
    return report.days["train"][-1][0]


def plugin_inputs_exist(conn, plugins) -> bool:
    """Whether the table feeding any of the GENRE `plugins` holds a row."""
    from genre_dagster.scoring.plugins import PLUGIN_TABLES

    for key in plugins:
        table = PLUGIN_TABLES[key]
        if wh.table_exists(conn, table):
            if conn.execute(f"select count(*) > 0 from {table}").fetchone()[0]:
                return True
    return False


def read_tonight(
    conn, spec: ScorerSpec, requested, model_store, *, every_days: int, force: bool,
    max_history: int,
) -> Tonight:  # fmt: skip
    """Read the scorer's last model, decide whether it retrains, and load the splits it needs."""
    from genre_dagster.scoring.cadence import retrain_reason
    from genre_dagster.scoring.inputs import load_scorer_inputs

    previous, previous_row = previous_model(conn, spec.name)
    through = train_through(conn)
    exists = previous is not None and model_store.path_of(previous.scorer_id).exists()
    reason = retrain_reason(previous, requested.config_hash, through, every_days, exists, force)
    was_inactive = json.loads((previous_row or {}).get("inactive_plugins") or "{}")
    # A reused model is only re-validated: the train split is not needed, unless the model was
    # trained with a plug-in off and the plug-in's input table has rows now (do any of them
    # belong to training users?).
    recheck = reason is None and plugin_inputs_exist(conn, was_inactive)
    inputs = load_scorer_inputs(
        conn,
        ("train", "validation") if reason or recheck else ("validation",),
        embedding_fields(requested.config),
        profile=spec.profile,
        generated_history=spec.generated_history,
        max_history=max_history,
        configs=[requested.config],
    )
    return Tonight(
        requested, previous, previous_row, through, every_days, reason, was_inactive, recheck,
        inputs,
    )  # fmt: skip


def train_or_reuse(
    tonight: Tonight, spec: ScorerSpec, model_store, *, force: bool = False, log=_log
) -> Outcome:
    """The scorer's night: within the cadence the last model, validated on tonight's data;
    otherwise tonight's training (or the artifact of an identical one, see `_train_or_load`).
    `log` takes `info` and `warning` messages (a Dagster context's log, or a logger)."""
    reason = tonight.reason
    if tonight.recheck:
        from genre_dagster.scoring.plugins import inactive_plugins

        now_inactive = inactive_plugins(tonight.requested.config, tonight.inputs, ("train",))
        appeared = sorted(set(tonight.was_inactive) - set(now_inactive))
        if appeared:
            reason = f"input of the GENRE plug-in(s) {appeared} appeared since the last model"
    if reason is None:
        return _reuse(tonight, spec, model_store, log)
    scorer, fit_log, val, seconds, inactive, shared = _train_or_load(
        tonight, spec, model_store, force, log
    )
    path = model_store.path_of(scorer.scorer_id)
    done = f"loaded ({shared})" if shared else f"trained in {seconds:.1f} s"
    log.info(f"{scorer.scorer_id}: {done} ({reason}); validation AUC {val['auc']:.4f}")
    row = scorer_row(
        spec, scorer, path, val, seconds, tonight.train_through,
        requested_config_hash=tonight.requested.config_hash, inactive=inactive,
    )  # fmt: skip
    if shared:
        reason = f"{reason}; {shared}"
    return Outcome(scorer, fit_log, val, seconds, inactive, reason, path, row, tonight.inputs)


def _reuse(tonight: Tonight, spec: ScorerSpec, model_store, log) -> Outcome:
    """The last model, validated on tonight's data."""
    from genre_dagster.scoring.inputs import without_generated_history

    previous, previous_row = tonight.previous, tonight.previous_row
    scorer = model_store.load(previous.scorer_id)
    # a model trained with generated history off is validated as its base scorer is
    plain = "generated_history" in tonight.was_inactive
    checked = without_generated_history(tonight.inputs) if plain else tonight.inputs
    val, source = _validate_once(scorer, checked, model_store)
    path = model_store.path_of(scorer.scorer_id)
    seconds = float(previous_row["train_seconds"])
    log.info(
        f"{scorer.scorer_id}: reused (trained through {previous.trained_through}, "
        f"retrain every {tonight.every_days} day(s)); validation AUC {val['auc']:.4f} "
        f"({source})"
    )
    row = scorer_row(
        spec, scorer, path, val, seconds, previous.trained_through,
        previous_row["trained_at"], retrained=False,
        requested_config_hash=tonight.requested.config_hash, inactive=tonight.was_inactive,
    )  # fmt: skip
    told = {"validation_source": source}
    inactive = tonight.was_inactive
    return Outcome(scorer, told, val, seconds, inactive, None, path, row, tonight.inputs)


def _train_or_load(tonight: Tonight, spec: ScorerSpec, model_store, force: bool, log):
    """Train the requested scorer, or load the artifact of an identical training.

    A GENRE plug-in with no input among the training users is switched off first (the base
    configuration is trained, see scoring/plugins.py). An artifact of the same scorer id whose
    training fingerprint (items, embeddings, train and validation impressions, profiles) equals
    tonight's is that training already done, e.g. by the base scorer's asset: it is loaded.
    Returns (scorer, log, validation metrics, train seconds, inactive plug-ins, how).
    """
    from genre_dagster.scoring.inputs import without_generated_history
    from genre_dagster.scoring.plugins import inactive_plugins, training_fingerprint, without
    from genre_dagster.scoring.registry import create_scorer

    requested, inputs = tonight.requested, tonight.inputs
    inactive = inactive_plugins(requested.config, inputs, ("train",))
    scorer = requested
    if inactive:  # the base configuration: the same config with the plug-in(s) switched off
        scorer = create_scorer(spec.kind, without(requested.config, inactive))
    if "generated_history" in inactive:  # ... on the base's data (validation histories too)
        inputs = without_generated_history(inputs)
    for key, why in inactive.items():
        log.warning(f"{spec.name}: GENRE plug-in {key!r} is off tonight: {why}")
    profiles = bool(scorer.config.get("profile"))
    fingerprint = training_fingerprint(inputs, ("train", "validation"), profiles=profiles)
    record = None if force else model_store.training_record(scorer.scorer_id)
    if record is not None and record.get("fingerprint") == fingerprint:
        how = f"same configuration and data as the training by {record.get('trained_by')}"
        seconds = float(record["train_seconds"])
        loaded = model_store.load(scorer.scorer_id)
        return loaded, {}, record["val_metrics"], seconds, inactive, how
    started = time.perf_counter()
    fit_log, val = _fit_and_validate(scorer, inputs)
    seconds = time.perf_counter() - started
    model_store.save(
        scorer,
        {
            "fingerprint": fingerprint,
            "trained_by": spec.name,
            "trained_through": str(tonight.train_through),
            "train_seconds": round(seconds, 2),
            "val_metrics": plain_metrics(val),
        },
    )
    return scorer, fit_log, val, seconds, inactive, None


def train_ensemble(scorer, inputs, model_store, trained_through: date) -> Outcome:
    """Fit the ensemble's weights on the validation split (its members too when it refits them),
    save it, and return its night."""
    spec = ScorerSpec("ensemble", "ensemble", variant="ensemble")
    started = time.perf_counter()
    valid = inputs.splits["validation"]
    if valid.n_impressions == 0:
        raise RuntimeError("the validation split is empty: the ensemble weights need it")
    given = member_validation_scores(scorer.members, inputs, model_store)
    log = scorer.fit(inputs.splits.get("train"), inputs.items, valid, member_scores=given)
    val = log["val_metrics"]  # the members were scored on validation once, by the fit
    seconds = time.perf_counter() - started
    path = model_store.save(scorer)
    row = scorer_row(spec, scorer, path, val, seconds, trained_through)
    return Outcome(scorer, log, val, seconds, {}, "ensemble weights fit tonight", path, row, inputs)


def _fit_and_validate(scorer, inputs) -> tuple[dict, dict]:
    train, valid = inputs.splits["train"], inputs.splits["validation"]
    if train.n_impressions == 0:
        raise RuntimeError("the train split is empty: check the split boundaries")
    extra = {}
    if scorer.config.get("profile"):
        extra = {"profiles": inputs.profiles, "valid_profiles": inputs.profiles}
    log = scorer.fit(train, inputs.items, valid if valid.n_impressions else None, **extra)
    best = best_epoch_metrics(log or {})
    return log or {}, best if best is not None else _validate(scorer, inputs)


def best_epoch_metrics(log: dict) -> dict | None:
    """Validation metrics of the kept epoch, when training validated on the same split after
    every epoch (neural scorers): scoring the split once more would give the same numbers.
    None when the epochs validated on a sample of it (`valid_impressions`): the published
    metrics are the whole split's, as every other scorer's are."""
    if log.get("valid_sample"):
        return None
    epochs = {e.get("epoch"): e for e in log.get("epochs") or []}
    best = epochs.get(log.get("best_epoch"))
    return best.get("val_metrics") if best else None


# Validation impressions a scorer scores at a time.
VALIDATE_CHUNK = 100_000


def _validate(scorer, inputs) -> dict:
    """Metrics of a fitted scorer on the validation split."""
    return _validation_scores(scorer, inputs)[0]


def _validation_scores(scorer, inputs):
    """(metrics, scores) of a fitted scorer on the validation split."""
    from genre_dagster.evaluation.metrics import evaluate_impressions
    from genre_dagster.scoring.base import score_in_chunks

    valid = inputs.splits["validation"]
    score_kw = {"profiles": inputs.profiles} if scorer.config.get("profile") else {}
    scores = score_in_chunks(scorer, valid, inputs.items, VALIDATE_CHUNK, **score_kw)
    return evaluate_impressions(valid, scores), scores


def _validate_once(scorer, inputs, model_store) -> tuple[dict, str]:
    """(metrics, where they come from): `_validate`, unless this very model's scores of the
    same validation data are saved. They are when last night's leaderboard scored tonight's
    validation day as its test day (`keep_test_scores`), or when another scorer asset published
    the same model tonight (a variant whose plug-in was off publishes its base's model). When
    the split differs from the kept one, the kept scores of the impressions whose inputs did
    not change are read and only the others scored (`scores_reusing_kept`). The scores are
    saved, with their impressions' digests: the ensemble fits its weights on them."""
    from genre_dagster.evaluation.metrics import evaluate_impressions

    valid = inputs.splits["validation"]
    fingerprint = _split_fingerprint(scorer.config, inputs, valid)
    known = model_store.recall_validation(scorer.scorer_id, fingerprint)
    if known is not None:
        by = model_store.recall_validation_source(scorer.scorer_id, fingerprint)
        return known, f"saved scores of the same impressions ({by})"
    impressions = _impression_words(scorer.config, inputs, valid)
    kept = model_store.recall_kept_scores(scorer.scorer_id)
    scores, reused = scores_reusing_kept(scorer, inputs, valid, impressions, kept)
    val = plain_metrics(evaluate_impressions(valid, scores))
    model_store.remember_validation(
        scorer.scorer_id, fingerprint, val, scores=scores, source="validation by a scorer step",
        impressions=impressions,
    )  # fmt: skip
    if not reused:
        return val, "scored tonight"
    n = valid.n_impressions
    return val, (
        f"saved scores of {reused:,} of {n:,} impressions whose inputs did not change "
        f"({kept[2]}); {n - reused:,} scored tonight"
    )


def scores_reusing_kept(scorer, inputs, data, impressions, kept) -> tuple[Any, int]:
    """(scores of `data`, impressions whose scores came from `kept`): an impression whose
    digest and candidate count (`impressions`, see `_impression_words`) equal those of a kept
    one gets that one's kept scores, the others are scored now. `kept` is
    `ModelStore.recall_kept_scores` of this scorer's model, or None."""
    import numpy as np

    from genre_dagster.arrays import candidate_positions
    from genre_dagster.scoring.base import score_in_chunks

    scores = np.empty(len(data.cand_items), dtype=np.float32)
    found = np.full(data.n_impressions, -1, dtype=np.int64)
    if kept is not None and len(kept[0]):
        old, old_scores, _ = kept
        old_offsets = np.concatenate([[0], np.cumsum(old[:, 2].astype(np.int64))])
        if old_offsets[-1] == len(old_scores):  # else the kept files disagree: reuse nothing
            order = np.argsort(old[:, 0], kind="stable")
            at = np.searchsorted(old[order, 0], impressions[:, 0])
            match = order[np.minimum(at, len(order) - 1)]
            same = (old[match] == impressions).all(axis=1)
            found[same] = match[same]
    reused = np.flatnonzero(found >= 0)
    fresh = np.flatnonzero(found < 0)
    offsets = np.asarray(data.cand_offsets, dtype=np.int64)
    if len(reused):
        into = candidate_positions(offsets, reused)
        scores[into] = old_scores[candidate_positions(old_offsets, found[reused])]
    if len(fresh):
        part = data if len(fresh) == data.n_impressions else data.take(fresh)
        score_kw = {"profiles": inputs.profiles} if scorer.config.get("profile") else {}
        fresh_scores = score_in_chunks(scorer, part, inputs.items, VALIDATE_CHUNK, **score_kw)
        scores[candidate_positions(offsets, fresh)] = fresh_scores
    return scores, len(reused)


def _impression_words(config: dict, inputs, data, memo: dict | None = None):
    """uint64 [n_impressions, 3]: `score_memo.impression_digests` of `data` (a split of
    `inputs`) for a scorer configured by `config`, and each impression's candidate count."""
    import numpy as np

    from genre_dagster.scoring.score_memo import impression_digests

    profiles = inputs.profiles if config.get("profile") else None
    digests = impression_digests(config, data, inputs.items, inputs.day_zero, profiles, memo)
    counts = np.diff(np.asarray(data.cand_offsets, dtype=np.int64)).astype(np.uint64)
    return np.concatenate([digests, counts[:, None]], axis=1)


def _split_fingerprint(config: dict, inputs, data) -> str:
    """`scores_fingerprint` of `data` (a split of `inputs`) for a scorer configured by
    `config`."""
    from genre_dagster.scoring.score_memo import scores_fingerprint

    profiles = inputs.profiles if config.get("profile") else None
    return scores_fingerprint(config, data, inputs.items, inputs.day_zero, profiles)


def keep_test_scores(model_store, inputs, split: str):
    """A function `keep(record, data, scores, metrics)` for the leaderboard: it saves the
    scores of the published model in `record` (a scorer's one-row table) on `split` of
    `inputs` (`data`: the split as that model read it), so that tomorrow's step of a model
    reused within its cadence reads them when this day is its validation day."""

    memo: dict = {}  # the split's id arrays, hashed once for all the models

    def keep(record: dict, data, scores, metrics: dict) -> None:
        config = json.loads(record["config_json"])
        fingerprint = _split_fingerprint(config, inputs, data)
        model_store.remember_validation(
            record["scorer_id"], fingerprint, plain_metrics(metrics), scores=scores,
            source=f"the leaderboard's {split} split",
            impressions=_impression_words(config, inputs, data, memo),
        )  # fmt: skip

    return keep


def member_validation_scores(members, inputs, model_store) -> list:
    """Each ensemble member's saved scores of `inputs`' validation split (its own step
    validated the same model on the same data tonight, or read them from last night's
    leaderboard), or None where there are none. Members reading profiles or generated
    histories get None: the ensemble loads neither, so its data differs from theirs."""
    found, valid = [], inputs.splits["validation"]
    for member in members:
        if member.config.get("profile") or member.config.get("generated_history"):
            found.append(None)
            continue
        fingerprint = _split_fingerprint(member.config, inputs, valid)
        found.append(model_store.recall_validation_scores(member.scorer_id, fingerprint))
    return found


def plain_metrics(val: dict) -> dict:
    """Metrics as JSON-safe numbers (they are saved with the artifact)."""
    return {k: int(v) if k.startswith("n_") else float(v) for k, v in val.items()}
