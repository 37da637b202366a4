"""The demo world's days: who reads when, which candidates they are shown, their true click
probabilities and labels. Each day has its own generator, so days are independent of how many
are simulated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genre_dagster.demo.catalog import (
    SECONDS_PER_DAY,
    STREAM_DAY,
    STREAM_REREAD,
    Taxonomy,
    build_catalog,
    day_rng,
)
from genre_dagster.demo.config import DemoWorldConfig
from genre_dagster.demo.population import build_population
from genre_dagster.demo.sampling import first_per_group, rank_in_group, segment_sample

# Reading profile by hour: morning and evening peaks, quiet nights (MIND-like).
HOURLY_PROFILE = np.array(
    [1.0, 0.6, 0.4, 0.3, 0.4, 1.0, 2.2, 3.4, 4.0, 3.8, 3.4, 3.2]
    + [3.4, 3.2, 3.0, 3.0, 3.2, 3.6, 4.0, 4.2, 3.8, 3.0, 2.2, 1.5]
)
# The shift day: a big evening event pulls readers to the late hours.
SHIFT_HOURLY_PROFILE = np.array(
    [1.2, 0.8, 0.4, 0.3, 0.3, 0.6, 1.2, 1.8, 2.0, 1.9, 1.8, 1.8]
    + [2.0, 2.0, 2.1, 2.4, 3.0, 4.5, 7.0, 9.0, 9.5, 8.0, 5.0, 2.5]
)
POOL_POPULARITY = 0.5  # how strongly editors favor popular news in the candidate pool
OLD_POPULAR_Z, OLD_POPULAR_WEIGHT, OLD_POPULAR_DAYS = 1.0, 0.12, 5
SHIFT_POOL_BOOST, SHIFT_CLICK_BOOST, SHIFT_TRAFFIC = 3.0, 0.7, 1.3
FRESHNESS_SCALE_DAYS = 0.5


@dataclass(frozen=True)
class DayImpressions:
    """One day's impressions, in time order; candidates in shown order (CSR layout)."""

    day: int
    user: np.ndarray
    time_s: np.ndarray  # seconds since start_date 00:00
    ptr: np.ndarray
    news: np.ndarray
    prob: np.ndarray  # true click probability (before forcing a click)
    label: np.ndarray  # int8

    @property
    def n_impressions(self) -> int:
        return int(self.user.size)


@dataclass(frozen=True)
class _Draw:
    user: np.ndarray
    time_s: np.ndarray
    ptr: np.ndarray
    news: np.ndarray
    logit: np.ndarray  # without bias


