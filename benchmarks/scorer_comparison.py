"""Do the hybrid scorers of issue 21 beat what the graph has today? An honest comparison.

For each demo world preset and world seed, this script builds the world as the nightly job does
(`tests/llm_worlds.py` build_world: ingest every day, dbt features), trains every scorer
through the real Dagster assets and materializes the leaderboard: AUC, MRR and nDCG@10 per
scorer for all, warm and cold users, beside the random and the oracle (true click probability)
rows. The scorers: the base default scorers (popularity, content_similarity,
matrix_factorization, sklearn_ranker, nrms, naml), today's ensemble, the optional hybrid_naml
and sequential, and hybrid_naml's id-only ablation (`hybrid_naml_id_only`: the same
composition with `id_embedding: "only"`, content not read). GENRE's variants are left out: no
LLM answers in this benchmark (they are measured by benchmarks/genre_oracle.py).

Beside the leaderboard's segments it measures cold items: each scorer's per-impression AUC over
the candidates the train split never shows (neither in a history nor as a candidate: the items
hybrid_naml has no id vector for and scores from content alone), averaged over the impressions
with a clicked and a non-clicked such candidate. Neural scorers report seconds per training
epoch (their training log; validation after each epoch not included). The machines are shared:
compare the seconds of scorers within one run, not across runs.

Goals (issue 21), on the test split, over world seeds (mean, sample std):
- on every world, the best single scorer's AUC (all users; a trained scorer other than the
  ensemble and the id-only ablation) beats the ensemble's by more than the seed spread:
  difference of the means > the larger of the two stds (rule used for every "beyond spread"
  below; with one seed the spread is not measured and the goal is null);
- hybrid_naml beats naml (its content-only ablation) and hybrid_naml_id_only (mean AUC higher;
  whether beyond the spread is recorded too);
- news-style worlds (`small`, `mind_small`): the best scorer (the ensemble included) reaches
  >= 0.6 of the oracle's gain over random, share = (auc - auc_random) / (auc_oracle -
  auc_random), all users, averaged over seeds;
- hybrid_naml not worse than naml on cold users and on cold items: its mean AUC is at least
  naml's minus the seed spread;
- hybrid_naml and sequential train within 2x of naml's seconds per epoch.

    python benchmarks/scorer_comparison.py [--worlds small,catalogue_small] [--seeds 1,2,3]
        [--small-networks] [--scale 1] [--out results/scorer_comparison.json]

The networks are the product's defaults unless `--small-networks` (the tests' 32-d, 4 epochs:
a smoke run). Each neural scorer trains with its config `seed` set to the world seed, so the
seed spread covers the world and the training's randomness. The MIND-small-sized timing is
`--worlds mind_small --seeds 1`. Results are written after every world seed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the worlds the tests build: one definition of them
sys.path.insert(0, str(ROOT))  # measure the checkout this script is in

from llm_worlds import SMALL_NETWORKS, build_world, enrichment_assets, materialize  # noqa: E402

SEGMENTS = ("all", "warm", "cold")
METRICS = ("auc", "mrr", "ndcg@10")
REFERENCES = ("random", "oracle")
NEWS_STYLE = ("small", "mind_small")  # worlds where the oracle-gain goal applies
HYBRID, CONTENT, ID_ONLY, ENSEMBLE = "hybrid_naml", "naml", "hybrid_naml_id_only", "ensemble"
NEW_SCORERS = (HYBRID, "sequential")
MAX_EPOCH_RATIO = 2.0
MIN_ORACLE_SHARE = 0.6


# ------------------------------------------------------------------ the scorers


def comparison_specs() -> tuple:
    """The scorers compared: the base default ones (no GENRE variant), the two optional hybrids
    and hybrid_naml's id-only ablation (an extra spec, not a product scorer)."""
    from genre_dagster.scoring.variants import DEFAULT_SCORERS, HYBRID_NAML, SEQUENTIAL, ScorerSpec

    id_only = ScorerSpec(
        ID_ONLY,
        HYBRID_NAML.kind,
        {**HYBRID_NAML.config, "id_embedding": "only", "id_dropout": 0.0},
        variant="item id only",
        description="hybrid_naml's id-only ablation: a learned vector per item seen in "
        "training, content not read; new items share one vector.",
    )
    bases = tuple(spec for spec in DEFAULT_SCORERS if spec.base is None)
    return (*bases, HYBRID_NAML, SEQUENTIAL, id_only)


def _scorer_config(spec, seed: int, small: bool) -> dict:
    """Op config of one scorer: neural ones train with the world seed (and the small networks
    when asked); the others keep their config."""
    from genre_dagster.scoring.registry import NEURAL_KINDS

    if spec.kind not in NEURAL_KINDS:
        return {}
    overrides = {**(SMALL_NETWORKS if small else {}), "seed": seed}
    return {"config": {"overrides_json": json.dumps(overrides)}}


