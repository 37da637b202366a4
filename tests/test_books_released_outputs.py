"""The README's promise for a book catalogue with GENRE's released outputs: three
`genre-dagster llm import` commands (summaries, free-form profiles with a user-id vocabulary,
generated books) load them, and the next materialization trains the summary, profile and
generated-history variants with their plug-ins on."""

from __future__ import annotations

import json

import duckdb
import polars as pl
import pytest
from llm_worlds import SMALL_NETWORKS, build_features, materialize
from test_generic_source import _books_dataset

COLUMN_MAP = (
    '{"item_id": "book_id", "title": "name", "text": "description", "category": "genre", '
    '"user_id": "reader", "timestamp": "ts"}'
)
VARIANTS = ("nrms_summary", "nrms_profile", "nrms_generated", "naml_genre_all")


def _environment(root, source) -> dict[str, str]:
    return {
        "GENRE_DATA_DIR": str(root / "data"),
        "GENRE_SOURCE": "generic",
        "GENRE_SOURCE_PATH": str(source),
        "GENRE_ITEMS_FILE": "books.csv",
        "GENRE_INTERACTIONS_FILE": "reads.parquet",
        "GENRE_COLUMN_MAP": COLUMN_MAP,
        "GENRE_DOMAIN": "books",
        "GENRE_LLM_BACKEND": "openai",
        "GENRE_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # never called: budgets are 0
        "GENRE_LLM_MODEL": "no-llm",
    }


def _released_logs(folder, books: pl.DataFrame, readers: list[str], genres: list[str]) -> None:
    """GENRE's released formats, written here: a book summarizer log, a free-form profiler log
    and a generator log, the last two keyed by line numbers of a user-id vocabulary."""
    (folder / "users.txt").write_text("\n".join(readers) + "\n", encoding="utf-8")
    summaries = [
        f"{b}\t[description] A {g} story about {d.split(' about ')[-1].rstrip('.')}.\n"
        for b, d, g in books.select("book_id", "description", "original_genre").iter_rows()
    ]
    (folder / "book_summarizer.log").write_text("".join(summaries), encoding="utf-8")
    profiles = [
        json.dumps({"uid": i, "interest": [f"{genre} Stories", "Page Turners"]}) + "\n"
        for i, genre in enumerate(genres)
    ]
    (folder / "user_profiler.log").write_text("".join(profiles), encoding="utf-8")
    book = json.dumps({"title": "The Next Chapter", "description": "A novel to read next."})
    generated = [json.dumps({"uid": i, "book": book}) + "\n" for i in range(len(readers))]
    (folder / "generator_v1.log").write_text("".join(generated), encoding="utf-8")


@pytest.mark.slow
def test_three_imports_of_released_book_outputs_turn_every_plugin_on(tmp_path, monkeypatch):
    from llm_worlds import enrichment_assets

    from genre_dagster import cli
    from genre_dagster.assets import embeddings
    from genre_dagster.assets.scoring import scorer_assets
    from genre_dagster.settings import load_settings

    source = tmp_path / "books"
    source.mkdir()
    _books_dataset(source)
    books = pl.read_csv(source / "books.csv")
    # A catalogue in one category, as Goodreads books are in GENRE's released outputs.
    books = books.with_columns(
        pl.col("genre").alias("original_genre"), pl.lit("book").alias("genre")
    )
    books.drop("original_genre").write_csv(source / "books.csv")
    environment = _environment(tmp_path, source)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    world = build_features(tmp_path, load_settings(environment))
    database = world["settings"].duckdb_path
    favourites = ["fantasy", "mystery", "romance", "science"]  # reader r likes favourites[r % 4]
    readers = [f"reader-{r}" for r in range(60)]
    _released_logs(tmp_path, books, readers, [favourites[r % 4] for r in range(60)])

    commands = [
        ["book_summarizer.log", "--role", "summarizer", "--max-text-chars", "1000"],
        ["user_profiler.log", "--role", "profiler", "--user-vocab", "users.txt", "--topics",
         "open"],
        ["generator_v1.log", "--role", "generator", "--user-vocab", "users.txt",
         "--max-text-chars", "1000"],
    ]  # fmt: skip
    monkeypatch.chdir(tmp_path)
    for args in commands:
        assert cli.main(["llm", "import", *args, "--model", "gpt-3.5-turbo"]) == 0
    with duckdb.connect(str(database), read_only=True) as conn:
        imported = dict(
            conn.sql(
                "select role, count(*) from enrichment.llm_responses "
                "where prompt_version like 'imported:%' group by role"
            ).fetchall()
        )
        (raw_ids,) = conn.sql(
            "select count(*) from enrichment.llm_responses where item_key like 'reader-%'"
        ).fetchone()
    assert imported["summarizer"] == books.height
    assert imported["profiler"] > 0 and imported["generator"] > 0
    assert raw_ids == 0  # user answers are stored under pseudonyms

    names = sorted({"nrms", "naml", *VARIANTS})
    scorers = [a for a in scorer_assets if a.key.path[-1] in names]
    assets = [embeddings.news_embeddings, embeddings.user_profile_embeddings]
    small = {"config": {"overrides_json": json.dumps(SMALL_NETWORKS)}}
    meta = materialize(
        world,
        database,
        [*enrichment_assets(), *assets, *scorers],
        {"ops": {f"scoring__{name}": small for name in names}},
    )
    assert meta["news_summaries"]["imported"] == books.height
    assert meta["user_profiles"]["dagster/row_count"] > 0
    assert meta["synthetic_items"]["dagster/row_count"] > 0
    with duckdb.connect(str(database), read_only=True) as conn:
        topics = {
            t for (t,) in conn.sql("select unnest(topics) from enrichment.user_profiles").fetchall()
        }
        rows = {
            name: conn.sql(
                f"select profile, generated_history, inactive_plugins, config_json "
                f"from scoring.{name}"
            ).fetchone()
            for name in VARIANTS
        }
    assert {"fantasy story", "page turner"} <= topics  # free-form, normalized
    for name, (profile, generated, inactive, config) in rows.items():
        assert json.loads(inactive) == {}, (name, inactive)
        fields = json.loads(config)["fields"]
        assert ("summary" in fields) == name.endswith(("_summary", "_genre_all")), name
        assert profile == name.endswith(("_profile", "_genre_all")), name
        assert generated == name.endswith(("_generated", "_genre_all")), name
