"""What DuckDB's memory limit does to a step's process: the interaction-drift report's query.

The interaction-drift report aggregates every candidate row of its window (74M at MIND-large
size) per impression inside DuckDB, in the step's own process. This runs that query
(`monitoring.daily.interaction_window`, the whole window the report reads) on an existing
project database, read-only, once per memory limit, each in a fresh process so its peak is its
own, and records the process's growth during the query, its time and whether the frames are
equal (a hash of the result).

Usage: .venv/bin/python benchmarks/duckdb_memory_limit.py DATABASE [--limits none 1GB ...]
  [--out results.json]. `none` is DuckDB's own default (80% of RAM); `project` is the project's
default (genre_dagster.settings.default_duckdb_memory_limit). Results in
benchmarks/results/duckdb_memory_limit.json; the database it ran on is named in them (a
benchmarks/end_to_end.py work folder holds one: WORK/data/genre.duckdb).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402

DEFAULT_LIMITS = ["none", "project", "1GB"]


def one(database: str, limit: str) -> dict:
    """The window query once under `limit`, with the process's RSS sampled every 20 ms."""
    from datetime import timedelta

    import duckdb
    import psutil

    from genre_dagster import warehouse as wh
    from genre_dagster.monitoring.daily import interaction_window, newest_window
    from genre_dagster.settings import default_duckdb_memory_limit

    process = psutil.Process()
    peak = [process.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], process.memory_info().rss)

    with tempfile.TemporaryDirectory() as spill:
        config = {"temp_directory": spill}
        if limit != "none":
            config["memory_limit"] = default_duckdb_memory_limit() if limit == "project" else limit
        conn = duckdb.connect(database, read_only=True, config=config)
        newest, start = newest_window(conn, 7)
        (last,) = conn.execute(f"select max(day) from {wh.STG_BEHAVIORS}").fetchone()
        first = min(start, last - timedelta(days=7))
        before = process.memory_info().rss
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        began = time.perf_counter()
        frame = interaction_window(conn, first, last)
        seconds = time.perf_counter() - began
        done.set()
        thread.join()
        after = process.memory_info().rss
        (effective,) = conn.execute("select current_setting('memory_limit')").fetchone()
        conn.close()
    return {
        "limit": limit,
        "duckdb_memory_limit": effective,
        "impressions": frame.height,
        "seconds": round(seconds, 1),
        "growth_peak_mb": round((max(peak[0], after) - before) / 2**20),
        "growth_kept_mb": round((after - before) / 2**20),
        "result_hash": int(frame.sort("impression_id").hash_rows().sum()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database")
    parser.add_argument("--limits", nargs="*", default=DEFAULT_LIMITS)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "duckdb_memory_limit.json"
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the child process: its limit
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.database, args.one)))
        return
    runs = []
    for limit in args.limits:
        child = subprocess.run(
            [sys.executable, __file__, args.database, "--one", limit],
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]))
    same = len({r["result_hash"] for r in runs}) == 1
    result = {
        "benchmark": "duckdb_memory_limit",
        "machine": machine.describe(),
        "database": str(Path(args.database).resolve()),
        "query": "monitoring.daily.interaction_window over the interaction-drift report's window",
        "same_result": same,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (same result under every limit: {same})")


if __name__ == "__main__":
    main()
