"""Time-decayed click and show counts per item, from training impressions.

An impression on day d weighs 0.5 ** ((reference_day - d) / half_life_days), reference_day being
the last training day; without day indices (or with half_life_days None) every impression weighs
1. Because the decay is exponential, moving "now" later multiplies every count by the same
factor, so rankings by decayed counts do not depend on the scoring day.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genre_dagster.arrays import ImpressionData, ItemFeatures
from genre_dagster.scoring.item_align import ItemAlignment


def impression_weights(
    day_index: np.ndarray | None, reference_day: float | None, half_life_days: float | None
) -> np.ndarray | None:
    """Decay weight per impression, or None when every impression weighs 1."""
    if day_index is None or half_life_days is None or reference_day is None:
        return None
    if half_life_days <= 0:
        raise ValueError(f"half_life_days must be positive or None, got {half_life_days}")
    days = np.asarray(day_index, dtype=np.float64)
    if np.isnan(days).any():
        raise ValueError("day_index contains NaN; fill impression days before computing decay")
    return np.power(0.5, (reference_day - days) / half_life_days)


def require_labels(data: ImpressionData, what: str) -> None:
    """Training needs labels: raise if any candidate is unlabeled (-1) or not 0/1."""
    bad = np.flatnonzero((data.labels != 0) & (data.labels != 1))
    if len(bad):
        raise ValueError(
            f"{what}: {len(bad)} candidates without a 0/1 label (first: candidate {bad[0]}, "
            f"label {int(data.labels[bad[0]])}); training needs labeled impressions"
        )


@dataclass
class ItemClickStats:
    """Decayed clicks and shows per item id (only items shown in training are stored)."""

    item_ids: np.ndarray
    clicks: np.ndarray
    shows: np.ndarray
    reference_day: float | None
    half_life_days: float | None
    prior_strength: float

    def __post_init__(self) -> None:
        self.item_ids = np.asarray(self.item_ids).astype(str)
        self._alignment = ItemAlignment(self.item_ids)

    @property
    def global_ctr(self) -> float:
        """Overall (decayed) click-through rate: the prior of the smoothed CTR."""
        total = float(self.shows.sum())
        return float(self.clicks.sum()) / total if total > 0 else 0.0

    def smoothed_ctr(self, clicks: np.ndarray, shows: np.ndarray) -> np.ndarray:
        """(clicks + k * global CTR) / (shows + k), k = prior_strength pseudo-shows."""
        k = self.prior_strength
        return (clicks + k * self.global_ctr) / (shows + k)

    def for_items(self, items: ItemFeatures) -> tuple[np.ndarray, np.ndarray]:
        """(clicks, shows) over `items`' rows; 0 for items never shown in training."""
        return self._alignment.align(self.clicks, items), self._alignment.align(self.shows, items)

    def save(self, folder: Path, name: str = "item_stats") -> None:
        np.savez(
            Path(folder) / f"{name}.npz",
            item_ids=self.item_ids,
            clicks=self.clicks,
            shows=self.shows,
        )

    @classmethod
    def load(
        cls,
        folder: Path,
        reference_day: float | None,
        half_life_days: float | None,
        prior_strength: float,
        name: str = "item_stats",
    ) -> ItemClickStats:
        with np.load(Path(folder) / f"{name}.npz", allow_pickle=False) as arrays:
            return cls(
                item_ids=arrays["item_ids"],
                clicks=arrays["clicks"],
                shows=arrays["shows"],
                reference_day=reference_day,
                half_life_days=half_life_days,
                prior_strength=prior_strength,
            )


def compute_item_click_stats(
    train: ImpressionData,
    items: ItemFeatures,
    half_life_days: float | None,
    prior_strength: float,
) -> ItemClickStats:
    """Count decayed clicks and shows of every candidate item in `train`."""
    require_labels(train, "item click statistics")
    reference_day = None
    if train.day_index is not None and len(train.day_index):
        reference_day = float(np.max(train.day_index))
    weights = impression_weights(train.day_index, reference_day, half_life_days)
    per_candidate = (
        np.ones(len(train.cand_items)) if weights is None else weights[train.candidate_impression]
    )
    shows = np.bincount(train.cand_items, weights=per_candidate, minlength=items.n_items)
    clicks = np.bincount(
        train.cand_items, weights=per_candidate * train.labels, minlength=items.n_items
    )
    seen = np.flatnonzero(np.bincount(train.cand_items, minlength=items.n_items) > 0)
    return ItemClickStats(
        item_ids=np.asarray(items.item_ids)[seen],
        clicks=clicks[seen],
        shows=shows[seen],
        reference_day=reference_day,
        half_life_days=half_life_days,
        prior_strength=float(prior_strength),
    )
