"""Tonight's top-K lists: the serving scorer over the recent candidate pool, steered and explained.

The `recommendations` asset (`assets/serving.py`) reads with `read_serving_inputs`, resolves
the launchpad's steering with `resolve_steering`, builds the lists with `recommend`, and
reports the `Lists`. No Dagster here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from genre_dagster import warehouse as wh
from genre_dagster.settings import HISTORY_CAP

# Users ranked and explained at a time (`recommend`).
CHUNK_USERS = 100_000

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")  # names that reach SQL as table names


@dataclass
class ServingInputs:
    """What the lists are built from: items and profiles, active users, the candidate pool."""

    inputs: Any  # scoring.inputs.ScorerInputs (no split)
    users: pl.DataFrame  # user_id, history, topics, segment of every active user
    pool: pl.DataFrame  # news_id, clicks of every item shown in the pool window
    extra_history: dict[str, list[str]] | None  # GENRE's synthetic items, if the scorer reads them


@dataclass
class Lists:
    """The lists and what the metadata reports about them."""

    frame: pl.DataFrame
    users: int
    pool_items: int
    explanation_kinds: pl.Series  # one per row of `frame`
    mix_before: dict[str, float]  # category shares before steering
    mix_after: dict[str, float]


def check_identifier(name: str | None) -> str:
    """`name` if it is a plain identifier (it reaches SQL as a table name), else ValueError."""
    if not IDENTIFIER.match(name or ""):
        raise ValueError(f"scorer name {name!r} is not a plain identifier")
    return name


def scorer_flags(conn, name: str) -> dict:
    """The published scorer's row in schema scoring: profile, generated_history and config."""
    check_identifier(name)
    row = conn.execute(
        f'select profile, generated_history, config_json from scoring."{name}"'
    ).fetchone()
    if row is None:
        raise RuntimeError(f"scorer {name!r} has no row in schema scoring")
    return {"profile": row[0], "generated_history": row[1], "config": json.loads(row[2])}


def read_serving_inputs(
    conn, scorer, name: str, *, explain_field: str, active_days: int, pool_days: int
) -> ServingInputs:
    """Items (with the embedding fields the scorer and the explanations need), active users,
    the candidate pool and, when the published scorer reads it, the generated history."""
    from genre_dagster.scoring.inputs import (
        embedding_fields,
        load_generated_history,
        load_scorer_inputs,
    )

    flags = scorer_flags(conn, name)
    fields = sorted(set(embedding_fields(scorer.config)) | {explain_field})
    reads_profiles = bool(scorer.config.get("profile"))  # off when the plug-in had no input
    inputs = load_scorer_inputs(conn, (), fields, profile=reads_profiles, configs=[scorer.config])
    users = wh.query_frame(
        conn,
        f"""
        select h.user_id, h.history, p.topics, g.segment
        from {wh.USER_HISTORIES} h
        left join {wh.USER_PROFILES} p using (user_id)
        left join {wh.USER_SEGMENTS} g using (user_id)
        where h.last_seen >= (select max(last_seen) from {wh.USER_HISTORIES}) - to_days(?)
        order by h.user_id
        """,
        [active_days],
    )
    pool = wh.query_frame(
        conn,
        f"""
        select news_id, sum(clicks) as clicks from {wh.ITEM_DAILY_STATS}
        where day > (select max(day) from {wh.ITEM_DAILY_STATS}) - to_days(?)
        group by news_id order by news_id
        """,
        [pool_days],
    )
    extra = load_generated_history(conn) if flags["generated_history"] else None
    return ServingInputs(inputs, users, pool, extra)


def resolve_steering(config, categories: list[str], llm, cache_path: str, domain: str):
    """Steering per segment ("all", "cold", "warm") and notes for the metadata.

    `config` holds the launchpad's steering fields (assets/serving.py `RecommendationConfig`).
    Explicit parameters are validated against the dataset's categories (unknown ones fail the
    run with the list of valid names). An instruction is mapped by the LLM (`llm.get_backend()`,
    responses cached in the DuckDB file at `cache_path`); when it cannot be mapped the lists are
    built without it and the notes say why."""
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
            ResponseCache(cache_path),
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


