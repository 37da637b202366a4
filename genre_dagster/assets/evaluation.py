"""Evaluation on the MIND protocol: every scorer and GENRE variant on the test split, for all,
warm and cold users, beside a random scorer and (on generated worlds) the oracle; a nightly
history of it and an evaluation page (plotly) next to the monitoring reports. The leaderboard is
computed in `evaluation/leaderboard.py`."""

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources import DatasetSource
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.resources.reports import ReportStore
from genre_dagster.scoring.inputs import embedding_fields
from genre_dagster.scoring.variants import DEFAULT_SCORERS, ScorerSpec, variant_bases
from genre_dagster.settings import COLD_MAX_CLICKS
from genre_dagster.step_budget import budgeted

GROUP = "evaluation"


def scorer_keys(specs: tuple[ScorerSpec, ...]) -> dict[str, dg.AssetKey]:
    """The asset key of every scorer the leaderboard reads: `specs` and the ensemble."""
    keys = {s.name: dg.AssetKey(["scoring", s.name]) for s in specs}
    keys["ensemble"] = dg.AssetKey(["scoring", "ensemble"])
    return keys


class EvaluationConfig(dg.Config):
    split: str = Field(default="test", description="split to evaluate: test | validation")
    cold_max_clicks: int = Field(
        default=COLD_MAX_CLICKS, description="cold user = at most this many clicks"
    )
    write_prediction_files: bool = Field(
        default=True, description="write MIND-format prediction files (impression_id [ranks])"
    )
    bootstrap_resamples: int = Field(
        default=1000,
        description=(
            "resamples of the test impressions for the 95% intervals: each scorer's AUC and "
            "each GENRE variant's AUC difference to its base"
        ),
    )
    bootstrap_seed: int = Field(default=0, description="seed of the impression resampling")
    chunk_impressions: int = Field(
        default=100_000,
        ge=0,
        description=(
            "each scorer scores the split this many impressions at a time (0 = all at once): "
            "what it builds per impression stays bounded on a MIND-large-sized day"
        ),
    )
    keep_scores: bool = Field(
        default=True,
        description=(
            "save each model's scores of the split beside its artifact (float32 per candidate): "
            "tomorrow's validation day is today's test day, so a model reused within its "
            "cadence reads them instead of scoring the day again"
        ),
    )
    transfer_scorers: list[str] = Field(
        default=[],
        description=(
            "folders of scorers trained on another dataset that shares the encoder (e.g. "
            "/data/news/models/nrms-1a2b3c4d5e): evaluated here next to the in-domain scorers"
        ),
    )


LEADERBOARD_DESCRIPTION = """Per-impression AUC, MRR, nDCG@5/10, recall@k and hit@k averaged over
impressions (MIND protocol), for all, warm and cold users, per scorer and GENRE variant; random
and oracle rows for reference. Every row holds its AUC's 95% bootstrap interval over impressions
(`auc_low`, `auc_high`). Each GENRE variant row also holds its `base` scorer and the AUC
difference to it on the same impressions with a 95% paired-bootstrap interval (`auc_delta`,
`auc_delta_low`, `auc_delta_high`, `auc_delta_verdict`: helps / no clear effect / hurts), shown
as the "GENRE variants vs base" table. Writes official MIND prediction files per scorer and the
evaluation page (plotly charts, linked as `evaluation_page` and listed in the report index)."""
HISTORY_DESCRIPTION = """Every evaluation's AUC per scorer and segment with its 95% interval,
one set of rows per leaderboard run (`day`: the split's newest day, `run_id`, `evaluated_at` in
UTC): the evaluation page draws each scorer's AUC across nights from it."""


