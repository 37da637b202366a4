"""What a scorer's inputs cost to load: `load_scorer_inputs` on an existing project database.

A generated-history scorer (`nrms_generated`, `naml_generated`, the `_genre_all` variants)
loads the train and validation splits with GENRE's synthetic items in the histories. This loads
them as such a scorer does, read-only, once per code tree given (`--trees`: checkouts of the
project, each run in a fresh process with that tree first on the path, so two revisions compare
on the same data), and records the process's growth while loading (RSS sampled every 20 ms),
the growth kept after, the seconds, and a hash of the arrays (item indices as int64, so trees
with different index dtypes compare).

Usage: .venv/bin/python benchmarks/scorer_inputs_memory.py DATABASE --trees OLD NEW
  [--fields title abstract] [--out results.json]. A benchmarks/end_to_end.py work folder holds a
database: WORK/data/genre.duckdb.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from trees import run_in_trees  # noqa: E402


def one(database: str, fields: list[str]) -> dict:
    """Load the inputs once, measured by the steps' own meter (`step_budget.StepMeter`)."""
    import hashlib

    import duckdb
    import numpy as np
    import psutil

    from genre_dagster.scoring.inputs import load_scorer_inputs
    from genre_dagster.step_budget import StepMeter

    conn = duckdb.connect(database, read_only=True)
    # the meter every asset's step_peak_rss_mb comes from, sampling every 20 ms
    meter = StepMeter(sample_seconds=0.02).start()
    try:
        inputs = load_scorer_inputs(
            conn, ("train", "validation"), fields, generated_history=True, max_history=50
        )
        figures = meter.figures()
    finally:
        meter.stop()
    after = psutil.Process().memory_info().rss / 2**20
    digest = hashlib.blake2b(digest_size=16)
    for name in ("train", "validation"):
        data = inputs.splits[name]
        for part in (data.history, data.cand_offsets, data.cand_items, data.labels):
            digest.update(np.ascontiguousarray(part, dtype=np.int64))
    conn.close()
    train = inputs.splits["train"]
    return {
        "train_impressions": train.n_impressions,
        "train_candidates": len(train.cand_items),
        "users_with_generated_items": len(inputs.extra_history or {}),
        "index_dtype": str(train.history.dtype),
        "seconds": round(figures["step_seconds"], 1),
        "growth_peak_mb": round(figures["step_peak_rss_mb"] - figures["step_rss_at_start_mb"]),
        "growth_kept_mb": round(after - figures["step_rss_at_start_mb"]),
        "arrays_hash": digest.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("--trees", nargs="+", type=Path, default=[])
    parser.add_argument("--fields", nargs="*", default=["title", "abstract"])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "scorer_inputs_memory.json"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.database, args.fields)))
        return
    if not args.trees:
        parser.error("--trees: give at least one checkout of the project")
    runs = run_in_trees(__file__, [args.database, "--fields", *args.fields], args.trees)
    same = len({r["arrays_hash"] for r in runs}) == 1
    result = {
        "benchmark": "scorer_inputs_memory",
        "machine": machine.describe(),
        "database": str(Path(args.database).resolve()),
        "load": "load_scorer_inputs(train, validation, fields, generated_history=True)",
        "fields": args.fields,
        "same_arrays": same,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (the same arrays from every tree: {same})")


if __name__ == "__main__":
    main()
