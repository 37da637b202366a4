"""Where the leaderboard step's time goes, on the warehouse of an end-to-end work folder.

Runs the step's computation as the step does (`assets.evaluation._read_inputs`, then
`evaluation.leaderboard.leaderboard_table` with prediction files and kept scores) under cProfile,
and reports the seconds of its parts: reading the split, scoring each published model (the rows'
`score_seconds`), per-impression metrics, prediction files, keeping the scores (fingerprints,
impression digests and writes), and the bootstrap intervals. The work folder is only read:
prediction files and kept scores go to a scratch folder inside it, removed at the end.

Usage: .venv/bin/python benchmarks/leaderboard_profile.py WORK [--out F] [--pstats F]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

# (part, file suffix, function name) whose cumulative time the results report
PARTS = (
    ("scoring", "scoring/base.py", "score_in_chunks"),
    ("impression_metrics", "evaluation/metrics.py", "impression_metrics_for"),
    ("prediction_files", "evaluation/prediction_file.py", "write_split_prediction_files"),
    ("keep_scores", "scoring/nightly.py", "keep"),
    ("fingerprints", "scoring/score_memo.py", "scores_fingerprint"),
    ("impression_digests", "scoring/score_memo.py", "impression_digests"),
    ("intervals", "evaluation/leaderboard.py", "_with_intervals"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "leaderboard_profile.json"
    )
    parser.add_argument("--pstats", type=Path, help="also write the cProfile stats here")
    args = parser.parse_args()
    work = args.work.resolve()
    os.environ["GENRE_DATA_DIR"] = str(work / "data")

    import duckdb
    import polars as pl
    from dagster_duckdb import DuckDBResource

    from genre_dagster.assets.evaluation import EvaluationConfig, _read_inputs, _settings
    from genre_dagster.evaluation.leaderboard import leaderboard_table
    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.scoring.nightly import keep_test_scores
    from genre_dagster.scoring.variants import DEFAULT_SCORERS, variant_bases

    database = work / "data" / "genre.duckdb"
    names = [spec.name for spec in DEFAULT_SCORERS] + ["ensemble"]
    with duckdb.connect(str(database), read_only=True) as conn:
        table = pl.concat(
            [pl.from_arrow(conn.execute(f'select * from scoring."{n}"').arrow()) for n in names],
            how="diagonal_relaxed",
        )
    store = ModelStore(root=str(work / "data" / "models"))
    config = EvaluationConfig()
    started = time.perf_counter()
    base, augmented, _ = _read_inputs(
        DuckDBResource(database=str(database)), config.split, table, []
    )
    read_seconds = time.perf_counter() - started
    data = base.splits[config.split]
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        kept_store = ModelStore(root=str(Path(scratch) / "models"))
        for scorer_id in table["scorer_id"].unique():
            kept_store.path_of(scorer_id).mkdir(parents=True, exist_ok=True)
        settings = _settings(config, Path(scratch) / "predictions", variant_bases())
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        out = leaderboard_table(
            table, base, augmented, store.load, settings, publishes=store.publishes,
            keep=keep_test_scores(kept_store, base, config.split),
        )  # fmt: skip
        profile.disable()
        table_seconds = time.perf_counter() - started
    if args.pstats:
        profile.dump_stats(args.pstats)
    stats = pstats.Stats(profile).stats
    parts = {}
    for part, suffix, function in PARTS:
        found = [v for (f, _, name), v in stats.items() if f.endswith(suffix) and name == function]
        parts[part] = {
            "seconds": round(sum(v[3] for v in found), 1),  # cumulative time
            "calls": sum(v[1] for v in found),
        }
    rows = out.filter(pl.col("segment") == "all")
    per_scorer = {
        r["scorer"]: r["score_seconds"] for r in rows.iter_rows(named=True) if r["score_seconds"]
    }
    result = {
        "benchmark": "leaderboard_profile",
        "machine": machine.describe(),
        "work": str(work),
        "impressions": data.n_impressions,
        "candidates": len(data.cand_items),
        "read_seconds": round(read_seconds, 1),
        "table_seconds": round(table_seconds, 1),
        "score_seconds_of_rows": round(sum(per_scorer.values()), 1),
        "parts": parts,
        "score_seconds_per_scorer": per_scorer,
        "note": "cProfile's overhead is included; the parts overlap where one calls another "
        "(fingerprints and impression digests are part of keep_scores).",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
