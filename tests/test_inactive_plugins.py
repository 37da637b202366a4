"""GENRE variants whose LLM output is empty train the base scorer once, and say so."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import dagster as dg
import duckdb
import numpy as np
import pytest

from genre_dagster.scoring.data import ImpressionData, ItemFeatures
from genre_dagster.scoring.inputs import ScorerInputs
from genre_dagster.scoring.neural import UserProfiles
from genre_dagster.scoring.plugins import inactive_plugins, training_fingerprint, without

VARIANTS = ("nrms", "nrms_profile", "nrms_generated")


def _inputs(synthetic_in_history: bool = False, profiled: tuple[str, ...] = ()) -> ScorerInputs:
    items = ItemFeatures(
        item_ids=np.array(["N1", "N2", "N3", "S1"], dtype=object),
        embeddings={"title": np.eye(4, 3, dtype=np.float32)},
        categories=np.array([0, 1, 0, 1]),
        category_names=["news", "sports"],
        is_synthetic=np.array([False, False, False, True]),
    )
    last = 3 if synthetic_in_history else 1
    train = ImpressionData(
        impression_ids=np.array(["i1", "i2"], dtype=object),
        user_ids=np.array(["u_a", "u_b"], dtype=object),
        history=np.array([[-1, 0], [2, last]]),
        cand_offsets=np.array([0, 2, 4]),
        cand_items=np.array([1, 2, 0, 1]),
        labels=np.array([1, 0, 0, 1], dtype=np.int8),
    )
    users = np.array(["u_c", *profiled], dtype=object)
    vectors = np.full((len(users), 3), np.nan, dtype=np.float32)
    vectors[1:] = 1.0
    return ScorerInputs(
        items,
        None,
        {"train": train, "validation": train},
        {},
        None,
        {},
        UserProfiles(users, vectors),
    )


def test_a_plugin_without_input_among_training_users_is_inactive():
    config = {"fields": ["title"], "profile": True, "generated_history": True}
    inactive = inactive_plugins(config, _inputs(), ("train",))
    assert set(inactive) == {"profile", "generated_history"}
    assert "2 users" in inactive["profile"]
    assert inactive_plugins(config, _inputs(True, ("u_b",)), ("train",)) == {}
    assert inactive_plugins({"fields": ["title"]}, _inputs(), ("train",)) == {}
    assert without(config, inactive) == {"fields": ["title"]}


def test_the_training_fingerprint_changes_with_any_input_it_learns_from():
    base = _inputs()
    same = training_fingerprint(_inputs(), ("train", "validation"), profiles=False)
    assert training_fingerprint(base, ("train", "validation"), profiles=False) == same
    changed = _inputs()
    changed.splits["validation"] = replace(
        changed.splits["train"], labels=np.array([0, 1, 0, 1], dtype=np.int8)
    )
    assert training_fingerprint(changed, ("train", "validation"), profiles=False) != same
    moved = _inputs()
    moved.items.embeddings["title"][0, 0] = 0.5
    assert training_fingerprint(moved, ("train", "validation"), profiles=False) != same
    # profile vectors count only for a scorer that reads them
    profiled = _inputs(profiled=("u_a",))
    assert training_fingerprint(profiled, ("train", "validation"), profiles=False) == same
    assert training_fingerprint(profiled, ("train", "validation"), profiles=True) != same


def _query(database, sql: str):
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.sql(sql).fetchall()


def _materialize(world, database, models, names, run_config=None):
    from dagster_duckdb import DuckDBResource

    from genre_dagster.assets.scoring import scorer_assets
    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    chosen = [a for a in scorer_assets if a.key.path[-1] in names]
    deps = {d for a in chosen for keys in a.asset_deps.values() for d in keys}
    resources = dict(world["defs"].resources)
    resources["duckdb"] = DuckDBResource(database=str(database))
    resources["io_manager"] = DuckDBPolarsTablesIOManager(database=str(database))
    resources["model_store"] = ModelStore(root=str(models))
    result = dg.materialize(
        [*(dg.AssetSpec(k) for k in deps), *chosen],
        selection=[a.key for a in chosen],
        resources=resources,
        run_config=run_config,
    )
    assert result.success
    return {
        e.asset_key.path[-1]: e.materialization.metadata
        for e in result.get_asset_materialization_events()
    }


@pytest.fixture(scope="module")
def empty_llm_world(news_world, tmp_path_factory):
    """A copy of the world's database where the LLM gave no profile and no synthetic item."""
    folder = tmp_path_factory.mktemp("no_llm_output")
    database = folder / "genre.duckdb"  # dbt views name the catalog after the file
    shutil.copy(news_world["settings"].duckdb_path, database)
    with duckdb.connect(str(database)) as conn:
        assert conn.sql("select count(*) from embeddings.user_profile_embeddings").fetchone()[0]
        conn.execute("delete from embeddings.user_profile_embeddings")
        conn.execute("delete from enrichment.synthetic_items")
    models = folder / "models"
    metadata = _materialize(news_world, database, models, VARIANTS)
    return {"database": database, "models": models, "metadata": metadata, "world": news_world}