def recommend(
    scorer,
    data: ServingInputs,
    steering: dict,
    *,
    k: int,
    explain_field: str,
    run_id: str,
    chunk_users: int = CHUNK_USERS,
) -> Lists:
    """Top-`k` per active user over the pool, seen and synthetic items excluded, steered per
    user segment, each with a short explanation (similar history item, profile topic, or
    popularity); rows carry the scorer id, config hash, run id and the steering applied.

    Users are ranked and explained `chunk_users` at a time (0 = all at once): the explanations
    are Python strings until a chunk's rows are a Polars frame, and a million users' would not
    fit at once. Each user's list is computed on its own, so the chunking changes no row."""
    from genre_dagster.monitoring.steering_effect import category_mix
    from genre_dagster.scoring.loading import build_impressions
    from genre_dagster.serving.reranking import top_k_steered
    from genre_dagster.serving.steering import resolve_segments
    from genre_dagster.serving.topk import explain, top_k

    items, users = data.inputs.items, data.users
    frame = users.select(
        "user_id", "history", pl.lit([]).cast(pl.List(pl.Utf8)).alias("candidate_ids")
    ).with_columns(
        pl.lit("serving").alias("impression_id"),
        pl.lit([]).cast(pl.List(pl.Int8)).alias("candidate_labels"),
    )
    history = build_impressions(
        frame, items, max_history=HISTORY_CAP, extra_history=data.extra_history
    ).history
    pool = items.index_of(data.pool["news_id"].to_list())
    user_ids = users["user_id"].to_numpy().astype(object)
    score_pool = _pool_scorer(scorer, history, items, user_ids, data.inputs.profiles)
    per_user = resolve_segments(steering, users["segment"].fill_null("warm").to_list())
    steered = any(not params.is_neutral for params in per_user)
    newest = float(np.nanmax(items.publish_day)) if items.publish_day is not None else None
    clicks = np.zeros(items.n_items)
    clicks[pool] = data.pool["clicks"].to_numpy()
    titles = data.inputs.item_table["title"].to_numpy()
    topics = users["topics"].to_list()
    n_users = len(user_ids)
    step = chunk_users or max(n_users, 1)
    frames, kinds, after, before_steering = [], [], [], []
    for start in range(0, max(n_users, 1), step):
        rows = slice(start, min(start + step, n_users))
        part = _offset(score_pool, start)
        result = top_k_steered(
            part, history[rows], pool, k, items, per_user[rows],
            item_first_day=items.publish_day, newest_day=newest, mmr_field=explain_field,
        )  # fmt: skip
        before = top_k(part, history[rows], pool, k, items) if steered else result
        part_kinds, texts = explain(
            result, history[rows], items, titles, explain_field, clicks, topics[rows]
        )
        user_rows = start + result.user_rows
        frames.append(
            pl.DataFrame(
                {
                    "user_id": user_ids[user_rows],
                    "rank": result.ranks.astype(np.int32),
                    "news_id": items.item_ids[result.items],
                    "score": result.scores,
                    "explanation_kind": part_kinds,
                    "explanation": texts,
                    "steering": _steering_column(per_user[rows], result.user_rows),
                }
            )
        )
        kinds.append(part_kinds)
        after.append(items.categories[result.items])
        before_steering.append(items.categories[before.items])
    out = pl.concat(frames).with_columns(
        pl.lit(scorer.scorer_id).alias("scorer_id"),
        pl.lit(scorer.config_hash).alias("config_hash"),
        pl.lit(run_id).alias("run_id"),
        pl.lit(datetime.now(UTC).replace(tzinfo=None)).alias("created_at"),
    )
    names = np.asarray(items.category_names, dtype=object)  # gathered as references
    mix_before = category_mix(names[np.concatenate(before_steering)])
    mix_after = category_mix(names[np.concatenate(after)])
    kinds = pl.concat(kinds) if kinds else pl.Series("explanation_kind", [], dtype=pl.String)
    return Lists(out, n_users, len(pool), kinds, mix_before, mix_after)


def _offset(score_pool, start: int):
    """`score_pool` for a chunk of users that begins at row `start`."""

    def part(rows: slice, candidates: np.ndarray) -> np.ndarray:
        return score_pool(slice(start + rows.start, start + rows.stop), candidates)

    return part


def _steering_column(per_user: list, user_rows: np.ndarray) -> pl.Series:
    """Each row's steering as JSON. Users share a handful of parameter objects (one per
    segment), so each is written once and the rows gather it: a Polars string column then
    references the same bytes instead of holding a copy per row (k rows for each of a million
    users would be gigabytes of identical JSON)."""
    code_of: dict[int, int] = {}
    texts: list[str] = []
    codes = np.empty(len(per_user), dtype=np.int64)
    for row, params in enumerate(per_user):
        code = code_of.get(id(params))
        if code is None:
            code = code_of[id(params)] = len(texts)
            texts.append(params.model_dump_json())
        codes[row] = code
    return pl.Series("steering", texts, dtype=pl.String).gather(codes[user_rows])


def _pool_scorer(scorer, history, items, user_ids, profiles):
    """score_pool(rows, candidates) of the scorer, with profiles when it reads them. What the
    scorer computes from the candidates alone (`Scorer.pool_scorer`: item vectors, normalized
    embeddings) is computed once for every chunk of users that ranks the same candidates."""
    reads_profiles = bool(scorer.config.get("profile"))
    prepared: list = []  # [(candidates, their pool scorer)], the last candidates only

    def score_pool(rows: slice, candidates: np.ndarray) -> np.ndarray:
        if not prepared or not np.array_equal(prepared[0][0], candidates):
            prepared[:] = [(candidates.copy(), scorer.pool_scorer(candidates, items))]
        score = prepared[0][1]
        if reads_profiles:
            return score(history[rows], user_ids=user_ids[rows], profiles=profiles)
        return score(history[rows])

    return score_pool
