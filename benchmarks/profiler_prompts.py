"""What the GENRE profiler's nightly pass costs before it asks the LLM anything: reading every
user's recent titles and rendering and hashing each user's prompt to look it up in the cache.

At MIND-large size the `user_profiles` step took 138-143 s of a nightly whose LLM answered 8
users: the runner renders and hashes the prompt of all 792k users (`runner.Stage.request_for`)
to find their cached answers. This runs that part as the step does, read-only, once per code
tree given (`--trees`, each in a fresh process with that tree first on the path), on the first
`--users` users of an end-to-end work folder, and hashes the request keys (the response cache's
keys: two trees must give the same ones).

The vocabulary is the default one: the dataset's categories as topics, US states as regions.

Usage: .venv/bin/python benchmarks/profiler_prompts.py WORK --trees OLD NEW [--users N]
  [--out results.json]. WORK is a benchmarks/end_to_end.py --work folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from trees import run_in_trees  # noqa: E402


def one(work: Path, n_users: int) -> dict:
    import hashlib

    import duckdb

    from genre_dagster.enrichment.inputs import item_categories, profiler_inputs
    from genre_dagster.enrichment.prompts import load_template
    from genre_dagster.enrichment.runner import Stage, vocabulary_config
    from genre_dagster.enrichment.sanitize import PromptLimits

    conn = duckdb.connect(str(work / "data" / "genre.duckdb"), read_only=True)
    try:
        started = time.perf_counter()
        categories = item_categories(conn)
        _, inputs = profiler_inputs(conn)
        read_seconds = time.perf_counter() - started
    finally:
        conn.close()
    inputs = inputs[:n_users] if n_users else inputs

    class _NoLLM:
        model_name = "none"

    vocabulary = vocabulary_config(categories)
    stage = Stage(_NoLLM(), None, 16, vocabulary, PromptLimits(), 0.0, True, 1, 0, set())
    template = load_template("profiler", "v2")
    digest = hashlib.blake2b(digest_size=16)
    started = time.perf_counter()
    for item in inputs:
        digest.update(stage.request_for(template, item, None).key.encode())
    render_seconds = time.perf_counter() - started
    return {
        "users": len(inputs),
        "read_seconds": round(read_seconds, 1),
        "render_and_hash_seconds": round(render_seconds, 1),
        "microseconds_per_user": round(render_seconds / max(len(inputs), 1) * 1e6, 1),
        "keys_hash": digest.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--trees", nargs="+", type=Path, default=[])
    parser.add_argument("--users", type=int, default=0, help="first N users (0 = all)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "profiler_prompts.json"
    )
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # the child
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.work.resolve(), args.users)))
        return
    if not args.trees:
        parser.error("--trees: give at least one checkout of the project")
    runs = run_in_trees(__file__, [str(args.work), "--users", str(args.users)], args.trees)
    result = {
        "benchmark": "profiler_prompts",
        "machine": machine.describe(),
        "work": str(args.work.resolve()),
        "same_keys": len({r["keys_hash"] for r in runs}) == 1,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
