"""Reading tab-separated source files into a frame of lines, flagging lines that are not UTF-8.

Files that went through pandas once (`pd.read_csv(...).to_csv(sep="\t")`) differ from MIND's own
in three ways, all tolerated here: fields holding a quote (or a tab) are CSV-quoted
(`"[{""Label"": ...}]"`, see `split_fields` and `unquote`), the first line is a header, and
pandas' index is an integer column in front of every line, announced by a leading `""` header
field (see `skip_headers`) or, written without a header, recognized because every line of the
file has one column too many and starts with an integer (see `drop_index_columns`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import polars as pl

from genre_dagster.ingest.result import RAW_LINE_MAX_CHARS
from genre_dagster.ingest.sources import SourceFile

# RFC 4180 quoting: wrapped in double quotes, every inner quote doubled. Anything else (a title
# like `"Yes" she said`, a stray quote) is not a quoted field and is kept as it is.
QUOTED_FIELD = r'^"(?:[^"]|"")*"$'
# One field and the tab after it (a tab is appended to every line first): a quoted field that is
# followed by a tab, tabs inside it included, else everything up to the next tab. The regex
# engine prefers the first alternative, so `"Yes" she said` (not followed by a tab) is plain.
_FIELD_AND_TAB = r'"(?:[^"]|"")*"\t|[^\t]*\t'
_INDEX_VALUE = r"^\d+$"

LINES_SCHEMA: dict[str, pl.DataType] = {
    "file_index": pl.Int64(),
    "source_split": pl.Utf8(),
    "source_file": pl.Utf8(),
    "line_number": pl.Int64(),
    "line": pl.Utf8(),
    "utf8_ok": pl.Boolean(),
}


def _decode(data: bytes) -> tuple[pl.Series, pl.Series | None]:
    """Lines of a file, and per-line UTF-8 validity when the file as a whole is not UTF-8."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        # Slow path, only for broken files: decode line by line so that only the bad lines are
        # quarantined; they keep their text with U+FFFD in place of the undecodable bytes.
        parts = data.removeprefix(b"\xef\xbb\xbf").split(b"\n")
        if parts[-1] == b"":
            parts.pop()
        lines: list[str] = []
        ok: list[bool] = []
        for part in parts:
            try:
                lines.append(part.decode("utf-8"))
                ok.append(True)
            except UnicodeDecodeError:
                lines.append(part.decode("utf-8", errors="replace"))
                ok.append(False)
        lines = [line.removesuffix("\r") for line in lines]
        return pl.Series("line", lines, dtype=pl.Utf8), pl.Series("utf8_ok", ok, dtype=pl.Boolean)
    # Whole-text fixes only when needed (a one-character search is a fast memchr), so a clean
    # file is never copied again; Python's split is ~2x faster than splitting inside Polars.
    text = text.removeprefix("\ufeff")
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return pl.Series("line", lines, dtype=pl.Utf8), None


def read_lines(files: list[SourceFile]) -> pl.DataFrame:
    """All lines of the files in order (`LINES_SCHEMA`), 1-based line numbers per file.

    A final newline does not start an extra line; `\\r\\n` endings and a UTF-8 byte-order mark
    are removed. Blank lines are kept (they are malformed rows, not silently skipped).
    """
    frames = []
    for index, file in enumerate(files):
        lines, ok = _decode(file.path.read_bytes())
        frame = pl.DataFrame({"line": lines}).with_columns(
            file_index=pl.lit(index, pl.Int64),
            source_split=pl.lit(file.split, pl.Utf8),
            source_file=pl.lit(str(file.path), pl.Utf8),
            line_number=pl.int_range(1, pl.len() + 1, dtype=pl.Int64),
            utf8_ok=pl.lit(True) if ok is None else ok,
        )
        frames.append(frame.select(list(LINES_SCHEMA)))
    if not frames:
        return pl.DataFrame(schema=LINES_SCHEMA)
    return pl.concat(frames, how="vertical")


def truncate_raw(expr: pl.Expr) -> pl.Expr:
    """A raw line cut to the stored maximum length."""
    return expr.str.slice(0, RAW_LINE_MAX_CHARS)


def unquote(field: pl.Expr) -> pl.Expr:
    """A CSV-quoted field (`QUOTED_FIELD`) without its wrapping quotes and with inner quotes
    undoubled; any other text unchanged."""
    inner = field.str.slice(1, field.str.len_chars() - 2)
    return (
        pl.when(field.str.contains(QUOTED_FIELD))
        .then(inner.str.replace_all('""', '"', literal=True))
        .otherwise(field)
    )


def split_fields(line: pl.Expr) -> pl.Expr:
    """A line's tab-separated fields, where a CSV-quoted field (RFC 4180: wrapped in quotes,
    inner quotes doubled) may hold tabs; the quotes are kept (see `unquote`)."""
    return (
        (line + pl.lit("\t")).str.extract_all(_FIELD_AND_TAB).list.eval(pl.element().str.head(-1))
    )


