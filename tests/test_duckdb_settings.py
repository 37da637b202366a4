"""The DuckDB settings every connection of the project gets (GENRE_DUCKDB_MEMORY_LIMIT,
GENRE_DUCKDB_THREADS, GENRE_DUCKDB_TEMP_DIR): applied, merged with a caller's config, and a bad
value refused with its variable named."""

from __future__ import annotations

import pytest

from genre_dagster.duckdb_lock import connect, dbt_duckdb_env
from genre_dagster.settings import duckdb_settings


def _settings(conn) -> tuple[str, int, str]:
    return conn.execute(
        "select current_setting('memory_limit'), current_setting('threads'), "
        "current_setting('temp_directory')"
    ).fetchone()


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("GENRE_DUCKDB_MEMORY_LIMIT", "GENRE_DUCKDB_THREADS", "GENRE_DUCKDB_TEMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_connection_gets_the_configured_limit_threads_and_temp_dir(tmp_path, clean_env):
    clean_env.setenv("GENRE_DUCKDB_MEMORY_LIMIT", "300MB")
    clean_env.setenv("GENRE_DUCKDB_THREADS", "1")
    database = tmp_path / "data" / "genre.duckdb"
    with connect(database, "test") as conn:
        memory, threads, temp_dir = _settings(conn)
    assert memory == "286.1 MiB"  # 300 MB as DuckDB shows it
    assert int(threads) == 1
    # under the data dir, one subdirectory per database file
    assert temp_dir == str(tmp_path / "data" / "duckdb_tmp" / "genre.duckdb.tmp")

    clean_env.setenv("GENRE_DUCKDB_TEMP_DIR", str(tmp_path / "spill"))
    with connect(database, "test") as conn:
        assert _settings(conn)[2] == str(tmp_path / "spill" / "genre.duckdb.tmp")


def test_unset_means_duckdb_defaults(tmp_path, clean_env):
    import duckdb

    assert set(duckdb_settings(tmp_path / "x.duckdb")) == {"temp_directory"}
    with duckdb.connect() as plain:
        default_memory, default_threads, _ = _settings(plain)
    with connect(tmp_path / "x.duckdb", "test") as conn:
        assert _settings(conn)[:2] == (default_memory, default_threads)


def test_a_callers_config_is_merged_not_replaced(tmp_path, clean_env):
    clean_env.setenv("GENRE_DUCKDB_MEMORY_LIMIT", "300MB")
    # the IO manager and the duckdb resource pass their connection_config
    with connect(tmp_path / "x.duckdb", "test", {"threads": 1}) as conn:
        memory, threads, _ = _settings(conn)
    assert (memory, int(threads)) == ("286.1 MiB", 1)
    # the caller's own value of a setting wins
    with connect(tmp_path / "x.duckdb", "test", {"memory_limit": "500MB"}) as conn:
        assert _settings(conn)[0] == "476.8 MiB"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GENRE_DUCKDB_MEMORY_LIMIT", "lots"),
        ("GENRE_DUCKDB_MEMORY_LIMIT", "2 parsecs"),
        ("GENRE_DUCKDB_THREADS", "0"),
        ("GENRE_DUCKDB_THREADS", "two"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(tmp_path, clean_env, variable, value):
    clean_env.setenv(variable, value)
    with pytest.raises(ValueError, match=variable), connect(tmp_path / "x.duckdb", "test"):
        pass
    assert not (tmp_path / "x.duckdb").exists()  # refused before the file is touched


def test_dbt_gets_the_same_settings(tmp_path, clean_env):
    clean_env.setenv("GENRE_DUCKDB_MEMORY_LIMIT", "300MB")
    env = dbt_duckdb_env(tmp_path / "genre.duckdb")
    assert env["GENRE_DBT_DUCKDB_MEMORY_LIMIT"] == "300MB"
    assert int(env["GENRE_DBT_DUCKDB_THREADS"]) >= 1  # DuckDB's default, filled in
    assert env["GENRE_DBT_DUCKDB_TEMP_DIRECTORY"] == str(tmp_path / "duckdb_tmp/genre.duckdb.tmp")


def test_the_dbt_profile_reads_those_variables():
    import yaml

    from genre_dagster.settings import DBT_PROJECT_DIR, DUCKDB_SETTING_VARS

    profile = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())
    settings = profile["genre"]["outputs"]["local"]["settings"]
    assert set(settings) == set(DUCKDB_SETTING_VARS)
    for key, template in settings.items():
        assert f"env_var('GENRE_DBT_DUCKDB_{key.upper()}'" in template


def test_a_query_over_the_limit_spills_into_the_temp_dir(tmp_path, clean_env):
    """The spill folder's parents exist before the first spill (DuckDB only creates the folder
    itself): a sort far larger than the limit completes instead of failing."""
    clean_env.setenv("GENRE_DUCKDB_MEMORY_LIMIT", "64MB")
    clean_env.setenv("GENRE_DUCKDB_THREADS", "1")
    database = tmp_path / "data" / "genre.duckdb"
    with connect(database, "test") as conn:
        conn.execute(
            "create table t as select (range * 7919) % 10000019 as k, "
            "'payload-' || range::varchar || '-xxxxxxxxxxxxxxxx' as s from range(3000000)"
        )
        (n,) = conn.execute(
            "select count(*) from (select k, s from t order by k offset 1)"
        ).fetchone()
    assert n == 2_999_999
    assert (tmp_path / "data" / "duckdb_tmp").is_dir()
