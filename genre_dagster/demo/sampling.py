"""Vectorized sampling helpers shared by the demo world's histories and impressions."""

from __future__ import annotations

import numpy as np


def segment_sample(
    rng: np.random.Generator, cum: np.ndarray, start: np.ndarray, end: np.ndarray
) -> np.ndarray:
    """One index per row in [start, end), proportional to the weights whose cumsum is `cum`."""
    low = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    r = low + rng.random(start.size) * (cum[end - 1] - low)
    return np.clip(np.searchsorted(cum, r, side="right"), start, end - 1)


def first_per_group(group: np.ndarray, item: np.ndarray, width: int) -> np.ndarray:
    """Positions of the first occurrence of each (group, item) pair, in original order."""
    _, first = np.unique(group * width + item, return_index=True)
    return np.sort(first)


def rank_in_group(group: np.ndarray, n_groups: int) -> np.ndarray:
    """0-based position of each row within its (contiguous) group."""
    counts = np.bincount(group, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    return np.arange(group.size) - starts[group]
