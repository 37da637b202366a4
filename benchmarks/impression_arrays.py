"""Peak memory and time of turning impressions into scorer arrays (`build_impressions`), all
rows at once against chunks of rows.

Every scorer step, the evaluation and the reports turn the impressions they read (Polars rows
with id lists) into `ImpressionData` arrays. Flattening the id lists of a large split at once
takes several index arrays as long as all its history and candidate ids for a moment; in chunks,
as long as one chunk's. The impressions are synthetic and MIND-like: histories of 0-200 clicks
(mean about 30), 5-60 candidates, item ids like `N12345`. Each measurement runs in a fresh
process, so its peak RSS is its own.

Usage: .venv/bin/python benchmarks/impression_arrays.py [--impressions 1000000] [--out FILE]
Results in benchmarks/results/impression_arrays.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

N_ITEMS = 160_000  # MIND-large's news count


def one(n_impressions: int, chunk_rows: int) -> dict:
    """Build the arrays of `n_impressions` synthetic impressions with `chunk_rows`."""
    import numpy as np
    import polars as pl
    import pyarrow as pa

    from genre_dagster.arrays import ItemFeatures
    from genre_dagster.scoring.loading import build_impressions
    from genre_dagster.step_budget import StepMeter

    rng = np.random.default_rng(0)
    ids = np.array([f"N{i}" for i in range(N_ITEMS)], dtype=object)
    history_lengths = np.minimum(rng.geometric(1 / 30, n_impressions) - 1, 200)
    candidate_lengths = rng.integers(5, 61, n_impressions)

    def lists(values, lengths: np.ndarray) -> pl.Series:
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return pl.from_arrow(pa.LargeListArray.from_arrays(pa.array(offsets), values))

    def id_lists(lengths: np.ndarray) -> pl.Series:
        picked = rng.integers(0, N_ITEMS, int(lengths.sum()))
        return lists(pa.array(ids[picked], type=pa.string()), lengths)

    n_candidates = int(candidate_lengths.sum())
    labels = (rng.random(n_candidates) < 0.04).astype(np.int8)
    behaviors = pl.DataFrame(
        {
            "impression_id": [f"train-{j}" for j in range(n_impressions)],
            "user_id": [f"U{j % 250_000}" for j in range(n_impressions)],
            "history": id_lists(history_lengths),
            "candidate_ids": id_lists(candidate_lengths),
            "candidate_labels": lists(pa.array(labels), candidate_lengths),
        }
    )
    items = ItemFeatures(
        item_ids=ids, embeddings={}, categories=np.zeros(N_ITEMS, dtype=np.int64),
        category_names=["news"],
    )  # fmt: skip
    # the step meter the assets use (50 ms RSS samples): the peak of the build alone, not of
    # making the synthetic frame before it
    meter = StepMeter(sample_seconds=0.01).start()
    try:
        data = build_impressions(behaviors, items, chunk_rows=chunk_rows)
        figures = meter.figures()
    finally:
        meter.stop()
    result_mb = sum(
        a.nbytes
        for a in (data.history, data.cand_offsets, data.cand_items, data.labels)
    ) / 2**20  # fmt: skip
    return {
        "impressions": n_impressions,
        "candidates": n_candidates,
        "history_ids": int(history_lengths.sum()),
        "chunk_rows": chunk_rows,
        "seconds": figures["step_seconds"],
        "rss_before_mb": figures["step_rss_at_start_mb"],
        "peak_rss_mb": figures["step_peak_rss_mb"],
        "growth_mb": round(figures["step_peak_rss_mb"] - figures["step_rss_at_start_mb"]),
        "result_arrays_mb": round(result_mb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impressions", type=int, default=1_000_000)
    parser.add_argument("--chunks", default="0,200000", help="chunk sizes (0 = all at once)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "impression_arrays.json"
    )
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(*args.one)))
        return
    runs = []
    for chunk in (int(c) for c in args.chunks.split(",")):
        command = [sys.executable, __file__, "--one", str(args.impressions), str(chunk)]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]))
    result = {"machine": machine.describe(), "runs": runs}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
