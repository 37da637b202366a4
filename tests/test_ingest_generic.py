"""Generic items/interactions (any domain, here invented books) mapped to the canonical tables."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from genre_dagster.ingest import (
    BEHAVIORS_QUARANTINE_SCHEMA,
    BEHAVIORS_SCHEMA,
    NEWS_SCHEMA,
    generic_days,
    parse_generic_interactions,
    parse_generic_items,
    pseudonymize_user_ids,
)

KEY = b"generic-test-key"
pseudo = partial(pseudonymize_user_ids, key=KEY)
BOOK_MAP = {"item_id": "book_id", "title": "name", "category": "genre", "text": "description"}
READ_MAP = {"user_id": "reader", "item_id": "book_id", "timestamp": "read_at", "label": "liked"}
BOOKS = pl.Series(["B1", "B2", "B3", "B5"])


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n", encoding="utf-8")
    return path


def reasons(result) -> dict[int, str]:
    return dict(result.quarantine.select("line_number", "reason").rows())


def all_text(frame: pl.DataFrame) -> list[str]:
    values: list[str] = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype == pl.List(pl.Utf8):
            series = series.explode()
        if series.dtype == pl.Utf8:
            values += [v for v in series.to_list() if v is not None]
    return values


# --- items -------------------------------------------------------------------------------


def test_items_csv_with_column_map(tmp_path):
    path = write_csv(
        tmp_path / "books.csv",
        """
