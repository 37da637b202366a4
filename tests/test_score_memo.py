"""Scores kept by the leaderboard for tomorrow's validation: the fingerprint that tells the
same impressions apart from different ones, whatever the item table or split they come from."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date

import numpy as np
import pytest

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures
from genre_dagster.scoring.score_memo import scores_fingerprint

DAY_ZERO = date(2026, 11, 1)
CONTENT = {"field": "title", "user": "mean"}


def _world(seed: int = 0, n_items: int = 60, n_impressions: int = 40):
    rng = np.random.default_rng(seed)
    items = ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(n_items)], dtype=object),
        embeddings={
            "title": rng.normal(size=(n_items, 8)).astype(np.float32),
            "abstract": rng.normal(size=(n_items, 8)).astype(np.float32),
        },
        categories=(np.arange(n_items) % 4).astype(np.int64),
        category_names=["news", "sports", "travel", "food"],
        publish_day=rng.integers(0, 5, n_items).astype(np.float64),
    )
    # items 50.. are referenced by no impression
    history = np.full((n_impressions, 6), PAD, dtype=np.int32)
    for row in range(n_impressions):
        length = int(rng.integers(0, 7))
        if length:
            history[row, -length:] = rng.integers(0, 50, length)
    offsets = np.arange(0, 5 * n_impressions + 1, 5, dtype=np.int64)
    data = ImpressionData(
        impression_ids=np.arange(n_impressions).astype(str).astype(object),
        user_ids=np.array([f"U{row % 17}" for row in range(n_impressions)], dtype=object),
        history=history,
        cand_offsets=offsets,
        cand_items=rng.integers(0, 50, 5 * n_impressions).astype(np.int32),
        labels=(rng.random(5 * n_impressions) < 0.3).astype(np.int8),
        day_index=np.full(n_impressions, 3.0),
    )
    return items, data


def _next_nights_table(items: ItemFeatures, data: ImpressionData, seed: int = 1):
    """The same items and impressions read from tomorrow's item table: new items, another
    order, another category vocabulary order; indices change, ids and contents do not."""
    rng = np.random.default_rng(seed)
    n_new = 7
    n = items.n_items + n_new
    order = rng.permutation(n)  # new row of every item (old ones first, then the new ones)
    names = list(reversed(items.category_names)) + ["weather"]
    old_categories = [items.category_names[c] for c in items.categories] + ["weather"] * n_new
    ids = np.concatenate([items.item_ids, np.array([f"X{i}" for i in range(n_new)], object)])
    publish = np.concatenate([items.publish_day, np.full(n_new, 5.0)])

    def moved(values):
        out = np.empty_like(values)
        out[order] = values
        return out

    embeddings = {
        f: moved(np.concatenate([m, rng.normal(size=(n_new, m.shape[1])).astype(np.float32)]))
        for f, m in items.embeddings.items()
    }
    tomorrow = ItemFeatures(
        item_ids=moved(ids),
        embeddings=embeddings,
        categories=moved(np.array([names.index(c) for c in old_categories], dtype=np.int64)),
        category_names=names,
        publish_day=moved(publish),
    )
    history = np.where(data.history == PAD, PAD, order[np.maximum(data.history, 0)])
    read = replace(data, history=history.astype(np.int32), cand_items=order[data.cand_items])
    return tomorrow, read


def test_the_same_impressions_from_another_item_table_have_the_same_fingerprint():
    items, data = _world()
    tomorrow, read = _next_nights_table(items, data)
    assert not np.array_equal(read.cand_items, data.cand_items)  # the indices did change
    for config in (CONTENT, {"fields": ["title", "abstract"]}, {"field": "title+abstract"}):
        assert scores_fingerprint(config, data, items, DAY_ZERO) == scores_fingerprint(
            config, read, tomorrow, DAY_ZERO
        )


def test_a_fitted_scorer_scores_them_identically():
    """The premise: what the fingerprint covers is all a fitted scorer reads."""
    from genre_dagster.scoring.registry import create_scorer

    items, data = _world()
    tomorrow, read = _next_nights_table(items, data)
    kinds = ("content_similarity", "popularity", "matrix_factorization", "sklearn_ranker")
    for kind, config in zip(kinds, (CONTENT, {}, {"iterations": 2}, {}), strict=True):
        scorer = create_scorer(kind, config)
        scorer.fit(data, items)
        np.testing.assert_allclose(
            scorer.score(read, tomorrow), scorer.score(data, items), rtol=1e-6, atol=1e-7
        )


def _changed(data: ImpressionData, **arrays) -> ImpressionData:
    return replace(data, **{k: v.copy() for k, v in arrays.items()})


def test_anything_the_scorer_reads_changes_the_fingerprint():
    items, data = _world()
    base = scores_fingerprint(CONTENT, data, items, DAY_ZERO)

    labels = _changed(data, labels=data.labels)
    labels.labels[3] = 1 - labels.labels[3]
    history = _changed(data, history=data.history)
    history.history[0, -1] = (history.history[0, -1] + 1) % 50
    candidates = _changed(data, cand_items=data.cand_items)
    candidates.cand_items[[0, 1]] = candidates.cand_items[[1, 0]]  # order shown
    users = _changed(data, user_ids=data.user_ids)
    users.user_ids[0] = "U99"
    for other in (labels, history, candidates, users):
        assert scores_fingerprint(CONTENT, other, items, DAY_ZERO) != base

    referenced = int(data.cand_items[0])
    title = items.embeddings["title"].copy()
    title[referenced, 0] += 1e-3
    retitled = replace(items, embeddings={**items.embeddings, "title": title}, _derived={})
    assert scores_fingerprint(CONTENT, data, retitled, DAY_ZERO) != base
    recategorized = replace(items, category_names=["news", "sports", "travel", "cooking"])
    assert scores_fingerprint(CONTENT, data, recategorized, DAY_ZERO) != base
    assert scores_fingerprint(CONTENT, data, items, date(2026, 11, 2)) != base


def test_what_the_scorer_does_not_read_leaves_the_fingerprint_alone():
    items, data = _world()
    base = scores_fingerprint(CONTENT, data, items, DAY_ZERO)
    title = items.embeddings["title"].copy()
    title[55] += 1.0  # an item no impression references
    abstract = items.embeddings["abstract"] + 1.0  # a field the config does not read
    edited = replace(items, embeddings={"title": title, "abstract": abstract}, _derived={})
    assert scores_fingerprint(CONTENT, data, edited, DAY_ZERO) == base
    # ... but a config that reads the abstract sees the change
    reads_abstract = {"fields": ["title", "abstract"]}
    assert scores_fingerprint(reads_abstract, data, edited, DAY_ZERO) != scores_fingerprint(
        reads_abstract, data, items, DAY_ZERO
    )


def test_a_profile_scorer_covers_the_profiles_of_the_split_users_only():
    from genre_dagster.scoring.neural import UserProfiles

    items, data = _world()
    users = np.array([f"U{i}" for i in range(17)] + ["stranger"], dtype=object)
    vectors = np.random.default_rng(2).normal(size=(len(users), 4)).astype(np.float32)
    config = {**CONTENT, "profile": True}

    def fingerprint(vectors, config=config):
        return scores_fingerprint(config, data, items, DAY_ZERO, UserProfiles(users, vectors))

    base = fingerprint(vectors)
    stranger = vectors.copy()
    stranger[-1] += 1.0  # not a user of the split
    assert fingerprint(stranger) == base
    changed = vectors.copy()
    changed[3] += 1.0
    assert fingerprint(changed) != base
    assert fingerprint(changed, CONTENT) == fingerprint(vectors, CONTENT)  # not read
    lost = vectors.copy()
    lost[3] = np.nan  # the user's profile is gone
    assert fingerprint(lost) != base


@pytest.fixture
def store(tmp_path):
    from genre_dagster.resources.model_store import ModelStore

    return ModelStore(root=str(tmp_path))


def test_a_reused_model_reads_yesterdays_test_scores_as_its_validation(store):
    """Last night's leaderboard keeps the test-day scores; tonight the same impressions are the
    validation day, read through a grown item table: the step reads them, and they are the
    scores and metrics it would have computed."""
    from genre_dagster.evaluation.metrics import evaluate_impressions
    from genre_dagster.scoring.inputs import ScorerInputs
    from genre_dagster.scoring.nightly import (
        _validate_once,
        keep_test_scores,
        member_validation_scores,
    )
    from genre_dagster.scoring.registry import create_scorer

    items, data = _world()
    scorer = create_scorer("content_similarity", CONTENT)
    scorer.fit(data, items)
    store.save(scorer)
    yesterday = ScorerInputs(items, None, {"test": data}, {}, DAY_ZERO, None, None)
    record = {"scorer_id": scorer.scorer_id, "config_json": json.dumps(CONTENT)}
    scores = scorer.score(data, items)
    keep = keep_test_scores(store, yesterday, "test")
    keep(record, data, scores, evaluate_impressions(data, scores))

    tomorrow, read = _next_nights_table(items, data)
    tonight = ScorerInputs(tomorrow, None, {"validation": read}, {}, DAY_ZERO, None, None)
    metrics, source = _validate_once(scorer, tonight, store)
    assert "leaderboard's test split" in source
    expected = evaluate_impressions(read, scorer.score(read, tomorrow))
    assert metrics["auc"] == pytest.approx(expected["auc"], abs=1e-9)
    assert metrics["n_impressions"] == expected["n_impressions"]
    (given,) = member_validation_scores([scorer], tonight, store)  # and the ensemble's fit
    np.testing.assert_array_equal(given, scores.astype(np.float32))

    # other labels of the same impressions: the scores are kept ones, the metrics tonight's
    labels = _changed(read, labels=read.labels)
    labels.labels[:5] = 1 - labels.labels[:5]
    relabeled = replace(tonight, splits={"validation": labels})
    metrics, source = _validate_once(scorer, relabeled, store)
    assert source.startswith("saved scores of 40 of 40 impressions whose inputs did not change")
    expected = evaluate_impressions(labels, scorer.score(labels, tomorrow))
    assert metrics["auc"] == pytest.approx(expected["auc"], abs=1e-9)

    # another validation day: scored tonight, and kept in place of yesterday's
    _, other_day = _world(seed=5)
    other = replace(tonight, splits={"validation": other_day})
    _, source = _validate_once(scorer, other, store)
    assert source == "scored tonight"
    assert member_validation_scores([scorer], tonight, store) == [None]


def _touching(data: ImpressionData, item: int) -> np.ndarray:
    """Whether each impression reads `item` (in its history or among its candidates)."""
    in_history = (data.history == item).any(axis=1)
    in_candidates = np.zeros(data.n_impressions, dtype=bool)
    in_candidates[data.candidate_impression[data.cand_items == item]] = True
    return in_history | in_candidates


def test_impression_digests_change_exactly_where_an_impressions_inputs_do():
    from genre_dagster.scoring.neural import UserProfiles
    from genre_dagster.scoring.score_memo import impression_digests

    items, data = _world()
    base = impression_digests(CONTENT, data, items, DAY_ZERO)
    assert base.shape == (40, 2) and len(np.unique(base[:, 0])) == 40
    tomorrow, read = _next_nights_table(items, data)
    np.testing.assert_array_equal(impression_digests(CONTENT, read, tomorrow, DAY_ZERO), base)
    wider = np.full((40, 9), PAD, dtype=np.int32)
    wider[:, 3:] = data.history  # more left padding: the same histories
    np.testing.assert_array_equal(
        impression_digests(CONTENT, _changed(data, history=wider), items, DAY_ZERO), base
    )

    memo: dict = {}  # ids hashed once per id array, not once per array content
    np.testing.assert_array_equal(
        impression_digests(CONTENT, data, items, DAY_ZERO, memo=memo), base
    )
    renamed = _changed(data, impression_ids=data.impression_ids)
    renamed.impression_ids[4] = "another"
    digests = impression_digests(CONTENT, renamed, items, DAY_ZERO, memo=memo)
    assert list(np.flatnonzero((digests != base).any(axis=1))) == [4]

    def changed_rows(other_items=items, other=data, config=CONTENT, profiles=None):
        digests = impression_digests(config, other, other_items, DAY_ZERO, profiles)
        return (digests != base).any(axis=1) if profiles is None else digests

    item = int(data.history[np.flatnonzero((data.history != PAD).any(axis=1))[0], -1])
    title = items.embeddings["title"].copy()
    title[item, 2] += 1e-3
    retitled = replace(items, embeddings={**items.embeddings, "title": title}, _derived={})
    moved = changed_rows(retitled)
    np.testing.assert_array_equal(moved, _touching(data, item))
    assert 0 < moved.sum() < 40
    abstract = replace(
        items, embeddings={**items.embeddings, "abstract": items.embeddings["abstract"] + 1},
        _derived={},
    )  # fmt: skip
    assert not changed_rows(abstract).any()  # a field the config does not read

    labels = _changed(data, labels=data.labels)
    labels.labels[:] = 1 - labels.labels
    assert not changed_rows(other=labels).any()  # labels change metrics, not scores
    swapped = _changed(data, cand_items=data.cand_items)
    first, second = swapped.cand_items[5], swapped.cand_items[6]
    swapped.cand_items[5], swapped.cand_items[6] = second, first
    assert list(np.flatnonzero(changed_rows(other=swapped))) == ([1] if first != second else [])
    older = _changed(data, day_index=data.day_index)
    older.day_index[7] = 2.0
    assert list(np.flatnonzero(changed_rows(other=older))) == [7]

    users = np.array([f"U{i}" for i in range(17)], dtype=object)
    vectors = np.random.default_rng(2).normal(size=(17, 4)).astype(np.float32)
    config = {**CONTENT, "profile": True}
    with_profiles = changed_rows(config=config, profiles=UserProfiles(users, vectors))
    edited = vectors.copy()
    edited[3] += 1.0
    after = changed_rows(config=config, profiles=UserProfiles(users, edited))
    np.testing.assert_array_equal((after != with_profiles).any(axis=1), data.user_ids == "U3")


@pytest.mark.parametrize(
    "kind, config",
    [
        ("content_similarity", CONTENT),
        ("popularity", {}),
        ("matrix_factorization", {"iterations": 2}),
        ("sklearn_ranker", {}),
    ],
)
def test_a_reused_model_scores_only_the_impressions_whose_inputs_changed(store, kind, config):
    """One item got a new title vector since the leaderboard kept the scores: the step takes
    the kept scores of the impressions that do not read that item and scores the others, and
    the result is what scoring the whole day would give."""
    from genre_dagster.evaluation.metrics import evaluate_impressions
    from genre_dagster.scoring.inputs import ScorerInputs
    from genre_dagster.scoring.nightly import _validate_once, keep_test_scores
    from genre_dagster.scoring.registry import create_scorer

    items, data = _world()
    scorer = create_scorer(kind, config)
    scorer.fit(data, items)
    store.save(scorer)
    yesterday = ScorerInputs(items, None, {"test": data}, {}, DAY_ZERO, None, None)
    record = {"scorer_id": scorer.scorer_id, "config_json": json.dumps(scorer.config)}
    scores = scorer.score(data, items)
    keep_test_scores(store, yesterday, "test")(
        record, data, scores, evaluate_impressions(data, scores)
    )

    tomorrow, read = _next_nights_table(items, data)
    item = int(data.cand_items[0])
    row = int(np.flatnonzero(tomorrow.item_ids == items.item_ids[item])[0])
    title = tomorrow.embeddings["title"].copy()
    title[row] += 0.5
    tomorrow = replace(tomorrow, embeddings={**tomorrow.embeddings, "title": title}, _derived={})
    tonight = ScorerInputs(tomorrow, None, {"validation": read}, {}, DAY_ZERO, None, None)
    asked: list[int] = []
    score = scorer.score
    scorer.score = lambda part, its, **kw: asked.append(part.n_impressions) or score(part, its)
    try:
        metrics, source = _validate_once(scorer, tonight, store)
    finally:
        del scorer.score
    expected = evaluate_impressions(read, scorer.score(read, tomorrow))
    assert metrics["auc"] == pytest.approx(expected["auc"], abs=1e-9)
    reads_title = kind in ("content_similarity", "sklearn_ranker")
    touched = int(_touching(data, item).sum()) if reads_title else 0
    assert sum(asked) == touched
    if touched:
        assert source == (
            f"saved scores of {40 - touched} of 40 impressions whose inputs did not change "
            f"(the leaderboard's test split); {touched} scored tonight"
        )
