"""MIND ingestion: discovery, news and behaviors validation, day attribution, pseudonymization.

Fixtures under tests/fixtures/mind/ are hand-written in the MIND format (no MIND rows):
`train/`, `dev/`, `test/` hold clean edge cases, `malformed/` one problem per line. Files that need
raw bytes (invalid UTF-8) are written inside the tests.
"""

from __future__ import annotations

import json
import re
import shutil
from datetime import date, datetime
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from genre_dagster.ingest import (
    BEHAVIORS_QUARANTINE_SCHEMA,
    BEHAVIORS_SCHEMA,
    DEFAULT_LOCAL_PSEUDONYM_KEY,
    NEWS_QUARANTINE_SCHEMA,
    NEWS_SCHEMA,
    REASON_CODES,
    IngestResult,
    SourceFile,
    behavior_days,
    discover_mind_files,
    load_pseudonym_key,
    parse_behaviors,
    parse_news,
    pseudonymize_user_ids,
)

FIXTURES = Path(__file__).parent / "fixtures" / "mind"
MALFORMED = FIXTURES / "malformed"
KEY = b"test-pseudonym-key"
pseudo = partial(pseudonymize_user_ids, key=KEY)
FIXTURE_USERS = ["U7001", "U7002", "U7003", "U7004", "U7005"]
MALFORMED_USERS = [f"U80{i:02d}" for i in range(1, 11)]
NEWS_LINE = "N{0}\tnews\tlocal\tHeadline {0}\t\t\t[]\t[]"


