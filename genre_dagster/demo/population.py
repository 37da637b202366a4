"""The demo world's users: sparse Dirichlet tastes (drifting in catalogue worlds), activity,
and fixed click histories."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from genre_dagster.demo.catalog import (
    SECONDS_PER_DAY,
    STREAM_HISTORY,
    STREAM_TASTE_DRIFT,
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
    # Catalogue worlds with taste drift: the tastes each user drifts toward, and the drift
    # weight w(time) = drift_per_second * (time - drift_start_s) (log-affinity (1-w) A + w B).
    drift_target: np.ndarray | None = None
    drift_start_s: float = 0.0
    drift_per_second: float = 0.0

    def history_length(self) -> np.ndarray:
        return np.diff(self.hist_ptr)

    def affinity(self, user: np.ndarray, sub: np.ndarray, time_s: np.ndarray) -> np.ndarray:
        """Log-affinity of users for subcategories at `time_s` (seconds since start_date)."""
        start = self.log_affinity[user, sub]
        if self.drift_target is None:
            return start
        w = self.drift_per_second * (np.asarray(time_s, dtype=np.float64) - self.drift_start_s)
        return (1.0 - w) * start + w * self.drift_target[user, sub]


def build_population(config: DemoWorldConfig, tax: Taxonomy, catalog: NewsCatalog) -> Population:
    """Users with sparse Dirichlet tastes and histories drawn from the click model."""
    rng = day_rng(config.seed, STREAM_USERS, 0)
    theta, log_aff = _draw_tastes(config, tax, rng)
    n_users = config.n_users
    activity = rng.lognormal(0.0, 0.9, size=n_users)
    shift_cols = [tax.categories.index(c) for c in config.shift_categories]
    shift_interest = theta[:, shift_cols].sum(axis=1)

    n_cold = round(config.cold_user_share * n_users)
    cold = np.zeros(n_users, dtype=bool)
    cold[rng.permutation(n_users)[:n_cold]] = True
    warm_length = 6 + np.minimum(rng.geometric(1 / 18, size=n_users) - 1, 54)
    length = np.where(cold, rng.integers(0, 6, size=n_users), warm_length)

    if config.taste_drift == 0:
        ptr, news = _draw_histories(config, tax, catalog, log_aff, length)
        return Population(
            ids=user_id(np.arange(n_users)),
            log_affinity=log_aff,
            activity=activity,
            shift_interest=shift_interest,
            hist_ptr=ptr,
            hist_news=news,
        )
    _, target = _draw_tastes(config, tax, day_rng(config.seed, STREAM_TASTE_DRIFT, 0))
    start_s = -config.pre_days * SECONDS_PER_DAY
    span_s = (config.pre_days + config.n_days) * SECONDS_PER_DAY
    users = Population(
        ids=user_id(np.arange(n_users)),
        log_affinity=log_aff,
        activity=activity,
        shift_interest=shift_interest,
        hist_ptr=np.zeros(n_users + 1, dtype=np.int64),
        hist_news=np.zeros(0, dtype=np.int64),
        drift_target=target,
        drift_start_s=float(start_s),
        drift_per_second=config.taste_drift / span_s,
    )
    ptr, news = _draw_drifting_histories(config, tax, catalog, users, length)
    return dataclasses.replace(users, hist_ptr=ptr, hist_news=news)


def _draw_tastes(
    config: DemoWorldConfig, tax: Taxonomy, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(category tastes theta [users, categories], log-affinity [users, subcategories])."""
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
    return theta, log_aff


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


DRIFT_PHASES = 8  # the pre-period's tastes are evaluated at this many steps


def _draw_drifting_histories(
    config: DemoWorldConfig,
    tax: Taxonomy,
    catalog: NewsCatalog,
    users: Population,
    length: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pre-period reads of a catalogue world whose tastes drift: each read happens at a random
    time of the pre-period, picks a subcategory by the user's odds at that time (in
    DRIFT_PHASES steps) and an item of it already published, by popularity odds; histories
    list the reads in time order, so their recent part is closer to today's tastes."""
    rng = day_rng(config.seed, STREAM_HISTORY, 0)
    pre = np.flatnonzero((catalog.publish_s < 0) & ~catalog.is_event)
    pre = pre[np.lexsort((pre, catalog.publish_s[pre], catalog.subcategory[pre]))]
    pre_sub, pre_s = catalog.subcategory[pre], catalog.publish_s[pre]
    odds = np.exp(config.popularity_weight * catalog.z[pre])
    cum = np.cumsum(odds)
    n_subs = len(tax.subcategories)
    sub_start = np.searchsorted(pre_sub, np.arange(n_subs), side="left")
    sub_end = np.searchsorted(pre_sub, np.arange(n_subs), side="right")
    mass = np.bincount(pre_sub, weights=odds, minlength=n_subs)

    n_users, span = length.size, config.pre_days * SECONDS_PER_DAY
    draws = np.where(length > 0, 2 * length + 2, 0)
    user = np.repeat(np.arange(n_users), draws)
    read_s = -span + rng.random(user.size) * span
    phase = np.minimum((DRIFT_PHASES * (read_s + span) / span).astype(np.int64), DRIFT_PHASES - 1)
    # Odds rows per (user, phase), tastes at the phase's middle; rows sampled as in
    # _draw_histories.
    middle = -span + (np.arange(DRIFT_PHASES) + 0.5) * span / DRIFT_PHASES
    rows = np.repeat(np.arange(n_users), DRIFT_PHASES)
    subs = np.arange(n_subs)
    log_aff = users.affinity(rows[:, None], subs[None, :], np.tile(middle, n_users)[:, None])
    user_odds = np.exp(config.interest_weight * log_aff) * mass
    row_cum = np.cumsum(user_odds / user_odds.sum(axis=1, keepdims=True), axis=1)
    row_cum[:, -1] = 1.0
    row = user * DRIFT_PHASES + phase
    flat = (row_cum + np.arange(rows.size)[:, None]).ravel()
    pos = np.searchsorted(flat, row + rng.random(user.size), side="right")
    sub = np.clip(pos - row * n_subs, 0, n_subs - 1)
    # Items of the subcategory published by the read time (the first one if none was yet).
    key = pre_sub.astype(np.float64) * (2.0 * span) + (pre_s + span)
    end = np.searchsorted(key, sub * (2.0 * span) + (read_s + span), side="right")
    end = np.where(sub_end[sub] > sub_start[sub], np.maximum(end, sub_start[sub] + 1), end)
    picked = pre[segment_sample(rng, cum, sub_start[sub], end)]
    read_s = np.maximum(read_s, catalog.publish_s[picked])

    keep = first_per_group(user, picked, catalog.ids.size)
    user, picked, read_s = user[keep], picked[keep], read_s[keep]
    keep = rank_in_group(user, n_users) < length[user]
    user, picked, read_s = user[keep], picked[keep], read_s[keep]
    order = np.lexsort((picked, read_s, user))
    user, picked = user[order], picked[order]
    ptr = np.concatenate([[0], np.cumsum(np.bincount(user, minlength=n_users))])
    return ptr.astype(np.int64), picked.astype(np.int64)
