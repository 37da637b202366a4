"""Top-K lists, explanations and the promotion rule on hand-made arrays."""

from __future__ import annotations

import numpy as np
import pytest

from genre_dagster.arrays import PAD, ItemFeatures
from genre_dagster.serving.promotion import decide_promotion
from genre_dagster.serving.topk import explain, top_k


def _items() -> ItemFeatures:
    vectors = np.array(
        [[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [1, 1], [0.7, 0.7]], dtype=np.float32
    )
    return ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(6)], dtype=object),
        embeddings={"title": vectors},
        categories=np.array([0, 0, 1, 1, 0, 1]),
        category_names=["sports", "finance"],
        is_synthetic=np.array([False, False, False, False, False, True]),
    )


def _dot(items: ItemFeatures, all_history):
    vectors = items.embeddings["title"]

    def score_pool(rows, pool):
        history = all_history[rows]
        users = np.stack(
            [
                vectors[h[h != PAD]].mean(axis=0) if (h != PAD).any() else np.zeros(2)
                for h in history
            ]
        )
        return users @ vectors[pool].T

    return score_pool


def test_top_k_excludes_seen_and_synthetic_items_and_orders_by_score():
    items = _items()
    history = np.array([[PAD, 0], [PAD, 2], [PAD, PAD]])
    result = top_k(_dot(items, history), history, np.arange(6), k=3, items=items, chunk_users=2)
    by_user = {u: result.items[result.user_rows == u].tolist() for u in range(3)}
    assert by_user[0][:2] == [4, 1]  # highest dot products among unseen items (0 was seen)
    assert 0 not in by_user[0] and 2 not in by_user[1]
    assert all(5 not in v for v in by_user.values())  # synthetic never recommended
    scores0 = result.scores[result.user_rows == 0]
    assert np.all(np.diff(scores0) <= 0)
    assert result.ranks[result.user_rows == 0].tolist() == [1, 2, 3]


def test_a_user_who_saw_nearly_everything_gets_a_shorter_list():
    items = _items()
    history = np.array([[0, 1, 2, 3]])
    result = top_k(_dot(items, history), history, np.arange(6), k=3, items=items)
    assert result.items.tolist() == [4]


def test_top_k_matches_a_full_sort_and_ranks_nan_scores_last():
    rng = np.random.default_rng(0)
    n_items = 40
    items = ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(n_items)], dtype=object),
        embeddings={"title": rng.standard_normal((n_items, 2)).astype(np.float32)},
        categories=np.zeros(n_items, dtype=np.int64),
        category_names=["news"],
        is_synthetic=np.zeros(n_items, dtype=bool),
    )
    history = np.array([[PAD, 3], [PAD, PAD], [1, 2]])
    table = rng.standard_normal((3, n_items)).astype(np.float32)
    table[1, :35] = np.nan  # a scorer that gives up on most items of one user

    def score_pool(rows, pool):
        return table[rows][:, pool]

    result = top_k(score_pool, history, np.arange(n_items), k=7, items=items, chunk_users=2)
    for user in range(3):
        scores = table[user].copy()
        scores[history[user][history[user] != PAD]] = np.nan
        ranked = [int(i) for i in np.argsort(-scores, kind="stable") if np.isfinite(scores[i])]
        assert result.items[result.user_rows == user].tolist() == ranked[:7]
    assert (result.user_rows == 1).sum() == 5  # only its five real scores are listed


def test_explanations_name_the_signal_that_drove_the_recommendation():
    items = _items()
    history = np.array([[PAD, 0], [PAD, PAD], [PAD, PAD]])
    result = top_k(_dot(items, history), history, np.array([1, 3]), k=1, items=items)
    titles = np.array([f"title {i}" for i in range(6)], dtype=object)
    kinds, texts = explain(
        result,
        history,
        items,
        titles,
        "title",
        item_clicks=np.array([5, 4, 3, 2, 1, 0]),
        profile_topics=[[], ["sports"], []],
    )
    assert kinds[0] == "similar_history" and "title 0" in texts[0]
    assert kinds[1] == "profile_topic" and "sports" in texts[1]
    assert kinds[2] == "popularity" and "recent clicks" in texts[2]


def test_closest_history_item_matches_a_per_recommendation_search():
    from genre_dagster.serving.topk import TopK, _closest_history_items

    rng = np.random.default_rng(4)
    unit = rng.normal(size=(60, 8)).astype(np.float32)
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    history = rng.integers(0, 60, size=(30, 6))
    history[rng.random(history.shape) < 0.4] = PAD
    history[3] = PAD  # an empty history
    # unsorted user rows, uneven list lengths: nothing may depend on the order of `result`
    user_rows = rng.permutation(np.repeat(np.arange(30), rng.integers(1, 5, 30)))
    result = TopK(user_rows, np.ones_like(user_rows), rng.integers(0, 60, len(user_rows)),
                  np.zeros(len(user_rows), np.float32))  # fmt: skip
    sims, best = _closest_history_items(result, history, unit, chunk_users=7)
    for r, (user, item) in enumerate(zip(user_rows, result.items, strict=True)):
        hist = history[user][history[user] != PAD]
        if len(hist) == 0:
            assert sims[r] == -1.0 and best[r] == -1
            continue
        expected = unit[hist] @ unit[item]
        assert sims[r] == pytest.approx(expected.max(), abs=1e-5)
        assert expected[list(hist).index(best[r])] == pytest.approx(expected.max(), abs=1e-5)


