"""Evaluation on the MIND protocol: every scorer and GENRE variant on the test split, for all,
warm and cold users, beside a random scorer and (on generated worlds) the oracle."""

import json
import time
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster.assets.scoring import embedding_fields
from genre_dagster.resources import DatasetSource
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.scoring.variants import DEFAULT_SCORERS

GROUP = "evaluation"
SCORER_KEYS = {s.name: dg.AssetKey(["scoring", s.name]) for s in DEFAULT_SCORERS}
SCORER_KEYS["ensemble"] = dg.AssetKey(["scoring", "ensemble"])
METRICS = ["auc", "mrr", "ndcg@5", "ndcg@10", "recall@5", "recall@10", "hit@5", "hit@10"]


class EvaluationConfig(dg.Config):
    split: str = Field(default="test", description="split to evaluate: test | validation")
    cold_max_clicks: int = Field(default=5, description="cold user = at most this many clicks")
    write_prediction_files: bool = Field(
        default=True, description="write MIND-format prediction files (impression_id [ranks])"
    )
    transfer_scorers: list[str] = Field(
        default=[],
        description=(
            "folders of scorers trained on another dataset that shares the encoder (e.g. "
            "/data/news/models/nrms-1a2b3c4d5e): evaluated here next to the in-domain scorers"
        ),
    )


def _oracle_scores(source: DatasetSource, behaviors: pl.DataFrame) -> np.ndarray | None:
    """True click probabilities of a generated world, aligned with the candidates (or None)."""
    root = Path(source.path)
    files = [root / "truth.parquet", *sorted((root / "truth_landing").glob("truth_*.parquet"))]
    files = [f for f in files if f.exists()]
    if not files:
        return None
    truth = pl.concat([pl.read_parquet(f) for f in files], how="vertical_relaxed")
    wanted = behaviors.select(
        "source_split",
        "mind_impression_id",
        pl.int_ranges(1, pl.col("candidate_ids").list.len() + 1).alias("position"),
    ).explode("position")
    joined = wanted.join(
        truth.select(
            "source_split",
            pl.col("mind_impression_id").cast(pl.Int64),
            pl.col("position").cast(pl.Int64),
            "click_probability",
        ),
        on=["source_split", "mind_impression_id", "position"],
        how="left",
        maintain_order="left",
    )
    if joined["click_probability"].null_count():
        return None  # not the world this truth belongs to
    return joined["click_probability"].to_numpy()


def _segment_rows(name, variant, data, scores, cold_mask, val_auc) -> list[dict]:
    from genre_dagster.evaluation.metrics import evaluate_impression_groups

    groups = evaluate_impression_groups(data, scores, {"warm": ~cold_mask, "cold": cold_mask})
    rows = []
    for segment, metrics in groups.items():
        rows.append(
            {
                "scorer": name,
                "variant": variant,
                "segment": segment,
                **{m: float(metrics[m]) for m in METRICS},
                "impressions": int(metrics["n_impressions"]),
                "val_auc": val_auc,
            }
        )
    return rows


