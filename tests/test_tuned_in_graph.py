"""The tuned scorers in the Dagster graph: the layer-state cache asset, a tuned NRMS trained
through its asset over it, the clear error when the cache lacks an item, and the definitions
that add both with GENRE_EXTRA_SCORERS. A small demo world built up to its features, and a tiny
BERT (random weights, built from a config) as the language model."""

from __future__ import annotations

import json
import re
import shutil

import dagster as dg
import duckdb
import pytest
from llm_worlds import SMALL_NETWORKS, build_world, materialize
from tiny_models import save_tiny_bert

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

LAYER_OP = "embeddings__layer_states"
WORLD = dict(n_news=200, n_users=150, n_days=4, impressions_per_day=80, seed=5)


@pytest.fixture(scope="module")
def tuned_world(tmp_path_factory):
    """The world's features, a tiny 3-layer BERT knowing the world's title words, and the run
    config that points the layer-state asset and the tuned NRMS at it (split at layer 2)."""
    from genre_dagster.demo import DemoWorldConfig

    root = tmp_path_factory.mktemp("tuned_world")
    world = build_world(root, DemoWorldConfig(**WORLD))
    with duckdb.connect(str(world["settings"].duckdb_path), read_only=True) as conn:
        titles = [t for (t,) in conn.sql("select title from main.stg_news").fetchall()]
    words = sorted({w for t in titles for w in re.findall(r"[a-z]+", t.lower())})[:300]
    lm = {"lm_model": save_tiny_bert(root / "tiny_bert", words, layers=3)}
    lm |= {"lm_split_layer": 2, "lm_max_length": 16}
    world["lm"] = lm
    world["layer_config"] = {"ops": {LAYER_OP: {"config": lm}}}
    return world


def _copy(world, tmp_path):
    database = tmp_path / "genre.duckdb"  # dbt views name the catalog after the file
    shutil.copy(world["settings"].duckdb_path, database)
    return database


def _assets(names):
    from genre_dagster.assets.embeddings import build_layer_states_asset
    from genre_dagster.assets.scoring import build_scorer_asset
    from genre_dagster.scoring.variants import scorer_specs, tuned_specs

    specs = [s for s in scorer_specs(names) if s.name in names]
    return build_layer_states_asset(tuned_specs(specs)), [build_scorer_asset(s) for s in specs]


def test_the_cache_asset_computes_only_new_texts(tuned_world, tmp_path):
    layer_states, _ = _assets(["nrms_tuned", "naml_tuned"])
    database = _copy(tuned_world, tmp_path)
    config = tuned_world["layer_config"]
    first = materialize(tuned_world, database, [layer_states], config)["layer_states"]
    assert first["fields"] == ["abstract", "title"]  # what nrms_tuned and naml_tuned read
    assert first["texts"] == 2 * first["items"] > 0
    assert first["computed"] == first["unique_texts"] > 0 and first["reused"] == 0
    assert first["cache_mb"] > 0 and first["seconds"] >= 0
    assert "split=2|maxlen=16|dtype=bf16" in first["model_id"]
    again = materialize(tuned_world, database, [layer_states], config)["layer_states"]
    assert again["computed"] == 0 and again["reused"] == first["unique_texts"]
    assert again["cache_mb"] == first["cache_mb"]
    # a synthetic item is an item too: the next refresh computes its text only
    with duckdb.connect(str(database)) as conn:
        _add_synthetic_item(conn)
    third = materialize(tuned_world, database, [layer_states], config)["layer_states"]
    assert third["items"] == first["items"] + 1
    assert third["computed"] == 1  # its abstract is empty: the title is both texts


def _add_synthetic_item(conn) -> None:
    conn.execute("create schema if not exists enrichment")
    conn.execute(
        "create table if not exists enrichment.synthetic_items "
        "(news_id varchar, user_id varchar, category varchar, title varchar, abstract varchar)"
    )
    conn.execute(
        "insert into enrichment.synthetic_items values "
        "('S-new', 'U-any', 'sports', 'a synthetic headline nobody cached', '')"
    )


