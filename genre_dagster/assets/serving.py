"""Serving: the challenger, the promotion guard, the serving scorer and top-K lists.

The best newly trained scorer (by validation AUC) is the challenger. The blocking check
`promotion_guard` compares it with the serving scorer: if it is worse beyond the tolerance the
check fails (WARN) and the previous scorer keeps serving; an unusable challenger (no AUC, or no
better than random) fails with ERROR and blocks everything downstream.

The tolerance is set once, on the challenger (its row carries it), so the guard and the serving
scorer cannot judge the same challenger with two different tolerances.
"""

import json
import re
from datetime import UTC, datetime

import dagster as dg
import numpy as np
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.llm import LLMResource
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.resources.source import DatasetSource
from genre_dagster.serving.promotion import (
    PROMOTION_TOLERANCE,
    PromotionDecision,
    decide_promotion,
)
from genre_dagster.settings import HISTORY_CAP

GROUP = "serving"
SERVING = wh.SERVING_SCORER.key
REFERENCE_ROWS = ("random", "oracle")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")  # names that reach SQL as table names


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
    if not IDENTIFIER.match(best["scorer"]):
        raise ValueError(f"scorer name {best['scorer']!r} is not a plain identifier")
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


@dg.asset(
    key=[GROUP, "recommendations"],
    ins={"serving": dg.AssetIn(SERVING)},
    deps=[t.key for t in (wh.USER_HISTORIES, wh.ITEM_DAILY_STATS, wh.NEWS_EMBEDDINGS)],
    group_name=GROUP,
    kinds={"duckdb"},
    pool="duckdb",
)
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
    from genre_dagster.monitoring.steering_effect import category_mix, mix_shift
    from genre_dagster.scoring.inputs import (
        embedding_fields,
        load_generated_history,
        load_scorer_inputs,
    )
    from genre_dagster.scoring.loading import build_impressions
    from genre_dagster.serving.reranking import top_k_steered
    from genre_dagster.serving.steering import resolve_segments
    from genre_dagster.serving.topk import explain, top_k

    current = serving.sort("decided_at").row(-1, named=True)
    if current["serving_id"] is None:
        raise RuntimeError(f"no scorer is serving: {current['reason']}")
    scorer = model_store.load(current["serving_id"])
    spec_row = _scorer_row(duckdb, current["serving_name"])
    fields = sorted(set(embedding_fields(scorer.config)) | {config.explain_field})
    reads_profiles = bool(scorer.config.get("profile"))  # off when the plug-in had no input
    with duckdb.get_connection() as conn:
        inputs = load_scorer_inputs(conn, (), fields, profile=reads_profiles)
        users = wh.query_frame(
            conn,
            f"""
            select h.user_id, h.history, p.topics, g.segment
            from {wh.USER_HISTORIES} h
            left join {wh.USER_PROFILES} p using (user_id)
            left join {wh.USER_SEGMENTS} g using (user_id)
            where h.last_seen >= (select max(last_seen) from {wh.USER_HISTORIES})
                - to_days(?)
            order by h.user_id
            """,
            [config.active_days],
        )
        pool_ids = wh.query_frame(
            conn,
            f"""
            select news_id, sum(clicks) as clicks from {wh.ITEM_DAILY_STATS}
            where day > (select max(day) from {wh.ITEM_DAILY_STATS}) - to_days(?)
            group by news_id order by news_id
            """,
            [config.pool_days],
        )
        extra = load_generated_history(conn) if spec_row["generated_history"] else None
    items = inputs.items
    frame = users.select(
        "user_id", "history", pl.lit([]).cast(pl.List(pl.Utf8)).alias("candidate_ids")
    ).with_columns(
        pl.lit("serving").alias("impression_id"),
        pl.lit([]).cast(pl.List(pl.Int8)).alias("candidate_labels"),
    )
    data = build_impressions(frame, items, max_history=HISTORY_CAP, extra_history=extra)
    pool = items.index_of(pool_ids["news_id"].to_list())
    user_ids = users["user_id"].to_numpy().astype(object)
    kwargs = {"profiles": inputs.profiles} if reads_profiles else {}

    def score_pool(rows: slice, candidates: np.ndarray) -> np.ndarray:
        if kwargs:
            return scorer.score_pool(
                data.history[rows], candidates, items, user_ids=user_ids[rows], **kwargs
            )
        return scorer.score_pool(data.history[rows], candidates, items)

    steering, steering_notes = _steering(
        config, items.category_names, llm, duckdb, source.item_domain
    )
    segments = users["segment"].fill_null("warm").to_list()
    per_user = resolve_segments(steering, segments)
    steered = any(not params.is_neutral for params in per_user)
    newest = float(np.nanmax(items.publish_day)) if items.publish_day is not None else None
    result = top_k_steered(
        score_pool,
        data.history,
        pool,
        config.k,
        items,
        per_user,
        item_first_day=items.publish_day,
        newest_day=newest,
        mmr_field=config.explain_field,
    )
    before = top_k(score_pool, data.history, pool, config.k, items) if steered else result
    clicks = np.zeros(items.n_items)
    clicks[pool] = pool_ids["clicks"].to_numpy()
    titles = inputs.item_table["title"].to_numpy()
    topics = users["topics"].to_list()
    kinds, texts = explain(
        result, data.history, items, titles, config.explain_field, clicks, topics
    )
    out = pl.DataFrame(
        {
            "user_id": user_ids[result.user_rows],
            "rank": result.ranks.astype(np.int32),
            "news_id": items.item_ids[result.items],
            "score": result.scores,
            "explanation_kind": kinds,
            "explanation": texts,
            "steering": [per_user[u].model_dump_json() for u in result.user_rows],
        }
    ).with_columns(
        pl.lit(scorer.scorer_id).alias("scorer_id"),
        pl.lit(scorer.config_hash).alias("config_hash"),
        pl.lit(context.run.run_id).alias("run_id"),
        pl.lit(datetime.now(UTC).replace(tzinfo=None)).alias("created_at"),
    )
    names = np.array(items.category_names)
    category = names[items.categories[result.items]]
    mix = pl.Series(category).value_counts(sort=True)
    mix_before = category_mix(names[items.categories[before.items]])
    mix_after = category_mix(category)
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "users": int(len(user_ids)),
            "pool_items": int(len(pool)),
            "scorer_id": scorer.scorer_id,
            "promoted_this_run": bool(current["promoted"]),
            "promotion_reason": current["reason"],
            "explanations": dg.MetadataValue.json(
                dict(pl.Series(kinds).value_counts().iter_rows())
            ),
            "category_mix": dg.MetadataValue.md(
                "| category | share before steering | share |\n|---|---|---|\n"
                + "\n".join(
                    f"| {c} | {mix_before.get(c, 0.0):.3f} | {n / len(category):.3f} |"
                    for c, n in mix.iter_rows()
                )
            ),
            "steering_applied": dg.MetadataValue.json(
                {seg: json.loads(p.model_dump_json()) for seg, p in steering.items()}
            ),
            "steering_notes": dg.MetadataValue.md(
                "\n".join(f"- {n}" for n in steering_notes) or "- no steering"
            ),
            "steering_mix_shift": round(mix_shift(mix_before, mix_after), 4),
        }
    )
    return out


