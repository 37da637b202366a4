"""Neural recommenders (NRMS, NAML, any composition) on a small synthetic world
(tests/neural_world.py): an oracle that knows the users' preferences sets the ceiling for AUC.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from neural_world import N_CATS, N_ITEMS, N_USERS, auc, build_world, subset

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures
from genre_dagster.scoring.neural import NAMLScorer, NeuralScorer, NRMSScorer, from_preset
from genre_dagster.scoring.presets import preset

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def world():
    return build_world()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def nrms(world):
    scorer = from_preset("nrms_small")
    scorer.fit(world["train"], world["items"], world["valid"])
    return scorer


@pytest.fixture(scope="module")
def naml(world):
    scorer = from_preset("naml_small")
    scorer.fit(world["train"], world["items"], world["valid"])
    return scorer


@pytest.fixture(scope="module")
def hybrid_naml(world):
    scorer = from_preset("hybrid_naml_small")
    scorer.fit(world["train"], world["items"], world["valid"])
    return scorer


@pytest.fixture(scope="module")
def sequential(world):
    scorer = from_preset("sequential_small")
    scorer.fit(world["train"], world["items"], world["valid"])
    return scorer


NEURAL_DEFAULTS = ["nrms", "naml", "hybrid_naml", "sequential"]


def _impression_pool_agreement(scorer, data, items, n=20, **kwargs):
    """score() of the first n impressions vs score_pool() of their users over their candidates."""
    sub = subset(data, n)
    pool = np.unique(sub.cand_items)
    pooled = scorer.score_pool(sub.history, pool, items, **kwargs)
    scored = scorer.score(sub, items, **({"profiles": kwargs["profiles"]} if kwargs else {}))
    expected = pooled[sub.candidate_impression, np.searchsorted(pool, sub.cand_items)]
    np.testing.assert_allclose(scored, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NEURAL_DEFAULTS)
def test_beats_random_by_a_clear_share_of_the_oracle_margin(world, request, name):
    scorer = request.getfixturevalue(name)
    test = world["test"]
    oracle = auc(world["truth"], test)
    random = auc(np.random.default_rng(1).random(len(test.cand_items)), test)
    model = auc(scorer.score(test, world["items"]), test)
    assert oracle > 0.7
    assert abs(random - 0.5) < 0.05
    # At least 40% of the way from random to the oracle (which knows the true preferences).
    assert model > 0.6
    assert model - 0.5 > 0.4 * (oracle - 0.5), (model, oracle)


def test_training_log_and_best_epoch_weights_are_kept(world, nrms):
    log = nrms.training_log
    assert log["scorer_id"] == nrms.scorer_id
    assert 1 <= len(log["epochs"]) <= nrms.config["epochs"]
    for epoch in log["epochs"]:
        assert epoch["loss"] > 0 and epoch["seconds"] > 0 and epoch["impressions_per_s"] > 0
        assert 0 <= epoch["val_auc"] <= 1
    assert log["best_val_auc"] == max(e["val_auc"] for e in log["epochs"])
    # The model in hand is the best epoch's: it reproduces that epoch's validation AUC.
    valid = world["valid"]
    assert auc(nrms.score(valid, world["items"]), valid) == pytest.approx(log["best_val_auc"])
    assert log["n_train_samples"] == int((world["train"].labels == 1).sum())


def test_same_seed_same_scores_other_seed_other_scores(world):
    train, items, test = subset(world["train"], 400), world["items"], world["test"]
    runs = []
    for seed in (3, 3, 4):
        scorer = from_preset("nrms_small", epochs=1, seed=seed)
        scorer.fit(train, items)
        runs.append(scorer.score(test, items))
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize("name", NEURAL_DEFAULTS)
def test_save_load_is_exact(world, request, tmp_path, name):
    scorer = request.getfixturevalue(name)
    folder = tmp_path / scorer.scorer_id
    scorer.save(folder)
    assert {p.name for p in folder.iterdir()} == {"scorer.json", "model.pt"}
    loaded = NeuralScorer.load(folder)
    assert type(loaded) is type(scorer)
    assert loaded.scorer_id == scorer.scorer_id and loaded.config == scorer.config
    test, items = world["test"], world["items"]
    assert np.array_equal(loaded.score(test, items), scorer.score(test, items))
    other = NAMLScorer if name == "nrms" else NRMSScorer
    with pytest.raises(ValueError, match="cannot be loaded"):
        other.load(folder)


@pytest.mark.parametrize("name", NEURAL_DEFAULTS)
def test_score_and_score_pool_agree(world, request, name):
    scorer = request.getfixturevalue(name)
    scores = scorer.score(world["test"], world["items"])
    assert scores.dtype == np.float32 and scores.shape == world["test"].cand_items.shape
    _impression_pool_agreement(scorer, world["test"], world["items"])
    pool = np.arange(N_ITEMS)
    out = scorer.score_pool(world["user_history"], pool, world["items"])
    assert out.dtype == np.float32 and out.shape == (N_USERS, N_ITEMS)


def test_empty_histories_get_finite_shared_scores(world, nrms):
    history = np.full((3, 10), PAD, dtype=np.int64)
    out = nrms.score_pool(history, np.arange(N_ITEMS), world["items"])
    assert np.isfinite(out).all()
    # Every cold user gets the learned "empty user" vector, hence the same scores.
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[0], out[2])
    # ... and a user with one click is scored differently.
    history[2, -1] = 0
    assert not np.array_equal(nrms.score_pool(history, np.arange(5), world["items"])[2], out[2, :5])


@pytest.mark.parametrize("user_encoder", ["mean", "attention", "mhsa", "gru", "causal"])
@pytest.mark.parametrize("predictor", ["dot", "mlp"])
@pytest.mark.parametrize("item_encoder", ["linear", "multiview"])
def test_every_composition_trains_and_scores(world, user_encoder, predictor, item_encoder):
    config = preset("nrms_small", epochs=1, fields=["title", "abstract"], category_dim=4)
    config.update(user_encoder=user_encoder, predictor=predictor, item_encoder=item_encoder)
    scorer = NeuralScorer(config)
    log = scorer.fit(subset(world["train"], 200), world["items"])
    assert np.isfinite(log["epochs"][0]["loss"]) and log["best_val_auc"] is None
    scores = scorer.score(world["test"], world["items"])
    assert np.isfinite(scores).all()
    _impression_pool_agreement(scorer, world["test"], world["items"])


def test_gru_ignores_padding_position(world):
    """Left- and right-padded copies of the same history give the same GRU user vector."""
    scorer = NeuralScorer(preset("nrms_small", epochs=1, user_encoder="gru"))
    scorer.fit(subset(world["train"], 100), world["items"])
    left = np.array([[PAD, PAD, 5, 9, 2]])
    right = np.array([[5, 9, 2, PAD, PAD]])
    pool = np.arange(20)
    np.testing.assert_allclose(
        scorer.score_pool(left, pool, world["items"]),
        scorer.score_pool(right, pool, world["items"]),
        rtol=1e-6,
    )


def test_profile_plugin_runs_handles_missing_users_and_changes_scores(world, tmp_path):
    items, test, profiles = world["items"], world["test"], world["profiles"]
    scorer = from_preset("nrms_genre_small", epochs=2)
    assert scorer.kind == "nrms" and scorer.config["profile"]
    with pytest.raises(ValueError, match="profile plug-in"):
        scorer.fit(world["train"], items, world["valid"])
    log = scorer.fit(world["train"], items, world["valid"], profiles=profiles)
    assert log["fields"] == ["title", "summary"]
    with_profiles = scorer.score(test, items, profiles=profiles)
    assert np.isfinite(with_profiles).all()
    no_one = np.full((test.n_impressions, profiles.dim), np.nan, dtype=np.float32)
    without = scorer.score(test, items, profiles=no_one)
    assert np.isfinite(without).all()
    assert not np.allclose(with_profiles, without)
    # Users missing from UserProfiles score exactly like an all-NaN (missing) row.
    missing = ~np.isin(test.user_ids, profiles.user_ids)
    assert missing.any()
    cand_missing = missing[test.candidate_impression]
    np.testing.assert_array_equal(with_profiles[cand_missing], without[cand_missing])
    _impression_pool_agreement(scorer, test, items, profiles=profiles, user_ids=test.user_ids[:20])
    scorer.save(tmp_path / "genre")
    loaded = NeuralScorer.load(tmp_path / "genre")
    assert np.array_equal(loaded.score(test, items, profiles=profiles), with_profiles)


def test_config_hash_names_the_resolved_config():
    assert NRMSScorer().scorer_id.startswith("nrms-")
    assert NRMSScorer().scorer_id == NRMSScorer(preset("nrms")).scorer_id
    assert NRMSScorer().scorer_id != NRMSScorer({"hidden_dim": 64}).scorer_id
    assert NRMSScorer().scorer_id != NeuralScorer(preset("nrms")).scorer_id  # kind is hashed
    assert NAMLScorer().scorer_id != from_preset("naml_small").scorer_id
    with pytest.raises(ValueError, match="user_encoder='mhsa'"):
        NRMSScorer({"user_encoder": "gru"})
    with pytest.raises(ValueError, match="unknown neural config keys"):
        NeuralScorer({"hiden_dim": 3})


def test_naml_uses_summary_when_present_and_remaps_categories(world, naml):
    assert naml.training_log["fields"] == ["title", "abstract", "summary"]
    items, test = world["items"], world["test"]
    # The same categories listed in another order (indices remapped) score identically.
    order = np.arange(N_CATS)[::-1]
    shuffled = ItemFeatures(
        item_ids=items.item_ids,
        embeddings=items.embeddings,
        categories=np.argsort(order)[items.categories],
        category_names=[items.category_names[c] for c in order],
    )
    np.testing.assert_array_equal(naml.score(test, shuffled), naml.score(test, items))
    with pytest.raises(ValueError, match="lack embedding field 'summary'"):
        without = dict(items.embeddings)
        del without["summary"]
        naml.score(
            test,
            ItemFeatures(items.item_ids, without, items.categories, items.category_names),
        )


def test_negative_sampler_draws_from_the_impression_first():
    from genre_dagster.scoring.training import NegativeSampler

    # Impression 0: 5 negatives; 1: one negative; 2: no negative.
    labels = np.array([1, 0, 0, 0, 0, 0, 1, 0, 1], np.int8)
    items = np.array([10, 11, 12, 13, 14, 15, 20, 21, 30])
    data = ImpressionData(
        impression_ids=np.array(["a", "b", "c"]),
        user_ids=np.array(["u", "u", "u"]),
        history=np.full((3, 2), PAD),
        cand_offsets=np.array([0, 6, 8, 9]),
        cand_items=items,
        labels=labels,
    )
    sampler = NegativeSampler(data, k=4, random_pool=np.array([100, 101]))
    cands = sampler.candidates(np.array([0, 1, 2]), np.random.default_rng(0))
    assert cands[:, 0].tolist() == [10, 20, 30]
    assert len(set(cands[0, 1:])) == 4 and set(cands[0, 1:]) <= {11, 12, 13, 14, 15}
    assert set(cands[1, 1:]) == {21}
    assert set(cands[2, 1:]) <= {100, 101}


def test_importing_the_scorers_does_not_import_torch():
    code = "import sys, genre_dagster.scoring.neural; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_default_scorer_variant_saves_under_its_own_artifact_id():
    """The model store names an artifact by kind + config hash: two variants that trained on
    different inputs must not share it (one would overwrite the other's model)."""
    from genre_dagster.scoring.registry import create_scorer
    from genre_dagster.scoring.variants import DEFAULT_SCORERS, OPTIONAL_SCORERS

    specs = (*DEFAULT_SCORERS, *OPTIONAL_SCORERS)
    ids = {spec.name: create_scorer(spec.kind, spec.config).scorer_id for spec in specs}
    assert len(set(ids.values())) == len(ids), ids


def test_every_neural_scorer_has_the_genre_variants_next_to_its_base():
    from genre_dagster.scoring.plugins import without
    from genre_dagster.scoring.registry import NEURAL_KINDS, create_scorer
    from genre_dagster.scoring.variants import (
        DEFAULT_SCORERS,
        ENSEMBLE_MEMBERS,
        OPTIONAL_SCORERS,
        variant_bases,
    )

    every_spec = (*DEFAULT_SCORERS, *OPTIONAL_SCORERS)
    specs = {spec.name: spec for spec in every_spec}

    def scorer_id(config, kind):
        return create_scorer(kind, config).scorer_id

    bases = [s.name for s in every_spec if s.kind in NEURAL_KINDS and s.base is None]
    assert bases == ["nrms", "naml", "hybrid_naml", "sequential", "nrms_tuned", "naml_tuned"]
    for base in bases:
        kind = specs[base].kind
        variants = {name for name, spec in specs.items() if spec.base == base}
        assert variants == {f"{base}_{s}" for s in ("summary", "profile", "generated", "genre_all")}
        assert all(specs[v].kind == kind for v in variants)
        summary, every = specs[f"{base}_summary"], specs[f"{base}_genre_all"]
        assert summary.config["fields"] == [*specs[base].config["fields"], "summary"]
        assert every.profile and every.generated_history and every.config["profile"]
        # A plug-in switched off gives back the configuration another asset trains, so the
        # training fingerprint lets the two share one model.
        profile, generated = specs[f"{base}_profile"], specs[f"{base}_generated"]
        base_id = scorer_id(specs[base].config, kind)
        assert scorer_id(without(profile.config, {"profile"}), kind) == base_id
        assert scorer_id(without(generated.config, {"generated_history"}), kind) == base_id
        both_off = without(every.config, {"profile", "generated_history"})
        assert scorer_id(both_off, kind) == scorer_id(summary.config, kind)
    assert variant_bases(every_spec) == {
        f"{base}_{s}": base
        for base in bases
        for s in ("summary", "profile", "generated", "genre_all")
    }
    assert set(variant_bases().values()) == {"nrms", "naml"}  # the default graph
    assert all(specs[m].base is None for m in ENSEMBLE_MEMBERS)  # members: unchanged bases


def test_naml_takes_the_profile_plugin_beside_the_summary_view(world):
    from genre_dagster.scoring.presets import PRESETS
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    (spec,) = [s for s in DEFAULT_SCORERS if s.name == "naml_genre_all"]
    items, test, profiles = world["items"], world["test"], world["profiles"]
    scorer = NAMLScorer({**PRESETS["naml_small"], **spec.config, "epochs": 2})
    with pytest.raises(ValueError, match="profile plug-in"):
        scorer.fit(world["train"], items, world["valid"])
    log = scorer.fit(world["train"], items, world["valid"], profiles=profiles)
    assert log["fields"] == ["title", "abstract", "summary"]  # one more view, not optional
    with_profiles = scorer.score(test, items, profiles=profiles)
    no_one = np.full((test.n_impressions, profiles.dim), np.nan, dtype=np.float32)
    without = scorer.score(test, items, profiles=no_one)
    assert np.isfinite(with_profiles).all() and not np.allclose(with_profiles, without)
    with pytest.raises(ValueError, match="lack embedding field 'summary'"):
        no_summary = {k: v for k, v in items.embeddings.items() if k != "summary"}
        scorer.score(
            test,
            ItemFeatures(items.item_ids, no_summary, items.categories, items.category_names),
            profiles=profiles,
        )


def test_scores_do_not_depend_on_which_impressions_share_a_user(world, nrms):
    # score() encodes each distinct history once; scoring impressions one at a time (nothing
    # to share) must give the same numbers.
    test, items = world["test"], world["items"]
    users, counts = np.unique(test.user_ids, return_counts=True)
    shared = set(users[counts >= 2][:4])
    picked = [j for j in range(test.n_impressions) if test.user_ids[j] in shared]
    assert len(picked) >= 8  # four users, each with two or more impressions
    parts = [test.take([j]) for j in picked]
    together = ImpressionData(
        impression_ids=np.concatenate([p.impression_ids for p in parts]),
        user_ids=np.concatenate([p.user_ids for p in parts]),
        history=np.concatenate([p.history for p in parts]),
        cand_offsets=np.concatenate([[0], np.cumsum([len(p.cand_items) for p in parts])]),
        cand_items=np.concatenate([p.cand_items for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
    )
    alone = np.concatenate([nrms.score(p, items) for p in parts])
    np.testing.assert_allclose(nrms.score(together, items), alone, rtol=1e-5, atol=1e-6)


def test_best_epoch_metrics_equal_scoring_the_validation_split_again(world, nrms):
    # The scorer asset reports these instead of scoring the validation split once more.
    from genre_dagster.evaluation.metrics import evaluate_impressions
    from genre_dagster.scoring.nightly import best_epoch_metrics

    kept = best_epoch_metrics(nrms.training_log)
    again = evaluate_impressions(world["valid"], nrms.score(world["valid"], world["items"]))
    assert kept is not None and set(kept) == set(again)
    for name, value in again.items():
        assert kept[name] == pytest.approx(value, rel=1e-6), name
    assert best_epoch_metrics({"epochs": []}) is None  # scorers that do not validate


def test_epoch_samples_bounds_each_epoch_and_draws_afresh(world):
    """A cap on an epoch's samples: each epoch trains on about that many (whole batches), the
    epochs draw different samples, and the cap above the data changes nothing."""
    from genre_dagster.scoring import training

    train, items, test = subset(world["train"], 400), world["items"], world["test"]
    n = int((train.labels == 1).sum())
    drawn: list[np.ndarray] = []
    real = training.capped_batches

    def spy(batches, cap):
        kept = real(batches, cap)
        drawn.append(np.sort(np.concatenate(kept)))
        return kept

    scorer = from_preset("nrms_small", epochs=3, patience=3, batch_size=16, epoch_samples=100)
    training.capped_batches, saved = spy, training.capped_batches
    try:
        log = scorer.fit(train, items)
    finally:
        training.capped_batches = saved
    assert [len(d) for d in drawn] == [e["samples"] for e in log["epochs"]]
    for epoch in log["epochs"]:
        assert 100 <= epoch["samples"] < 100 + 16 and np.isfinite(epoch["loss"])
    assert not np.array_equal(drawn[0], drawn[1])
    assert log["n_train_samples"] == n  # the data it could draw from

    runs = []
    for cap in (0, n + 1):
        scorer = from_preset("nrms_small", epochs=1, seed=3, epoch_samples=cap)
        scorer.fit(train, items)
        runs.append(scorer.score(test, items))
        assert scorer.training_log["epochs"][0]["samples"] == n
    assert np.array_equal(runs[0], runs[1])
    with pytest.raises(ValueError, match="epoch_samples"):
        preset("nrms_small", epoch_samples=-1)


def test_impression_take_keeps_each_impressions_candidates(world):
    test = world["test"]
    rows = np.array([5, 0, 7, 7])
    part = test.take(rows)
    assert part.n_impressions == 4 and list(part.impression_ids) == list(test.impression_ids[rows])
    for k, j in enumerate(rows):
        lo, hi = test.cand_offsets[j], test.cand_offsets[j + 1]
        got = slice(part.cand_offsets[k], part.cand_offsets[k + 1])
        assert np.array_equal(part.cand_items[got], test.cand_items[lo:hi])
        assert np.array_equal(part.labels[got], test.labels[lo:hi])
        assert np.array_equal(part.history[k], test.history[j])
    assert test.take(np.array([], dtype=np.int64)).n_impressions == 0


def test_valid_impressions_bounds_the_validation_of_each_epoch(world):
    """Early stopping validates on a seeded sample of at most `valid_impressions`; a cap above
    the split changes nothing."""
    train, items, valid = subset(world["train"], 300), world["items"], world["valid"]
    base = dict(epochs=2, patience=2, seed=4)
    capped = from_preset("nrms_small", valid_impressions=40, **base)
    capped.fit(train, items, valid=valid)
    assert [e["val_metrics"]["n_impressions"] for e in capped.training_log["epochs"]] == [40, 40]
    # the sample's metrics are not published as the split's: the scorer asset scores it whole
    from genre_dagster.scoring.nightly import best_epoch_metrics

    assert (
        capped.training_log["valid_sample"] == 40
        and best_epoch_metrics(capped.training_log) is None
    )
    # the same sample every epoch and every fit with the seed: equal AUC again
    again = from_preset("nrms_small", valid_impressions=40, **base)
    again.fit(train, items, valid=valid)
    assert [e["val_auc"] for e in again.training_log["epochs"]] == [
        e["val_auc"] for e in capped.training_log["epochs"]
    ]
    logs = []
    for cap in (0, valid.n_impressions):
        scorer = from_preset("nrms_small", valid_impressions=cap, **base)
        scorer.fit(train, items, valid=valid)
        logs.append([e["val_metrics"] for e in scorer.training_log["epochs"]])
    assert logs[0] == logs[1]
    assert logs[0][0]["n_impressions"] == valid.n_impressions
    assert scorer.training_log["valid_sample"] == 0 and best_epoch_metrics(scorer.training_log)
    with pytest.raises(ValueError, match="valid_impressions"):
        preset("nrms_small", valid_impressions=-1)


@pytest.mark.parametrize("name", ["nrms", "naml"])
def test_scores_in_chunks_equal_scores_at_once(world, request, name):
    from genre_dagster.scoring.base import score_in_chunks

    scorer, test, items = request.getfixturevalue(name), world["test"], world["items"]
    whole = score_in_chunks(scorer, test, items, 0)
    np.testing.assert_array_equal(whole, scorer.score(test, items))
    chunked = score_in_chunks(scorer, test, items, 13)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def _with_index_dtype(data: ImpressionData, dtype) -> ImpressionData:
    return ImpressionData(
        impression_ids=data.impression_ids,
        user_ids=data.user_ids,
        history=data.history.astype(dtype),
        cand_offsets=data.cand_offsets,
        cand_items=data.cand_items.astype(dtype),
        labels=data.labels,
        day_index=data.day_index,
    )


@pytest.mark.parametrize("name", ["nrms", "naml"])
def test_int32_item_indices_train_and_score_as_int64(world, name):
    """The loader builds histories and candidates in int32 (arrays.INDEX_DTYPE); a scorer
    trained and scored on them gives what int64 arrays give, for the same seed."""
    scores = []
    for dtype in (np.int64, np.int32):
        scorer = from_preset(f"{name}_small")
        scorer.fit(
            _with_index_dtype(world["train"], dtype),
            world["items"],
            _with_index_dtype(world["valid"], dtype),
        )
        scores.append(scorer.score(_with_index_dtype(world["test"], dtype), world["items"]))
    np.testing.assert_array_equal(scores[1], scores[0])


@pytest.mark.parametrize("name", NEURAL_DEFAULTS)
def test_a_pool_scorer_encodes_each_item_once_and_scores_as_score_pool(world, request, name):
    scorer, items = request.getfixturevalue(name), world["items"]
    history, pool = world["user_history"], np.arange(0, N_ITEMS, 2)
    whole = scorer.score_pool(history, pool, items)
    encoded: list[int] = []
    model = scorer._require_model()
    encode = model.encode_items

    def counted(*args, **kwargs):
        vectors = encode(*args, **kwargs)
        encoded.append(len(vectors))
        return vectors

    model.encode_items = counted
    try:
        score = scorer.pool_scorer(pool, items)
        parts = [score(history[s : s + 7]) for s in range(0, len(history), 7)]
    finally:
        del model.encode_items
    np.testing.assert_allclose(np.concatenate(parts), whole, rtol=1e-5, atol=1e-6)
    needed = np.union1d(pool, history[history != PAD])
    assert sum(encoded) == len(needed)  # the pool and every history item, once in all calls


@pytest.mark.parametrize("name", NEURAL_DEFAULTS)
def test_users_are_encoded_in_chunks_of_similar_history_length(world, request, name):
    # Most real histories are much shorter than max_history; a chunk that mixes lengths runs
    # the user encoder over the longest one's positions for every row. Users are encoded in
    # chunks sorted by history length, each user's vector as if encoded alone.
    scorer, items = request.getfixturevalue(name), world["items"]
    history, pool = world["user_history"], np.arange(0, N_ITEMS, 3)
    lengths = (history != PAD).sum(axis=1)
    assert len(np.unique(lengths)) > 10  # a mix of lengths, in no particular order
    step = 8
    widths: list[tuple[int, int]] = []
    model = scorer._require_model()
    encode = model.encode_users

    def recorded(x, mask, *args, **kwargs):
        widths.append((x.shape[0], x.shape[1]))
        return encode(x, mask, *args, **kwargs)

    alone = np.concatenate([scorer.score_pool(history[[u]], pool, items) for u in range(20)])
    saved = scorer._resolved["score_batch"]
    scorer._resolved["score_batch"] = step
    model.encode_users = recorded
    try:
        together = scorer.score_pool(history, pool, items)
    finally:
        del model.encode_users
        scorer._resolved["score_batch"] = saved
    np.testing.assert_allclose(together[:20], alone, rtol=1e-5, atol=1e-6)
    distinct = np.unique(history, axis=0)
    by_length = np.sort((distinct != PAD).sum(axis=1))
    bound = sum(len(c) * c.max() for c in np.split(by_length, range(step, len(by_length), step)))
    assert sum(rows for rows, _ in widths) == len(distinct)
    assert sum(rows * width for rows, width in widths) == bound
