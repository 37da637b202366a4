"""Time the vectorized MIND metrics and the prediction-file writer on synthetic data.

Usage: .venv/bin/python benchmarks/metrics_timing.py [n_impressions] [output.json]
Writes the timings (seconds, best of 3) to the output JSON (default benchmarks/metrics_timing.json).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from genre_dagster.evaluation.metrics import evaluate
from genre_dagster.evaluation.prediction_file import write_mind_prediction_file


def _best_of(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    n_impressions = int(sys.argv[1]) if len(sys.argv) > 1 else 150_000
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_suffix(".json")
    rng = np.random.default_rng(0)
    lengths = rng.integers(20, 41, n_impressions)
    imp = np.repeat(np.arange(n_impressions), lengths)
    positions = np.concatenate([np.arange(n) for n in lengths])
    labels = (rng.random(len(imp)) < 0.05).astype(np.int8)
    scores32 = rng.random(len(imp)).astype(np.float32)
    scores64 = rng.random(len(imp))
    perm = rng.permutation(len(imp))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "prediction.txt"
        result = {
            "n_impressions": n_impressions,
            "n_candidates": int(len(imp)),
            "evaluate_float32_sorted_s": _best_of(lambda: evaluate(imp, labels, scores32)),
            "evaluate_float64_sorted_s": _best_of(lambda: evaluate(imp, labels, scores64)),
            "evaluate_float32_shuffled_s": _best_of(
                lambda: evaluate(imp[perm], labels[perm], scores32[perm])
            ),
            "write_prediction_file_s": _best_of(
                lambda: write_mind_prediction_file(
                    np.arange(n_impressions), imp, positions, scores32, path
                ),
                repeats=1,
            ),
        }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
