"""Turn the DuckDB feature tables into the array containers scorers consume.

No Dagster here: functions take an open DuckDB connection (or frames) and return
`ItemFeatures` / `ImpressionData`. Columnar all the way (Arrow -> Polars -> numpy), no per-row
Python, so MIND-small-sized splits (4M candidates) load in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import date

import numpy as np
import polars as pl

from genre_dagster.arrays import INDEX_DTYPE, PAD, ImpressionData, ItemFeatures
from genre_dagster.settings import HISTORY_CAP
from genre_dagster.warehouse import (
    IMPRESSION_SPLITS,
    ITEM_DAILY_STATS,
    STG_BEHAVIORS,
    STG_NEWS,
    SYNTHETIC_ITEMS,
    query_frame,
    table_exists,
)

SPLITS = ("train", "validation", "test", "unlabeled")


def load_item_table(conn, include_synthetic: bool = True) -> pl.DataFrame:
    """Items (news plus, optionally, LLM-generated synthetic items) with category and first day.

    Columns: news_id, category, title, abstract, is_synthetic, first_day (date the item was first
    shown as a candidate; null for items never shown).
    """
    items = query_frame(
        conn,
        f"""
        select n.news_id, n.category, n.title, n.abstract, false as is_synthetic, s.first_day
        from {STG_NEWS} n
        left join (select news_id, min(day) as first_day from {ITEM_DAILY_STATS} group by 1) s
            using (news_id)
        order by n.news_id
        """,
    )
    if include_synthetic and table_exists(conn, SYNTHETIC_ITEMS):
        synthetic = query_frame(
            conn,
            f"""
            select news_id, category, title, abstract, true as is_synthetic,
                   cast(null as date) as first_day
            from {SYNTHETIC_ITEMS} order by news_id
            """,
        )
        items = pl.concat([items, synthetic], how="vertical_relaxed")
    return items


def build_item_features(
    items: pl.DataFrame,
    embeddings: dict[str, pl.DataFrame],
    reference_day: date | None = None,
) -> ItemFeatures:
    """Assemble ItemFeatures; `embeddings` maps a field name to a frame (news_id, vector).

    Items without a vector for a field get a zero row (e.g. a synthetic item has no LLM summary):
    the count of such rows is visible through `missing_vectors`.
    """
    ids = items["news_id"].to_numpy().astype(object)
    categories = sorted(items["category"].unique().to_list())
    cat_index = {c: i for i, c in enumerate(categories)}
    matrices: dict[str, np.ndarray] = {}
    for field, frame in embeddings.items():
        joined = items.select("news_id").join(
            frame, on="news_id", how="left", maintain_order="left"
        )
        vectors = joined["vector"]
        dim = int(frame["vector"].list.len().max() or 0) if frame.height else 0
        if dim == 0:
            raise ValueError(f"embedding field {field!r} has no vectors")
        filled = vectors.fill_null(pl.lit([0.0] * dim, dtype=pl.List(pl.Float32)))
        matrices[field] = np.asarray(
            filled.cast(pl.Array(pl.Float32, dim)).to_numpy(), dtype=np.float32
        )
    publish_day = None
    if reference_day is not None:
        publish_day = (
            items.select((pl.col("first_day") - pl.lit(reference_day)).dt.total_days())
            .to_series()
            .cast(pl.Float64)
            .fill_null(np.nan)
            .to_numpy()
        )
    return ItemFeatures(
        item_ids=ids,
        embeddings=matrices,
        categories=np.array([cat_index[c] for c in items["category"].to_list()], dtype=np.int64),
        category_names=categories,
        is_synthetic=items["is_synthetic"].to_numpy().astype(bool),
        publish_day=publish_day,
    )


def _behaviors_query(splits: tuple[str, ...]) -> str:
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; splits are {SPLITS}")
    placeholders = ", ".join("?" for _ in splits)
    return f"""
        select b.impression_id, b.mind_impression_id, b.source_split, b.user_id, b.time, b.day,
               b.history, b.candidate_ids, b.candidate_labels, b.history_length, s.split
        from {STG_BEHAVIORS} b join {IMPRESSION_SPLITS} s using (impression_id)
        where s.split in ({placeholders})
        order by b.time, b.impression_id
        """


def load_behaviors(conn, splits: tuple[str, ...]) -> pl.DataFrame:
    """Impressions of the given splits in time order, with their history and candidates."""
    return query_frame(conn, _behaviors_query(splits), list(splits))


# The id lists of an impression: what `impression_rows` leaves out.
LIST_COLUMNS = ("history", "candidate_ids", "candidate_labels")


def impression_rows(behaviors: pl.DataFrame, lists: bool) -> pl.DataFrame:
    """`behaviors` with each impression's `n_candidates`, and its id lists (LIST_COLUMNS) only
    with `lists`."""
    rows = behaviors.with_columns(
        n_candidates=pl.col("candidate_ids").list.len().fill_null(0).cast(pl.Int64)
    )
    return rows if lists else rows.drop(LIST_COLUMNS)


def _index_lists(lists: pl.Series, index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flatten a list column and map ids to item indices; returns (offsets, flat indices)."""
    lengths = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = lists.explode(empty_as_null=False)
    if flat.null_count():
        raise ValueError(f"{flat.null_count()} null ids inside id lists")
    mapped = flat.replace_strict(index, default=None, return_dtype=pl.Int32)
    if mapped.null_count():
        missing = flat.filter(mapped.is_null()).head(3).to_list()
        raise KeyError(f"{mapped.null_count()} ids have no item row, e.g. {missing}")
    return offsets, mapped.to_numpy()


