"""End-to-end benchmark: the main command on a generated world, then one nightly increment.

Runs `genre-dagster run` in a fresh data directory and DAGSTER_HOME (so nothing is cached),
measures wall time and peak memory of the whole process tree (GNU time), then reads per-step
durations from the Dagster instance. Optionally adds one extra day to the landing directory and
measures the incremental nightly run the same way.

    python benchmarks/end_to_end.py --preset small --out benchmarks/results/end_to_end_small.json
    python benchmarks/end_to_end.py --preset mind_small --nightly --nightly-retrain-every-days 7

Writes JSON; `benchmarks/report.py` turns the results folder into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Run `cmd` under GNU time; wall seconds and peak RSS (MB) of the largest process."""
    started = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *cmd], env=env, cwd=ROOT, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit code {proc.returncode}")
    return {
        "wall_seconds": round(wall, 1),
        "peak_rss_mb": round(int(peak.group(1)) / 1024, 1) if peak else None,
        "stdout_tail": proc.stdout[-1500:],
    }


def _runs_since(instance, since: float) -> list[str]:
    """Ids of the runs of `instance` created after `since` (a Unix time)."""
    return [
        run.dagster_run.run_id
        for run in instance.get_run_records()
        if run.create_timestamp.timestamp() >= since
    ]


def _step_seconds(dagster_home: Path, since: float = 0.0) -> dict[str, float]:
    """Total seconds per step key over the runs created after `since` (a Unix time)."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    totals: dict[str, float] = {}
    with dg.DagsterInstance.get() as instance:
        for run_id in _runs_since(instance, since):
            for stat in instance.get_run_step_stats(run_id):
                if stat.start_time and stat.end_time:
                    totals[stat.step_key] = totals.get(stat.step_key, 0.0) + (
                        stat.end_time - stat.start_time
                    )
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


def _step_peaks(dagster_home: Path, since: float = 0.0) -> dict[str, dict[str, float]]:
    """Per step key over the runs created after `since`: `peak`, the largest
    `step_peak_rss_mb` its materializations recorded (genre_dagster/step_budget.py: the run's
    process and its children while the step ran, so memory earlier steps still hold counts),
    and `growth`, that peak minus the step's `step_rss_at_start_mb`: what the step itself added.
    A step that ran in several runs keeps its largest figures."""
    peaks: dict[str, dict[str, float]] = {}
    for step_key, metadata in _materializations(dagster_home, since):
        if "step_peak_rss_mb" not in metadata:
            continue
        peak = metadata["step_peak_rss_mb"].value
        growth = peak - metadata["step_rss_at_start_mb"].value
        old = peaks.get(step_key, {"peak": 0.0, "growth": 0.0})
        peaks[step_key] = {
            "peak": max(old["peak"], peak),
            "growth": round(max(old["growth"], growth), 1),
        }
    return dict(sorted(peaks.items(), key=lambda kv: -kv[1]["peak"]))


def _materializations(dagster_home: Path, since: float):
    """(step key, metadata) of every asset materialization in the runs created after `since`."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        for run_id in _runs_since(instance, since):
            records = instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
            ).records
            for record in records:
                event = record.event_log_entry.dagster_event
                yield event.step_key, event.event_specific_data.materialization.metadata


# Assets whose own metadata says how fast the model stages ran (LLM tokens/s, texts/s).
MODEL_STAGES = [
    "enrichment/news_summaries",
    "enrichment/user_profiles",
    "enrichment/synthetic_items",
    "embeddings/news_embeddings",
    "embeddings/user_profile_embeddings",
]


def _validation_sources(dagster_home: Path, since: float = 0.0) -> dict[str, str]:
    """Per scorer asset materialized after `since`: where its validation metrics came from
    (`validation_source`: saved scores, partly saved, or scored tonight; absent when it
    trained)."""
    out: dict[str, str] = {}
    for step_key, metadata in _materializations(dagster_home, since):
        if step_key.startswith("scoring__") and "validation_source" in metadata:
            out[step_key] = str(metadata["validation_source"].value)
    return dict(sorted(out.items()))


