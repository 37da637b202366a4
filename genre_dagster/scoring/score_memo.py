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

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures

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


# ---------------------------------------------------------------- per-impression digests
# A split's fingerprint changes when one item or one profile it reads changes: GENRE's
# enrichment adds a few summaries and profiles each night, so a summary or profile variant found
# no kept scores of its validation day at all and scored the whole day again (MIND-large: six
# steps, 25-50 s each, against 16 new summaries and 8 new profiles). Per-impression digests say
# which impressions read exactly what they read when their scores were kept.
#
# Hand-written: no library hashes the rows of NumPy arrays, and hashlib takes one call per
# value. Items, ids and profile rows get a 128-bit blake2b each (one call per value: there are
# about as many as impressions); an impression's history and candidates, ragged lists of those
# digests, are combined by a multiply-sum with random odd keys per position and lane (a
# universal hash, vectorized), and every field is folded in through splitmix64's mixer.

DIGEST_VERSION = "impressions-v1"
_LANES = 2  # 64-bit words per digest
_ROW_CHUNK = 65_536  # history rows combined at a time (bounds the temporary uint64 copies)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, element-wise on uint64 (a bijection that spreads every bit)."""
    x = np.array(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _keys(name: str, n: int) -> np.ndarray:
    """uint64 [_LANES, n], odd: the keys of field `name` per lane and position; position i's
    key does not depend on `n`."""
    rows = []
    for lane in range(_LANES):
        seed = hashlib.blake2b(f"{lane}|{name}".encode(), digest_size=8).digest()
        rng = np.random.default_rng(int.from_bytes(seed, "little"))
        rows.append(rng.integers(0, 2**64, n, dtype=np.uint64) | np.uint64(1))
    return np.stack(rows)


def _fold(acc: np.ndarray, name: str, words: np.ndarray) -> np.ndarray:
    """acc [n, _LANES] with the words [n] or [n, _LANES] of field `name` folded in."""
    words = np.asarray(words, dtype=np.uint64)
    if words.ndim == 1:
        words = np.repeat(words[:, None], _LANES, axis=1)
    with np.errstate(over="ignore"):
        return _mix(acc * np.uint64(0x100000001B3) + _mix(words ^ _keys(name, 1)[:, 0]))


def _blake(chunks) -> np.ndarray:
    """uint64 [n, _LANES]: a 128-bit blake2b of each bytes-like in `chunks`."""
    size = 8 * _LANES
    joined = b"".join(hashlib.blake2b(c, digest_size=size).digest() for c in chunks)
    return np.frombuffer(joined, dtype=np.uint64).reshape(-1, _LANES)


def _string_words(values) -> np.ndarray:
    """uint64 [n, _LANES]: each value's text hashed."""
    return _blake(str(v).encode() for v in np.asarray(values, dtype=object).ravel())


def _row_words(matrix: np.ndarray) -> np.ndarray:
    """uint64 [n, _LANES]: each row's bytes hashed (with the dtype and width, folded later)."""
    matrix = np.ascontiguousarray(matrix)
    return _blake(memoryview(row).cast("B") for row in matrix)


def _item_words(config: dict, items: ItemFeatures, used: np.ndarray) -> np.ndarray:
    """uint64 [n_items + 1, _LANES]: the digest of each item in `used` (every row the scorer
    configured by `config` reads: id, category name, synthetic flag, publish day, embedding
    fields, layer states), zeros elsewhere and in the last row (the padding's)."""
    from genre_dagster.scoring.inputs import embedding_fields, layer_state_request

    acc = np.zeros((len(used), _LANES), dtype=np.uint64)
    acc = _fold(acc, "item_id", _string_words(np.asarray(items.item_ids)[used]))
    names = _string_words(items.category_names)
    acc = _fold(acc, "category", names[np.asarray(items.categories)[used]])
    acc = _fold(acc, "is_synthetic", np.asarray(items.is_synthetic, dtype=np.uint64)[used])
    if items.publish_day is not None:
        days = np.asarray(items.publish_day, dtype=np.float64)[used]
        acc = _fold(acc, "publish_day", np.where(np.isnan(days), np.nan, days).view(np.uint64))
    for field in embedding_fields(config):
        if field in items.embeddings:
            rows = np.asarray(items.embeddings[field])[used]
            name = f"embedding:{field}|{rows.dtype.str}|{rows.shape[1]}"
            acc = _fold(acc, name, _row_words(rows))
    request = layer_state_request([config])
    for field in request[1] if request else []:
        states = (items.layer_states or {}).get(field)
        if states is not None:
            texts = np.asarray(states.text_hashes, dtype=object)[used]
            words = _string_words([f"{states.source.cache_id}|{t}" for t in texts])
            acc = _fold(acc, f"layer_states:{field}", words)
    out = np.zeros((items.n_items + 1, _LANES), dtype=np.uint64)
    out[used] = acc
    return out


def _id_words(memo: dict | None, name: str, ids) -> np.ndarray:
    """`_string_words(ids)`, taken from `memo` when it holds them for this very array."""
    if memo is None:
        return _string_words(ids)
    held = memo.get(name)
    if held is not None and held[0] is ids:
        return held[1]
    words = _string_words(ids)
    memo[name] = (ids, words)  # the array itself is held: its identity stays its own
    return words


def impression_digests(
    config: dict,
    data: ImpressionData,
    items: ItemFeatures,
    day_zero: date | None,
    profiles=None,
    memo: dict | None = None,
) -> np.ndarray:
    """uint64 [n_impressions, _LANES]: per impression, a digest of everything the scorer
    configured by `config` reads to score it, the same inputs as `scores_fingerprint` covers
    for the whole split: impression and user ids, day, the history and candidates in order
    (each item by id, with its rows), and the user's profile for a profile scorer. Labels are
    left out: they change the metrics, never the scores.

    Two impressions with equal digests get equal scores from one model whatever split, night
    or item table they were read from: a scorer scores each impression on its own inputs.

    `memo` (a dict kept between calls) saves hashing the same id arrays again: the leaderboard
    digests one split for every model it keeps."""
    history = np.asarray(data.history)
    cand_items = np.asarray(data.cand_items, dtype=np.int64)
    seen = np.zeros(items.n_items + 1, dtype=bool)
    seen[history] = True
    seen[cand_items] = True
    item = _item_words(config, items, np.flatnonzero(seen[:-1]))  # PAD (-1): the zero row

    n = data.n_impressions
    acc = np.zeros((n, _LANES), dtype=np.uint64)
    acc = _fold(acc, f"{DIGEST_VERSION}|{day_zero}", np.zeros(n, dtype=np.uint64))
    acc = _fold(acc, "impression_id", _id_words(memo, "impression_id", data.impression_ids))
    acc = _fold(acc, "user_id", _id_words(memo, "user_id", data.user_ids))
    if data.day_index is not None:
        days = np.asarray(data.day_index, dtype=np.float64)
        acc = _fold(acc, "day_index", np.where(np.isnan(days), np.nan, days).view(np.uint64))

    # history: keyed by position from the most recent item, so a split read with another
    # width of left padding gives the same digests (padding's zero words add nothing)
    width = history.shape[1]
    hist_keys = _keys("history", width)[:, ::-1]  # the most recent item's key first
    hist = np.zeros((n, _LANES), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for s in range(0, n, _ROW_CHUNK):
            part = history[s : s + _ROW_CHUNK]
            for lane in range(_LANES):
                hist[s : s + _ROW_CHUNK, lane] = (item[part, lane] * hist_keys[lane]).sum(axis=1)
    acc = _fold(acc, "history", hist)
    acc = _fold(acc, "history_length", (history != PAD).sum(axis=1).astype(np.uint64))

    # candidates, in order: keyed by their position within the impression
    offsets = np.asarray(data.cand_offsets, dtype=np.int64)
    counts = np.diff(offsets)
    position = np.arange(len(cand_items)) - np.repeat(offsets[:-1], counts)
    pos_keys = _keys("candidates", max(int(counts.max()) if len(counts) else 0, 1))
    cand = np.zeros((n, _LANES), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lane in range(_LANES):
            words = item[cand_items, lane] * pos_keys[lane][position]
            total = np.concatenate([[np.uint64(0)], np.cumsum(words, dtype=np.uint64)])
            cand[:, lane] = total[offsets[1:]] - total[offsets[:-1]]
    acc = _fold(acc, "candidates", cand)
    acc = _fold(acc, "candidate_count", counts.astype(np.uint64))

    if config.get("profile") and profiles is not None:
        rows = profiles.profile_rows(np.asarray(data.user_ids))
        table = np.ascontiguousarray(rows.table, dtype=np.float32)
        name = f"profile|{table.shape[1]}"
        acc = _fold(acc, name, _row_words(table)[rows.index])
        acc = _fold(acc, "profile_has", np.asarray(rows.has, dtype=np.uint64))
    return acc
