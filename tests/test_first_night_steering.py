"""Steering the lists of the first night: parameters, instructions and segments change the
lists as specified (each test materializes the lists again on a copy of the database).

Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

import json

import dagster as dg
import duckdb
import numpy as np


def _recommend(world, tmp_path, config: dict):
    """Materialize only the lists (with `config`) on a copy of the world's database."""
    import shutil

    from genre_dagster.assets.serving import SERVING, recommendations
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    database = tmp_path / "genre.duckdb"  # dbt views name the catalog after the file
    shutil.copy(world["settings"].duckdb_path, database)
    resources = dict(world["defs"].resources)
    from dagster_duckdb import DuckDBResource

    resources["duckdb"] = DuckDBResource(database=str(database))
    resources["io_manager"] = DuckDBPolarsTablesIOManager(database=str(database))
    result = dg.materialize(
        [dg.AssetSpec(SERVING), recommendations],
        selection=[recommendations.key],
        resources=resources,
        run_config={"ops": {"serving__recommendations": {"config": config}}},
    )
    (mat,) = [e.materialization for e in result.get_asset_materialization_events()]
    with duckdb.connect(str(database), read_only=True) as conn:
        mix = dict(
            conn.sql(
                "select n.category, count(*) / sum(count(*)) over () from "
                "serving.recommendations r join main.stg_news n using (news_id) group by 1"
            ).fetchall()
        )
    return mat.metadata, mix


def test_steering_parameters_and_instructions_change_the_lists_as_specified(world, tmp_path):
    _, plain = _recommend(world, tmp_path, {})
    top = max(plain, key=plain.get)
    meta, steered = _recommend(
        world, tmp_path, {"exclude_categories": [top], "category_weights": {"news": 2.0}}
    )
    assert top not in steered  # an excluded category never comes through
    assert steered.get("news", 0) > plain.get("news", 0)
    assert meta["steering_mix_shift"].value > 0.1
    assert json.loads(json.dumps(meta["steering_applied"].value))["all"]["exclude_categories"] == [
        top
    ]

    meta, by_instruction = _recommend(
        world, tmp_path, {"instruction": "more local news please, no celebrity gossip"}
    )
    assert "entertainment" not in by_instruction
    assert by_instruction.get("news", 0) > plain.get("news", 0)

    meta, unmapped = _recommend(world, tmp_path, {"instruction": "make it better"})
    assert "could not map" in meta["steering_notes"].value
    assert unmapped == plain  # lists unchanged


def test_cold_segment_steering_leaves_warm_users_alone(world, tmp_path):
    meta, _ = _recommend(
        world, tmp_path, {"segments_json": '{"cold": {"exclude_categories": ["sports"]}}'}
    )
    with duckdb.connect(str(tmp_path / "genre.duckdb"), read_only=True) as conn:
        rows = conn.sql(
            "select g.segment, count(*) filter (where n.category = 'sports'), "
            "count(distinct r.steering) from serving.recommendations r "
            "join main.user_segments g using (user_id) join main.stg_news n using (news_id) "
            "group by 1"
        ).fetchall()
    by_segment = {seg: (sports, variants) for seg, sports, variants in rows}
    assert by_segment["cold"][0] == 0
    assert by_segment["warm"][1] == 1 and by_segment["cold"][1] == 1


def test_lists_made_in_chunks_of_users_are_the_lists_made_at_once(world, tmp_path):
    """Issue 19: users are ranked and explained a chunk at a time. Chunks of 7 users give the
    same rows (ranks, scores, explanations, per-segment steering with MMR) and the same
    category mix as one chunk."""
    steering = {
        "diversity": 0.3,
        "segments_json": '{"cold": {"exclude_categories": ["sports"]}}',
    }
    columns = "user_id, rank, news_id, score, explanation_kind, explanation, steering"
    tables, metas = [], []
    for chunk in (0, 7):
        folder = tmp_path / str(chunk)
        folder.mkdir()
        meta, _ = _recommend(world, folder, {**steering, "chunk_users": chunk})
        metas.append(meta)
        with duckdb.connect(str(folder / "genre.duckdb"), read_only=True) as conn:
            tables.append(
                conn.sql(f"select {columns} from serving.recommendations order by 1, 2").fetchall()
            )
    assert metas[0]["chunks"].value == 1 and metas[1]["chunks"].value > 3
    # the same rows; a score may differ in its last bits (the network encodes users in batches
    # of another size), never enough to reorder a list here
    without_score = [[row[:3] + row[4:] for row in table] for table in tables]
    assert len(tables[0]) > 0 and without_score[0] == without_score[1]
    scores = [np.array([row[3] for row in table]) for table in tables]
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-5)
    for key in ("category_mix", "explanations", "steering_mix_shift", "dagster/row_count"):
        assert metas[0][key] == metas[1][key], key