def _seconds_per_epoch(metadata: dict) -> dict | None:
    """Training time of a neural scorer from its materialization's training log."""
    log = metadata.get("training_log") or {}
    epochs = [e["seconds"] for e in log.get("epochs") or []]
    if not epochs:
        return None
    return {
        "seconds_per_epoch": round(statistics.mean(epochs), 3),
        "epochs": len(epochs),
        "best_epoch": log.get("best_epoch"),
        "train_seconds": metadata.get("train_seconds"),
        # what else ran on the machine meanwhile: epoch times of one scorer moved 4x with it
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def train_all(world: dict, database: Path, specs: tuple, seed: int, small: bool, tag: str) -> dict:
    """Embed the items, then train each scorer (one run each, for a progress line) and the
    ensemble; the training time of every neural scorer."""
    from genre_dagster.assets import embeddings
    from genre_dagster.assets.scoring import build_scorer_asset, ensemble

    step = time.perf_counter()
    materialize(world, database, [*enrichment_assets(), embeddings.news_embeddings])
    print(f"{tag} embeddings {time.perf_counter() - step:.0f} s", flush=True)
    training = {}
    for spec in specs:
        step = time.perf_counter()
        ops = {f"scoring__{spec.name}": _scorer_config(spec, seed, small)}
        metadata = materialize(world, database, [build_scorer_asset(spec)], {"ops": ops})
        timing = _seconds_per_epoch(metadata[spec.name])
        if timing is not None:
            training[spec.name] = timing
        print(f"{tag} {spec.name} {time.perf_counter() - step:.0f} s", flush=True)
    step = time.perf_counter()
    materialize(world, database, [ensemble])
    print(f"{tag} {ENSEMBLE} {time.perf_counter() - step:.0f} s", flush=True)
    return training


# ------------------------------------------------------------------ measuring


def leaderboard_rows(world: dict, database: Path, specs: tuple, split: str, resamples: int):
    """Materialize the leaderboard over `specs` and the ensemble on `split`; per scorer (and
    the random and oracle rows) per segment: AUC with its 95% interval, MRR, nDCG@10."""
    import duckdb

    from genre_dagster.assets.evaluation import build_leaderboard

    config = {"split": split, "bootstrap_resamples": resamples, "write_prediction_files": False}
    run = {"ops": {"evaluation__leaderboard": {"config": config}}}
    materialize(world, database, [build_leaderboard(specs)], run)
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.execute(
            'select scorer, segment, auc, auc_low, auc_high, mrr, "ndcg@10", impressions '
            "from evaluation.leaderboard where split = ?",
            [split],
        ).fetchall()
    out: dict[str, dict] = {}
    for scorer, segment, auc, low, high, mrr, ndcg, n in rows:
        out.setdefault(scorer, {})[segment] = {
            "auc": _round(auc),
            "auc_low": _round(low),
            "auc_high": _round(high),
            "mrr": _round(mrr),
            "ndcg@10": _round(ndcg),
            "impressions": n,
        }
    return out


def cold_item_metrics(database: Path, names: list[str], truth_root: Path, split: str) -> dict:
    """Each scorer's (and random's, the oracle's) AUC and MRR over the candidates the train
    split never shows, per impression with a clicked and a non-clicked such candidate."""
    import duckdb
    import numpy as np

    from genre_dagster.arrays import PAD
    from genre_dagster.evaluation.leaderboard import oracle_scores
    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.scoring.inputs import embedding_fields, load_scorer_inputs

    with duckdb.connect(str(database), read_only=True) as conn:
        records = {
            name: conn.sql(f"select scorer_id, config_json from scoring.{name}").fetchone()
            for name in names
        }
        fields = sorted({f for _, c in records.values() for f in embedding_fields(json.loads(c))})
        inputs = load_scorer_inputs(conn, ("train", split), fields)
    train, data = inputs.splits["train"], inputs.splits[split]
    shown = np.zeros(inputs.items.n_items, dtype=bool)
    shown[train.history[train.history != PAD]] = True
    shown[train.cand_items] = True
    cold = ~shown[data.cand_items] & (data.labels >= 0)
    store = ModelStore(root=str(database.parent / "models"))
    scores = {name: store.load(sid).score(data, inputs.items) for name, (sid, _) in records.items()}
    scores["random"] = np.random.default_rng(0).random(len(data.cand_items))
    oracle = oracle_scores(truth_root, inputs.behaviors[split])
    if oracle is not None:
        scores["oracle"] = oracle
    return {
        "cold_candidates": int(cold.sum()),
        "labeled_candidates": int((data.labels >= 0).sum()),
        "scorers": {name: _restricted_metrics(data, v, cold) for name, v in scores.items()},
    }


def _restricted_metrics(data, scores, keep) -> dict:
    """AUC and MRR per impression over the candidates `keep`, averaged over impressions."""
    from genre_dagster.evaluation.metrics import impression_metrics, summarize

    if not keep.any():
        return {"auc": None, "mrr": None, "impressions": 0}
    per = impression_metrics(
        data.candidate_impression[keep], data.labels[keep], scores[keep].astype("float64")
    )
    summary = summarize(per)
    return {
        "auc": _round(summary["auc"]),
        "mrr": _round(summary["mrr"]),
        "impressions": summary["n_impressions"] - summary["n_auc_skipped"],
    }


def oracle_gain_shares(rows: dict) -> dict[str, float | None]:
    """(auc - auc_random) / (auc_oracle - auc_random) of every scorer, all users."""
    if "oracle" not in rows or "random" not in rows:
        return {}
    low, high = rows["random"]["all"]["auc"], rows["oracle"]["all"]["auc"]
    return {
        name: _round((by["all"]["auc"] - low) / (high - low))
        for name, by in rows.items()
        if name not in REFERENCES and high > low
    }


def run_seed(name: str, seed: int, args: argparse.Namespace) -> dict:
    """Build world `name` with `seed`, train every scorer and measure them on the splits."""
    from genre_dagster.demo.config import PRESETS, DemoWorldConfig

    base = PRESETS[name]
    scaled = {
        "n_users": round(base.n_users * args.scale),
        "impressions_per_day": round(base.impressions_per_day * args.scale),
    }
    config = DemoWorldConfig.preset(name, seed=seed, **scaled)
    specs = comparison_specs()
    names = [spec.name for spec in specs] + [ENSEMBLE]
    tag = f"{name} seed {seed}"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scorer_comparison_") as tmp:
        step = time.perf_counter()
        world = build_world(Path(tmp), config)
        print(f"{tag} world {time.perf_counter() - step:.0f} s", flush=True)
        database = Path(tmp) / "genre.duckdb"
        shutil.copy(world["settings"].duckdb_path, database)
        training = train_all(world, database, specs, seed, args.small_networks, tag)
        splits = {}
        for split in args.splits:
            step = time.perf_counter()
            splits[split] = leaderboard_rows(world, database, specs, split, args.resamples)
            print(f"{tag} leaderboard {split} {time.perf_counter() - step:.0f} s", flush=True)
        step = time.perf_counter()
        cold_items = cold_item_metrics(database, names, Path(tmp) / "mind", "test")
        print(f"{tag} cold items {time.perf_counter() - step:.0f} s", flush=True)
    return {
        "world": config.to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
        "splits": splits,
        "cold_items": cold_items,
        "oracle_gain_share": oracle_gain_shares(splits["test"]),
        "training": training,
    }


# ------------------------------------------------------------------ over seeds


def _spread(values: list[float]) -> dict:
    """Mean and sample std (None with one value) of the measured `values`."""
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else None
    return {"mean": _round(statistics.mean(values)), "std": _round(std), "n": len(values)}


def summarize_world(seeds: dict[str, dict]) -> dict:
    """Per scorer: mean and std over seeds of the test metrics per segment (cold items too),
    the oracle-gain share and seconds per epoch."""
    runs = list(seeds.values())
    names = list(runs[0]["splits"]["test"])
    summary: dict[str, dict] = {}
    for name in names:
        by = {
            segment: {
                m: _spread([r["splits"]["test"][name][segment][m] for r in runs]) for m in METRICS
            }
            for segment in SEGMENTS
        }
        if name in runs[0]["cold_items"]["scorers"]:
            by["cold_items"] = {
                m: _spread([r["cold_items"]["scorers"][name][m] for r in runs])
                for m in ("auc", "mrr")
            }
        if name not in REFERENCES:
            by["oracle_gain_share"] = _spread([r["oracle_gain_share"].get(name) for r in runs])
        if name in runs[0]["training"]:
            by["seconds_per_epoch"] = _spread(
                [r["training"][name]["seconds_per_epoch"] for r in runs]
            )
        summary[name] = by
    return summary


def _compare(summary: dict, a: str, b: str, segment: str = "all") -> dict:
    """Scorer `a` against `b` on mean test AUC of `segment`: the difference and the spread (the
    larger of their seed stds, None with one seed)."""
    sa, sb = summary[a][segment]["auc"], summary[b][segment]["auc"]
    if sa["mean"] is None or sb["mean"] is None:
        return {"a": a, "b": b, "segment": segment, "difference": None}
    stds = [s for s in (sa["std"], sb["std"]) if s is not None]
    spread = max(stds) if len(stds) == 2 else None
    difference = sa["mean"] - sb["mean"]
    return {
        "a": a,
        "b": b,
        "segment": segment,
        "mean_a": sa["mean"],
        "mean_b": sb["mean"],
        "difference": _round(difference),
        "spread": spread,
        "beats": difference > 0,
        "beyond_spread": None if spread is None else difference > spread,
        "not_worse": None if spread is None else difference >= -spread,
    }


def world_goals(name: str, summary: dict) -> dict:
    """The issue's goals on one world, each with the numbers it compares."""
    trained = [n for n in summary if n not in (*REFERENCES, ENSEMBLE, ID_ONLY)]
    best = max(trained, key=lambda n: summary[n]["all"]["auc"]["mean"])
    scorers = [*trained, ENSEMBLE]
    best_any = max(scorers, key=lambda n: summary[n]["all"]["auc"]["mean"])
    share = summary[best_any]["oracle_gain_share"]["mean"]
    vs_ensemble = _compare(summary, best, ENSEMBLE)
    vs_content = _compare(summary, HYBRID, CONTENT)
    vs_ids = _compare(summary, HYBRID, ID_ONLY)
    cold_users = _compare(summary, HYBRID, CONTENT, "cold")
    cold_items = _compare(summary, HYBRID, CONTENT, "cold_items")
    naml_epoch = summary[CONTENT]["seconds_per_epoch"]["mean"]
    epoch_ratios = {
        n: _round(summary[n]["seconds_per_epoch"]["mean"] / naml_epoch) for n in NEW_SCORERS
    }  # every neural scorer logs its epochs: a missing one is a bug, let it raise
    return {
        "best_single_beats_ensemble_beyond_spread": vs_ensemble["beyond_spread"],
        "best_single_vs_ensemble": vs_ensemble,
        "hybrid_beats_content_and_id_only": bool(vs_content.get("beats") and vs_ids.get("beats")),
        "hybrid_vs_content": vs_content,
        "hybrid_vs_id_only": vs_ids,
        "best_scorer_oracle_gain_share": {"scorer": best_any, "share": share},
        "oracle_gain_share_at_least_0.6": (
            None if name not in NEWS_STYLE or share is None else share >= MIN_ORACLE_SHARE
        ),
        "hybrid_not_worse_on_cold_users": cold_users["not_worse"],
        "hybrid_vs_content_cold_users": cold_users,
        "hybrid_not_worse_on_cold_items": cold_items.get("not_worse"),
        "hybrid_vs_content_cold_items": cold_items,
        "seconds_per_epoch_over_naml": epoch_ratios,
        "new_scorers_within_2x_of_naml_per_epoch": all(
            r <= MAX_EPOCH_RATIO for r in epoch_ratios.values()
        ),
    }


# ------------------------------------------------------------------ the run


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or value != value else round(float(value), digits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="small,catalogue_small", help="demo world presets")
    parser.add_argument("--seeds", default="1,2,3", help="world seeds, comma-separated")
    parser.add_argument(
        "--splits", default="test,validation", help="leaderboard splits (goals read test)"
    )
    parser.add_argument(
        "--small-networks", action="store_true", help="the tests' small networks (smoke runs)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="users and impressions per day times this"
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/scorer_comparison.json"
    )
    args = parser.parse_args()
    args.splits = args.splits.split(",")
    if "test" not in args.splits:
        parser.error("--splits must include test (the goals read it)")

    started = time.perf_counter()
    worlds: dict[str, dict] = {}
    for name in args.worlds.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            # written after every world seed: a long run keeps what it measured
            seeds = worlds.setdefault(name, {"seeds": {}})["seeds"]
            seeds[str(seed)] = run_seed(name, seed, args)
            worlds[name]["summary"] = summarize_world(seeds)
            worlds[name]["goals"] = world_goals(name, worlds[name]["summary"])
            out = _write(args, worlds, started)
    print(json.dumps(out["goals"], indent=1))
    print(f"wrote {args.out}")


def _write(args: argparse.Namespace, worlds: dict[str, dict], started: float) -> dict:
    from genre_dagster.scoring.variants import ENSEMBLE_MEMBERS
    from genre_dagster.settings import COLD_MAX_CLICKS

    out = {
        "benchmark": "scorer_comparison",
        "command": "python benchmarks/scorer_comparison.py " + " ".join(sys.argv[1:]),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "networks": SMALL_NETWORKS if args.small_networks else "product defaults",
        "scale": args.scale,
        "bootstrap_resamples": args.resamples,
        "cold_max_clicks": COLD_MAX_CLICKS,  # the leaderboard's cold users
        "ensemble_members": list(ENSEMBLE_MEMBERS),  # the ensemble's, as the default graph has it
        "seconds": round(time.perf_counter() - started, 1),
        "goals": {name: w["goals"] for name, w in worlds.items()},
        "worlds": worlds,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
