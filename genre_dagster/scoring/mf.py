"""Matrix factorization of the user-item click matrix (implicit-feedback ALS).

Training: every training user's interactions (history items plus clicked candidates, binary)
form a sparse matrix factorized with implicit ALS (Hu, Koren & Volinsky 2008): preference 1 on
interactions, confidence 1 + alpha, all other cells preference 0 with confidence 1. Only the item
factors are kept. Scoring: users are known only by their history, so each history is "folded in"
with the same least-squares step ALS uses for users (or, optionally, the mean of its item
factors); score = user factor . item factor. Items never seen in training have a zero factor
and score 0; an empty history (or one of unseen items only) scores 0 everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from genre_dagster.arrays import PAD, ImpressionData, ItemFeatures
from genre_dagster.scoring.artifact import (
    check_choice,
    read_scorer_json,
    resolve_config,
    write_scorer_json,
)
from genre_dagster.scoring.base import Scorer
from genre_dagster.scoring.item_align import ItemAlignment
from genre_dagster.scoring.item_stats import require_labels
from genre_dagster.scoring.user_profile import distinct_histories

DEFAULTS: dict[str, Any] = {
    "factors": 32,
    "iterations": 10,
    "regularization": 1.0,
    "alpha": 10.0,  # confidence of an observed interaction: 1 + alpha
    "fold_in": "least_squares",  # "least_squares" | "mean"
    "seed": 0,
}

_BATCH_BUDGET = 65_536  # rows x max interactions per solve batch (bounds [rows, len, f] memory)


def _csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]):
    """Binary CSR matrix with a 1 at every (row, col) pair (duplicates merged)."""
    from scipy import sparse

    matrix = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float64), (rows, cols)), shape=shape, dtype=np.float64
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def als_solve(matrix, fixed: np.ndarray, regularization: float, alpha: float) -> np.ndarray:
    """One ALS half-step: the least-squares factor of every row of `matrix` given `fixed`.

    For row u with interactions I_u: (F'F + alpha F_I'F_I + reg I) x_u = (1 + alpha) F_I' 1.
    Rows without interactions get the zero vector.
    """
    n_rows, f = matrix.shape[0], fixed.shape[1]
    gram = fixed.T @ fixed + regularization * np.eye(f)
    padded = np.vstack([fixed, np.zeros((1, f))])  # index len(fixed) = zero row (padding)
    out = np.zeros((n_rows, f), dtype=np.float64)
    indptr, indices = matrix.indptr, matrix.indices
    lengths = np.diff(indptr)
    # Rows sorted by length and batched so each batch is a dense [rows, max_len, f] block with
    # little padding: per-row Gram matrices become one batched matmul.
    order = np.flatnonzero(lengths > 0)
    order = order[np.argsort(lengths[order], kind="stable")]
    start = 0
    while start < len(order):
        size = max(1, _BATCH_BUDGET // int(lengths[order[start]]))
        size = max(1, _BATCH_BUDGET // int(lengths[order[min(start + size, len(order)) - 1]]))
        batch = order[start : start + size]
        width = int(lengths[batch[-1]])
        slots = np.arange(width)
        valid = slots[None, :] < lengths[batch][:, None]
        index = np.full((len(batch), width), len(fixed), dtype=np.int64)
        index[valid] = indices[(indptr[batch][:, None] + slots[None, :])[valid]]
        block = padded[index]  # [rows, width, f]
        a = gram + alpha * np.matmul(block.transpose(0, 2, 1), block)
        rhs = (1.0 + alpha) * block.sum(axis=1)
        out[batch] = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
        start += len(batch)
    return out


class MatrixFactorizationScorer(Scorer):
    """Implicit ALS item factors; users folded in from their history at scoring time."""

    kind = "matrix_factorization"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(resolve_config(self.kind, DEFAULTS, config))
        check_choice(self.kind, self.config, "fold_in", ("least_squares", "mean"))
        self.item_ids: np.ndarray | None = None
        self.item_factors: np.ndarray | None = None  # [n_known_items, factors]
        self._alignment: ItemAlignment | None = None

    def _set_factors(self, item_ids: np.ndarray, factors: np.ndarray) -> None:
        self.item_ids = np.asarray(item_ids).astype(str)
        self.item_factors = factors.astype(np.float32)
        self._alignment = ItemAlignment(self.item_ids)

    def fit(
        self, train: ImpressionData, items: ItemFeatures, valid: ImpressionData | None = None
    ) -> dict[str, Any]:
        require_labels(train, "matrix factorization")
        c = self.config
        users, user_of_impression = np.unique(np.asarray(train.user_ids), return_inverse=True)
        user_of_impression = user_of_impression.reshape(-1)
        hist_valid = train.history != PAD
        hist_users = np.broadcast_to(user_of_impression[:, None], train.history.shape)[hist_valid]
        clicked = train.labels == 1
        rows = np.concatenate([hist_users, user_of_impression[train.candidate_impression][clicked]])
        cols = np.concatenate([train.history[hist_valid], train.cand_items[clicked]])
        known = np.unique(cols)  # items with at least one interaction
        col_index = np.searchsorted(known, cols)
        user_items = _csr(rows, col_index, (len(users), len(known)))
        item_users = user_items.T.tocsr()

        rng = np.random.default_rng(c["seed"])
        item_f = rng.normal(scale=0.01, size=(len(known), c["factors"]))
        for _ in range(c["iterations"]):
            user_f = als_solve(user_items, item_f, c["regularization"], c["alpha"])
            item_f = als_solve(item_users, user_f, c["regularization"], c["alpha"])
        self._set_factors(np.asarray(items.item_ids)[known], item_f)
        return {
            "n_users": len(users),
            "n_items": len(known),
            "n_interactions": int(user_items.nnz),
            "iterations": c["iterations"],
        }

    def _require_fitted(self) -> tuple[np.ndarray, ItemAlignment]:
        if self.item_factors is None or self._alignment is None:
            raise ValueError("MatrixFactorizationScorer is not fitted: call fit() or load()")
        return self.item_factors, self._alignment

    def user_factors(self, history: np.ndarray, items: ItemFeatures) -> np.ndarray:
        """Fold padded histories into user factors, float32 [n_rows, factors]."""
        factors, alignment = self._require_fitted()
        return self._fold_in(history, alignment.align(factors, items).astype(np.float64))

    def _fold_in(self, history: np.ndarray, aligned: np.ndarray) -> np.ndarray:
        """`user_factors` from the item factors aligned with the items (float64)."""
        n_items = len(aligned)
        rows, inverse = distinct_histories(history)
        valid = rows != PAD
        row_index = np.broadcast_to(np.arange(len(rows))[:, None], rows.shape)[valid]
        matrix = _csr(row_index, rows[valid], (len(rows), n_items))
        if self.config["fold_in"] == "mean":
            counts = np.maximum(np.diff(matrix.indptr), 1)[:, None]
            users = (matrix @ aligned) / counts
        else:
            c = self.config
            users = als_solve(matrix, aligned, c["regularization"], c["alpha"])
        return users.astype(np.float32)[inverse]

    def score(self, data: ImpressionData, items: ItemFeatures) -> np.ndarray:
        factors, alignment = self._require_fitted()
        item_f = alignment.align(factors, items)
        users = self.user_factors(data.history, items)
        out = np.empty(len(data.cand_items), dtype=np.float32)
        user_of_candidate = data.candidate_impression
        for start in range(0, len(out), 262_144):
            stop = start + 262_144
            out[start:stop] = np.einsum(
                "cf,cf->c",
                users[user_of_candidate[start:stop]],
                item_f[data.cand_items[start:stop]],
            )
        return out

    def score_pool(self, history: np.ndarray, pool: np.ndarray, items: ItemFeatures) -> np.ndarray:
        return self.pool_scorer(pool, items)(history)

    def pool_scorer(self, pool: np.ndarray, items: ItemFeatures):
        factors, alignment = self._require_fitted()
        aligned = alignment.align(factors, items)
        pool_t = np.ascontiguousarray(aligned[np.asarray(pool)].T)
        aligned = aligned.astype(np.float64)

        def score(history: np.ndarray) -> np.ndarray:
            return self._fold_in(history, aligned) @ pool_t

        return score

    def save(self, folder: Path) -> None:
        factors, _ = self._require_fitted()
        write_scorer_json(folder, self, {"n_items": len(factors)})
        np.savez(Path(folder) / "item_factors.npz", item_ids=self.item_ids, factors=factors)

    @classmethod
    def load(cls, folder: Path) -> MatrixFactorizationScorer:
        scorer = cls(read_scorer_json(folder, cls.kind)["config"])
        with np.load(Path(folder) / "item_factors.npz", allow_pickle=False) as arrays:
            scorer._set_factors(arrays["item_ids"], arrays["factors"])
        return scorer
