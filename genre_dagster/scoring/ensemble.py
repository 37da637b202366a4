"""Ensemble: weighted sum of member scores standardized within each impression.

Standardizing per impression (z-score; constant scores -> 0) puts members on one scale, and the
per-impression metrics only see within-impression order anyway. Weights (non-negative, summing
to 1) are chosen on validation impressions to maximize mean per-impression AUC among: each member
alone, equal weights, a non-negative logistic regression on the standardized scores, and (for up
to `grid_max_members` members) a simplex grid. Since every single member is a candidate, the
ensemble's validation AUC is never below its best member's.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from genre_dagster.arrays import ImpressionData, ItemFeatures
from genre_dagster.evaluation.metrics import evaluate
from genre_dagster.scoring.artifact import read_scorer_json, resolve_config, write_scorer_json
from genre_dagster.scoring.base import Scorer, score_in_chunks
from genre_dagster.scoring.item_stats import require_labels

# Validation impressions a member scores at a time in `fit`: at once, NRMS's user vectors for
# MIND-large's 477k validation impressions added 3-4 GB to the step.
SCORE_CHUNK = 100_000

DEFAULTS: dict[str, Any] = {
    "members": [],  # [{"kind": ..., "config": {...}}, ...]
    "fit_members": True,  # fit members on `train` in fit(); False: use them as given
    "grid_step": 0.1,
    "grid_max_members": 3,
    "max_logistic_candidates": 500_000,
    "seed": 0,
}


def standardize_within(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """z-score of `scores` within each group (dense group index per entry); std 0 -> 0."""
    scores = np.asarray(scores, dtype=np.float64)
    counts = np.bincount(groups).astype(np.float64)
    counts[counts == 0] = 1.0
    mean = np.bincount(groups, weights=scores) / counts
    centered = scores - mean[groups]
    std = np.sqrt(np.bincount(groups, weights=centered**2) / counts)
    scale = np.where(std > 1e-12, std, np.inf)  # constant scores -> 0
    return centered / scale[groups]


def _standardize_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    centered = matrix - matrix.mean(axis=1, keepdims=True)
    std = centered.std(axis=1, keepdims=True)
    return centered / np.where(std > 1e-12, std, np.inf)


def _nonnegative_logistic(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Weights w >= 0 minimizing the logistic loss of z @ w + b (L-BFGS-B)."""
    from scipy.optimize import minimize

    y = labels.astype(np.float64)
    m = z.shape[1]

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        logit = z @ params[:m] + params[m]
        # log(1 + e^x) - y x, computed stably; gradient via sigmoid(x) - y.
        value = np.logaddexp(0.0, logit) - y * logit
        residual = 1.0 / (1.0 + np.exp(-logit)) - y
        grad = np.concatenate([z.T @ residual, [residual.sum()]]) / len(y)
        return float(value.mean()), grad

    bounds = [(0.0, None)] * m + [(None, None)]
    result = minimize(loss, np.full(m + 1, 0.1), jac=True, method="L-BFGS-B", bounds=bounds)
    return result.x[:m]


def _simplex_grid(m: int, step: float) -> list[np.ndarray]:
    n = round(1.0 / step)
    return [
        np.array(parts, dtype=np.float64) / n
        for parts in itertools.product(range(n + 1), repeat=m)
        if sum(parts) == n
    ]


