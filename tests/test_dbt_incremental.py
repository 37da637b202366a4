"""dbt's incremental models: a nightly build rebuilds what changed and matches a full build.

`impressions` (by day) and `user_histories` (by user) keep per-key signatures of the source
rows they were built from (`dbt_project/macros/changed_keys.sql`). These tests run the real dbt
project on a DuckDB file whose raw tables they write themselves, change the raw data the ways
ingestion can (a new day, a re-ingested day with other clicks, a day that is gone, a changed
setting) and compare every feature table with a `--full-refresh` build of the same data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pytest

from genre_dagster.duckdb_lock import dbt_duckdb_env
from genre_dagster.settings import DBT_PROJECT_DIR

FEATURE_TABLES = (
    "impressions",
    "impression_splits",
    "user_histories",
    "user_segments",
    "item_daily_stats",
)
FIRST_DAY = date(2024, 5, 1)
N_NEWS = 60
N_USERS = 200

RAW_TABLES = """
create schema raw;
create table raw.news (
    news_id varchar, category varchar, subcategory varchar, title varchar, abstract varchar,
    url varchar, title_entities varchar, abstract_entities varchar, source_file varchar,
    line_number bigint
);
create table raw.behaviors (
    impression_id varchar, mind_impression_id bigint, source_split varchar, user_id varchar,
    time timestamp, day date, history varchar[], candidate_ids varchar[],
    candidate_labels tinyint[], source_file varchar, line_number bigint
);
create table raw.news_quarantine (
    source_file varchar, line_number bigint, reason varchar, detail varchar, raw_line varchar
);
create table raw.behaviors_quarantine (
    source_file varchar, line_number bigint, reason varchar, detail varchar, raw_line varchar,
    day date
);
"""


def _day_rows(day_index: int, seed: int) -> list[tuple]:
    """About 30 impressions of one day: users with provided histories, 5-12 candidates, one
    or two clicks each; the last day is MIND's dev folder."""
    rng = np.random.default_rng(seed * 1000 + day_index)
    day = FIRST_DAY + timedelta(days=day_index)
    split = "dev" if day_index >= 3 else "train"
    rows = []
    for k in range(30):
        user = int(rng.integers(N_USERS))
        n = int(rng.integers(5, 13))
        candidates = [f"N{i}" for i in rng.choice(N_NEWS, size=n, replace=False)]
        labels = [0] * n
        for position in rng.choice(n, size=int(rng.integers(1, 3)), replace=False):
            labels[int(position)] = 1
        history_rng = np.random.default_rng(user)  # a user's provided history is stable
        history = [f"N{i}" for i in history_rng.choice(N_NEWS, size=user % 9, replace=False)]
        time = datetime.combine(day, datetime.min.time()) + timedelta(minutes=int(k * 37))
        rows.append(
            (
                f"{split}-{day_index}-{k}",
                day_index * 100 + k,
                split,
                f"u{user}",
                time,
                day,
                history,
                candidates,
                labels,
                f"{split}/behaviors.tsv",
                day_index * 100 + k + 1,
            )
        )
    return rows


def _write_day(conn, day_index: int, seed: int = 0) -> None:
    day = FIRST_DAY + timedelta(days=day_index)
    conn.execute("delete from raw.behaviors where day = ?", [day])
    conn.executemany(
        "insert into raw.behaviors values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _day_rows(day_index, seed),
    )