def pad_histories(offsets: np.ndarray, flat: np.ndarray, max_history: int) -> np.ndarray:
    """Left-padded [n, max_history] matrix of the most recent items (most recent last)."""
    n = len(offsets) - 1
    out = np.full((n, max_history), PAD, dtype=INDEX_DTYPE)
    lengths = np.diff(offsets)
    keep = np.minimum(lengths, max_history)
    # position of each kept element in its row: right-aligned
    rows = np.repeat(np.arange(n), keep)
    starts = offsets[1:] - keep
    within = np.arange(keep.sum()) - np.repeat(np.cumsum(keep) - keep, keep)
    cols = max_history - np.repeat(keep, keep) + within
    out[rows, cols] = flat[np.repeat(starts, keep) + within]
    return out


# Impressions turned into arrays at a time by `build_impressions`: flattening a MIND-large
# train split's id lists at once takes gigabytes of index arrays for a moment.
BUILD_CHUNK_ROWS = 200_000


def build_impressions(
    behaviors: pl.DataFrame,
    items: ItemFeatures,
    max_history: int = HISTORY_CAP,
    extra_history: dict[str, list[str]] | None = None,
    day_zero: date | None = None,
    chunk_rows: int = BUILD_CHUNK_ROWS,
) -> ImpressionData:
    """ImpressionData from `load_behaviors` rows, `chunk_rows` impressions at a time (0 = all
    at once; the result is the same).

    `extra_history` appends items (e.g. GENRE's synthetic items for cold users) to the history
    of the given users; they are history only, never candidates or labels.
    """
    index, extra = _lookups(items, extra_history)
    n = behaviors.height
    step = chunk_rows or max(n, 1)
    if n <= step:
        return _impression_arrays(behaviors, items, index, max_history, extra, day_zero)
    n_candidates = int(behaviors["candidate_ids"].list.len().fill_null(0).sum())
    parts = (behaviors.slice(start, step) for start in range(0, n, step))
    return _filled(parts, n, n_candidates, items, index, max_history, extra, day_zero)


