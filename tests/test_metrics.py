"""MIND metrics: exact values, agreement with sklearn and the reference loop, prediction files."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from genre_dagster.arrays import ImpressionData
from genre_dagster.evaluation.metrics import (
    evaluate,
    evaluate_groups,
    evaluate_impression_groups,
    evaluate_impressions,
    impression_metrics,
    metric_names,
)
from genre_dagster.evaluation.prediction_file import (
    read_mind_prediction_file,
    write_mind_prediction_file,
    write_split_prediction_files,
)
from genre_dagster.evaluation.reference import reference_evaluate


def _one(labels, scores, ks=(5, 10)):
    n = len(labels)
    return evaluate(np.zeros(n, dtype=np.int64), np.array(labels), np.array(scores), ks)


def _assert_close(a: dict, b: dict, tol: float = 1e-12) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], float) and math.isnan(a[key]):
            assert math.isnan(b[key]), key
        else:
            assert a[key] == pytest.approx(b[key], abs=tol), key


def test_one_click_at_rank_two() -> None:
    m = _one([0, 1, 0, 0], [0.9, 0.8, 0.1, 0.2])
    assert m["mrr"] == pytest.approx(0.5)
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(3))
    assert m["auc"] == pytest.approx(2 / 3)
    assert m["recall@5"] == 1.0 and m["hit@5"] == 1.0


def test_two_clicks_hand_computed() -> None:
    # ranked: idx1(.9) idx0(.5) idx3(.3) idx4(.2) idx2(.1) -> clicks at ranks 2 and 5
    m = _one([1, 0, 1, 0, 0], [0.5, 0.9, 0.1, 0.3, 0.2], ks=(1, 2, 5))
    assert m["mrr"] == pytest.approx((1 / 2 + 1 / 5) / 2)
    assert m["ndcg@5"] == pytest.approx(
        (1 / math.log2(3) + 1 / math.log2(6)) / (1 + 1 / math.log2(3))
    )
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["ndcg@1"] == 0.0
    assert m["auc"] == pytest.approx(2 / 6)
    assert (m["recall@1"], m["hit@1"]) == (0.0, 0.0)
    assert (m["recall@2"], m["hit@2"]) == (0.5, 1.0)
    assert m["recall@5"] == 1.0


def test_ties_break_by_position_for_ranking_and_count_half_for_auc() -> None:
    later = _one([0, 1], [1.0, 1.0])
    assert later["auc"] == 0.5 and later["mrr"] == 0.5
    earlier = _one([1, 0], [1.0, 1.0])
    assert earlier["auc"] == 0.5 and earlier["mrr"] == 1.0
    # -0.0 and 0.0 are the same score
    zeros = _one([0, 1], [0.0, -0.0])
    assert zeros["auc"] == 0.5 and zeros["mrr"] == 0.5
    # float64 scores that differ only in the last bit are not ties
    close = _one([0, 1, 0], [1.0, np.nextafter(1.0, 2.0), 1.0])
    assert close["auc"] == 1.0 and close["mrr"] == 1.0


def test_single_candidate_and_single_class_impressions_are_counted_not_averaged() -> None:
    imp = np.array([0, 1, 2, 2, 3, 3, 3])
    labels = np.array([1, 0, 1, 1, 0, 1, 0])
    scores = np.array([0.3, 0.2, 0.5, 0.1, 0.9, 0.4, 0.1])
    m = evaluate(imp, labels, scores)
    assert m["n_impressions"] == 4 and m["n_candidates"] == 7
    assert m["n_auc_skipped"] == 3  # [1], [0], [1, 1]
    assert m["n_no_click_skipped"] == 1  # [0]
    assert m["auc"] == pytest.approx(0.5)  # only impression 3: pos beats 1 of 2
    # MRR over impressions 0, 2, 3: 1, (1 + 1/2)/2, 1/2
    assert m["mrr"] == pytest.approx((1 + 0.75 + 0.5) / 3)


def test_no_impression_qualifies_gives_nan() -> None:
    m = _one([0, 0, 0], [0.1, 0.2, 0.3])
    assert math.isnan(m["auc"]) and math.isnan(m["mrr"]) and math.isnan(m["ndcg@10"])
    assert m["n_auc_skipped"] == 1 and m["n_no_click_skipped"] == 1


def _random_world(seed: int, n_imp: int, dtype=np.float32):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 41, n_imp)
    imp = np.repeat(rng.choice(10 * n_imp, n_imp, replace=False), lengths)
    labels = (rng.random(len(imp)) < 0.15).astype(np.int8)
    scores = np.round(rng.normal(size=len(imp)) * 4) / 4  # many ties
    scores[rng.random(len(imp)) < 0.01] = np.inf
    scores[rng.random(len(imp)) < 0.01] = -np.inf
    perm = rng.permutation(len(imp))  # impressions interleaved, keys unsorted
    return imp[perm], labels[perm], scores[perm].astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_random_data_matches_reference_and_sklearn(dtype) -> None:
    imp, labels, scores = _random_world(1, 400, dtype)
    if dtype == np.float64:
        scores = scores + 1e-12 * (scores > 1)  # not float32-representable: lexsort path
    fast = evaluate(imp, labels, scores, ks=(1, 3, 5, 10))
    slow = reference_evaluate(imp, labels, scores, ks=(1, 3, 5, 10))
    _assert_close(fast, slow)
    # sparse keys (np.unique path) and sorted keys (CSR fast path) give the same numbers
    _assert_close(evaluate(imp * 1_000_003, labels, scores, ks=(1, 3, 5, 10)), fast)
    order = np.argsort(imp, kind="stable")
    _assert_close(evaluate(imp[order], labels[order], scores[order], ks=(1, 3, 5, 10)), fast)
    assert fast["n_auc_skipped"] > 0 and fast["n_no_click_skipped"] > 0

    per = impression_metrics(imp, labels, scores)
    finite = np.nan_to_num(scores, posinf=1e30, neginf=-1e30)  # sklearn rejects inf
    for j, key in enumerate(per.impression_keys[:150]):
        sel = imp == key
        if 0 < labels[sel].sum() < sel.sum():
            assert per.values["auc"][j] == pytest.approx(roc_auc_score(labels[sel], finite[sel]))
        else:
            assert math.isnan(per.values["auc"][j])


def test_metric_names_and_keys() -> None:
    m = _one([0, 1, 0], [0.1, 0.2, 0.3], ks=(3,))
    assert list(m)[: len(metric_names((3,)))] == metric_names((3,))


def test_groups_equal_evaluating_the_subset() -> None:
    imp, labels, scores = _random_world(2, 200)
    order = np.argsort(imp, kind="stable")
    imp, labels, scores = imp[order], labels[order], scores[order]
    keys = np.unique(imp)
    cold = np.zeros(len(keys), dtype=bool)
    cold[::3] = True
    result = evaluate_groups(imp, labels, scores, {"cold": cold, "warm": ~cold})
    sel = np.isin(imp, keys[cold])
    _assert_close(result["cold"], evaluate(imp[sel], labels[sel], scores[sel]))
    _assert_close(result["all"], evaluate(imp, labels, scores))
    assert result["cold"]["n_impressions"] + result["warm"]["n_impressions"] == len(keys)


def _impression_data(lengths, labels) -> ImpressionData:
    n = len(lengths)
    return ImpressionData(
        impression_ids=np.arange(n),
        user_ids=np.arange(n),
        history=np.full((n, 1), -1),
        cand_offsets=np.concatenate(([0], np.cumsum(lengths))),
        cand_items=np.arange(sum(lengths)),
        labels=np.asarray(labels, dtype=np.int8),
    )


def test_impression_data_helpers() -> None:
    data = _impression_data([2, 3], [1, 0, 0, 1, 0])
    scores = np.array([0.9, 0.1, 0.5, 0.7, 0.2], dtype=np.float32)
    m = evaluate_impressions(data, scores)
    assert m["auc"] == 1.0 and m["mrr"] == 1.0
    groups = evaluate_impression_groups(data, scores, {"first": np.array([True, False])})
    assert groups["first"]["n_impressions"] == 1


def test_invalid_inputs_raise() -> None:
    with pytest.raises(ValueError, match="label -1"):
        _one([1, -1], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN"):
        _one([1, 0], [0.1, float("nan")])
    with pytest.raises(ValueError, match="length mismatch"):
        evaluate(np.zeros(2, dtype=int), np.array([1, 0]), np.array([0.1]))
    with pytest.raises(ValueError, match="no candidates"):
        evaluate_impressions(_impression_data([2, 0], [1, 0]), np.zeros(2, dtype=np.float32))
    with pytest.raises(ValueError, match="mask"):
        evaluate_groups(
            np.array([0, 0]), np.array([1, 0]), np.array([0.2, 0.1]), {"x": [True, False]}
        )


def test_prediction_file_exact_text(tmp_path) -> None:
    # rows: impression 7 (3 candidates, one tie), impression 2 (2 candidates), given shuffled
    mind_ids = np.array([7, 2])
    impression_index = np.array([0, 1, 0, 1, 0])
    positions = np.array([3, 1, 1, 2, 2])  # 1-based
    scores = np.array([0.5, 0.1, 0.5, 0.9, 0.8])
    path = tmp_path / "prediction.txt"
    assert write_mind_prediction_file(mind_ids, impression_index, positions, scores, path) == 2
    # impression 7 by position: .5, .8, .5 -> ranks 2, 1, 3 (tie: position 1 before 3)
    assert path.read_text() == "2 [2,1]\n7 [2,1,3]\n"
    assert read_mind_prediction_file(path) == {2: [2, 1], 7: [2, 1, 3]}


def _official_like(labels: np.ndarray, ranks: list[int]) -> dict[str, float]:
    """The official scorer's computation: y_score = 1/rank, numpy argsort descending."""

    def dcg(y_true, y_score, k):
        order = np.argsort(y_score)[::-1]
        gains = 2 ** np.take(y_true, order[:k]) - 1
        return np.sum(gains / np.log2(np.arange(len(gains)) + 2))

    y_true = labels.astype(np.float32)
    y_score = 1.0 / np.array(ranks, dtype=np.float64)
    order = np.argsort(y_score)[::-1]
    rr = np.take(y_true, order) / (np.arange(len(y_true)) + 1)
    return {
        "auc": roc_auc_score(y_true, y_score),
        "mrr": np.sum(rr) / np.sum(y_true),
        "ndcg@5": dcg(y_true, y_score, 5) / dcg(y_true, y_true, 5),
        "ndcg@10": dcg(y_true, y_score, 10) / dcg(y_true, y_true, 10),
    }


