"""Training loop of the neural recommenders: clicked item + K sampled negatives, cross-entropy.

Imports torch at the top: import this module lazily (the neural scorers do so inside `fit`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from genre_dagster.arrays import PAD, ImpressionData, ProfileRows
from genre_dagster.scoring.components import GAP_BUCKETS, NewsRecommender
from genre_dagster.scoring.user_profile import distinct_rows


@dataclass
class ItemInputs:
    """Item-side model inputs: one float32 tensor [n_items, dim] per field (or, for the
    fine-tuned text encoder, the field's layer states, gathered per batch), category indices,
    with id fusion each item's id row (the model's "unknown" row for items never seen in
    training), and for a user encoder that reads time gaps each item's day (NaN = unknown)."""

    views: list[Any]
    categories: torch.Tensor
    ids: torch.Tensor | None = None
    days: np.ndarray | None = None

    def take(
        self, index: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor | None]:
        """(views, categories, ids) of the items `index`: the arguments of encode_items."""
        ids = None if self.ids is None else self.ids.index_select(0, index)
        views = [
            v.index_select(0, index) if isinstance(v, torch.Tensor) else v.gather(index.numpy())
            for v in self.views
        ]
        return views, self.categories.index_select(0, index), ids


def take_rows(table: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """table[index] for an index array of any shape -> [*index.shape, dim].

    Uses index_select: the backward of advanced indexing (index_put with accumulate) sums in a
    thread-dependent order on CPU, which made training non-deterministic with 2+ threads.
    """
    flat = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64).reshape(-1))
    return table.index_select(0, flat).view(*index.shape, table.shape[1])


