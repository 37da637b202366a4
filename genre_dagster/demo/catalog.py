"""The demo world's news catalog: taxonomy, per-day publication, ids and rendered text.

Every random draw comes from a generator derived from (seed, stream, index), so a day's news
does not depend on how many other days are generated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from genre_dagster.demo.config import DemoWorldConfig
from genre_dagster.demo.text import NewsText, TextRenderer
from genre_dagster.demo.vocabulary import CATEGORIES

SECONDS_PER_DAY = 86_400
STREAM_NEWS, STREAM_TEXT, STREAM_USERS, STREAM_HISTORY, STREAM_DAY = 1, 2, 3, 4, 5
STREAM_TEXT_TOPIC = 6
STREAM_TASTE_DRIFT, STREAM_REREAD = 7, 8
# SeedSequence entropy must be non-negative; pre-period days have negative indices.
_INDEX_OFFSET = 1_000_000
# Ids are scrambled (a bijection modulo a prime) so they look like MIND's and hide order.
_NEWS_ID_PRIME, _NEWS_ID_MULT = 999_983, 611_953
_USER_ID_PRIME, _USER_ID_MULT = 999_979, 350_377
# Newsrooms publish during working hours.
PUBLISH_PROFILE = np.array([0.3] * 5 + [1.0, 2.0, 3.0, 3.5, 3.5, 3.0, 3.0] + [3.0] * 6 + [2.0] * 6)
EVENT_NEWS_SHARE, EVENT_POPULARITY_SHIFT = 0.5, 0.5


def day_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    """The generator for one (stream, day or entity) of a world."""
    return np.random.default_rng([seed, stream, index + _INDEX_OFFSET])


def news_id(index: np.ndarray) -> np.ndarray:
    """MIND-style news ids (`N123`) for catalog indices."""
    if index.size and int(index.max()) >= _NEWS_ID_PRIME - 1:
        raise ValueError("demo world: too many news for the id space")
    numbers = (index.astype(np.int64) + 1) * _NEWS_ID_MULT % _NEWS_ID_PRIME
    return np.char.add("N", numbers.astype(str)).astype(object)


def user_id(index: np.ndarray) -> np.ndarray:
    """MIND-style user ids (`U123`)."""
    if index.size and int(index.max()) >= _USER_ID_PRIME - 1:
        raise ValueError("demo world: too many users for the id space")
    numbers = (index.astype(np.int64) + 1) * _USER_ID_MULT % _USER_ID_PRIME
    return np.char.add("U", numbers.astype(str)).astype(object)


@dataclass(frozen=True)
class Taxonomy:
    """Categories and subcategories in a fixed global order, with their base shares."""

    categories: tuple[str, ...]
    subcategories: tuple[str, ...]
    sub_category: np.ndarray  # category index of each subcategory
    category_share: np.ndarray
    sub_share: np.ndarray  # share of each subcategory within its category

    @classmethod
    def from_vocabulary(cls) -> Taxonomy:
        subs, sub_cat, sub_share = [], [], []
        for ci, cat in enumerate(CATEGORIES):
            total = sum(s.share for s in cat.subcategories)
            for sub in cat.subcategories:
                subs.append(sub.name)
                sub_cat.append(ci)
                sub_share.append(sub.share / total)
        shares = np.array([c.share for c in CATEGORIES])
        return cls(
            categories=tuple(c.name for c in CATEGORIES),
            subcategories=tuple(subs),
            sub_category=np.array(sub_cat),
            category_share=shares / shares.sum(),
            sub_share=np.array(sub_share),
        )

    def sample_subcategories(self, rng: np.random.Generator, categories: np.ndarray) -> np.ndarray:
        """A subcategory for each given category index, by within-category shares."""
        out = np.empty(categories.size, dtype=np.int64)
        for ci in range(len(self.categories)):
            rows = np.flatnonzero(categories == ci)
            options = np.flatnonzero(self.sub_category == ci)
            out[rows] = rng.choice(options, size=rows.size, p=self.sub_share[options])
        return out


@dataclass(frozen=True)
class NewsCatalog:
    """All news published from the pre-period to the last simulated day (one row per news)."""

    day: np.ndarray
    publish_s: np.ndarray  # seconds since start_date 00:00 (negative before the base period)
    category: np.ndarray
    subcategory: np.ndarray
    z: np.ndarray  # latent log-popularity, standard normal
    is_event: np.ndarray  # extra coverage of the shift day's event
    ids: np.ndarray


def news_per_day(config: DemoWorldConfig) -> int:
    """Regular news published each day (pre-period, base and extra days alike)."""
    return max(1, round(config.n_news / (config.pre_days + config.n_days)))


def build_catalog(config: DemoWorldConfig, tax: Taxonomy, last_day: int) -> NewsCatalog:
    """News of days -pre_days..last_day, each day drawn from its own generator."""
    per_day = news_per_day(config)
    shift = config.shift_day_index
    shift_cats = np.array([tax.categories.index(c) for c in config.shift_categories])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("day", "pub", "cat", "sub", "z", "event")}
    for day in range(-config.pre_days, last_day + 1):
        rng = day_rng(config.seed, STREAM_NEWS, day)
        n_events = round(EVENT_NEWS_SHARE * per_day) if day == shift else 0
        cats = rng.choice(len(tax.categories), size=per_day, p=tax.category_share)
        cats = np.concatenate([cats, rng.choice(shift_cats, size=n_events)])
        parts["sub"].append(tax.sample_subcategories(rng, cats))
        z = rng.standard_normal(per_day + n_events)
        z[per_day:] += EVENT_POPULARITY_SHIFT
        hours = rng.choice(24, size=cats.size, p=PUBLISH_PROFILE / PUBLISH_PROFILE.sum())
        seconds = hours * 3600 + rng.integers(0, 3600, size=cats.size)
        parts["day"].append(np.full(cats.size, day))
        parts["pub"].append(day * SECONDS_PER_DAY + seconds)
        parts["cat"].append(cats)
        parts["z"].append(z)
        parts["event"].append(np.arange(cats.size) >= per_day)
    categories = np.concatenate(parts["cat"])
    return NewsCatalog(
        day=np.concatenate(parts["day"]),
        publish_s=np.concatenate(parts["pub"]).astype(np.int64),
        category=categories,
        subcategory=np.concatenate(parts["sub"]),
        z=np.concatenate(parts["z"]),
        is_event=np.concatenate(parts["event"]),
        ids=news_id(np.arange(categories.size)),
    )


def text_subcategories(config: DemoWorldConfig, tax: Taxonomy, catalog: NewsCatalog) -> np.ndarray:
    """The subcategory each news item's text is written about: its own, except for a share
    `text_topic_noise` written about a random subcategory (headlines that hide their topic)."""
    written = catalog.subcategory.copy()
    if config.text_topic_noise > 0:
        for day in np.unique(catalog.day):
            rows = np.flatnonzero(catalog.day == day)
            rng = day_rng(config.seed, STREAM_TEXT_TOPIC, int(day))
            noisy = rows[rng.random(rows.size) < config.text_topic_noise]
            written[noisy] = rng.integers(0, len(tax.subcategories), size=noisy.size)
    return written


def render_texts(config: DemoWorldConfig, tax: Taxonomy, catalog: NewsCatalog) -> list[NewsText]:
    """Title, abstract and entities of every catalog news (one text generator per day)."""
    renderer = TextRenderer()
    written = text_subcategories(config, tax, catalog)
    texts: list[NewsText] = []
    for day in np.unique(catalog.day):
        seed = int(day_rng(config.seed, STREAM_TEXT, int(day)).integers(2**62))
        rnd = random.Random(seed)
        for i in np.flatnonzero(catalog.day == day):
            sub = written[i]
            texts.append(
                renderer.render(rnd, tax.categories[tax.sub_category[sub]], tax.subcategories[sub])
            )
    return texts