@dg.asset(
    key=[GROUP, "leaderboard"],
    ins={name: dg.AssetIn(key) for name, key in SCORER_KEYS.items()},
    deps=["impression_splits", "stg_behaviors"],
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
    # Declarative: when a scorer is retrained outside the nightly job (a launchpad experiment),
    # the leaderboard follows by itself once `default_automation_condition_sensor` is on.
    automation_condition=dg.AutomationCondition.eager(),
)
def leaderboard(
    context: dg.AssetExecutionContext,
    config: EvaluationConfig,
    duckdb: DuckDBResource,
    model_store: ModelStore,
    source: DatasetSource,
    **scorers: pl.DataFrame,
) -> pl.DataFrame:
    """Per-impression AUC, MRR, nDCG@5/10, recall@k and hit@k averaged over impressions (MIND
    protocol), for all, warm and cold users, per scorer and GENRE variant; random and oracle
    rows for reference. Writes official MIND prediction files per scorer."""
    from genre_dagster.evaluation.prediction_file import write_mind_prediction_file
    from genre_dagster.scoring.inputs import load_scorer_inputs, with_generated_history

    table = pl.concat(list(scorers.values()), how="vertical_relaxed")
    fields = sorted({f for c in table["config_json"] for f in embedding_fields(json.loads(c))})
    need_profile = bool(table["profile"].any())
    with duckdb.get_connection() as conn:
        base = load_scorer_inputs(conn, (config.split,), fields, profile=need_profile)
        augmented = with_generated_history(conn, base) if table["generated_history"].any() else None
    data = base.splits[config.split]
    behaviors = base.behaviors[config.split]
    if data.n_impressions == 0:
        raise RuntimeError(f"the {config.split} split is empty")
    cold = behaviors["history_length"].to_numpy() <= config.cold_max_clicks
    rows: list[dict] = []
    predictions_dir = Path(model_store.root).parent / "predictions"
    # files of an earlier evaluation of this split would mix with today's: replace them
    for stale in predictions_dir.glob(f"*/{config.split}_*.txt"):
        stale.unlink()
    started = time.perf_counter()
    # Variants whose GENRE plug-in was off publish their base scorer's model: score it once.
    scored: dict[tuple, np.ndarray] = {}
    written: set[str] = set()  # prediction files are per model: the first row that scores it
    for record in table.iter_rows(named=True):
        use_generated = bool(record["generated_history"] and augmented.extra_history)
        key = (record["scorer_id"], use_generated, record["profile"])
        if key not in scored:
            scorer = model_store.load(record["scorer_id"])
            split_data = augmented.splits[config.split] if use_generated else data
            kwargs = {"profiles": base.profiles} if record["profile"] else {}
            scored[key] = scorer.score(split_data, base.items, **kwargs)
        scores = scored[key]
        rows += _segment_rows(
            record["name"], record["variant"], data, scores, cold, record["val_auc"]
        )
        if config.write_prediction_files and record["scorer_id"] not in written:
            written.add(record["scorer_id"])
            for source_split in behaviors["source_split"].unique().to_list():
                mask = (behaviors["source_split"] == source_split).to_numpy()
                cand_mask = np.repeat(mask, np.diff(data.cand_offsets))
                index = data.candidate_impression[cand_mask]
                remap = np.cumsum(mask) - 1
                positions = np.concatenate(
                    [np.arange(1, n + 1) for n in np.diff(data.cand_offsets)[mask]]
                )
                path = predictions_dir / record["scorer_id"] / f"{config.split}_{source_split}.txt"
                path.parent.mkdir(parents=True, exist_ok=True)
                write_mind_prediction_file(
                    behaviors["mind_impression_id"].to_numpy()[mask],
                    remap[index],
                    positions,
                    scores[cand_mask],
                    path,
                )
    for folder in config.transfer_scorers:
        from genre_dagster.scoring.registry import load_scorer

        foreign = load_scorer(Path(folder))
        missing = set(embedding_fields(foreign.config)) - set(base.items.embeddings)
        if missing:
            with duckdb.get_connection() as conn:
                base = load_scorer_inputs(
                    conn, (config.split,), sorted(set(fields) | missing), profile=need_profile
                )
        if getattr(foreign, "config", {}).get("profile"):
            raise ValueError(f"{folder}: profile-based scorers cannot be transferred")
        scores = foreign.score(data, base.items)
        rows += _segment_rows(
            f"transfer:{foreign.scorer_id}",
            f"trained elsewhere ({folder})",
            data,
            scores,
            cold,
            None,
        )
    rng = np.random.default_rng(0)
    rows += _segment_rows("random", "reference", data, rng.random(len(data.cand_items)), cold, None)
    oracle = _oracle_scores(source, behaviors)
    if oracle is not None:
        rows += _segment_rows("oracle", "true click probability", data, oracle, cold, None)
    out = pl.DataFrame(rows).with_columns(pl.lit(config.split).alias("split"))
    _describe(context, out, time.perf_counter() - started, predictions_dir)
    return out


def _describe(context, out: pl.DataFrame, seconds: float, predictions_dir: Path) -> None:
    everyone = out.filter(pl.col("segment") == "all").sort("auc", descending=True)
    oracle = everyone.filter(pl.col("scorer") == "oracle")["auc"]
    oracle_auc = float(oracle[0]) if len(oracle) else None
    header = "| scorer | variant | AUC | MRR | nDCG@5 | nDCG@10 | cold AUC | warm AUC |"
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    by = {(r["scorer"], r["segment"]): r for r in out.iter_rows(named=True)}
    for r in everyone.iter_rows(named=True):
        cold = by.get((r["scorer"], "cold"), {}).get("auc", float("nan"))
        warm = by.get((r["scorer"], "warm"), {}).get("auc", float("nan"))
        lines.append(
            f"| {r['scorer']} | {r['variant']} | {r['auc']:.4f} | {r['mrr']:.4f} | "
            f"{r['ndcg@5']:.4f} | {r['ndcg@10']:.4f} | {cold:.4f} | {warm:.4f} |"
        )
    metadata: dict = {
        "leaderboard": dg.MetadataValue.md("\n".join(lines)),
        "seconds": round(seconds, 2),
        "prediction_files": dg.MetadataValue.path(str(predictions_dir)),
    }
    for r in everyone.iter_rows(named=True):
        metadata[f"auc/{r['scorer']}"] = round(r["auc"], 5)
        if oracle_auc:
            # plain ratio, and the share of the oracle's gain over random (0.5)
            metadata[f"auc_over_oracle/{r['scorer']}"] = round(r["auc"] / oracle_auc, 4)
            metadata[f"gain_share_of_oracle/{r['scorer']}"] = round(
                (r["auc"] - 0.5) / (oracle_auc - 0.5), 4
            )
    if oracle_auc:
        metadata["oracle_auc"] = round(oracle_auc, 5)
    context.add_output_metadata(metadata)
