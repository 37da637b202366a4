"""The paired bootstrap that says whether a GENRE variant beats its base on the same impressions."""

from __future__ import annotations

import numpy as np
import pytest

from genre_dagster.arrays import ImpressionData
from genre_dagster.evaluation.metrics import impression_metrics_for
from genre_dagster.evaluation.paired import (
    HELPS,
    HURTS,
    NO_CLEAR_EFFECT,
    bootstrap_means,
    compare_with_bases,
    intervals_by_segment,
    paired_bootstrap_delta,
    paired_bootstrap_deltas,
)


def _auc_per_impression(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    auc = rng.uniform(0.3, 0.9, n)
    auc[::9] = np.nan  # impressions with one label class have no AUC
    return auc


def test_identical_scores_give_zero_difference_and_an_interval_around_zero():
    base = _auc_per_impression()
    result = paired_bootstrap_delta(base.copy(), base)
    assert result.delta == 0.0
    assert result.low <= 0.0 <= result.high
    assert result.verdict == NO_CLEAR_EFFECT
    assert result.n_impressions == int((~np.isnan(base)).sum())


def test_a_variant_better_on_every_impression_has_an_interval_above_zero():
    base = _auc_per_impression()
    gain = np.random.default_rng(1).uniform(0.001, 0.05, len(base))
    better = paired_bootstrap_delta(base + gain, base)
    assert better.delta == pytest.approx(np.nanmean(gain[~np.isnan(base)]))
    assert 0 < better.low < better.delta < better.high
    assert better.verdict == HELPS
    worse = paired_bootstrap_delta(base - gain, base)
    assert worse.high < 0 and worse.verdict == HURTS


def test_noise_without_a_shift_is_no_clear_effect_and_the_interval_shrinks_with_more_data():
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.9, 4000)
    noise = rng.normal(0, 0.1, len(base) // 2)
    noisy = base + np.concatenate([noise, -noise])  # no shift at all: mean difference 0
    few = paired_bootstrap_delta(noisy[:200], base[:200])
    many = paired_bootstrap_delta(noisy, base)
    assert many.delta == pytest.approx(0.0, abs=1e-12)
    assert few.verdict == many.verdict == NO_CLEAR_EFFECT
    assert (many.high - many.low) < (few.high - few.low) / 2  # ~ 1/sqrt(n)
    # the percentile interval matches the normal approximation of the mean difference
    se = np.std(noisy - base) / np.sqrt(len(base))
    assert many.high - many.low == pytest.approx(2 * 1.96 * se, rel=0.15)


def test_the_bootstrap_is_seeded_and_columns_do_not_change_each_other():
    base = _auc_per_impression()
    variant = base + np.random.default_rng(3).normal(0.01, 0.05, len(base))
    one = paired_bootstrap_delta(variant, base, seed=7)
    assert paired_bootstrap_delta(variant, base, seed=7) == one
    assert paired_bootstrap_delta(variant, base, seed=8) != one
    both = paired_bootstrap_deltas(
        np.column_stack([variant, base]), np.column_stack([base, base]), seed=7
    )
    # the same resampled impressions whatever else is computed alongside
    assert (both[0].delta, both[0].low, both[0].high) == pytest.approx(
        (one.delta, one.low, one.high)
    )
    assert both[1].delta == 0.0


def test_arrays_that_are_not_the_same_impressions_are_rejected():
    base = _auc_per_impression()
    shifted = np.roll(base, 1)  # undefined on other impressions
    with pytest.raises(ValueError, match="same impressions"):
        paired_bootstrap_delta(shifted, base)
    with pytest.raises(ValueError, match="shape"):
        paired_bootstrap_delta(base[:-1], base)
    with pytest.raises(ValueError, match="n_resamples"):
        paired_bootstrap_delta(base, base, n_resamples=0)


def test_a_segment_without_defined_impressions_has_no_verdict():
    result = paired_bootstrap_delta(np.full(5, np.nan), np.full(5, np.nan))
    assert result.n_impressions == 0 and np.isnan(result.delta)
    assert result.verdict == "no data"


def test_compare_with_bases_pairs_each_variant_with_its_base_per_segment():
    """Per-impression AUCs from the metrics code: a variant that ranks the click first where
    the base ranks it last helps on those impressions only."""
    n = 60
    data = ImpressionData(
        impression_ids=np.arange(n).astype(object),
        user_ids=np.array([f"u{i}" for i in range(n)], dtype=object),
        history=np.zeros((n, 1), dtype=np.int64),
        cand_offsets=np.arange(0, 3 * n + 1, 3),
        cand_items=np.tile([0, 1, 2], n),
        labels=np.tile(np.array([1, 0, 0], dtype=np.int8), n),
    )
    base_scores = np.tile([0.0, 1.0, 2.0], n)  # the click last: AUC 0
    cold = np.arange(n) < 20
    variant_scores = base_scores.copy()
    variant_scores[: 3 * 20] = np.tile([3.0, 1.0, 2.0], 20)  # cold users: the click first
    per = {
        "nrms": impression_metrics_for(data, base_scores).values["auc"],
        "nrms_genre_all": impression_metrics_for(data, variant_scores).values["auc"],
        "nrms_summary": impression_metrics_for(data, base_scores).values["auc"],
    }
    segments = {"all": np.ones(n, dtype=bool), "warm": ~cold, "cold": cold}
    bases = {"nrms_genre_all": "nrms", "nrms_summary": "nrms", "naml_summary": "naml"}
    deltas = compare_with_bases(per, bases, segments, n_resamples=200)
    assert {k for k, _ in deltas} == {"nrms_genre_all", "nrms_summary"}  # naml is absent
    assert deltas["nrms_genre_all", "cold"].delta == 1.0
    assert deltas["nrms_genre_all", "cold"].verdict == HELPS
    assert deltas["nrms_genre_all", "warm"].delta == 0.0
    assert deltas["nrms_genre_all", "all"].delta == pytest.approx(1 / 3)
    assert deltas["nrms_genre_all", "all"].verdict == HELPS
    assert deltas["nrms_summary", "all"].verdict == NO_CLEAR_EFFECT
    with pytest.raises(ValueError, match="boolean"):
        compare_with_bases(per, bases, {"all": np.ones(n)})


def test_each_scorer_gets_its_own_auc_interval_per_segment():
    """The percentile bootstrap of one scorer's mean AUC: centred on the mean of the defined
    impressions, about +-1.96 standard errors wide, seeded, and per segment."""
    rng = np.random.default_rng(4)
    good = rng.uniform(0.5, 1.0, 3000)
    good[::7] = np.nan  # no AUC on these impressions, for every scorer
    weak = np.where(np.isnan(good), np.nan, rng.uniform(0.3, 0.7, len(good)))
    (one,) = bootstrap_means(good, seed=1)
    defined = good[~np.isnan(good)]
    assert one.mean == pytest.approx(defined.mean())
    assert one.n_impressions == len(defined)
    assert one.low < one.mean < one.high
    se = defined.std() / np.sqrt(len(defined))
    assert one.high - one.low == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert bootstrap_means(good, seed=1) == [one]

    first = np.arange(len(good)) < 1000
    segments = {"all": np.ones(len(good), dtype=bool), "cold": first}
    intervals = intervals_by_segment({"good": good, "weak": weak}, segments, seed=1)
    assert set(intervals) == {(n, s) for n in ("good", "weak") for s in ("all", "cold")}
    together = intervals["good", "all"]  # the same resamples whatever is computed alongside
    assert (together.mean, together.low, together.high) == pytest.approx(
        (one.mean, one.low, one.high)
    )
    assert intervals["weak", "all"].high < intervals["good", "all"].low
    cold = intervals["good", "cold"]
    assert cold.mean == pytest.approx(np.nanmean(good[first]))
    assert cold.high - cold.low > one.high - one.low  # fewer impressions, wider
    with pytest.raises(ValueError, match="same impressions"):
        bootstrap_means(np.column_stack([good, np.roll(good, 1)]))
    with pytest.raises(ValueError, match="boolean"):
        intervals_by_segment({"good": good}, {"all": np.ones(len(good))})
    (empty,) = bootstrap_means(np.full(4, np.nan))
    assert empty.n_impressions == 0 and np.isnan(empty.mean)