def _steering(
    config: RecommendationConfig, categories: list[str], llm: LLMResource, duckdb, domain: str
):
    """Steering per segment ("all", "cold", "warm") and notes for the metadata.

    Explicit parameters are validated against the dataset's categories (unknown ones fail the
    run with the list of valid names). An instruction is mapped by the LLM; when it cannot be
    mapped the lists are built without it and the notes say why."""
    from genre_dagster.enrichment.cache import ResponseCache
    from genre_dagster.serving.instructions import instruction_to_params
    from genre_dagster.serving.steering import SteeringParams, merge

    notes: list[str] = []
    base = SteeringParams(
        category_weights=config.category_weights,
        exclude_categories=config.exclude_categories,
        freshness_days=config.freshness_days or None,
        diversity=config.diversity or None,
    )
    base.check_categories(categories)
    if config.instruction.strip():
        mapped = instruction_to_params(
            config.instruction,
            categories,
            llm.get_backend(),
            ResponseCache(duckdb.database),
            domain=domain,
        )
        notes.append(mapped.message)
        if mapped.params is not None:
            base = merge(base, mapped.params)
    steering = {"all": base}
    for segment, raw in json.loads(config.segments_json or "{}").items():
        if segment not in ("cold", "warm"):
            raise ValueError(f"segments_json: unknown segment {segment!r} (use cold or warm)")
        params = SteeringParams(**raw)
        params.check_categories(categories)
        steering[segment] = params
    return steering, notes


def _scorer_row(duckdb: DuckDBResource, name: str) -> dict:
    if not IDENTIFIER.match(name or ""):
        raise ValueError(f"scorer name {name!r} is not a plain identifier")
    with duckdb.get_connection() as conn:
        row = conn.execute(
            f'select profile, generated_history, config_json from scoring."{name}"'
        ).fetchone()
    if row is None:
        raise RuntimeError(f"scorer {name!r} has no row in schema scoring")
    return {"profile": row[0], "generated_history": row[1], "config": json.loads(row[2])}
