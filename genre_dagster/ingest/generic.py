"""Generic items for any domain (books, products, ...): Parquet or CSV files, mapped columns.

Canonical item columns: `item_id`, `title`, `category` (required), `text` (becomes `abstract`),
`subcategory`, `url` (optional). `column_map` maps canonical names to the file's own names, e.g.
`{"item_id": "book_id", "text": "description"}`. Rows land in the same `raw.news` schema as MIND.

A file that cannot be used at all (unreadable bytes, a truncated Parquet, required columns
missing) is reported as one quarantine row (line_number 0, reason `unreadable_file`, the
reader's error in `detail`) when other files are fine; when no file is usable it is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from genre_dagster.ingest.lines import truncate_raw
from genre_dagster.ingest.news import validate_news
from genre_dagster.ingest.result import UNREADABLE_FILE, IngestResult
from genre_dagster.ingest.unattributable import READ_ERRORS, error_detail, raise_if_none_usable

GENERIC_SPLIT = "generic"
ITEM_REQUIRED = ("item_id", "title", "category")
ITEM_OPTIONAL = ("text", "subcategory", "url")
UNREADABLE = "unreadable file"

Paths = Path | str | Sequence[Path | str]


class UnusableFileError(ValueError):
    """A readable file whose content does not fit: required columns missing, wrong column type."""


def as_paths(paths: Paths) -> list[Path]:
    """One path or several, as a list of Paths (in the given order)."""
    if isinstance(paths, str | Path):
        return [Path(paths)]
    return [Path(p) for p in paths]


def read_table(path: Path) -> pl.DataFrame:
    """A Parquet (`.parquet`, `.pq`) or CSV (`.csv`, read as text, header row) file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pl.read_parquet(path)
    if suffix == ".csv":
        # All columns as text: ids like "007" keep their zeros, timestamps are parsed by us.
        return pl.read_csv(path, infer_schema=False)
    raise ValueError(f"{path}: unsupported file type {suffix!r}; use .parquet, .pq or .csv")


def select_columns(
    frame: pl.DataFrame,
    path: Path,
    required: Sequence[str],
    optional: Sequence[str],
    column_map: dict[str, str] | None,
) -> pl.DataFrame:
    """The present canonical columns, renamed from the file's names given by `column_map`.

    Raises ValueError for a column_map key that is not a canonical column (a typo would
    otherwise be ignored) and UnusableFileError (a ValueError) for missing required columns,
    listing the file's columns.
    """
    column_map = dict(column_map or {})
    known = (*required, *optional)
    unknown = sorted(set(column_map) - set(known))
    if unknown:
        raise ValueError(
            f"column_map for {path} has unknown canonical name(s) {unknown}; "
            f"canonical columns are {list(known)}"
        )
    source = {name: column_map.get(name, name) for name in known}
    missing = [
        name if source[name] == name else f"{name} (mapped to {source[name]!r})"
        for name in required
        if source[name] not in frame.columns
    ]
    if missing:
        raise UnusableFileError(
            f"{path} is missing required column(s): {', '.join(missing)}. The file has columns "
            f"{frame.columns}. Map other names with column_map, e.g. {{'item_id': 'book_id'}}."
        )
    present = [name for name in known if source[name] in frame.columns]
    return frame.select(pl.col(source[name]).alias(name) for name in present)


def as_text(frame: pl.DataFrame, column: str) -> pl.Expr:
    """A column as text, or a null text column when the file does not have it."""
    if column in frame.columns:
        return pl.col(column).cast(pl.Utf8)
    return pl.lit(None, pl.Utf8)


def row_json(frame: pl.DataFrame, columns: Sequence[str], replace: dict[str, pl.Expr]) -> pl.Expr:
    """The row's canonical fields as a JSON object (the quarantine's `raw_line` for tables)."""
    fields = [replace.get(c, as_text(frame, c)).alias(c) for c in columns if c in frame.columns]
    return truncate_raw(pl.struct(fields).struct.json_encode())


def read_mapped(
    path: Path,
    required: Sequence[str],
    optional: Sequence[str],
    column_map: dict[str, str] | None,
) -> pl.DataFrame | Exception:
    """The file's canonical columns (`select_columns`), or the error that makes it unusable.

    Undecodable content (`READ_ERRORS`) and UnusableFileError are returned, so a corrupt file
    can be quarantined next to good ones; anything else (an unknown column_map name, an
    unsupported file type, a missing file or an I/O error) raises.
    """
    try:
        return select_columns(read_table(path), path, required, optional, column_map)
    except (*READ_ERRORS, UnusableFileError) as error:
        return error


def _file_rows(path: Path, index: int, frame: pl.DataFrame) -> pl.DataFrame:
    text = {c: as_text(frame, c).fill_null("") for c in (*ITEM_REQUIRED, *ITEM_OPTIONAL)}
    return frame.select(
        news_id=text["item_id"],
        category=text["category"],
        subcategory=text["subcategory"],
        title=text["title"],
        abstract=text["text"],
        url=text["url"],
        title_entities=pl.lit("[]"),
        abstract_entities=pl.lit("[]"),
        source_file=pl.lit(str(path)),
        line_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
        file_index=pl.lit(index, pl.Int64),
        raw_line=row_json(frame, frame.columns, {}),
        file_detail=pl.lit(None, pl.Utf8),
    )


def _problem_row(path: Path, index: int, detail: str) -> pl.DataFrame:
    """The one quarantine row standing for an unusable file (line 0, empty content)."""
    content = ("news_id", "category", "subcategory", "title", "abstract", "url", "raw_line")
    return pl.DataFrame(
        {
            **{c: [""] for c in content},
            "title_entities": ["[]"],
            "abstract_entities": ["[]"],
            "source_file": [str(path)],
            "line_number": [0],
            "file_index": [index],
            "file_detail": [detail],
        },
        schema_overrides={"line_number": pl.Int64, "file_index": pl.Int64},
    )


def parse_generic_items(paths: Paths, column_map: dict[str, str] | None = None) -> IngestResult:
    """Validate and map generic items files (one path or several) to the canonical news schema.

    `line_number` is the 1-based data row (a CSV's header is not counted). Entity columns are
    `"[]"`; missing optional columns give `""`. Checks: unreadable_file (one row per file that
    cannot be used, see the module docstring), missing_value (empty item id), empty_title,
    missing_category, duplicate_news_id (first row in file order wins; repeats with identical
    content in another file are merged, other repeats quarantined). `raw_line` is the row's
    canonical fields as JSON. Raises ValueError when no file can be used.
    """
    frames, problems = [], {}
    for index, path in enumerate(as_paths(paths)):
        table = read_mapped(path, ITEM_REQUIRED, ITEM_OPTIONAL, column_map)
        if isinstance(table, Exception):
            problems[str(path)] = error_detail(f"{UNREADABLE}: cannot be used", table)
            frames.append(_problem_row(path, index, problems[str(path)]))
        else:
            frames.append(_file_rows(path, index, table))
    raise_if_none_usable(problems, len(frames) > len(problems), "no items file can be used")
    items = pl.concat([f.select(frames[0].columns) for f in frames], how="vertical")
    unusable = (pl.col("file_detail").is_not_null(), UNREADABLE_FILE, pl.col("file_detail"))
    return validate_news(items, format_checks=[unusable])
