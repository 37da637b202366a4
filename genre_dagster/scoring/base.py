"""The scorer interface every recommender implements.

A scorer is trained on impressions (`fit`), scores the candidates of impressions (`score`, for
evaluation) and scores users against a candidate pool (`score_pool`, for recommendation lists).
Artifacts are written to and read from a folder so the model-store resource can move them.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from genre_dagster.arrays import ImpressionData, ItemFeatures


def config_hash(config: dict[str, Any]) -> str:
    """Short, stable hash of a resolved config (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:10]


class Scorer(ABC):
    """Base class: subclasses set `kind` and implement fit/score/score_pool/save/load."""

    kind: ClassVar[str] = "abstract"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})

    @property
    def config_hash(self) -> str:
        return config_hash({"kind": self.kind, **self.config})

    @property
    def scorer_id(self) -> str:
        """Human-readable id that names artifacts: `<kind>-<config hash>`."""
        return f"{self.kind}-{self.config_hash}"

    @abstractmethod
    def fit(
        self,
        train: ImpressionData,
        items: ItemFeatures,
        valid: ImpressionData | None = None,
    ) -> dict[str, Any]:
        """Train; return a training log (epochs, losses, validation AUC ...)."""

    @abstractmethod
    def score(self, data: ImpressionData, items: ItemFeatures) -> np.ndarray:
        """Score every candidate of `data`; float32 array aligned with data.cand_items."""

    @abstractmethod
    def score_pool(self, history: np.ndarray, pool: np.ndarray, items: ItemFeatures) -> np.ndarray:
        """Score users (padded histories [n_users, max_history]) against item indices `pool`.

        Returns a new float32 array [n_users, len(pool)], which the caller may change (the
        lists mask seen items in place). Callers chunk users to bound memory.
        """

    def pool_scorer(self, pool: np.ndarray, items: ItemFeatures) -> Callable[..., np.ndarray]:
        """`score_pool` against a fixed `pool`, as a function of the histories (and the keyword
        arguments `score_pool` takes): what depends on the pool and the items alone is computed
        once, not once per chunk of users. The lists call it for a million users in chunks of
        a few thousand. Scorers with such work override it (and `score_pool` calls it)."""

        def score(history: np.ndarray, **kwargs: Any) -> np.ndarray:
            return self.score_pool(history, pool, items, **kwargs)

        return score

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the artifact (weights + config as JSON) into `folder`."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> Scorer:
        """Read an artifact written by `save`."""


def score_in_chunks(
    scorer: Any, data: ImpressionData, items: ItemFeatures, chunk: int, **kwargs: Any
) -> np.ndarray:
    """`scorer.score(data, items, **kwargs)` over `chunk` impressions at a time (0 = all at
    once), so what a scorer builds per impression (user vectors, features) stays bounded on a
    large split. Every scorer scores each impression on its own, so the result is the same."""
    if not chunk or data.n_impressions <= chunk:
        return np.asarray(scorer.score(data, items, **kwargs), dtype=np.float32)
    out = np.empty(len(data.cand_items), dtype=np.float32)
    offsets = data.cand_offsets
    for start in range(0, data.n_impressions, chunk):
        stop = min(start + chunk, data.n_impressions)
        part = data.take(np.arange(start, stop))
        out[offsets[start] : offsets[stop]] = scorer.score(part, items, **kwargs)
    return out


def n_chunks(n: int, chunk: int) -> int:
    """How many chunks of `chunk` rows (0 = all at once) `n` rows are processed in, at least
    one (`score_in_chunks`, the lists' users)."""
    return 1 if not chunk or n <= chunk else -(-n // chunk)
