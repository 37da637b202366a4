"""NRMS training and pool-scoring throughput vs a plain per-impression / per-user reference.

Same synthetic data (384-d "title" embeddings, like MiniLM), same model class and weights, same
torch threads; one run each. The references are what a straightforward implementation does:
- training: one impression (click + K negatives) per forward pass, every item encoded where it
  appears, gradients accumulated over `batch_size` impressions per optimizer step;
- scoring: one user per forward pass; "naive" also encodes the pool for every user, "cached"
  encodes the pool once.

Run: .venv/bin/python benchmarks/neural_training.py [--threads N]
Writes benchmarks/results/neural_training.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import describe

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures

RESULTS = Path(__file__).parent / "results" / "neural_training.json"
N_ITEMS, N_CATS, DIM, N_USERS, MAX_HIST = 20_000, 17, 384, 5_000, 50
N_TRAIN, CANDIDATES = 10_000, 20
REF_TRAIN_IMPRESSIONS = 640  # the reference is slow: time it on a prefix
POOL_USERS, POOL_SIZE, REF_POOL_USERS = 2_000, 5_000, 100


def synthetic_world(seed: int = 0) -> tuple[ItemFeatures, ImpressionData, np.ndarray]:
    """Category-clustered items, users with category preferences, one click per impression."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, N_CATS, N_ITEMS)
    centers = rng.normal(0, 1, (N_CATS, DIM))
    title = centers[cats] + rng.normal(0, 1.0, (N_ITEMS, DIM))
    title /= np.linalg.norm(title, axis=1, keepdims=True)  # unit rows, like MiniLM
    items = ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(N_ITEMS)]),
        embeddings={"title": title.astype(np.float32)},
        categories=cats.astype(np.int64),
        category_names=[f"cat{c}" for c in range(N_CATS)],
    )
    prefs = rng.dirichlet(np.full(N_CATS, 0.3), size=N_USERS)
    by_cat = [np.flatnonzero(cats == c) for c in range(N_CATS)]
    lengths = np.where(rng.random(N_USERS) < 0.1, 0, rng.integers(1, MAX_HIST + 1, N_USERS))
    history = np.full((N_USERS, MAX_HIST), PAD, dtype=np.int64)
    cdf = np.cumsum(prefs, axis=1)
    for u in range(N_USERS):
        hc = np.minimum(np.searchsorted(cdf[u], rng.random(lengths[u])), N_CATS - 1)
        history[u, MAX_HIST - lengths[u] :] = [by_cat[c][rng.integers(len(by_cat[c]))] for c in hc]
    users = rng.integers(0, N_USERS, N_TRAIN)
    cand = rng.integers(0, N_ITEMS, (N_TRAIN, CANDIDATES))
    util = np.log(prefs[users[:, None], cats[cand]] + 1e-3) + rng.gumbel(size=cand.shape)
    labels = np.zeros(cand.shape, np.int8)
    labels[np.arange(N_TRAIN), util.argmax(1)] = 1
    train = ImpressionData(
        impression_ids=np.arange(N_TRAIN).astype(str),
        user_ids=users.astype(str),
        history=history[users],
        cand_offsets=np.arange(N_TRAIN + 1, dtype=np.int64) * CANDIDATES,
        cand_items=cand.ravel(),
        labels=labels.ravel(),
    )
    return items, train, history


def reference_training(scorer, train, items, n_impressions: int) -> dict[str, float]:
    """Per-impression loop with the same model class, sampler and optimizer."""
    import torch
    import torch.nn.functional as F

    from genre_dagster.scoring.components import ModelSpec, build_model
    from genre_dagster.scoring.training import NegativeSampler

    cfg = scorer.config
    torch.manual_seed(cfg["seed"])
    model = build_model(ModelSpec(cfg, (DIM,), N_CATS))
    model.train()
    inputs = scorer._item_inputs(items)
    sampler = NegativeSampler(train, cfg["negatives"], np.arange(N_ITEMS))
    rng = np.random.default_rng(cfg["seed"])
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    samples = rng.permutation(sampler.n_samples)[:n_impressions]
    start = time.perf_counter()
    for j, sample in enumerate(samples):
        cands = sampler.candidates(np.array([sample]), rng)[0]
        hist = train.history[sampler.sample_impression[sample]]
        hist = hist[hist != PAD][-cfg["max_history"] :]
        if len(hist):
            hist_vecs = model.encode_items(*inputs.take(torch.from_numpy(hist)))[None]
            mask = torch.ones(1, len(hist), dtype=torch.bool)
        else:
            hist_vecs = torch.zeros(1, 1, cfg["hidden_dim"])
            mask = torch.zeros(1, 1, dtype=torch.bool)
        user = model.encode_users(hist_vecs, mask)
        cand_vecs = model.encode_items(*inputs.take(torch.from_numpy(cands)))[None]
        logits = model.predictor(user, cand_vecs)
        loss = F.cross_entropy(logits, torch.zeros(1, dtype=torch.long)) / cfg["batch_size"]
        loss.backward()
        if (j + 1) % cfg["batch_size"] == 0 or j + 1 == len(samples):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    return {
        "impressions": len(samples),
        "seconds": seconds,
        "impressions_per_s": len(samples) / seconds,
    }


