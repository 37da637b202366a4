"""Steering applied to the lists: exclusions, freshness, boosts, MMR and segments over
synthetic worlds (serving/reranking.py, serving/topk.py), measured with the effect metrics."""

from __future__ import annotations

import time

import numpy as np
import pytest
from steering_world import CATEGORIES, list_mix, ranked_lists, score_pool, steering_world

from genre_dagster.arrays import PAD
from genre_dagster.monitoring.beyond_accuracy import intra_list_diversity
from genre_dagster.monitoring.steering_effect import mix_shift
from genre_dagster.serving.reranking import (
    apply_steering,
    mmr_rerank,
    mmr_rerank_batch,
    top_k_steered,
)
from genre_dagster.serving.steering import NO_STEERING, SteeringParams, resolve_segments
from genre_dagster.serving.topk import top_k


def test_excluded_categories_never_come_through_over_random_worlds() -> None:
    """Property-style: random scores (huge ones on excluded items, some -inf), random
    exclusions, boosts and diversity per user; no excluded category ever reaches a list."""
    checked = 0
    for seed in range(25):
        rng = np.random.default_rng(100 + seed)
        n_users, n_items = int(rng.integers(5, 60)), int(rng.integers(8, 80))
        items, scores, history = steering_world(seed, n_users, n_items, dim=4)
        options = []
        for _ in range(3):
            excluded = list(rng.choice(CATEGORIES, int(rng.integers(1, 5)), replace=False))
            boosted = [c for c in CATEGORIES if c not in excluded]
            weights = {c: float(rng.uniform(-3, 3)) for c in rng.choice(boosted, 2)}
            diversity = float(rng.choice([0.0, 0.5, 1.0]))
            params = SteeringParams(
                category_weights=weights, exclude_categories=excluded, diversity=diversity
            )
            options.append(params)
        which = rng.integers(0, len(options), n_users)
        per_user = [options[i] for i in which]
        excluded_idx = [
            np.isin(items.categories, [CATEGORIES.index(c) for c in options[i].exclude_categories])
            for i in which
        ]
        # the excluded items are the users' favourites by far
        for u in range(n_users):
            scores[u, excluded_idx[u]] += 1e6
        scores[rng.random(scores.shape) < 0.1] = -np.inf
        k = int(rng.integers(1, 12))
        result = top_k_steered(
            score_pool(scores),
            history,
            np.arange(n_items),
            k,
            items,
            per_user,
            mmr_field="title",
            chunk_users=7,
        )
        for u, item in zip(result.user_rows, result.items, strict=True):
            assert not excluded_idx[u][item], (seed, u, item)
            assert not items.is_synthetic[item] and item not in history[u]
        assert np.isfinite(result.scores).all()
        checked += len(result.items)
    assert checked > 1000  # the property was exercised on many recommendations


def test_freshness_window_keeps_only_recent_items() -> None:
    items, scores, history = steering_world(1)
    rng = np.random.default_rng(1)
    first_day = rng.integers(0, 11, items.n_items).astype(np.float64)
    first_day[:5] = np.nan  # never shown: cannot be proven fresh
    params = SteeringParams(freshness_days=2)
    result = top_k_steered(
        score_pool(scores), history, np.arange(items.n_items), 10, items, params, first_day, 10
    )
    days = first_day[result.items]
    assert len(result.items) > 0 and set(days.tolist()) <= {9.0, 10.0}
    # the same window from dates
    dates = np.datetime64("2024-01-01") + first_day.astype("timedelta64[D]")
    steered = apply_steering(scores, items.categories, CATEGORIES, params, dates, "2024-01-11")
    by_number = apply_steering(scores, items.categories, CATEGORIES, params, first_day, 10)
    np.testing.assert_array_equal(steered, by_number)
    assert np.isneginf(steered[:, :5]).all()
    with pytest.raises(ValueError, match="needs pool_first_day"):
        apply_steering(scores, items.categories, CATEGORIES, params)


