"""A corrupt input file is quarantined whole and the rest of the night proceeds.

Garbage bytes, a gzip dropped by mistake, an empty file or a truncated Parquet add no day to day
discovery; every parsed day reports them in its quarantine (every line, or one row for a file
that cannot be read) and its counts still add up. Fixtures are written here, no MIND rows.
"""

from __future__ import annotations

import gzip
import logging
import random
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from genre_dagster.ingest import (
    SourceFile,
    behavior_days,
    generic_days,
    parse_behaviors,
    parse_generic_interactions,
    parse_generic_items,
    pseudonymize_user_ids,
)

pseudo = partial(pseudonymize_user_ids, key=b"corrupt-files-test")
FILE_REASON = "unattributable_file"
KNOWN = pl.Series(["N1", "N2", "N3"])
VALID = [
    "1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-1 N3-0",
    "2\tU2\t11/11/2019 10:00:00 PM\t\tN1-0 N2-1",
    "3\tU1\tnot a time\tN2\tN3-1",  # undated line inside a dated file: keeps the old rule
    "4\tU3\t11/12/2019 1:00:00 AM\tN1 N2\tN3-1",
    "5\tU2\t11/12/2019 2:00:00 PM\tN1\tN9-1",  # unknown candidate
]
DAYS = {date(2019, 11, 11): 3, date(2019, 11, 12): 2}


def _big_behaviors() -> bytes:
    """A few thousand valid, varied lines: their gzip is a big file of binary garbage."""
    lines = [
        f"{i}\tU{i % 97}\t11/{11 + i % 2}/2019 {1 + i % 12}:{i % 60:02d}:00 AM\tN{1 + i % 3}"
        f"\tN{1 + (i + 1) % 3}-{i % 2}"
        for i in range(1, 3001)
    ]
    return ("\n".join(lines) + "\n").encode()


