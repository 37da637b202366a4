"""The challenger scorer on the newest day and on its reference window, for the reports that
judge predictions (prediction drift, recommendation quality)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

from genre_dagster import warehouse as wh


def challenger_scores(
    conn: Any, model_store: Any, newest: date, start: date, max_impressions: int = 0
) -> tuple[str, Any, dict[str, tuple]]:
    """Scores of the challenger on the newest day ("current") and on the reference window
    ("reference"), each sampled down to `max_impressions` in DuckDB: (scorer id, scorer inputs,
    {label: (behaviors frame, impression data, scores)})."""
    from genre_dagster.scoring.inputs import embedding_fields, load_scorer_inputs
    from genre_dagster.scoring.loading import build_impressions, load_behaviors_between

    (name, scorer_id) = conn.execute(f"select name, scorer_id from {wh.CHALLENGER}").fetchone()
    (profile, generated) = conn.execute(
        f'select profile, generated_history from scoring."{name}"'  # name checked by challenger
    ).fetchone()
    scorer = model_store.load(scorer_id)
    inputs = load_scorer_inputs(
        conn,
        (),
        embedding_fields(scorer.config),
        profile=profile,
        generated_history=generated,
        configs=[scorer.config],
    )
    out = {}
    for label, (a, b) in {
        "current": (newest, newest),
        "reference": (start, newest - timedelta(days=1)),
    }.items():
        frame = load_behaviors_between(conn, a, b, max_impressions)
        data = build_impressions(
            frame, inputs.items, extra_history=inputs.extra_history, day_zero=inputs.day_zero
        )
        kwargs = {"profiles": inputs.profiles} if profile else {}
        scores = scorer.score(data, inputs.items, **kwargs) if data.n_impressions else np.zeros(0)
        out[label] = (frame, data, scores)
    return scorer_id, inputs, out


def scored_frame(frame: pl.DataFrame, data: Any, scores: np.ndarray) -> pl.DataFrame:
    """One row per scored candidate: impression, item, score, label and shown position."""
    counts = np.diff(data.cand_offsets)
    return pl.DataFrame(
        {
            "impression_id": np.repeat(frame["impression_id"].to_numpy(), counts),
            "news_id": frame["candidate_ids"].explode().to_numpy(),
            "score": scores,
            "label": data.labels.astype(np.int64),
            "position": np.concatenate([np.arange(1, n + 1) for n in counts]),
        }
    )


def topk_categories(data: Any, scores: np.ndarray, items: Any, k: int) -> list[str]:
    """The categories of every impression's top-`k` candidates by score, in impression order."""
    cats = np.array(items.category_names)
    out = []
    for j in range(data.n_impressions):
        a, b = data.cand_offsets[j], data.cand_offsets[j + 1]
        top = np.argsort(-scores[a:b], kind="stable")[:k]
        out += cats[items.categories[data.cand_items[a:b][top]]].tolist()
    return out
