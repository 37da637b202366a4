"""Reading tab-separated source files into a frame of lines, flagging lines that are not UTF-8."""

from __future__ import annotations

import polars as pl

from genre_dagster.ingest.result import RAW_LINE_MAX_CHARS
from genre_dagster.ingest.sources import SourceFile

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
