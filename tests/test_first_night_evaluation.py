"""Evaluation after the first nightly run: the leaderboard, its page and history, the GENRE
variants against their bases, and the official prediction files.

Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

import dagster as dg
import pytest
from world_sql import query


def test_leaderboard_has_every_scorer_variant_and_references(world):
    rows = query(
        world, "select scorer, segment, auc, auc_low, auc_high from evaluation.leaderboard"
    )
    scorers = {s for s, *_ in rows}
    assert {
        "popularity",
        "content_similarity",
        "matrix_factorization",
        "sklearn_ranker",
        "nrms",
        "nrms_summary",
        "nrms_profile",
        "nrms_generated",
        "nrms_genre_all",
        "naml",
        "naml_summary",
        "naml_profile",
        "naml_generated",
        "naml_genre_all",
        "ensemble",
        "random",
        "oracle",
    } <= scorers
    assert {seg for _, seg, *_ in rows} == {"all", "warm", "cold"}
    auc = {s: a for s, seg, a, *_ in rows if seg == "all"}
    assert auc["oracle"] > max(a for s, a in auc.items() if s != "oracle")
    assert abs(auc["random"] - 0.5) < 0.08
    # every AUC with its 95% bootstrap interval over the impressions
    for scorer, segment, value, low, high in rows:
        if value != value:  # NaN: a segment without impressions has no interval either
            assert segment != "all" and low != low and high != high, (scorer, segment)
            continue
        assert low - 1e-12 <= value <= high + 1e-12, (scorer, segment)
    widths = {high - low for s, seg, _, low, high in rows if seg == "all"}
    assert min(widths) > 0 and len(widths) > 1  # real intervals, not one constant


def test_the_leaderboard_draws_the_evaluation_page_and_keeps_its_history(world):
    """The leaderboard's run writes the plotly page beside the monitoring reports, links it from
    its metadata and from index.html, and appends its rows to the nightly history."""
    from pathlib import Path

    from genre_dagster.evaluation.report_page import CHART_TITLES

    instance, settings = world["instance"], world["settings"]
    event = instance.get_latest_materialization_event(dg.AssetKey(["evaluation", "leaderboard"]))
    metadata = event.asset_materialization.metadata
    (day,) = query(
        world,
        "select max(b.day) from main.impression_splits s join main.stg_behaviors b "
        "using (impression_id) where s.split = 'test'",
    )[0]
    page = Path(metadata["evaluation_page_path"].value)
    assert page == settings.reports_dir / f"evaluation_{day}_{event.run_id[:8]}.html"
    url = settings.reports_url.rstrip("/")
    assert metadata["evaluation_page"].value == f"{url}/{page.name}"
    assert metadata["report_index"].value == f"{url}/index.html"
    text = page.read_text(encoding="utf-8")
    assert '<script src="http' not in text  # plotly.js inline: no network needed
    assert all(title in text for title in CHART_TITLES.values())
    scorers = {s for (s,) in query(world, "select distinct scorer from evaluation.leaderboard")}
    assert all(scorer in text for scorer in scorers)
    index = (settings.reports_dir / "index.html").read_text(encoding="utf-8")
    assert 'id="evaluation"' in index and f'href="{page.name}"' in index
    assert page.with_suffix(".json").exists()

    tonight = query(
        world,
        "select h.scorer, h.segment, h.auc, l.auc, h.auc_low, l.auc_low, h.day from "
        "evaluation.leaderboard_history h join evaluation.leaderboard l using (scorer, segment) "
        f"where h.run_id = '{event.run_id}'",
    )
    assert len(tonight) == len(scorers) * 3
    for scorer, segment, h_auc, l_auc, h_low, l_low, h_day in tonight:
        assert (h_auc, h_low) == pytest.approx((l_auc, l_low)), (scorer, segment)
        assert h_day == day
    # one set of rows per leaderboard run so far: earlier runs are kept
    key = dg.AssetKey(["evaluation", "leaderboard"])
    materialized = {r.run_id for r in instance.fetch_materializations(key, limit=1000).records}
    stored = {
        r for (r,) in query(world, "select distinct run_id from evaluation.leaderboard_history")
    }
    assert stored == materialized
    history = instance.get_latest_materialization_event(
        dg.AssetKey(["evaluation", "leaderboard_history"])
    )
    assert history.run_id == event.run_id  # one step writes both tables


def test_leaderboard_puts_each_genre_variant_next_to_its_base(world):
    """Every GENRE variant row holds its base and the AUC difference on the same impressions,
    with a paired-bootstrap interval and a verdict; the metadata shows them as a table."""
    from genre_dagster.scoring.variants import variant_bases

    rows = query(
        world,
        "select scorer, segment, base, auc, auc_delta, auc_delta_low, auc_delta_high, "
        "auc_delta_verdict from evaluation.leaderboard",
    )
    by = {(r[0], r[1]): r for r in rows}
    bases = variant_bases()
    assert set(bases.values()) == {"nrms", "naml"}
    assert len(bases) == 8
    for (scorer, segment), (_, _, base, auc, delta, low, high, verdict) in by.items():
        if scorer not in bases:
            assert base is delta is low is high is verdict is None, scorer
            continue
        assert base == bases[scorer]
        # paired over the impressions where AUC is defined (the same for both): the
        # difference of the two averaged AUCs
        assert delta == pytest.approx(auc - by[(base, segment)][3], abs=1e-9), scorer
        assert low <= delta <= high
        expected = "helps" if low > 0 else "hurts" if high < 0 else "no clear effect"
        assert verdict == expected
    intervals = {(by[(v, "all")][5], by[(v, "all")][6]) for v in bases}
    assert len(intervals) > 1  # real intervals, not one constant
    event = world["instance"].get_latest_materialization_event(
        dg.AssetKey(["evaluation", "leaderboard"])
    )
    metadata = event.asset_materialization.metadata
    table = metadata["GENRE variants vs base"].value
    for variant, base in bases.items():
        (line,) = [x for x in table.splitlines() if x.startswith(f"| {variant} |")]
        assert f"| {base} |" in line and by[(variant, "all")][7] in line
        delta = by[(variant, "all")][4]
        assert metadata[f"auc_delta/{variant}"].value == pytest.approx(delta, abs=1e-5)


def test_prediction_files_follow_the_official_format(world):
    from genre_dagster.evaluation.prediction_file import read_mind_prediction_file

    files = list((world["settings"].data_dir / "predictions").glob("*/test_*.txt"))
    assert files
    ranks = read_mind_prediction_file(files[0])
    (n_test,) = query(world, "select count(*) from main.impression_splits where split = 'test'")[0]
    assert len(ranks) == n_test
    assert all(sorted(r) == list(range(1, len(r) + 1)) for r in ranks.values())


def test_scoring_the_split_in_chunks_changes_no_metric(world):
    """Issue 19: the leaderboard scores the split a chunk of impressions at a time. With chunks
    of 7 impressions every scorer of the graph (GENRE variants with their profiles and generated
    histories too) gives the same scores and so the same leaderboard as all at once."""
    import json

    import duckdb
    import numpy as np
    import polars as pl

    from genre_dagster.evaluation.leaderboard import LeaderboardSettings, leaderboard_table
    from genre_dagster.scoring.base import n_chunks
    from genre_dagster.scoring.inputs import (
        embedding_fields,
        load_scorer_inputs,
        with_generated_history,
    )
    from genre_dagster.scoring.variants import DEFAULT_SCORERS
    from genre_dagster.settings import COLD_MAX_CLICKS

    store = world["defs"].resources["model_store"]
    names = [spec.name for spec in DEFAULT_SCORERS]
    with duckdb.connect(str(world["settings"].duckdb_path), read_only=True) as conn:
        table = pl.concat(
            [conn.sql(f"select * from scoring.{name}").pl() for name in names],
            how="vertical_relaxed",
        )
        configs = [json.loads(c) for c in table["config_json"]]
        fields = sorted({f for c in configs for f in embedding_fields(c)})
        base = load_scorer_inputs(conn, ("test",), fields, profile=True, configs=configs)
        augmented = with_generated_history(conn, base)
    assert n_chunks(base.splits["test"].n_impressions, 7) > 5

    def board(chunk: int) -> pl.DataFrame:
        settings = LeaderboardSettings(
            split="test",
            cold_max_clicks=COLD_MAX_CLICKS,
            bootstrap_resamples=20,
            bootstrap_seed=0,
            predictions_dir=None,
            bases={},
            chunk_impressions=chunk,
        )
        out = leaderboard_table(table, base, augmented, store.load, settings)
        return out.sort("scorer", "segment")

    whole, chunked = board(0), board(7)
    assert whole["scorer"].to_list() == chunked["scorer"].to_list()
    for column in ("auc", "mrr", "ndcg@10", "auc_low", "auc_high"):
        np.testing.assert_allclose(
            chunked[column].to_numpy(), whole[column].to_numpy(), rtol=1e-6, err_msg=column
        )
