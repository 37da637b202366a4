"""Raw ingestion assets materialized by Dagster on hand-written MIND fixtures (no MIND rows)."""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import pytest
from dagster_duckdb import DuckDBResource

from genre_dagster.assets.raw import IngestionConfig, raw_behaviors, raw_news
from genre_dagster.resources import DatasetSource, PrivacyResource
from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

NEWS = [
    "N1\tsports\tfootball_nfl\tQuarterback throws four touchdowns\tA big win.\thttps://x/1\t[]\t[]",
    "N2\tfinance\tmarkets\tStocks rally as rates hold\t\thttps://x/2\t\t",
    "N3\thealth\tmedical\tNew study on sleep and memory\tResearchers found.\thttps://x/3\t"
    '[{"Label": "Sleep", "Type": "C", "WikidataId": "Q35831", "Confidence": 1.0, '
    '"OccurrenceOffsets": [18], "SurfaceForms": ["sleep"]}]\t[]',
    "N4\tsports\tgolf\t\tNo title here.\thttps://x/4\t[]\t[]",  # empty title
    "N5\tnews\tnewsus\tOnly seven columns\tabstract\thttps://x/5\t[]",  # wrong column count
]
BEHAVIORS = [
    "1\tU10\t11/11/2019 9:05:58 AM\tN1 N2\tN3-1 N2-0",
    "2\tU11\t11/11/2019 10:15:00 PM\t\tN1-0 N3-1 N2-0",  # empty history
    "3\tU12\t11/12/2019 1:00:00 AM\tN2\tN1-1",
    "4\tU13\tnot a time\tN1\tN2-1",  # unparsable time, attributed to the previous line's day
    "5\tU14\t11/12/2019 3:00:00 PM\tN1\tN2-x",  # bad impression token
    "6\tU15\t11/12/2019 4:00:00 PM\tN9\tN1-1",  # unknown news in history
    "7\tU16\t11/12/2019 5:00:00 PM\tN1\tN4-1",  # N4 was quarantined: unknown news
]


@pytest.fixture
def mind_root(tmp_path):
    train = tmp_path / "mind" / "train"
    train.mkdir(parents=True)
    (train / "news.tsv").write_text("\n".join(NEWS) + "\n", encoding="utf-8")
    (train / "behaviors.tsv").write_text("\n".join(BEHAVIORS) + "\n", encoding="utf-8")
    return tmp_path


def _pandas_style(lines: list[str], columns: str) -> str:
    """The lines as `pd.read_csv(...).to_csv(sep="\\t")` writes them: a header with the index
    column, an integer index on every line, fields holding a quote CSV-quoted."""
    quote = lambda f: '"' + f.replace('"', '""') + '"' if '"' in f else f  # noqa: E731
    body = [
        f"{i}\t" + "\t".join(quote(f) for f in line.split("\t")) for i, line in enumerate(lines)
    ]
    return "\n".join(["\t" + columns, *body]) + "\n"


@pytest.fixture
def pandas_root(tmp_path):
    train = tmp_path / "mind" / "train"
    train.mkdir(parents=True)
    news = [*NEWS, 'N6\tnews\tlocal\tBroken entities\t\t\t[{"Label": \t[]']  # repaired
    news_columns = (
        "news_id\tcategory\tsubcategory\ttitle\tabstract\turl\ttitle_entities\tabstract_entities"
    )
    (train / "news.tsv").write_text(_pandas_style(news, news_columns), encoding="utf-8")
    behaviors_columns = "impression_id\tuser_id\ttime\thistory\timpressions"
    (train / "behaviors.tsv").write_text(
        _pandas_style(BEHAVIORS, behaviors_columns), encoding="utf-8"
    )
    return tmp_path


def _resources(root):
    database = str(root / "genre.duckdb")
    return {
        "io_manager": DuckDBPolarsTablesIOManager(database=database),
        "duckdb": DuckDBResource(database=database),
        "source": DatasetSource(kind="mind", path=str(root / "mind")),
        "privacy": PrivacyResource(pseudonym_key="test-key"),
    }


def _materialize(root, day: str, max_share: float = 1.0, instance=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("behavior_days", ["2019-11-11", "2019-11-12"])
    config = dg.RunConfig(
        ops={
            "raw_news": IngestionConfig(max_quarantine_share=max_share),
            "raw_behaviors": IngestionConfig(max_quarantine_share=max_share),
        }
    )
    return dg.materialize(
        [raw_news, raw_behaviors],
        partition_key=day,
        resources=_resources(root),
        instance=instance,
        run_config=config,
        raise_on_error=False,
    )


def _metadata(result, *key: str) -> dict:
    (mat,) = [
        e.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(list(key))
    ]
    return {k: v.value for k, v in mat.metadata.items()}


def test_bad_lines_are_quarantined_with_reasons_and_counts_add_up(mind_root):
    result = _materialize(mind_root, "2019-11-12")
    assert result.success
    news = _metadata(result, "raw", "news")
    assert news["rows_read"] == 5
    assert news["rows_accepted"] == 3
    assert news["rows_quarantined"] == 2
    behaviors = _metadata(result, "raw", "behaviors")
    assert behaviors["rows_read"] == behaviors["rows_accepted"] + behaviors["rows_quarantined"]
    assert behaviors["rows_accepted"] == 1  # only impression 3 is clean on 11/12
    assert behaviors["rows_quarantined"] == 4

    with duckdb.connect(str(mind_root / "genre.duckdb"), read_only=True) as conn:
        reasons = dict(
            conn.sql(
                "select line_number, reason from raw.behaviors_quarantine order by line_number"
            ).fetchall()
        )
        news_reasons = dict(
            conn.sql("select line_number, reason from raw.news_quarantine").fetchall()
        )
        raw_lines = [
            r for (r,) in conn.sql("select raw_line from raw.behaviors_quarantine").fetchall()
        ]
    assert news_reasons == {4: "empty_title", 5: "wrong_column_count"}
    assert reasons == {
        4: "unparsable_time",
        5: "bad_impression_token",
        6: "unknown_news_in_history",
        7: "unknown_news_in_impressions",
    }
    # raw user ids are replaced by their pseudonym even in the quarantine
    assert not any("U1" in line for line in raw_lines)
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"row_conservation": True}


