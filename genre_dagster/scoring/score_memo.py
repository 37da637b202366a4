"""A fingerprint of the data a model's scores of a split depend on, written in item ids.

Tonight's validation day is the day last night's leaderboard scored as its test day. A model
reused within its cadence gives the same scores to the same impressions, so its step can read
the scores the leaderboard kept instead of scoring the day again (MIND-large: about 40 s per
NRMS model). `training_fingerprint` cannot tell that the two are the same data: it names the
split, covers the whole item table (a new day adds items) and reads item indices (which shift
when items are added). `scores_fingerprint` covers only what a scorer reads to score these
impressions: the impressions themselves (ids, users, labels, days), their history and candidate
items by id, those items' rows (categories by name, publish days, the embedding fields and layer
states the config reads) and, for a profile scorer, the profiles of their users. Equal
fingerprints mean equal inputs whatever split, night or item table they were read from.
"""

from __future__ import annotations

import hashlib
from datetime import date

import numpy as np

from genre_dagster.arrays import ImpressionData, ItemFeatures

VERSION = "scores-v2"  # v2 (475273d): int32 ranks; scores kept under v1 no longer match
_USER_CHUNK = 65_536  # profile rows hashed at a time (a dense copy of every user's is large)


def scores_fingerprint(
    config: dict,
    data: ImpressionData,
    items: ItemFeatures,
    day_zero: date | None,
    profiles=None,
) -> str:
    """Hash of everything the scorer configured by `config` reads to score `data` (see the
    module doc). `day_zero` is the day the impressions' and items' day indices count from;
    `profiles` (scoring.neural.UserProfiles) is read when the config has `profile`."""
    from genre_dagster.scoring.inputs import embedding_fields, layer_state_request
    from genre_dagster.scoring.plugins import hash_array

    digest = hashlib.blake2b(digest_size=16)

    def add(name: str, array) -> None:
        array = np.asarray(array)
        if array.dtype == object:
            array = np.asarray([str(v) for v in array.ravel()], dtype=np.str_)
        if array.dtype.kind == "U" and array.size:  # the width of the longest, not of a vocabulary
            array = array.astype(f"<U{max(int(np.char.str_len(array).max()), 1)}")
        hash_array(digest, name, array)

    digest.update(f"{VERSION}|{day_zero}|".encode())
    # The items the impressions reference, in the order of their ids: an item's rank in that
    # order replaces its index, which depends on the rest of the item table.
    history = np.asarray(data.history)
    seen = np.zeros(items.n_items + 1, dtype=bool)  # the last slot: PAD (-1)
    seen[history] = True  # a mask, not np.unique: no sort of every history entry
    seen[np.asarray(data.cand_items)] = True
    used = np.flatnonzero(seen[:-1])
    ids = np.asarray([str(i) for i in np.asarray(items.item_ids)[used]], dtype=np.str_)
    order = np.argsort(ids, kind="stable")
    used, ids = used[order], ids[order]
    rank = np.full(items.n_items + 1, -1, dtype=np.int32)  # PAD's slot stays -1
    rank[used] = np.arange(len(used), dtype=np.int32)

    add("impression_ids", data.impression_ids)
    add("user_ids", data.user_ids)
    add("history", rank[history])
    add("cand_offsets", np.asarray(data.cand_offsets, dtype=np.int64))
    add("candidates", rank[np.asarray(data.cand_items)])
    add("labels", data.labels)
    if data.day_index is not None:
        add("day_index", data.day_index)

    add("item_ids", ids)
    names = np.asarray(items.category_names, dtype=np.str_)
    add("categories", names[np.asarray(items.categories)[used]])
    add("is_synthetic", np.asarray(items.is_synthetic, dtype=bool)[used])
    if items.publish_day is not None:
        add("publish_day", np.asarray(items.publish_day)[used])
    for field in embedding_fields(config):  # "a+b" is listed as a and b
        if field in items.embeddings:
            add(f"embedding:{field}", items.embeddings[field][used])
    request = layer_state_request([config])
    for field in request[1] if request else []:
        states = (items.layer_states or {}).get(field)
        if states is not None:
            digest.update(f"layer_states:{field}|{states.source.cache_id}|".encode())
            add(f"layer_states:{field}", np.asarray(states.text_hashes, dtype=np.str_)[used])
    if config.get("profile") and profiles is not None:
        users = np.unique(np.asarray([str(u) for u in data.user_ids], dtype=np.str_))
        for start in range(0, len(users), _USER_CHUNK):
            rows = profiles.profile_rows(users[start : start + _USER_CHUNK])
            add("profile_has", rows.has)
            add("profile_vectors", rows.table[rows.index])
    return digest.hexdigest()
