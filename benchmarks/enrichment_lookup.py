"""Cost of one GENRE role pass over many inputs when the budget sends only a few.

Every night the profiler renders, hashes and looks up the prompt of every user with a history
(answers are cached by prompt), sends the newest `budget` uncached ones to the LLM and skips the
rest. At MIND-large size that is a million users for 8 answers, so the lookup, not the LLM, sets
the step's time and memory. This measures it with an LLM that answers at once (no model), each
size in a fresh process so its peak RSS is its own.

Usage: .venv/bin/python benchmarks/enrichment_lookup.py [sizes ...] [--out results.json]
Default sizes 20000 100000 250000; results in benchmarks/results/enrichment_lookup.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

HISTORY_TITLES = 20  # as the profiler is shown (enrichment/inputs.py)
BUDGET = 8  # the profiler's default budget


def one(n_users: int) -> dict:
    """One profiler pass over `n_users` synthetic users with 20 nine-word titles each."""
    import psutil

    from genre_dagster.enrichment.backends import LLMBackend, LLMResult
    from genre_dagster.enrichment.cache import ResponseCache
    from genre_dagster.enrichment.roles import RoleInput
    from genre_dagster.enrichment.runner import run_role, vocabulary_config

    class InstantLLM(LLMBackend):
        @property
        def model_name(self) -> str:
            return "instant"

        def generate(self, requests):
            answer = json.dumps({"topics": ["sports"], "regions": []})
            return [LLMResult(key=r.key, text=answer, seconds=0.0) for r in requests]

    rng = random.Random(0)
    words = [f"word{i}" for i in range(3000)]
    inputs = [
        RoleInput(
            key=f"U{i}",
            fields={"history": [" ".join(rng.choices(words, k=9)) for _ in range(HISTORY_TITLES)]},
        )
        for i in range(n_users)
    ]
    vocab = vocabulary_config(["sports", "news", "finance", "health", "travel"])
    with tempfile.TemporaryDirectory() as tmp:
        cache = ResponseCache(Path(tmp) / "cache.duckdb")
        # warm-up on 10 inputs: imports, the cache table
        run_role("profiler", inputs[:10], InstantLLM(), cache, budget=BUDGET, vocabulary=vocab)
        before = psutil.Process().memory_info().rss
        start = time.perf_counter()
        result = run_role("profiler", inputs, InstantLLM(), cache, budget=BUDGET, vocabulary=vocab)
        seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "users": n_users,
        "seconds": round(seconds, 2),
        "ms_per_user": round(1000 * seconds / n_users, 4),
        "rss_before_pass_mb": round(before / 2**20),
        "peak_rss_mb": round(peak / 2**20),
        "growth_mb": round((peak - before) / 2**20),
        "answered": result.stats["answered"],
        "skipped_by_budget": result.stats["skipped_by_budget"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[20_000, 100_000, 250_000])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "enrichment_lookup.json"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one)))
        return
    runs = []
    for n in args.sizes:
        child = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]))
    result = {"machine": machine.describe(), "budget": BUDGET, "runs": runs}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
