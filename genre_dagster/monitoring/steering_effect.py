"""How steering changed the lists: the category mix of the recommended items before and after,
and the total-variation shift between two mixes (`serving/recommendations` metadata). Lists'
diversity is `beyond_accuracy.intra_list_diversity`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def category_mix(categories_of_recommended: Sequence[str] | np.ndarray) -> dict[str, float]:
    """Share of each category among recommended items, largest first, ties by name ({} for no
    items). Counted as an Arrow string column: a million users' lists are ten million names,
    which a fixed-width numpy string array would copy at the longest name's width."""
    import polars as pl

    names = pl.Series("category", categories_of_recommended, dtype=pl.String)
    counts = names.value_counts(name="n").sort(["n", "category"], descending=[True, False])
    total = names.len()
    return {value: n / total for value, n in counts.iter_rows()}


def mix_shift(before: Mapping[str, float], after: Mapping[str, float]) -> float:
    """Total variation distance between two category mixes (0: same, 1: disjoint)."""
    if not before or not after:
        raise ValueError("mix_shift: both category mixes need at least one category")
    names = set(before) | set(after)
    return 0.5 * sum(abs(before.get(n, 0.0) - after.get(n, 0.0)) for n in names)
