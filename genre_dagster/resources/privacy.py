"""Pseudonymization of user ids at ingestion."""

from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    import polars as pl


class PrivacyResource(dg.ConfigurableResource):
    """Keyed hashing of user ids; the key comes from `GENRE_PSEUDONYM_KEY` in production.

    Locally an empty key means the documented demo key, which is fine for generated data and
    must not be used for real users (the prod environment refuses to start without a key).
    """

    pseudonym_key: str = Field(default="", description="HMAC key; empty = local demo key")
    require_key: bool = Field(default=False, description="fail when no key is configured")

    def pseudonymize(self, user_ids: pl.Series) -> pl.Series:
        from genre_dagster.ingest import load_pseudonym_key, pseudonymize_user_ids

        key = load_pseudonym_key(self.pseudonym_key or None, require=self.require_key)
        return pseudonymize_user_ids(user_ids, key)

    @property
    def uses_default_key(self) -> bool:
        return not self.pseudonym_key