def stream_impressions(
    conn,
    split: str,
    items: ItemFeatures,
    max_history: int = HISTORY_CAP,
    extra_history: dict[str, list[str]] | None = None,
    day_zero: date | None = None,
    chunk_rows: int = BUILD_CHUNK_ROWS,
) -> tuple[ImpressionData, pl.DataFrame]:
    """`build_impressions(load_behaviors(conn, (split,)), ...)` without the whole frame: DuckDB
    hands the rows over `chunk_rows` at a time (Arrow record batches), so only one chunk's id
    lists are in Python at once (a MIND-large train split's are about 2 GB). Also returns the
    split's `impression_rows` without their lists."""
    (n, n_candidates) = conn.execute(
        f"""
        select count(*), coalesce(sum(len(b.candidate_ids)), 0)
        from {STG_BEHAVIORS} b join {IMPRESSION_SPLITS} s using (impression_id)
        where s.split = ?
        """,
        [split],
    ).fetchone()
    index, extra = _lookups(items, extra_history)
    rows: list[pl.DataFrame] = []

    def parts():
        reader = conn.execute(_behaviors_query((split,)), [split]).to_arrow_reader(
            chunk_rows or max(n, 1)
        )
        for batch in reader:
            part = pl.from_arrow(batch)
            rows.append(impression_rows(part, lists=False))
            yield part

    data = _filled(parts(), n, n_candidates, items, index, max_history, extra, day_zero)
    if rows:
        return data, pl.concat(rows)
    empty = impression_rows(load_behaviors(conn, (split,)), lists=False)  # its schema
    return data, empty


def append_history(
    data: ImpressionData, items: ItemFeatures, extra_history: dict[str, list[str]]
) -> tuple[ImpressionData, np.ndarray, np.ndarray]:
    """`data` with `extra_history[user]` appended to the history of each of that user's
    impressions, the most recent `max_history` items kept: the arrays `build_impressions(...,
    extra_history=...)` builds, without reading the impressions again. A padded history holds
    the user's most recent items and the extra items come after them, so the result is exact.

    Returns the new set (it shares every array but `history`, a copy, with `data`), the rows
    that changed and their histories before. Unknown extra ids raise KeyError."""
    wanted = {u for u, ids in extra_history.items() if ids}
    changed = np.fromiter((u in wanted for u in data.user_ids), bool, data.n_impressions)
    rows = np.flatnonzero(changed)
    width = data.history.shape[1]
    if not len(rows) or width == 0:
        return data, rows[:0], data.history[:0].copy()
    extra = {u: items.index_of(extra_history[u]) for u in {data.user_ids[r] for r in rows}}
    history = data.history.copy()
    before = history[rows].copy()
    for row in rows:
        current = history[row][history[row] != PAD]
        merged = np.concatenate([current, extra[data.user_ids[row]]])[-width:]
        history[row] = PAD
        history[row, width - len(merged) :] = merged
    return replace(data, history=history), rows, before


def _lookups(
    items: ItemFeatures, extra_history: dict[str, list[str]] | None
) -> tuple[dict[str, int], pl.DataFrame | None]:
    """Item id -> row, and the extra history as a frame (user_id, extra)."""
    index = {str(i): k for k, i in enumerate(items.item_ids)}
    extra = None
    if extra_history:
        extra = pl.DataFrame(
            {"user_id": list(extra_history), "extra": list(extra_history.values())},
            schema={"user_id": pl.Utf8, "extra": pl.List(pl.Utf8)},
        )
    return index, extra