book_id,name,genre,description,pages
B1,The Invented Voyage,fiction,A ship that never sailed.,320
B2,Counting Clouds,science,,120
B3,,fiction,A book without a title,10
B1,The Invented Voyage,fiction,A ship that never sailed.,320
B4,Paper Gardens,,No genre given,99
007,Zeros Stay,poetry,Ids are read as text,1
""",
    )
    result = parse_generic_items(path, BOOK_MAP)
    result.check_counts()
    assert result.accepted.schema == pl.Schema(NEWS_SCHEMA)
    assert result.accepted["news_id"].to_list() == ["B1", "B2", "007"]
    first = result.accepted.row(0, named=True)
    assert first["abstract"] == "A ship that never sailed."
    assert (first["subcategory"], first["url"], first["title_entities"]) == ("", "", "[]")
    assert result.accepted["line_number"].to_list() == [1, 2, 6]
    assert reasons(result) == {3: "empty_title", 4: "duplicate_news_id", 5: "missing_category"}
    raw = json.loads(result.quarantine.filter(pl.col("line_number") == 5)["raw_line"].item())
    assert raw["item_id"] == "B4" and raw["category"] is None
    assert "pages" not in raw  # only mapped canonical fields are echoed


def test_items_parquet_with_int_ids(tmp_path):
    path = tmp_path / "items.parquet"
    pl.DataFrame(
        {
            "sku": [11, 12],
            "label": ["Lamp", "Chair"],
            "dept": ["home", "home"],
            "kind": ["light", "seat"],
            "link": ["https://example.invalid/11", None],
        }
    ).write_parquet(path)
    column_map = {
        "item_id": "sku",
        "title": "label",
        "category": "dept",
        "subcategory": "kind",
        "url": "link",
    }
    result = parse_generic_items(path, column_map)
    result.check_counts()
    assert result.accepted.select("news_id", "subcategory", "url", "abstract").rows() == [
        ("11", "light", "https://example.invalid/11", ""),
        ("12", "seat", "", ""),
    ]


def test_missing_columns_and_bad_maps_are_clear_errors(tmp_path):
    path = write_csv(tmp_path / "books.csv", "book_id,name\nB1,Title")
    with pytest.raises(ValueError) as error:
        parse_generic_items(path, {"item_id": "book_id"})
    message = str(error.value)
    assert "title, category" in message and "['book_id', 'name']" in message
    with pytest.raises(ValueError, match=r"title \(mapped to 'headline'\)"):
        parse_generic_items(path, {"item_id": "book_id", "title": "headline"})
    with pytest.raises(ValueError, match="unknown canonical name.*'titel'"):
        parse_generic_items(path, {"titel": "name"})
    with pytest.raises(ValueError, match="unsupported file type '.json'"):
        parse_generic_items(tmp_path / "books.json")
    reads = write_csv(tmp_path / "reads.csv", "reader,book_id\nR1,B1")
    with pytest.raises(ValueError, match="timestamp"):
        parse_generic_interactions(
            reads, BOOKS, pseudo, {"user_id": "reader", "item_id": "book_id"}
        )


# --- interactions ------------------------------------------------------------------------

READS = """
reader,book_id,read_at,liked
R1,B1,2024-01-05T10:00:00,1
R1,B2,2024-01-05T10:00:00,0
R1,B5,2024-01-06 09:00,1
R2,B1,2024-01-05,1
R2,B9,2024-01-06T08:00:00Z,1
R2,B2,not a time,1
,B2,2024-01-06T08:00:00,1
R3,B2,2024-01-06T08:00:00+02:00,2
R1,B3,2024-01-07T08:00:00,1
R1,B2,2024-01-07T08:00:00,0
"""


def test_interactions_csv_grouping_history_and_quarantine(tmp_path):
    path = write_csv(tmp_path / "reads.csv", READS)
    result = parse_generic_interactions(path, BOOKS, pseudo, READ_MAP)
    result.check_counts()
    assert result.accepted.schema == pl.Schema(BEHAVIORS_SCHEMA)
    assert result.quarantine.schema == pl.Schema(BEHAVIORS_QUARANTINE_SCHEMA)
    assert reasons(result) == {
        5: "unknown_news_in_impressions",
        6: "unparsable_time",
        7: "missing_value",
        8: "bad_label",
    }
    rows = result.accepted.select(
        "impression_id", "time", "history", "candidate_ids", "candidate_labels", "line_number"
    ).rows()
    assert rows == [
        # (time, user) order: R2's midnight read first, then R1's two books read together.
        ("generic-1", datetime(2024, 1, 5), [], ["B1"], [1], 4),
        ("generic-2", datetime(2024, 1, 5, 10), [], ["B1", "B2"], [1, 0], 1),
        ("generic-4", datetime(2024, 1, 6, 9), ["B1"], ["B5"], [1], 3),
        ("generic-5", datetime(2024, 1, 7, 8), ["B1", "B5"], ["B3", "B2"], [1, 0], 9),
    ]  # generic-3 is R2's 08:00 impression, whose only row (unknown B9) is quarantined.
    assert result.accepted["source_split"].unique().to_list() == ["generic"]
    # 10 rows = 4 impressions + 4 quarantined + 2 rows that joined an earlier row's impression.
    assert (result.rows_read, result.rows_merged) == (10, 2)


def test_interactions_days_and_per_day_counts(tmp_path):
    path = write_csv(tmp_path / "reads.csv", READS)
    days = generic_days(path, READ_MAP)
    # Row 6 has no usable time: it takes the day of row 5 (the preceding dated row).
    assert days == {date(2024, 1, 5): 3, date(2024, 1, 6): 5, date(2024, 1, 7): 2}
    whole = parse_generic_interactions(path, BOOKS, pseudo, READ_MAP)
    total = {"accepted": 0, "quarantined": 0}
    for day, count in days.items():
        part = parse_generic_interactions(path, BOOKS, pseudo, READ_MAP, day=day)
        part.check_counts()
        assert part.rows_read == count
        assert set(part.accepted["day"]) <= {day} and set(part.quarantine["day"]) <= {day}
        total["accepted"] += part.accepted.height
        total["quarantined"] += part.quarantine.height
        # Histories are built from every day, not only the one asked for.
        assert part.accepted.equals(whole.accepted.filter(pl.col("day") == day))
    assert total == {"accepted": whole.accepted.height, "quarantined": whole.quarantine.height}


def test_interactions_parquet_with_impression_ids_and_aware_times(tmp_path):
    t0 = datetime(2024, 3, 1, 23, 30, tzinfo=UTC)
    path = tmp_path / "events.parquet"
    pl.DataFrame(
        {
            "customer": ["C1", "C1", "C1", "C2", "C1"],
            "product": ["P1", "P2", "P3", "P1", "P2"],
            "at": [t0, t0 + timedelta(minutes=40), t0, t0, t0 + timedelta(days=1)],
            "clicked": [True, False, False, True, True],
            "session": [7, 7, 7, 7, 8],
        }
    ).write_parquet(path)
    column_map = {
        "user_id": "customer",
        "item_id": "product",
        "timestamp": "at",
        "label": "clicked",
        "impression_id": "session",
    }
    result = parse_generic_interactions(path, pl.Series(["P1", "P2", "P3"]), pseudo, column_map)
    result.check_counts()
    rows = result.accepted.select("user_id", "time", "day", "candidate_ids", "candidate_labels")
    c1, c2 = pseudo(pl.Series(["C1", "C2"])).to_list()
    # Session 7 is two impressions (two users); C1's spans midnight and keeps its first time.
    assert rows.rows() == [
        (c1, datetime(2024, 3, 1, 23, 30), date(2024, 3, 1), ["P1", "P2", "P3"], [1, 0, 0]),
        (c2, datetime(2024, 3, 1, 23, 30), date(2024, 3, 1), ["P1"], [1]),
        (c1, datetime(2024, 3, 2, 23, 30), date(2024, 3, 2), ["P2"], [1]),
    ]
    assert result.accepted["history"].to_list() == [[], [], ["P1"]]
    assert generic_days(path, column_map) == {date(2024, 3, 1): 4, date(2024, 3, 2): 1}


def test_history_is_capped_to_the_most_recent_clicks(tmp_path):
    start = datetime(2024, 1, 1)
    events = pl.DataFrame(
        {
            "user_id": ["U1"] * 131,
            "item_id": [f"I{i}" for i in range(131)],
            "timestamp": [(start + timedelta(hours=i)).isoformat() for i in range(131)],
        }
    )
    path = tmp_path / "events.csv"
    events.write_csv(path)
    items = pl.Series([f"I{i}" for i in range(131)])
    result = parse_generic_interactions(path, items, pseudo)  # no label column: all 1
    last = result.accepted.row(-1, named=True)
    assert last["candidate_ids"] == ["I130"] and last["candidate_labels"] == [1]
    assert last["history"] == [f"I{i}" for i in range(30, 130)]  # 100 most recent, oldest first
    assert result.accepted["mind_impression_id"].to_list() == list(range(1, 132))


def test_generic_raw_user_ids_never_in_output(tmp_path):
    path = write_csv(tmp_path / "reads.csv", READS)
    result = parse_generic_interactions(path, BOOKS, pseudo, READ_MAP)
    text = all_text(result.accepted) + all_text(result.quarantine)
    assert result.quarantine.height and not [v for v in text for u in ("R1", "R2", "R3") if u in v]
    raw_users = {json.loads(line)["user_id"] for line in result.quarantine["raw_line"]}
    assert raw_users - {None} <= set(pseudo(pl.Series(["R1", "R2", "R3"])))
    other_key = parse_generic_interactions(
        path, BOOKS, partial(pseudonymize_user_ids, key=b"other"), READ_MAP
    )
    assert set(other_key.accepted["user_id"]).isdisjoint(result.accepted["user_id"])
