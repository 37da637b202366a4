"""Tolerant where the data allows it, strict where it matters.

MIND files that went through pandas once carry a header line, CSV-quoted fields and often an
index column: they are read as if they were MIND's own. An unusable optional field (entity JSON)
is repaired and its row kept; a missing required field still quarantines the row. Every file is
written here (hand-written lines in the MIND format, no MIND rows), some through pandas itself.
"""

from __future__ import annotations

import json
from datetime import date
from functools import partial
from pathlib import Path

import polars as pl
import pytest

from genre_dagster.ingest import (
    NEWS_REPAIRS_SCHEMA,
    REASON_CODES,
    REPAIR_REASON_CODES,
    SourceFile,
    behavior_days,
    impression_days,
    parse_behaviors,
    parse_generic_items,
    parse_news,
    pseudonymize_user_ids,
)
from genre_dagster.ingest.mind_news import NEWS_COLUMNS

pseudo = partial(pseudonymize_user_ids, key=b"tolerance-test")
BEHAVIORS_COLUMNS = ["impression_id", "user_id", "time", "history", "impressions"]
ENTITIES = json.dumps(
    [
        {
            "Label": "Harbor City",
            "Type": "G",
            "WikidataId": "Q0000001",
            "Confidence": 1.0,
            "OccurrenceOffsets": [0],
            "SurfaceForms": ["Harbor City"],
        }
    ]
)
NEWS = [
    f"N1\tnews\tlocal\tHarbor City opens a new bridge\tA bridge.\thttps://x/1\t{ENTITIES}\t[]",
    'N2\tsports\tgolf\tCoach says "we are ready"\t\thttps://x/2\t[]\t[]',  # inner quotes
    "N3\tnews\tlocal\t\tNo title here.\thttps://x/3\t[]\t[]",  # empty title: still quarantined
    'N4\tnews\tlocal\tBroken entities\t\t\t[{"Label": \t[]',  # repaired, kept
]
BEHAVIORS = [
    "1\tU1\t11/11/2019 9:05:58 AM\tN1\tN2-1 N4-0",
    "2\tU2\t11/11/2019 10:00:00 PM\t\tN1-0 N2-1",
    "3\tU1\t11/12/2019 1:00:00 AM\tN1 N2\tN4-1",
]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def through_pandas(
    source: Path, target: Path, columns: list[str], index: bool, header: bool = True
) -> Path:
    """What a user's notebook does: read the MIND file with pandas, write it back as TSV."""
    import pandas as pd

    frame = pd.read_csv(source, sep="\t", header=None, names=columns, dtype=str)
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(target, sep="\t", index=index, header=header)
    return target


def by_line(result) -> dict[int, str]:
    return dict(result.quarantine.select("line_number", "reason").rows())


@pytest.mark.parametrize("index", [True, False], ids=["with_index", "without_index"])
def test_mind_files_written_by_pandas_read_like_the_originals(tmp_path, index):
    news_tsv = write_lines(tmp_path / "orig" / "news.tsv", NEWS)
    behaviors_tsv = write_lines(tmp_path / "orig" / "behaviors.tsv", BEHAVIORS)
    news = through_pandas(news_tsv, tmp_path / "pd" / "news.tsv", NEWS_COLUMNS, index)
    behaviors = through_pandas(
        behaviors_tsv, tmp_path / "pd" / "behaviors.tsv", BEHAVIORS_COLUMNS, index
    )
    text = news.read_text(encoding="utf-8")
    # The premise: pandas really quoted the entity field and wrote a header.
    assert '"[{""Label"": ""Harbor City""' in text and '"Coach says ""we are ready"""' in text
    assert text.startswith("\tnews_id\t" if index else "news_id\t")

    result = parse_news([SourceFile(news, "train")])
    result.check_counts()
    assert result.skipped_headers.keys() == {str(news)}
    assert ("index" in result.skipped_headers[str(news)]) is index
    assert result.rows_read == len(NEWS)  # the header is not a row
    original = parse_news([SourceFile(news_tsv, "train")])
    assert result.accepted.drop("source_file", "line_number").equals(
        original.accepted.drop("source_file", "line_number")
    )
    rows = {row["news_id"]: row for row in result.accepted.iter_rows(named=True)}
    assert sorted(rows) == ["N1", "N2", "N4"]
    assert rows["N1"]["title_entities"] == ENTITIES
    assert rows["N2"]["title"] == 'Coach says "we are ready"'
    assert rows["N2"]["abstract"] == ""  # pandas' NaN is written as an empty field
    assert rows["N1"]["line_number"] == 2  # line numbers are the file's, header included
    assert by_line(result) == {4: "empty_title"}
    assert result.repairs.select(
        "source_file", "line_number", "news_id", "field", "reason"
    ).rows() == [(str(news), 5, "N4", "title_entities", "invalid_entity_json")]
    assert rows["N4"]["title_entities"] == "[]"

    files = [SourceFile(behaviors, "train")]
    assert behavior_days(files) == {date(2019, 11, 11): 2, date(2019, 11, 12): 1}
    parsed = parse_behaviors(files, result.accepted["news_id"], pseudo)
    parsed.check_counts()
    assert parsed.quarantine.height == 0
    assert parsed.skipped_headers.keys() == {str(behaviors)}
    assert parsed.accepted.select("mind_impression_id", "history", "candidate_ids").rows() == [
        (1, ["N1"], ["N2", "N4"]),
        (2, [], ["N1", "N2"]),
        (3, ["N1", "N2"], ["N4"]),
    ]
    assert parsed.accepted["line_number"].to_list() == [2, 3, 4]