def reference_pool(scorer, history, pool, items, cache_pool: bool) -> tuple[np.ndarray, float]:
    """One user per forward pass; the pool is encoded per user unless `cache_pool`."""
    import torch

    model, cfg = scorer._model, scorer.config
    inputs = scorer._item_inputs(items)
    pool_t = torch.from_numpy(pool)
    out = np.empty((len(history), len(pool)), dtype=np.float32)
    start = time.perf_counter()
    with torch.inference_mode():
        cached = model.encode_items(*inputs.take(pool_t)) if cache_pool else None
        for u, row in enumerate(history):
            hist = row[row != PAD][-cfg["max_history"] :]
            if len(hist):
                hist_vecs = model.encode_items(*inputs.take(torch.from_numpy(hist)))[None]
                mask = torch.ones(1, len(hist), dtype=torch.bool)
            else:
                hist_vecs = torch.zeros(1, 1, cfg["hidden_dim"])
                mask = torch.zeros(1, 1, dtype=torch.bool)
            user = model.encode_users(hist_vecs, mask)
            pool_vecs = cached if cache_pool else model.encode_items(*inputs.take(pool_t))
            out[u] = model.predictor(user, pool_vecs[None])[0].numpy()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    args = parser.parse_args()

    import torch

    from genre_dagster.scoring.neural import NRMSScorer

    if args.threads:
        torch.set_num_threads(args.threads)
    items, train, user_history = synthetic_world()
    scorer = NRMSScorer({"epochs": 1})

    log = scorer.fit(train, items)
    fast_train = {
        key: log["epochs"][0][key] for key in ("seconds", "impressions_per_s", "samples_per_s")
    }
    fast_train["impressions"] = log["n_train_impressions"]
    ref_train = reference_training(scorer, train, items, REF_TRAIN_IMPRESSIONS)

    rng = np.random.default_rng(1)
    users = user_history[rng.choice(N_USERS, POOL_USERS, replace=False)]
    pool = np.sort(rng.choice(N_ITEMS, POOL_SIZE, replace=False))
    start = time.perf_counter()
    fast_scores = scorer.score_pool(users, pool, items)
    fast_seconds = time.perf_counter() - start
    naive, naive_seconds = reference_pool(scorer, users[:REF_POOL_USERS], pool, items, False)
    cached, cached_seconds = reference_pool(scorer, users[:REF_POOL_USERS], pool, items, True)
    pairs_ref = REF_POOL_USERS * POOL_SIZE
    fast_rate = POOL_USERS * POOL_SIZE / fast_seconds
    result = {
        "benchmark": "neural_training",
        "command": "python benchmarks/neural_training.py"
        + (f" --threads {args.threads}" if args.threads else ""),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": {
            **describe(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "data": {
            "items": N_ITEMS,
            "embedding_dim": DIM,
            "train_impressions": N_TRAIN,
            "candidates_per_impression": CANDIDATES,
            "max_history": MAX_HIST,
        },
        "model": {"scorer_id": scorer.scorer_id, "config": scorer.config},
        "training": {
            "fast": fast_train,
            "reference_per_impression": ref_train,
            "speedup": fast_train["impressions_per_s"] / ref_train["impressions_per_s"],
        },
        "pool_scoring": {
            "users": POOL_USERS,
            "pool": POOL_SIZE,
            "fast": {"seconds": fast_seconds, "scores_per_s": fast_rate},
            "reference_per_user_naive": {
                "users": REF_POOL_USERS,
                "seconds": naive_seconds,
                "scores_per_s": pairs_ref / naive_seconds,
            },
            "reference_per_user_cached_pool": {
                "users": REF_POOL_USERS,
                "seconds": cached_seconds,
                "scores_per_s": pairs_ref / cached_seconds,
            },
            "speedup_vs_naive": fast_rate / (pairs_ref / naive_seconds),
            "speedup_vs_cached_pool": fast_rate / (pairs_ref / cached_seconds),
            "max_abs_diff_vs_reference": float(
                max(
                    np.abs(fast_scores[:REF_POOL_USERS] - naive).max(),
                    np.abs(fast_scores[:REF_POOL_USERS] - cached).max(),
                )
            ),
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("machine", "training", "pool_scoring")}, indent=2))


if __name__ == "__main__":
    main()
