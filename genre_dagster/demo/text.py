"""Headlines, abstracts and MIND-style entity lists rendered from the topic vocabularies."""

from __future__ import annotations

import functools
import json
import random
import re
import zlib
from dataclasses import dataclass
from string import Formatter

from genre_dagster.demo.vocabulary import (
    ABSTRACT_TEMPLATES,
    CATEGORIES,
    CLOSERS,
    PLACES,
    SOURCES,
    TAILS,
    TIME_PHRASES,
    TITLE_TEMPLATES,
    Entity,
)

TITLE_WORDS = (6, 14)
ABSTRACT_WORDS = (15, 40)
EMPTY_ABSTRACT_SHARE = 0.05
# MIND has a few rows whose entity columns are empty strings rather than `[]`.
EMPTY_ENTITY_FIELD_SHARE = 0.01
_MAX_TRIES = 20
_ARTICLE = re.compile(r"\b([Aa]) ([aeiouAEIOU])")


@dataclass(frozen=True)
class NewsText:
    """The text columns of one news row (entity columns are JSON text, `[]` or `""`)."""

    title: str
    abstract: str
    title_entities: str
    abstract_entities: str


@dataclass(frozen=True)
class _Pools:
    nouns: tuple[str, ...]
    category_nouns: tuple[str, ...]
    entities: tuple[Entity, ...]
    category_entities: tuple[Entity, ...]
    places: tuple[Entity, ...]
    verbs: tuple[str, ...]
    adjectives: tuple[str, ...]


def _pick(rnd: random.Random, seq: tuple):
    # Index from `random()` only: its stream is stable across Python versions.
    return seq[int(rnd.random() * len(seq))]


@functools.cache
def _slots(template: str) -> tuple[str, ...]:
    return tuple(name for _, name, _, _ in Formatter().parse(template) if name)


def _offsets(text: str, surface: str) -> list[int]:
    found, start = [], text.find(surface)
    while start >= 0:
        found.append(start)
        start = text.find(surface, start + len(surface))
    return found


def wikidata_id(surface: str) -> str:
    """A stable made-up Wikidata-style id for an entity surface form."""
    return f"Q{zlib.crc32(surface.encode('utf-8')) % 5_000_000 + 1000}"


def _confidence(surface: str) -> float:
    value = (zlib.crc32(surface[::-1].encode("utf-8")) % 220) / 1000
    return 1.0 if value >= 0.2 else round(0.8 + value, 3)


def entities_json(text: str, entities: list[Entity]) -> str:
    """MIND-style entity list of the entities that occur in `text` (`[]` when none)."""
    rows = []
    seen: set[str] = set()
    for entity in entities:
        if entity.surface in seen:
            continue
        offsets = _offsets(text, entity.surface)
        if not offsets:
            continue
        seen.add(entity.surface)
        rows.append(
            {
                "Label": entity.surface,
                "Type": entity.type,
                "WikidataId": wikidata_id(entity.surface),
                "Confidence": _confidence(entity.surface),
                "OccurrenceOffsets": offsets,
                "SurfaceForms": [entity.surface],
            }
        )
    return json.dumps(rows, ensure_ascii=False)


def news_url(news_id: str, category: str, title: str) -> str:
    """A made-up article address in the spirit of MIND's urls."""
    slug = "-".join(re.findall(r"[a-z0-9]+", title.lower())[:8])
    return f"https://news.example.org/{category}/{slug}/ar-{news_id}"


