"""The leaderboard computation (evaluation/leaderboard.py), directly on a handful of impressions."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from genre_dagster.arrays import ImpressionData
from genre_dagster.evaluation.leaderboard import LeaderboardSettings, leaderboard_table
from genre_dagster.evaluation.prediction_file import read_mind_prediction_file


class _Perfect:
    """Scores the clicked candidates highest: AUC 1 on every impression."""

    def score(self, data, items, **kwargs):
        return data.labels.astype(float)


def _world():
    labels = np.array([1, 0, 0, 1, 0, 1, 0, 0], dtype=np.int8)
    data = ImpressionData(
        impression_ids=np.array(["a", "b", "c"]),
        user_ids=np.array(["u", "v", "w"]),
        history=np.full((3, 1), -1),
        cand_offsets=np.array([0, 2, 5, 8]),
        cand_items=np.arange(8),
        labels=labels,
    )
    behaviors = pl.DataFrame(
        {
            "history_length": [0, 9, 1],  # a and c are cold (at most 1 click)
            "source_split": ["dev", "dev", "test"],
            "mind_impression_id": [4, 2, 8],
        }
    )
    base = SimpleNamespace(
        splits={"test": data}, behaviors={"test": behaviors}, items=None, profiles=None
    )
    # The variant's plug-in was off: it published its base's model (the same scorer id).
    table = pl.DataFrame(
        {
            "name": ["plain", "plain_genre"],
            "variant": ["base", "GENRE"],
            "scorer_id": ["m-1", "m-1"],
            "generated_history": [False, False],
            "profile": [False, False],
            "val_auc": [0.7, 0.7],
        }
    )
    return labels, base, table


def test_a_model_published_twice_is_scored_once_and_compared_with_its_base(tmp_path):
    labels, base, table = _world()
    loaded = []

    def load(scorer_id):
        loaded.append(scorer_id)
        return _Perfect()

    settings = LeaderboardSettings(
        split="test",
        cold_max_clicks=1,
        bootstrap_resamples=50,
        bootstrap_seed=0,
        predictions_dir=tmp_path,
        bases={"plain_genre": "plain"},
    )
    out = leaderboard_table(table, base, None, load, settings)
    assert loaded == ["m-1"]
    assert out.height == 9  # plain, plain_genre, random x all, warm, cold
    by = {(r["scorer"], r["segment"]): r for r in out.to_dicts()}
    assert by[("plain", "all")]["auc"] == 1.0 and by[("plain", "all")]["impressions"] == 3
    assert by[("plain", "cold")]["impressions"] == 2 and by[("plain", "warm")]["impressions"] == 1
    variant = by[("plain_genre", "all")]
    assert variant["base"] == "plain" and variant["auc_delta"] == 0.0
    assert by[("plain", "all")]["base"] is None and by[("random", "all")]["val_auc"] is None
    assert set(out["split"]) == {"test"}
    assert (out["auc_low"] <= out["auc"]).all() and (out["auc"] <= out["auc_high"]).all()
    # one set of files per model, one file per source split
    assert sorted(p.name for p in (tmp_path / "m-1").iterdir()) == ["test_dev.txt", "test_test.txt"]
    assert read_mind_prediction_file(tmp_path / "m-1" / "test_dev.txt") == {2: [2, 1, 3], 4: [1, 2]}


class _Recording(_Perfect):
    """A perfect scorer that notes how many impressions each call scored."""

    def __init__(self):
        self.calls: list[int] = []

    def score(self, data, items, **kwargs):
        self.calls.append(data.n_impressions)
        return super().score(data, items, **kwargs)


def test_chunked_scoring_gives_the_same_table_and_prediction_files(tmp_path):
    labels, base, table = _world()
    outputs, files, scorers = [], [], []
    for chunk in (0, 2):
        scorer = _Recording()
        scorers.append(scorer)
        settings = LeaderboardSettings(
            split="test",
            cold_max_clicks=1,
            bootstrap_resamples=50,
            bootstrap_seed=0,
            predictions_dir=tmp_path / str(chunk),
            bases={"plain_genre": "plain"},
            chunk_impressions=chunk,
        )
        outputs.append(leaderboard_table(table, base, None, lambda _id, s=scorer: s, settings))
        files.append(read_mind_prediction_file(tmp_path / str(chunk) / "m-1" / "test_dev.txt"))
    assert scorers[0].calls == [3] and scorers[1].calls == [2, 1]  # one model, scored once
    assert outputs[0].equals(outputs[1]) and files[0] == files[1]


def _ensemble_world(tmp_path):
    """Three classic scorers and their ensemble, all saved in a model store; the leaderboard
    table lists the four; every `score` call is counted per scorer id."""
    from test_scorers_classic import SCORER_CONFIGS, make_world

    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.scoring.ensemble import EnsembleScorer
    from genre_dagster.scoring.registry import create_scorer

    items, split, _ = make_world(n_users=200)
    kinds = ("popularity", "content_similarity", "matrix_factorization")
    members = [create_scorer(k, SCORER_CONFIGS[k]) for k in kinds]
    for member in members:
        member.fit(split["train"], items, split["valid"])
    ensemble = EnsembleScorer(members=members)
    ensemble.fit(split["train"], items, split["valid"])
    ensemble.weights = np.array([0.2, 0.3, 0.5])  # every member counts
    store = ModelStore(root=str(tmp_path / "models"))
    for scorer in (*members, ensemble):
        store.save(scorer)
    table = pl.DataFrame(
        {
            "name": [*kinds, "ensemble"],
            "variant": ["base"] * 4,
            "kind": [*kinds, "ensemble"],
            "scorer_id": [s.scorer_id for s in (*members, ensemble)],
            "generated_history": [False] * 4,
            "profile": [False] * 4,
            "val_auc": [0.6] * 4,
        }
    )
    behaviors = pl.DataFrame({"history_length": (split["test"].history >= 0).sum(axis=1)})
    base = SimpleNamespace(
        splits={"test": split["test"]}, behaviors={"test": behaviors}, items=items, profiles=None
    )
    return items, split, members, store, table, base


def _counting_scores(monkeypatch, members) -> dict[str, int]:
    calls: dict[str, int] = {}
    for cls in {type(m) for m in members}:

        def counted(self, data, items, _score=cls.score, **kwargs):
            calls[self.scorer_id] = calls.get(self.scorer_id, 0) + 1
            return _score(self, data, items, **kwargs)

        monkeypatch.setattr(cls, "score", counted)
    return calls


def _by_row(out: pl.DataFrame) -> dict:
    return {(r["scorer"], r["segment"]): r for r in out.to_dicts()}


def test_the_ensemble_reuses_its_published_members_scores(tmp_path, monkeypatch):
    from genre_dagster.evaluation.metrics import evaluate_impressions

    items, split, members, store, table, base = _ensemble_world(tmp_path)
    ensemble_id = table["scorer_id"][3]
    direct = evaluate_impressions(
        split["test"], store.load(ensemble_id).score(split["test"], items)
    )
    calls = _counting_scores(monkeypatch, members)
    settings = LeaderboardSettings("test", 1, 50, 0, None, {}, chunk_impressions=40)
    out = leaderboard_table(table, base, None, store.load, settings, publishes=store.publishes)
    chunks = -(-split["test"].n_impressions // 40)
    assert calls == {m.scorer_id: chunks for m in members}  # each model scored once, in chunks
    row = _by_row(out)[("ensemble", "all")]
    assert row["auc"] == pytest.approx(direct["auc"], abs=1e-12)
    assert row["mrr"] == pytest.approx(direct["mrr"], abs=1e-12)
    assert row["score_seconds"] >= 0 and _by_row(out)[("random", "all")]["score_seconds"] is None

    # Without the check the ensemble cannot know its copies are the published models: it scores
    # them itself, with the same result.
    calls.clear()
    alone = leaderboard_table(table, base, None, store.load, settings)
    assert calls == {m.scorer_id: 2 * chunks for m in members}
    assert _by_row(alone)[("ensemble", "all")]["auc"] == row["auc"]


def test_a_member_retrained_after_the_ensemble_is_not_reused(tmp_path, monkeypatch):
    from genre_dagster.evaluation.metrics import evaluate_impressions

    items, split, members, store, table, base = _ensemble_world(tmp_path)
    ensemble_id = table["scorer_id"][3]
    direct = evaluate_impressions(
        split["test"], store.load(ensemble_id).score(split["test"], items)
    )
    retrained = type(members[2])(members[2].config)  # same configuration, so the same id
    retrained.fit(split["valid"], items, split["valid"])
    assert retrained.scorer_id == members[2].scorer_id
    store.save(retrained)
    copies = sorted((store.path_of(ensemble_id) / "members").iterdir())
    assert [store.publishes(c, m.scorer_id) for c, m in zip(copies, members, strict=True)] == [
        1,
        1,
        0,
    ]
    calls = _counting_scores(monkeypatch, members)
    settings = LeaderboardSettings("test", 1, 50, 0, None, {})
    out = leaderboard_table(table, base, None, store.load, settings, publishes=store.publishes)
    assert calls == {members[0].scorer_id: 1, members[1].scorer_id: 1, members[2].scorer_id: 2}
    by = _by_row(out)
    assert by[("ensemble", "all")]["auc"] == pytest.approx(direct["auc"], abs=1e-12)
    retrained_auc = evaluate_impressions(split["test"], retrained.score(split["test"], items))
    assert by[("matrix_factorization", "all")]["auc"] == pytest.approx(retrained_auc["auc"])
