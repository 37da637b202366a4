"""The leaderboard: every scorer on one split, for all, warm and cold users (MIND protocol).

Beside the trained scorers: scorers trained on another dataset (transfer), a random scorer and,
on generated worlds, the oracle (true click probabilities). Every row holds its AUC's 95%
bootstrap interval; each GENRE variant row also its paired-bootstrap AUC difference to its base.
The `leaderboard` asset (`assets/evaluation.py`) reads the inputs and calls `leaderboard_table`.
No Dagster here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from genre_dagster.evaluation.metrics import metric_names

METRICS = metric_names()
SEGMENTS = ("all", "warm", "cold")
# Columns null on some rows: the seconds a scorer's scores took (null on the reference rows) and
# the comparison of a GENRE variant with its base scorer (null on every other row).
DELTA_SCHEMA = {
    "score_seconds": pl.Float64,
    "base": pl.Utf8,
    "auc_delta": pl.Float64,
    "auc_delta_low": pl.Float64,
    "auc_delta_high": pl.Float64,
    "auc_delta_verdict": pl.Utf8,
}


@dataclass
class LeaderboardSettings:
    """How the leaderboard is computed (the asset's launchpad config)."""

    split: str
    cold_max_clicks: int
    bootstrap_resamples: int
    bootstrap_seed: int
    predictions_dir: Path | None  # None: no prediction files
    bases: dict[str, str]  # GENRE variant -> its base scorer (scoring.variants.variant_bases)
    chunk_impressions: int = 0  # impressions a scorer scores at a time (0 = all at once)


def leaderboard_table(
    table: pl.DataFrame,
    base,
    augmented,
    load: Callable[[str], Any],
    settings: LeaderboardSettings,
    transfer: list[tuple[str, Any]] = (),
    truth_root: Path | None = None,
    publishes: Callable[[Path, str], bool] | None = None,
    keep: Callable[[dict, Any, np.ndarray, dict], None] | None = None,
) -> pl.DataFrame:
    """The leaderboard of the scorers in `table` (their one-row tables, concatenated) on
    `settings.split` of `base` (scoring inputs; `augmented`: the same with GENRE's generated
    history, or None). `load(scorer_id)` gives a fitted scorer; `transfer` holds (folder,
    scorer) pairs trained elsewhere; `truth_root` is the generated world's folder, if any;
    `publishes(folder, scorer_id)` tells whether an ensemble's copy of a member is the published
    model (`ModelStore.publishes`), so the ensemble reuses that model's scores. `keep(record,
    data, scores, metrics)` is called once per published model (not for ensembles) with its
    scores of the split as that model read it (`nightly.keep_test_scores`)."""
    from genre_dagster.scoring.base import score_in_chunks

    data = base.splits[settings.split]
    behaviors = base.behaviors[settings.split]
    cold = behaviors["history_length"].to_numpy() <= settings.cold_max_clicks
    segments = dict(zip(SEGMENTS, (np.ones(len(cold), dtype=bool), ~cold, cold), strict=True))
    auc: dict[str, np.ndarray] = {}  # scorer -> AUC of every evaluated impression
    rows = _trained_rows(table, base, augmented, load, settings, segments, auc, publishes, keep)
    for folder, foreign in transfer:
        if getattr(foreign, "config", {}).get("profile"):
            raise ValueError(f"{folder}: profile-based scorers cannot be transferred")
        name, started = f"transfer:{foreign.scorer_id}", time.perf_counter()
        scores = score_in_chunks(foreign, data, base.items, settings.chunk_impressions)
        seconds = time.perf_counter() - started
        rows += _rows(
            name, f"trained elsewhere ({folder})", data, scores, segments, None, auc, seconds
        )
    random_scores = np.random.default_rng(0).random(len(data.cand_items))
    rows += _rows("random", "reference", data, random_scores, segments, None, auc)
    oracle = oracle_scores(truth_root, behaviors) if truth_root is not None else None
    if oracle is not None:
        rows += _rows("oracle", "true click probability", data, oracle, segments, None, auc)
    return _with_intervals(rows, auc, segments, settings)


def _trained_rows(
    table, base, augmented, load, settings, segments, auc, publishes, keep=None
) -> list[dict]:
    """Rows of the trained scorers; their prediction files when `settings` asks for them.

    Each model is scored once: a variant whose GENRE plug-in was off publishes its base
    scorer's model, and an ensemble's members are the published models of rows in the table,
    so the ensemble combines the scores those rows computed (when `publishes` confirms its copy
    of a member is the published model; otherwise it scores that member itself)."""
    from genre_dagster.evaluation.metrics import impression_metrics_for, summarize
    from genre_dagster.evaluation.prediction_file import write_split_prediction_files

    split, folder = settings.split, settings.predictions_dir
    data = base.splits[split]
    records = list(table.iter_rows(named=True))

    def key_of(record: dict) -> tuple:
        use_generated = bool(record["generated_history"] and augmented.extra_history)
        return record["scorer_id"], use_generated, record["profile"]

    ensembles = _ensembles(records, load, publishes)
    cache = _ScoreCache(
        [key_of(r) for r in records] + [k for e in ensembles.values() for k in e[1]]
    )
    written: set[str] = set()  # prediction files are per model: the first row that scores it
    kept: set[str] = set()  # so are the kept scores
    rows: list[dict] = []
    for record in records:
        key = key_of(record)
        if record["scorer_id"] in ensembles:
            scorer, member_keys = ensembles[record["scorer_id"]]
            compute = _ensemble_scores(scorer, member_keys, cache, data, base.items, settings)
        else:
            split_data = augmented.splits[split] if key[1] else data
            kwargs = {"profiles": base.profiles} if record["profile"] else {}
            compute = _scores_of(
                load, record["scorer_id"], split_data, base.items, settings, kwargs
            )
        started = time.perf_counter()
        scores = cache.take(key, compute)
        seconds = time.perf_counter() - started
        name, variant = record["name"], record["variant"]
        per = impression_metrics_for(data, scores)
        rows += _rows(name, variant, data, scores, segments, record["val_auc"], auc, seconds, per)
        model = record["scorer_id"]
        if keep is not None and model not in ensembles and model not in kept:
            kept.add(model)
            split_data = augmented.splits[split] if key[1] else data
            keep(record, split_data, scores, summarize(per))
        if folder is not None and record["scorer_id"] not in written:
            written.add(record["scorer_id"])
            behaviors = base.behaviors[split]
            write_split_prediction_files(
                folder / record["scorer_id"], split, behaviors, data, scores
            )
    return rows


class _ScoreCache:
    """Each model's scores of the split, computed by the first row that needs them and kept
    until the last one has read them (`keys`: every read to come, repeats included)."""

    def __init__(self, keys: list[tuple]) -> None:
        from collections import Counter

        self.uses = Counter(keys)
        self.kept: dict[tuple, np.ndarray] = {}

    def take(self, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
        scores = self.kept[key] if key in self.kept else compute()
        self.uses[key] -= 1
        if self.uses[key] > 0:
            self.kept[key] = scores
        else:
            self.kept.pop(key, None)
        return scores


def _scores_of(load, scorer_id: str, data, items, settings, kwargs: dict):
    """A function scoring `data` with the published model `scorer_id`."""

    def compute() -> np.ndarray:
        from genre_dagster.scoring.base import score_in_chunks

        return score_in_chunks(load(scorer_id), data, items, settings.chunk_impressions, **kwargs)

    return compute


def _ensembles(records: list[dict], load, publishes) -> dict[str, tuple[Any, list]]:
    """Each ensemble row's scorer and, per member, the score-cache key of the published model
    it can take the scores of (None: its copy differs, or nothing tells; it scores itself)."""
    out = {}
    for record in records:
        if record.get("kind") != "ensemble" or record["scorer_id"] in out:
            continue
        scorer = load(record["scorer_id"])
        folders = scorer.member_folders or [None] * len(scorer.members)
        keys = []
        for member, member_folder, weight in zip(
            scorer.members, folders, scorer.weights, strict=True
        ):
            same = weight > 0 and member_folder is not None and publishes is not None
            same = same and publishes(member_folder, member.scorer_id)
            keys.append((member.scorer_id, False, False) if same else None)
        out[record["scorer_id"]] = (scorer, keys)
    return out


def _ensemble_scores(scorer, member_keys: list, cache: _ScoreCache, data, items, settings):
    """A function scoring `data` with an ensemble: the members' scores from `cache` where the
    published model is the member, the member's own scores otherwise."""

    def compute() -> np.ndarray:
        parts = []
        for member, key, weight in zip(scorer.members, member_keys, scorer.weights, strict=True):
            own = _scores_of(lambda _id, m=member: m, member.scorer_id, data, items, settings, {})
            if weight <= 0:
                parts.append(None)
            elif key is None:
                parts.append(own())
            else:
                parts.append(cache.take(key, own))
        return scorer.combine(data.candidate_impression, parts)

    return compute


def _rows(
    name, variant, data, scores, segments, val_auc, auc: dict, seconds=None, per=None
) -> list[dict]:
    """One row per segment of `name`'s per-impression metrics (`per`, computed when not given);
    its AUCs go into `auc`. `seconds`: how long the scores took (`score_seconds`; 0 when
    another row's were reused)."""
    from genre_dagster.evaluation.metrics import impression_metrics_for, summarize

    per = impression_metrics_for(data, scores) if per is None else per
    auc[name] = per.values["auc"]
    rows = []
    for segment, mask in segments.items():
        metrics = summarize(per, mask)
        rows.append(
            {
                "scorer": name,
                "variant": variant,
                "segment": segment,
                **{m: float(metrics[m]) for m in METRICS},
                "impressions": int(metrics["n_impressions"]),
                "val_auc": val_auc,
                "score_seconds": None if seconds is None else round(seconds, 2),
            }
        )
    return rows


def _with_intervals(rows: list[dict], auc: dict, segments: dict, settings) -> pl.DataFrame:
    """The rows as the leaderboard table: each GENRE variant against its base on the same
    impressions (paired bootstrap), and each scorer's own AUC interval (the same resampling)."""
    from genre_dagster.evaluation.paired import compare_with_bases, intervals_by_segment

    bases = settings.bases
    resampling = {"n_resamples": settings.bootstrap_resamples, "seed": settings.bootstrap_seed}
    deltas = compare_with_bases(auc, bases, segments, **resampling)
    for row in rows:
        delta = deltas.get((row["scorer"], row["segment"]))
        row["base"] = bases[row["scorer"]] if delta else None
        row["auc_delta"] = delta.delta if delta else None
        row["auc_delta_low"] = delta.low if delta else None
        row["auc_delta_high"] = delta.high if delta else None
        row["auc_delta_verdict"] = delta.verdict if delta else None
    intervals = intervals_by_segment(auc, segments, **resampling)
    keys = [(row["scorer"], row["segment"]) for row in rows]
    return pl.DataFrame(rows, schema_overrides=DELTA_SCHEMA).with_columns(
        pl.lit(settings.split).alias("split"),
        pl.Series("auc_low", [intervals[k].low for k in keys], dtype=pl.Float64),
        pl.Series("auc_high", [intervals[k].high for k in keys], dtype=pl.Float64),
    )


def oracle_scores(root: Path, behaviors: pl.DataFrame) -> np.ndarray | None:
    """True click probabilities of a generated world, aligned with the candidates (or None)."""
    root = Path(root)
    files = [root / "truth.parquet", *sorted((root / "truth_landing").glob("truth_*.parquet"))]
    files = [f for f in files if f.exists()]
    if not files:
        return None
    # Only the truth of the split's impressions is read (the filter reaches the Parquet
    # scan): the world's truth has a row per candidate of every day, 18M at MIND-medium size,
    # and reading it whole to join 2M of them took 5.7 GB.
    ids = behaviors["mind_impression_id"].cast(pl.Int64).unique()
    truth = (
        pl.concat([pl.scan_parquet(f) for f in files], how="vertical_relaxed")
        .select(
            "source_split",
            pl.col("mind_impression_id").cast(pl.Int64),
            pl.col("position").cast(pl.Int64),
            "click_probability",
        )
        .filter(pl.col("mind_impression_id").is_in(ids.implode()))
        .filter(pl.col("source_split").is_in(behaviors["source_split"].unique().implode()))
        .collect()
    )
    wanted = behaviors.select(
        "source_split",
        pl.col("mind_impression_id").cast(pl.Int64),
        pl.int_ranges(1, pl.col("n_candidates") + 1).alias("position"),
    ).explode("position")
    joined = wanted.join(
        truth,
        on=["source_split", "mind_impression_id", "position"],
        how="left",
        maintain_order="left",
    )
    if joined["click_probability"].null_count():
        return None  # not the world this truth belongs to
    return joined["click_probability"].to_numpy()
