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

    python benchmarks/genre_oracle.py [--seeds 3,4,5] [--scale 1]
        [--out results/genre_oracle.seeds345.json]   (one command)

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
    and its AUC, for all users (the goal) and for cold users (where a generated item acts)."""
    import duckdb

    from genre_dagster.assets.evaluation import leaderboard

    config = {"split": split, "bootstrap_resamples": resamples, "write_prediction_files": False}
    materialize(
        world, database, [leaderboard], {"ops": {"evaluation__leaderboard": {"config": config}}}
    )
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.sql(
            "select scorer, base, auc, auc_delta, auc_delta_low, auc_delta_high, "
            "auc_delta_verdict, impressions, segment from evaluation.leaderboard "
            "where segment in ('all', 'cold') and base is not null order by segment"
        ).fetchall()
    out: dict[str, dict] = {}
    for scorer, base, auc, delta, low, high, verdict, n, segment in rows:
        figures = {
            "auc": round(auc, 4),
            "auc_delta": round(delta, 4),
            "low": round(low, 4),
            "high": round(high, 4),
            "verdict": verdict,
            "impressions": n,
        }
        if segment == "all":
            out.setdefault(scorer, {}).update({"base": base, **figures})
        else:
            out.setdefault(scorer, {})["cold_users"] = figures
    return out


def run_world(seed: int, scale: float, resamples: int) -> dict:
    """Build the oracle world for `seed`, train every scorer on the informative then on the
    shuffled answers, and measure every variant against its base on both splits."""
    from genre_dagster.assets.scoring import ensemble
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    world_config = {
        "seed": seed,
        "n_users": round(ORACLE_WORLD["n_users"] * scale),
        "impressions_per_day": round(ORACLE_WORLD["impressions_per_day"] * scale),
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
                    split: _leaderboard_deltas(world, database, split, resamples)
                    for split in SPLITS
                },
                "seconds": round(time.perf_counter() - step, 1),
            }
            print(f"seed {seed} {answers}: {time.perf_counter() - step:.0f} s", flush=True)

    informed = results["informative"]["validation"]
    shuffled = results["shuffled"]["validation"]
    goals = {
        "every_variant_above_base_beyond_interval": all(informed[v]["low"] > 0 for v in variants),
        "variants_above_base": sorted(v for v in variants if informed[v]["low"] > 0),
        "variants_above_base_on_cold_users": sorted(
            v for v in variants if informed[v].get("cold_users", {}).get("low", 0) > 0
        ),
        "shuffled_variants_above_base": sorted(v for v in variants if shuffled[v]["low"] > 0),
    }
    return {
        "world": {**ORACLE_WORLD, **world_config},
        "seconds": round(time.perf_counter() - started, 1),
        "goals": goals,
        "results": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seeds",
        default=str(ORACLE_WORLD["seed"]),
        help="world seeds, comma-separated (each builds and trains its own world)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="users and impressions per day times this (more impressions: narrower intervals)",
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/genre_oracle.json")
    args = parser.parse_args()

    started = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    worlds: dict[str, dict] = {}
    out: dict = {}
    for seed in seeds:  # written after every world: a long run keeps what it measured
        worlds[str(seed)] = run_world(seed, args.scale, args.resamples)
        out = _write(args, worlds, started)
    print(json.dumps(out["goals"], indent=1))
    print(f"wrote {args.out}")


def _write(args: argparse.Namespace, worlds: dict[str, dict], started: float) -> dict:
    every = [w["goals"]["every_variant_above_base_beyond_interval"] for w in worlds.values()]
    out = {
        "benchmark": "genre_oracle",
        "command": "python benchmarks/genre_oracle.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "networks": SMALL_NETWORKS,
        "bootstrap_resamples": args.resamples,
        "seconds": round(time.perf_counter() - started, 1),
        "goals": {
            "seeds_with_every_variant_above_base": f"{sum(every)} of {len(every)}",
            **{f"seed {s}": w["goals"] for s, w in worlds.items()},
        },
        "seeds": worlds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