def test_split_prediction_files_renumber_each_source_split(tmp_path) -> None:
    """One evaluated split mixing MIND's dev and test impressions gives one file per source
    split, each impression's ranks in its shown order."""
    import polars as pl

    offsets = np.array([0, 2, 5, 6, 8])  # impressions of 2, 3, 1 and 2 candidates
    data = ImpressionData(
        impression_ids=np.array(["a", "b", "c", "d"]),
        user_ids=np.array(["u", "v", "w", "x"]),
        history=np.full((4, 1), -1),
        cand_offsets=offsets,
        cand_items=np.arange(8),
        labels=np.zeros(8, dtype=np.int8),
    )
    behaviors = pl.DataFrame(
        {"source_split": ["dev", "test", "dev", "test"], "mind_impression_id": [5, 9, 3, 1]}
    )
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.6, 0.3, 0.2, 0.8])
    paths = write_split_prediction_files(tmp_path / "m", "test", behaviors, data, scores)
    assert sorted(p.name for p in paths) == ["test_dev.txt", "test_test.txt"]
    assert read_mind_prediction_file(tmp_path / "m" / "test_dev.txt") == {3: [1], 5: [2, 1]}
    assert read_mind_prediction_file(tmp_path / "m" / "test_test.txt") == {
        1: [2, 1],
        9: [3, 1, 2],
    }


