"""What the nightly `dbt build` costs when one new day arrives, per code tree.

Takes the DuckDB file of an end-to-end work folder (copied, never changed), holds its newest
day of raw impressions back, builds the dbt project of a tree on the rest (the night before),
puts the day back and times the build that follows (the nightly). Each tree gets its own copy
and runs its own `dbt_project/`, so the same data is measured with the table models of an old
tree and the incremental models of a new one. Reports the nightly build's wall seconds and
dbt's seconds per model and test (run_results.json).

Usage: .venv/bin/python benchmarks/dbt_nightly.py WORK --trees OLD NEW [--scratch DIR]
  [--out results.json]. WORK is a benchmarks/end_to_end.py --work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from trees import revision  # noqa: E402


def _build(tree: Path, database: Path, scratch: Path) -> dict:
    from genre_dagster.duckdb_lock import dbt_duckdb_env

    project = tree / "dbt_project"
    env = {
        **os.environ,
        "GENRE_DUCKDB_PATH": str(database),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **dbt_duckdb_env(database),
    }
    target = scratch / "target"
    command = [
        str(Path(sys.executable).parent / "dbt"),
        *("build", "--project-dir", str(project), "--profiles-dir", str(project)),
        *("--target-path", str(target), "--log-path", str(scratch / "logs")),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{tree}: dbt build failed:\n{done.stdout[-4000:]}")
    results = json.loads((target / "run_results.json").read_text())["results"]
    nodes = {r["unique_id"].split(".")[-1]: round(r["execution_time"], 2) for r in results}
    return {
        "seconds": round(seconds, 1),
        "nodes": dict(sorted(nodes.items(), key=lambda kv: -kv[1])),
    }


def one(tree: Path, work: Path, scratch: Path) -> dict:
    import duckdb

    code = revision(tree)
    folder = scratch / code
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    database = folder / "genre.duckdb"
    shutil.copyfile(work / "data" / "genre.duckdb", database)
    try:
        with duckdb.connect(str(database)) as conn:
            (day,) = conn.sql("select max(day) from raw.behaviors").fetchone()
            conn.execute("create schema bench")
            conn.execute("create table bench.held as from raw.behaviors where day = ?", [day])
            conn.execute("delete from raw.behaviors where day = ?", [day])
            (days,) = conn.sql("select count(distinct day) from raw.behaviors").fetchone()
            (held,) = conn.sql("select count(*) from bench.held").fetchone()
        before = _build(tree, database, folder)
        with duckdb.connect(str(database)) as conn:
            conn.execute("insert into raw.behaviors from bench.held")
            conn.execute("drop schema bench cascade")
        nightly = _build(tree, database, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "tree": str(tree),
        "code": code,
        "days_before": days,
        "new_day": str(day),
        "new_day_impressions": held,
        "night_before_build_seconds": before["seconds"],
        "nightly_build_seconds": nightly["seconds"],
        "nightly_nodes": nightly["nodes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--trees", nargs="+", type=Path, required=True)
    parser.add_argument("--scratch", type=Path, default=None, help="default: WORK/../dbt_nightly")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "dbt_nightly.json"
    )
    args = parser.parse_args()
    work = args.work.resolve()
    scratch = (args.scratch or work.parent / "dbt_nightly").resolve()
    runs = []
    for tree in args.trees:
        runs.append(one(tree.resolve(), work, scratch))
        print(json.dumps({k: v for k, v in runs[-1].items() if k != "nightly_nodes"}), flush=True)
    result = {
        "benchmark": "dbt_nightly",
        "machine": machine.describe(),
        "work": str(work),
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
