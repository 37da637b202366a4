"""The embeddings after the first nightly run: every item, every field, the real MiniLM.

Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

from world_sql import query


def test_embeddings_cover_every_item_and_field(world):
    rows = dict(
        query(
            world,
            "select field, count(distinct news_id) from embeddings.news_embeddings group by 1",
        )
    )
    (items,) = query(
        world,
        "select (select count(*) from main.stg_news) "
        "+ (select count(*) from enrichment.synthetic_items)",
    )[0]
    assert set(rows) == {"title", "abstract", "summary"}  # what the default scorers read
    assert all(n == items for n in rows.values())
    (dims,) = query(
        world, "select list_distinct(list(len(vector))) from embeddings.news_embeddings"
    )[0]
    assert dims == [384]  # the real offline MiniLM
