"""What a deployment lets the GENRE roles answer, from configuration strings.

Topic vocabularies (`topics`):
- `auto` (default): the dataset's categories when it has at least two, otherwise `open`
  (a one-category catalogue such as books can only ever be profiled as its one category);
- `categories`: the dataset's categories;
- `genre_news`: GENRE's 19 news interest topics (its MIND profiler's list);
- `open`: free-form topics (at most `max_topics`, a few words each, normalized);
- `file:PATH`: one term a line (`#` comments and blank lines skipped);
- anything else: a comma-separated list of terms.

Regions (`regions`): `auto` (US states for news, off elsewhere), `off`, `us_states`, `file:PATH`
or a comma-separated list.

The domain (`news`, `books`, `products`, or any noun phrase such as "podcast episode") names
the items in every prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from genre_dagster.enrichment.schemas import OutputLimits, VocabularyConfig
from genre_dagster.enrichment.vocabulary import (
    GENRE_NEWS_TOPICS,
    Vocabulary,
    us_states_vocabulary,
)

_DOMAIN_NOUNS = {
    "news": ("news article", "news articles"),
    "book": ("book", "books"),
    "books": ("book", "books"),
    "product": ("product", "products"),
    "products": ("product", "products"),
    "item": ("item", "items"),
    "items": ("item", "items"),
}


def domain_nouns(domain: str) -> tuple[str, str]:
    """(singular, plural) noun of the items of `domain`, e.g. ("book", "books")."""
    key = " ".join(domain.lower().split())
    if not key:
        raise ValueError("the domain must not be empty (e.g. news, books, products)")
    if key in _DOMAIN_NOUNS:
        return _DOMAIN_NOUNS[key]
    if len(key) > 40 or not all(ch.isalnum() or ch in " -'" for ch in key):
        raise ValueError(f"domain {domain!r}: use a short noun phrase such as 'podcast episode'")
    plural = key if key.endswith("s") else key + "s"
    return key, plural


def is_news(domain: str) -> bool:
    return domain_nouns(domain)[0] == "news article"


def _terms_from(spec: str, what: str) -> tuple[str, ...]:
    if spec.startswith("file:"):
        path = Path(spec[5:]).expanduser()
        if not path.is_file():
            raise ValueError(f"{what} file {str(path)!r} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
        terms = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        if not terms:
            raise ValueError(f"{what} file {str(path)!r} holds no term (one term a line)")
        return tuple(dict.fromkeys(terms))
    terms = [t.strip() for t in spec.split(",") if t.strip()]
    if not terms:
        raise ValueError(f"{what} {spec!r}: give a preset or a comma-separated list of terms")
    return tuple(dict.fromkeys(terms))


def topic_vocabulary(spec: str, categories: Sequence[str]) -> Vocabulary | None:
    """The topic list for `spec` (None: open topics)."""
    spec = spec.strip()
    if spec == "auto":
        spec = "categories" if len(set(categories)) >= 2 else "open"
    if spec == "open":
        return None
    if spec == "categories":
        if not categories:
            raise ValueError("topics=categories, but the catalogue has no category")
        return Vocabulary.of(sorted(set(categories)))
    if spec == "genre_news":
        return Vocabulary.of(GENRE_NEWS_TOPICS)
    return Vocabulary.of(_terms_from(spec, "topics"))


def region_vocabulary(spec: str, domain: str) -> Vocabulary | None:
    """The region list for `spec` (None: no regions)."""
    spec = spec.strip()
    if spec == "auto":
        spec = "us_states" if is_news(domain) else "off"
    if spec == "off":
        return None
    if spec == "us_states":
        return us_states_vocabulary()
    return Vocabulary.of(_terms_from(spec, "regions"))


def vocabulary_for(
    categories: Sequence[str],
    topics: str = "auto",
    regions: str = "auto",
    domain: str = "news",
    max_topics: int = 5,
    limits: OutputLimits | None = None,
) -> VocabularyConfig:
    """The roles' vocabularies from configuration strings (see the module docstring)."""
    topic_list = topic_vocabulary(topics, categories)
    return VocabularyConfig(
        topics=topic_list,
        categories=Vocabulary.of(sorted(set(categories))) if categories else None,
        regions=region_vocabulary(regions, domain),
        max_topics=max_topics,
        open_topics=topic_list is None,
        limits=limits or OutputLimits(),
    )
