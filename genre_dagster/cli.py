"""`genre-dagster` command line: prepare the project, generate demo data, run the graph."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from genre_dagster.settings import DBT_PROJECT_DIR, PROJECT_ROOT


def _quiet_environment() -> None:
    """Defaults that keep a local run self-contained and free of telemetry."""
    os.environ.setdefault("DAGSTER_HOME", str(PROJECT_ROOT / "dagster_home"))
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    # dbt (run by dagster-dbt as a subprocess) lives next to this interpreter in the venv.
    bin_dir = str(Path(sys.executable).parent)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        template = PROJECT_ROOT / "dagster_home" / "dagster.yaml"
        config.write_text(
            template.read_text() if template.exists() else "telemetry:\n  enabled: false\n"
        )


def prepare_dbt() -> Path:
    """Parse the dbt project so `@dbt_assets` can load (what `dagster dev` does by itself).

    `dbt parse` takes seconds; it is skipped when the manifest was written for the same project
    files, dbt version and DuckDB path (a fingerprint kept next to the manifest)."""
    _quiet_environment()
    from dagster_dbt import DbtProject

    from genre_dagster.settings import load_settings

    os.environ.setdefault("GENRE_DUCKDB_PATH", str(load_settings().duckdb_path))
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
    stamp = Path(project.manifest_path).with_name("genre_prepared_for.txt")
    fingerprint = dbt_fingerprint(DBT_PROJECT_DIR, os.environ["GENRE_DUCKDB_PATH"])
    if Path(project.manifest_path).is_file() and stamp.is_file():
        if stamp.read_text() == fingerprint:
            return project.manifest_path
    project.preparer.prepare(project)
    stamp.write_text(fingerprint)
    return project.manifest_path


def dbt_fingerprint(project_dir: Path, duckdb_path: str) -> str:
    """sha256 over the dbt project's own files (not its build output), the dbt version and the
    DuckDB path: what the parsed manifest depends on."""
    import hashlib
    from importlib.metadata import version

    generated = {"target", "logs", "dbt_packages"}
    digest = hashlib.sha256(f"{version('dbt-core')}|{duckdb_path}".encode())
    for path in sorted(project_dir.rglob("*")):
        relative = path.relative_to(project_dir)
        if path.is_file() and relative.parts[0] not in generated:
            digest.update(f"\0{relative.as_posix()}\0".encode() + path.read_bytes())
    return digest.hexdigest()


def cmd_prepare(_: argparse.Namespace) -> int:
    manifest = prepare_dbt()
    print(f"dbt manifest ready: {manifest}")
    print(f"DAGSTER_HOME: {os.environ['DAGSTER_HOME']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from genre_dagster.demo import DemoWorldConfig, generate_extra_days, generate_world
    from genre_dagster.settings import load_settings

    settings = load_settings()
    out = Path(args.out) if args.out else settings.data_dir / "demo"
    config = DemoWorldConfig.preset(args.preset, seed=args.seed)
    started = time.perf_counter()
    summary = generate_world(config, out)
    print(f"demo world ({args.preset}, seed {args.seed}) written to {out}")
    for key in ("n_news", "n_users", "n_impressions", "n_candidates", "n_clicks", "n_cold_users"):
        if key in summary.get("counts", {}):
            print(f"  {key}: {summary['counts'][key]}")
    if args.extra_days:
        landing = Path(args.landing) if args.landing else settings.landing_dir
        generate_extra_days(config, out, landing, args.extra_days)
        print(f"  {args.extra_days} extra day(s) written to {landing}")
    print(f"  took {time.perf_counter() - started:.1f} s")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Register the days found in the source, ingest each new one, then rebuild the graph."""
    import dagster as dg

    prepare_dbt()
    from genre_dagster.definitions import defs
    from genre_dagster.pipeline import refresh

    instance = dg.DagsterInstance.get()
    source = defs.resources["source"]
    started = time.perf_counter()
    print(f"source: {source.kind} at {source.path}")

    def show(entry: dict) -> None:
        status = "ok" if entry["success"] else "FAILED"
        print(
            f"  {entry['job']} {entry['day']}: {status}, {entry['materializations']} "
            f"materializations, {entry['seconds']:.1f} s (run {entry['run_id'][:8]})"
        )
        for failure in entry["failures"]:
            print(f"    {failure}", file=sys.stderr)

    report = refresh(defs, instance, job_name=args.job, on_run=show)
    if not report.success:
        print("a run failed; open the UI (make ui) -> Runs for its logs", file=sys.stderr)
        return 1
    print(f"done in {time.perf_counter() - started:.1f} s. Open the UI with: make ui")
    return 0


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    parser = argparse.ArgumentParser(prog="genre-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="parse the dbt project (needed once after install)")
    demo = sub.add_parser("demo", help="generate the demo world (MIND format)")
    demo.add_argument("--preset", default="small", choices=["small", "mind_small"])
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--out", default=None, help="default: $GENRE_DATA_DIR/demo")
    demo.add_argument("--extra-days", type=int, default=0, help="also write N later days")
    demo.add_argument("--landing", default=None, help="where extra days go")
    run = sub.add_parser("run", help="ingest new days and materialize the graph")
    run.add_argument("--job", default="nightly_refresh", help="job for the newest day")
    args = parser.parse_args(argv)
    handlers = {"prepare": cmd_prepare, "demo": cmd_demo, "run": cmd_run}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
