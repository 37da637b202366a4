"""A non-news catalogue in the generic format runs through the data layer by configuration only."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
from llm_fakes import fake_llm_server

from genre_dagster.pipeline import refresh
from genre_dagster.settings import load_settings

GENRES = {
    "fantasy": ["dragon", "kingdom", "sword", "wizard", "quest"],
    "mystery": ["detective", "murder", "clue", "alibi", "suspect"],
    "romance": ["love", "wedding", "heart", "letters", "summer"],
    "science": ["quantum", "genome", "climate", "galaxy", "evolution"],
}


def _books_dataset(folder, seed: int = 3) -> tuple[int, int]:
    """Books with descriptions, readers with a favourite genre, four days of sessions."""
    rng = random.Random(seed)
    books = []
    for i in range(160):
        genre = list(GENRES)[i % len(GENRES)]
        words = rng.sample(GENRES[genre], 3)
        books.append(
            {
                "book_id": f"B{i:04d}",
                "name": f"The {words[0]} of the {words[1]} ({i})",
                "description": f"A {genre} novel about a {words[2]} and a {words[0]}.",
                "genre": genre,
            }
        )
    pl.DataFrame(books).write_csv(folder / "books.csv")
    rows = []
    start = datetime(2025, 1, 6, 8)
    for reader in range(60):
        favourite = list(GENRES)[reader % len(GENRES)]
        for day in range(4):
            shown = rng.sample(books, 8)
            when = start + timedelta(days=day, minutes=rng.randrange(600))
            for book in shown:
                liked = book["genre"] == favourite and rng.random() < 0.6
                rows.append(
                    {
                        "reader": f"reader-{reader}",
                        "book_id": book["book_id"],
                        "ts": when.isoformat(),
                        "label": int(liked),
                    }
                )
            # a session with nothing liked still has a positive: the reader opened one book
            if not any(r["label"] for r in rows[-8:]):
                rows[-1]["label"] = 1
    # one bad row (unknown book) to prove quarantine works on generic data too
    rows.append({"reader": "reader-1", "book_id": "B9999", "ts": start.isoformat(), "label": 1})
    pl.DataFrame(rows).write_parquet(folder / "reads.parquet")
    return len(books), len(rows)


def _plain_artifact(models: Path, kind: str) -> Path:
    """The artifact of `kind` that uses no GENRE profile or generated history (transferable)."""
    for folder in sorted(models.glob(f"{kind}-*")):
        config = json.loads((folder / "scorer.json").read_text())["config"]
        if not config.get("profile") and not config.get("generated_history"):
            if config.get("fields", ["title"]) == ["title"]:
                return folder
    raise AssertionError(f"no plain {kind} artifact in {models}")


@pytest.fixture(scope="module")
def books_world(tmp_path_factory, news_world):
    root = tmp_path_factory.mktemp("books")
    source = root / "books"
    source.mkdir()
    n_books, n_rows = _books_dataset(source)
    server = fake_llm_server().__enter__()
    settings = load_settings(
        {
            "GENRE_LLM_BACKEND": "openai",
            "GENRE_LLM_BASE_URL": server.base_url,
            "GENRE_LLM_MODEL": "fake-genre",
            "GENRE_DATA_DIR": str(root / "data"),
            "GENRE_SOURCE": "generic",
            "GENRE_SOURCE_PATH": str(source),
            "GENRE_ITEMS_FILE": "books.csv",
            "GENRE_INTERACTIONS_FILE": "reads.parquet",
            "GENRE_COLUMN_MAP": (
                '{"item_id": "book_id", "title": "name", "text": "description", '
                '"category": "genre", "user_id": "reader", "timestamp": "ts"}'
            ),
        }
    )
    from genre_dagster.definitions import build_definitions

    home = root / "dagster_home"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        # transfer: news scorers that share the encoder, evaluated on books beside in-domain ones
        news_models = news_world["settings"].models_dir
        transfer = [str(_plain_artifact(news_models, k)) for k in ("nrms", "content_similarity")]
        report = refresh(
            build_definitions(settings),
            instance,
            run_config={
                "ops": {"evaluation__leaderboard": {"config": {"transfer_scorers": transfer}}}
            },
        )
        yield {"settings": settings, "report": report, "n_books": n_books, "n_rows": n_rows}
    server.__exit__(None, None, None)


def test_books_run_through_the_same_graph(books_world):
    report = books_world["report"]
    assert report.success, report.runs
    assert [r["day"] for r in report.runs] == [
        "2025-01-06",
        "2025-01-07",
        "2025-01-08",
        "2025-01-09",
    ]
    with duckdb.connect(str(books_world["settings"].duckdb_path), read_only=True) as conn:
        (items,) = conn.sql("select count(*) from main.stg_news").fetchone()
        categories = {
            c for (c,) in conn.sql("select distinct category from main.stg_news").fetchall()
        }
        (impressions, candidates) = conn.sql(
            "select count(distinct impression_id), count(*) from main.impressions"
        ).fetchone()
        splits = dict(
            conn.sql("select split, count(*) from main.impression_splits group by split").fetchall()
        )
        quarantined = conn.sql("select reason from main.quarantine").fetchall()
    assert items == books_world["n_books"]
    assert categories == set(GENRES)
    assert impressions == 60 * 4  # one session per reader and day
    assert candidates == books_world["n_rows"] - 1
    assert set(splits) == {"train", "validation", "test"}
    assert quarantined == [("unknown_news_in_impressions",)]
    failed = report.runs[-1]["checks_failed"]
    assert [c for c in failed if not c.startswith("monitoring/")] == [], failed


def test_scorers_trained_on_news_are_evaluated_on_books(books_world):
    with duckdb.connect(str(books_world["settings"].duckdb_path), read_only=True) as conn:
        rows = conn.sql(
            "select scorer, auc from evaluation.leaderboard where segment = 'all'"
        ).fetchall()
    names = {s for s, _ in rows}
    transferred = [s for s in names if s.startswith("transfer:")]
    assert len(transferred) == 2 and {"nrms", "content_similarity"} <= names
    auc = dict(rows)
    # content similarity needs no training on the target: it must still rank books sensibly
    (content,) = [a for s, a in rows if s.startswith("transfer:content_similarity")]
    assert content > 0.55
    assert all(0.0 <= auc[s] <= 1.0 for s in transferred)
