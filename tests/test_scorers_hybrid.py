"""Hybrid item representation: content vector + a learned vector per item id seen in training,
with id dropout, on the synthetic world of tests/neural_world.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
from neural_world import N_ITEMS, auc, build_world

from genre_dagster.arrays import PAD, ItemFeatures
from genre_dagster.scoring.neural import NAMLScorer, NeuralScorer, NRMSScorer, from_preset

torch = pytest.importorskip("torch")

N_TWINS = 20


@pytest.fixture(scope="module")
def world():
    return build_world()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", params=["sum", "gated"])
def hybrid(request, world):
    scorer = from_preset("nrms_small", id_embedding=request.param)
    scorer.fit(world["train"], world["items"], world["valid"])
    return scorer


def _with_twins(items: ItemFeatures, n: int = N_TWINS) -> ItemFeatures:
    """`items` plus copies of its first `n` items (same content and category) under ids that
    no training impression shows."""
    take = np.arange(n)
    return ItemFeatures(
        item_ids=np.concatenate([items.item_ids, [f"NEW{i}" for i in take]]),
        embeddings={k: np.concatenate([v, v[take]]) for k, v in items.embeddings.items()},
        categories=np.concatenate([items.categories, items.categories[take]]),
        category_names=items.category_names,
    )


def test_items_never_seen_in_training_are_scored_from_content_alone(world, hybrid):
    items = _with_twins(world["items"])
    twins = np.arange(N_ITEMS, N_ITEMS + N_TWINS)
    originals = np.arange(N_TWINS)
    # Users whose histories hold only never-seen items (and a cold user) are encoded the same
    # with or without item ids, so their scores isolate the item side.
    rng = np.random.default_rng(0)
    history = np.full((8, 6), PAD, dtype=np.int64)
    for row in range(1, 8):
        history[row, -row:] = rng.choice(twins, size=min(row, 6), replace=False)[:row]
    pool = np.concatenate([originals, twins])
    full = hybrid.score_pool(history, pool, items)
    content = hybrid.content_only().score_pool(history, pool, items)
    assert np.array_equal(full[:, N_TWINS:], content[:, N_TWINS:])
    # Seen items carry their learned id vector: the content path scores them differently.
    assert not np.allclose(full[:, :N_TWINS], content[:, :N_TWINS], atol=1e-4)
    # A never-seen twin scores as its original does from content alone.
    np.testing.assert_allclose(full[:, N_TWINS:], content[:, :N_TWINS], rtol=1e-5, atol=1e-6)


def test_only_items_shown_in_training_get_an_id_vector(world, hybrid, tmp_path):
    train, items = world["train"], world["items"]
    shown = np.union1d(train.history[train.history != PAD], train.cand_items)
    hybrid.save(tmp_path / "hybrid")
    manifest = json.loads((tmp_path / "hybrid" / "scorer.json").read_text())
    assert manifest["item_ids"] == [str(items.item_ids[i]) for i in shown]
    assert manifest["config"]["id_embedding"] == hybrid.config["id_embedding"]
    state = torch.load(tmp_path / "hybrid" / "model.pt", weights_only=True)
    # one learned row per id, plus the "never seen" row
    assert state["item_ids.embedding.weight"].shape == (len(shown) + 1, 32)


def test_hybrid_artifact_reloads_and_scores_identically(world, hybrid, tmp_path):
    folder = tmp_path / hybrid.scorer_id
    hybrid.save(folder)
    loaded = NeuralScorer.load(folder)
    assert type(loaded) is NRMSScorer and loaded.scorer_id == hybrid.scorer_id
    items, test = _with_twins(world["items"]), world["test"]
    assert np.array_equal(loaded.score(test, items), hybrid.score(test, items))
    pool = np.arange(items.n_items)
    assert np.array_equal(
        loaded.score_pool(world["user_history"], pool, items),
        hybrid.score_pool(world["user_history"], pool, items),
    )
    with pytest.raises(ValueError, match="not saved"):
        loaded.content_only().save(tmp_path / "view")


def test_hybrid_beats_random_and_differs_from_its_content_path(world, hybrid):
    test, items = world["test"], world["items"]
    scores = hybrid.score(test, items)
    oracle = auc(world["truth"], test)
    model = auc(scores, test)
    assert model - 0.5 > 0.4 * (oracle - 0.5), (model, oracle)
    assert not np.allclose(scores, hybrid.content_only().score(test, items), atol=1e-4)


def test_id_dropout_drops_the_configured_share_in_training_only():
    from genre_dagster.scoring.components import ItemIdFusion, ModelSpec
    from genre_dagster.scoring.presets import preset

    torch.manual_seed(0)
    config = preset("nrms_small", id_embedding="sum", id_dropout=0.3)
    fusion = ItemIdFusion(ModelSpec(config, (8,), 2, n_ids=5))
    with torch.no_grad():
        fusion.embedding.weight.fill_(1.0)
    content = torch.zeros(100_000, 32)
    ids = torch.arange(100_000) % 5  # every id known
    dropped = (fusion(content, ids) == 0).all(dim=1).float().mean().item()
    assert dropped == pytest.approx(0.3, abs=0.01)
    fusion.eval()
    assert (fusion(content, ids) == 1).all()
    unknown = torch.full((4,), 5)
    assert (fusion(torch.ones(4, 32), unknown) == 1).all()  # the content, nothing added


def test_the_id_table_steps_only_the_rows_a_batch_used():
    """The id table's gradient is sparse and a lazy SparseAdam steps it: rows no batch used
    stay as they were (a dense Adam step would touch every row of a large table); with
    id_optimizer="dense" Adam steps it; weight decay (which SparseAdam lacks) needs dense."""
    from genre_dagster.scoring.components import ModelSpec, build_model
    from genre_dagster.scoring.presets import preset
    from genre_dagster.scoring.training import make_optimizer

    torch.manual_seed(0)
    config = preset("naml_small", id_embedding="only", id_dropout=0.0, id_optimizer="sparse")
    model = build_model(ModelSpec(config, (8, 8), 2, n_ids=6))
    optimizer = make_optimizer(model, config)
    table = model.item_ids.embedding.weight
    before = table.detach().clone()
    views, categories = [torch.ones(2, 8), torch.ones(2, 8)], torch.tensor([0, 1])
    model.encode_items(views, categories, torch.tensor([1, 4])).sum().backward()
    assert table.grad.is_sparse
    optimizer.step()
    moved = (table.detach() != before).any(dim=1)
    assert moved.tolist() == [False, True, False, False, True, False, False]
    dense = preset("naml_small", id_embedding="only", id_optimizer="dense", weight_decay=0.01)
    model = build_model(ModelSpec(dense, (8, 8), 2, n_ids=6))
    assert not model.item_ids.embedding.sparse
    assert isinstance(make_optimizer(model, dense), torch.optim.Adam)
    with pytest.raises(ValueError, match="SparseAdam has no weight decay"):
        preset("naml_small", id_embedding="sum", id_optimizer="sparse", weight_decay=0.01)


def test_auto_id_optimizer_is_sparse_only_for_large_tables():
    from genre_dagster.scoring.components import SPARSE_ID_ROWS, ModelSpec, sparse_id_table
    from genre_dagster.scoring.presets import preset

    auto = preset("naml_small", id_embedding="gated")
    assert auto["id_optimizer"] == "auto"
    assert not sparse_id_table(ModelSpec(auto, (8, 8), 2, n_ids=SPARSE_ID_ROWS))
    assert sparse_id_table(ModelSpec(auto, (8, 8), 2, n_ids=SPARSE_ID_ROWS + 1))
    decayed = preset("naml_small", id_embedding="gated", weight_decay=0.01)
    assert not sparse_id_table(ModelSpec(decayed, (8, 8), 2, n_ids=SPARSE_ID_ROWS + 1))


def test_id_only_items_are_their_id_vector_and_new_items_share_one():
    from genre_dagster.scoring.components import ModelSpec, build_model
    from genre_dagster.scoring.presets import preset

    torch.manual_seed(0)
    config = preset("naml_small", id_embedding="only", id_dropout=0.0)
    model = build_model(ModelSpec(config, (8, 8), 2, n_ids=3)).eval()
    views = [torch.ones(4, 8), torch.ones(4, 8)]
    views[0][3] = -5.0  # items 2 and 3: different content, both never seen in training
    categories = torch.tensor([0, 0, 0, 1])
    ids = torch.tensor([0, 1, 3, 3])  # row 3 = the shared "never seen" row
    with torch.no_grad():
        vecs = model.encode_items(views, categories, ids)
    assert not torch.allclose(vecs[0], vecs[1])  # same content, two seen ids
    assert torch.equal(vecs[2], vecs[3])  # unseen: content not read
    assert vecs[0].abs().max() > 0  # random init, not zeros: items start apart
    with pytest.raises(ValueError, match="no content path"):
        model.encode_items(views, categories)


def test_id_only_scorer_scores_never_seen_twins_alike(world):
    scorer = from_preset("nrms_small", id_embedding="only", id_dropout=0.0, epochs=1)
    scorer.fit(world["train"], world["items"])
    items = _with_twins(world["items"])
    twins = np.arange(N_ITEMS, N_ITEMS + N_TWINS)
    pool = np.concatenate([np.arange(N_TWINS), twins])
    scores = scorer.score_pool(world["user_history"][:8], pool, items)
    # Never-seen twins share one vector whatever their content; their seen originals differ.
    assert np.all(scores[:, N_TWINS:] == scores[:, N_TWINS:][:, :1])
    assert np.ptp(scores[:, :N_TWINS], axis=1).min() > 0
    with pytest.raises(ValueError, match="ids only"):
        scorer.content_only()


def test_hybrid_composes_with_naml_and_the_profile_plugin(world, tmp_path):
    items, test, profiles = world["items"], world["test"], world["profiles"]
    synthetic = np.zeros(N_ITEMS, dtype=bool)
    synthetic[world["train"].history[0][world["train"].history[0] != PAD]] = True
    with_synthetic = ItemFeatures(
        items.item_ids, items.embeddings, items.categories, items.category_names, synthetic
    )
    scorer = from_preset("naml_small", id_embedding="gated", profile=True, epochs=2)
    assert isinstance(scorer, NAMLScorer)
    scorer.fit(world["train"], with_synthetic, world["valid"], profiles=profiles)
    scores = scorer.score(test, with_synthetic, profiles=profiles)
    assert np.isfinite(scores).all()
    scorer.save(tmp_path / "naml")
    manifest = json.loads((tmp_path / "naml" / "scorer.json").read_text())
    # GENRE's synthetic items belong to one user's history: scored from content, no id vector
    assert not set(manifest["item_ids"]) & set(items.item_ids[synthetic])
    loaded = NeuralScorer.load(tmp_path / "naml")
    assert np.array_equal(loaded.score(test, with_synthetic, profiles=profiles), scores)


def test_new_config_keys_leave_the_ids_of_existing_scorers_unchanged(world, tmp_path):
    """Artifacts published before id fusion existed keep their ids and load as they were."""
    assert NRMSScorer().scorer_id == "nrms-7e597e7e1a"
    assert NAMLScorer().scorer_id == "naml-25aacd43c2"
    assert "id_embedding" not in NRMSScorer().config
    assert NRMSScorer({"id_embedding": "sum"}).scorer_id != NRMSScorer().scorer_id
    scorer = from_preset("nrms_small", epochs=1)
    scorer.fit(world["train"], world["items"])
    scorer.save(tmp_path / "old")
    manifest = json.loads((tmp_path / "old" / "scorer.json").read_text())
    assert manifest.pop("item_ids") is None
    (tmp_path / "old" / "scorer.json").write_text(json.dumps(manifest))
    loaded = NeuralScorer.load(tmp_path / "old")
    test, items = world["test"], world["items"]
    assert np.array_equal(loaded.score(test, items), scorer.score(test, items))
    with pytest.raises(ValueError, match="id_embedding"):
        NRMSScorer({"id_embedding": "concat"})
