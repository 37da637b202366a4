"""Pseudonymization of user ids: keyed hashing so raw ids never reach storage."""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

DEFAULT_LOCAL_PSEUDONYM_KEY: bytes = b"genre-dagster-local-demo-key--not-for-real-users"
"""Key used when none is configured. For local demos on generated data ONLY: it is public (it is
in this file), so anyone can recompute the pseudonyms. Real user data needs a secret key
(`GENRE_PSEUDONYM_KEY`), and production loads the key with `require=True`."""

PSEUDONYM_PREFIX = "u_"
PSEUDONYM_HEX_CHARS = 16


def pseudonym(raw_id: str, key: bytes) -> str:
    """`u_` + the first 16 hex characters of HMAC-SHA256(key, raw_id)."""
    digest = hmac.new(key, raw_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]


def pseudonymize_user_ids(ids: pl.Series, key: bytes) -> pl.Series:
    """Map raw user ids to pseudonyms (nulls stay null); same key and id give the same pseudonym.

    Hashes each distinct id once and maps back, so a user with many impressions costs one HMAC.
    """
    if not key:
        raise ValueError("pseudonymize_user_ids: the key is empty")
    ids = ids.cast(pl.Utf8)
    uniques = ids.drop_nulls().unique()
    mapping = {raw: pseudonym(raw, key) for raw in uniques.to_list()}
    return ids.replace_strict(mapping, default=None, return_dtype=pl.Utf8).alias(ids.name)


def load_pseudonym_key(env_value: str | None, require: bool) -> bytes:
    """The HMAC key from its configured value (usually `GENRE_PSEUDONYM_KEY`).

    An empty or missing value gives `DEFAULT_LOCAL_PSEUDONYM_KEY` (local demos only), or raises
    ValueError when `require` is true (production must never fall back to the public key).
    """
    if env_value is not None and env_value.strip():
        return env_value.encode("utf-8")
    if require:
        raise ValueError(
            "no pseudonym key configured: set GENRE_PSEUDONYM_KEY to a secret value (this "
            "environment requires one; the built-in local demo key is public and only for "
            "generated data)"
        )
    return DEFAULT_LOCAL_PSEUDONYM_KEY
