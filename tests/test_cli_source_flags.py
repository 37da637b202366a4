"""`genre-dagster run --source --path --column-map --domain`: flags win over the environment,
reach the definitions, and a wrong flag fails before any work with the fix."""

from __future__ import annotations

import argparse
import json

import pytest

from genre_dagster import cli

VARIABLES = ("GENRE_SOURCE", "GENRE_SOURCE_PATH", "GENRE_COLUMN_MAP", "GENRE_DOMAIN")


@pytest.fixture
def environment(monkeypatch):
    """The source variables as a user's shell might hold them; restored after the test."""
    monkeypatch.setenv("GENRE_SOURCE", "demo")
    for name in VARIABLES[1:]:
        monkeypatch.setenv(name, "")
    return monkeypatch


def _args(**flags) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli._source_arguments(parser)
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in flags.items()]
    return parser.parse_args(argv)


def test_flags_win_over_the_environment_and_reach_the_definitions(environment, tmp_path):
    from genre_dagster.definitions import build_definitions
    from genre_dagster.settings import load_settings

    (tmp_path / "books").mkdir()
    mapping = tmp_path / "columns.json"
    mapping.write_text(json.dumps({"item_id": "book_id", "user_id": "reader"}))
    cli._apply_source_arguments(
        _args(source="generic", path=tmp_path / "books", column_map=mapping, domain="books")
    )
    settings = load_settings()
    assert settings.source_kind == "generic" and settings.source_path == tmp_path / "books"
    assert settings.column_map == {"item_id": "book_id", "user_id": "reader"}
    source = build_definitions(settings).resources["source"]
    assert source.kind == "generic" and source.path == str(tmp_path / "books")
    assert source.domain == "books"


def test_an_inline_column_map_is_accepted(environment, tmp_path):
    from genre_dagster.settings import load_settings

    cli._apply_source_arguments(
        _args(source="generic", path=tmp_path, column_map='{"item_id": "sku"}')
    )
    assert load_settings().column_map == {"item_id": "sku"}


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"source": "mind", "path": "/no/such/folder"}, "does not exist (--path"),
        ({"source": "mind"}, "needs GENRE_SOURCE_PATH"),
        ({"source": "generic", "path": "/tmp", "column_map": "[1]"}, "neither a JSON object"),
        ({"source": "generic", "path": "/tmp", "column_map": "{oops"}, "not valid JSON"),
    ],
)
def test_a_wrong_source_fails_at_once_naming_the_fix(environment, flags, message):
    with pytest.raises(SystemExit) as stop:
        cli._apply_source_arguments(_args(**flags))
    assert message in str(stop.value)


def test_the_run_command_stops_before_any_work_on_a_missing_path(environment, tmp_path):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--source", "mind", "--path", str(tmp_path / "missing")])
    assert "does not exist" in str(stop.value)
