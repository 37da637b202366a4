"""Classic scorers on a small synthetic world: quality, consistency, persistence, registry."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures
from genre_dagster.evaluation.metrics import evaluate_impressions
from genre_dagster.scoring.content import ContentSimilarityScorer
from genre_dagster.scoring.ensemble import EnsembleScorer, standardize_within
from genre_dagster.scoring.popularity import PopularityScorer
from genre_dagster.scoring.ranker import FEATURE_NAMES, SklearnRankerScorer, candidate_features
from genre_dagster.scoring.registry import SCORER_KINDS, create_scorer, load_scorer
from genre_dagster.scoring.user_profile import distinct_histories, history_weights

N_CATEGORIES = 6
MAX_HISTORY = 15


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _subset(data: ImpressionData, rows: np.ndarray) -> ImpressionData:
    starts, stops = data.cand_offsets[rows], data.cand_offsets[rows + 1]
    cand = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
    return ImpressionData(
        impression_ids=data.impression_ids[rows],
        user_ids=data.user_ids[rows],
        history=data.history[rows],
        cand_offsets=np.concatenate(([0], np.cumsum(stops - starts))),
        cand_items=data.cand_items[cand],
        labels=data.labels[cand],
        day_index=None if data.day_index is None else data.day_index[rows],
    )


def make_world(seed: int = 0, n_items: int = 240, n_users: int = 500, n_days: int = 5):
    """Items clustered by category, users preferring 1-2 categories, clicks from preference
    (+ a per-item quality that popularity can learn). Days 0-2 train, 3 valid, 4 test."""
    rng = np.random.default_rng(seed)
    categories = np.arange(n_items) % N_CATEGORIES
    centers = rng.normal(size=(N_CATEGORIES, 16))
    embeddings = (2.0 * centers[categories] + rng.normal(size=(n_items, 16))).astype(np.float32)
    quality = rng.normal(size=n_items)
    items = ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(n_items)], dtype=object),
        embeddings={"title": embeddings},
        categories=categories.astype(np.int64),
        category_names=[f"cat{c}" for c in range(N_CATEGORIES)],
        publish_day=rng.integers(-2, n_days, n_items).astype(np.float64),
    )

    preference = np.zeros((n_users, N_CATEGORIES))
    histories = np.full((n_users, MAX_HISTORY), PAD, dtype=np.int64)
    for u in range(n_users):
        preference[u, rng.choice(N_CATEGORIES, rng.integers(1, 3), replace=False)] = 1.0
        length = 0 if u % 10 == 0 else int(rng.integers(1, MAX_HISTORY + 1))  # 10% cold
        liked = np.flatnonzero(preference[u][categories] > 0)
        picks = np.where(
            rng.random(length) < 0.85,
            rng.choice(liked, length),
            rng.integers(0, n_items, length),
        )
        if length:
            histories[u, -length:] = picks  # left-padded, most recent last

    rows: list[tuple[int, int]] = [
        (u, d) for d in range(n_days) for u in range(n_users) if rng.random() < 0.6
    ]
    offsets, cand_items, labels = [0], [], []
    for u, _ in rows:
        cand = rng.choice(n_items, 12, replace=False)
        p = _sigmoid(-2.5 + 2.5 * preference[u, categories[cand]] + 1.0 * quality[cand])
        cand_items.append(cand)
        labels.append((rng.random(12) < p).astype(np.int8))
        offsets.append(offsets[-1] + 12)
    users = np.array([u for u, _ in rows])
    days = np.array([d for _, d in rows], dtype=np.float64)
    data = ImpressionData(
        impression_ids=np.arange(len(rows)),
        user_ids=np.array([f"u{u}" for u in users], dtype=object),
        history=histories[users],
        cand_offsets=np.array(offsets, dtype=np.int64),
        cand_items=np.concatenate(cand_items).astype(np.int64),
        labels=np.concatenate(labels),
        day_index=days,
    )
    split = {
        "train": _subset(data, np.flatnonzero(days <= n_days - 3)),
        "valid": _subset(data, np.flatnonzero(days == n_days - 2)),
        "test": _subset(data, np.flatnonzero(days == n_days - 1)),
    }
    return items, split, quality


SCORER_CONFIGS = {
    "popularity": {},
    "content_similarity": {"user": "recency", "decay": 0.95},
    "matrix_factorization": {"factors": 8, "iterations": 8},
    "sklearn_ranker": {"max_iter": 60, "n_threads": 1},  # 1: no OpenMP spinning on busy CI
}
# Expected test AUC floors: random is 0.5 (std ~0.02 on this test set).
MIN_TEST_AUC = {
    "popularity": 0.6,
    "content_similarity": 0.6,
    "matrix_factorization": 0.6,
    "sklearn_ranker": 0.65,
    "ensemble": 0.68,
}


@pytest.fixture(scope="module")
def world():
    return make_world()


@pytest.fixture(scope="module")
def fitted(world):
    items, split, _ = world
    scorers = {}
    for kind, config in SCORER_CONFIGS.items():
        scorer = create_scorer(kind, config)
        scorer.fit(split["train"], items, split["valid"])
        scorers[kind] = scorer
    members = [scorers[k] for k in ("popularity", "content_similarity", "matrix_factorization")]
    ensemble = EnsembleScorer(members=members)
    scorers["ensemble"] = ensemble
    scorers["ensemble_log"] = ensemble.fit(split["train"], items, split["valid"])
    return scorers


@pytest.mark.parametrize("kind", list(MIN_TEST_AUC))
def test_scorer_beats_random_on_held_out_day(world, fitted, kind) -> None:
    items, split, _ = world
    scores = fitted[kind].score(split["test"], items)
    assert scores.dtype == np.float32 and scores.shape == split["test"].cand_items.shape
    metrics = evaluate_impressions(split["test"], scores)
    assert metrics["auc"] > MIN_TEST_AUC[kind], metrics


def test_random_scores_sit_near_half(world) -> None:
    items, split, _ = world  # calibrates the floors above: the same test set, random scores
    rng = np.random.default_rng(1)
    auc = evaluate_impressions(split["test"], rng.random(len(split["test"].cand_items)))["auc"]
    assert 0.44 < auc < 0.56


def test_popularity_ranks_the_most_clicked_item_first(world) -> None:
    items, split, _ = world
    train = split["train"]
    scorer = PopularityScorer({"half_life_days": None})
    scorer.fit(train, items)
    clicks = np.bincount(train.cand_items[train.labels == 1], minlength=items.n_items)
    ranked = np.argsort(-scorer.item_scores(items), kind="stable")
    assert clicks[ranked[0]] == clicks.max()
    assert np.all(np.diff(clicks[ranked]) <= 0)  # undecayed: exactly the click-count order


def test_popularity_decay_prefers_recent_clicks() -> None:
    items = ItemFeatures(
        item_ids=np.array(["old", "new"], dtype=object),
        embeddings={},
        categories=np.zeros(2, dtype=np.int64),
        category_names=["c"],
    )
    # "old": 3 clicks on day 0; "new": 1 click on day 5
    data = ImpressionData(
        impression_ids=np.arange(4),
        user_ids=np.arange(4),
        history=np.full((4, 1), PAD),
        cand_offsets=np.arange(5) * 2,
        cand_items=np.array([0, 1, 0, 1, 0, 1, 0, 1]),
        labels=np.array([1, 0, 1, 0, 1, 0, 0, 1], dtype=np.int8),
        day_index=np.array([0.0, 0.0, 0.0, 5.0]),
    )
    no_decay = PopularityScorer({"half_life_days": None})
    no_decay.fit(data, items)
    assert no_decay.item_scores(items)[0] > no_decay.item_scores(items)[1]
    decayed = PopularityScorer({"half_life_days": 1.0})
    decayed.fit(data, items)
    assert decayed.item_scores(items)[1] > decayed.item_scores(items)[0]
    expected_old = np.log1p(3 * 0.5**5)
    assert decayed.item_scores(items)[0] == pytest.approx(expected_old, rel=1e-6)


def test_content_similarity_prefers_same_category(world) -> None:
    items, _, _ = world
    scorer = ContentSimilarityScorer()
    history = np.full((2, MAX_HISTORY), PAD)
    history[0, -5:] = np.flatnonzero(items.categories == 2)[:5]
    pool = np.arange(items.n_items)
    scores = scorer.score_pool(history, pool, items)
    same = items.categories == 2
    assert scores[0, same].min() > scores[0, ~same].max()
    assert np.all(scores[1] == 0.0)  # empty history: equal scores


def test_fused_field_averages_the_unit_vectors_of_its_parts(world) -> None:
    from genre_dagster.scoring.content import embedding_field
    from genre_dagster.scoring.inputs import embedding_fields

    items, _, _ = world
    rng = np.random.default_rng(5)
    other = (rng.normal(size=items.embeddings["title"].shape) * 7).astype(np.float32)
    two = ItemFeatures(
        item_ids=items.item_ids,
        embeddings={"title": items.embeddings["title"], "abstract": other},
        categories=items.categories,
        category_names=items.category_names,
    )
    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    fused = embedding_field(two, "title+abstract")
    np.testing.assert_allclose(fused, (unit(two.embeddings["title"]) + unit(other)) / 2, atol=1e-6)
    history = np.full((1, MAX_HISTORY), PAD)
    history[0, -3:] = [0, 1, 2]
    scores = ContentSimilarityScorer({"field": "title+abstract"}).score_pool(
        history, np.arange(items.n_items), two
    )
    profile = unit(unit(fused[[0, 1, 2]]).mean(axis=0, keepdims=True))
    np.testing.assert_allclose(scores[0], (unit(fused) @ profile.T)[:, 0], atol=1e-5)
    with pytest.raises(ValueError, match="'title\\+summary' not in item features"):
        embedding_field(two, "title+summary")
    assert embedding_fields({"field": "title+abstract"}) == ["abstract", "title"]


@pytest.mark.parametrize("kind", list(MIN_TEST_AUC))
def test_score_and_score_pool_agree(world, fitted, kind) -> None:
    items, split, _ = world
    rows = np.arange(0, split["test"].n_impressions, 17)
    # score_pool has no impression day; without day_index score() uses the same default day
    data = replace(_subset(split["test"], rows), day_index=None)
    flat = fitted[kind].score(data, items)
    for j in range(data.n_impressions):
        a, b = data.cand_offsets[j], data.cand_offsets[j + 1]
        pooled = fitted[kind].score_pool(data.history[j : j + 1], data.cand_items[a:b], items)
        assert pooled.shape == (1, b - a)
        np.testing.assert_allclose(pooled[0], flat[a:b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", list(MIN_TEST_AUC))
def test_save_load_round_trip_gives_identical_scores(world, fitted, kind, tmp_path) -> None:
    items, split, _ = world
    fitted[kind].save(tmp_path / kind)
    loaded = load_scorer(tmp_path / kind)
    assert type(loaded) is type(fitted[kind])
    assert loaded.scorer_id == fitted[kind].scorer_id
    np.testing.assert_array_equal(
        loaded.score(split["test"], items), fitted[kind].score(split["test"], items)
    )


def test_ensemble_is_at_least_its_best_member_on_validation(world, fitted) -> None:
    log = fitted["ensemble_log"]
    assert log["valid_auc"] >= max(log["member_valid_auc"].values()) - 1e-9
    weights = np.asarray(log["weights"])
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)
    items, split, _ = world
    valid_auc = evaluate_impressions(
        split["valid"], fitted["ensemble"].score(split["valid"], items)
    )
    assert valid_auc["auc"] == pytest.approx(log["valid_auc"], abs=1e-6)


def test_ensemble_builds_and_fits_members_from_config(world) -> None:
    items, split, _ = world
    ensemble = EnsembleScorer(
        {
            "members": [
                {"kind": "popularity", "config": {}},
                {"kind": "content_similarity", "config": {}},
            ]
        }
    )
    log = ensemble.fit(split["train"], items, split["valid"])
    assert len(log["member_logs"]) == 2
    with pytest.raises(ValueError, match="validation"):
        ensemble.fit(split["train"], items, None)


def test_standardize_within_impressions() -> None:
    groups = np.array([0, 0, 0, 1, 1])
    z = standardize_within(groups, np.array([1.0, 2.0, 3.0, 5.0, 5.0]))
    np.testing.assert_allclose(z[:3], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])
    assert np.all(z[3:] == 0.0)  # constant scores carry no preference


def test_item_stats_follow_ids_when_item_table_is_reordered(world, fitted) -> None:
    items, split, _ = world
    rng = np.random.default_rng(5)
    perm = rng.permutation(items.n_items)  # new row r holds old item perm[r]
    new_row_of_old = np.argsort(perm)
    shuffled = ItemFeatures(
        item_ids=items.item_ids[perm],
        embeddings={k: v[perm] for k, v in items.embeddings.items()},
        categories=items.categories[perm],
        category_names=items.category_names,
        publish_day=items.publish_day[perm],
    )
    test = split["test"]
    remapped = replace(
        test,
        history=np.where(test.history == PAD, PAD, new_row_of_old[np.maximum(test.history, 0)]),
        cand_items=new_row_of_old[test.cand_items],
    )
    for kind in ("popularity", "matrix_factorization", "sklearn_ranker"):
        np.testing.assert_allclose(
            fitted[kind].score(remapped, shuffled), fitted[kind].score(test, items), atol=1e-5
        )


def test_mf_scores_unseen_items_and_empty_histories_zero(world, fitted) -> None:
    items, split, _ = world
    extra = ItemFeatures(
        item_ids=np.concatenate([items.item_ids, ["N_new"]]),
        embeddings={"title": np.vstack([items.embeddings["title"], np.ones((1, 16), np.float32)])},
        categories=np.concatenate([items.categories, [0]]),
        category_names=items.category_names,
    )
    history = split["test"].history[:3].copy()
    history[0] = PAD
    scores = fitted["matrix_factorization"].score_pool(history, np.array([0, 1, 240]), extra)
    assert np.all(scores[:, 2] == 0.0)
    assert np.all(scores[0] == 0.0)
    assert np.any(scores[1:, :2] != 0.0)


def test_candidate_features_columns_and_leave_one_out(world, fitted) -> None:
    items, split, _ = world
    ranker = fitted["sklearn_ranker"]
    train = split["train"]
    plain = candidate_features(train, items, ranker.stats)
    loo = candidate_features(train, items, ranker.stats, leave_one_out=True)
    assert plain.shape == (len(train.cand_items), len(FEATURE_NAMES))
    pop = FEATURE_NAMES.index("popularity")
    clicked = train.labels == 1
    assert np.all(loo[clicked, pop] < plain[clicked, pop])  # own click removed
    length = FEATURE_NAMES.index("history_length")
    np.testing.assert_array_equal(
        plain[:, length], (train.history != PAD).sum(axis=1)[train.candidate_impression]
    )
    match = plain[:, FEATURE_NAMES.index("category_match")]
    assert np.all((match >= 0) & (match <= 1))


def test_ranker_features_of_a_sample_are_the_samples_rows_of_the_whole(world, fitted) -> None:
    """The ranker computes training features only for its sampled impressions (at MIND-large
    size the whole split's were 9 GB): a candidate's features depend on its own impression
    and the click statistics, so the sample's are the whole split's rows."""
    items, split, _ = world
    ranker, train = fitted["sklearn_ranker"], split["train"]
    rows = np.sort(np.random.default_rng(1).choice(train.n_impressions, 40, replace=False))
    keep = np.zeros(train.n_impressions, dtype=bool)
    keep[rows] = True
    whole = candidate_features(train, items, ranker.stats, leave_one_out=True)
    sample = candidate_features(train.take(rows), items, ranker.stats, leave_one_out=True)
    np.testing.assert_allclose(sample, whole[keep[train.candidate_impression]], rtol=1e-6)
    # and a fit on a sample still ranks
    small = SklearnRankerScorer({"max_iter": 20, "n_threads": 1, "max_train_impressions": 150})
    log = small.fit(train, items)
    drawn = np.random.default_rng(0).choice(train.n_impressions, 150, replace=False)  # seed 0
    assert log["n_train_candidates"] == len(train.take(np.sort(drawn)).cand_items)
    assert log["n_train_candidates"] < len(train.cand_items)
    auc = evaluate_impressions(split["test"], small.score(split["test"], items))["auc"]
    assert auc > 0.55


def test_logistic_regression_ranker_beats_random(world) -> None:
    items, split, _ = world
    ranker = SklearnRankerScorer({"model": "logistic_regression"})
    ranker.fit(split["train"], items)
    auc = evaluate_impressions(split["test"], ranker.score(split["test"], items))["auc"]
    assert auc > MIN_TEST_AUC["sklearn_ranker"]


def test_registry_is_lazy_and_checks_kinds(tmp_path) -> None:
    assert {"nrms", "naml", "popularity", "ensemble"} <= set(SCORER_KINDS)
    assert SCORER_KINDS["popularity"] is PopularityScorer
    with pytest.raises(KeyError, match="unknown scorer kind"):
        SCORER_KINDS["nope"]
    with pytest.raises(ValueError, match="unknown config keys"):
        create_scorer("popularity", {"half_life": 2})
    with pytest.raises(FileNotFoundError):
        load_scorer(tmp_path)


def test_distinct_histories_and_recency_weights() -> None:
    rng = np.random.default_rng(7)
    history = rng.integers(-1, 4, size=(300, 3))
    rows, inverse = distinct_histories(history)
    np.testing.assert_array_equal(rows[inverse], history)
    assert len(rows) == len(np.unique(history, axis=0))
    weights = history_weights(np.array([[PAD, 4, 5], [PAD, PAD, PAD]]), "recency", 0.5)
    np.testing.assert_allclose(weights, [[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]])


def test_ranker_without_publish_days_drops_recency(world, tmp_path) -> None:
    items, split, _ = world
    no_days = replace(items, publish_day=None)
    ranker = SklearnRankerScorer({"max_iter": 20, "n_threads": 1})
    log = ranker.fit(split["train"], no_days)
    assert log["unavailable_features"] == ["recency_days"]
    ranker.save(tmp_path / "r")
    loaded = load_scorer(tmp_path / "r")
    np.testing.assert_array_equal(
        loaded.score(split["test"], no_days), ranker.score(split["test"], no_days)
    )


def _int32(data: ImpressionData) -> ImpressionData:
    return ImpressionData(
        impression_ids=data.impression_ids,
        user_ids=data.user_ids,
        history=data.history.astype(np.int32),
        cand_offsets=data.cand_offsets,
        cand_items=data.cand_items.astype(np.int32),
        labels=data.labels,
        day_index=data.day_index,
    )


@pytest.mark.parametrize("kind", list(SCORER_CONFIGS))
def test_int32_item_indices_fit_and_score_as_int64(world, fitted, kind) -> None:
    """The loader builds histories and candidates in int32 (arrays.INDEX_DTYPE)."""
    items, split, _ = world
    scorer = create_scorer(kind, SCORER_CONFIGS[kind])
    scorer.fit(_int32(split["train"]), items, _int32(split["valid"]))
    got = scorer.score(_int32(split["test"]), items)
    np.testing.assert_allclose(got, fitted[kind].score(split["test"], items), rtol=1e-6)
    history = split["test"].history[:5]
    pool = np.unique(split["test"].cand_items)[:7]
    np.testing.assert_allclose(
        scorer.score_pool(history.astype(np.int32), pool.astype(np.int32), items),
        fitted[kind].score_pool(history, pool, items),
        rtol=1e-6,
    )


@pytest.mark.parametrize("kind", list(MIN_TEST_AUC))
def test_a_pool_scorer_in_chunks_scores_as_score_pool(world, fitted, kind) -> None:
    items, split, _ = world
    history, pool = split["test"].history[:60], np.arange(0, items.n_items, 3)
    whole = fitted[kind].score_pool(history, pool, items)
    score = fitted[kind].pool_scorer(pool, items)
    parts = np.concatenate([score(history[s : s + 11]) for s in range(0, len(history), 11)])
    assert parts.dtype == np.float32 and parts.shape == (60, len(pool))
    np.testing.assert_allclose(parts, whole, rtol=1e-6, atol=1e-6)


def test_unit_fields_are_computed_once_per_item_table_and_follow_a_replaced_array(world):
    from genre_dagster.scoring.content import embedding_field, unit_field

    items, _, _ = world
    items = replace(items, embeddings=dict(items.embeddings), _derived={})
    items.embeddings["abstract"] = items.embeddings["title"][::-1].copy()
    fused = unit_field(items, "title+abstract")
    assert unit_field(items, "title+abstract") is fused
    expected = embedding_field(items, "title+abstract")
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(fused, expected, rtol=1e-5, atol=1e-6)
    items.embeddings["abstract"] = items.embeddings["title"].copy()  # a new array: recomputed
    again = unit_field(items, "title+abstract")
    assert again is not fused
    np.testing.assert_allclose(again, unit_field(items, "title"), rtol=1e-5, atol=1e-6)


def test_ensemble_weights_fit_on_given_member_scores_equal_those_it_computes(world, fitted):
    items, split, _ = world
    members = [fitted[k] for k in ("popularity", "content_similarity", "matrix_factorization")]
    plain = EnsembleScorer(members=members)
    log = plain.fit(split["train"], items, split["valid"])
    given = [members[0].score(split["valid"], items), None, members[2].score(split["valid"], items)]
    calls = []

    class Counting(type(members[1])):
        def score(self, data, items):
            calls.append(data.n_impressions)
            return super().score(data, items)

    counted = Counting(members[1].config)
    reusing = EnsembleScorer(members=[members[0], counted, members[2]])
    reused = reusing.fit(split["train"], items, split["valid"], member_scores=given)
    assert reused["member_scores_given"] == 2 and log["member_scores_given"] == 0
    assert calls == [split["valid"].n_impressions]  # only the member without given scores
    np.testing.assert_array_equal(reusing.weights, plain.weights)
    assert reused["valid_auc"] == log["valid_auc"] and reused["chosen"] == log["chosen"]
    with pytest.raises(ValueError, match="validation candidates"):
        reusing.fit(
            split["train"], items, split["valid"], member_scores=[given[0][:-1], None, None]
        )


def test_an_ensemble_reads_the_validation_scores_its_members_steps_saved(world, fitted, tmp_path):
    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.scoring.inputs import ScorerInputs
    from genre_dagster.scoring.nightly import _validate_once, member_validation_scores

    items, split, _ = world
    items = replace(items, embeddings={**items.embeddings, "abstract": items.embeddings["title"]})
    members = [fitted[k] for k in ("popularity", "content_similarity", "matrix_factorization")]
    store = ModelStore(root=str(tmp_path))

    def inputs_of(fields, valid):
        view = replace(items, embeddings={f: items.embeddings[f] for f in fields}, _derived={})
        return ScorerInputs(view, None, {"validation": valid}, {}, None, None, None)

    for member in members:  # each member's own step: its fields only
        store.save(member)
        own = inputs_of(["title"] if member.kind == "content_similarity" else [], split["valid"])
        _validate_once(member, own, store)
    ensemble_inputs = inputs_of(["abstract", "title"], split["valid"])  # the union, and more
    found = member_validation_scores(members, ensemble_inputs, store)
    for member, scores in zip(members, found, strict=True):
        np.testing.assert_array_equal(scores, member.score(split["valid"], items))
    other_day = inputs_of(["abstract", "title"], split["test"])
    assert member_validation_scores(members, other_day, store) == [None, None, None]


def test_saved_validation_scores_are_the_latest_nights_only(fitted, tmp_path):
    from genre_dagster.resources.model_store import ModelStore

    store, scorer = ModelStore(root=str(tmp_path)), fitted["popularity"]
    store.save(scorer)
    store.remember_validation(scorer.scorer_id, "night1", {"auc": 0.6}, scores=np.arange(3.0))
    np.testing.assert_array_equal(
        store.recall_validation_scores(scorer.scorer_id, "night1"), [0, 1, 2]
    )
    store.remember_validation(scorer.scorer_id, "night2", {"auc": 0.7})  # metrics only
    assert store.recall_validation_scores(scorer.scorer_id, "night1") is None  # removed
    assert store.recall_validation(scorer.scorer_id, "night2") == {"auc": 0.7}
    assert not list(store.path_of(scorer.scorer_id).glob("validation_scores*"))
