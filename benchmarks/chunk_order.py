"""What the order of the impressions in `score_in_chunks` costs a neural scorer on a large day.

The leaderboard and the scorer steps score a split 100k impressions at a time. A neural scorer
encodes each distinct user input once per chunk, so a user whose impressions of the day fall into
several chunks is encoded several times. This scores the test split of an end-to-end work folder
(read-only) with the published models named in `--score`, once per code tree given (`--trees`,
each in a fresh process with that tree first on the path), and reports per model the seconds,
the user and item encodings the chunks ask for (distinct users and items per chunk, summed) and
the test AUC.

Usage: .venv/bin/python benchmarks/chunk_order.py WORK --trees OLD NEW [--score nrms naml]
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

CHUNK = 100_000


def one(work: Path, names: list[str]) -> dict:
    import duckdb
    import numpy as np
    import polars as pl

    from genre_dagster.evaluation.metrics import evaluate_impressions
    from genre_dagster.scoring.base import score_in_chunks
    from genre_dagster.scoring.inputs import embedding_fields, load_scorer_inputs
    from genre_dagster.scoring.registry import load_scorer

    conn = duckdb.connect(str(work / "data" / "genre.duckdb"), read_only=True)
    try:
        table = pl.concat(
            [pl.from_arrow(conn.execute(f'select * from scoring."{n}"').arrow()) for n in names]
        )
        configs = [json.loads(c) for c in table["config_json"]]
        fields = sorted({f for c in configs for f in embedding_fields(c)})
        profile = any(c.get("profile") for c in configs)
        started = time.perf_counter()
        inputs = load_scorer_inputs(conn, ("test",), fields, profile=profile, configs=configs)
        read_seconds = time.perf_counter() - started
    finally:
        conn.close()
    data = inputs.splits["test"]
    encodings = _encodings(data)
    models = []
    for record, config in zip(table.iter_rows(named=True), configs, strict=True):
        scorer = load_scorer(work / "data" / "models" / record["scorer_id"])
        kwargs = {"profiles": inputs.profiles} if config.get("profile") else {}
        started = time.perf_counter()
        scores = score_in_chunks(scorer, data, inputs.items, CHUNK, **kwargs)
        seconds = time.perf_counter() - started
        auc = evaluate_impressions(data, np.asarray(scores))["auc"]
        models.append({"scorer": record["name"], "seconds": round(seconds, 1), "auc": auc})
    return {
        "impressions": data.n_impressions,
        "users": int(len(np.unique(data.user_ids))),
        **encodings,
        "read_seconds": round(read_seconds, 1),
        "models": models,
    }


def _encodings(data) -> dict:
    """What the chunks this tree's `score_in_chunks` makes ask a neural scorer to encode:
    distinct users, and distinct items (candidates and history items), per chunk, summed. Found
    by scoring with a scorer that only records them."""
    import numpy as np

    from genre_dagster.arrays import PAD
    from genre_dagster.scoring.base import score_in_chunks

    users: list[int] = []
    items: list[int] = []

    class Recorder:
        def score(self, part, _items):
            users.append(len(np.unique(part.user_ids)))
            history = part.history[part.history != PAD]
            items.append(len(np.unique(np.concatenate([part.cand_items, history]))))
            return np.zeros(len(part.cand_items), dtype=np.float32)

    score_in_chunks(Recorder(), data, None, CHUNK)
    return {"user_encodings": int(sum(users)), "item_encodings": int(sum(items))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("work", type=Path)
    parser.add_argument("--trees", nargs="+", type=Path, default=[])
    parser.add_argument("--score", nargs="+", default=["nrms", "naml"])
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "chunk_order.json"
    )
    args = parser.parse_args()
    work = args.work.resolve()
    if args.one:
        print(json.dumps(one(work, args.score)))
        return
    runs = run_in_trees(__file__, [str(work), "--score", *args.score], args.trees)
    result = {
        "benchmark": "chunk_order",
        "machine": machine.describe(),
        "work": str(work),
        "chunk_impressions": CHUNK,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
