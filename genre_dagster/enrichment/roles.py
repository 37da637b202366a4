"""The LLM roles: which input fields each needs and how they become prompt values.

The GENRE roles enrich items and users; steering maps a reader's instruction to list settings
at serving time. All run through the same pass (`runner.run_role`). All item text (and the
reader's instruction) passes through `clean_text` (control characters and delimiters removed,
capped) and sits inside the `<item>` block of the template; vocabulary lists are our own
configuration and are listed outside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genre_dagster.enrichment.choices import domain_nouns
from genre_dagster.enrichment.sanitize import PromptLimits, clean_text, history_block
from genre_dagster.enrichment.schemas import MAX_INSTRUCTION_CHARS, VocabularyConfig

# The enrichment roles, run over items and users by the enrichment assets (and exported and
# imported as batches).
ROLES = ("summarizer", "profiler", "generator", "chain_generator")
# Roles run at serving time, one input at a time.
SERVING_ROLES = ("steering",)

# Values every template may use or leave out (the domain's nouns, the profiler's rules for
# its two template generations); any other value a template does not use is an error.
CONTEXT_VALUES = frozenset(
    {"item_noun", "items_noun", "topics", "regions", "max_topics", "topic_rule", "region_rule",
     "answer_form"}
)  # fmt: skip

# The reminder appended when an answer fails validation (one stricter retry).
STRICT_REMINDER = (
    "Your previous answer could not be used ({reason}). Reply again with exactly one JSON object "
    "of the requested form and nothing else: no explanation, no markdown, no code fences, no YAML."
)


@dataclass(frozen=True)
class RoleInput:
    """One unit of work: `key` (item or user id) and the role's input fields.

    summarizer: title, abstract, category, subcategory.
    profiler: history = titles, oldest first.
    generator / chain_generator: history = [{"category": ..., "title": ...}, ...], oldest first.
    steering: instruction = the reader's text.
    """

    key: str
    fields: Mapping[str, Any]


def prompt_values(
    role: str,
    fields: Mapping[str, Any],
    limits: PromptLimits,
    vocab: VocabularyConfig,
    domain: str = "news",
) -> dict[str, str]:
    """The template values of `role` for one input; ValueError names a missing/bad field."""
    cap = limits.max_field_chars
    item_noun, items_noun = domain_nouns(domain)
    nouns = {"item_noun": item_noun, "items_noun": items_noun}
    if role == "summarizer":
        title = clean_text(fields.get("title"), cap)
        if not title:
            raise ValueError("summarizer input needs a non-empty title")
        return {
            **nouns,
            "title": title,
            "abstract": clean_text(fields.get("abstract"), cap) or "(none)",
            "category": clean_text(fields.get("category"), cap),
            "subcategory": clean_text(fields.get("subcategory"), cap),
        }
    if role == "profiler":
        lines = [clean_text(_title_of(entry), cap) for entry in _history(fields)]
        return {
            **nouns,
            "history": history_block([line for line in lines if line], limits),
            **_profiler_rules(vocab),
        }
    if role in ("generator", "chain_generator"):
        if vocab.categories is None:
            raise ValueError(f"{role} needs a category list")
        lines = []
        for entry in _history(fields):
            if not isinstance(entry, Mapping):
                raise ValueError(f"{role} history entries are {{category, title}} mappings")
            title = clean_text(entry.get("title"), cap)
            if title:
                lines.append(f"({clean_text(entry.get('category'), 50) or 'unknown'}) {title}")
        values = {
            **nouns,
            "history": history_block(lines, limits),
            "categories": ", ".join(vocab.categories.terms),
        }
        if role == "chain_generator":
            topics = fields.get("topics")
            if not topics or not isinstance(topics, Sequence) or isinstance(topics, str):
                raise ValueError("chain_generator input needs the profiler's topics (a list)")
            values["topics"] = ", ".join(clean_text(t, 50) for t in topics)
        return values
    if role == "steering":
        if vocab.categories is None:
            raise ValueError("steering needs a category list")
        instruction = clean_text(fields.get("instruction"), MAX_INSTRUCTION_CHARS)
        if not instruction:
            raise ValueError("steering input needs a non-empty instruction")
        return {
            **nouns,
            "instruction": instruction,
            "categories": ", ".join(vocab.categories.terms),
        }
    raise ValueError(f"unknown role {role!r}; known: {(*ROLES, *SERVING_ROLES)}")


def avoid_copying(
    role: str, fields: Mapping[str, Any], limits: PromptLimits, instructions: tuple[str, ...]
) -> tuple[str, ...]:
    """What an answer of `role` should not copy runs of words from: for the roles that write
    text, the prompt's own instructions (a small model otherwise recites them as its answer),
    plus the item's title for the summarizer (a new title that repeats the old one adds
    nothing) and the history's titles for the generators (GENRE asks for an item unlike the
    history). The profiler's answer is a list of short terms: nothing."""
    cap = limits.max_field_chars
    if role == "summarizer":
        return (*instructions, clean_text(fields.get("title"), cap))
    if role in ("generator", "chain_generator"):
        titles = (clean_text(_title_of(entry), cap) for entry in _history(fields))
        return (*instructions, *(t for t in titles if t))
    return ()


def _profiler_rules(vocab: VocabularyConfig) -> dict[str, str]:
    """The profiler's topic and region instructions under `vocab` (v2 rules; v1 lists)."""
    n = vocab.max_topics
    if vocab.open_topics:
        topic_rule = (
            f"up to {n} interests in your own words, each one to {vocab.limits.term_words} "
            "words (a subject, theme or genre, not a title)"
        )
        topics = "(any: your own words)"
    elif vocab.topics is not None and vocab.topics.terms:
        topics = ", ".join(vocab.topics.terms)
        topic_rule = f"up to {n} topics chosen only from this list: {topics}"
    else:
        raise ValueError("profiler needs a topic vocabulary")
    if vocab.has_regions:
        regions = ", ".join(vocab.regions.terms)  # type: ignore[union-attr]
        region_rule = (
            f'- "regions": up to {vocab.max_regions} places the user seems interested in, chosen '
            f"only from this list: {regions}. Use an empty list when none apply.\n"
        )
        form = '{"topics": ["<topic>", ...], "regions": ["<region>", ...]}'
    else:
        regions, region_rule = "(none: always use an empty list)", ""
        form = '{"topics": ["<topic>", ...]}'
    return {
        "topics": topics,
        "regions": regions,
        "max_topics": str(n),
        "topic_rule": topic_rule,
        "region_rule": region_rule,
        "answer_form": form,
    }


def _history(fields: Mapping[str, Any]) -> list[Any]:
    history = fields.get("history")
    if not isinstance(history, Sequence) or isinstance(history, str) or not history:
        raise ValueError("input needs a non-empty history list")
    return list(history)


def _title_of(entry: Any) -> Any:
    return entry.get("title") if isinstance(entry, Mapping) else entry