class EnsembleScorer(Scorer):
    """Weighted sum of members' within-impression standardized scores."""

    kind = "ensemble"

    def __init__(
        self, config: dict[str, Any] | None = None, members: list[Scorer] | None = None
    ) -> None:
        config = dict(config or {})
        if members is not None:
            # Members passed in are used as given (already fitted) unless told otherwise; their
            # own configs define the ensemble (and its hash).
            config.setdefault("fit_members", False)
            config["members"] = [{"kind": m.kind, "config": m.config} for m in members]
        super().__init__(resolve_config(self.kind, DEFAULTS, config))
        if not self.config["members"]:
            raise ValueError("ensemble: no members (pass members= or config['members'])")
        self.members: list[Scorer] | None = members
        self.weights: np.ndarray | None = None
        # Where `load` read each member's copy from (None when the members were passed in).
        self.member_folders: list[Path] | None = None

    def _member_list(self) -> list[Scorer]:
        if self.members is None:
            from genre_dagster.scoring.registry import create_scorer

            self.members = [create_scorer(s["kind"], s["config"]) for s in self.config["members"]]
        return self.members

    def fit(
        self,
        train: ImpressionData,
        items: ItemFeatures,
        valid: ImpressionData | None = None,
        member_scores: list[np.ndarray | None] | None = None,
    ) -> dict[str, Any]:
        """Fit the weights on `valid`; `member_scores` may hold each member's scores of
        `valid`'s candidates, already computed (None where the member must score them; ignored
        when the members are refit)."""
        if valid is None:
            raise ValueError("ensemble: weights are fit on validation impressions; pass valid")
        require_labels(valid, "ensemble weights")
        members = self._member_list()
        log: dict[str, Any] = {"members": [m.scorer_id for m in members]}
        if self.config["fit_members"]:
            log["member_logs"] = [m.fit(train, items, valid) for m in members]

        given = member_scores if member_scores and not self.config["fit_members"] else None
        given = given or [None] * len(members)
        if len(given) != len(members):
            raise ValueError(f"member_scores: {len(given)} arrays for {len(members)} members")
        group = valid.candidate_impression
        columns = []
        for member, scores in zip(members, given, strict=True):
            if scores is None:
                scores = score_in_chunks(member, valid, items, SCORE_CHUNK)
            elif scores.shape != valid.cand_items.shape:
                raise ValueError(
                    f"member_scores of {member.scorer_id}: {scores.shape[0]} scores for "
                    f"{len(valid.cand_items)} validation candidates"
                )
            columns.append(standardize_within(group, scores))
        log["member_scores_given"] = sum(s is not None for s in given)
        z = np.column_stack(columns)
        candidates: dict[str, np.ndarray] = {}
        for j, member in enumerate(members):
            candidates[f"only:{member.scorer_id}"] = np.eye(len(members))[j]
        candidates["equal"] = np.full(len(members), 1.0 / len(members))
        sample = np.arange(len(z))
        if len(z) > self.config["max_logistic_candidates"]:
            rng = np.random.default_rng(self.config["seed"])
            sample = rng.choice(len(z), self.config["max_logistic_candidates"], replace=False)
        logistic = _nonnegative_logistic(z[sample], valid.labels[sample])
        if logistic.sum() > 0:
            candidates["logistic"] = logistic / logistic.sum()
        if len(members) <= self.config["grid_max_members"]:
            for k, w in enumerate(_simplex_grid(len(members), self.config["grid_step"])):
                candidates[f"grid:{k}"] = w

        aucs = {name: evaluate(group, valid.labels, z @ w)["auc"] for name, w in candidates.items()}
        if any(np.isnan(a) for a in aucs.values()):
            raise ValueError("ensemble: no validation impression has both clicks and non-clicks")
        best = max(aucs, key=lambda name: (aucs[name], -list(aucs).index(name)))
        self.weights = candidates[best]
        log["val_metrics"] = self._validation_metrics(valid, z)
        log.update(
            weights=self.weights.tolist(),
            chosen=best,
            valid_auc=aucs[best],
            member_valid_auc={m.scorer_id: aucs[f"only:{m.scorer_id}"] for m in members},
        )
        return log

    def _validation_metrics(self, valid: ImpressionData, z: np.ndarray) -> dict[str, Any]:
        """MIND metrics of the fitted weights on `valid`, from the member scores `fit` already
        computed (summed as `score` sums them, so the numbers are the ones it would give)."""
        from genre_dagster.evaluation.metrics import evaluate_impressions

        total = np.zeros(len(z), dtype=np.float64)
        for j, w in enumerate(self.weights):
            if w > 0:
                total += w * z[:, j]
        return evaluate_impressions(valid, total.astype(np.float32))

    def _require_fitted(self) -> tuple[list[Scorer], np.ndarray]:
        if self.weights is None or self.members is None:
            raise ValueError("EnsembleScorer is not fitted: call fit() or load()")
        return self.members, self.weights

    def score(self, data: ImpressionData, items: ItemFeatures) -> np.ndarray:
        members, weights = self._require_fitted()
        scores = [
            member.score(data, items) if w > 0 else None
            for member, w in zip(members, weights, strict=True)
        ]
        return self.combine(data.candidate_impression, scores)

    def combine(self, group: np.ndarray, member_scores: list[np.ndarray | None]) -> np.ndarray:
        """The ensemble's scores from its members' scores of the same candidates (`group`: each
        candidate's impression), in member order; a member of weight 0 may be None. The
        leaderboard passes scores it already computed for the published members."""
        _, weights = self._require_fitted()
        total = np.zeros(len(group), dtype=np.float64)
        for scores, w in zip(member_scores, weights, strict=True):
            if w > 0:
                total += w * standardize_within(group, scores)
        return total.astype(np.float32)

    def score_pool(self, history: np.ndarray, pool: np.ndarray, items: ItemFeatures) -> np.ndarray:
        return self.pool_scorer(pool, items)(history)

    def pool_scorer(self, pool: np.ndarray, items: ItemFeatures):
        members, weights = self._require_fitted()
        parts = [(w, m.pool_scorer(pool, items)) for m, w in zip(members, weights, strict=True)]
        parts = [(w, score) for w, score in parts if w > 0]

        def score(history: np.ndarray) -> np.ndarray:
            total = np.zeros((len(history), len(pool)), dtype=np.float64)
            for w, member_score in parts:
                total += w * _standardize_rows(member_score(history))
            return total.astype(np.float32)

        return score

    def save(self, folder: Path) -> None:
        members, weights = self._require_fitted()
        folder = Path(folder)
        names = [f"{j:02d}-{m.scorer_id}" for j, m in enumerate(members)]
        for name, member in zip(names, members, strict=True):
            member.save(folder / "members" / name)
        write_scorer_json(folder, self, {"weights": weights.tolist(), "member_folders": names})

    @classmethod
    def load(cls, folder: Path) -> EnsembleScorer:
        from genre_dagster.scoring.registry import load_scorer

        meta = read_scorer_json(folder, cls.kind)
        members = [
            load_scorer(Path(folder) / "members" / n) for n in meta["state"]["member_folders"]
        ]
        config = {k: v for k, v in meta["config"].items() if k != "members"}
        scorer = cls(config, members=members)
        if scorer.config["members"] != meta["config"]["members"]:
            raise ValueError(f"{folder}: loaded members do not match the saved member configs")
        scorer.weights = np.asarray(meta["state"]["weights"], dtype=np.float64)
        scorer.member_folders = [
            Path(folder) / "members" / n for n in meta["state"]["member_folders"]
        ]
        return scorer
