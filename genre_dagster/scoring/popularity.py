"""Popularity: time-decayed clicks (or smoothed CTR) per item, the same for every user."""

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
from genre_dagster.scoring.item_stats import ItemClickStats, compute_item_click_stats

DEFAULTS: dict[str, Any] = {
    "half_life_days": 1.0,  # None: no decay
    "score": "clicks",  # "clicks": log1p(decayed clicks); "ctr": smoothed CTR
    "prior_strength": 20.0,  # pseudo-shows at the global CTR for "ctr"
}


class PopularityScorer(Scorer):
    """Scores items by decayed training clicks (log1p) or by smoothed CTR.

    Items never shown in training score log1p(0) = 0 ("clicks") or the global CTR ("ctr").
    """

    kind = "popularity"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(resolve_config(self.kind, DEFAULTS, config))
        check_choice(self.kind, self.config, "score", ("clicks", "ctr"))
        self.stats: ItemClickStats | None = None

    def fit(
        self, train: ImpressionData, items: ItemFeatures, valid: ImpressionData | None = None
    ) -> dict[str, Any]:
        self.stats = compute_item_click_stats(
            train, items, self.config["half_life_days"], self.config["prior_strength"]
        )
        return {
            "n_items_shown": len(self.stats.item_ids),
            "n_items_clicked": int((self.stats.clicks > 0).sum()),
            "reference_day": self.stats.reference_day,
            "global_ctr": self.stats.global_ctr,
        }

    def item_scores(self, items: ItemFeatures) -> np.ndarray:
        """Score of every item of `items`, float32 [n_items]."""
        if self.stats is None:
            raise ValueError("PopularityScorer is not fitted: call fit() or load()")
        clicks, shows = self.stats.for_items(items)
        if self.config["score"] == "ctr":
            return self.stats.smoothed_ctr(clicks, shows).astype(np.float32)
        return np.log1p(clicks).astype(np.float32)

    def score(self, data: ImpressionData, items: ItemFeatures) -> np.ndarray:
        return self.item_scores(items)[data.cand_items]

    def score_pool(self, history: np.ndarray, pool: np.ndarray, items: ItemFeatures) -> np.ndarray:
        return self.pool_scorer(pool, items)(history)

    def pool_scorer(self, pool: np.ndarray, items: ItemFeatures):
        row = self.item_scores(items)[np.asarray(pool)]

        def score(history: np.ndarray) -> np.ndarray:
            return np.broadcast_to(row, (len(history), len(row))).copy()

        return score

    def save(self, folder: Path) -> None:
        if self.stats is None:
            raise ValueError("PopularityScorer is not fitted: nothing to save")
        write_scorer_json(folder, self, {"reference_day": self.stats.reference_day})
        self.stats.save(folder)

    @classmethod
    def load(cls, folder: Path) -> PopularityScorer:
        meta = read_scorer_json(folder, cls.kind)
        scorer = cls(meta["config"])
        scorer.stats = ItemClickStats.load(
            folder,
            meta["state"]["reference_day"],
            scorer.config["half_life_days"],
            scorer.config["prior_strength"],
        )
        return scorer