def write_bytes_lines(path: Path, lines: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def write_lines(path: Path, lines: list[str]) -> Path:
    return write_bytes_lines(path, [line.encode("utf-8") for line in lines])


def by_line(result: IngestResult) -> dict[int, str]:
    return dict(zip(result.quarantine["line_number"], result.quarantine["reason"], strict=True))


def all_text(frame: pl.DataFrame) -> list[str]:
    """Every string in a frame, list columns flattened."""
    values: list[str] = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype == pl.List(pl.Utf8):
            series = series.explode()
        if series.dtype == pl.Utf8:
            values += [v for v in series.to_list() if v is not None]
    return values


def fixture_news() -> IngestResult:
    news, _ = discover_mind_files(FIXTURES)
    return parse_news(news)


# --- discovery ---------------------------------------------------------------------------


def test_discover_split_folders_in_order_ignoring_other_files():
    news, behaviors = discover_mind_files(FIXTURES)
    assert [(f.split, f.path.parent.name, f.path.name) for f in news] == [
        ("train", "train", "news.tsv"),
        ("dev", "dev", "news.tsv"),
        ("test", "test", "news.tsv"),
    ]
    assert [f.split for f in behaviors] == ["train", "dev", "test"]
    assert all(f.path.name == "behaviors.tsv" for f in behaviors)


def test_discover_single_split_root_and_landing(tmp_path):
    # A folder holding the files directly is one split: named after the folder if known.
    dev = tmp_path / "dev"
    shutil.copytree(FIXTURES / "dev", dev)
    news, behaviors = discover_mind_files(dev)
    assert [f.split for f in news + behaviors] == ["dev", "dev"]
    # ...otherwise "train" (the malformed fixture folder is such a root).
    news, _ = discover_mind_files(MALFORMED)
    assert news == [SourceFile(MALFORMED / "news.tsv", "train")]
    # MIND archives are often unpacked as MINDsmall_train/ and MINDsmall_dev/.
    root = tmp_path / "mind"
    shutil.copytree(FIXTURES / "train", root / "MINDsmall_train")
    shutil.copytree(FIXTURES / "dev", root / "MINDsmall_dev")
    landing = tmp_path / "landing"
    write_lines(landing / "behaviors_2019-11-17.tsv", [])
    write_lines(landing / "behaviors_2019-11-16.tsv", [])
    write_lines(landing / "news_2019-11-16.tsv", [])
    write_lines(landing / "notes.txt", [])
    news, behaviors = discover_mind_files(root, landing)
    assert [f.split for f in news] == ["train", "dev", "landing"]
    assert [(f.split, f.path.name) for f in behaviors][2:] == [
        ("landing", "behaviors_2019-11-16.tsv"),
        ("landing", "behaviors_2019-11-17.tsv"),
    ]
    # A landing folder that does not exist yet is simply empty.
    news, behaviors = discover_mind_files(root, tmp_path / "not-yet")
    assert len(news) == len(behaviors) == 2


def test_discover_errors_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope"))):
        discover_mind_files(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"news\.tsv.*train, dev, test"):
        discover_mind_files(tmp_path)
    write_lines(tmp_path / "train" / "behaviors.tsv", [])
    with pytest.raises(FileNotFoundError, match=r"no news\.tsv found"):
        discover_mind_files(tmp_path)


# --- news --------------------------------------------------------------------------------


def test_news_edge_cases_and_train_dev_overlap_merge():
    result = fixture_news()
    result.check_counts()
    assert result.accepted.schema == pl.Schema(NEWS_SCHEMA)
    assert result.quarantine.schema == pl.Schema(NEWS_QUARANTINE_SCHEMA)
    # 11 lines: N1003/N1004 repeat identically in dev, N1001 in test -> merged, not quarantined.
    assert (result.rows_read, result.rows_merged, result.quarantine.height) == (11, 3, 0)
    news = {row["news_id"]: row for row in result.accepted.iter_rows(named=True)}
    assert sorted(news) == ["N1001", "N1002", "N1003", "N1004", "N1005", "N2001", "N2002", "N3001"]
    assert news["N1003"]["source_file"].endswith("train/news.tsv")  # first occurrence kept
    assert news["N1003"]["line_number"] == 3
    assert news["N2001"]["line_number"] == 2
    # Empty abstract stays "", empty entity fields become "[]", entity JSON kept as text.
    assert news["N1002"]["abstract"] == ""
    assert news["N1002"]["title_entities"] == news["N1002"]["abstract_entities"] == "[]"
    assert news["N1005"]["subcategory"] == news["N1005"]["url"] == ""
    entities = json.loads(news["N1001"]["title_entities"])
    assert entities[0]["WikidataId"] == "Q0000002"
    assert json.loads(news["N1004"]["abstract_entities"])[0]["Label"] == "Harbor City"


def test_news_quarantine_reasons_with_line_numbers():
    result = parse_news([SourceFile(MALFORMED / "news.tsv", "train")])
    result.check_counts()
    assert by_line(result) == {
        2: "wrong_column_count",
        3: "empty_title",
        4: "missing_category",
        7: "duplicate_news_id",  # N1 repeated identically within the same file
        8: "duplicate_news_id",  # N6 repeated with a different title
    }
    # Entity fields are optional: a broken one is replaced by [] and the row kept.
    assert result.accepted["news_id"].to_list() == ["N1", "N5", "N6", "N9", "N10"]
    assert result.repairs.select("line_number", "field", "reason").rows() == [
        (5, "title_entities", "invalid_entity_json"),
        (9, "abstract_entities", "invalid_entity_json"),  # valid JSON, but an object
    ]
    repaired = result.accepted.filter(pl.col("news_id").is_in(["N5", "N9"]))
    assert repaired.select("title_entities", "abstract_entities").rows() == [("[]", "[]")] * 2
    assert result.accepted.filter(pl.col("news_id") == "N6")["title"].item() == (
        "Another valid headline"
    )
    assert (result.rows_read, result.rows_merged) == (10, 0)
    detail = result.quarantine.filter(pl.col("line_number") == 8)["detail"].item()
    assert "N6" in detail and "line 6" in detail


def test_news_invalid_utf8_quarantines_only_the_bad_line(tmp_path):
    path = write_bytes_lines(
        tmp_path / "news.tsv",
        [
            NEWS_LINE.format(1).encode(),
            b"N2\tnews\tlocal\tCaf\xff headline\t\t\t[]\t[]",
            "N3\tnews\tlocal\tCafé, déjà vu\t\t\t[]\t[]".encode(),
        ],
    )
    result = parse_news([SourceFile(path, "train")])
    result.check_counts()
    assert by_line(result) == {2: "invalid_utf8"}
    assert "\ufffd" in result.quarantine["raw_line"].item()
    assert result.accepted["title"].to_list() == ["Headline 1", "Café, déjà vu"]


def test_news_same_id_with_other_content_in_another_split_is_quarantined(tmp_path):
    train = write_lines(tmp_path / "train" / "news.tsv", [NEWS_LINE.format(1)])
    dev = write_lines(
        tmp_path / "dev" / "news.tsv",
        [NEWS_LINE.format(2), NEWS_LINE.format(1).replace("Headline", "Changed")],
    )
    result = parse_news([SourceFile(train, "train"), SourceFile(dev, "dev")])
    result.check_counts()
    assert result.rows_merged == 0
    assert result.quarantine.select("source_file", "line_number", "reason").rows() == [
        (str(dev), 2, "duplicate_news_id")
    ]
    assert "different content" in result.quarantine["detail"].item()
    assert result.accepted["title"].to_list() == ["Headline 1", "Headline 2"]


# --- behaviors ---------------------------------------------------------------------------


def test_behaviors_edge_cases_parse():
    _, files = discover_mind_files(FIXTURES)
    result = parse_behaviors(files, fixture_news().accepted["news_id"], pseudo)
    result.check_counts()
    assert result.quarantine.height == 0
    assert result.accepted.schema == pl.Schema(BEHAVIORS_SCHEMA)
    rows = {row["impression_id"]: row for row in result.accepted.iter_rows(named=True)}
    assert list(rows) == [
        "train-1", "train-2", "train-3", "train-4", "train-5", "dev-1", "dev-2", "test-1", "test-2"
    ]  # fmt: skip
    first = rows["train-1"]
    assert first["time"] == datetime(2019, 11, 9, 9, 5, 58)  # "11/9/2019 9:05:58 AM"
    assert first["day"] == date(2019, 11, 9)
    assert first["history"] == []
    assert (first["candidate_ids"], first["candidate_labels"]) == (["N1001", "N1002"], [1, 0])
    assert (first["mind_impression_id"], first["source_split"]) == (1, "train")
    assert rows["train-2"]["time"] == datetime(2019, 11, 9, 22, 15)  # PM
    assert rows["train-3"]["time"] == datetime(2019, 11, 10, 0, 0, 1)  # 12 AM is midnight
    assert rows["train-5"]["time"] == datetime(2019, 11, 11, 13, 5)
    assert rows["train-2"]["history"] == ["N1001", "N1003"]
    # The official test split has no labels: one null label per candidate.
    assert rows["test-1"]["candidate_ids"] == ["N3001", "N1001", "N2001"]
    assert rows["test-1"]["candidate_labels"] == [None, None, None]
    assert rows["dev-1"]["mind_impression_id"] == 1  # same MIND id as train-1, other split


def test_behaviors_quarantine_reasons_with_line_numbers():
    files = [SourceFile(MALFORMED / "behaviors.tsv", "train")]
    known = pl.Series(["N1", "N6", "N10"])
    result = parse_behaviors(files, known, pseudo)
    result.check_counts()
    assert result.rows_read == 13
    assert by_line(result) == {
        2: "wrong_column_count",
        3: "unparsable_time",  # 31/11/2019
        4: "bad_impression_id",  # x4
        5: "duplicate_impression_id",  # id 1 again
        6: "bad_impression_token",  # N1-2
        7: "empty_impressions",
        8: "unknown_news_in_impressions",  # N999
        9: "unknown_news_in_history",  # N998
        11: "bad_impression_token",  # labelled and unlabelled tokens mixed
        12: "unparsable_time",  # "yesterday at noon"
    }
    assert result.accepted["line_number"].to_list() == [1, 10, 13]
    assert set(result.quarantine["reason"]) <= set(REASON_CODES)
    assert result.quarantine.schema == pl.Schema(BEHAVIORS_QUARANTINE_SCHEMA)
    details = dict(zip(result.quarantine["line_number"], result.quarantine["detail"], strict=True))
    assert "N999" in details[8] and "N998" in details[9] and "N1-2" in details[6]
    assert "line 1" in details[5]


def test_behaviors_invalid_utf8_line(tmp_path):
    path = write_bytes_lines(
        tmp_path / "behaviors.tsv",
        [
            b"1\tU1\t11/11/2019 9:05:58 AM\tN1\tN1-1",
            b"2\tU\xff2\t11/11/2019 9:06:00 AM\tN1\tN1-1",
            b"3\tU3\t11/11/2019 9:07:00 AM\t\tN1-0",
        ],
    )
    result = parse_behaviors([SourceFile(path, "train")], pl.Series(["N1"]), pseudo)
    result.check_counts()
    assert by_line(result) == {2: "invalid_utf8"}
    assert result.quarantine["day"].item() == date(2019, 11, 11)
    raw_line = result.quarantine["raw_line"].item()
    assert raw_line.split("\t")[1] == pseudo(pl.Series(["U\ufffd2"])).item()


def test_split_label_rules(tmp_path):
    line = "{}\tU1\t11/11/2019 9:05:58 AM\t\t{}"
    lines = [line.format(1, "N1 N2"), line.format(2, "N1-1 N2"), line.format(3, "N1-1 N2-0")]
    known = pl.Series(["N1", "N2"])
    train = write_lines(tmp_path / "train" / "behaviors.tsv", lines)
    test = write_lines(tmp_path / "test" / "behaviors.tsv", lines)
    result = parse_behaviors([SourceFile(train, "train"), SourceFile(test, "test")], known, pseudo)
    result.check_counts()
    reasons = result.quarantine.select("source_file", "line_number", "reason").rows()
    assert reasons == [
        (str(train), 1, "bad_impression_token"),  # unlabelled outside the test split
        (str(train), 2, "bad_impression_token"),  # mixed
        (str(test), 2, "bad_impression_token"),  # mixed, even in test
    ]
    labels = dict(result.accepted.select("impression_id", "candidate_labels").rows())
    assert labels == {"train-3": [1, 0], "test-1": [None, None], "test-3": [1, 0]}


def test_days_and_per_day_filtering_add_up():
    files = [SourceFile(MALFORMED / "behaviors.tsv", "train")]
    days = behavior_days(files)
    # Line 3 (bad time) follows a 11/11 line, line 12 follows a 11/12 line.
    assert days == {date(2019, 11, 11): 9, date(2019, 11, 12): 4}
    known = pl.Series(["N1", "N6", "N10"])
    whole = parse_behaviors(files, known, pseudo)
    parts = {day: parse_behaviors(files, known, pseudo, day=day) for day in days}
    for day, part in parts.items():
        part.check_counts()
        assert part.rows_read == days[day]
        assert set(part.accepted["day"]) <= {day} and set(part.quarantine["day"]) == {day}
    assert sum(p.accepted.height for p in parts.values()) == whole.accepted.height
    assert sum(p.quarantine.height for p in parts.values()) == whole.quarantine.height
    assert parts[date(2019, 11, 12)].quarantine["line_number"].to_list() == [11, 12]
    # A day without lines gives an empty, consistent result.
    empty = parse_behaviors(files, known, pseudo, day=date(2020, 1, 1))
    assert (empty.rows_read, empty.accepted.height, empty.quarantine.height) == (0, 0, 0)


def test_undated_lines_at_file_start_go_to_the_next_dated_line(tmp_path):
    path = write_lines(
        tmp_path / "behaviors.tsv",
        [
            "1\tU1\tnot a time\t\tN1-1",
            "2\tU1",
            "3\tU1\t11/12/2019 9:05:58 AM\t\tN1-1",
            "4\tU1\t11/13/2019 9:05:58 AM\t\tN1-1",
            "5\tU1\t13/13/2019 9:05:58 AM\t\tN1-1",
        ],
    )
    files = [SourceFile(path, "train")]
    assert behavior_days(files) == {date(2019, 11, 12): 3, date(2019, 11, 13): 2}
    day = parse_behaviors(files, pl.Series(["N1"]), pseudo, day=date(2019, 11, 12))
    assert by_line(day) == {1: "unparsable_time", 2: "wrong_column_count"}
    empty = write_lines(tmp_path / "empty" / "behaviors.tsv", ["1\tU1\tsoon\t\tN1-1"])
    with pytest.raises(ValueError, match="no.*parsable time|none of its 1 lines"):
        behavior_days([SourceFile(empty, "train")])


def test_duplicate_impression_id_is_found_across_days(tmp_path):
    path = write_lines(
        tmp_path / "behaviors.tsv",
        ["7\tU1\t11/11/2019 9:00:00 AM\t\tN1-1", "7\tU2\t11/12/2019 9:00:00 AM\t\tN1-0"],
    )
    result = parse_behaviors(
        [SourceFile(path, "train")], pl.Series(["N1"]), pseudo, day=date(2019, 11, 12)
    )
    assert by_line(result) == {2: "duplicate_impression_id"}
    assert result.accepted.height == 0


def test_stray_spaces_and_empty_user(tmp_path):
    path = write_lines(
        tmp_path / "behaviors.tsv",
        [
            "1\tU1\t11/11/2019 9:05:58 AM\t N1  N2 \tN1-1 N2-0",  # history spacing is tolerated
            "2\tU1\t11/11/2019 9:05:58 AM\t\tN1-1  N2-0",  # impressions spacing is not
            "3\t \t11/11/2019 9:05:58 AM\t\tN1-1",
            "4\tU1\t11/11/2019 9:05:58 AM\t\t  ",
        ],
    )
    result = parse_behaviors([SourceFile(path, "train")], pl.Series(["N1", "N2"]), pseudo)
    result.check_counts()
    assert result.accepted["history"].to_list() == [["N1", "N2"]]
    assert by_line(result) == {
        2: "bad_impression_token",
        3: "missing_value",
        4: "empty_impressions",
    }


def test_crlf_and_long_lines(tmp_path):
    history = " ".join(f"N{i}" for i in range(1000, 1600))  # unknown ids, a >2,000-char line
    path = write_bytes_lines(
        tmp_path / "behaviors.tsv",
        [
            b"1\tU1\t11/11/2019 9:05:58 AM\t\tN1-1\r",
            f"2\tU2\t11/11/2019 9:05:59 AM\t{history}\tN1-0\r".encode(),
        ],
    )
    result = parse_behaviors([SourceFile(path, "train")], pl.Series(["N1"]), pseudo)
    assert result.accepted["candidate_labels"].to_list() == [[1]]
    assert by_line(result) == {2: "unknown_news_in_history"}
    assert len(result.quarantine["raw_line"].item()) == 2000


# --- pseudonymization ---------------------------------------------------------------------


def test_pseudonyms_are_deterministic_and_key_dependent():
    ids = pl.Series("user", ["U1", "U2", "U1", None])
    first = pseudonymize_user_ids(ids, KEY)
    assert first.to_list()[0] == first.to_list()[2] != first.to_list()[1]
    assert first.to_list()[3] is None
    assert all(re.fullmatch(r"u_[0-9a-f]{16}", v) for v in first.drop_nulls())
    assert pseudonymize_user_ids(ids, KEY).equals(first)
    assert pseudonymize_user_ids(ids, b"another-key").to_list()[0] != first.to_list()[0]


def test_raw_user_ids_appear_in_no_output_column():
    for root, users, known in (
        (FIXTURES, FIXTURE_USERS, fixture_news().accepted["news_id"]),
        (MALFORMED, MALFORMED_USERS, pl.Series(["N1", "N6", "N10"])),
    ):
        _, files = discover_mind_files(root)
        result = parse_behaviors(files, known, pseudo)
        assert result.accepted.height and (root == FIXTURES or result.quarantine.height)
        text = all_text(result.accepted) + all_text(result.quarantine)
        assert not [value for value in text for user in users if user in value]
        expected = set(pseudo(pl.Series(users)))
        assert set(result.accepted["user_id"]) <= expected
        quarantined_users = {
            line.split("\t")[1] for line in result.quarantine["raw_line"] if "\t" in line
        }
        assert quarantined_users <= expected


def test_load_pseudonym_key():
    assert load_pseudonym_key("s3cret", require=True) == b"s3cret"
    assert load_pseudonym_key(None, require=False) == DEFAULT_LOCAL_PSEUDONYM_KEY
    assert load_pseudonym_key("  ", require=False) == DEFAULT_LOCAL_PSEUDONYM_KEY
    with pytest.raises(ValueError, match="GENRE_PSEUDONYM_KEY"):
        load_pseudonym_key("", require=True)


def test_check_counts_raises_when_rows_are_lost():
    result = fixture_news()
    broken = IngestResult(result.accepted, result.quarantine, result.rows_read + 1, 3)
    with pytest.raises(ValueError, match="do not add up"):
        broken.check_counts()
    assert result.quarantine_share == 0.0