def test_boosts_shift_the_category_mix_in_the_expected_direction() -> None:
    items, scores, history = steering_world(2)
    pool = np.arange(items.n_items)
    run = lambda params: top_k_steered(score_pool(scores), history, pool, 10, items, params)  # noqa: E731
    before = list_mix(run(NO_STEERING), items)
    more_science = list_mix(run(SteeringParams(category_weights={"science": 1.0})), items)
    less_ent = list_mix(run(SteeringParams(category_weights={"entertainment": -1.0})), items)
    strong = list_mix(run(SteeringParams(category_weights={"science": 2.0})), items)
    assert more_science["science"] > before["science"] + 0.10
    assert strong["science"] > more_science["science"]
    assert less_ent["entertainment"] < before["entertainment"] - 0.10
    assert 0.10 < mix_shift(before, more_science) < mix_shift(before, strong)
    assert mix_shift(before, before) == 0.0
    # a boost of w adds w x the user's score std to that category, nothing else
    steered = apply_steering(
        scores, items.categories, CATEGORIES, SteeringParams(category_weights={"science": 1.5})
    )
    science = items.categories == CATEGORIES.index("science")
    expected = np.broadcast_to(1.5 * scores.std(axis=1, keepdims=True), steered.shape)
    np.testing.assert_allclose(
        (steered - scores)[:, science], expected[:, science], rtol=1e-4, atol=1e-4
    )
    np.testing.assert_array_equal(steered[:, ~science], scores[:, ~science])


def test_mmr_raises_intra_list_diversity_and_equals_top_k_at_zero() -> None:
    items, scores, history = steering_world(3)
    pool = np.arange(items.n_items)
    vectors = items.embeddings["title"]
    plain = top_k(score_pool(scores), history, pool, 10, items)
    at_zero = top_k_steered(
        score_pool(scores),
        history,
        pool,
        10,
        items,
        SteeringParams(diversity=0.0),
        mmr_field="title",
    )
    np.testing.assert_array_equal(at_zero.items, plain.items)
    # the MMR algorithm itself with lambda 0 orders exactly like plain top-k
    masked = scores.copy()
    masked[:, items.is_synthetic] = -np.inf
    rows, cols = np.nonzero(history != PAD)
    masked[rows, history[rows, cols]] = -np.inf
    np.testing.assert_array_equal(
        mmr_rerank_batch(masked, vectors, 10, 0.0), ranked_lists(plain, len(history), 10)
    )
    diverse = top_k_steered(
        score_pool(scores),
        history,
        pool,
        10,
        items,
        SteeringParams(diversity=0.7),
        mmr_field="title",
    )
    n = len(history)
    ild_plain = intra_list_diversity(ranked_lists(plain, n, 10), vectors)
    ild_mmr = intra_list_diversity(ranked_lists(diverse, n, 10), vectors)
    assert ild_mmr > ild_plain + 0.1
    assert len(list_mix(diverse, items)) >= len(list_mix(plain, items))
    assert (np.bincount(diverse.user_rows) == 10).all()
    # MMR never picks a -inf item, and returns fewer when fewer are finite
    row = np.full(20, -np.inf)
    row[[3, 7, 11]] = [1.0, 2.0, 3.0]
    assert sorted(mmr_rerank(row, np.eye(20), 5, 0.5).tolist()) == [3, 7, 11]


def test_mmr_is_fast_enough_for_ten_thousand_users() -> None:
    rng = np.random.default_rng(4)
    scores = rng.normal(size=(10_000, 200)).astype(np.float32)
    vectors = rng.normal(size=(200, 384)).astype(np.float32)
    start = time.perf_counter()
    picks = mmr_rerank_batch(scores, vectors, 10, 0.5)
    seconds = time.perf_counter() - start
    assert picks.shape == (10_000, 10) and (picks >= 0).all()
    assert seconds < 10, f"MMR for 10k users took {seconds:.1f}s"


def test_segment_params_apply_only_to_their_segment() -> None:
    items, scores, history = steering_world(5)
    pool = np.arange(items.n_items)
    segments = np.where(np.arange(len(history)) % 3 == 0, "cold", "warm")
    steering = {
        "all": SteeringParams(exclude_categories=["sports"]),
        "cold": SteeringParams(category_weights={"science": 2.0}),
    }
    per_user = resolve_segments(steering, segments)
    steered = top_k_steered(score_pool(scores), history, pool, 10, items, per_user)
    only_all = top_k_steered(score_pool(scores), history, pool, 10, items, steering["all"])
    n = len(history)
    cold = segments == "cold"
    lists, reference = ranked_lists(steered, n, 10), ranked_lists(only_all, n, 10)
    np.testing.assert_array_equal(lists[~cold], reference[~cold])  # warm: "all" only
    assert (lists[cold] != reference[cold]).any()
    science = CATEGORIES.index("science")
    share = lambda ls: float(np.mean(items.categories[ls] == science))  # noqa: E731
    assert share(lists[cold]) > share(reference[cold]) + 0.2
    sports = CATEGORIES.index("sports")
    assert not (items.categories[steered.items] == sports).any()