# One step, two tables: the history is appended to by the run that computes the leaderboard, so
# the page drawn in that step already holds tonight's point.
def _leaderboard_outs() -> dict[str, dg.AssetOut]:
    """The step's two tables: the leaderboard and its history."""
    return {
        "leaderboard": dg.AssetOut(
            key=wh.LEADERBOARD.key,
            description=LEADERBOARD_DESCRIPTION,
            kinds={"duckdb"},
            # Declarative: when a scorer is retrained outside the nightly job (a launchpad
            # experiment), the leaderboard follows by itself once
            # `default_automation_condition_sensor` is on.
            automation_condition=dg.AutomationCondition.eager(),
        ),
        "leaderboard_history": dg.AssetOut(
            key=wh.LEADERBOARD_HISTORY.key,
            description=HISTORY_DESCRIPTION,
            kinds={"duckdb"},
            automation_condition=dg.AutomationCondition.eager(),
        ),
    }


def build_leaderboard(specs: tuple[ScorerSpec, ...] = DEFAULT_SCORERS) -> dg.AssetsDefinition:
    """The leaderboard step over `specs` (the default scorers, or those of a graph that adds
    optional ones, `GENRE_EXTRA_SCORERS`) and the ensemble."""

    @dg.multi_asset(
        name="evaluation__leaderboard",
        outs=_leaderboard_outs(),
        ins={name: dg.AssetIn(key) for name, key in scorer_keys(specs).items()},
        deps=[wh.IMPRESSION_SPLITS.key, wh.STG_BEHAVIORS.key],
        group_name=GROUP,
        pool="duckdb",
    )
    @budgeted
    def leaderboard(
        context: dg.AssetExecutionContext,
        config: EvaluationConfig,
        duckdb: DuckDBResource,
        model_store: ModelStore,
        source: DatasetSource,
        reports: ReportStore,
        **scorers: pl.DataFrame,
    ):
        """The leaderboard of every scorer on the evaluation split, its nightly history, and
        the evaluation page drawn from both."""
        yield from _leaderboard(
            context, config, duckdb, model_store, source, reports, scorers, variant_bases(specs)
        )

    return leaderboard


leaderboard = build_leaderboard()


def _leaderboard(context, config, duckdb, model_store, source, reports, scorers: dict, bases):
    """The step's work: read, compute (`evaluation/leaderboard.py`), publish."""
    from genre_dagster.evaluation.leaderboard import leaderboard_table

    table = pl.concat(list(scorers.values()), how="vertical_relaxed")
    transfer = _transfer_scorers(config.transfer_scorers)
    base, augmented, history = _read_inputs(duckdb, config.split, table, transfer)
    predictions_dir = _fresh_predictions_dir(model_store, config.split)
    started = time.perf_counter()
    kept: list[str] = []
    keep = _keeper(model_store, base, config.split, kept) if config.keep_scores else None
    out = leaderboard_table(
        table, base, augmented, model_store.load, _settings(config, predictions_dir, bases),
        transfer=transfer, truth_root=Path(source.path), publishes=model_store.publishes,
        keep=keep,
    )  # fmt: skip
    inactive = {r["name"]: json.loads(r["inactive_plugins"] or "{}") for r in table.to_dicts()}
    metadata = _describe(out, time.perf_counter() - started, predictions_dir, inactive)
    metadata.update(_chunking(base.splits[config.split].n_impressions, config.chunk_impressions))
    metadata["scores_kept_for_validation"] = len(kept)
    day, run_id = base.behaviors[config.split]["day"].max(), context.run.run_id  # newest day
    history = _with_tonight(history, out, day, run_id)
    metadata.update(_publish_page(out, history, reports, day, run_id))
    yield dg.Output(out, output_name="leaderboard", metadata=metadata)
    yield dg.Output(
        history,
        output_name="leaderboard_history",
        metadata={
            "dagster/row_count": history.height,
            "runs": history["run_id"].n_unique(),
            "evaluation_page": metadata["evaluation_page"],
        },
    )


def _keeper(model_store: ModelStore, base, split: str, kept: list[str]):
    """`nightly.keep_test_scores`, recording in `kept` the models whose scores it saved."""
    from genre_dagster.scoring.nightly import keep_test_scores

    save = keep_test_scores(model_store, base, split)

    def keep(record: dict, data, scores, metrics: dict) -> None:
        save(record, data, scores, metrics)
        kept.append(record["scorer_id"])

    return keep