@pytest.mark.parametrize(
    ("challenger_auc", "serving_auc", "promote"),
    [(0.70, 0.70, True), (0.698, 0.70, True), (0.69, 0.70, False), (0.75, 0.70, True)],
)
def test_promotion_allows_only_scorers_not_worse_than_the_tolerance(
    challenger_auc, serving_auc, promote
):
    decision = decide_promotion("new", challenger_auc, "old", serving_auc, tolerance=0.005)
    assert decision.promote is promote
    assert decision.serving_id == ("new" if promote else "old")
    assert not decision.broken


def test_promotion_first_scorer_and_broken_challengers():
    assert decide_promotion("new", 0.6, None, None).promote
    broken = decide_promotion("new", float("nan"), "old", 0.7)
    assert broken.broken and not broken.promote and broken.serving_id == "old"
    assert decide_promotion("new", 0.5, "old", 0.7).broken


def test_the_lists_prepare_the_scorer_once_per_candidate_pool():
    from genre_dagster.serving.lists import _pool_scorer

    items = _items()
    history = np.array([[0, PAD], [2, 3], [PAD, PAD], [4, 1]])
    prepared = []

    class Scorer:
        config: dict = {}

        def pool_scorer(self, pool, items):
            prepared.append(pool.copy())
            everyone = _dot(items, history)  # scores rows of `history`: index them back

            def score(rows_history):
                rows = [int(np.flatnonzero((history == h).all(axis=1))[0]) for h in rows_history]
                return everyone(np.array(rows), pool)

            return score

    score_pool = _pool_scorer(Scorer(), history, items, np.arange(4), None)
    pool = np.array([1, 2, 4])
    result = top_k(score_pool, history, pool, 2, items, chunk_users=1)  # four chunks of users
    assert len(prepared) == 1 and np.array_equal(prepared[0], pool)
    expected = top_k(_dot(items, history), history, pool, 2, items)
    assert np.array_equal(result.items, expected.items)
    score_pool(slice(0, 2), np.array([0, 3]))  # other candidates: prepared again
    assert len(prepared) == 2


def _explain_one_by_one(result, history, items, titles, item_clicks, profile_topics):
    """The explanation rules written row by row: what the column-wise `explain` must give."""
    from genre_dagster.scoring.user_profile import unit_rows
    from genre_dagster.serving.topk import SIMILAR_THRESHOLD

    unit = unit_rows(items.embeddings["title"])
    kinds, texts = [], []
    for user, item in zip(result.user_rows, result.items, strict=True):
        seen = history[user][history[user] != PAD]
        sims = unit[seen] @ unit[item] if len(seen) else np.array([])
        category = items.category_names[items.categories[item]]
        topics = profile_topics[user] if profile_topics is not None else None
        if len(sims) and sims.max() >= SIMILAR_THRESHOLD:
            best = seen[int(sims.argmax())]
            kinds.append("similar_history")
            texts.append(f'Similar to "{titles[best]}" you read (similarity {sims.max():.2f})')
        elif topics and category in topics:
            kinds.append("profile_topic")
            texts.append(f"Matches your interest in {category}")
        elif item_clicks[item] > 0:
            kinds.append("popularity")
            texts.append(f"Popular now: {int(item_clicks[item])} recent clicks in {category}")
        else:
            kinds.append("freshness")
            texts.append(f"New in {category}")
    return kinds, texts


def test_explanations_equal_the_rules_applied_row_by_row():
    from genre_dagster.serving.topk import TopK

    rng = np.random.default_rng(7)
    n_items, n_users = 40, 25
    vectors = rng.normal(size=(n_items, 3)).astype(np.float32)
    items = ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(n_items)], dtype=object),
        embeddings={"title": vectors},
        categories=rng.integers(0, 4, n_items),
        category_names=["sports", "finance", "news", "music"],
    )
    titles = np.array([f'title "{i}" ü' for i in range(n_items)], dtype=object)
    history = rng.integers(0, n_items, size=(n_users, 5))
    history[rng.random(history.shape) < 0.5] = PAD
    history[2] = PAD
    clicks = np.where(rng.random(n_items) < 0.5, rng.integers(1, 9, n_items), 0).astype(float)
    topics = [list(rng.choice(["sports", "news", "unknown topic"], 2)) for _ in range(n_users)]
    topics[4] = []
    user_rows = np.repeat(np.arange(n_users), 3)
    result = TopK(user_rows, np.tile([1, 2, 3], n_users), rng.integers(0, n_items, 3 * n_users),
                  np.zeros(3 * n_users, np.float32))  # fmt: skip
    for profile_topics in (topics, None):
        kinds, texts = explain(result, history, items, titles, "title", clicks, profile_topics)
        expected = _explain_one_by_one(result, history, items, titles, clicks, profile_topics)
        assert (kinds.to_list(), texts.to_list()) == expected
        assert len(set(expected[0])) >= 3  # the rules under test are all exercised


def test_pool_scores_are_copied_only_when_the_caller_could_not_own_them():
    from genre_dagster.serving.topk import own_scores

    fresh = np.zeros((2, 3), dtype=np.float32)
    assert own_scores(fresh) is fresh
    shared = np.zeros(6, dtype=np.float32)
    for borrowed in (
        shared.reshape(2, 3),
        np.broadcast_to(shared[:3], (2, 3)),
        fresh.astype(float),
    ):
        owned = own_scores(borrowed)
        assert owned.dtype == np.float32 and owned.flags.owndata and owned.flags.writeable
        owned[:] = 1
    assert not shared.any() and not fresh.any()