def test_only_rfc4180_quoted_fields_are_unquoted(tmp_path):
    path = write_lines(
        tmp_path / "news.tsv",
        [
            'N1\tnews\tlocal\t"""Quoted"" at the start"\t\t\t"[{""Label"": ""Trump""}]"\t""',
            'N2\tnews\tlocal\t"Yes" she said\t\t\t[]\t[]',  # not wrapped: kept
            'N3\tnews\tlocal\t"a "bare" quote"\t\t\t[]\t[]',  # inner quotes not doubled: kept
            'N4\tnews\tlocal\tTitle\t"\t\t"[{"Label": "x"}]"\t[]',  # lone quote; undoubled JSON
        ],
    )
    result = parse_news([SourceFile(path, "train")])
    result.check_counts()
    assert result.quarantine.height == 0 and not result.skipped_headers
    rows = {row["news_id"]: row for row in result.accepted.iter_rows(named=True)}
    assert rows["N1"]["title"] == '"Quoted" at the start'
    assert rows["N1"]["title_entities"] == '[{"Label": "Trump"}]'
    assert rows["N1"]["abstract_entities"] == "[]"  # `""` is an empty quoted field
    assert rows["N2"]["title"] == '"Yes" she said'
    assert rows["N3"]["title"] == '"a "bare" quote"'
    assert rows["N4"]["abstract"] == '"'
    # A field that is not properly quoted is not guessed at: here it is not JSON, so repaired.
    assert result.repairs.select("news_id", "field").rows() == [("N4", "title_entities")]
    assert '[{"Label": "x"}]' in result.repairs["detail"].item()


def test_quoted_behaviors_fields_and_no_raw_user_id_in_the_quarantine(tmp_path):
    path = write_lines(
        tmp_path / "behaviors.tsv",
        [
            '"1"\t"U1"\t"11/11/2019 9:05:58 AM"\t""\t"N1-1 N2-0"',
            '"2"\t"U2"\t"11/11/2019 9:06:00 AM"\t"N1"\t"N9-1"',  # unknown candidate
        ],
    )
    result = parse_behaviors([SourceFile(path, "train")], pl.Series(["N1", "N2"]), pseudo)
    result.check_counts()
    assert result.accepted.select("user_id", "history", "candidate_labels").rows() == [
        (pseudo(pl.Series(["U1"])).item(), [], [1, 0])
    ]
    assert by_line(result) == {2: "unknown_news_in_impressions"}
    raw_line = result.quarantine["raw_line"].item()
    assert "U2" not in raw_line
    assert raw_line.split("\t")[1] == pseudo(pl.Series(["U2"])).item()


@pytest.mark.parametrize(
    "header",
    [
        "News ID\tCategory\tSubCategory\tTitle\tAbstract\tURL\tTitle Entities\tAbstract Entities",
        "NEWS_ID\tcategory\tsubcategory\ttitle\tabstract\turl\ttitle_entities\tabstract_entities",
        "0\t1\t2\t3\t4\t5\t6\t7",  # pandas' labels for a file read with header=None
        "\t0\t1\t2\t3\t4\t5\t6\t7",
    ],
)
def test_news_header_variants_are_recognized(tmp_path, header):
    lines = [header, NEWS[0]] if not header.startswith("\t") else [header, "0\t" + NEWS[0]]
    path = write_lines(tmp_path / "news.tsv", lines)
    result = parse_news([SourceFile(path, "train")])
    result.check_counts()
    assert (result.header_lines_skipped, result.rows_read, result.quarantine.height) == (1, 1, 0)
    assert result.accepted.select("news_id", "line_number").rows() == [("N1", 2)]