class World:
    """A configured world: catalog up to `last_day`, users, and the calibrated click bias."""

    def __init__(self, config: DemoWorldConfig, last_day: int | None = None) -> None:
        self.config = config
        self.last_day = config.n_days - 1 if last_day is None else last_day
        if self.last_day < config.n_days - 1:
            raise ValueError(f"last_day {last_day} is before the last base day")
        self.taxonomy = Taxonomy.from_vocabulary()
        self.catalog = build_catalog(config, self.taxonomy, self.last_day)
        self.users = build_population(config, self.taxonomy, self.catalog)
        self.bias = self._calibrate()

    def is_shift_day(self, day: int) -> bool:
        return day == self.config.shift_day_index

    def _calibrate(self) -> float:
        """Bias so that day 0 without shift has the target expected CTR (clicks / candidates).

        Expected clicks of an impression = sum(p) + prod(1 - p) (the forced click), which
        grows with the bias, so a bisection finds it.
        """
        draw = self._draw(0, day_rng(self.config.seed, STREAM_DAY, 0), shift=False)
        starts = draw.ptr[:-1]

        def ctr(bias: float) -> float:
            p = _sigmoid(draw.logit + bias)
            none = np.exp(np.add.reduceat(np.log1p(-p), starts))
            return float((p.sum() + none.sum()) / p.size)

        low, high = -20.0, 10.0
        if ctr(low) > self.config.target_ctr:
            raise ValueError(
                f"target_ctr {self.config.target_ctr} is below 1 / candidates per impression "
                f"({ctr(low):.3f}): every impression has a click; raise median_candidates"
            )
        for _ in range(60):
            mid = (low + high) / 2
            low, high = (mid, high) if ctr(mid) < self.config.target_ctr else (low, mid)
        return round((low + high) / 2, 9)

    def _draw(self, day: int, rng: np.random.Generator, shift: bool) -> _Draw:
        """Readers, times and candidates of one day, with logits before the bias."""
        cfg, cat = self.config, self.catalog
        user, time_s = self._readers(day, rng, shift)
        imp, news = self._candidates(day, rng, shift, time_s, user)
        age_days = np.maximum(time_s[imp] - cat.publish_s[news], 0) / SECONDS_PER_DAY
        logit = (
            cfg.interest_weight * self.users.affinity(user[imp], cat.subcategory[news], time_s[imp])
            + cfg.popularity_weight * cat.z[news]
            - cfg.freshness_weight * np.log1p(age_days / FRESHNESS_SCALE_DAYS)
            + rng.normal(0.0, cfg.noise_sd, size=imp.size)
        )
        if shift:
            in_shift = np.isin(cat.category[news], self._shift_category_index())
            logit += np.where(in_shift, SHIFT_CLICK_BOOST, 0.0)
        counts = np.bincount(imp, minlength=user.size)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return _Draw(user=user, time_s=time_s, ptr=ptr, news=news.astype(np.int64), logit=logit)

    def _readers(
        self, day: int, rng: np.random.Generator, shift: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Who reads when: heavier users more often, times from the hourly profile."""
        cfg = self.config
        n_imp = round(
            cfg.impressions_per_day * rng.uniform(0.9, 1.1) * (SHIFT_TRAFFIC if shift else 1)
        )
        n_imp = max(n_imp, 1)
        weights = self.users.activity
        if shift:
            weights = weights * (0.3 + 3.3 * self.users.shift_interest)
        user = rng.choice(weights.size, size=n_imp, p=weights / weights.sum())
        profile = SHIFT_HOURLY_PROFILE if shift else HOURLY_PROFILE
        hour = rng.choice(24, size=n_imp, p=profile / profile.sum())
        time_s = day * SECONDS_PER_DAY + hour * 3600 + rng.integers(0, 3600, size=n_imp)
        order = np.lexsort((user, time_s))
        return user[order], time_s[order].astype(np.int64)

    def _candidates(
        self,
        day: int,
        rng: np.random.Generator,
        shift: bool,
        time_s: np.ndarray,
        reader: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Candidates of each impression (impression row, catalog index), in shown order.

        The pool is the news of the last days (the event's own coverage only on its day) plus
        popular older news; editors favor popular news, not this reader's taste.
        """
        cfg, cat = self.config, self.catalog
        n_imp = time_s.size
        extra = np.floor(
            rng.lognormal(np.log(cfg.median_candidates - cfg.min_candidates), 0.6, n_imp)
        )
        n_cand = np.minimum(cfg.min_candidates + extra.astype(np.int64), cfg.max_candidates)

        day_start = day * SECONDS_PER_DAY
        window_start = day_start - cfg.candidate_window_days * SECONDS_PER_DAY
        live_event = cat.is_event & shift & (cat.day == day)
        recent = (cat.publish_s >= window_start) & (cat.publish_s < day_start + SECONDS_PER_DAY)
        recent &= ~cat.is_event | live_event
        old = (cat.publish_s >= day_start - OLD_POPULAR_DAYS * SECONDS_PER_DAY) & (
            cat.publish_s < window_start
        )
        old &= (cat.z > OLD_POPULAR_Z) & ~cat.is_event
        pool = np.flatnonzero(recent | old)
        pool = pool[np.lexsort((pool, cat.publish_s[pool]))]
        weight = np.exp(POOL_POPULARITY * cat.z[pool]) * np.where(old[pool], OLD_POPULAR_WEIGHT, 1)
        if shift:
            in_shift = np.isin(cat.category[pool], self._shift_category_index())
            weight = weight * np.where(in_shift, SHIFT_POOL_BOOST, 1.0)
        cum = np.cumsum(weight)
        # Only news already published at the impression time can be shown (pool is in
        # publication order, so that is a prefix of it).
        available = np.searchsorted(cat.publish_s[pool], time_s, side="right")
        if (available == 0).any():
            raise ValueError(f"demo world day {day}: no news published before an impression")

        # Draw with replacement, keep each impression's first n distinct picks.
        draws = 2 * n_cand + 8
        imp = np.repeat(np.arange(n_imp), draws)
        pick = segment_sample(rng, cum, np.zeros(imp.size, dtype=np.int64), available[imp])
        keep = first_per_group(imp, pick, pool.size)
        imp, pick = imp[keep], pick[keep]
        keep = rank_in_group(imp, n_imp) < n_cand[imp]
        imp, news = imp[keep], pool[pick[keep]]
        if cfg.reread_share > 0:
            imp, news = self._with_rereads(day, reader, imp, news, n_cand)
        # Shown order is random: the sampling order would leak popularity through position.
        order = np.lexsort((rng.random(imp.size), imp))
        return imp[order], news[order]

    def _with_rereads(
        self,
        day: int,
        reader: np.ndarray,
        imp: np.ndarray,
        news: np.ndarray,
        n_cand: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Catalogue worlds: about `reread_share` of each impression's candidates are items
        from the reader's own history (popular ones more often); the pool's candidates make up
        the rest. Drawn from a stream of their own, after the pool's."""
        users, cat = self.users, self.catalog
        rng = day_rng(self.config.seed, STREAM_REREAD, day)
        lengths = users.history_length()[reader]
        n_reread = np.minimum(rng.binomial(n_cand, self.config.reread_share), lengths)
        # Every history item of every impression, ranked by popularity with Gumbel noise: the
        # first n_reread are drawn without replacement in proportion to exp(POOL_POPULARITY z).
        row = np.repeat(np.arange(reader.size), lengths)
        offset = np.arange(row.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        item = users.hist_news[users.hist_ptr[reader][row] + offset]
        key = POOL_POPULARITY * cat.z[item] + rng.gumbel(size=item.size)
        order = np.lexsort((-key, row))
        row, item = row[order], item[order]
        chosen = rank_in_group(row, reader.size) < n_reread[row]
        # Rereads first, then the pool's picks not already among them, n_cand in all.
        both_imp = np.concatenate([row[chosen], imp])
        both_news = np.concatenate([item[chosen], news])
        keep = first_per_group(both_imp, both_news, cat.ids.size)
        order = keep[np.argsort(both_imp[keep], kind="stable")]
        both_imp, both_news = both_imp[order], both_news[order]
        keep = rank_in_group(both_imp, reader.size) < n_cand[both_imp]
        return both_imp[keep], both_news[keep]

    def _shift_category_index(self) -> np.ndarray:
        return np.array([self.taxonomy.categories.index(c) for c in self.config.shift_categories])

    def simulate_day(self, day: int) -> DayImpressions:
        """Impressions of base day `day` (0-based) or of a later day (>= n_days)."""
        if not 0 <= day <= self.last_day:
            raise ValueError(f"day {day} is outside this world's days 0..{self.last_day}")
        rng = day_rng(self.config.seed, STREAM_DAY, day)
        draw = self._draw(day, rng, shift=self.is_shift_day(day))
        prob = _sigmoid(draw.logit + self.bias)
        label = (rng.random(prob.size) < prob).astype(np.int8)
        # MIND impressions always have a click: force one, chosen in proportion to p.
        starts, ends = draw.ptr[:-1], draw.ptr[1:]
        clicked = np.add.reduceat(label.astype(np.int32), starts) > 0
        forced = segment_sample(rng, np.cumsum(prob), starts, ends)
        label[forced[~clicked]] = 1
        return DayImpressions(
            day=day,
            user=draw.user,
            time_s=draw.time_s,
            ptr=draw.ptr,
            news=draw.news,
            prob=prob,
            label=label,
        )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
