"""Steering parameters of recommendation lists: category boosts and exclusions, a freshness
window and MMR diversity, set per user segment or mapped from a reader's instruction by the LLM
(`instructions.py`), and how they merge.

Boosts are additive, in units of each user's own score spread (standard deviation of the
user's finite scores), so one weight means the same for every scorer and every user.
Exclusions and too-old items can never be recommended; diversity is the MMR lambda. They are
applied to scores in `reranking.py`.

Explicit parameters are checked strictly against the category list (a typo in config fails
loudly); categories named by the LLM are repaired with `Vocabulary` (case, plural, synonym,
fuzzy) and the rest rejected with a note.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from genre_dagster.enrichment.schemas import MAX_FRESHNESS_DAYS, MAX_INSTRUCTION_CHARS, MAX_WEIGHT

SEGMENTS = ("all", "cold", "warm")


class SteeringParams(BaseModel):
    """How to steer one user's list; JSON round-trips (`model_dump_json` /
    `model_validate_json`).

    Attributes:
        category_weights: category -> additive boost in units of the user's score standard
            deviation, in [-3, 3] (negative: less of it).
        exclude_categories: categories never recommended.
        freshness_days: keep only items first shown within the last N days of the data
            (newest day - first day < N); None: no window.
        diversity: MMR lambda in [0, 1] (0: pure relevance, 1: most diverse); None: not set
            (inherits in `merge`, acts as 0).
        source: where the parameters came from: "explicit" (config), "instruction" (LLM),
            "none" (no steering; then the parameters must be neutral).
        instruction: the reader's instruction text when source is "instruction".
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    category_weights: dict[str, float] = Field(default_factory=dict)
    exclude_categories: list[str] = Field(default_factory=list)
    freshness_days: int | None = Field(default=None, ge=1, le=MAX_FRESHNESS_DAYS)
    diversity: float | None = Field(default=None, ge=0.0, le=1.0)
    source: Literal["explicit", "instruction", "none"] = "explicit"
    instruction: str = Field(default="", max_length=MAX_INSTRUCTION_CHARS)

    @field_validator("category_weights")
    @classmethod
    def _weights_in_range(cls, weights: dict[str, float]) -> dict[str, float]:
        for category, weight in weights.items():
            if not math.isfinite(weight) or abs(weight) > MAX_WEIGHT:
                raise ValueError(
                    f"weight of {category!r} is {weight}; weights lie in "
                    f"[-{MAX_WEIGHT}, {MAX_WEIGHT}] (score standard deviations)"
                )
        return weights

    @field_validator("exclude_categories")
    @classmethod
    def _unique_exclusions(cls, categories: list[str]) -> list[str]:
        return list(dict.fromkeys(categories))

    @model_validator(mode="after")
    def _consistent(self) -> SteeringParams:
        both = sorted(set(self.category_weights) & set(self.exclude_categories))
        if both:
            raise ValueError(f"categories {both} are both boosted and excluded")
        if self.source == "none" and not self.is_neutral:
            raise ValueError("source 'none' means no steering, but the parameters steer")
        return self

    @property
    def is_neutral(self) -> bool:
        """True when these parameters change nothing."""
        return (
            not any(self.category_weights.values())
            and not self.exclude_categories
            and self.freshness_days is None
            and not self.diversity
        )

    @property
    def effective_diversity(self) -> float:
        """The MMR lambda to use (0 when not set)."""
        return self.diversity or 0.0

    def check_categories(self, categories: Sequence[str]) -> SteeringParams:
        """Self, or ValueError naming the unknown categories and the whole vocabulary."""
        known = set(categories)
        unknown = sorted((set(self.category_weights) | set(self.exclude_categories)) - known)
        if unknown:
            raise ValueError(
                f"steering names unknown categories {unknown}; the categories are: "
                f"{', '.join(categories)}"
            )
        return self

    def key(self) -> str:
        """A canonical JSON text: equal parameters have equal keys (used to group users)."""
        return json.dumps(self.model_dump(), sort_keys=True)


NO_STEERING = SteeringParams(source="none")


def merge(base: SteeringParams, override: SteeringParams) -> SteeringParams:
    """`override` on top of `base`: the later word wins per category.

    Boosts: union, override's weight wins; a category the override boosts is no longer
    excluded and one it excludes is no longer boosted. Exclusions: union. Freshness and
    diversity: override's value when set. Source and instruction: those of the override,
    unless it changes nothing (then the base's).
    """
    weights = {
        c: w for c, w in base.category_weights.items() if c not in override.exclude_categories
    }
    weights.update(override.category_weights)
    exclude = [c for c in base.exclude_categories if c not in override.category_weights]
    exclude += [c for c in override.exclude_categories if c not in exclude]
    origin = base if override.is_neutral else override
    return SteeringParams(
        category_weights=weights,
        exclude_categories=exclude,
        freshness_days=(
            override.freshness_days if override.freshness_days is not None else base.freshness_days
        ),
        diversity=override.diversity if override.diversity is not None else base.diversity,
        source=origin.source,
        instruction=origin.instruction,
    )


def resolve_segments(
    segment_params: Mapping[str, SteeringParams], user_segments: Sequence[str] | np.ndarray
) -> list[SteeringParams]:
    """One parameter object per user row: "all" applies to everyone, "cold"/"warm" are merged
    on top of it for their users. Users of a segment with no entry get "all" (or none)."""
    unknown = sorted(set(segment_params) - set(SEGMENTS))
    if unknown:
        raise ValueError(f"unknown steering segments {unknown}; known: {list(SEGMENTS)}")
    base = segment_params.get("all", NO_STEERING)
    by_segment = {
        s: merge(base, segment_params[s]) if s in segment_params else base for s in ("cold", "warm")
    }
    out = []
    for row, segment in enumerate(user_segments):
        if segment not in by_segment:
            raise ValueError(f"user row {row}: segment {segment!r} is not 'cold' or 'warm'")
        out.append(by_segment[segment])
    return out


def describe(params: SteeringParams) -> str:
    """A short human description, e.g. "more science (+2.0 sd); never entertainment"."""
    parts = []
    ups = [f"{c} (+{w:g} sd)" for c, w in params.category_weights.items() if w > 0]
    downs = [f"{c} ({w:g} sd)" for c, w in params.category_weights.items() if w < 0]
    if ups:
        parts.append("more " + ", ".join(ups))
    if downs:
        parts.append("less " + ", ".join(downs))
    if params.exclude_categories:
        parts.append("never " + ", ".join(params.exclude_categories))
    if params.freshness_days is not None:
        parts.append(f"only items first shown in the last {params.freshness_days} day(s)")
    if params.effective_diversity > 0:
        parts.append(f"diversity {params.effective_diversity:g}")
    return "; ".join(parts) or "no change"
