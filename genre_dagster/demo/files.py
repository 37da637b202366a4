"""Writing demo days as MIND files (news.tsv, behaviors.tsv) and their truth rows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl

from genre_dagster.demo.text import NewsText, news_url
from genre_dagster.demo.world import DayImpressions, World

MIND_TIME_FORMAT = "%-m/%-d/%Y %-I:%M:%S %p"  # 11/11/2019 9:05:58 AM

TRUTH_SCHEMA = {
    "source_split": pl.String,
    "mind_impression_id": pl.Int64,
    "position": pl.Int32,
    "news_id": pl.String,
    "label": pl.Int8,
    "click_probability": pl.Float64,
}


@dataclass(frozen=True)
class WrittenDays:
    """What was written for a group of days (a split or a landing day)."""

    news_index: np.ndarray  # catalog indices listed in the news file
    truth: pl.DataFrame
    counts: dict[str, int]


def write_text(path: Path, frame: pl.DataFrame) -> None:
    """Tab-separated, no header, no quoting (MIND style); written then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.write_csv(tmp, separator="\t", include_header=False, quote_style="never")
    os.replace(tmp, path)


def write_parquet(path: Path, frame: pl.DataFrame) -> None:
    """Parquet written then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def news_frame(world: World, texts: list[NewsText], index: np.ndarray) -> pl.DataFrame:
    """The 8 MIND news columns for the given catalog indices, sorted by id number.

    Raises ValueError if a text contains a tab or line break (the files are unquoted).
    """
    cat, tax = world.catalog, world.taxonomy
    ids = cat.ids[index]
    order = np.argsort([int(i[1:]) for i in ids], kind="stable")
    index, ids = index[order], ids[order]
    rows = [texts[i] for i in index]
    categories = [tax.categories[c] for c in cat.category[index]]
    frame = pl.DataFrame(
        {
            "news_id": list(ids),
            "category": categories,
            "subcategory": [tax.subcategories[s] for s in cat.subcategory[index]],
            "title": [r.title for r in rows],
            "abstract": [r.abstract for r in rows],
            "url": [news_url(n, c, r.title) for n, c, r in zip(ids, categories, rows, strict=True)],
            "title_entities": [r.title_entities for r in rows],
            "abstract_entities": [r.abstract_entities for r in rows],
        },
        schema=dict.fromkeys(
            [
                "news_id",
                "category",
                "subcategory",
                "title",
                "abstract",
                "url",
                "title_entities",
                "abstract_entities",
            ],
            pl.String,
        ),
    )
    broken = frame.filter(pl.any_horizontal(pl.all().str.contains(r"[\t\r\n]")))
    if broken.height:
        raise ValueError(
            f"demo vocabulary produced a tab or line break in news {broken['news_id'][0]}"
        )
    return frame


def _concat(days: list[DayImpressions]) -> DayImpressions:
    offsets = np.cumsum([0] + [d.news.size for d in days[:-1]])
    return DayImpressions(
        day=days[0].day,
        user=np.concatenate([d.user for d in days]),
        time_s=np.concatenate([d.time_s for d in days]),
        ptr=np.concatenate([[0]] + [d.ptr[1:] + o for d, o in zip(days, offsets, strict=True)]),
        news=np.concatenate([d.news for d in days]),
        prob=np.concatenate([d.prob for d in days]),
        label=np.concatenate([d.label for d in days]),
    )


def referenced_news(world: World, days: list[DayImpressions]) -> np.ndarray:
    """Catalog indices of the candidates and of the histories of the users of these days."""
    users = world.users
    present = np.unique(np.concatenate([d.user for d in days]))
    history = [users.hist_news[users.hist_ptr[u] : users.hist_ptr[u + 1]] for u in present]
    return np.unique(np.concatenate([d.news for d in days] + history))


def write_impressions(
    world: World,
    days: list[DayImpressions],
    behaviors_path: Path,
    split: str,
    first_impression_id: int = 1,
) -> WrittenDays:
    """Write the behaviors file of some days; return truth rows, referenced news and counts."""
    imp = _concat(days)
    users, catalog = world.users, world.catalog
    n_imp, n_cand = imp.n_impressions, imp.news.size
    impression_ids = np.arange(first_impression_id, first_impression_id + n_imp, dtype=np.int64)
    row = np.repeat(np.arange(n_imp), np.diff(imp.ptr))
    # Gathering from a Series of all ids is much faster than converting millions of strings.
    news_ids = pl.Series("news_id", catalog.ids.astype(str)).gather(imp.news)

    present = np.unique(imp.user)
    history = {
        u: " ".join(catalog.ids[users.hist_news[users.hist_ptr[u] : users.hist_ptr[u + 1]]])
        for u in present
    }
    candidates = pl.DataFrame(
        {"row": row, "news_id": news_ids, "label": imp.label},
        schema={"row": pl.Int64, "news_id": pl.String, "label": pl.Int8},
    )
    impressions = candidates.group_by("row", maintain_order=True).agg(
        pl.concat_str([pl.col("news_id"), pl.lit("-"), pl.col("label").cast(pl.String)])
        .str.join(" ")
        .alias("impressions")
    )
    start = datetime.combine(world.config.start_date, datetime.min.time())
    behaviors = pl.DataFrame(
        {
            "impression_id": impression_ids,
            "user_id": pl.Series(users.ids.astype(str)).gather(imp.user),
            "seconds": imp.time_s,
            "history": [history[u] for u in imp.user],
        },
        schema={
            "impression_id": pl.Int64,
            "user_id": pl.String,
            "seconds": pl.Int64,
            "history": pl.String,
        },
    ).select(
        "impression_id",
        "user_id",
        (pl.lit(start) + pl.duration(seconds=pl.col("seconds")))
        .dt.strftime(MIND_TIME_FORMAT)
        .alias("time"),
        "history",
        impressions["impressions"],
    )
    write_text(behaviors_path, behaviors)

    truth = pl.DataFrame(
        {
            "source_split": [split] * n_cand,
            "mind_impression_id": impression_ids[row],
            "position": np.arange(n_cand) - imp.ptr[row] + 1,
            "news_id": news_ids,
            "label": imp.label,
            "click_probability": imp.prob,
        },
        schema=TRUTH_SCHEMA,
    )
    referenced = referenced_news(world, days)
    history_lengths = users.history_length()[present]
    counts = {
        "n_impressions": n_imp,
        "n_candidates": n_cand,
        "n_clicks": int(imp.label.sum()),
        "n_users": int(present.size),
        "n_cold_users": int((history_lengths <= 5).sum()),
        "n_empty_history_users": int((history_lengths == 0).sum()),
        "n_news": int(referenced.size),
    }
    return WrittenDays(news_index=referenced, truth=truth, counts=counts)
