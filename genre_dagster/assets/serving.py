"""Serving: the challenger, the promotion guard, the serving scorer and top-K lists.

The best newly trained scorer (by validation AUC) is the challenger. The blocking check
`promotion_guard` compares it with the serving scorer: if it is worse beyond the tolerance the
check fails (WARN) and the previous scorer keeps serving; an unusable challenger (no AUC, or no
better than random) fails with ERROR and blocks everything downstream.

The tolerance is set once, on the challenger (its row carries it), so the guard and the serving
scorer cannot judge the same challenger with two different tolerances. The lists are built in
`serving/lists.py`.
"""

import json
from datetime import UTC, datetime

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.llm import LLMResource
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.resources.source import DatasetSource
from genre_dagster.serving import lists
from genre_dagster.serving.promotion import (
    PROMOTION_TOLERANCE,
    PromotionDecision,
    decide_promotion,
)
from genre_dagster.step_budget import budgeted

GROUP = "serving"
SERVING = wh.SERVING_SCORER.key
REFERENCE_ROWS = ("random", "oracle")


def _current_serving(duckdb: DuckDBResource) -> tuple[str | None, float | None, str | None]:
    """(scorer_id, validation AUC, name) of the scorer serving now, from the serving history."""
    with duckdb.get_connection() as conn:
        if not wh.table_exists(conn, wh.SERVING_SCORER):
            return None, None, None
        row = conn.execute(
            f"select serving_id, serving_val_auc, serving_name from {wh.SERVING_SCORER} "
            "order by decided_at desc limit 1"
        ).fetchone()
    return row if row else (None, None, None)


class ChallengerConfig(dg.Config):
    tolerance: float = Field(
        default=PROMOTION_TOLERANCE,
        description=(
            "largest validation-AUC drop allowed for a new scorer (the promotion guard and the "
            "serving scorer both apply it)"
        ),
    )


def _decision(challenger: pl.DataFrame, duckdb) -> PromotionDecision:
    serving_id, serving_auc, _ = _current_serving(duckdb)
    row = challenger.row(0, named=True)
    return decide_promotion(
        row["scorer_id"], row["val_auc"], serving_id, serving_auc, row["tolerance"]
    )


@dg.asset(
    key=wh.CHALLENGER.key,
    ins={"leaderboard": dg.AssetIn(wh.LEADERBOARD.key)},
    deps=[dg.AssetKey(["scoring", "ensemble"])],
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
)
@budgeted
def challenger(
    context: dg.AssetExecutionContext,
    config: ChallengerConfig,
    leaderboard: pl.DataFrame,
    duckdb: DuckDBResource,
) -> pl.DataFrame:
    """The best scorer of this run by validation AUC: the candidate to serve, with the
    tolerance its promotion is judged by."""
    trained = leaderboard.filter(
        (pl.col("segment") == "all") & ~pl.col("scorer").is_in(REFERENCE_ROWS)
    ).sort(["val_auc", "scorer"], descending=[True, False], nulls_last=True)
    if trained.height == 0:
        raise RuntimeError("the leaderboard holds no trained scorer")
    best = trained.row(0, named=True)
    lists.check_identifier(best["scorer"])
    with duckdb.get_connection() as conn:
        (scorer_id,) = conn.execute(f'select scorer_id from scoring."{best["scorer"]}"').fetchone()
    out = pl.DataFrame(
        {
            "name": [best["scorer"]],
            "scorer_id": [scorer_id],
            "val_auc": [best["val_auc"]],
            "test_auc": [best["auc"]],
            "tolerance": [config.tolerance],
        }
    )
    context.add_output_metadata(
        {"challenger": scorer_id, "validation_auc": best["val_auc"], "test_auc": best["auc"]}
    )
    return out


@dg.asset_check(asset=wh.CHALLENGER.key, blocking=True, description=__doc__.split("\n\n")[1])
def promotion_guard(duckdb: DuckDBResource) -> dg.AssetCheckResult:
    with duckdb.get_connection() as conn:
        challenger_row = wh.query_frame(conn, f"select * from {wh.CHALLENGER}")
    decision = _decision(challenger_row, duckdb)
    return dg.AssetCheckResult(
        passed=decision.promote,
        severity=dg.AssetCheckSeverity.ERROR if decision.broken else dg.AssetCheckSeverity.WARN,
        description=decision.reason,
        metadata={
            "serving_after": decision.serving_id,
            "tolerance": float(challenger_row["tolerance"][0]),
        },
    )


@dg.asset(
    key=SERVING,
    ins={"challenger": dg.AssetIn(wh.CHALLENGER.key)},
    # prediction drift of the challenger is checked first; its ERROR level can block promotion
    deps=[dg.AssetKey(["monitoring", "prediction_drift"])],
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
)
@budgeted
def serving_scorer(
    context: dg.AssetExecutionContext, challenger: pl.DataFrame, duckdb: DuckDBResource
) -> pl.DataFrame:
    """History of promotion decisions; the newest row names the scorer that serves lists."""
    previous_id, previous_auc, previous_name = _current_serving(duckdb)
    decision = _decision(challenger, duckdb)
    row = challenger.row(0, named=True)
    promoted = decision.promote and not decision.broken
    entry = pl.DataFrame(
        {
            "decided_at": [datetime.now(UTC).replace(tzinfo=None)],
            "run_id": [context.run.run_id],
            "challenger_id": [row["scorer_id"]],
            "challenger_val_auc": [row["val_auc"]],
            "promoted": [promoted],
            "serving_id": [row["scorer_id"] if promoted else previous_id],
            "serving_name": [row["name"] if promoted else previous_name],
            "serving_val_auc": [row["val_auc"] if promoted else previous_auc],
            "reason": [decision.reason],
        }
    )
    with duckdb.get_connection() as conn:
        history = wh.read_table(conn, wh.SERVING_SCORER)
    out = pl.concat([entry.clear() if history is None else history, entry], how="vertical_relaxed")
    context.add_output_metadata(
        {
            "serving": str(entry["serving_id"][0]),
            "promoted": promoted,
            "reason": decision.reason,
            "decisions": out.height,
        }
    )
    return out


