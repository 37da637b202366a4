"""The scorers the graph trains by default, and GENRE's variants of them.

Each spec names a scorer kind and its (partial) config; `profile` feeds GENRE user-profile
embeddings to the neural profile plug-in, `generated_history` appends GENRE's synthetic items to
cold users' histories. Users add or change scorers here or from the launchpad (overrides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ScorerSpec:
    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)
    variant: str = "title only"
    profile: bool = False
    generated_history: bool = False
    description: str = ""


DEFAULT_SCORERS: tuple[ScorerSpec, ...] = (
    ScorerSpec(
        "popularity",
        "popularity",
        {"half_life_days": 1.0},
        variant="no text",
        description="Time-decayed clicks: what everyone reads now.",
    ),
    ScorerSpec(
        "content_similarity",
        "content_similarity",
        {"field": "title+abstract", "user": "recency"},
        variant="title+abstract",
        description="Cosine between a recency-weighted history vector and each candidate "
        "(title and abstract vectors averaged).",
    ),
    ScorerSpec(
        "matrix_factorization",
        "matrix_factorization",
        {},
        variant="no text",
        description="Implicit ALS on the user-item click matrix, users folded in from history.",
    ),
    ScorerSpec(
        "sklearn_ranker",
        "sklearn_ranker",
        {"field": "title+abstract", "n_threads": 1},
        variant="title+abstract",
        description="Gradient-boosted ranker over similarity, popularity, CTR, category match, "
        "recency and history-length features.",
    ),
    ScorerSpec(
        "nrms",
        "nrms",
        {"fields": ["title"]},
        description="NRMS: multi-head self-attention user encoder over title embeddings.",
    ),
    ScorerSpec(
        "nrms_summary",
        "nrms",
        {"fields": ["title", "summary"]},
        variant="+ LLM summary",
        description="NRMS with GENRE's LLM summaries as a second item view.",
    ),
    ScorerSpec(
        "nrms_profile",
        "nrms",
        {"fields": ["title"], "profile": True},
        variant="+ LLM profile",
        profile=True,
        description="NRMS with GENRE user-profile topic embeddings fused into the user vector.",
    ),
    ScorerSpec(
        "nrms_generated",
        "nrms",
        {"fields": ["title"], "generated_history": True},
        variant="+ generated history",
        generated_history=True,
        description="NRMS where cold users' histories include GENRE's synthetic items.",
    ),
    ScorerSpec(
        "naml",
        "naml",
        {"fields": ["title", "abstract"], "optional_fields": []},
        variant="title+abstract+category",
        description="NAML: multi-view item encoder (title, abstract, category).",
    ),
)

ENSEMBLE_MEMBERS = ("popularity", "content_similarity", "matrix_factorization", "nrms")
