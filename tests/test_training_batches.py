"""The parts of the neural training loop that make it fast: mask dropout, users encoded once per
distinct history, history-grouped batches. Each must leave what is learned intact."""

from __future__ import annotations

import numpy as np
import pytest

from genre_dagster.arrays import PAD, ProfileRows

torch = pytest.importorskip("torch")

from genre_dagster.scoring.components import MaskDropout, ModelSpec, build_model  # noqa: E402
from genre_dagster.scoring.presets import preset  # noqa: E402
from genre_dagster.scoring.training import (  # noqa: E402
    ItemInputs,
    encode_batch_users,
    history_groups,
    length_bucketed_batches,
)


def test_mask_dropout_drops_p_and_keeps_the_expected_value() -> None:
    torch.manual_seed(0)
    drop = MaskDropout(0.2)
    x = torch.ones(1_000_000)
    y = drop(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.2, abs=0.003)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)  # inverted dropout: E[y] = x
    zero, kept = torch.unique(y).tolist()
    assert zero == 0.0 and kept == pytest.approx(1 / 0.8, rel=1e-4)
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(MaskDropout(0.0)(x), x)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        MaskDropout(1.0)


def test_mask_dropout_is_seeded_by_torch_and_passes_gradients() -> None:
    masks = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        masks.append(MaskDropout(0.5)(torch.ones(64, 8)))
    assert torch.equal(masks[0], masks[1]) and not torch.equal(masks[0], masks[2])
    x = torch.ones(32, 4, requires_grad=True)
    out = MaskDropout(0.5)(x)
    out.sum().backward()
    assert torch.equal(x.grad, out.detach())  # d(x * mask * scale)/dx = mask * scale


def _model_and_items(profile_dim=None):
    cfg = preset("nrms_small", dropout=0.0)
    torch.manual_seed(0)
    model = build_model(ModelSpec(cfg, (16,), 3, profile_dim)).eval()
    rng = np.random.default_rng(0)
    items = ItemInputs(
        views=[torch.from_numpy(rng.normal(size=(40, 16)).astype(np.float32))],
        categories=torch.zeros(40, dtype=torch.int64),
    )
    return model, items


def test_users_with_the_same_history_are_encoded_once_with_the_same_result() -> None:
    model, items = _model_and_items()
    a, b, empty = [PAD, 3, 4, 5], [7, 8, 9, 10], [PAD] * 4
    history = np.array([a, b, a, empty, a, empty], dtype=np.int64)
    users, _, _ = encode_batch_users(model, history, items, np.array([[1, 2]]), None)
    # One row at a time, no de-duplication possible: the same vectors.
    one_by_one = torch.cat(
        [
            encode_batch_users(model, row[None], items, np.array([[1, 2]]), None)[0]
            for row in history
        ]
    )
    torch.testing.assert_close(users, one_by_one)
    assert torch.equal(users[0], users[2]) and torch.equal(users[3], users[5])


def test_same_history_with_other_profiles_stays_apart() -> None:
    model, items = _model_and_items(profile_dim=4)
    history = np.array([[PAD, 3, 4], [PAD, 3, 4], [PAD, 3, 4]], dtype=np.int64)
    # rows 0 and 2: the same user's profile (one table row); row 1 another user's
    table = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
    profile = ProfileRows(table, np.array([0, 1, 0]))
    users, _, _ = encode_batch_users(model, history, items, np.array([[1]]), profile)
    assert torch.equal(users[0], users[2])
    assert not torch.allclose(users[0], users[1])


def test_grouped_batches_keep_each_sample_once_and_groups_together() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(500), 4)  # 500 users with 4 samples each
    rng.shuffle(groups)
    lengths = (groups % 50).astype(np.int64)  # a user's samples share one history length
    shuffled = length_bucketed_batches(lengths, 16, np.random.default_rng(0))
    grouped = length_bucketed_batches(lengths, 16, np.random.default_rng(0), groups)
    for batches in (shuffled, grouped):
        assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(len(groups)))
        assert all(len(b) == 16 for b in batches)
    per_batch = np.mean([len(np.unique(groups[b])) for b in grouped])
    assert per_batch <= 5.0  # ~4 users per batch of 16, a few split at batch edges
    assert np.mean([len(np.unique(groups[b])) for b in shuffled]) > 12
    assert len(grouped) > 1 and not np.array_equal(grouped[0], grouped[1])


def test_history_groups_match_identical_rows() -> None:
    history = np.array([[PAD, 1], [2, 3], [PAD, 1], [PAD, PAD], [2, 3]], dtype=np.int64)
    groups = history_groups(history)
    assert groups[0] == groups[2] and groups[1] == groups[4]
    assert len(set(groups.tolist())) == 3


def test_unknown_batching_is_rejected_with_the_choices() -> None:
    with pytest.raises(ValueError, match="'batching' must be one of"):
        preset("nrms", batching="by_user")


def test_distinct_rows_matches_numpy_unique() -> None:
    from genre_dagster.scoring.user_profile import distinct_rows

    rng = np.random.default_rng(0)
    matrix = rng.integers(-1, 4, size=(300, 5))  # small alphabet: many repeated rows
    first, inverse = distinct_rows(matrix)
    assert np.array_equal(matrix[first][inverse], matrix)
    assert len(first) == len(np.unique(matrix, axis=0))
    assert distinct_rows(np.zeros((0, 3), dtype=np.int64))[1].shape == (0,)
    first, inverse = distinct_rows(np.zeros((4, 0), dtype=np.int64))
    assert list(first) == [0] and list(inverse) == [0, 0, 0, 0]
    # in chunks of a few rows (the default is 100k): the same groups
    whole = distinct_rows(matrix, chunk_rows=len(matrix))
    for chunk in (1, 7, 299, 1000):
        got = distinct_rows(matrix, chunk_rows=chunk)
        assert np.array_equal(got[0], whole[0]) and np.array_equal(got[1], whole[1])


def test_trim_history_keeps_the_recent_columns_without_copying() -> None:
    from genre_dagster.scoring.training import trim_history

    history = np.array([[PAD, PAD, PAD, 1, 2], [PAD, PAD, 3, 4, 5]], dtype=np.int64)
    trimmed = trim_history(history, 4)
    assert trimmed.tolist() == [[PAD, 1, 2], [3, 4, 5]]  # the all-padding column dropped
    assert np.shares_memory(trimmed, history)  # a view: no copy of a split's histories
    assert trim_history(history, 2).tolist() == [[1, 2], [4, 5]]
    assert trim_history(history, 0).shape == (2, 0)
    assert trim_history(np.full((2, 3), PAD), 3).shape == (2, 0)
    # padding inside a row (not left-padded): the all-padding columns still go
    gaps = np.array([[1, PAD, 2], [3, PAD, 4]], dtype=np.int64)
    assert trim_history(gaps, 3).tolist() == [[1, 2], [3, 4]]