def _chunking(n_impressions: int, chunk: int) -> dict:
    """How the split was scored: impressions at a time and chunks per scorer."""
    from genre_dagster.scoring.base import n_chunks

    return {"chunk_impressions": chunk, "chunks_per_scorer": n_chunks(n_impressions, chunk)}


def _fresh_predictions_dir(model_store: ModelStore, split: str) -> Path:
    """The prediction files' folder, without the files of an earlier evaluation of `split`
    (they would mix with today's)."""
    predictions_dir = Path(model_store.root).parent / "predictions"
    for stale in predictions_dir.glob(f"*/{split}_*.txt"):
        stale.unlink()
    return predictions_dir


def _settings(config: EvaluationConfig, predictions_dir: Path, bases: dict[str, str]):
    """The launchpad config as the leaderboard computation's settings."""
    from genre_dagster.evaluation.leaderboard import LeaderboardSettings

    return LeaderboardSettings(
        split=config.split,
        cold_max_clicks=config.cold_max_clicks,
        bootstrap_resamples=config.bootstrap_resamples,
        bootstrap_seed=config.bootstrap_seed,
        predictions_dir=predictions_dir if config.write_prediction_files else None,
        bases=bases,
        chunk_impressions=config.chunk_impressions,
    )


def _transfer_scorers(folders: list[str]) -> list[tuple[str, object]]:
    """(folder, scorer) of every scorer trained on another dataset."""
    if not folders:
        return []
    from genre_dagster.scoring.registry import load_scorer

    return [(folder, load_scorer(Path(folder))) for folder in folders]


def _read_inputs(duckdb: DuckDBResource, split: str, table: pl.DataFrame, transfer: list):
    """The split's scoring inputs (with every embedding field a scorer reads), the same with
    GENRE's generated history when a scorer reads it, and the stored leaderboard history. An
    empty split fails the step once, naming the days found."""
    from genre_dagster.scoring.inputs import load_scorer_inputs, with_generated_history

    configs = [json.loads(c) for c in table["config_json"]] + [s.config for _, s in transfer]
    fields = sorted({f for c in configs for f in embedding_fields(c)})
    need_profile = bool(table["profile"].any())
    with duckdb.get_connection() as conn:
        base = load_scorer_inputs(conn, (split,), fields, profile=need_profile, configs=configs)
        augmented = with_generated_history(conn, base) if table["generated_history"].any() else None
        history = wh.read_table(conn, wh.LEADERBOARD_HISTORY)
        if base.splits[split].n_impressions == 0:
            from genre_dagster.scoring.splits import describe_splits

            report = describe_splits(conn)
            raise dg.Failure(
                description=f"the {split} split is empty. "
                + (report.problem() or report.summary()),
                allow_retries=False,
            )
    return base, augmented, history


def _with_tonight(history: pl.DataFrame | None, out: pl.DataFrame, day, run_id: str):
    """The stored history plus this run's rows."""
    from genre_dagster.evaluation.report_page import history_rows

    tonight = history_rows(out, day, run_id, datetime.now(UTC))
    if history is None:
        return tonight
    return pl.concat([history, tonight], how="diagonal_relaxed")