def _dbt(database: Path, work: Path, *args: str) -> None:
    env = {
        **os.environ,
        "GENRE_DUCKDB_PATH": str(database),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **dbt_duckdb_env(database),
    }
    dbt = Path(sys.executable).parent / "dbt"
    done = subprocess.run(
        [
            str(dbt),
            "build",
            "--project-dir",
            str(DBT_PROJECT_DIR),
            "--profiles-dir",
            str(DBT_PROJECT_DIR),
            "--target-path",
            str(work / "target"),
            "--log-path",
            str(work / "logs"),
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


def _tables(database: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return {
            table: sorted(conn.sql(f"select * from main.{table}").fetchall(), key=repr)
            for table in FEATURE_TABLES
        }


def _changed(database: Path, model: str) -> set:
    with duckdb.connect(str(database), read_only=True) as conn:
        return {
            key for (key,) in conn.sql(f"select key from dbt_state.{model}__changed").fetchall()
        }


def _full_refresh_equals(database: Path, work: Path, *args: str) -> None:
    """A `--full-refresh` build of a copy of the same raw data gives the same tables."""
    copy = work / "full.duckdb"
    shutil.copyfile(database, copy)
    _dbt(copy, work, "--full-refresh", *args)
    incremental, full = _tables(database), _tables(copy)
    for table in FEATURE_TABLES:
        assert incremental[table] == full[table], table
    copy.unlink()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    work = tmp_path_factory.mktemp("dbt_incremental")
    database = work / "genre.duckdb"
    with duckdb.connect(str(database)) as conn:
        conn.execute(RAW_TABLES)
        conn.executemany(
            "insert into raw.news values (?, ?, '', ?, '', '', '[]', '[]', 'news.tsv', ?)",
            [
                (f"N{i}", ["sports", "news", "finance"][i % 3], f"title {i}", i + 1)
                for i in range(N_NEWS)
            ],
        )
        for day_index in range(3):
            _write_day(conn, day_index)
    _dbt(database, work)
    return database, work


def test_a_first_build_builds_every_day_and_user(warehouse):
    database, _ = warehouse
    days = {FIRST_DAY + timedelta(days=i) for i in range(3)}
    assert _changed(database, "impressions") == days
    with duckdb.connect(str(database), read_only=True) as conn:
        (n_users,) = conn.sql("select count(distinct user_id) from raw.behaviors").fetchone()
        (n_rows,) = conn.sql("select count(*) from main.impressions").fetchone()
        (n_candidates,) = conn.sql("select sum(len(candidate_ids)) from raw.behaviors").fetchone()
    assert len(_changed(database, "user_histories")) == n_users
    assert n_rows == n_candidates


def test_a_build_with_nothing_new_rebuilds_nothing(warehouse):
    database, work = warehouse
    # a mark in a row of the first day that only a rebuild of that day would undo
    with duckdb.connect(str(database)) as conn:
        conn.execute(
            "update main.impressions set mind_impression_id = -1 "
            "where impression_id = 'train-0-0' and position = 1"
        )
        conn.execute(
            "update main.user_histories set n_impressions = -1 "
            "where user_id = (select user_id from raw.behaviors where impression_id = 'train-2-0')"
        )
    _dbt(database, work)
    assert _changed(database, "impressions") == set()
    assert _changed(database, "user_histories") == set()
    with duckdb.connect(str(database)) as conn:
        (marked,) = conn.sql(
            "select mind_impression_id from main.impressions "
            "where impression_id = 'train-0-0' and position = 1"
        ).fetchone()
        (n_impressions,) = conn.sql(
            "select n_impressions from main.user_histories where user_id = "
            "(select user_id from raw.behaviors where impression_id = 'train-2-0')"
        ).fetchone()
        assert (marked, n_impressions) == (-1, -1)
        conn.execute(
            "update main.impressions set mind_impression_id = 0 "
            "where impression_id = 'train-0-0' and position = 1"
        )
    # that user's row is put right by the next build that touches them (the test below)


def test_a_new_day_a_reingested_day_and_a_lost_day_match_a_full_build(warehouse):
    database, work = warehouse
    with duckdb.connect(str(database)) as conn:

        def users(where: str) -> set[str]:
            return {
                u
                for (u,) in conn.sql(
                    f"select distinct user_id from raw.behaviors {where}"
                ).fetchall()
            }

        lost_or_replaced = users(f"where day in ('{FIRST_DAY}', '{FIRST_DAY + timedelta(days=1)}')")
        _write_day(conn, 1, seed=7)  # day 1 re-ingested with other impressions and clicks
        _write_day(conn, 3)  # a new day
        conn.execute("delete from raw.behaviors where day = ?", [FIRST_DAY])  # day 0 is gone
        # a user of day 2 only, whose row the test above marked, gets an impression of day 3
        (marked_user,) = conn.sql(
            "select user_id from raw.behaviors where impression_id = 'train-2-0'"
        ).fetchone()
        conn.execute(
            "update raw.behaviors set user_id = ? where impression_id = 'dev-3-0'", [marked_user]
        )
        new = users(
            f"where day in ('{FIRST_DAY + timedelta(days=1)}', '{FIRST_DAY + timedelta(days=3)}')"
        )
        kept = users(f"where day = '{FIRST_DAY + timedelta(days=2)}'") - lost_or_replaced - new
    _dbt(database, work)
    assert _changed(database, "impressions") == {FIRST_DAY + timedelta(days=i) for i in (0, 1, 3)}
    # exactly the users with an impression in a changed day, before or after the change
    assert _changed(database, "user_histories") == lost_or_replaced | new
    assert kept  # users of day 2 only: their rows were kept as they were
    _full_refresh_equals(database, work)


def test_a_changed_history_cap_rebuilds_every_user(warehouse):
    database, work = warehouse
    _dbt(database, work, "--vars", '{"history_cap": 3}')
    with duckdb.connect(str(database), read_only=True) as conn:
        (users,) = conn.sql("select count(*) from main.user_histories").fetchone()
        (longest,) = conn.sql("select max(history_length) from main.user_histories").fetchone()
    assert _changed(database, "impressions") == set()
    assert len(_changed(database, "user_histories")) == users
    assert longest == 3
    _full_refresh_equals(database, work, "--vars", '{"history_cap": 3}')


def test_a_build_that_fails_after_deleting_keeps_the_table_and_its_signatures(warehouse):
    """The pre-hook deletes the keys to rebuild before the model runs: a model that then fails
    rolls the delete back with it, so no key is lost and the next build sees the same keys."""
    database, work = warehouse
    before = _tables(database)
    with pytest.raises(AssertionError, match="Could not convert string 'x'"):
        # a history cap the hash takes and the model's comparison does not: every user is
        # deleted by the pre-hook, then user_histories fails
        _dbt(database, work, "--vars", """{"history_cap": "'x'"}""")
    assert _tables(database) == before
    _dbt(database, work, "--vars", '{"history_cap": 3}')
    assert _changed(database, "user_histories") == set()
    assert _tables(database) == before


def test_a_table_built_before_signatures_were_kept_is_rebuilt_whole(warehouse):
    """A warehouse from before the models were incremental (no `dbt_state` tables), with rows
    of a day no source holds any more: the first incremental build replaces the whole table."""
    database, work = warehouse
    with duckdb.connect(str(database)) as conn:
        conn.execute("drop schema dbt_state cascade")
        conn.execute(
            "insert into main.impressions select * replace (date '2023-01-01' as day) "
            "from main.impressions limit 3"
        )
    _dbt(database, work, "--vars", '{"history_cap": 3}')
    with duckdb.connect(str(database), read_only=True) as conn:
        (stale,) = conn.sql(
            "select count(*) from main.impressions where day = date '2023-01-01'"
        ).fetchone()
    assert stale == 0
    _full_refresh_equals(database, work, "--vars", '{"history_cap": 3}')
