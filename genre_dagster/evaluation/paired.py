"""A GENRE variant against its base scorer on the same impressions: the paired bootstrap.

Both scorers are evaluated on the same test impressions, so the question "did the LLM output
help?" is about the per-impression differences: delta = mean over impressions of (variant metric
- base metric), which is the difference of the two averaged metrics. Its 95% interval comes from
resampling the impressions with replacement (the same resampled impressions for both scorers,
so what the two share, e.g. easy and hard impressions, cancels out) and taking the percentiles of
the resampled deltas.

Impressions where the metric is undefined (AUC of an impression whose candidates are all clicked
or all unclicked) are left out; whether it is defined depends on the labels only, so it is the
same for both scorers, and a mismatch means the arrays are not the same impressions (an error).

The same percentile bootstrap over impressions gives each scorer's own AUC its interval
(`bootstrap_means`, `intervals_by_segment`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

HELPS, NO_CLEAR_EFFECT, HURTS, NO_DATA = "helps", "no clear effect", "hurts", "no data"
_CHUNK_ELEMENTS = 1 << 22  # resampled impression ids held at once (32 MB of int64)
_NOT_THE_SAME_IMPRESSIONS = (
    "the metric is undefined on different impressions for different scorers: "
    "the arrays do not describe the same impressions"
)


@dataclass(frozen=True)
class PairedDelta:
    """Variant minus base over the same impressions, with a bootstrap percentile interval."""

    delta: float
    low: float
    high: float
    n_impressions: int  # impressions where both values are defined

    @property
    def verdict(self) -> str:
        """Helps or hurts when the interval excludes 0 on that side, else no clear effect."""
        if self.n_impressions == 0:
            return NO_DATA
        if self.low > 0:
            return HELPS
        if self.high < 0:
            return HURTS
        return NO_CLEAR_EFFECT


def paired_bootstrap_deltas(
    variant: np.ndarray,
    base: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> list[PairedDelta]:
    """Paired bootstrap of mean(variant - base) for every column of [n_impressions, k] arrays.

    Row i of both arrays is impression i (NaN where the metric is undefined: the same rows in
    every column). All columns share one set of resampled impressions, drawn from `seed`, so the
    result does not depend on which other pairs are computed alongside. A 1-d pair of arrays is
    one column.
    """
    variant, base = _as_columns(variant), _as_columns(base)
    if variant.shape != base.shape:
        raise ValueError(f"variant has shape {variant.shape}, base {base.shape}")
    if (np.isnan(variant) != np.isnan(base)).any():
        raise ValueError(_NOT_THE_SAME_IMPRESSIONS)
    intervals = _percentile_bootstrap(variant - base, n_resamples, level, seed)
    return [PairedDelta(*interval) for interval in intervals]


def paired_bootstrap_delta(
    variant: np.ndarray,
    base: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PairedDelta:
    """`paired_bootstrap_deltas` of one pair of per-impression arrays."""
    (result,) = paired_bootstrap_deltas(
        np.asarray(variant, dtype=np.float64).reshape(-1, 1),
        np.asarray(base, dtype=np.float64).reshape(-1, 1),
        n_resamples=n_resamples,
        level=level,
        seed=seed,
    )
    return result


@dataclass(frozen=True)
class MeanInterval:
    """A metric averaged over impressions, with a bootstrap percentile interval."""

    mean: float
    low: float
    high: float
    n_impressions: int  # impressions where the value is defined


def bootstrap_means(
    values: np.ndarray,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> list[MeanInterval]:
    """Percentile bootstrap of the mean of every column of an [n_impressions, k] array (NaN
    where the metric is undefined: the same rows in every column), impressions resampled with
    replacement from `seed`. A 1-d array is one column."""
    columns = _as_columns(values)
    return [MeanInterval(*m) for m in _percentile_bootstrap(columns, n_resamples, level, seed)]


def intervals_by_segment(
    per_impression: dict[str, np.ndarray],
    segments: dict[str, np.ndarray],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[tuple[str, str], MeanInterval]:
    """(scorer, segment) -> the scorer's mean per-impression metric over the segment with its
    bootstrap interval. `per_impression` and `segments` are as in `compare_with_bases`; the
    scorers of one segment share one set of resampled impressions."""
    out: dict[tuple[str, str], MeanInterval] = {}
    if not per_impression:
        return out
    names = list(per_impression)
    values = np.column_stack([per_impression[name] for name in names])
    for segment, mask in segments.items():
        mask = _check_mask(segment, mask, len(values))
        means = bootstrap_means(values[mask], n_resamples=n_resamples, level=level, seed=seed)
        for name, interval in zip(names, means, strict=True):
            out[name, segment] = interval
    return out


def _percentile_bootstrap(
    columns: np.ndarray, n_resamples: int, level: float, seed: int
) -> list[tuple[float, float, float, int]]:
    """(mean, low, high, n) of every column over the rows where it is defined; rows must be
    undefined (NaN) in all columns or in none."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    missing = np.isnan(columns)
    if (missing.any(axis=1) != missing.all(axis=1)).any():
        raise ValueError(_NOT_THE_SAME_IMPRESSIONS)
    defined = columns[~missing.any(axis=1)]
    n, k = defined.shape
    if n == 0:
        nan = float("nan")
        return [(nan, nan, nan, 0) for _ in range(k)]
    means = _resampled_means(defined, n_resamples, np.random.default_rng(seed))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail], axis=0)
    mean = defined.mean(axis=0)
    return [(float(mean[j]), float(low[j]), float(high[j]), n) for j in range(k)]