def history_gaps(history: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Bucketed day gap [rows, L] between each history item and the item before it (histories
    hold their real items contiguously): 0 for padding, the first item and unknown days; else
    1 + floor(log2(1 + |gap|)), at most GAP_BUCKETS - 1: the same day 1, 1-2 days 2, 3-6 days
    3, 7-14 days 4, 15-30 days 5, 31-62 days 6, longer 7."""
    real = history != PAD
    day = np.where(real, np.asarray(days, dtype=np.float64)[np.where(real, history, 0)], np.nan)
    gap = np.full(history.shape, np.nan)
    gap[:, 1:] = np.abs(day[:, 1:] - day[:, :-1])
    known = np.isfinite(gap)
    bucket = np.floor(np.log2(1.0 + np.where(known, gap, 0.0))).astype(np.int64)
    return np.where(known, 1 + np.minimum(bucket, GAP_BUCKETS - 2), 0)


def trim_history(history: np.ndarray, max_history: int) -> np.ndarray:
    """Keep the `max_history` most recent columns (histories are left-padded, most recent last)
    and drop columns that are padding in every row (they change nothing but cost time).

    Left-padded histories have their all-padding columns first: the result is then a view of
    `history`, not a copy (a train split's histories are 0.9 GB at MIND-large size)."""
    history = history[:, -max_history:] if max_history > 0 else history[:, :0]
    keep = (history != PAD).any(axis=0)
    first = int(np.argmax(keep)) if keep.any() else history.shape[1]
    if keep[first:].all():
        return history[:, first:]
    return history[:, keep]


def encode_batch_users(
    model: NewsRecommender,
    history: np.ndarray,
    items: ItemInputs,
    extra_items: np.ndarray,
    profile: ProfileRows | None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Encode only the items this batch touches (history + `extra_items`) and the batch's users.

    Rows with the same history (and profile) are encoded once and shared: in MIND-format data
    every impression of a user in a split carries the same history, and history-grouped batches
    put them together. Returns (user vectors [B, H], item vectors [n_unique, H], the sorted
    unique item indices).
    """
    rows, inverse = distinct_rows(user_input_key(history, profile))
    history = history[rows]
    hist_mask = history != PAD
    unique = np.unique(np.concatenate([history[hist_mask], extra_items.ravel()]))
    item_vecs = model.encode_items(*items.take(torch.from_numpy(unique)))
    # Row len(unique) of the table is a zero vector standing for padding.
    table = torch.cat([item_vecs, item_vecs.new_zeros(1, item_vecs.shape[1])])
    hist_pos = np.where(hist_mask, np.searchsorted(unique, history), len(unique))
    hist_vecs = take_rows(table, hist_pos)
    prof = has = None
    if profile is not None:
        prof, has = (torch.from_numpy(a) for a in profile.take(rows).dense())
    gaps = None if items.days is None else torch.from_numpy(history_gaps(history, items.days))
    users = model.encode_users(hist_vecs, torch.from_numpy(hist_mask), prof, has, gaps)
    if len(rows) < len(inverse):
        users = users.index_select(0, torch.from_numpy(inverse))
    return users, item_vecs, unique


def user_input_key(history: np.ndarray, profile: ProfileRows | None) -> np.ndarray:
    """One integer row per user input: the history, plus the row of its profile if any.

    Rows with equal keys get equal user vectors, so they are encoded once."""
    if profile is None:
        return history
    return np.concatenate([history, profile.index[:, None].astype(history.dtype)], axis=1)


class NegativeSampler:
    """Clicked candidates of the training impressions, each with K negatives drawn per batch.

    Negatives come from the same impression's non-clicked candidates: without replacement when
    there are at least K, with replacement when fewer, random non-synthetic items when none.
    """

    def __init__(self, data: ImpressionData, k: int, random_pool: np.ndarray) -> None:
        imp = data.candidate_impression
        pos = data.labels == 1
        neg = data.labels == 0
        self.k = k
        self.sample_impression = imp[pos]
        self.sample_item = data.cand_items[pos]
        self.neg_items = data.cand_items[neg]
        counts = np.bincount(imp[neg], minlength=data.n_impressions)
        self.neg_offsets = np.concatenate([[0], np.cumsum(counts)])
        self.random_pool = random_pool
        if len(random_pool) == 0:
            raise ValueError("no non-synthetic item to draw random negatives from")

    @property
    def n_samples(self) -> int:
        return len(self.sample_item)

    def candidates(self, samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """[B, K+1] item indices, the clicked item in column 0."""
        imps = self.sample_impression[samples]
        start = self.neg_offsets[imps]
        n_neg = self.neg_offsets[imps + 1] - start
        b, k = len(samples), self.k
        width = max(int(n_neg.max()), k)
        # Without replacement: the K smallest of random keys over each row's negatives.
        keys = rng.random((b, width))
        keys[np.arange(width)[None, :] >= n_neg[:, None]] = np.inf
        pick = np.argsort(keys, axis=1)[:, :k]
        # With replacement where a row has fewer than K negatives.
        few = n_neg < k
        pick[few] = np.floor(rng.random((int(few.sum()), k)) * n_neg[few, None]).astype(np.int64)
        none = n_neg == 0
        negs = np.empty((b, k), dtype=np.int64)
        some = ~none
        negs[some] = self.neg_items[start[some, None] + pick[some]]
        negs[none] = rng.choice(self.random_pool, size=(int(none.sum()), k))
        return np.concatenate([self.sample_item[samples, None], negs], axis=1)


BUCKET_BATCHES = 32  # batches per length-sorting window


def length_bucketed_batches(
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    groups: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Shuffled mini-batches of sample indices whose history lengths are similar.

    Samples are shuffled, sorted by history length within windows of BUCKET_BATCHES batches,
    cut into batches, and the batches shuffled: a batch pads to its own longest history, so
    this cuts padded attention/GRU work (about 2x for uniform lengths) while keeping batches
    random. With `groups` (one id per sample), the groups are shuffled instead and the samples
    of a group stay adjacent, so they share a batch unless a batch or window boundary cuts the
    group.
    """
    if groups is None:
        order = rng.permutation(len(lengths))
        tie = np.zeros(len(lengths), dtype=np.int64)
    else:
        groups = np.asarray(groups, dtype=np.int64)
        rank = rng.permutation(int(groups.max()) + 1 if len(groups) else 0)[groups]
        order = np.lexsort((rng.random(len(lengths)), rank))
        tie = rank
    window = batch_size * BUCKET_BATCHES
    for s in range(0, len(order), window):
        part = order[s : s + window]
        order[s : s + window] = part[np.lexsort((tie[part], lengths[part]))]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def capped_batches(batches: list[np.ndarray], cap: int) -> list[np.ndarray]:
    """The first batches of a shuffled epoch holding `cap` samples (the batch that crosses it
    included); all of them when `cap` is 0 or above their total."""
    if not cap:
        return batches
    total = np.cumsum([len(b) for b in batches])
    return batches[: int(np.searchsorted(total, cap)) + 1]


def history_groups(history: np.ndarray) -> np.ndarray:
    """Group id per row: rows with identical histories share one (for `by_history` batches)."""
    return distinct_rows(history)[1].astype(np.int64)


def parameter_groups(model: NewsRecommender, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The trainable parameters for the optimizer: the fine-tuned text encoder's (adapters or
    top layers of a pretrained model) at config lm_lr, the rest at lr; frozen ones left out."""
    top = [p for p in (model.text_top.parameters() if model.text_top else ()) if p.requires_grad]
    top_ids = {id(p) for p in top}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in top_ids]
    groups = [{"params": rest}]
    if top:
        groups.append({"params": top, "lr": config["lm_lr"]})
    return groups


class _Optimizers:
    """Dense Adam and lazy SparseAdam stepped together (the item-id table's gradients are
    sparse: see components.ItemIdFusion)."""

    def __init__(self, *optimizers: Any) -> None:
        self.optimizers = optimizers

    def zero_grad(self, set_to_none: bool = True) -> None:
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for optimizer in self.optimizers:
            optimizer.step()


def make_optimizer(model: NewsRecommender, config: dict[str, Any]) -> Any:
    """Adam over the dense parameters (parameter_groups) and, when the model has sparse
    embedding tables, SparseAdam over those at the same lr."""
    sparse_ids = {
        id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding) and m.sparse
    }
    groups = parameter_groups(model, config)
    dense = [{**g, "params": [p for p in g["params"] if id(p) not in sparse_ids]} for g in groups]
    sparse = [p for g in groups for p in g["params"] if id(p) in sparse_ids]
    # foreach: one kernel per step over all parameters, the same numbers
    adam = torch.optim.Adam(
        [g for g in dense if g["params"]],
        lr=config["lr"],
        weight_decay=config["weight_decay"],
        foreach=True,
    )
    if not sparse:
        return adam
    return _Optimizers(adam, torch.optim.SparseAdam(sparse, lr=config["lr"]))


def train_model(
    model: NewsRecommender,
    train: ImpressionData,
    items: ItemInputs,
    random_pool: np.ndarray,
    config: dict[str, Any],
    profile: ProfileRows | None = None,
    validate: Callable[[NewsRecommender], dict[str, float | int]] | None = None,
) -> dict[str, Any]:
    """Train in place with Adam; early-stop on validation AUC and keep the best epoch's weights.

    `validate(model)` returns validation metrics (a dict with "auc"), logged per epoch.

    Call under a seeded RNG (the scorer does): init and the seeds of the dropout masks use
    torch's global generator, negatives and shuffling a numpy generator seeded from
    config["seed"].
    """
    sampler = NegativeSampler(train, config["negatives"], random_pool)
    if sampler.n_samples == 0:
        raise ValueError("training impressions contain no click (label 1): nothing to learn")
    rng = np.random.default_rng(config["seed"])
    history = trim_history(train.history, config["max_history"])
    optimizer = make_optimizer(model, config)
    n_impressions = len(np.unique(sampler.sample_impression))
    sample_lengths = (history != PAD).sum(axis=1)[sampler.sample_impression]
    groups = None
    if config["batching"] == "by_history":
        groups = history_groups(history)[sampler.sample_impression]
    epochs: list[dict[str, Any]] = []
    best_auc, best_epoch, best_state, stale = -np.inf, 0, None, 0
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        start, total_loss = time.perf_counter(), 0.0
        batches = length_bucketed_batches(sample_lengths, config["batch_size"], rng, groups)
        batches = capped_batches(batches, config.get("epoch_samples", 0))
        n_samples = sum(len(b) for b in batches)
        if n_samples < sampler.n_samples:
            epoch_impressions = len(np.unique(sampler.sample_impression[np.concatenate(batches)]))
        else:
            epoch_impressions = n_impressions
        for samples in batches:
            cands = sampler.candidates(samples, rng)
            imps = sampler.sample_impression[samples]
            rows = None if profile is None else profile.take(imps)
            users, item_vecs, unique = encode_batch_users(
                model, trim_history(history[imps], config["max_history"]), items, cands, rows
            )
            cand_vecs = take_rows(item_vecs, np.searchsorted(unique, cands))
            logits = model.predictor(users, cand_vecs)
            loss = F.cross_entropy(logits, torch.zeros(len(samples), dtype=torch.long))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(samples)
        seconds = time.perf_counter() - start
        log = {
            "epoch": epoch,
            "loss": total_loss / n_samples,
            "samples": n_samples,
            "seconds": seconds,
            "impressions_per_s": epoch_impressions / seconds,
            "samples_per_s": n_samples / seconds,
            "val_auc": None,
        }
        if validate is not None:
            v_start = time.perf_counter()
            metrics = validate(model)
            log["val_auc"] = float(metrics["auc"])
            log["val_metrics"] = metrics
            log["val_seconds"] = time.perf_counter() - v_start
        epochs.append(log)
        if validate is None:
            best_epoch = epoch
            continue
        if log["val_auc"] > best_auc:
            best_auc, best_epoch, stale = log["val_auc"], epoch, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= config["patience"]:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {
        "epochs": epochs,
        "best_epoch": best_epoch,
        "best_val_auc": None if validate is None else best_auc,
        "stopped_early": len(epochs) < config["epochs"],
        "n_train_impressions": n_impressions,
        "n_train_samples": sampler.n_samples,
        "n_impressions_without_click": int(train.n_impressions - n_impressions),
        "n_parameters": sum(p.numel() for p in model.parameters()),
        "n_trained_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "threads": torch.get_num_threads(),
    }
