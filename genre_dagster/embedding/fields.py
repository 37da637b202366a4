"""Item and user-profile texts to embed, one configured text field at a time.

Item fields (GENRE/ONCE variants):
- "title", "abstract" (an empty abstract falls back to the title), "title_abstract";
- "summary": the LLM summary ("newtitle"), falling back to the title where missing;
- "summary_replace": the summary replaces the title: summary + abstract;
- "summary_append": title + abstract + category + summary.
`used_fallback` marks every row that did not get the text its field asks for, so callers can
report how many fell back. Non-empty parts are joined with one space.
"""

from __future__ import annotations

import hashlib

import polars as pl

ITEM_FIELDS = (
    "title",
    "abstract",
    "title_abstract",
    "summary",
    "summary_replace",
    "summary_append",
)
_SUMMARY_FIELDS = ("summary", "summary_replace", "summary_append")


def text_hash(text: str) -> str:
    """sha256 hex digest of a text's UTF-8 bytes (the embedding cache key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _with_hash(frame: pl.DataFrame) -> pl.DataFrame:
    hashes = [text_hash(t) for t in frame["text"].to_list()]
    return frame.with_columns(pl.Series("text_hash", hashes, dtype=pl.Utf8))


def _clean(column: str) -> pl.Expr:
    return pl.col(column).cast(pl.Utf8).fill_null("").str.strip_chars()


def _join(*parts: pl.Expr) -> pl.Expr:
    """Join the non-empty parts with one space."""
    return (
        pl.concat_list([pl.when(p != "").then(p) for p in parts]).list.drop_nulls().list.join(" ")
    )


def build_item_texts(news: pl.DataFrame, field: str) -> pl.DataFrame:
    """Texts for `field` per item: news_id, text, text_hash, used_fallback (one row per input).

    `news` needs news_id, title, abstract, category; the summary fields also need `summary`
    (null or blank where the LLM gave none). Raises ValueError on a missing column, a null
    news_id or an empty title.
    """
    if field not in ITEM_FIELDS:
        raise ValueError(f"text field must be one of {ITEM_FIELDS}, got {field!r}")
    required = ["news_id", "title", "abstract", "category"]
    if field in _SUMMARY_FIELDS:
        required.append("summary")
    missing = [c for c in required if c not in news.columns]
    if missing:
        raise ValueError(f"build_item_texts({field!r}): news frame lacks columns {missing}")
    if news["news_id"].null_count():
        raise ValueError("build_item_texts: news_id has null values")
    frame = news.select(
        "news_id",
        _clean("title").alias("_title"),
        _clean("abstract").alias("_abstract"),
        _clean("category").alias("_category"),
        (_clean("summary") if "summary" in required else pl.lit("")).alias("_summary"),
    )
    empty_titles = frame.filter(pl.col("_title") == "")["news_id"]
    if len(empty_titles):
        raise ValueError(
            f"build_item_texts: {len(empty_titles)} item(s) have an empty title, "
            f"e.g. {empty_titles.head(5).to_list()}"
        )
    title, abstract, category, summary = (
        pl.col(c) for c in ("_title", "_abstract", "_category", "_summary")
    )
    has_summary = summary != ""
    if field == "title":
        text, fallback = title, pl.lit(False)
    elif field == "abstract":
        text, fallback = pl.when(abstract != "").then(abstract).otherwise(title), abstract == ""
    elif field == "title_abstract":
        text, fallback = _join(title, abstract), pl.lit(False)
    elif field == "summary":
        text, fallback = pl.when(has_summary).then(summary).otherwise(title), ~has_summary
    elif field == "summary_replace":
        head = pl.when(has_summary).then(summary).otherwise(title)
        text, fallback = _join(head, abstract), ~has_summary
    else:
        text, fallback = _join(title, abstract, category, summary), ~has_summary
    out = frame.select("news_id", text.alias("text"), fallback.alias("used_fallback"))
    return _with_hash(out).select("news_id", "text", "text_hash", "used_fallback")


def build_profile_texts(
    profiles: pl.DataFrame, topics: str = "topics", regions: str = "regions"
) -> pl.DataFrame:
    """One row per (user, profile term): user_id, kind ("topic"/"region"), rank, text, text_hash.

    `profiles` holds user_id and list-of-string columns `topics` and (optionally) `regions`, most
    relevant first, as the LLM profiler writes them. rank is 0-based within (user, kind). Blank
    terms are dropped (they carry nothing to embed); users without terms get no rows. Per-user
    vectors are then the mean of the term vectors (ONCE), computed by the caller.
    """
    if "user_id" not in profiles.columns or topics not in profiles.columns:
        raise ValueError(f"build_profile_texts: profiles need columns user_id and {topics!r}")
    if profiles["user_id"].null_count() or profiles["user_id"].is_duplicated().any():
        raise ValueError("build_profile_texts: user_id must be non-null and unique")
    kinds = [("topic", topics)] + ([("region", regions)] if regions in profiles.columns else [])
    parts = [
        profiles.select("user_id", pl.lit(kind).alias("kind"), pl.col(column).alias("text"))
        .explode("text")
        .with_columns(pl.col("text").cast(pl.Utf8).str.strip_chars())
        .filter(pl.col("text").is_not_null() & (pl.col("text") != ""))
        .with_columns(pl.int_range(pl.len(), dtype=pl.Int32).over("user_id").alias("rank"))
        for kind, column in kinds
    ]
    return _with_hash(pl.concat(parts)).select("user_id", "kind", "rank", "text", "text_hash")