def test_a_header_only_counts_as_the_first_line(tmp_path):
    header = "\t".join(BEHAVIORS_COLUMNS)
    path = write_lines(tmp_path / "behaviors.tsv", [BEHAVIORS[0], header, BEHAVIORS[1]])
    files = [SourceFile(path, "train")]
    result = parse_behaviors(files, pl.Series(["N1", "N2", "N4"]), pseudo)
    result.check_counts()
    assert not result.skipped_headers
    assert by_line(result) == {2: "bad_impression_id"}  # mid-file: quarantined, not skipped
    news = write_lines(tmp_path / "news.tsv", ["N1\tcategory\tsubcategory\ttitle\t\t\t[]\t[]"])
    assert parse_news([SourceFile(news, "train")]).accepted["news_id"].to_list() == ["N1"]


def test_index_column_is_dropped_only_where_it_is_an_integer(tmp_path):
    header = "\t" + "\t".join(NEWS_COLUMNS)
    lines = [header, "0\t" + NEWS[0], "x\t" + NEWS[1], NEWS[1]]
    path = write_lines(tmp_path / "news.tsv", lines)
    result = parse_news([SourceFile(path, "train")])
    result.check_counts()
    # Line 4 has no index but is a whole news line: it is read as it is.
    assert result.accepted.select("news_id", "line_number").rows() == [("N1", 2), ("N2", 4)]
    assert by_line(result) == {3: "wrong_column_count"}
    assert result.quarantine["raw_line"].item().startswith("x\tN2\t")


def test_header_only_behaviors_file_is_reported_like_an_empty_file(tmp_path):
    good = write_lines(tmp_path / "train" / "behaviors.tsv", BEHAVIORS[:1])
    only_header = write_lines(
        tmp_path / "landing" / "behaviors.tsv", ["\t".join(BEHAVIORS_COLUMNS)]
    )
    files = [SourceFile(good, "train"), SourceFile(only_header, "landing")]
    result = parse_behaviors(files, pl.Series(["N1", "N2", "N4"]), pseudo)
    result.check_counts()
    assert result.skipped_headers.keys() == {str(only_header)}
    assert result.quarantine.select("source_file", "line_number", "reason").rows() == [
        (str(only_header), 0, "unattributable_file")
    ]


def test_repairs_only_for_accepted_rows_and_required_fields_stay_strict(tmp_path):
    bad = '[{"Label": '
    train = write_lines(
        tmp_path / "train" / "news.tsv",
        [
            f"N1\tnews\tlocal\tBoth broken\t\t\t{bad}\t{{}}",
            f"N2\tnews\tlocal\t\t\t\t{bad}\t[]",  # empty title wins: quarantined, no repair
            f"N3\t\tlocal\tNo category\t\t\t{bad}\t[]",
            f"\tnews\tlocal\tNo id\t\t\t{bad}\t[]",
        ],
    )
    dev = write_lines(
        tmp_path / "dev" / "news.tsv", [f"N1\tnews\tlocal\tBoth broken\t\t\t{bad}\t{{}}"]
    )
    result = parse_news([SourceFile(train, "train"), SourceFile(dev, "dev")])
    result.check_counts()
    assert by_line(result) == {2: "empty_title", 3: "missing_category", 4: "missing_value"}
    assert result.rows_merged == 1  # dev's identical N1 is folded into train's, not repaired twice
    assert result.repairs.schema == pl.Schema(NEWS_REPAIRS_SCHEMA)
    assert result.repairs.select("source_file", "line_number", "field", "reason").rows() == [
        (str(train), 1, "title_entities", "invalid_entity_json"),
        (str(train), 1, "abstract_entities", "invalid_entity_json"),
    ]
    assert result.rows_repaired == 1
    assert result.repairs["raw_line"].to_list() == [train.read_text().splitlines()[0]] * 2
    assert result.accepted.select("title_entities", "abstract_entities").rows() == [("[]", "[]")]
    assert set(REPAIR_REASON_CODES).isdisjoint(REASON_CODES)
    assert set(result.quarantine["reason"]) <= set(REASON_CODES)


def test_generic_csv_written_by_pandas_keeps_quoted_fields(tmp_path):
    import pandas as pd

    path = tmp_path / "books.csv"
    pd.DataFrame(
        {
            "book_id": ["B1", "B2"],
            "name": ['The "Quoted" Voyage', "Commas, tabs\tand more"],
            "genre": ["fiction", "poetry"],
            "description": ['Line one\nline "two"', None],
        }
    ).to_csv(path)  # with pandas' unnamed index column
    assert '"The ""Quoted"" Voyage"' in path.read_text(encoding="utf-8")
    column_map = {"item_id": "book_id", "title": "name", "category": "genre", "text": "description"}
    result = parse_generic_items(path, column_map)
    result.check_counts()
    assert result.quarantine.height == 0
    assert result.accepted.select("news_id", "title", "abstract").rows() == [
        ("B1", 'The "Quoted" Voyage', 'Line one\nline "two"'),
        ("B2", "Commas, tabs\tand more", ""),
    ]