def test_a_tuned_scorer_trains_through_its_asset_over_the_cache(tuned_world, tmp_path):
    layer_states, (nrms_tuned,) = _assets(["nrms_tuned"])
    assert layer_states.key in {d for deps in nrms_tuned.asset_deps.values() for d in deps}
    database, models = _copy(tuned_world, tmp_path), tmp_path / "models"
    overrides = {**SMALL_NETWORKS, **tuned_world["lm"], "epochs": 1, "lm_lora_rank": 4}
    config = {
        "ops": {
            **tuned_world["layer_config"]["ops"],
            "scoring__nrms_tuned": {"config": {"overrides_json": json.dumps(overrides)}},
        }
    }
    metadata = materialize(tuned_world, database, [layer_states, nrms_tuned], config, models)
    trained = metadata["nrms_tuned"]
    assert trained["retrained"] and 0.0 < trained["validation_auc"] < 1.0
    assert trained["config"]["text_encoder"] == "tuned"
    assert trained["config"]["lm_model"] == tuned_world["lm"]["lm_model"]
    saved = torch.load(models / trained["scorer_id"] / "model.pt", weights_only=True)
    text_keys = [k for k in saved if k.startswith("text_top.")]
    assert text_keys and all("lora_" in k for k in text_keys)  # adapters only
    with duckdb.connect(str(database), read_only=True) as conn:
        (row,) = conn.sql("select config_json from scoring.nrms_tuned").fetchall()
    assert json.loads(row[0])["text_encoder"] == "tuned"


def test_a_missing_cache_or_item_state_names_the_asset(tuned_world, tmp_path):
    from genre_dagster.assets.embeddings import build_layer_states_asset
    from genre_dagster.scoring.inputs import load_scorer_inputs
    from genre_dagster.scoring.variants import NRMS_TUNED

    config = {**NRMS_TUNED.config, **tuned_world["lm"]}
    database = _copy(tuned_world, tmp_path)
    with duckdb.connect(str(database)) as conn:
        absent = "does not exist: materialize the asset embeddings/layer_states"
        with pytest.raises(RuntimeError, match=absent):
            load_scorer_inputs(conn, ("validation",), [], configs=[config])
    materialize(
        tuned_world, database, [build_layer_states_asset([NRMS_TUNED])], tuned_world["layer_config"]
    )
    with duckdb.connect(str(database)) as conn:
        inputs = load_scorer_inputs(conn, ("validation",), [], configs=[config])
        states = inputs.items.layer_states["title"]
        assert states.n_rows == inputs.items.n_items and not inputs.items.embeddings
        _add_synthetic_item(conn)
        lacking = r"lacks the layer states of 1 of .*S-new.*the asset embeddings/layer_states with"
        with pytest.raises(RuntimeError, match=lacking):
            load_scorer_inputs(conn, ("validation",), [], configs=[config])


def test_tuned_scorers_are_optional_and_bring_the_cache_asset(tmp_path):
    from genre_dagster.definitions import build_definitions
    from genre_dagster.scoring.variants import DEFAULT_SCORERS, scorer_specs, tuned_specs
    from genre_dagster.settings import load_settings

    specs = scorer_specs(["nrms_tuned"])
    assert specs[: len(DEFAULT_SCORERS)] == DEFAULT_SCORERS
    assert [s.name for s in tuned_specs(specs)] == ["nrms_tuned"]
    assert not tuned_specs(DEFAULT_SCORERS)
    cache = dg.AssetKey(["embeddings", "layer_states"])
    env = {"GENRE_DATA_DIR": str(tmp_path), "GENRE_EXTRA_SCORERS": "nrms_tuned,naml_tuned"}
    graph = build_definitions(load_settings(env)).resolve_asset_graph()
    assert cache in graph.get_all_asset_keys()
    for name in ("nrms_tuned", "naml_tuned"):
        node = graph.get(dg.AssetKey(["scoring", name]))
        assert cache in node.parent_keys
        assert dg.AssetKey(["embeddings", "news_embeddings"]) not in node.parent_keys
    leaderboard = graph.get(dg.AssetKey(["evaluation", "leaderboard"]))
    assert dg.AssetKey(["scoring", "naml_tuned"]) in leaderboard.parent_keys
    plain = build_definitions(load_settings({"GENRE_DATA_DIR": str(tmp_path)}))
    assert cache not in plain.resolve_asset_graph().get_all_asset_keys()


def test_a_tuned_summary_variant_caches_the_summaries_states_after_they_are_written(tmp_path):
    from genre_dagster.definitions import build_definitions
    from genre_dagster.settings import load_settings

    env = {"GENRE_DATA_DIR": str(tmp_path), "GENRE_EXTRA_SCORERS": "nrms_tuned,nrms_tuned_summary"}
    defs = build_definitions(load_settings(env))
    graph = defs.resolve_asset_graph()
    cache = graph.get(dg.AssetKey(["embeddings", "layer_states"]))
    assert dg.AssetKey(["enrichment", "news_summaries"]) in cache.parent_keys
    node = defs.resolve_assets_def(dg.AssetKey(["embeddings", "layer_states"])).node_def
    fields = node.config_schema.config_type.fields["fields"].default_value
    assert fields == ["summary", "title"]
    # the variant reads the cache too
    summary = graph.get(dg.AssetKey(["scoring", "nrms_tuned_summary"]))
    assert dg.AssetKey(["embeddings", "layer_states"]) in summary.parent_keys