class RecommendationConfig(dg.Config):
    k: int = Field(default=10, description="recommendations per user")
    pool_days: int = Field(default=2, description="candidate pool: items shown in the last N days")
    active_days: int = Field(default=7, description="active user: seen in the last N days")
    explain_field: str = Field(default="title", description="embedding field for explanations")
    # steering (applies to everyone; `segments_json` refines it per user segment)
    category_weights: dict[str, float] = Field(
        default={}, description="boost (+) or damp (-) categories, in per-user score std units"
    )
    exclude_categories: list[str] = Field(default=[], description="categories never recommended")
    freshness_days: int = Field(default=0, description="only items first shown in the last N days")
    diversity: float = Field(default=0.0, description="MMR diversity, 0 (off) to 1")
    instruction: str = Field(
        default="",
        description='natural-language steering, e.g. "more science, no celebrity gossip"; the '
        "LLM maps it to the parameters above (restricted to the dataset's categories)",
    )
    segments_json: str = Field(
        default="{}",
        description='per-segment steering, e.g. {"cold": {"category_weights": {"news": 1}}}',
    )
    chunk_users: int = Field(
        default=lists.CHUNK_USERS,
        ge=0,
        description="users ranked and explained at a time (0 = all at once); bounds the "
        "step's memory for a million users, changes no list",
    )


@dg.asset(
    key=[GROUP, "recommendations"],
    ins={"serving": dg.AssetIn(SERVING)},
    deps=[t.key for t in (wh.USER_HISTORIES, wh.ITEM_DAILY_STATS, wh.NEWS_EMBEDDINGS)],
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
)
@budgeted
def recommendations(
    context: dg.AssetExecutionContext,
    config: RecommendationConfig,
    serving: pl.DataFrame,
    duckdb: DuckDBResource,
    model_store: ModelStore,
    llm: LLMResource,
    source: DatasetSource,
) -> pl.DataFrame:
    """Top-K per active user from the serving scorer over the recent candidate pool, seen and
    synthetic items excluded, each with a short explanation (similar history item, profile
    topic, or popularity); stored with scorer id, config hash, run id and the steering applied.
    Steering (launchpad): category weights, exclusions, a freshness window, MMR diversity, a
    natural-language instruction, and per-segment refinements."""
    current = serving.sort("decided_at").row(-1, named=True)
    if current["serving_id"] is None:
        raise RuntimeError(f"no scorer is serving: {current['reason']}")
    scorer = model_store.load(current["serving_id"])
    with duckdb.get_connection() as conn:
        data = lists.read_serving_inputs(
            conn, scorer, current["serving_name"], explain_field=config.explain_field,
            active_days=config.active_days, pool_days=config.pool_days,
        )  # fmt: skip
    categories = data.inputs.items.category_names
    steering, notes = lists.resolve_steering(
        config, categories, llm, duckdb.database, source.item_domain
    )
    made = lists.recommend(
        scorer, data, steering, k=config.k, explain_field=config.explain_field,
        run_id=context.run.run_id, chunk_users=config.chunk_users,
    )  # fmt: skip
    metadata = _metadata(made, scorer, current, steering, notes)
    metadata["chunk_users"] = config.chunk_users
    from genre_dagster.scoring.base import n_chunks

    metadata["chunks"] = n_chunks(made.users, config.chunk_users)
    context.add_output_metadata(metadata)
    return made.frame


def _metadata(made: lists.Lists, scorer, current: dict, steering: dict, notes: list[str]) -> dict:
    """The lists' metadata: sizes, explanation kinds, category mix before and after steering."""
    from genre_dagster.monitoring.steering_effect import mix_shift

    return {
        "dagster/row_count": made.frame.height,
        "users": int(made.users),
        "pool_items": int(made.pool_items),
        "scorer_id": scorer.scorer_id,
        "promoted_this_run": bool(current["promoted"]),
        "promotion_reason": current["reason"],
        "explanations": dg.MetadataValue.json(
            dict(pl.Series(made.explanation_kinds).value_counts().iter_rows())
        ),
        "category_mix": dg.MetadataValue.md(
            "| category | share before steering | share |\n|---|---|---|\n"
            + "\n".join(
                f"| {c} | {made.mix_before.get(c, 0.0):.3f} | {share:.3f} |"
                for c, share in made.mix_after.items()
            )
        ),
        "steering_applied": dg.MetadataValue.json(
            {seg: json.loads(p.model_dump_json()) for seg, p in steering.items()}
        ),
        "steering_notes": dg.MetadataValue.md(
            "\n".join(f"- {n}" for n in notes) or "- no steering"
        ),
        "steering_mix_shift": round(mix_shift(made.mix_before, made.mix_after), 4),
    }
