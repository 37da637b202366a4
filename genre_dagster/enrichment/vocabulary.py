"""Closed vocabularies (topics, categories, regions) and the repair of near-miss answers.

An LLM asked to pick from a list answers "Sports ", "sport", "Food & Drink" or "finanse". Such
answers are mapped to the list entry (case/whitespace, plural, synonym, then fuzzy match with a
threshold); anything else is rejected with a note. Every mapping is reported, never silent.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# Common answers for MIND-style categories; used only when the target is in the vocabulary.
DEFAULT_SYNONYMS: dict[str, str] = {
    "automobiles": "autos",
    "automotive": "autos",
    "cars": "autos",
    "business": "finance",
    "economy": "finance",
    "money": "finance",
    "markets": "finance",
    "cooking": "foodanddrink",
    "food": "foodanddrink",
    "recipes": "foodanddrink",
    "film": "movies",
    "cinema": "movies",
    "television": "tv",
    "tv shows": "tv",
    "fitness": "health",
    "medicine": "health",
    "celebrity": "entertainment",
    "celebrities": "entertainment",
    "fashion": "lifestyle",
    "gaming": "games",
    "video games": "games",
    "children": "kids",
    "climate": "weather",
}

US_STATES: dict[str, str] = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "FL": "Florida", "GA": "Georgia",
    "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois", "IN": "Indiana", "IA": "Iowa",
    "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana", "ME": "Maine", "MD": "Maryland",
    "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota", "MS": "Mississippi",
    "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada", "NH": "New Hampshire",
    "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York", "NC": "North Carolina",
    "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon", "PA": "Pennsylvania",
    "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota", "TN": "Tennessee",
    "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia", "WA": "Washington",
    "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming", "DC": "District of Columbia",
}  # fmt: skip


def _normalize(value: str) -> str:
    value = unicodedata.normalize("NFKC", value).lower().replace("&", " and ")
    return " ".join(re.sub(r"[^0-9a-z]+", " ", value).split())


def _compact(value: str) -> str:
    return _normalize(value).replace(" ", "")


@dataclass(frozen=True)
class Vocabulary:
    """A closed list of terms with the repairs allowed when matching answers to it.

    Args:
        terms: the allowed values, as they should be stored.
        synonyms: alias -> term; aliases whose term is not in `terms` are ignored.
        fuzzy_cutoff: difflib ratio needed for a fuzzy match (1.0 disables fuzzy matching).
    """

    terms: tuple[str, ...]
    synonyms: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_SYNONYMS))
    fuzzy_cutoff: float = 0.85
    _by_compact: dict[str, str] = field(init=False, repr=False, compare=False)
    _aliases: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.fuzzy_cutoff <= 1:
            raise ValueError(f"Vocabulary: fuzzy_cutoff must be in (0, 1], got {self.fuzzy_cutoff}")
        compacts: dict[str, str] = {}
        for term in self.terms:
            key = _compact(term)
            if not key:
                raise ValueError(f"Vocabulary: term {term!r} has no letters or digits")
            if key in compacts and compacts[key] != term:
                raise ValueError(f"Vocabulary: terms {compacts[key]!r} and {term!r} collide")
            compacts[key] = term
        object.__setattr__(self, "_by_compact", compacts)
        aliases = {
            _compact(alias): compacts[_compact(target)]
            for alias, target in self.synonyms.items()
            if _compact(target) in compacts
        }
        object.__setattr__(self, "_aliases", aliases)

    @classmethod
    def of(cls, terms: Iterable[str], **kwargs: object) -> Vocabulary:
        """Vocabulary from any iterable of terms (order kept, exact duplicates removed)."""
        return cls(tuple(dict.fromkeys(terms)), **kwargs)  # type: ignore[arg-type]

    def match(self, value: object) -> tuple[str | None, str | None]:
        """(term, note): the term `value` maps to (None if rejected) and how it was mapped.

        The note is None for an exact match.
        """
        if not isinstance(value, str):
            return None, f"rejected {value!r}: not a string"
        if value in self.terms:
            return value, None
        by_compact, aliases = self._by_compact, self._aliases
        key = _compact(value)
        if not key:
            return None, f"rejected {value!r}: empty"
        if key in by_compact:
            return by_compact[key], f"{value!r} -> {by_compact[key]!r} (case/spacing)"
        variants = [key + "s", key + "es"]
        variants += [key[:-1]] if key.endswith("s") else []
        variants += [key[:-2]] if key.endswith("es") else []
        for variant in variants:
            if variant in by_compact:
                return by_compact[variant], f"{value!r} -> {by_compact[variant]!r} (plural)"
        if key in aliases:
            return aliases[key], f"{value!r} -> {aliases[key]!r} (synonym)"
        if self.fuzzy_cutoff < 1:
            close = difflib.get_close_matches(key, list(by_compact), n=1, cutoff=self.fuzzy_cutoff)
            if close:
                ratio = difflib.SequenceMatcher(None, key, close[0]).ratio()
                term = by_compact[close[0]]
                return term, f"{value!r} -> {term!r} (fuzzy, ratio {ratio:.2f})"
        return None, f"rejected {value!r}: not in the vocabulary"


# GENRE's MIND profiler chose interest topics only from these 19 (the paper's prompt).
GENRE_NEWS_TOPICS: tuple[str, ...] = (
    "health", "education", "travel", "religion", "culture", "food", "fashion", "technology",
    "social media", "gender and sexuality", "race and ethnicity", "history", "economy",
    "finance", "real estate", "transportation", "weather", "disasters", "international news",
)  # fmt: skip

_KEEP_FINAL_S = ("ss", "us", "is", "os", "news", "ics")


def normalize_open_term(value: str) -> str:
    """A free-form interest as stored: Unicode NFKC, lower case, single spaces, no surrounding
    punctuation, and the last word singular ("Board Games" and "board game" are one term)."""
    value = unicodedata.normalize("NFKC", value).lower().replace("_", " ")
    value = " ".join(re.sub(r"[^\w&'+-]+", " ", value).split()).strip("&'+- ")
    if not value:
        return ""
    *head, last = value.split(" ")
    if len(last) > 3 and not last.endswith(_KEEP_FINAL_S):
        if last.endswith("ies") and len(last) > 4:
            last = last[:-3] + "y"
        elif last.endswith(("ches", "shes", "xes", "sses")):
            last = last[:-2]
        elif last.endswith("s"):
            last = last[:-1]
    return " ".join([*head, last])


def us_states_vocabulary() -> Vocabulary:
    """US states (and DC) by name, with their postal abbreviations as synonyms."""
    return Vocabulary(tuple(US_STATES.values()), synonyms=dict(US_STATES), fuzzy_cutoff=0.85)
