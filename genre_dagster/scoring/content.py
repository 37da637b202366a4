"""Content similarity: cosine between a user's history profile and each candidate's embedding.

The profile is the (recency-)weighted mean of the unit-norm embeddings of the history items, in
one configurable embedding field. Users with an empty history get score 0.0 for every candidate:
equal scores, no preference invented; an ensemble or the ranker combines this with popularity.
Nothing is trained: `fit` only checks that the embedding field exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genre_dagster.arrays import ImpressionData, ItemFeatures
from genre_dagster.scoring.artifact import (
    check_choice,
    read_scorer_json,
    resolve_config,
    write_scorer_json,
)
from genre_dagster.scoring.base import Scorer
from genre_dagster.scoring.user_profile import (
    USER_MODES,
    distinct_histories,
    unit_rows,
    user_vectors,
)

DEFAULTS: dict[str, Any] = {
    "field": "title",  # key of ItemFeatures.embeddings, or "a+b" (late fusion)
    "user": "mean",  # "mean" | "recency"
    "decay": 0.9,  # recency: weight of a click relative to the one after it
}

_CHUNK = 16_384  # candidates per block: gathered [chunk, dim] blocks stay in cache-friendly sizes


def embedding_field(items: ItemFeatures, field: str) -> np.ndarray:
    """The embedding matrix `field` of `items`; ValueError naming the available fields.

    "a+b" is the late fusion of fields a and b: the mean of their unit-norm vectors. It costs
    no encoding when the parts are embedded anyway (NRMS and NAML embed title and abstract),
    where the one text "title_abstract" is a third encoding of the same words
    (benchmarks/field_fusion.py compares the two).
    """
    parts = field.split("+")
    missing = [p for p in parts if p not in items.embeddings]
    if missing or not all(parts):
        raise ValueError(
            f"embedding field {field!r} not in item features (have {sorted(items.embeddings)})"
        )
    if len(parts) == 1:
        return items.embeddings[field]
    return np.mean([unit_rows(items.embeddings[p]) for p in parts], axis=0, dtype=np.float32)


def unit_field(items: ItemFeatures, field: str) -> np.ndarray:
    """The unit-norm rows of `embedding_field(items, field)`, computed once per item table and
    field: every chunk of a split and every scorer reading the field share them (a fused field
    of MIND-large's 166k news took 2 s, once per chunk and scorer). Recomputed when one of the
    field's embedding arrays is replaced."""
    sources = tuple(items.embeddings.get(part) for part in field.split("+"))
    cached = items._derived.get(("unit", field))
    if cached is not None and all(a is b for a, b in zip(cached[0], sources, strict=True)):
        return cached[1]
    unit = unit_rows(embedding_field(items, field))
    items._derived["unit", field] = (sources, unit)
    return unit


def candidate_cosine(
    data: ImpressionData, items: ItemFeatures, field: str, mode: str = "mean", decay: float = 0.9
) -> np.ndarray:
    """Cosine(user profile, candidate embedding) for every candidate of `data`, float32."""
    unit = unit_field(items, field)
    rows, inverse = distinct_histories(data.history)
    profiles = user_vectors(rows, unit, mode, decay, rows_are_unit=True)
    user_of_candidate = inverse[data.candidate_impression]
    out = np.empty(len(data.cand_items), dtype=np.float32)
    for start in range(0, len(out), _CHUNK):
        stop = start + _CHUNK
        out[start:stop] = np.einsum(
            "cd,cd->c", profiles[user_of_candidate[start:stop]], unit[data.cand_items[start:stop]]
        )
    return out


def pool_cosine_scorer(
    pool: np.ndarray, items: ItemFeatures, field: str, mode: str = "mean", decay: float = 0.9
):
    """Cosine of every user (padded history rows) with every item of a fixed `pool`, float32
    [users, pool], as a function of the histories: the unit item vectors are computed once."""
    unit = unit_field(items, field)
    pool_t = np.ascontiguousarray(unit[np.asarray(pool)].T)

    def score(history: np.ndarray) -> np.ndarray:
        rows, inverse = distinct_histories(history)
        profiles = user_vectors(rows, unit, mode, decay, rows_are_unit=True)
        return (profiles @ pool_t)[inverse]

    return score


class ContentSimilarityScorer(Scorer):
    """Cosine similarity between the history profile and the candidate (no training)."""

    kind = "content_similarity"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(resolve_config(self.kind, DEFAULTS, config))
        check_choice(self.kind, self.config, "user", USER_MODES)

    def fit(
        self, train: ImpressionData, items: ItemFeatures, valid: ImpressionData | None = None
    ) -> dict[str, Any]:
        dim = embedding_field(items, self.config["field"]).shape[1]
        return {"field": self.config["field"], "dim": int(dim)}

    def score(self, data: ImpressionData, items: ItemFeatures) -> np.ndarray:
        c = self.config
        return candidate_cosine(data, items, c["field"], c["user"], c["decay"])

    def score_pool(self, history: np.ndarray, pool: np.ndarray, items: ItemFeatures) -> np.ndarray:
        return self.pool_scorer(pool, items)(history)

    def pool_scorer(self, pool: np.ndarray, items: ItemFeatures):
        c = self.config
        return pool_cosine_scorer(pool, items, c["field"], c["user"], c["decay"])

    def save(self, folder: Path) -> None:
        write_scorer_json(folder, self)

    @classmethod
    def load(cls, folder: Path) -> ContentSimilarityScorer:
        return cls(read_scorer_json(folder, cls.kind)["config"])