def _lines_in(data: bytes) -> int:
    """Lines a file holds: newline-separated, a final newline starts no extra line."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@pytest.fixture
def mind_files(tmp_path) -> tuple[list[SourceFile], dict[str, int]]:
    """A valid train file over two days plus three broken landing files, and the number of
    quarantine rows each broken file must produce (its lines, or 1 for an empty file)."""
    train = tmp_path / "train" / "behaviors.tsv"
    train.parent.mkdir()
    valid = ("\n".join(VALID) + "\n").encode()
    train.write_bytes(valid)
    landing = tmp_path / "landing"
    landing.mkdir()
    broken = {
        "behaviors_a_random.tsv": random.Random(3).randbytes(6000),
        "behaviors_b_gzip.tsv": gzip.compress(_big_behaviors(), mtime=0),
        "behaviors_c_empty.tsv": b"",
    }
    expected = {}
    for name, data in broken.items():
        (landing / name).write_bytes(data)
        expected[str(landing / name)] = _lines_in(data) or 1
    files = [SourceFile(train, "train")] + [
        SourceFile(landing / name, "landing") for name in broken
    ]
    return files, expected


def test_mind_days_skip_corrupt_files_with_a_warning(mind_files, caplog):
    files, broken = mind_files
    with caplog.at_level(logging.WARNING, logger="genre_dagster.ingest"):
        days = behavior_days(files)
    assert days == DAYS == behavior_days(files[:1])
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert all(path in warned for path in broken)


def test_mind_each_day_quarantines_every_line_of_corrupt_files(mind_files):
    files, broken = mind_files
    days = behavior_days(files)
    for day in days:
        result = parse_behaviors(files, KNOWN, pseudo, day=day)
        clean = parse_behaviors(files[:1], KNOWN, pseudo, day=day)
        result.check_counts()
        in_files = result.quarantine.filter(pl.col("reason") == FILE_REASON)
        assert dict(in_files.group_by("source_file").len().iter_rows()) == broken
        assert result.rows_read == days[day] + sum(broken.values())
        assert set(result.quarantine["day"]) == {day}
        for path, n in broken.items():
            lines = in_files.filter(pl.col("source_file") == path)["line_number"].to_list()
            assert lines == ([0] if path.endswith("empty.tsv") else list(range(1, n + 1)))
        details = dict(in_files.select("source_file", "detail").unique().iter_rows())
        assert "no line has a parsable time" in details[str(files[1].path)]
        assert "corrupt or wrong format" in details[str(files[2].path)]
        assert "empty" in details[str(files[3].path)]
        # The good file is parsed exactly as if the broken ones were not there.
        assert result.accepted.equals(clean.accepted)
        assert result.line_quarantine().equals(clean.quarantine)
        assert result.line_quarantine_share == clean.quarantine_share
        files_table = result.quarantined_files()
        assert dict(files_table.select("source_file", "rows").iter_rows()) == broken
        assert result.rows_in_quarantined_files == sum(broken.values())


def test_mind_big_corrupt_file_does_not_swamp_the_line_share(mind_files):
    """A small day next to a big gzip: the share over all rows would trip the default 5%
    threshold, the share over lines of usable files does not; the file is listed apart."""
    files, broken = mind_files
    result = parse_behaviors(files[:3], KNOWN, pseudo, day=date(2019, 11, 12))
    clean = parse_behaviors(files[:1], KNOWN, pseudo, day=date(2019, 11, 12))
    assert broken[str(files[2].path)] > 10 * DAYS[date(2019, 11, 12)]
    assert result.quarantine_share > 0.9
    assert result.line_quarantine_share == clean.quarantine_share == 0.5
    assert result.quarantined_files()["reason"].to_list() == [FILE_REASON] * 2


def test_mind_whole_parse_keeps_corrupt_lines_without_a_day(mind_files):
    files, broken = mind_files
    result = parse_behaviors(files, KNOWN, pseudo)
    result.check_counts()
    in_files = result.quarantine.filter(pl.col("reason") == FILE_REASON)
    assert in_files.height == sum(broken.values())
    assert in_files["day"].null_count() == in_files.height


def test_mind_unattributable_file_claims_no_impression_id(tmp_path):
    """A copy of the data with ISO times (wrong format) listed first must not make the real
    lines duplicates: its lines are never ingested, so they own no id."""
    iso = tmp_path / "iso" / "behaviors.tsv"
    iso.parent.mkdir()
    iso.write_text("1\tU1\t2019-11-11 09:05:58\tN1\tN2-1 N3-0\n", encoding="utf-8")
    good = tmp_path / "good" / "behaviors.tsv"
    good.parent.mkdir()
    good.write_text(VALID[0] + "\n", encoding="utf-8")
    files = [SourceFile(iso, "train"), SourceFile(good, "train")]
    result = parse_behaviors(files, KNOWN, pseudo, day=date(2019, 11, 11))
    result.check_counts()
    assert result.accepted["impression_id"].to_list() == ["train-1"]
    assert result.quarantine.select("line_number", "reason").rows() == [(1, FILE_REASON)]
    # The quarantined line carries the pseudonym, never the raw user id.
    (raw_line,) = result.quarantine["raw_line"].to_list()
    assert raw_line.split("\t")[1] == pseudo(pl.Series(["U1"])).item()


def test_mind_all_files_corrupt_is_a_clear_error(mind_files):
    files, broken = mind_files
    with pytest.raises(ValueError, match="no behaviors file can be attributed") as error:
        behavior_days(files[1:])
    assert all(path in str(error.value) for path in broken)
    with pytest.raises(ValueError, match="nothing to ingest"):
        parse_behaviors(files[1:], KNOWN, pseudo, day=date(2019, 11, 11))


# --- generic --------------------------------------------------------------------------------

READ_MAP = {"user_id": "reader", "item_id": "book_id", "timestamp": "read_at"}
BOOKS = pl.Series(["B1", "B2", "B3"])


def _reads(path: Path) -> Path:
    t0 = datetime(2024, 5, 1, 9)
    pl.DataFrame(
        {
            "reader": ["R1", "R2", "R1", "R3"],
            "book_id": ["B1", "B2", "B3", "B9"],
            "read_at": [t0, t0, t0 + timedelta(days=1), t0 + timedelta(days=1, hours=2)],
        }
    ).write_parquet(path)
    return path


def _truncated(valid: Path, path: Path) -> Path:
    data = valid.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.fixture
def generic_files(tmp_path) -> list[Path]:
    """A valid Parquet, a truncated Parquet, a CSV whose timestamps are all unparsable."""
    valid = _reads(tmp_path / "reads_1.parquet")
    truncated = _truncated(valid, tmp_path / "reads_2.parquet")
    undated = tmp_path / "reads_3.csv"
    undated.write_text("reader,book_id,read_at\nR7,B1,yesterday\nR8,B2,soon\n", encoding="utf-8")
    return [valid, truncated, undated]


def test_generic_days_skip_unreadable_and_undated_files(generic_files, caplog):
    with caplog.at_level(logging.WARNING, logger="genre_dagster.ingest"):
        days = generic_days(generic_files, READ_MAP)
    assert days == generic_days(generic_files[:1], READ_MAP)
    assert days == {date(2024, 5, 1): 2, date(2024, 5, 2): 2}
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert str(generic_files[1]) in warned and str(generic_files[2]) in warned


def test_generic_each_day_reports_corrupt_files(generic_files):
    valid, truncated, undated = generic_files
    days = generic_days(generic_files, READ_MAP)
    for day, count in days.items():
        result = parse_generic_interactions(generic_files, BOOKS, pseudo, READ_MAP, day=day)
        clean = parse_generic_interactions([valid], BOOKS, pseudo, READ_MAP, day=day)
        result.check_counts()
        assert result.rows_read == count + 1 + 2
        in_files = result.quarantine.filter(pl.col("reason") == FILE_REASON)
        rows = in_files.select("source_file", "line_number").rows()
        assert rows == [(str(truncated), 0), (str(undated), 1), (str(undated), 2)]
        unreadable = in_files.row(0, named=True)
        # The reader's own error is kept, and an unreadable file has no line to echo.
        assert "ComputeError" in unreadable["detail"] and "parquet" in unreadable["detail"]
        assert unreadable["raw_line"] == ""
        assert "no line has a parsable time" in in_files["detail"][1]
        assert not any("R7" in line or "R8" in line for line in in_files["raw_line"])
        assert set(result.quarantine["day"]) == {day}
        assert result.accepted.equals(clean.accepted)
        assert result.line_quarantine().equals(clean.quarantine)
        assert result.quarantined_files()["rows"].to_list() == [1, 2]


def test_generic_items_unreadable_file_next_to_a_valid_one(tmp_path):
    valid = tmp_path / "items_1.parquet"
    pl.DataFrame(
        {"item_id": ["B1", "B2"], "title": ["One", "Two"], "category": ["a", "b"]}
    ).write_parquet(valid)
    broken = _truncated(valid, tmp_path / "items_2.parquet")
    result = parse_generic_items([valid, broken])
    result.check_counts()
    assert result.accepted.equals(parse_generic_items(valid).accepted)
    assert result.quarantine.select("source_file", "line_number", "reason").rows() == [
        (str(broken), 0, "unreadable_file")
    ]
    assert result.line_quarantine_share == 0.0
    with pytest.raises(ValueError, match="no items file can be used.*items_2.parquet"):
        parse_generic_items([broken])


def test_generic_all_files_corrupt_is_a_clear_error(generic_files):
    _, truncated, undated = generic_files
    with pytest.raises(ValueError, match="no interactions file can be attributed") as error:
        generic_days([truncated, undated], READ_MAP)
    assert str(truncated) in str(error.value) and str(undated) in str(error.value)
    with pytest.raises(ValueError, match="nothing to ingest"):
        parse_generic_interactions([truncated], BOOKS, pseudo, READ_MAP, day=date(2024, 5, 1))
