"""What `genre-dagster run` prints for the first night: a line per step, the log file, and a
summary whose numbers are those of the warehouse.

Reads the session's `news_world` as its first nightly run left it (the `world` fixture in
conftest; test_later_nights.py adds nights and runs after every reader).
"""

from __future__ import annotations

import duckdb


def test_the_run_prints_a_line_per_step_and_a_summary_that_matches_the_tables(world):
    """What `genre-dagster run` shows: a line per finished step with its number, the whole log
    in a file, and a summary whose numbers are those of the warehouse and the assets."""
    from genre_dagster.run_report import summary_lines

    lines = world["step_lines"]
    steps = [line for line in lines if line.startswith("  ok ")]
    assert not [line for line in lines if line.startswith("  FAILED")]
    names = {line.split()[1] for line in steps}
    assert {"raw_news", "dbt_features", "scoring__nrms", "evaluation__leaderboard"} <= names
    # the split as soon as dbt has built it, before any model work
    (splits,) = [line for line in lines if line.strip().startswith("splits: ")]
    assert "train: " in splits and "validation: " in splits and "test: " in splits
    assert lines.index(splits) < lines.index(next(x for x in steps if "scoring__" in x))
    (summaries,) = [line for line in steps if line.split()[1] == "enrichment__news_summaries"]
    assert " answered, " in summaries and " s  " in summaries
    assert world["log_file"].stat().st_size > 0
    assert "STEP_SUCCESS" in world["log_file"].read_text()

    database = str(world["settings"].duckdb_path)
    summary = "\n".join(summary_lines(world["instance"], database))
    with duckdb.connect(database, read_only=True) as conn:
        impressions = conn.sql("select count(*) from main.stg_behaviors").fetchone()[0]
        best, auc = conn.sql(
            "select scorer, auc from evaluation.leaderboard where segment = 'all' and "
            "scorer not in ('random', 'oracle') order by auc desc limit 1"
        ).fetchone()
        answered = conn.sql("select count(*) from enrichment.news_summaries").fetchone()[0]
    assert f"{impressions:,} impressions" in summary
    assert f"1. {best:<22s} {auc:.4f}" in summary
    assert f"published {answered}" in summary
    for heading in ("Data", "LLM enrichment", "Leaderboard", "GENRE variants vs base",
                    "Serving", "Monitoring", "Next"):  # fmt: skip
        assert f"\n{heading}" in f"\n{summary}", heading


def test_every_materialization_says_what_its_step_cost(world):
    """The per-step budget in the UI: every asset of the run carries its step's seconds and peak
    memory, and the run's step lines show the peak."""
    import dagster as dg

    instance = world["instance"]
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(["raw", "news"])), limit=1
    ).records
    run_id = records[0].run_id
    events = [
        record.event_log_entry.dagster_event.event_specific_data.materialization
        for record in instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
        ).records
    ]
    assert len(events) > 20
    missing = [m.asset_key.to_user_string() for m in events if "step_peak_rss_mb" not in m.metadata]
    assert not missing
    for m in events:
        assert m.metadata["step_peak_rss_mb"].value >= m.metadata["step_rss_at_start_mb"].value > 0
        assert m.metadata["step_seconds"].value >= 0
    # a model step takes longer than reading the raw files
    seconds = {m.asset_key.to_user_string(): m.metadata["step_seconds"].value for m in events}
    assert seconds["scoring/nrms"] > seconds["raw/news"]
    # (a step that only runs checks materializes nothing and shows no figure)
    shown = {line.split()[1]: line for line in world["step_lines"] if line.startswith("  ok ")}
    for step in ("raw_news", "dbt_features", "scoring__nrms", "evaluation__leaderboard"):
        assert " MB  " in shown[step], shown[step]
