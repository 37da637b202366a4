"""A scikit-learn click model over hand-made per-candidate features.

Features (columns of `candidate_features`, in FEATURE_NAMES order):
- content_similarity: cosine(history profile, candidate) in one embedding field;
- popularity: log1p of the candidate's decayed training clicks;
- ctr: its smoothed training CTR;
- category_match: share of the history in the candidate's category;
- recency_days: impression day - item publish day (NaN when either is unknown);
- history_length: number of history items.

Training rows use leave-one-out click statistics (the impression's own show and click removed),
otherwise a clicked candidate's popularity would contain its own label.
"""

from __future__ import annotations

import contextlib
import pickle
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
from genre_dagster.scoring.content import candidate_cosine
from genre_dagster.scoring.item_stats import (
    ItemClickStats,
    compute_item_click_stats,
    impression_weights,
    require_labels,
)
from genre_dagster.scoring.user_profile import category_shares, distinct_histories

FEATURE_NAMES: tuple[str, ...] = (
    "content_similarity",
    "popularity",
    "ctr",
    "category_match",
    "recency_days",
    "history_length",
)

DEFAULTS: dict[str, Any] = {
    "model": "hist_gradient_boosting",  # | "logistic_regression"
    "field": "title",
    "user": "mean",
    "decay": 0.9,
    "half_life_days": 1.0,
    "prior_strength": 20.0,
    "max_train_impressions": 50_000,  # random subsample of training impressions (seeded)
    "max_iter": 200,  # boosting rounds / solver iterations
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "l2_regularization": 0.0,
    "C": 1.0,  # logistic regression inverse regularization
    "seed": 0,
    # OpenMP threads for fit (None: scikit-learn's default). On a busy 2-core machine
    # HistGradientBoosting's threads can spin against other processes: 1 is often faster.
    # Prediction uses every thread: its output does not depend on the thread count.
    "n_threads": None,
}


def candidate_features(
    data: ImpressionData,
    items: ItemFeatures,
    stats: ItemClickStats,
    *,
    field: str = "title",
    user: str = "mean",
    decay: float = 0.9,
    leave_one_out: bool = False,
) -> np.ndarray:
    """Feature matrix float32 [n_candidates, len(FEATURE_NAMES)], columns in FEATURE_NAMES order.

    `leave_one_out=True` is only for the impressions `stats` was computed from: each candidate's
    own (decayed) show and click are subtracted. Impressions without `day_index` are taken to be
    on `stats.reference_day` (the last training day).
    """
    n = len(data.cand_items)
    impression = data.candidate_impression
    clicks_by_item, shows_by_item = stats.for_items(items)
    clicks = clicks_by_item[data.cand_items]
    shows = shows_by_item[data.cand_items]
    if leave_one_out:
        require_labels(data, "leave-one-out features")
        weights = impression_weights(data.day_index, stats.reference_day, stats.half_life_days)
        own = np.ones(n) if weights is None else weights[impression]
        clicks = np.maximum(clicks - own * data.labels, 0.0)
        shows = np.maximum(shows - own, 0.0)

    rows, inverse = distinct_histories(data.history)
    shares = category_shares(rows, items.categories, len(items.category_names))
    user_of_candidate = inverse[impression]

    if data.day_index is not None:
        day = np.asarray(data.day_index, dtype=np.float64)[impression]
    else:
        ref = np.nan if stats.reference_day is None else stats.reference_day
        day = np.full(n, ref)
    publish = (
        np.full(n, np.nan)
        if items.publish_day is None
        else np.asarray(items.publish_day, dtype=np.float64)[data.cand_items]
    )

    out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
    out[:, 0] = candidate_cosine(data, items, field, user, decay)
    out[:, 1] = np.log1p(clicks)
    out[:, 2] = stats.smoothed_ctr(clicks, shows)
    out[:, 3] = shares[user_of_candidate, items.categories[data.cand_items]]
    out[:, 4] = day - publish
    out[:, 5] = (data.history != PAD).sum(axis=1)[impression]
    return out


def _pool_as_impressions(history: np.ndarray, pool: np.ndarray) -> ImpressionData:
    """Every user x every pool item as one impression per user (candidate order = pool order)."""
    n_users, pool = len(history), np.asarray(pool, dtype=np.int64)
    return ImpressionData(
        impression_ids=np.arange(n_users),
        user_ids=np.arange(n_users),
        history=np.asarray(history),
        cand_offsets=np.arange(n_users + 1, dtype=np.int64) * len(pool),
        cand_items=np.tile(pool, n_users),
        labels=np.full(n_users * len(pool), -1, dtype=np.int8),
    )