def test_prediction_file_round_trip_matches_official_computation(tmp_path) -> None:
    rng = np.random.default_rng(3)
    n_imp = 120
    lengths = rng.integers(2, 30, n_imp)
    imp = np.repeat(np.arange(n_imp), lengths)
    positions = np.concatenate([np.arange(n) for n in lengths])
    labels = (rng.random(len(imp)) < 0.2).astype(np.int8)
    labels[np.concatenate(([0], np.cumsum(lengths)[:-1]))] = 1  # every impression has a click
    labels[np.cumsum(lengths) - 1] = 0  # ... and a non-click
    scores = np.round(rng.random(len(imp)) * 10).astype(np.float32)  # ties
    mind_ids = rng.choice(100_000, n_imp, replace=False)
    perm = rng.permutation(len(imp))
    path = tmp_path / "p.txt"
    write_mind_prediction_file(mind_ids, imp[perm], positions[perm], scores[perm], path)
    chunked = tmp_path / "chunked.txt"
    args = (mind_ids, imp[perm], positions[perm], scores[perm])
    write_mind_prediction_file(*args, chunked, chunk_rows=7)  # 18 chunks, the last one short
    assert chunked.read_text() == path.read_text()
    ranks = read_mind_prediction_file(path)
    assert list(ranks) == sorted(mind_ids.tolist())

    per = impression_metrics(imp, labels, scores)
    for row in range(n_imp):
        sel = imp == row
        official = _official_like(labels[sel], ranks[int(mind_ids[row])])
        # ranking metrics: identical (same tie rule); AUC: only without tied scores
        for name in ("mrr", "ndcg@5", "ndcg@10"):
            assert per.values[name][row] == pytest.approx(official[name], abs=1e-6)
        if len(np.unique(scores[sel])) == sel.sum():
            assert per.values["auc"][row] == pytest.approx(official["auc"])


def test_prediction_file_rejects_bad_input(tmp_path) -> None:
    path = tmp_path / "p.txt"
    with pytest.raises(ValueError, match="not consecutive"):
        write_mind_prediction_file(
            np.array([1]), np.array([0, 0]), np.array([0, 2]), np.array([0.1, 0.2]), path
        )
    with pytest.raises(ValueError, match="no candidates"):
        write_mind_prediction_file(
            np.array([1, 2]), np.array([0, 0]), np.array([0, 1]), np.array([0.1, 0.2]), path
        )
    path.write_text("5 [1, 2]\n")
    with pytest.raises(ValueError, match="not `id"):
        read_mind_prediction_file(path)
    path.write_text("5 [1,3]\n")
    with pytest.raises(ValueError, match="permutation"):
        read_mind_prediction_file(path)
