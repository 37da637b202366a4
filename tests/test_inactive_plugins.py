"""GENRE variants whose LLM output is empty train the base scorer once, and say so."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import dagster as dg
import duckdb
import numpy as np
import pytest

from genre_dagster.arrays import ImpressionData, ItemFeatures
from genre_dagster.scoring.inputs import ScorerInputs
from genre_dagster.scoring.neural import UserProfiles
from genre_dagster.scoring.plugins import inactive_plugins, training_fingerprint, without

# With no LLM profile and no synthetic item, the assets of a group publish one training: the
# profile and generated-history variants their base's, `_genre_all` its summary variant's.
SHARED = {
    "nrms": ("nrms", "nrms_profile", "nrms_generated"),
    "naml": ("naml", "naml_profile", "naml_generated"),
    "nrms_summary": ("nrms_summary", "nrms_genre_all"),
    "naml_summary": ("naml_summary", "naml_genre_all"),
}
VARIANTS = tuple(name for group in SHARED.values() for name in group)


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


def test_a_variant_with_generated_history_off_sees_the_base_scorers_histories():
    """No training history holds a synthetic item, a validation user's does: the base
    configuration trains and validates on the base scorer's data (one shared training)."""
    from datetime import date

    import polars as pl

    from genre_dagster.scoring.inputs import without_generated_history
    from genre_dagster.scoring.loading import append_history, build_impressions

    items = _inputs().items
    day = date(2024, 3, 1)
    frame = pl.DataFrame(
        {
            "impression_id": ["v1", "v2"],
            "user_id": ["u_a", "u_cold"],
            "history": [["N1"], []],
            "candidate_ids": [["N2", "N3"], ["N1", "N2"]],
            "candidate_labels": [[1, 0], [0, 1]],
            "day": [day, day],
        }
    )
    extra = {"u_cold": ["S1"]}
    base = ScorerInputs(
        items,
        None,
        {"validation": build_impressions(frame, items, 3, None, day)},
        {"validation": frame},
        day,
        None,
        None,
    )
    extended, rows, before = append_history(base.splits["validation"], items, extra)
    np.testing.assert_array_equal(
        extended.history, build_impressions(frame, items, 3, extra, day).history
    )
    augmented = replace(
        base,
        splits={"validation": extended},
        extra_history=extra,
        plain_history={"validation": (rows, before)},
    )
    assert (augmented.splits["validation"].history == 3).any()  # S1 is item 3
    plain = without_generated_history(augmented)
    assert plain.extra_history == {}
    np.testing.assert_array_equal(
        plain.splits["validation"].history, base.splits["validation"].history
    )
    fingerprint = training_fingerprint(base, ("validation",), profiles=False)
    assert training_fingerprint(augmented, ("validation",), profiles=False) != fingerprint
    assert training_fingerprint(plain, ("validation",), profiles=False) == fingerprint
    assert without_generated_history(base) is base  # nothing to remove


def _query(database, sql: str):
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.sql(sql).fetchall()


def _rows(database, names) -> dict[str, tuple]:
    """name -> (scorer_id, profile, inactive plug-ins, val_auc, config, generated_history) of
    scoring tables."""
    columns = "name, scorer_id, profile, inactive_plugins, val_auc, config_json, generated_history"
    sql = " union all ".join(f"select {columns} from scoring.{n}" for n in names)
    return {
        name: (scorer_id, profile, json.loads(inactive), auc, json.loads(config), generated)
        for name, scorer_id, profile, inactive, auc, config, generated in _query(database, sql)
    }


def _artifacts(models) -> dict:
    return {p.name: p for p in models.iterdir() if not p.name.startswith(".")}


def _materialize(world, database, models, names, run_config=None, assets=None):
    from dagster_duckdb import DuckDBResource

    from genre_dagster.assets.scoring import scorer_assets
    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    chosen = [a for a in (assets or scorer_assets) if a.key.path[-1] in names]
    keys = {k for a in chosen for k in a.keys}
    deps = {d for a in chosen for group in a.asset_deps.values() for d in group} - keys
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
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    database, metadata = empty_llm_world["database"], empty_llm_world["metadata"]
    rows = _rows(database, VARIANTS)
    artifacts = _artifacts(empty_llm_world["models"])
    assert len(artifacts) == len(SHARED)  # one training per group
    for group in SHARED.values():
        (scorer_id,) = {rows[name][0] for name in group}
        assert len({rows[name][3] for name in group}) == 1  # one validation AUC
        record = json.loads((artifacts[scorer_id] / "training.json").read_text())
        assert record["trained_by"] in group
        # the other assets of the group loaded its artifact
        shared = [
            n for n in group if "same configuration and data" in metadata[n]["retrain_reason"].value
        ]
        assert len(shared) == len(group) - 1 and record["trained_by"] not in shared
    specs = {spec.name: spec for spec in DEFAULT_SCORERS}
    for name in VARIANTS:  # every plug-in a variant has is reported off
        plugins = {
            "profile": specs[name].profile,
            "generated_history": specs[name].generated_history,
        }
        assert set(rows[name][2]) == {key for key, on in plugins.items() if on}, name
    # no published model reads profiles or generated histories, so neither do evaluation and
    # serving
    assert not any(row[1] or row[5] for row in rows.values())
    assert "GENRE profile" in metadata["nrms_profile"]["inactive_plugins"].value["profile"]
    off = metadata["naml_genre_all"]["inactive_plugins"].value
    assert set(off) == {"profile", "generated_history"}