def with_fields(lines: pl.DataFrame) -> pl.DataFrame:
    """Add `fields`: each line split on tabs, CSV-quoted fields unquoted.

    A quoted field may hold a tab (pandas quotes such a field). A quoted field holding a
    newline (never the case in MIND) is cut by the line split and its lines fail the column
    count.
    """
    # One fast scan decides whether the quote-aware pass is needed at all (MIND's behaviors.tsv
    # has no quote anywhere); it runs only on the lines that hold a quote.
    if not lines["line"].str.contains('"', literal=True).any():
        return lines.with_columns(fields=pl.col("line").str.split("\t"))
    line = pl.col("line")
    fields = (
        pl.when(line.str.contains('"', literal=True))
        .then(split_fields(line).list.eval(unquote(pl.element())))
        .otherwise(line.str.split("\t"))
    )
    return lines.with_columns(fields=fields)


def _normalized(name: str) -> str:
    """A column name compared loosely: `News ID`, `news_id` and `newsId` are alike."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _header_kind(fields: Sequence[str], columns: Sequence[str]) -> str | None:
    """`"plain"` or `"indexed"` (a leading empty field: pandas' index column) when `fields` are
    the column names, or pandas' default labels 0..n-1; None otherwise."""
    names = [_normalized(f) for f in fields]
    for expected in ([_normalized(c) for c in columns], [str(i) for i in range(len(columns))]):
        if names == expected:
            return "plain"
        if names == ["", *expected]:
            return "indexed"
    return None


def skip_headers(
    frame: pl.DataFrame, columns: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Remove header lines, and pandas' index column from files whose header announced one.

    A header is the first line of a file whose fields (after `with_fields`) are `columns`,
    compared case- and punctuation-insensitively, or 0..n-1 (pandas' default labels),
    optionally after an empty first field. That empty field is pandas' index: in such a file the
    leading field of each line is dropped when it is an integer and more fields follow (other
    lines are kept whole and validated as they are). Line numbers stay those of the file.
    Returns the lines and, per file with a header, what was skipped (for logs and metadata).
    """
    firsts = frame.filter((pl.col("line_number") == 1) & pl.col("utf8_ok"))
    kinds = {
        (index, path): _header_kind(fields, columns)
        for index, path, fields in firsts.select("file_index", "source_file", "fields").iter_rows()
    }
    headers = {key: kind for key, kind in kinds.items() if kind is not None}
    if not headers:
        return frame, {}
    header_files = [index for index, _ in headers]
    frame = frame.filter(~(pl.col("file_index").is_in(header_files) & (pl.col("line_number") == 1)))
    indexed = [index for (index, _), kind in headers.items() if kind == "indexed"]
    if indexed:
        fields = pl.col("fields")
        strip = (
            pl.col("file_index").is_in(indexed)
            & (fields.list.len() > 1)
            & fields.list.first().str.contains(_INDEX_VALUE)
        )
        rest = pl.col("line").str.splitn("\t", 2).struct.field("field_1")
        frame = frame.with_columns(
            fields=pl.when(strip).then(fields.list.slice(1)).otherwise(fields),
            line=pl.when(strip).then(rest).otherwise(pl.col("line")),
        )
    described = {
        "plain": "line 1 is a header, skipped",
        "indexed": "line 1 is a header with pandas' index column, skipped; the leading integer "
        "field of each line is dropped",
    }
    return frame, {path: described[kind] for (_, path), kind in headers.items()}


def drop_index_columns(
    frame: pl.DataFrame, columns: Sequence[str], skip: Sequence[str] = ()
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Remove pandas' index column from files written without a header
    (`to_csv(sep="\t", header=False)`), except the files in `skip` (their header said).

    A file has one when every line of it has one field more than `columns` and starts with an
    integer: a single line that does not is enough to leave the file as it is (its lines are then
    validated, and quarantined, as they are). Line numbers stay those of the file. Returns the
    lines and, per file repaired, what was dropped (a repair: reported, no row lost).
    """
    fields = pl.col("fields")
    shifted = (
        pl.col("utf8_ok")
        & (fields.list.len() == len(columns) + 1)
        & fields.list.first().str.contains(_INDEX_VALUE)
    )
    per_file = frame.group_by("file_index", "source_file").agg(
        shifted=shifted.all(), lines=pl.len()
    )
    indexed = per_file.filter(pl.col("shifted") & ~pl.col("source_file").is_in(list(skip)))
    if indexed.is_empty():
        return frame, {}
    strip = pl.col("file_index").is_in(indexed["file_index"].to_list())
    rest = pl.col("line").str.splitn("\t", 2).struct.field("field_1")
    frame = frame.with_columns(
        fields=pl.when(strip).then(fields.list.slice(1)).otherwise(fields),
        line=pl.when(strip).then(rest).otherwise(pl.col("line")),
    )
    return frame, {
        path: f"no header, and each of its {n} lines starts with an integer column (pandas' "
        f"index): dropped, {len(columns)} columns left"
        for path, n in indexed.sort("file_index").select("source_file", "lines").iter_rows()
    }


def read_table_lines(
    files: list[SourceFile], columns: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, str], dict[str, str]]:
    """The files' lines split into fields (`with_fields`), without header lines
    (`skip_headers`) and pandas' index columns (`drop_index_columns`); with what was skipped
    per file with a header, and what was repaired per file with a headerless index column."""
    lines, headers = skip_headers(with_fields(read_lines(files)), columns)
    lines, repairs = drop_index_columns(lines, columns, skip=list(headers))
    return lines, headers, repairs