def _filled(
    parts: Iterator[pl.DataFrame],
    n: int,
    n_candidates: int,
    items: ItemFeatures,
    index: dict[str, int],
    max_history: int,
    extra: pl.DataFrame | None,
    day_zero: date | None,
) -> ImpressionData:
    """ImpressionData of `n` impressions (`n_candidates` candidates) from consecutive chunks of
    their rows. Each chunk's arrays are copied into the whole set's, allocated once: the peak
    is the result plus one chunk, not the result twice."""
    whole = {
        "impression_ids": np.empty(n, dtype=object),
        "user_ids": np.empty(n, dtype=object),
        "history": np.empty((n, max_history), dtype=INDEX_DTYPE),
        "cand_offsets": np.zeros(n + 1, dtype=np.int64),
        "cand_items": np.empty(n_candidates, dtype=INDEX_DTYPE),
        "labels": np.empty(n_candidates, dtype=np.int8),
        "day_index": np.empty(n, dtype=np.float64) if day_zero is not None else None,
    }
    offsets = whole["cand_offsets"]
    start = 0
    for rows in parts:
        part = _impression_arrays(rows, items, index, max_history, extra, day_zero)
        stop, first = start + part.n_impressions, offsets[start]
        last = first + part.cand_offsets[-1]
        for name in ("impression_ids", "user_ids", "history", "day_index"):
            if whole[name] is not None:
                whole[name][start:stop] = getattr(part, name)
        offsets[start + 1 : stop + 1] = part.cand_offsets[1:] + first
        whole["cand_items"][first:last] = part.cand_items
        whole["labels"][first:last] = part.labels
        start = stop
    if start != n or offsets[-1] != n_candidates:
        raise RuntimeError(
            f"impressions changed while read: counted {n} impressions and {n_candidates} "
            f"candidates, read {start} and {offsets[start]}"
        )
    return ImpressionData(**whole)


def _impression_arrays(
    behaviors: pl.DataFrame,
    items: ItemFeatures,
    index: dict[str, int],
    max_history: int,
    extra: pl.DataFrame | None,
    day_zero: date | None,
) -> ImpressionData:
    """`build_impressions` of one chunk of rows."""
    history = behaviors["history"]
    if extra is not None:
        history = (
            behaviors.select("user_id", "history")
            .join(extra, on="user_id", how="left", maintain_order="left")
            .select(pl.concat_list(pl.col("history"), pl.col("extra").fill_null([])))
            .to_series()
        )
    h_offsets, h_flat = _index_lists(history, index)
    c_offsets, c_flat = _index_lists(behaviors["candidate_ids"], index)
    if items.is_synthetic is not None and items.is_synthetic[c_flat].any():
        raise ValueError("synthetic items must never be candidates")
    labels = (
        behaviors["candidate_labels"]
        .explode(empty_as_null=False)
        .fill_null(-1)
        .cast(pl.Int8)
        .to_numpy()
        if behaviors.height
        else np.zeros(0, dtype=np.int8)
    )
    day_index = None
    if day_zero is not None and behaviors.height:
        day_index = (
            behaviors.select((pl.col("day") - pl.lit(day_zero)).dt.total_days())
            .to_series()
            .cast(pl.Float64)
            .to_numpy()
        )
    return ImpressionData(
        impression_ids=behaviors["impression_id"].to_numpy().astype(object),
        user_ids=behaviors["user_id"].to_numpy().astype(object),
        history=pad_histories(h_offsets, h_flat, max_history),
        cand_offsets=c_offsets,
        cand_items=c_flat,
        labels=labels,
        day_index=day_index,
    )


def load_behaviors_between(conn, first_day: date, last_day: date, most: int = 0) -> pl.DataFrame:
    """Labelled impressions whose day is in [first_day, last_day], in time order (monitoring):
    at most `most` of them (0 = all), a sample chosen in DuckDB by a hash of the impression id
    (the same impressions on every run), so a long window is never loaded whole."""
    sample = f"order by hash(impression_id), impression_id limit {int(most)}" if most else ""
    return query_frame(
        conn,
        f"""
        with chosen as (
            select impression_id, mind_impression_id, source_split, user_id, time, day, history,
                   candidate_ids, candidate_labels, history_length
            from {STG_BEHAVIORS}
            where day between ? and ? and is_labeled
            {sample}
        )
        select * from chosen order by time, impression_id
        """,
        [first_day, last_day],
    )