def test_pandas_index_written_without_a_header_is_dropped_and_reported(tmp_path):
    """`to_csv(sep="\t", header=False)` keeps pandas' index: every line starts with an integer
    and has one column too many. The column is dropped as a file repair, the rows read as the
    originals, the days are the same, and the empty title is still quarantined."""
    news_tsv = write_lines(tmp_path / "orig" / "news.tsv", NEWS)
    behaviors_tsv = write_lines(tmp_path / "orig" / "behaviors.tsv", BEHAVIORS)
    news = through_pandas(news_tsv, tmp_path / "pd" / "news.tsv", NEWS_COLUMNS, True, False)
    behaviors = through_pandas(
        behaviors_tsv, tmp_path / "pd" / "behaviors.tsv", BEHAVIORS_COLUMNS, True, False
    )
    assert news.read_text(encoding="utf-8").startswith("0\tN1\tnews\t")  # the premise
    assert behaviors.read_text(encoding="utf-8").startswith("0\t1\tU1\t")

    result = parse_news([SourceFile(news, "train")])
    result.check_counts()
    assert not result.skipped_headers and result.files_repaired == 1
    assert "index" in result.file_repairs[str(news)]
    original = parse_news([SourceFile(news_tsv, "train")])
    assert result.accepted.drop("source_file").equals(original.accepted.drop("source_file"))
    assert by_line(result) == {3: "empty_title"}
    assert result.quarantine["raw_line"].item().startswith("N3\t")  # without the index

    files = [SourceFile(behaviors, "train")]
    assert behavior_days(files) == behavior_days([SourceFile(behaviors_tsv, "train")])
    assert impression_days(files).equals(impression_days([SourceFile(behaviors_tsv, "train")]))
    parsed = parse_behaviors(files, result.accepted["news_id"], pseudo)
    parsed.check_counts()
    assert parsed.quarantine.height == 0 and parsed.files_repaired == 1
    assert parsed.accepted.select("mind_impression_id", "history", "candidate_ids").rows() == [
        (1, ["N1"], ["N2", "N4"]),
        (2, [], ["N1", "N2"]),
        (3, ["N1", "N2"], ["N4"]),
    ]


def test_a_leading_integer_column_is_dropped_only_when_every_line_has_one(tmp_path):
    """One line without the extra column is enough to read the file as it is: the shifted
    lines fail the column count instead of being guessed at."""
    lines = ["0\t" + NEWS[0], "1\t" + NEWS[1], NEWS[1].replace("N2", "N5")]
    path = write_lines(tmp_path / "news.tsv", lines)
    result = parse_news([SourceFile(path, "train")])
    result.check_counts()
    assert not result.file_repairs
    assert by_line(result) == {1: "wrong_column_count", 2: "wrong_column_count"}
    assert result.accepted["news_id"].to_list() == ["N5"]


@pytest.mark.parametrize("index", [False, True], ids=["no_index", "with_index"])
def test_quoted_fields_may_hold_tabs(tmp_path, index):
    """pandas quotes a field holding a tab (RFC 4180 in a tab-separated file): the tab belongs
    to the field, the row keeps its 8 columns; an empty title still quarantines its row."""
    import pandas as pd

    path = tmp_path / "news.tsv"
    pd.DataFrame(
        [
            [
                "N1",
                "news",
                "local",
                "Tabs\tin a title",
                'An "abstract"\twith a tab',
                "",
                "[]",
                "[]",
            ],
            ["N2", "news", "local", "", "A\ttab but no title", "", "[]", "[]"],
            ["N3", "sports", "golf", "Plain title", "", "", "[]", "[]"],
        ],
        columns=list(NEWS_COLUMNS),
    ).to_csv(path, sep="\t", header=False, index=index)
    assert '"Tabs\tin a title"' in path.read_text(encoding="utf-8")  # the premise
    written = write_lines(  # the same by hand, with a doubled quote next to the tab
        tmp_path / "by_hand.tsv", ['N4\tnews\tlocal\t"A ""quoted""\ttitle"\t\t\t[]\t[]']
    )
    result = parse_news([SourceFile(path, "train"), SourceFile(written, "dev")])
    result.check_counts()
    rows = {row["news_id"]: row for row in result.accepted.iter_rows(named=True)}
    assert rows["N1"]["title"] == "Tabs\tin a title"
    assert rows["N1"]["abstract"] == 'An "abstract"\twith a tab'
    assert rows["N3"]["title"] == "Plain title"
    assert rows["N4"]["title"] == 'A "quoted"\ttitle'
    assert by_line(result) == {2: "empty_title"}
    assert result.files_repaired == int(index)
