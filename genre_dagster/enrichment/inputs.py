"""What each GENRE role is asked about: its inputs read from the feature tables, newest first.

Shared by the enrichment assets and `genre-dagster llm export`, so an exported batch holds the
prompts the next run would send, in the same order (the per-run budget serves the head of it).
Every function takes an open DuckDB connection and returns plain data.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from genre_dagster.enrichment.roles import RoleInput
from genre_dagster.settings import COLD_MAX_CLICKS
from genre_dagster.warehouse import ITEM_DAILY_STATS, STG_NEWS, USER_HISTORIES, query_frame

HISTORY_TITLES = 20  # most recent history titles shown to the profiler
USER_ROLES = ("profiler", "generator", "chain_generator")


def item_categories(conn: Any) -> list[str]:
    """The catalogue's categories (what generated items and closed topic lists may name)."""
    return sorted(
        c for (c,) in conn.execute(f"select distinct category from {STG_NEWS}").fetchall()
    )


def summarizer_inputs(conn: Any) -> tuple[pl.DataFrame, list[RoleInput]]:
    """Items (news_id, title, abstract, category, subcategory), most recently shown first."""
    items = query_frame(
        conn,
        f"""
        select n.news_id, n.title, n.abstract, n.category, n.subcategory
        from {STG_NEWS} n
        left join (select news_id, max(day) as last_day from {ITEM_DAILY_STATS} group by 1)
            s using (news_id)
        order by s.last_day desc nulls last, n.news_id
        """,
    )
    return items, [RoleInput(key=r["news_id"], fields=r) for r in items.iter_rows(named=True)]


def profiler_inputs(
    conn: Any, history_titles: int = HISTORY_TITLES
) -> tuple[pl.DataFrame, list[RoleInput]]:
    """Users with a known item in their history (user_id, `recent`: their newest clicks' news
    ids, oldest first), most recently active first, and their inputs (those clicks' titles;
    ids without a news row are left out).

    The histories are read as news ids and each title is one shared string: users click the
    same items, so a million users' twenty titles would otherwise be twenty million copies."""
    users = query_frame(
        conn,
        f"""
        select user_id, history[-{int(history_titles)}:] as recent
        from {USER_HISTORIES}
        order by last_seen desc, user_id
        """,
    )
    titles = dict(conn.execute(f"select news_id, title from {STG_NEWS}").fetchall())
    inputs = []
    for user, recent in users.iter_rows():
        history = [titles[i] for i in recent if i in titles]
        if history:
            inputs.append(RoleInput(key=user, fields={"history": history}))
    keep = pl.Series([item.key for item in inputs], dtype=pl.Utf8)
    return users.filter(pl.col("user_id").is_in(keep.implode())), inputs


def cold_user_inputs(conn: Any, cold_max_clicks: int) -> tuple[pl.DataFrame, list[RoleInput]]:
    """Cold users (1..`cold_max_clicks` clicks) with their history as {category, title} entries,
    most recently active first."""
    cold = query_frame(
        conn,
        f"""
        select h.user_id,
               list({{'category': n.category, 'title': n.title}} order by u.ordinality) as items
        from {USER_HISTORIES} h,
            unnest(h.history) with ordinality as u(news_id, ordinality)
        join {STG_NEWS} n on n.news_id = u.news_id
        where h.history_length between 1 and {int(cold_max_clicks)}
        group by h.user_id, h.last_seen
        order by h.last_seen desc, h.user_id
        """,
    )
    return cold, [RoleInput(key=u, fields={"history": items}) for u, items in cold.iter_rows()]


def role_inputs(conn: Any, role: str, cold_max_clicks: int = COLD_MAX_CLICKS) -> list[RoleInput]:
    """The inputs of `role` (summarizer, profiler, generator or chain_generator)."""
    if role == "summarizer":
        return summarizer_inputs(conn)[1]
    if role == "profiler":
        return profiler_inputs(conn)[1]
    if role in ("generator", "chain_generator"):
        return cold_user_inputs(conn, cold_max_clicks)[1]
    raise ValueError(f"unknown role {role!r}; known: summarizer, {', '.join(USER_ROLES)}")


def known_keys(conn: Any, role: str) -> set[str]:
    """Every key an answer of `role` may name: item ids (summarizer) or pseudonymized user ids
    (user roles), as the feature tables hold them."""
    if role == "summarizer":
        return {k for (k,) in conn.execute(f"select news_id from {STG_NEWS}").fetchall()}
    if role in USER_ROLES:
        return {k for (k,) in conn.execute(f"select user_id from {USER_HISTORIES}").fetchall()}
    raise ValueError(f"unknown role {role!r}")
