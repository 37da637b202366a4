"""Training options of the neural scorers on a real world: seconds per epoch and validation AUC.

Point it at a folder left by `benchmarks/end_to_end.py --keep` (its DuckDB file holds the
embeddings and splits of a full run). Each variant trains the same preset on the same train
split, with the same seed and threads, and is validated on the same validation split after
every epoch, one variant after the other in one process:

    python benchmarks/training_options.py /tmp/genre-e2e-mind_small-XXXX \
        --variant '{}' --variant '{"batching": "shuffled"}'

Writes benchmarks/results/training_options_<preset>.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("world", type=Path, help="folder kept by end_to_end.py --keep")
    parser.add_argument("--preset", default="nrms", help="neural preset (nrms, naml, ...)")
    parser.add_argument(
        "--variant", action="append", default=None, help="JSON overrides (repeatable)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: results/training_options_<preset>.json"
    )
    args = parser.parse_args()
    variants = [json.loads(v) for v in (args.variant or ["{}"])]

    import duckdb
    import torch

    from genre_dagster.scoring.inputs import load_scorer_inputs
    from genre_dagster.scoring.neural import from_preset

    torch.set_num_threads(args.threads)
    probe = from_preset(args.preset)
    fields = sorted(set(probe.config["fields"]) | set(probe.config["optional_fields"]))
    started = time.perf_counter()
    conn = duckdb.connect(str(args.world / "data" / "genre.duckdb"), read_only=True)
    try:
        inputs = load_scorer_inputs(conn, ("train", "validation"), fields)
    finally:
        conn.close()
    load_seconds = time.perf_counter() - started
    train, valid = inputs.splits["train"], inputs.splits["validation"]
    rows = []
    for overrides in variants:
        scorer = from_preset(args.preset, **overrides)
        t0 = time.perf_counter()
        log = scorer.fit(train, inputs.items, valid)
        seconds = time.perf_counter() - t0
        epochs = [
            {
                "epoch": e["epoch"],
                "seconds": round(e["seconds"], 2),
                "samples_per_s": round(e["samples_per_s"], 1),
                "val_auc": round(e["val_auc"], 4),
            }
            for e in log["epochs"]
        ]
        rows.append(
            {
                "overrides": overrides,
                "scorer_id": scorer.scorer_id,
                "fit_seconds": round(seconds, 1),
                "best_epoch": log["best_epoch"],
                "best_val_auc": round(log["best_val_auc"], 4),
                "mean_epoch_seconds": round(sum(e["seconds"] for e in epochs) / len(epochs), 2),
                "epochs": epochs,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["mean_epoch_seconds"]
    for row in rows:
        row["epoch_speedup_vs_first"] = round(base / row["mean_epoch_seconds"], 2)
    result = {
        "benchmark": "training_options",
        "command": "python benchmarks/training_options.py <kept world> "
        + " ".join(f"--variant '{json.dumps(v)}'" for v in variants)
        + f" --preset {args.preset} --threads {args.threads}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**describe(), "torch": torch.__version__, "threads": args.threads},
        "data": {
            "world": args.world.name,
            "train_impressions": train.n_impressions,
            "validation_impressions": valid.n_impressions,
            "items": inputs.items.n_items,
            "load_seconds": round(load_seconds, 1),
        },
        "preset": args.preset,
        "variants": rows,
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"training_options_{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