class TextRenderer:
    """Renders news text for any (category, subcategory) of the vocabulary."""

    def __init__(self) -> None:
        self._pools: dict[tuple[str, str], _Pools] = {}
        for cat in CATEGORIES:
            cat_entities = tuple(e for sub in cat.subcategories for e in sub.entities)
            for sub in cat.subcategories:
                local_places = tuple(e for e in sub.entities if e.type == "G")
                self._pools[(cat.name, sub.name)] = _Pools(
                    nouns=sub.nouns,
                    category_nouns=cat.nouns,
                    entities=sub.entities,
                    category_entities=cat_entities,
                    places=local_places,
                    verbs=cat.verbs,
                    adjectives=cat.adjectives,
                )

    def _fill(self, rnd: random.Random, template: str, pools: _Pools) -> tuple[str, list[Entity]]:
        values: dict[str, str] = {}
        used: list[Entity] = []
        for slot in _slots(template):
            if slot in values:
                continue
            if slot in ("E", "E2"):
                pool = pools.entities if rnd.random() < 0.75 else pools.category_entities
                entity = _pick(rnd, pool)
                if slot == "E2" and entity.surface == values.get("E"):
                    entity = _pick(rnd, pools.category_entities)
                values[slot] = entity.surface
                used.append(entity)
            elif slot == "P":
                pool = pools.places if pools.places and rnd.random() < 0.4 else PLACES
                entity = _pick(rnd, pool)
                values[slot] = entity.surface
                used.append(entity)
            elif slot in ("N", "N2"):
                pool = pools.nouns if rnd.random() < 0.7 else pools.category_nouns
                values[slot] = _pick(rnd, pool)
            elif slot in ("V", "V2"):
                values[slot] = _pick(rnd, pools.verbs)
            elif slot == "A":
                values[slot] = _pick(rnd, pools.adjectives)
            elif slot == "T":
                values[slot] = _pick(rnd, TIME_PHRASES)
            elif slot == "G":
                values[slot] = _pick(rnd, TAILS)
            elif slot == "S":
                values[slot] = _pick(rnd, SOURCES)
            elif slot == "num":
                values[slot] = str(3 + int(rnd.random() * 10))
            else:
                raise ValueError(f"text template {template!r}: unknown slot {{{slot}}}")
        text = _ARTICLE.sub(r"\1n \2", template.format(**values))
        return text[0].upper() + text[1:], used

    def _title(self, rnd: random.Random, pools: _Pools) -> tuple[str, list[Entity]]:
        low, high = TITLE_WORDS
        for _ in range(_MAX_TRIES):
            title, used = self._fill(rnd, _pick(rnd, TITLE_TEMPLATES), pools)
            if low <= len(title.split()) <= high:
                break
        # After _MAX_TRIES the last draw is kept: length bounds are a style target, not a rule.
        return title, used

    def _abstract(self, rnd: random.Random, pools: _Pools) -> tuple[str, list[Entity]]:
        low, high = ABSTRACT_WORDS
        for _ in range(_MAX_TRIES):
            first, used = self._fill(rnd, _pick(rnd, ABSTRACT_TEMPLATES), pools)
            parts = [first]
            roll = rnd.random()
            if roll < 0.45:
                second, more = self._fill(rnd, _pick(rnd, ABSTRACT_TEMPLATES), pools)
                parts.append(second)
                used += more
            elif roll < 0.75:
                parts.append(_pick(rnd, CLOSERS) + ".")
            text = " ".join(parts)
            if low <= len(text.split()) <= high:
                break
        return text, used

    def render(self, rnd: random.Random, category: str, subcategory: str) -> NewsText:
        """Render one news item's title, abstract and entity columns."""
        pools = self._pools.get((category, subcategory))
        if pools is None:
            raise ValueError(f"unknown category/subcategory {category}/{subcategory}")
        title, title_used = self._title(rnd, pools)
        if rnd.random() < EMPTY_ABSTRACT_SHARE:
            abstract, abstract_used = "", []
        else:
            abstract, abstract_used = self._abstract(rnd, pools)
        if rnd.random() < EMPTY_ENTITY_FIELD_SHARE:
            return NewsText(title, abstract, "", "")
        return NewsText(
            title,
            abstract,
            entities_json(title, title_used),
            entities_json(abstract, abstract_used),
        )
