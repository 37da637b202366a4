"""Does each GENRE plug-in turn good LLM answers into a better ranking? The oracle demo world.

The demo world knows what no model sees (each item's hidden topic, each user's latent tastes);
`genre_dagster.demo.oracle` writes what a capable LLM would have answered about it, in GENRE's
released formats, plus the same answers shuffled across items and users (the control). This
script imports each set with `genre_dagster.llm_outputs` (the `genre-dagster llm import` path),
trains every scorer through the real Dagster assets, and materializes the leaderboard on the
validation and the test split: each GENRE variant's AUC difference to its base over the same
impressions, with its 95% paired-bootstrap interval.

Goal (issue 16): with informative answers, every variant's validation AUC is above its base by
more than its 95% interval (the interval's low end is above 0); with shuffled answers, none is.

    python benchmarks/genre_oracle.py [--seed 3] [--scale 1] [--out results/genre_oracle.json]

The networks are the tests' small ones (`tests/llm_worlds.py` SMALL_NETWORKS: 32-d, 4 epochs),
so the run takes minutes; the effect sizes are of those networks on this world.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the worlds the tests build: one definition of them

from llm_worlds import (  # noqa: E402
    ORACLE_WORLD,
    SMALL_NETWORKS,
    build_oracle_world,
    import_oracle_answers,
    materialize,
    train_scorers,
)

SPLITS = ("validation", "test")


def _leaderboard_deltas(world: dict, database: Path, split: str, resamples: int) -> dict:
    """Materialize the leaderboard on `split`; each variant's paired AUC difference to its base
    (all users) and its AUC."""
    import duckdb

    from genre_dagster.assets.evaluation import leaderboard

    config = {"split": split, "bootstrap_resamples": resamples, "write_prediction_files": False}
    materialize(
        world, database, [leaderboard], {"ops": {"evaluation__leaderboard": {"config": config}}}
    )
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.sql(
            "select scorer, base, auc, auc_delta, auc_delta_low, auc_delta_high, "
            "auc_delta_verdict, impressions from evaluation.leaderboard "
            "where segment = 'all' and base is not null"
        ).fetchall()
    return {
        scorer: {
            "base": base,
            "auc": round(auc, 4),
            "auc_delta": round(delta, 4),
            "low": round(low, 4),
            "high": round(high, 4),
            "verdict": verdict,
            "impressions": n,
        }
        for scorer, base, auc, delta, low, high, verdict, n in rows
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=ORACLE_WORLD["seed"], help="world seed")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="users and impressions per day times this (more impressions: narrower intervals)",
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/genre_oracle.json")
    args = parser.parse_args()

    from genre_dagster.assets.scoring import ensemble
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    world_config = {
        "seed": args.seed,
        "n_users": round(ORACLE_WORLD["n_users"] * args.scale),
        "impressions_per_day": round(ORACLE_WORLD["impressions_per_day"] * args.scale),
    }
    started = time.perf_counter()
    variants = [spec.name for spec in DEFAULT_SCORERS if spec.base is not None]
    names = [spec.name for spec in DEFAULT_SCORERS]
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="genre_oracle_") as tmp:
        world = build_oracle_world(Path(tmp), **world_config)
        database = Path(tmp) / "genre.duckdb"
        shutil.copy(world["settings"].duckdb_path, database)
        for answers in ("informative", "shuffled"):
            step = time.perf_counter()
            import_oracle_answers(world, database, answers)
            # Informative first: every scorer; then only the variants (the bases read no LLM
            # output, and their rows and models stay in the same warehouse).
            if answers == "informative":  # the leaderboard reads the ensemble's row too
                trained = train_scorers(world, database, names, extra=[ensemble])
            else:
                trained = train_scorers(world, database, variants)
            results[answers] = {
                "inactive_plugins": {
                    n: trained[n]["inactive"] for n in variants if trained[n]["inactive"]
                },
                **{
                    split: _leaderboard_deltas(world, database, split, args.resamples)
                    for split in SPLITS
                },
                "seconds": round(time.perf_counter() - step, 1),
            }
            print(f"{answers}: {time.perf_counter() - step:.0f} s", flush=True)

    informed = results["informative"]["validation"]
    shuffled = results["shuffled"]["validation"]
    goals = {
        "every_variant_above_base_beyond_interval": all(informed[v]["low"] > 0 for v in variants),
        "variants_above_base": sorted(v for v in variants if informed[v]["low"] > 0),
        "shuffled_variants_above_base": sorted(v for v in variants if shuffled[v]["low"] > 0),
    }
    out = {
        "benchmark": "genre_oracle",
        "command": "python benchmarks/genre_oracle.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "world": {**ORACLE_WORLD, **world_config},
        "networks": SMALL_NETWORKS,
        "bootstrap_resamples": args.resamples,
        "seconds": round(time.perf_counter() - started, 1),
        "goals": goals,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(goals, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
