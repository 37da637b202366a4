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


def test_unset_means_a_quarter_of_the_memory_and_duckdbs_threads(tmp_path, clean_env):
    """DuckDB's own default limit is 80% of RAM, too much for a query that shares its process
    with the step's Python data: unset, the project's connections (and dbt's) get 25%."""
    import duckdb
    import psutil

    settings = duckdb_settings(tmp_path / "x.duckdb")
    assert set(settings) == {"memory_limit", "temp_directory"}
    quarter = psutil.virtual_memory().total / 4
    assert settings["memory_limit"].endswith("MB")
    assert abs(int(settings["memory_limit"][:-2]) * 1e6 - quarter) < 1e6
    with duckdb.connect() as plain:
        default_memory, default_threads, _ = _settings(plain)
    with connect(tmp_path / "x.duckdb", "test") as conn:
        memory, threads, _ = _settings(conn)
    assert threads == default_threads and memory != default_memory
    env = dbt_duckdb_env(tmp_path / "x.duckdb")
    assert env["GENRE_DBT_DUCKDB_MEMORY_LIMIT"] == settings["memory_limit"]


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


def _dbt_options() -> dict:
    """The DuckDB options of the dbt profile's output: `settings` and `config_options`."""
    import yaml

    from genre_dagster.settings import DBT_PROJECT_DIR

    output = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["genre"]["outputs"]
    local = output["local"]
    return {**local["settings"], **local["config_options"]}


def test_the_dbt_profile_reads_those_variables():
    from genre_dagster.settings import DUCKDB_SETTING_VARS

    options = _dbt_options()
    assert set(options) == set(DUCKDB_SETTING_VARS)
    for key, template in options.items():
        assert f"env_var('GENRE_DBT_DUCKDB_{key.upper()}'" in template


def test_dbt_opens_cursors_after_a_query_spilled(tmp_path, clean_env):
    """dbt-duckdb sets the profile's `settings` on every cursor it opens; once a query has
    spilled, DuckDB refuses to set the spill directory again, which failed dbt_features at
    MIND-large size. The profile rendered with the step's variables, through dbt-duckdb's own
    environment: a spilling query, then more cursors."""
    import re

    from dbt.adapters.duckdb.credentials import DuckDBCredentials
    from dbt.adapters.duckdb.environments.local import LocalEnvironment

    clean_env.setenv("GENRE_DUCKDB_MEMORY_LIMIT", "64MB")
    clean_env.setenv("GENRE_DUCKDB_THREADS", "1")
    database = tmp_path / "data" / "genre.duckdb"
    env = dbt_duckdb_env(database)
    assert (tmp_path / "data" / "duckdb_tmp").is_dir()  # dbt_duckdb_env made the parents

    def render(template: str) -> str:  # dbt's env_var('NAME', 'default')
        name, default = re.search(r"env_var\('(\w+)', '([^']*)'\)", template).groups()
        return env.get(name, default)

    import yaml

    from genre_dagster.settings import DBT_PROJECT_DIR

    local = yaml.safe_load((DBT_PROJECT_DIR / "profiles.yml").read_text())["genre"]["outputs"][
        "local"
    ]
    credentials = DuckDBCredentials(
        path=str(database),
        settings={k: render(v) for k, v in local["settings"].items()},
        config_options={k: render(v) for k, v in local.get("config_options", {}).items()},
    )
    environment = LocalEnvironment(credentials)
    first = environment.handle()
    cursor = first.cursor()
    cursor.execute(
        "create table t as select (range * 7919) % 10000019 as k, "
        "'payload-' || range::varchar || '-xxxxxxxxxxxxxxxx' as s from range(3000000)"
    )
    # 3M distinct groups: a hash table far over the limit (an ORDER BY under count(*) would be
    # optimized away and spill nothing)
    cursor.execute("select count(*) from (select s, count(*) from t group by s)")
    assert cursor.fetchone() == (3_000_000,)
    spill = database.parent / "duckdb_tmp" / "genre.duckdb.tmp"
    assert spill.is_dir()  # the query spilled there
    second = environment.handle()  # the next model's cursor
    second.cursor().execute("select current_setting('temp_directory')")
    assert second.cursor().fetchone() == (str(spill),)
    second.close()
    first.close()


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
        # 3M distinct groups: a hash table far over the limit (an ORDER BY under count(*)
        # is optimized away and spills nothing)
        (n,) = conn.execute(
            "select count(*) from (select s, count(*) from t group by s)"
        ).fetchone()
        assert n == 3_000_000
        assert (tmp_path / "data" / "duckdb_tmp" / "genre.duckdb.tmp").is_dir()  # it spilled