def test_variants_without_llm_output_publish_the_base_model_trained_once(empty_llm_world):
    database, models = empty_llm_world["database"], empty_llm_world["models"]
    rows = {
        name: (scorer_id, profile, json.loads(inactive), val_auc)
        for name, scorer_id, profile, inactive, val_auc in _query(
            database,
            "select name, scorer_id, profile, inactive_plugins, val_auc from scoring.nrms "
            "union all select name, scorer_id, profile, inactive_plugins, val_auc "
            "from scoring.nrms_profile union all select name, scorer_id, profile, "
            "inactive_plugins, val_auc from scoring.nrms_generated",
        )
    }
    assert len({scorer_id for scorer_id, *_ in rows.values()}) == 1
    assert len({auc for *_, auc in rows.values()}) == 1
    assert rows["nrms"][2] == {}
    assert set(rows["nrms_profile"][2]) == {"profile"}
    assert set(rows["nrms_generated"][2]) == {"generated_history"}
    assert not any(profile for _, profile, *_ in rows.values())  # no model reads profiles
    # one training: the other two assets loaded its artifact
    (artifact,) = [p for p in models.iterdir() if not p.name.startswith(".")]
    record = json.loads((artifact / "training.json").read_text())
    assert record["trained_by"] in VARIANTS
    metadata = empty_llm_world["metadata"]
    shared = [
        n for n in VARIANTS if "same configuration and data" in metadata[n]["retrain_reason"].value
    ]
    assert len(shared) == 2 and record["trained_by"] not in shared
    assert "GENRE profile" in metadata["nrms_profile"]["inactive_plugins"].value["profile"]


def test_a_weekly_night_validates_the_shared_model_once(empty_llm_world):
    database, models = empty_llm_world["database"], empty_llm_world["models"]
    weekly = {"ops": {f"scoring__{n}": {"config": {"retrain_every_days": 7}} for n in VARIANTS}}
    metadata = _materialize(empty_llm_world["world"], database, models, VARIANTS, weekly)
    assert {metadata[n]["retrain_reason"].value for n in VARIANTS} == {"within cadence"}
    (artifact,) = [p for p in models.iterdir() if not p.name.startswith(".")]
    saved = json.loads((artifact / "validation.json").read_text())
    aucs = {metadata[n]["validation_auc"].value for n in VARIANTS}
    assert aucs == {saved["metrics"]["auc"]}


def test_a_plugin_whose_input_appears_retrains_within_the_cadence(empty_llm_world):
    database, world = empty_llm_world["database"], empty_llm_world["world"]
    original = world["settings"].duckdb_path
    with duckdb.connect(str(database)) as conn:
        conn.execute(f"attach '{original}' as original (read_only)")
        conn.execute(
            "insert into embeddings.user_profile_embeddings "
            "select * from original.embeddings.user_profile_embeddings"
        )
    weekly = {"ops": {"scoring__nrms_profile": {"config": {"retrain_every_days": 7}}}}
    metadata = _materialize(
        world, database, empty_llm_world["models"], ("nrms_profile",), run_config=weekly
    )
    assert "appeared" in metadata["nrms_profile"]["retrain_reason"].value
    ((scorer_id, profile, inactive),) = _query(
        database, "select scorer_id, profile, inactive_plugins from scoring.nrms_profile"
    )
    assert profile and json.loads(inactive) == {}
    (base_id,) = _query(database, "select scorer_id from scoring.nrms")[0]
    assert scorer_id != base_id
