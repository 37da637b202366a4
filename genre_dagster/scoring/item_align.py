"""Per-item arrays stored by news id, re-indexed onto whichever `ItemFeatures` is scored.

Fitted per-item values (click counts, item factors) are saved with the ids they belong to, not
with row numbers: the item table grows every night, so row i at training time need not be row i
at scoring time. Items the model never saw get a fill value.
"""

from __future__ import annotations

import numpy as np

from genre_dagster.arrays import ItemFeatures


class ItemAlignment:
    """Maps stored item ids to the rows of an `ItemFeatures` (cached for the last one seen)."""

    def __init__(self, item_ids: np.ndarray) -> None:
        self.item_ids = np.asarray(item_ids).astype(str)
        self._cached_items: ItemFeatures | None = None
        self._cached_rows: np.ndarray | None = None

    def rows_in(self, items: ItemFeatures) -> np.ndarray:
        """Row of every stored id in `items`, -1 where `items` does not hold it."""
        if self._cached_items is items and self._cached_rows is not None:
            return self._cached_rows
        current = np.asarray(items.item_ids).astype(str)
        if len(current) == len(self.item_ids) and np.array_equal(current, self.item_ids):
            rows = np.arange(len(current), dtype=np.int64)
        else:
            index = {item: i for i, item in enumerate(current.tolist())}
            rows = np.fromiter(
                (index.get(item, -1) for item in self.item_ids.tolist()),
                dtype=np.int64,
                count=len(self.item_ids),
            )
        self._cached_items, self._cached_rows = items, rows
        return rows

    def align(self, values: np.ndarray, items: ItemFeatures, fill: float = 0.0) -> np.ndarray:
        """`values` (one row per stored id) laid out over `items`' rows, `fill` elsewhere."""
        if len(values) != len(self.item_ids):
            raise ValueError(f"{len(values)} values for {len(self.item_ids)} stored item ids")
        rows = self.rows_in(items)
        out = np.full((items.n_items, *values.shape[1:]), fill, dtype=values.dtype)
        known = rows >= 0
        out[rows[known]] = values[known]
        return out
