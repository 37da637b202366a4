"""A small synthetic world for the neural recommender tests.

Items in categories with category-clustered embeddings; users with category preferences;
histories drawn from the preferences (some empty); one click per impression drawn from the
preferences. An oracle that knows the preferences sets the ceiling for AUC.
"""

from __future__ import annotations

import numpy as np

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures
from genre_dagster.evaluation.metrics import evaluate
from genre_dagster.scoring.neural import UserProfiles

N_ITEMS, N_CATS, DIM, N_USERS, MAX_HIST = 300, 6, 32, 200, 25


def _impressions(rng, tag, n, users_hist, prefs, cats):
    users = rng.integers(0, len(prefs), n)
    offsets, cands, labels, truth = [0], [], [], []
    for u in users:
        k = int(rng.integers(5, 13))
        c = rng.choice(N_ITEMS, size=k, replace=False)
        # One click per impression: Gumbel-max over log preference = a draw from the preferences.
        util = np.log(prefs[u][cats[c]] + 1e-3) + rng.gumbel(size=k)
        y = np.zeros(k, np.int8)
        y[np.argmax(util)] = 1
        cands.extend(c)
        labels.extend(y)
        truth.extend(prefs[u][cats[c]])
        offsets.append(len(cands))
    data = ImpressionData(
        impression_ids=np.array([f"{tag}-{j}" for j in range(n)]),
        user_ids=np.array([f"U{u}" for u in users]),
        history=users_hist[users],
        cand_offsets=np.array(offsets, np.int64),
        cand_items=np.array(cands, np.int64),
        labels=np.array(labels, np.int8),
    )
    return data, np.array(truth)


def build_world() -> dict:
    """The world: items, train/valid/test impressions, oracle truth, histories, profiles."""
    rng = np.random.default_rng(7)
    cats = np.arange(N_ITEMS) % N_CATS
    rng.shuffle(cats)
    centers = rng.normal(0, 1, (N_CATS, DIM))
    embeddings = {
        "title": centers[cats] + rng.normal(0, 0.8, (N_ITEMS, DIM)),
        "abstract": centers[cats] @ rng.normal(0, 0.3, (DIM, DIM))
        + rng.normal(0, 1, (N_ITEMS, DIM)),
        "summary": centers[cats] + rng.normal(0, 0.5, (N_ITEMS, DIM)),
    }
    items = ItemFeatures(
        item_ids=np.array([f"N{i}" for i in range(N_ITEMS)]),
        embeddings={k: v.astype(np.float32) for k, v in embeddings.items()},
        categories=cats.astype(np.int64),
        category_names=[f"cat{c}" for c in range(N_CATS)],
    )
    prefs = rng.dirichlet(np.full(N_CATS, 0.4), size=N_USERS)
    by_cat = [np.flatnonzero(cats == c) for c in range(N_CATS)]
    history = np.full((N_USERS, MAX_HIST), PAD, dtype=np.int64)
    lengths = np.where(rng.random(N_USERS) < 0.15, 0, rng.integers(1, MAX_HIST + 1, N_USERS))
    for u in range(N_USERS):
        clicked_cats = rng.choice(N_CATS, size=lengths[u], p=prefs[u])
        history[u, MAX_HIST - lengths[u] :] = [rng.choice(by_cat[c]) for c in clicked_cats]
    train, _ = _impressions(rng, "train", 1500, history, prefs, cats)
    valid, _ = _impressions(rng, "valid", 300, history, prefs, cats)
    test, truth = _impressions(rng, "test", 300, history, prefs, cats)
    # GENRE-like profiles: a noisy view of the preferences, embedded in 16 dims; 30% missing.
    topics = rng.normal(0, 1, (N_CATS, 16))
    has = rng.random(N_USERS) > 0.3
    profiles = UserProfiles(
        user_ids=np.array([f"U{u}" for u in np.flatnonzero(has)]),
        vectors=(prefs @ topics + rng.normal(0, 0.1, (N_USERS, 16)))[has].astype(np.float32),
    )
    return {
        "items": items,
        "train": train,
        "valid": valid,
        "test": test,
        "truth": truth,
        "user_history": history,
        "profiles": profiles,
    }


def auc(scores, data):
    return evaluate(data.candidate_impression, data.labels, scores)["auc"]


def subset(data: ImpressionData, n: int) -> ImpressionData:
    return data.take(np.arange(n))