def _check_mask(segment: str, mask: np.ndarray, n: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(
            f"segment {segment!r}: mask must be boolean over the {n} impressions, "
            f"got dtype {mask.dtype} shape {mask.shape}"
        )
    return mask


def _as_columns(values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 1:
        return array[:, None]
    if array.ndim != 2:
        raise ValueError(f"expected [n_impressions] or [n_impressions, k], got {array.shape}")
    return array


def _resampled_means(diffs: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[n_resamples, k] means of `diffs` rows drawn with replacement, n rows per resample.

    Each chunk of resamples draws its impression ids once and turns them into counts per
    impression (one bincount); the means of every column are then one matrix product.
    """
    n = len(diffs)
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    out = np.empty((n_resamples, diffs.shape[1]))
    for start in range(0, n_resamples, per_chunk):
        rows = min(per_chunk, n_resamples - start)
        picks = rng.integers(0, n, size=(rows, n))
        picks += np.arange(rows)[:, None] * n  # one bincount for the whole chunk
        counts = np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n)
        out[start : start + rows] = counts @ diffs / n
    return out


def compare_with_bases(
    per_impression: dict[str, np.ndarray],
    bases: dict[str, str],
    segments: dict[str, np.ndarray],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[tuple[str, str], PairedDelta]:
    """(variant, segment) -> its PairedDelta against its base, for every variant in `bases`
    whose base is in `per_impression` too.

    `per_impression` maps a scorer to its per-impression metric over the same impressions;
    `segments` maps a segment name to a boolean mask over those impressions. The pairs of one
    segment are computed together (one set of resampled impressions).
    """
    pairs = [(v, b) for v, b in bases.items() if v in per_impression and b in per_impression]
    out: dict[tuple[str, str], PairedDelta] = {}
    if not pairs:
        return out
    variant = np.column_stack([per_impression[v] for v, _ in pairs])
    base = np.column_stack([per_impression[b] for _, b in pairs])
    for segment, mask in segments.items():
        mask = _check_mask(segment, mask, len(variant))
        deltas = paired_bootstrap_deltas(
            variant[mask], base[mask], n_resamples=n_resamples, level=level, seed=seed
        )
        for (name, _), delta in zip(pairs, deltas, strict=True):
            out[name, segment] = delta
    return out