def _stage_metadata(dagster_home: Path, since: float = 0.0) -> dict[str, dict]:
    """Numeric metadata of the newest materialization of each model stage after `since`."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    out: dict[str, dict] = {}
    with dg.DagsterInstance.get() as instance:
        for key in MODEL_STAGES:
            event = instance.get_latest_materialization_event(dg.AssetKey(key.split("/")))
            if event is None or event.timestamp < since:
                continue
            metadata = event.asset_materialization.metadata
            out[key] = {
                name: value.value
                for name, value in metadata.items()
                if isinstance(value.value, int | float | str) and len(str(value.value)) < 80
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--preset", default="small", choices=["small", "mind_small", "mind_medium", "mind_large"]
    )
    parser.add_argument("--llm", default="local", help="GENRE_LLM_BACKEND for the run")
    parser.add_argument("--nightly", action="store_true", help="also measure one new day")
    parser.add_argument(
        "--nightly-retrain-every-days",
        type=int,
        default=None,
        help="GENRE_RETRAIN_EVERY_DAYS for the nightly run (default: train every run)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--work",
        default=None,
        help="work in this folder instead of a temporary one (kept); with --save-cold a copy of "
        "the state after the full refresh goes to WORK.cold",
    )
    parser.add_argument("--save-cold", action="store_true", help="keep WORK.cold (needs --work)")
    parser.add_argument(
        "--nightly-only",
        action="store_true",
        help="restore WORK from WORK.cold and measure only the nightly run (needs --work)",
    )
    parser.add_argument(
        "--nights",
        type=int,
        default=1,
        help=(
            "consecutive new days to measure, one run each (the last is reported as the "
            "nightly; every night is in `nightly_increments`): a night reads what the night "
            "before kept, such as the leaderboard's scores of a reused model"
        ),
    )
    parser.add_argument(
        "--resume-at-night",
        type=int,
        default=0,
        help=(
            "with --nightly-only: measure on WORK as it is (no restore from WORK.cold), its "
            "nights starting at this extra day (0-based): the nights of an earlier --nights "
            "run go on"
        ),
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if (args.save_cold or args.nightly_only) and not args.work:
        parser.error("--save-cold and --nightly-only need --work")
    if args.nightly_only and not args.out:
        parser.error("--nightly-only needs --out (it measures no full refresh to report)")

    if args.resume_at_night and not (args.nightly_only and args.work):
        parser.error("--resume-at-night needs --nightly-only and --work")
    if args.resume_at_night:
        work = Path(args.work).resolve()
        args.keep = True
    elif args.work:
        work = Path(args.work).resolve()
        cold = work.with_name(work.name + ".cold")
        if work.exists():
            shutil.rmtree(work)
        if args.nightly_only:
            if not cold.is_dir():
                parser.error(f"--nightly-only: no saved cold state at {cold} (run --save-cold)")
            shutil.copytree(cold, work, symlinks=True)
        else:
            work.mkdir(parents=True)
        args.keep = True
    else:
        work = Path(tempfile.mkdtemp(prefix=f"genre-e2e-{args.preset}-"))
    home = work / "dagster_home"
    if not args.nightly_only:
        home.mkdir()
        (home / "dagster.yaml").write_text((ROOT / "dagster_home" / "dagster.yaml").read_text())
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GENRE_DATA_DIR": str(work / "data"),
        "GENRE_DEMO_PRESET": args.preset,
        "GENRE_LLM_BACKEND": args.llm,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
    }
    result: dict = {
        "benchmark": "end_to_end",
        "preset": args.preset,
        "llm_backend": args.llm,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**describe(), "load_average_1m_at_start": os.getloadavg()[0]},
    }
    if os.environ.get("ONEDNN_MAX_CPU_ISA"):
        # oneDNN (torch's bf16 matmuls on CPU) capped below the CPU's ISA, e.g. AVX512_CORE_BF16
        # on an AMX machine: how the run does on a CPU without AMX tiles
        result["machine"]["onednn_max_cpu_isa"] = os.environ["ONEDNN_MAX_CPU_ISA"]
    genre = str(BIN / "genre-dagster")
    if not args.nightly_only:
        result["full_refresh"] = _timed([genre, "run"], env)
        result["full_refresh"]["step_seconds"] = _step_seconds(home)
        result["full_refresh"]["step_peak_rss_mb"] = _step_peaks(home)
        # the generated world's size: what the scaling curve in benchmarks/report.py plots against
        world = json.loads((work / "data" / "demo" / "world.json").read_text())
        result["world"] = world["counts"]
        result["full_refresh"]["model_stages"] = _stage_metadata(home)
        if args.save_cold:
            shutil.rmtree(cold, ignore_errors=True)
            shutil.copytree(work, cold, symlinks=True)
    if args.nightly or args.nightly_only:
        from genre_dagster.demo import DemoWorldConfig, generate_extra_days

        config = DemoWorldConfig.preset(args.preset)
        nightly_env = dict(env)
        if args.nightly_retrain_every_days is not None:
            nightly_env["GENRE_RETRAIN_EVERY_DAYS"] = str(args.nightly_retrain_every_days)
            result["nightly_retrain_every_days"] = args.nightly_retrain_every_days
        nights = []
        for night in range(args.resume_at_night, args.resume_at_night + args.nights):
            landing = work / "data" / "landing"
            generate_extra_days(config, work / "data" / "demo", landing, 1, first=night)
            since = time.time()
            nightly = _timed([genre, "run"], nightly_env)
            nightly["step_seconds"] = _step_seconds(home, since)
            nightly["step_peak_rss_mb"] = _step_peaks(home, since)
            nightly["model_stages"] = _stage_metadata(home, since)
            nightly["validation_sources"] = _validation_sources(home, since)
            nights.append(nightly)
            nightly["extra_day"] = night
            print(f"night {night + 1}: {nightly['wall_seconds']} s", flush=True)
        result["nightly_increment"] = nights[-1]
        if len(nights) > 1:
            result["nightly_increments"] = nights
    result["machine"]["load_average_1m_at_end"] = os.getloadavg()[0]
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"end_to_end_{args.preset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2)[:4000])
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
