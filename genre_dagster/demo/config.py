"""Configuration of the demo world: sizes, dates, the click model and the shift day."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date
from typing import Any

from genre_dagster.demo.vocabulary import CATEGORIES

_CATEGORY_NAMES = tuple(c.name for c in CATEGORIES)
# User ids are a bijection modulo the prime 999,979 of the indices 1..n_users (see
# catalog.user_id), so more users would repeat ids.
MAX_USERS = 999_978


@dataclass(frozen=True)
class DemoWorldConfig:
    """Everything that determines a demo world; the same config gives byte-identical files.

    Sizes: `n_news` is the number of regular news over the pre-period and the base days (the
    shift day publishes extra event news on top); `impressions_per_day` is a mean (each day
    varies by up to 10 %, the shift day gets `shift_traffic` times more).
    Click model: logit = interest_weight * log-affinity(user, category, subcategory)
    + popularity_weight * z(news) + freshness_weight * -log1p(age_days / 0.5)
    + N(0, noise_sd) + bias, where bias is solved so the expected CTR per candidate (forced
    clicks included) equals `target_ctr`.
    `subcategory_interest` weighs the subcategory tastes within a category against the
    category tastes in the log-affinity.
    Text: a share `text_topic_noise` of the news have a title and abstract written about a random
    subcategory instead of their own (their category column stays true), so the text alone
    does not always reveal what an item is about (0: every text is on topic).
    Catalogue worlds (books, products; see the `catalogue_small` preset): items stay live for
    weeks (`candidate_window_days`, `pre_days`, a small `freshness_weight`); `reread_share` is
    the expected share of an impression's candidates drawn from the reader's own history,
    popular items first (0: nothing read is shown again, as in news); with `taste_drift` > 0
    each user's log-affinity moves from their tastes at the first pre-period day toward a
    second, independent draw of tastes, linearly in time, reaching that share of the way at the
    end of the base days; histories are then read over the pre-period along the drift and
    listed in reading order, so their recent part is closer to today's tastes.
    """

    seed: int = 7
    n_news: int = 3_000
    n_users: int = 2_000
    n_days: int = 7
    impressions_per_day: int = 1_200
    start_date: date = date(2024, 3, 4)
    pre_days: int = 7
    cold_user_share: float = 0.2
    shift_day: int | None = -1
    shift_categories: tuple[str, ...] = ("sports", "entertainment")
    interest_concentration: float = 0.3
    target_ctr: float = 0.05
    interest_weight: float = 0.8
    popularity_weight: float = 0.5
    freshness_weight: float = 0.6
    noise_sd: float = 0.5
    min_candidates: int = 5
    median_candidates: int = 24
    max_candidates: int = 75
    candidate_window_days: int = 2
    subcategory_interest: float = 0.6
    text_topic_noise: float = 0.0
    reread_share: float = 0.0
    taste_drift: float = 0.0

    def __post_init__(self) -> None:
        checks = [
            (self.seed >= 0, "seed must be >= 0"),
            (self.n_news >= 100, "n_news must be >= 100"),
            (self.n_users >= 10, "n_users must be >= 10"),
            (self.n_users <= MAX_USERS, f"n_users must be <= {MAX_USERS} (the user id space)"),
            (self.n_days >= 2, "n_days must be >= 2 (train needs a day and dev the last one)"),
            (self.impressions_per_day >= 1, "impressions_per_day must be >= 1"),
            (self.pre_days >= 1, "pre_days must be >= 1 (histories need earlier news)"),
            (0.0 <= self.cold_user_share <= 1.0, "cold_user_share must be in [0, 1]"),
            (0.0 < self.target_ctr < 0.5, "target_ctr must be in (0, 0.5)"),
            (self.interest_concentration > 0, "interest_concentration must be > 0"),
            (
                2 <= self.min_candidates <= self.median_candidates <= self.max_candidates,
                "need 2 <= min_candidates <= median_candidates <= max_candidates",
            ),
            (
                1 <= self.candidate_window_days <= self.pre_days,
                "candidate_window_days must be in [1, pre_days]",
            ),
            (self.noise_sd >= 0, "noise_sd must be >= 0"),
            (0.0 <= self.text_topic_noise <= 1.0, "text_topic_noise must be in [0, 1]"),
            (self.subcategory_interest >= 0, "subcategory_interest must be >= 0"),
            (0.0 <= self.reread_share <= 1.0, "reread_share must be in [0, 1]"),
            (0.0 <= self.taste_drift <= 1.0, "taste_drift must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"DemoWorldConfig: {message}")
        if self.shift_day is not None and not -self.n_days <= self.shift_day < self.n_days:
            raise ValueError(
                f"DemoWorldConfig: shift_day {self.shift_day} is outside the {self.n_days} "
                "base days (use an index, -1 for the last day, or None)"
            )
        unknown = [c for c in self.shift_categories if c not in _CATEGORY_NAMES]
        if unknown or not self.shift_categories:
            raise ValueError(
                f"DemoWorldConfig: shift_categories {list(self.shift_categories)} must be "
                f"non-empty and among {list(_CATEGORY_NAMES)}"
            )

    @property
    def shift_day_index(self) -> int | None:
        """The shift day as a 0-based base-day index, or None."""
        if self.shift_day is None:
            return None
        return self.shift_day % self.n_days

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DemoWorldConfig:
        """A named world (`small`, `mind_small`, `mind_medium`, `mind_large`,
        `catalogue_small`) with optional overrides."""
        if name not in PRESETS:
            raise ValueError(f"unknown demo preset {name!r}; choose one of {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (as stored in world.json). Fields added after worlds were published
        are left out at their default, so those worlds' world.json stay byte-identical."""
        out = dataclasses.asdict(self)
        out["start_date"] = self.start_date.isoformat()
        out["shift_categories"] = list(self.shift_categories)
        for name, default in LATER_FIELDS.items():
            if out[name] == default:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DemoWorldConfig:
        """Inverse of `to_dict`."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(f"DemoWorldConfig: unknown fields {unknown}")
        values = dict(data)
        if "start_date" in values:
            values["start_date"] = date.fromisoformat(values["start_date"])
        if "shift_categories" in values:
            values["shift_categories"] = tuple(values["shift_categories"])
        return cls(**values)


# Fields added after the first worlds were generated, with the default that leaves a world as
# it was (see to_dict).
LATER_FIELDS: dict[str, Any] = {"reread_share": 0.0, "taste_drift": 0.0}

PRESETS: dict[str, DemoWorldConfig] = {
    "small": DemoWorldConfig(),
    # About MIND-small's size: ~50k news, ~50k users, ~150k impressions.
    "mind_small": DemoWorldConfig(n_news=50_000, n_users=50_000, impressions_per_day=21_500),
    # The geometric middle of mind_small and mind_large, for the curve of cost against size.
    "mind_medium": DemoWorldConfig(n_news=90_000, n_users=225_000, impressions_per_day=90_000),
    # About MIND-large's size: ~160k news, ~1M users (the most the user id space holds), ~370k
    # impressions a day: ~2.2M train impressions over 6 days, and the last (event) day as dev,
    # 1.3x busier. History lengths and candidate counts as in mind_small.
    "mind_large": DemoWorldConfig(n_news=160_000, n_users=990_000, impressions_per_day=370_000),
    # Books or products rather than news, at `small`'s size: items stay live for four weeks and
    # barely age, popularity is a lasting trait of an item (what its id can learn and its text
    # cannot say, the more so as a fifth of the texts are off topic), readers are shown items
    # they read before, tastes drift slowly, and there is no event day.
    "catalogue_small": DemoWorldConfig(
        pre_days=28,
        candidate_window_days=28,
        freshness_weight=0.05,
        popularity_weight=1.0,
        shift_day=None,
        text_topic_noise=0.2,
        reread_share=0.1,
        taste_drift=0.5,
    ),
}
