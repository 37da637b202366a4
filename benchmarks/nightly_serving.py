"""What the two heaviest nightly steps cost on an existing project: the top-K lists and the
leaderboard, on a sample of an end-to-end work folder's users and test impressions.

At MIND-large size the lists (767k users against a 57k-item pool) and the leaderboard (every
scorer on about 450k test impressions) took 705 s and 672 s of the full refresh, and they run
again every night even when no scorer is retrained. This runs both as their assets do, read-only,
once per code tree given (`--trees`: checkouts of the project, each in a fresh process with that
tree first on the path), on the first `--users` active users and the first `--impressions` test
impressions, and records seconds, the peak growth of the process (the steps' own meter,
`step_budget.StepMeter`) and hashes of the results, so two revisions compare on the same data.

- lists: `serving.lists.recommend` with the serving scorer, no steering, k=10; the hash covers
  user, rank and item of every row, and the explanation kinds and texts.
- leaderboard: `evaluation.leaderboard.leaderboard_table` over every published scorer and the
  ensemble, 1,000 bootstrap resamples, no prediction files; the hash covers each row's AUC and
  MRR rounded to 6 decimals.

Usage: .venv/bin/python benchmarks/nightly_serving.py WORK --trees OLD NEW [--users 50000]
  [--impressions 50000] [--out results.json]. WORK is a benchmarks/end_to_end.py --work folder.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from trees import run_in_trees  # noqa: E402


def _digest(*parts) -> str:
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
    return digest.hexdigest()


def lists(conn, models: Path, n_users: int) -> dict:
    """The lists of the first `n_users` active users, timed and hashed."""
    import polars as pl

    from genre_dagster.scoring.registry import load_scorer
    from genre_dagster.serving import lists as serving
    from genre_dagster.serving.steering import SteeringParams
    from genre_dagster.step_budget import StepMeter

    scorer_id, name = conn.execute(
        "select serving_id, serving_name from serving.serving_scorer "
        "order by decided_at desc limit 1"
    ).fetchone()
    scorer = load_scorer(models / scorer_id)
    data = serving.read_serving_inputs(
        conn, scorer, name, explain_field="title", active_days=7, pool_days=2
    )
    data.users = data.users.head(n_users)
    meter = StepMeter(sample_seconds=0.02).start()
    try:
        made = serving.recommend(
            scorer, data, {"all": SteeringParams()}, k=10, explain_field="title", run_id="bench"
        )
        figures = meter.figures()
    finally:
        meter.stop()
    frame = made.frame.sort("user_id", "rank")
    ids = frame.select(pl.concat_str("user_id", "rank", "news_id", separator="|"))
    return {
        "scorer_id": scorer_id,
        "users": made.users,
        "pool_items": made.pool_items,
        "rows": frame.height,
        "seconds": round(figures["step_seconds"], 1),
        "users_per_second": round(made.users / figures["step_seconds"]),
        "growth_peak_mb": round(figures["step_peak_rss_mb"] - figures["step_rss_at_start_mb"]),
        "lists_hash": _digest(*ids.to_series().to_list()),
        "explanations_hash": _digest(
            *frame["explanation_kind"].to_list(), *frame["explanation"].to_list()
        ),
    }


def leaderboard(conn, models: Path, n_impressions: int) -> dict:
    """The leaderboard of every published scorer on the first test impressions."""
    import numpy as np
    import polars as pl

    from genre_dagster.evaluation.leaderboard import LeaderboardSettings, leaderboard_table
    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.scoring.inputs import (
        embedding_fields,
        load_scorer_inputs,
        with_generated_history,
    )
    from genre_dagster.scoring.variants import DEFAULT_SCORERS, variant_bases
    from genre_dagster.step_budget import StepMeter

    names = [spec.name for spec in DEFAULT_SCORERS] + ["ensemble"]
    table = pl.concat(
        [pl.from_arrow(conn.execute(f'select * from scoring."{n}"').arrow()) for n in names],
        how="vertical_relaxed",
    )
    configs = [json.loads(c) for c in table["config_json"]]
    fields = sorted({f for c in configs for f in embedding_fields(c)})
    base = load_scorer_inputs(conn, ("test",), fields, profile=True, configs=configs)
    augmented = with_generated_history(conn, base)
    n_impressions = min(n_impressions, base.splits["test"].n_impressions)
    rows = np.arange(n_impressions)
    for inputs in {id(base): base, id(augmented): augmented}.values():
        inputs.splits["test"] = inputs.splits["test"].take(rows)
    base.behaviors["test"] = base.behaviors["test"].head(n_impressions)
    store = ModelStore(root=str(models))
    settings = LeaderboardSettings(
        "test", 5, 1000, 0, None, variant_bases(DEFAULT_SCORERS), chunk_impressions=100_000
    )
    extra = {}
    if "publishes" in inspect.signature(leaderboard_table).parameters:
        extra["publishes"] = store.publishes
    meter = StepMeter(sample_seconds=0.02).start()
    try:
        out = leaderboard_table(table, base, augmented, store.load, settings, **extra)
        figures = meter.figures()
    finally:
        meter.stop()
    everyone = out.filter(pl.col("segment") == "all").sort("scorer")
    result = {
        "impressions": n_impressions,
        "rows": out.height,
        "seconds": round(figures["step_seconds"], 1),
        "growth_peak_mb": round(figures["step_peak_rss_mb"] - figures["step_rss_at_start_mb"]),
        "metrics_hash": _digest(
            *(f"{r['scorer']}|{r['auc']:.6f}|{r['mrr']:.6f}" for r in everyone.to_dicts())
        ),
    }
    if "score_seconds" in out.columns:
        result["score_seconds"] = dict(everyone.select("scorer", "score_seconds").iter_rows())
    return result


def one(work: Path, n_users: int, n_impressions: int) -> dict:
    import duckdb

    conn = duckdb.connect(str(work / "data" / "genre.duckdb"), read_only=True)
    models = work / "data" / "models"
    try:
        return {
            "lists": lists(conn, models, n_users),
            "leaderboard": leaderboard(conn, models, n_impressions),
        }
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--trees", nargs="+", type=Path, default=[])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--impressions", type=int, default=50_000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "nightly_serving.json"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.work.resolve(), args.users, args.impressions)))
        return
    sizes = ["--users", str(args.users), "--impressions", str(args.impressions)]
    if not args.trees:
        parser.error("--trees: give at least one checkout of the project")
    runs = run_in_trees(__file__, [str(args.work), *sizes], args.trees)
    result = {
        "benchmark": "nightly_serving",
        "machine": machine.describe(),
        "work": str(args.work.resolve()),
        "users": args.users,
        "impressions": args.impressions,
        "same_lists": len({r["lists"]["lists_hash"] for r in runs}) == 1,
        "same_explanations": len({r["lists"]["explanations_hash"] for r in runs}) == 1,
        "same_metrics": len({r["leaderboard"]["metrics_hash"] for r in runs}) == 1,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
