"""LLM enrichment after the first nightly run: validated answers, synthetic items kept apart.

Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

from world_sql import query


def test_enrichment_tables_hold_validated_answers(world):
    (summaries, items) = query(
        world,
        "select (select count(*) from enrichment.news_summaries), "
        "(select count(*) from main.stg_news)",
    )[0]
    assert 0 < summaries <= items
    categories = {c for (c,) in query(world, "select distinct category from main.stg_news")}
    topics = {
        t for (t,) in query(world, "select distinct unnest(topics) from enrichment.user_profiles")
    }
    assert topics and topics <= categories  # only the vocabulary is ever stored
    generated = query(world, "select category, news_id from enrichment.synthetic_items")
    assert generated and all(c in categories and n.startswith("S") for c, n in generated)


def test_synthetic_items_are_never_candidates_or_labels(world):
    (n,) = query(
        world,
        "select count(*) from main.impressions i join enrichment.synthetic_items s using (news_id)",
    )[0]
    assert n == 0
