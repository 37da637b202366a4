"""The demo world's users: sparse Dirichlet tastes, activity, and fixed click histories."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genre_dagster.demo.catalog import (
    STREAM_HISTORY,
    STREAM_USERS,
    NewsCatalog,
    Taxonomy,
    day_rng,
    user_id,
)
from genre_dagster.demo.config import DemoWorldConfig
from genre_dagster.demo.sampling import first_per_group, rank_in_group, segment_sample


@dataclass(frozen=True)
class Population:
    """Users: latent tastes, activity, and their (fixed) click histories before the period."""

    ids: np.ndarray
    log_affinity: np.ndarray  # users x subcategories, 0 = average taste
    activity: np.ndarray
    shift_interest: np.ndarray  # taste for the shift day's categories
    hist_ptr: np.ndarray  # CSR pointers into hist_news
    hist_news: np.ndarray  # catalog indices, oldest first

    def history_length(self) -> np.ndarray:
        return np.diff(self.hist_ptr)


def build_population(config: DemoWorldConfig, tax: Taxonomy, catalog: NewsCatalog) -> Population:
    """Users with sparse Dirichlet tastes and histories drawn from the click model."""
    rng = day_rng(config.seed, STREAM_USERS, 0)
    n_users, n_cats = config.n_users, len(tax.categories)
    alpha = config.interest_concentration * n_cats * tax.category_share
    theta = 0.95 * rng.dirichlet(alpha, size=n_users) + 0.05 * tax.category_share
    phi = np.empty((n_users, len(tax.subcategories)))
    for ci in range(n_cats):
        cols = np.flatnonzero(tax.sub_category == ci)
        draw = rng.dirichlet(cols.size * tax.sub_share[cols], size=n_users)
        phi[:, cols] = 0.9 * draw + 0.1 * tax.sub_share[cols]
    log_aff = np.log(theta[:, tax.sub_category] / tax.category_share[tax.sub_category])
    log_aff += config.subcategory_interest * np.log(phi / tax.sub_share)
    activity = rng.lognormal(0.0, 0.9, size=n_users)
    shift_cols = [tax.categories.index(c) for c in config.shift_categories]
    shift_interest = theta[:, shift_cols].sum(axis=1)

    n_cold = round(config.cold_user_share * n_users)
    cold = np.zeros(n_users, dtype=bool)
    cold[rng.permutation(n_users)[:n_cold]] = True
    warm_length = 6 + np.minimum(rng.geometric(1 / 18, size=n_users) - 1, 54)
    length = np.where(cold, rng.integers(0, 6, size=n_users), warm_length)

    ptr, news = _draw_histories(config, tax, catalog, log_aff, length)
    return Population(
        ids=user_id(np.arange(n_users)),
        log_affinity=log_aff,
        activity=activity,
        shift_interest=shift_interest,
        hist_ptr=ptr,
        hist_news=news,
    )


def _draw_histories(
    config: DemoWorldConfig,
    tax: Taxonomy,
    catalog: NewsCatalog,
    log_aff: np.ndarray,
    length: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-period clicks: subcategory by the user's odds, then news by popularity odds."""
    rng = day_rng(config.seed, STREAM_HISTORY, 0)
    pre = np.flatnonzero((catalog.publish_s < 0) & ~catalog.is_event)
    pre = pre[np.lexsort((pre, catalog.subcategory[pre]))]
    pre_sub = catalog.subcategory[pre]
    odds = np.exp(config.popularity_weight * catalog.z[pre])
    cum = np.cumsum(odds)
    n_subs = len(tax.subcategories)
    sub_start = np.searchsorted(pre_sub, np.arange(n_subs), side="left")
    sub_end = np.searchsorted(pre_sub, np.arange(n_subs), side="right")
    mass = np.bincount(pre_sub, weights=odds, minlength=n_subs)

    # Odds are exp(logit) without freshness: for small probabilities p is nearly exp(logit).
    user_odds = np.exp(config.interest_weight * log_aff) * mass
    row_cum = np.cumsum(user_odds / user_odds.sum(axis=1, keepdims=True), axis=1)
    row_cum[:, -1] = 1.0
    n_users = length.size
    draws = np.where(length > 0, 2 * length + 2, 0)
    user = np.repeat(np.arange(n_users), draws)
    flat = (row_cum + np.arange(n_users)[:, None]).ravel()
    pos = np.searchsorted(flat, user + rng.random(user.size), side="right")
    sub = np.clip(pos - user * n_subs, 0, n_subs - 1)
    picked = pre[segment_sample(rng, cum, sub_start[sub], sub_end[sub])]

    keep = first_per_group(user, picked, catalog.ids.size)
    user, picked = user[keep], picked[keep]
    keep = rank_in_group(user, n_users) < length[user]
    user, picked = user[keep], picked[keep]
    order = np.lexsort((picked, catalog.publish_s[picked], user))
    user, picked = user[order], picked[order]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(user, minlength=n_users))])
    return ptr.astype(np.int64), picked.astype(np.int64)
