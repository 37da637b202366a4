"""Array containers of items and impressions, shared by scoring, evaluation and serving.

They live outside `scoring/` because the metrics of `evaluation/` read them too, and scorers
call those metrics: with the containers in `scoring/` the two packages imported each other.

Scorers never see DataFrames or Dagster: the assets turn DuckDB tables into these containers
(item features indexed 0..n_items-1, impressions with padded histories and flat candidates) and
hand them to `fit` / `score`. Keeping the containers plain numpy makes scorers easy to test with
hand-made arrays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAD = -1  # history padding index
# Item indices in histories and candidate lists. int32 holds 2 billion items and halves what
# int64 took: a MIND-large train split's histories and candidates were 1.4 GB in int64.
INDEX_DTYPE = np.int32


@dataclass
class ItemFeatures:
    """Everything a scorer may know about items, row i describing item index i.

    Attributes:
        item_ids: news ids, shape [n_items] (object/str array).
        embeddings: text field name -> float32 matrix [n_items, dim] (e.g. "title",
            "title_abstract", "summary"); rows need not be normalized.
        categories: category index per item, shape [n_items], int64.
        category_names: category vocabulary; categories[i] indexes it.
        is_synthetic: True for LLM-generated items (never candidates, never recommended).
        publish_day: optional day index per item (float; NaN when unknown), for recency.
        layer_states: optional text field name -> token states of each item's text after
            layer k of a language model (embedding.layer_cache.LayerStates), read by a
            fine-tuned text encoder (config text_encoder="tuned").
    """

    item_ids: np.ndarray
    embeddings: dict[str, np.ndarray]
    categories: np.ndarray
    category_names: list[str]
    is_synthetic: np.ndarray | None = None
    publish_day: np.ndarray | None = None
    layer_states: dict[str, Any] | None = None
    _index: dict[str, int] = field(default_factory=dict, repr=False)
    # Arrays derived from the embeddings once and shared by every caller (scoring.content's
    # unit-norm fields), with the source arrays they came from.
    _derived: dict[Any, tuple[tuple, np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        for name, matrix in self.embeddings.items():
            if matrix.shape[0] != n:
                raise ValueError(
                    f"embedding field {name!r} has {matrix.shape[0]} rows, expected {n} items"
                )
        for name, states in (self.layer_states or {}).items():
            if states.n_rows != n:
                raise ValueError(
                    f"layer states of field {name!r} have {states.n_rows} rows, expected {n} items"
                )
        if len(self.categories) != n:
            raise ValueError(f"categories has {len(self.categories)} rows, expected {n}")
        if self.is_synthetic is None:
            self.is_synthetic = np.zeros(n, dtype=bool)
        self._index = {str(item): i for i, item in enumerate(self.item_ids)}

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def index_of(self, ids: list[str] | np.ndarray) -> np.ndarray:
        """Map news ids to item indices; raises KeyError naming the first unknown id."""
        try:
            return np.fromiter((self._index[str(i)] for i in ids), dtype=np.int64, count=len(ids))
        except KeyError as exc:
            raise KeyError(f"unknown item id {exc.args[0]!r}") from None


@dataclass
class ImpressionData:
    """A set of impressions: padded histories plus a flat (CSR) list of candidates.

    Attributes:
        impression_ids: shape [n_impressions].
        user_ids: shape [n_impressions].
        history: INDEX_DTYPE [n_impressions, max_history] item indices, most recent LAST,
            left-padded with PAD (-1).
        cand_offsets: int64 [n_impressions + 1]; candidates of impression j are
            cand_items[cand_offsets[j]:cand_offsets[j + 1]] in the order shown.
        cand_items: INDEX_DTYPE [n_candidates] item indices (built by the loader; any
            integer dtype works).
        labels: int8 [n_candidates]; 1 clicked, 0 not, -1 unknown (unlabeled split).
        day_index: optional float [n_impressions] day of the impression (for recency features).
    """

    impression_ids: np.ndarray
    user_ids: np.ndarray
    history: np.ndarray
    cand_offsets: np.ndarray
    cand_items: np.ndarray
    labels: np.ndarray
    day_index: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.impression_ids)
        if self.history.ndim != 2 or self.history.shape[0] != n:
            raise ValueError(f"history must be [n_impressions={n}, max_history]")
        if len(self.cand_offsets) != n + 1 or self.cand_offsets[-1] != len(self.cand_items):
            raise ValueError(
                "cand_offsets must have n_impressions+1 entries ending at len(cand_items)"
            )
        if len(self.labels) != len(self.cand_items):
            raise ValueError("labels and cand_items must have the same length")

    @property
    def n_impressions(self) -> int:
        return len(self.impression_ids)

    @property
    def candidate_impression(self) -> np.ndarray:
        """Impression row index of every candidate, shape [n_candidates]."""
        counts = np.diff(self.cand_offsets)
        dtype = INDEX_DTYPE if self.n_impressions < np.iinfo(INDEX_DTYPE).max else np.int64
        return np.repeat(np.arange(self.n_impressions, dtype=dtype), counts)

    def history_lengths(self) -> np.ndarray:
        return (self.history != PAD).sum(axis=1)

    def take(self, rows: np.ndarray) -> ImpressionData:
        """The impressions at `rows` (in that order) with their candidates, as a new set."""
        rows = np.asarray(rows, dtype=np.int64)
        counts = self.cand_offsets[rows + 1] - self.cand_offsets[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        flat = candidate_positions(self.cand_offsets, rows)
        return ImpressionData(
            impression_ids=self.impression_ids[rows],
            user_ids=self.user_ids[rows],
            history=self.history[rows],
            cand_offsets=offsets,
            cand_items=self.cand_items[flat],
            labels=self.labels[flat],
            day_index=None if self.day_index is None else self.day_index[rows],
        )


def candidate_positions(cand_offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Positions (into cand_items) of the candidates of impressions `rows`, impression after
    impression, each impression's in its order."""
    cand_offsets = np.asarray(cand_offsets, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    starts = cand_offsets[rows]
    counts = cand_offsets[rows + 1] - starts
    before = np.cumsum(counts) - counts  # candidates of the earlier rows
    # each impression's start, then +1 for each next candidate
    return np.repeat(starts - before, counts) + np.arange(counts.sum())


@dataclass
class ProfileRows:
    """Profile vectors aligned with rows (impressions or users) by reference: row r's vector
    is `table[index[r]]`, and the table's last row is zeros, the row of every row without a
    profile. A copy of the vector per row was [n_impressions, dim] float32, 2.9 GB of mostly
    zeros for a MIND-large train split, and building it (NaN mask, float64 `np.where`) was
    most of the +15.4 GB a profile variant's step took there."""

    table: np.ndarray  # float32 [n_profiles + 1, dim], the last row zeros
    index: np.ndarray  # int64 [n_rows], len(table) - 1 for rows without a profile

    @classmethod
    def from_dense(cls, vectors: np.ndarray, has: np.ndarray) -> ProfileRows:
        """From one vector per row (rows where `has` is False are without a profile)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        table = np.concatenate([vectors, np.zeros((1, vectors.shape[1]), np.float32)])
        return cls(table, np.where(has, np.arange(len(vectors)), len(vectors)))

    @property
    def has(self) -> np.ndarray:
        return self.index != len(self.table) - 1

    def take(self, rows: np.ndarray | slice) -> ProfileRows:
        return ProfileRows(self.table, self.index[rows])

    def dense(self) -> tuple[np.ndarray, np.ndarray]:
        """(vectors [n_rows, dim] float32, has [n_rows]): for a batch, not a whole split."""
        return self.table[self.index], self.has