class SklearnRankerScorer(Scorer):
    """HistGradientBoostingClassifier or LogisticRegression over `candidate_features`."""

    kind = "sklearn_ranker"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(resolve_config(self.kind, DEFAULTS, config))
        check_choice(
            self.kind, self.config, "model", ("hist_gradient_boosting", "logistic_regression")
        )
        self.stats: ItemClickStats | None = None
        self.model: Any = None
        # Features missing (all NaN) in training, e.g. recency without publish days: fed as 0
        # at fit and score time (HistGradientBoosting cannot bin an all-NaN column).
        self.unavailable: list[str] = []

    def _new_model(self) -> Any:
        c = self.config
        if c["model"] == "hist_gradient_boosting":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return HistGradientBoostingClassifier(
                max_iter=c["max_iter"],
                learning_rate=c["learning_rate"],
                max_leaf_nodes=c["max_leaf_nodes"],
                l2_regularization=c["l2_regularization"],
                early_stopping=False,  # deterministic: no random validation split
                random_state=c["seed"],
            )
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        # Unknown recency (NaN) -> median plus a missing-indicator column.
        return make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            StandardScaler(),
            LogisticRegression(C=c["C"], max_iter=c["max_iter"]),
        )

    def _threads(self) -> contextlib.AbstractContextManager[Any]:
        if self.config["n_threads"] is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=int(self.config["n_threads"]), user_api="openmp")

    def _features(self, data: ImpressionData, items: ItemFeatures, **kwargs: Any) -> np.ndarray:
        if self.stats is None or self.model is None:
            raise ValueError("SklearnRankerScorer is not fitted: call fit() or load()")
        c = self.config
        features = candidate_features(
            data, items, self.stats, field=c["field"], user=c["user"], decay=c["decay"], **kwargs
        )
        for name in self.unavailable:
            features[:, FEATURE_NAMES.index(name)] = 0.0
        return features

    def fit(
        self, train: ImpressionData, items: ItemFeatures, valid: ImpressionData | None = None
    ) -> dict[str, Any]:
        c = self.config
        self.stats = compute_item_click_stats(
            train, items, c["half_life_days"], c["prior_strength"]
        )
        self.model = self._new_model()
        self.unavailable = []
        # The click statistics come from every training impression, the features only from
        # the sample the model is fit on: a candidate's features depend on its own impression
        # and the statistics alone, so they are the sample's rows of the whole split's (which
        # at MIND-large size were 60M rows and 9 GB for the 1.3M kept).
        sample = train
        if train.n_impressions > c["max_train_impressions"]:
            rng = np.random.default_rng(c["seed"])
            rows = rng.choice(train.n_impressions, c["max_train_impressions"], replace=False)
            sample = train.take(np.sort(rows))
        features = self._features(sample, items, leave_one_out=True)
        all_nan = np.isnan(features).all(axis=0)
        self.unavailable = [name for name, gone in zip(FEATURE_NAMES, all_nan, strict=True) if gone]
        features[:, all_nan] = 0.0
        labels = sample.labels
        if len(np.unique(labels)) < 2:
            raise ValueError(
                "sklearn ranker: training candidates must contain clicks and non-clicks"
            )
        with self._threads():
            self.model.fit(features, labels)
        return {
            "n_train_candidates": int(len(labels)),
            "features": list(FEATURE_NAMES),
            "unavailable_features": self.unavailable,
        }

    def score(self, data: ImpressionData, items: ItemFeatures) -> np.ndarray:
        return self.model_scores(self._features(data, items))

    def model_scores(self, features: np.ndarray) -> np.ndarray:
        """Click probability for a feature matrix, float32. `n_threads` bounds training only:
        each row's prediction is computed on its own, the same with any number of threads."""
        return self.model.predict_proba(features)[:, 1].astype(np.float32)

    def score_pool(self, history: np.ndarray, pool: np.ndarray, items: ItemFeatures) -> np.ndarray:
        data = _pool_as_impressions(history, pool)
        return self.score(data, items).reshape(len(history), len(pool))

    def save(self, folder: Path) -> None:
        if self.stats is None or self.model is None:
            raise ValueError("SklearnRankerScorer is not fitted: nothing to save")
        write_scorer_json(
            folder,
            self,
            {"reference_day": self.stats.reference_day, "unavailable_features": self.unavailable},
        )
        self.stats.save(folder)
        import sklearn

        with (Path(folder) / "model.pkl").open("wb") as fh:
            pickle.dump({"sklearn_version": sklearn.__version__, "model": self.model}, fh)

    @classmethod
    def load(cls, folder: Path) -> SklearnRankerScorer:
        meta = read_scorer_json(folder, cls.kind)
        scorer = cls(meta["config"])
        c = scorer.config
        scorer.stats = ItemClickStats.load(
            folder, meta["state"]["reference_day"], c["half_life_days"], c["prior_strength"]
        )
        import sklearn

        with (Path(folder) / "model.pkl").open("rb") as fh:
            payload = pickle.load(fh)
        if payload["sklearn_version"] != sklearn.__version__:
            raise ValueError(
                f"{folder}: model pickled with scikit-learn {payload['sklearn_version']}, "
                f"running {sklearn.__version__}; retrain the ranker"
            )
        scorer.model = payload["model"]
        scorer.unavailable = list(meta["state"]["unavailable_features"])
        return scorer
