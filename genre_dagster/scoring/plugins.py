"""GENRE plug-ins with nothing to learn from, and the training fingerprint that reuses a model.

A GENRE variant adds one LLM output to a base scorer: user profiles (the profile plug-in) or
synthetic items in cold users' histories (generated history). When the LLM gave no such output
for any training user (a small local model whose answers all failed validation, a budget of 0),
the variant would train the base model again, with an untrained extra layer for profiles. The
scorer then trains the base configuration instead and says so; two assets that train the same
configuration on the same data share one training through `training_fingerprint`.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from genre_dagster.arrays import PAD, ImpressionData
from genre_dagster.warehouse import SYNTHETIC_ITEMS, USER_PROFILE_EMBEDDINGS, USER_PROFILES

# The table that holds each plug-in's LLM output.
PLUGIN_TABLES = {"profile": USER_PROFILE_EMBEDDINGS, "generated_history": SYNTHETIC_ITEMS}


def inactive_plugins(config: dict[str, Any], inputs, splits: tuple[str, ...]) -> dict[str, str]:
    """Plug-ins `config` turns on whose input no row of `splits` has -> the reason, per key."""
    from genre_dagster.scoring.inputs import profile_coverage

    data = [inputs.splits[s] for s in splits if s in inputs.splits]
    users = np.concatenate([d.user_ids for d in data]) if data else np.array([], dtype=object)
    inactive: dict[str, str] = {}
    if config.get("profile") and profile_coverage(inputs.profiles, users) == 0.0:
        inactive["profile"] = (
            f"none of the {len(np.unique(users))} users of the {'/'.join(splits)} split(s) has "
            f"a GENRE profile ({USER_PROFILES} holds no valid answer for them)"
        )
    if config.get("generated_history") and not any(_has_synthetic(d, inputs.items) for d in data):
        inactive["generated_history"] = (
            f"no history of the {'/'.join(splits)} split(s) holds a GENRE synthetic item "
            f"({SYNTHETIC_ITEMS} has none for these users)"
        )
    return inactive


def _has_synthetic(data: ImpressionData, items) -> bool:
    history = data.history[data.history != PAD]
    return bool(np.asarray(items.is_synthetic, dtype=bool)[history].any())


def without(config: dict[str, Any], keys) -> dict[str, Any]:
    """`config` with the plug-in `keys` switched off (the base scorer's configuration)."""
    return {k: v for k, v in config.items() if k not in keys}


def hash_array(digest, name: str, array) -> None:
    """Feed `array` to `digest` under `name`, with its dtype and shape (object arrays as
    strings). Shared by `training_fingerprint` and `score_memo.scores_fingerprint`."""
    array = np.ascontiguousarray(np.asarray(array))
    if array.dtype == object:
        array = np.asarray([str(v) for v in array.ravel()], dtype=np.str_)
    digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
    digest.update(array)  # the buffer itself: tobytes() copied a whole split


def training_fingerprint(inputs, splits: tuple[str, ...], profiles: bool) -> str:
    """Hash of everything a scorer learns from: the item table's arrays (ids, categories,
    synthetic flags, publish days, every loaded embedding field), the impressions of `splits`
    (validation picks the kept epoch) and, with `profiles`, the profile vectors."""
    digest = hashlib.blake2b(digest_size=16)
    add = lambda name, array: hash_array(digest, name, array)  # noqa: E731

    items = inputs.items
    add("item_ids", items.item_ids)
    add("categories", items.categories)
    add("category_names", np.asarray(items.category_names, dtype=np.str_))
    add("is_synthetic", np.asarray(items.is_synthetic, dtype=bool))
    if items.publish_day is not None:
        add("publish_day", items.publish_day)
    for field in sorted(items.embeddings):
        add(f"embedding:{field}", items.embeddings[field])
    for field in sorted(items.layer_states or {}):  # the tuned text encoder's input
        states = items.layer_states[field]
        digest.update(f"layer_states:{field}|{states.source.cache_id}|".encode())
        add(f"layer_states:{field}", np.asarray(states.text_hashes, dtype=np.str_))
    for split in splits:
        data = inputs.splits[split]
        for part in ("user_ids", "history", "cand_offsets", "cand_items", "labels"):
            add(f"{split}:{part}", getattr(data, part))
        if data.day_index is not None:
            add(f"{split}:day_index", data.day_index)
    if profiles and inputs.profiles is not None:
        add("profile_users", inputs.profiles.user_ids)
        add("profile_vectors", inputs.profiles.vectors)
    return digest.hexdigest()
