"""The sequential user encoder (`causal`): causal self-attention over the history in order,
with learned positions and optional time gaps, on the synthetic world of tests/neural_world.py."""

from __future__ import annotations

import numpy as np
import pytest
from neural_world import N_ITEMS, build_world, subset

from genre_dagster.arrays import PAD, ItemFeatures
from genre_dagster.scoring.neural import NeuralScorer
from genre_dagster.scoring.presets import preset

torch = pytest.importorskip("torch")

POOL = np.arange(N_ITEMS)


@pytest.fixture(scope="module")
def world():
    return build_world()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _fit(world, **overrides) -> NeuralScorer:
    scorer = NeuralScorer(preset("nrms_small", epochs=2, **overrides))
    scorer.fit(subset(world["train"], 600), world["items"])
    return scorer


@pytest.fixture(scope="module", params=["attention", "last"])
def sequential(world, request):
    return _fit(world, user_encoder="causal", readout=request.param)


def _histories(world, n: int = 12) -> np.ndarray:
    """Users with at least 4 clicks, left-padded as the data layer pads them."""
    history = world["user_history"]
    return history[(history != PAD).sum(axis=1) >= 4][:n]


def _reversed(history: np.ndarray) -> np.ndarray:
    out = np.full_like(history, PAD)
    for row, clicks in enumerate(history):
        real = clicks[clicks != PAD][::-1]
        out[row, len(clicks) - len(real) :] = real
    return out


def test_reversing_a_history_changes_the_user_vector(world, sequential):
    history = _histories(world)
    forward = sequential.score_pool(history, POOL, world["items"])
    backward = sequential.score_pool(_reversed(history), POOL, world["items"])
    assert not np.isclose(forward, backward, atol=1e-4).all(axis=1).any()  # every user moves
    # A bag-of-clicks encoder cannot tell the two apart: the test sees the order, not noise.
    bag = _fit(world, user_encoder="mean")
    np.testing.assert_allclose(
        bag.score_pool(history, POOL, world["items"]),
        bag.score_pool(_reversed(history), POOL, world["items"]),
        rtol=1e-5,
        atol=1e-5,
    )


def test_padding_does_not_change_the_user_vector(world, sequential):
    items, history = world["items"], _histories(world)
    alone = sequential.score_pool(history[:1], POOL, items)
    # Batched with a longer history, the first user is padded further; placed on the right the
    # padding moves to the other end.
    longest = world["user_history"][[(world["user_history"] != PAD).sum(axis=1).argmax()]]
    batched = sequential.score_pool(np.concatenate([history[:1], longest]), POOL, items)
    np.testing.assert_allclose(batched[:1], alone, rtol=1e-5, atol=1e-6)
    real = history[0][history[0] != PAD]
    right = np.concatenate([real, np.full(30, PAD)])[None]
    np.testing.assert_allclose(
        sequential.score_pool(right, POOL, items), alone, rtol=1e-5, atol=1e-6
    )
    # ... and directly at the encoder, any amount of left padding
    model = sequential._model
    x = torch.randn(1, 5, 32)
    padded = torch.cat([torch.zeros(1, 7, 32), x], dim=1)
    mask = torch.ones(1, 5, dtype=torch.bool)
    wide = torch.cat([torch.zeros(1, 7, dtype=torch.bool), mask], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(
            model.user_encoder(padded, wide), model.user_encoder(x, mask), rtol=1e-5, atol=1e-6
        )


def test_each_click_reads_only_itself_and_earlier_clicks(world, sequential):
    encoder = sequential._model.user_encoder
    seen = []
    hook = encoder.blocks[0].register_forward_hook(lambda m, i, out: seen.append(out.clone()))
    x = torch.randn(1, 6, 32)
    changed = x.clone()
    changed[0, 4:] = torch.randn(2, 32)  # the two most recent clicks differ
    mask = torch.ones(1, 6, dtype=torch.bool)
    try:
        with torch.no_grad():
            encoder(x, mask)
            encoder(changed, mask)
    finally:
        hook.remove()
    first, second = seen
    torch.testing.assert_close(first[0, :4], second[0, :4])
    assert not torch.allclose(first[0, 4:], second[0, 4:])


def test_history_gaps_are_log_buckets_of_the_day_difference():
    from genre_dagster.scoring.training import history_gaps

    days = np.array([0.0, 0.0, 2.0, 10.0, 100.0, np.nan])
    history = np.array([[PAD, 0, 1, 2, 3, 4], [PAD, PAD, PAD, 5, 0, 1], [PAD] * 6])
    assert history_gaps(history, days).tolist() == [
        [0, 0, 1, 2, 4, 7],  # first click, same day, 2 days, 8 days, 90 days
        [0, 0, 0, 0, 0, 1],  # unknown day: no gap either side
        [0] * 6,
    ]


def test_time_gaps_change_the_user_vector(world):
    items = world["items"]
    days = np.random.default_rng(0).integers(0, 60, N_ITEMS).astype(np.float64)
    dated = ItemFeatures(
        items.item_ids, items.embeddings, items.categories, items.category_names, publish_day=days
    )
    scorer = _fit({**world, "items": dated}, user_encoder="causal", time_gaps=True)
    history = _histories(world)
    scores = scorer.score_pool(history, POOL, dated)
    other = ItemFeatures(
        items.item_ids, items.embeddings, items.categories, items.category_names, days[::-1].copy()
    )
    assert not np.allclose(scorer.score_pool(history, POOL, other), scores, atol=1e-5)
    with pytest.raises(ValueError, match="time_gaps"):
        preset("nrms_small", time_gaps=True)  # mhsa reads no gaps