def test_each_day_is_its_own_partition_and_rematerializing_replaces_it(mind_root):
    instance = dg.DagsterInstance.ephemeral()
    assert _materialize(mind_root, "2019-11-11", instance=instance).success
    assert _materialize(mind_root, "2019-11-12", instance=instance).success
    assert _materialize(mind_root, "2019-11-11", instance=instance).success
    with duckdb.connect(str(mind_root / "genre.duckdb"), read_only=True) as conn:
        rows = conn.sql(
            "select cast(day as varchar), count(*) from raw.behaviors group by day order by day"
        ).fetchall()
    assert rows == [("2019-11-11", 2), ("2019-11-12", 1)]


def test_quarantine_share_over_threshold_fails_with_a_clear_message_but_keeps_the_quarantine(
    mind_root,
):
    result = _materialize(mind_root, "2019-11-12", max_share=0.1)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.event_specific_data.error.message
    assert "exceeds max_quarantine_share" in message
    with duckdb.connect(str(mind_root / "genre.duckdb"), read_only=True) as conn:
        (n,) = conn.sql("select count(*) from raw.news_quarantine").fetchone()
    assert n == 2


def test_pandas_written_files_skip_headers_and_store_repairs(pandas_root):
    result = _materialize(pandas_root, "2019-11-12")
    assert result.success
    news = _metadata(result, "raw", "news")
    assert (news["rows_read"], news["rows_accepted"], news["rows_quarantined"]) == (6, 4, 2)
    assert (news["header_lines_skipped"], news["rows_repaired"]) == (1, 1)
    assert "| invalid_entity_json | title_entities | 1 |" in news["repair_reasons"]
    behaviors = _metadata(result, "raw", "behaviors")
    assert (behaviors["header_lines_skipped"], behaviors["rows_accepted"]) == (1, 1)

    path = str(pandas_root / "mind" / "train" / "news.tsv")
    with duckdb.connect(str(pandas_root / "genre.duckdb"), read_only=True) as conn:
        repairs = conn.sql(
            "select source_file, line_number, news_id, field, reason, detail from raw.news_repairs"
        ).fetchall()
        entities = dict(conn.sql("select news_id, title_entities from raw.news").fetchall())
        quarantined = dict(
            conn.sql("select line_number, reason from raw.news_quarantine").fetchall()
        )
        behaviors_quarantined = dict(
            conn.sql("select line_number, reason from raw.behaviors_quarantine").fetchall()
        )
        raw_lines = [
            r for (r,) in conn.sql("select raw_line from raw.behaviors_quarantine").fetchall()
        ]
    # With the index column dropped, the 2nd field is still the user id: pseudonymized.
    assert raw_lines and not any("U1" in line for line in raw_lines)
    (repair,) = repairs
    assert repair[:5] == (path, 7, "N6", "title_entities", "invalid_entity_json")
    assert '[{"Label": ' in repair[5]
    assert entities["N6"] == "[]"
    assert json.loads(entities["N3"])[0]["WikidataId"] == "Q35831"  # unquoted, valid JSON
    # Line numbers are the file's: the header is line 1.
    assert quarantined == {5: "empty_title", 6: "wrong_column_count"}
    assert behaviors_quarantined == {
        5: "unparsable_time",
        6: "bad_impression_token",
        7: "unknown_news_in_history",
        8: "unknown_news_in_impressions",
    }


def test_large_sources_are_read_for_days_in_a_child_process(mind_root, monkeypatch):
    """Above CHILD_READ_MIN_BYTES the day list and the split preflight's counts are read in a
    spawned child (the run's process would keep the memory): the same answers, and the same
    error for a source without a parsable time."""
    from genre_dagster.resources import source as source_module

    source = DatasetSource(kind="mind", path=str(mind_root / "mind"))
    in_place = (source.days(), source.impression_days())
    children = []
    real_pool = __import__("concurrent.futures").futures.ProcessPoolExecutor

    def counting_pool(*args, **kwargs):
        children.append(kwargs["mp_context"].get_start_method())
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(source_module, "CHILD_READ_MIN_BYTES", 0)
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", counting_pool)
    assert (source.days(), source.impression_days()) == in_place
    assert children == ["spawn", "spawn"]
    assert sum(c.impressions for c in in_place[1]) == sum(in_place[0].values())

    (mind_root / "mind" / "train" / "behaviors.tsv").write_text("1\tU1\tnot a time\t\tN1-1\n")
    with pytest.raises(ValueError, match="time"):
        source.days()
