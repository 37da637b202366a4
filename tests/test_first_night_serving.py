"""Serving after the first nightly run: the lists, and the promotion guard (on a copy).

Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

import dagster as dg
import duckdb
from world_sql import query


def test_recommendations_exclude_seen_and_synthetic_items_and_are_explained(world):
    (seen,) = query(
        world,
        "select count(*) from serving.recommendations r join main.user_histories h "
        "using (user_id) where list_contains(h.history, r.news_id)",
    )[0]
    assert seen == 0
    (synthetic,) = query(
        world,
        "select count(*) from serving.recommendations r "
        "join enrichment.synthetic_items s using (news_id)",
    )[0]
    assert synthetic == 0
    rows = query(
        world,
        "select count(*), count(distinct user_id), max(rank), bool_and(explanation <> ''), "
        "count(distinct scorer_id), count(distinct run_id) from serving.recommendations",
    )[0]
    total, users, max_rank, explained, scorers, runs = rows
    assert total == users * 10 or max_rank <= 10
    assert explained and scorers == 1 and runs == 1
    kinds = {
        k for (k,) in query(world, "select distinct explanation_kind from serving.recommendations")
    }
    assert kinds <= {"similar_history", "profile_topic", "popularity", "freshness"}


def test_promotion_guard_blocks_a_worse_scorer_and_lists_keep_the_serving_one(world, tmp_path):
    import shutil

    from dagster_duckdb import DuckDBResource

    from genre_dagster.assets.serving import challenger, promotion_guard, serving_scorer
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    database = tmp_path / "genre.duckdb"  # dbt views name the catalog after the file
    shutil.copy(world["settings"].duckdb_path, database)
    with duckdb.connect(str(database)) as conn:
        (serving_before, serving_auc, serving_name) = conn.sql(
            "select serving_id, serving_val_auc, serving_name from serving.serving_scorer "
            "order by decided_at desc limit 1"
        ).fetchone()
        (worse,) = conn.execute(
            "select scorer from evaluation.leaderboard where segment = 'all' "
            "and scorer not in ('random', 'oracle', 'ensemble', ?) order by scorer limit 1",
            [serving_name],
        ).fetchone()
        (worse_id,) = conn.sql(f"select scorer_id from scoring.{worse}").fetchone()
        assert worse_id != serving_before
        # a re-trained scorer that is now the best of its run but clearly worse than serving
        conn.execute("update evaluation.leaderboard set val_auc = 0.51")
        conn.execute(
            "update evaluation.leaderboard set val_auc = ? where scorer = ?",
            [serving_auc - 0.05, worse],
        )
    resources = {
        "io_manager": DuckDBPolarsTablesIOManager(database=str(database)),
        "duckdb": DuckDBResource(database=str(database)),
    }
    leaderboard = dg.AssetSpec(dg.AssetKey(["evaluation", "leaderboard"]))
    result = dg.materialize(
        [leaderboard, challenger, serving_scorer, promotion_guard],
        resources=resources,
        selection=[challenger.key, serving_scorer.key],
        raise_on_error=False,
    )
    checks = {c.check_name: c for c in result.get_asset_check_evaluations()}
    guard = checks["promotion_guard"]
    with duckdb.connect(str(database), read_only=True) as conn:
        (challenger_id,) = conn.sql("select scorer_id from serving.challenger").fetchone()
        latest = conn.sql(
            "select promoted, serving_id, reason from serving.serving_scorer "
            "order by decided_at desc limit 1"
        ).fetchone()
    assert challenger_id == worse_id
    assert not guard.passed
    assert guard.severity == dg.AssetCheckSeverity.WARN
    assert latest[0] is False and latest[1] == serving_before
    assert "keeps serving" in latest[2]
