"""Row validation as ordered checks: each row gets the reason of its first failing check."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

Check = tuple[pl.Expr, str, pl.Expr]
"""(condition that marks a row as bad, reason code, detail expression)."""


def first_failure(checks: Sequence[Check]) -> tuple[pl.Expr, pl.Expr]:
    """Expressions for the `reason` and `detail` of the first failing check (null when none fails).

    A condition that evaluates to null (a field missing because an earlier check failed) counts
    as passing, so only earlier checks decide such rows.
    """
    reason = pl.coalesce([pl.when(cond).then(pl.lit(code)) for cond, code, _ in checks])
    detail = pl.coalesce([pl.when(cond).then(text) for cond, _, text in checks])
    return reason, detail


def pseudonym_table(
    raw_ids: pl.Series, pseudonymize: Callable[[pl.Series], pl.Series]
) -> pl.DataFrame:
    """Columns `raw_user_id`, `user_pseudonym` for the distinct non-null ids, via one call.

    Raises ValueError when the callable does not return one non-null pseudonym per id.
    """
    uniques = raw_ids.cast(pl.Utf8).drop_nulls().unique(maintain_order=True)
    pseudonyms = pseudonymize(uniques.alias("raw_user_id"))
    if len(pseudonyms) != len(uniques) or pseudonyms.null_count():
        raise ValueError(
            f"pseudonymize returned {len(pseudonyms)} values ({pseudonyms.null_count()} null) "
            f"for {len(uniques)} user ids; it must map every id to one pseudonym"
        )
    return pl.DataFrame({"raw_user_id": uniques, "user_pseudonym": pseudonyms.cast(pl.Utf8)})
