"""What the GENRE profiler's pass costs on two nights when the LLM answers nobody (budget 0):
the look-up of every user's cached answer, per code tree.

Reads the profiler inputs of an end-to-end work folder (read-only) and runs the profiler role
as `user_profiles` does (default vocabulary: the categories as topics, US states as regions)
with a response cache in a scratch DuckDB file holding a copy of the folder's answers. Night 1
runs on the inputs as they are. Night 2 runs on the same inputs where the users with a click on
the folder's newest day have one more title in their history (what a new day does to the
profiler's inputs); the others are unchanged. Each tree runs in a fresh process with that tree
first on the path, so the same nights are measured with old and new code; the rows of night 2
(status, cached, input hash) are hashed so two trees can be compared.

Usage: .venv/bin/python benchmarks/profiler_lookup.py WORK --trees OLD NEW [--scratch DIR]
  [--out results.json]. WORK is a benchmarks/end_to_end.py --work folder.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402
from trees import run_in_trees  # noqa: E402


def one(work: Path, scratch: Path) -> dict:
    import hashlib

    import duckdb

    from genre_dagster.enrichment.cache import ResponseCache
    from genre_dagster.enrichment.enrich import role_vocabulary
    from genre_dagster.enrichment.inputs import item_categories, profiler_inputs
    from genre_dagster.enrichment.roles import RoleInput
    from genre_dagster.enrichment.runner import run_role
    from genre_dagster.resources.llm import LLMResource

    database = work / "data" / "genre.duckdb"
    started = time.perf_counter()
    with duckdb.connect(str(database), read_only=True) as conn:
        categories = item_categories(conn)
        _, inputs = profiler_inputs(conn)
        clicked = {
            user
            for (user,) in conn.execute(
                "select distinct user_id from main.impressions "
                "where label = 1 and day = (select max(day) from main.impressions)"
            ).fetchall()
        }
    read_seconds = time.perf_counter() - started
    vocabulary = role_vocabulary(
        "profiler", categories, domain="news", topics="auto", regions="auto"
    )
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    cache = ResponseCache(scratch / "cache.duckdb")
    with cache.connection("copy the folder's answers") as con:
        con.execute(f"attach '{database}' as folder (read_only)")
        con.execute("insert into enrichment.llm_responses from folder.enrichment.llm_responses")
        con.execute("detach folder")

    class NoLLM:
        # the name the step's default local model caches its answers under (not loaded)
        model_name = LLMResource().get_backend().model_name

        def generate(self, requests):
            raise AssertionError("budget 0: nothing is sent")

    def night(items: list) -> tuple[float, object]:
        started = time.perf_counter()
        result = run_role(
            "profiler", items, NoLLM(), cache, budget=0, vocabulary=vocabulary, domain="news"
        )
        return time.perf_counter() - started, result

    first_seconds, first = night(inputs)
    next_day = [
        RoleInput(i.key, {"history": [*i.fields["history"], "A new day's story"]})
        if i.key in clicked
        else i
        for i in inputs
    ]
    second_seconds, second = night(next_day)
    rows = hashlib.blake2b(digest_size=16)
    for row in second.rows:
        rows.update(f"{row.key}|{row.status}|{row.cached}|{row.input_hash}\n".encode())
    shutil.rmtree(scratch, ignore_errors=True)
    return {
        "users": len(inputs),
        "users_with_a_new_click": sum(i.key in clicked for i in inputs),
        "read_seconds": round(read_seconds, 1),
        "night_1_seconds": round(first_seconds, 1),
        "night_1_rendered": first.stats.get("rendered", len(inputs)),
        "night_2_seconds": round(second_seconds, 1),
        "night_2_rendered": second.stats.get("rendered", len(inputs)),
        "night_2_cached": second.stats["cached"],
        "night_2_rows_hash": rows.hexdigest(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--trees", nargs="+", type=Path, default=[])
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/profiler_lookup"))
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "profiler_lookup.json"
    )
    args = parser.parse_args()
    work = args.work.resolve()
    if args.one:
        print(json.dumps(one(work, args.scratch.resolve())))
        return
    runs = run_in_trees(__file__, [str(work), "--scratch", str(args.scratch)], args.trees)
    result = {
        "benchmark": "profiler_lookup",
        "machine": machine.describe(),
        "work": str(work),
        "same_rows": len({r["night_2_rows_hash"] for r in runs}) == 1,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
