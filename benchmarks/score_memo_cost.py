"""What keeping the leaderboard's scores for the next night costs, and what reading them saves.

The leaderboard keeps every published model's scores of its test day (`nightly.keep_test_scores`:
a `score_memo.scores_fingerprint` of the split as the model reads it, then the scores written
beside the artifact); the next night a model reused within its cadence reads them instead of
scoring the day again. This times, on the test split of an end-to-end work folder (read-only
but for one scratch folder), per published model: the fingerprint, writing the scores, reading
them back, and scoring the split as the scorer step would (`score_in_chunks`, 100k impressions
at a time) for the models named in `--score` (scoring every model takes minutes).

Usage: .venv/bin/python benchmarks/score_memo_cost.py WORK [--score nrms naml] [--out F]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--score", nargs="*", default=["nrms", "naml"])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "score_memo_cost.json"
    )
    args = parser.parse_args()

    import duckdb
    import numpy as np
    import polars as pl

    from genre_dagster.scoring.base import score_in_chunks
    from genre_dagster.scoring.inputs import embedding_fields, load_scorer_inputs
    from genre_dagster.scoring.registry import load_scorer
    from genre_dagster.scoring.score_memo import scores_fingerprint
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    work = args.work.resolve()
    conn = duckdb.connect(str(work / "data" / "genre.duckdb"), read_only=True)
    names = [spec.name for spec in DEFAULT_SCORERS]
    table = pl.concat(
        [pl.from_arrow(conn.execute(f'select * from scoring."{n}"').arrow()) for n in names],
        how="vertical_relaxed",
    ).unique("scorer_id", keep="first", maintain_order=True)
    configs = [json.loads(c) for c in table["config_json"]]
    fields = sorted({f for c in configs for f in embedding_fields(c)})
    started = time.perf_counter()
    inputs = load_scorer_inputs(conn, ("test",), fields, profile=True, configs=configs)
    load_seconds = time.perf_counter() - started
    conn.close()
    data = inputs.splits["test"]
    rows = []
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        for record, config in zip(table.iter_rows(named=True), configs, strict=True):
            profiles = inputs.profiles if config.get("profile") else None
            started = time.perf_counter()
            scores_fingerprint(config, data, inputs.items, inputs.day_zero, profiles)
            row = {"scorer": record["name"], "fingerprint_seconds": time.perf_counter() - started}
            scores = np.random.default_rng(0).random(len(data.cand_items), dtype=np.float32)
            if record["name"] in args.score:
                scorer = load_scorer(work / "data" / "models" / record["scorer_id"])
                kwargs = {"profiles": inputs.profiles} if config.get("profile") else {}
                started = time.perf_counter()
                scores = score_in_chunks(scorer, data, inputs.items, 100_000, **kwargs)
                row["score_seconds"] = time.perf_counter() - started
            path = Path(scratch) / f"{record['scorer_id']}.npy"
            started = time.perf_counter()
            np.save(path, np.asarray(scores, dtype=np.float32))
            row["write_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
            np.load(path, allow_pickle=False)
            row["read_seconds"] = time.perf_counter() - started
            rows.append({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "benchmark": "score_memo_cost",
        "machine": machine.describe(),
        "work": str(work),
        "impressions": data.n_impressions,
        "candidates": len(data.cand_items),
        "load_seconds": round(load_seconds, 1),
        "models": rows,
        "fingerprint_seconds_total": round(sum(r["fingerprint_seconds"] for r in rows), 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