def test_a_weekly_night_validates_the_shared_model_once(empty_llm_world):
    database, models = empty_llm_world["database"], empty_llm_world["models"]
    weekly = {"ops": {f"scoring__{n}": {"config": {"retrain_every_days": 7}} for n in VARIANTS}}
    metadata = _materialize(empty_llm_world["world"], database, models, VARIANTS, weekly)
    assert {metadata[n]["retrain_reason"].value for n in VARIANTS} == {"within cadence"}
    rows, artifacts = _rows(database, VARIANTS), _artifacts(models)
    assert len(artifacts) == len(SHARED)
    for group in SHARED.values():
        (scorer_id,) = {rows[name][0] for name in group}
        saved = json.loads((artifacts[scorer_id] / "validation.json").read_text())
        aucs = {metadata[n]["validation_auc"].value for n in group}
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
    names = ("nrms_profile", "naml_genre_all")
    weekly = {"ops": {f"scoring__{n}": {"config": {"retrain_every_days": 7}} for n in names}}
    metadata = _materialize(world, database, empty_llm_world["models"], names, run_config=weekly)
    for name in names:
        assert "appeared" in metadata[name]["retrain_reason"].value
    rows = _rows(database, ("nrms", "nrms_profile", "naml_summary", "naml_genre_all"))
    scorer_id, profile, inactive, *_ = rows["nrms_profile"]
    assert profile and inactive == {}
    assert scorer_id != rows["nrms"][0]
    # The combined variant trains with the plug-ins whose input exists, and only those: the
    # profile plug-in and the summary view, still without generated history.
    scorer_id, profile, inactive, _, config, generated = rows["naml_genre_all"]
    assert profile and not generated and set(inactive) == {"generated_history"}
    assert config["profile"] and not config["generated_history"]
    assert "summary" in config["fields"]
    assert scorer_id != rows["naml_summary"][0]


def test_every_genre_variant_trains_with_its_plugins_when_their_input_exists(news_world):
    """In the session world the fake LLM profiled and generated for training users: each
    variant trained its own model with every plug-in it has."""
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    variants = [spec for spec in DEFAULT_SCORERS if spec.base is not None]
    names = [spec.name for spec in variants] + sorted({spec.base for spec in variants})
    rows = _rows(news_world["settings"].duckdb_path, names)
    assert len({row[0] for row in rows.values()}) == len(names)  # all different models
    models = news_world["settings"].models_dir
    for spec in variants:
        scorer_id, profile, inactive, _, config, generated = rows[spec.name]
        assert inactive == {}, spec.name
        assert profile == spec.profile == config["profile"], spec.name
        assert generated == spec.generated_history == config["generated_history"], spec.name
        base_fields = rows[spec.base][4]["fields"]
        summary = spec.name.endswith(("_summary", "_genre_all"))
        assert config["fields"] == base_fields + ["summary"] * summary, spec.name
        record = json.loads((models / scorer_id / "training.json").read_text())
        assert record["trained_by"] == spec.name


def test_optional_scorers_train_through_their_assets_in_the_world(news_world, tmp_path):
    """`GENRE_EXTRA_SCORERS` adds scorer assets built like the default ones: the hybrid and
    the sequential scorer train on the session world's copy and publish their rows, and the
    ensemble weighs them beside its default members."""
    from llm_worlds import SMALL_NETWORKS

    from genre_dagster.assets.scoring import build_ensemble, build_scorer_asset
    from genre_dagster.scoring.variants import ENSEMBLE_MEMBERS, ensemble_members, scorer_specs

    names = ("hybrid_naml", "sequential")
    specs = [s for s in scorer_specs(names) if s.name in names]
    database = tmp_path / "genre.duckdb"
    shutil.copy(news_world["settings"].duckdb_path, database)
    # the default members' artifacts, which the ensemble loads
    shutil.copytree(news_world["defs"].resources["model_store"].root, tmp_path / "models")
    small = {"config": {"overrides_json": json.dumps(SMALL_NETWORKS)}}
    run_config = {"ops": {f"scoring__{name}": small for name in names}}
    members = ensemble_members(scorer_specs(names))
    assert members == (*ENSEMBLE_MEMBERS, *names)
    assets = [*(build_scorer_asset(spec) for spec in specs), build_ensemble(members)]
    metadata = _materialize(
        news_world, database, tmp_path / "models", (*names, "ensemble"), run_config, assets
    )
    assert set(metadata) == {*names, "ensemble"}
    weights = metadata["ensemble"]["weights"].value
    assert set(weights) == set(members) and all(w >= 0 for w in weights.values())
    rows = _rows(database, names)
    for name in names:
        scorer_id, _, inactive, val_auc, config, _ = rows[name]
        assert inactive == {} and 0.0 < val_auc < 1.0, name
        assert (tmp_path / "models" / scorer_id).is_dir(), name
    assert rows["hybrid_naml"][4]["id_embedding"] == "gated"