def _publish_page(
    out: pl.DataFrame, history: pl.DataFrame, reports: ReportStore, day, run_id: str
) -> dict:
    """Write the evaluation page and its JSON record beside the monitoring reports, refresh the
    report index; returns the links for the leaderboard's metadata."""
    from genre_dagster.evaluation.report_page import (
        PAGE_NAME,
        evaluation_summary,
        write_evaluation_page,
    )
    from genre_dagster.monitoring import write_report_index
    from genre_dagster.monitoring.reports import report_paths, write_report_record

    html_path, json_path = report_paths(reports.folder, PAGE_NAME, day, run_id)
    title = f"Evaluation ({out['split'][0]} split) — {day}"
    write_evaluation_page(out, history, html_path, title=title)
    write_report_record(json_path, PAGE_NAME, day, run_id, html_path, evaluation_summary(out))
    index = write_report_index(reports.folder)
    return {
        "evaluation_page": dg.MetadataValue.url(reports.url_of(html_path)),
        "evaluation_page_path": dg.MetadataValue.path(str(html_path)),
        "report_index": dg.MetadataValue.url(reports.url_of(index)),
    }


def _variants_table(out: pl.DataFrame, inactive: dict[str, dict]) -> str:
    """Markdown: each GENRE variant beside its base, AUC difference with its 95% interval."""
    by = {(r["scorer"], r["segment"]): r for r in out.iter_rows(named=True)}

    def delta(r: dict | None) -> str:
        if r is None or r["auc_delta"] is None or np.isnan(r["auc_delta"]):
            return "-"
        return f"{r['auc_delta']:+.4f} [{r['auc_delta_low']:+.4f}, {r['auc_delta_high']:+.4f}]"

    lines = [
        "| variant | adds | base | AUC | base AUC | AUC difference [95% interval] | verdict | "
        "cold users: difference [95% interval] | cold verdict | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    variants = out.filter(pl.col("base").is_not_null() & (pl.col("segment") == "all"))
    for r in variants.iter_rows(named=True):
        base = by[(r["base"], "all")]
        cold = by.get((r["scorer"], "cold"))
        off = sorted(inactive.get(r["scorer"]) or {})
        note = f"plug-in off in training: {', '.join(off)}" if off else ""
        lines.append(
            f"| {r['scorer']} | {r['variant']} | {r['base']} | {r['auc']:.4f} | "
            f"{base['auc']:.4f} | {delta(r)} | "
            f"{r['auc_delta_verdict']} | {delta(cold)} | "
            f"{cold['auc_delta_verdict'] if cold else '-'} | {note} |"
        )
    return "\n".join(lines)


def _describe(
    out: pl.DataFrame,
    seconds: float,
    predictions_dir: Path,
    inactive: dict[str, dict],
) -> dict:
    """The leaderboard's metadata: the tables as Markdown and the AUCs as numbers."""
    everyone = out.filter(pl.col("segment") == "all").sort("auc", descending=True)
    oracle = everyone.filter(pl.col("scorer") == "oracle")["auc"]
    oracle_auc = float(oracle[0]) if len(oracle) else None
    header = "| scorer | variant | AUC | MRR | nDCG@5 | nDCG@10 | cold AUC | warm AUC | scoring s |"
    lines = [header, "|---|---|---|---|---|---|---|---|---|"]
    by = {(r["scorer"], r["segment"]): r for r in out.iter_rows(named=True)}
    for r in everyone.iter_rows(named=True):
        cold = by.get((r["scorer"], "cold"), {}).get("auc", float("nan"))
        warm = by.get((r["scorer"], "warm"), {}).get("auc", float("nan"))
        lines.append(
            f"| {r['scorer']} | {r['variant']} | {r['auc']:.4f} | {r['mrr']:.4f} | "
            f"{r['ndcg@5']:.4f} | {r['ndcg@10']:.4f} | {cold:.4f} | {warm:.4f} | "
            f"{'-' if r['score_seconds'] is None else r['score_seconds']} |"
        )
    metadata: dict = {
        "leaderboard": dg.MetadataValue.md("\n".join(lines)),
        "GENRE variants vs base": dg.MetadataValue.md(_variants_table(out, inactive)),
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
    for r in everyone.filter(pl.col("auc_delta").is_not_nan()).iter_rows(named=True):
        metadata[f"auc_delta/{r['scorer']}"] = round(r["auc_delta"], 5)
    if oracle_auc:
        metadata["oracle_auc"] = round(oracle_auc, 5)
    return metadata
