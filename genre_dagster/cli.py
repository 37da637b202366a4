"""`genre-dagster` command line: prepare the project, generate demo data, run the graph, and
export / import LLM answers produced elsewhere (`llm export`, `llm import`)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

from genre_dagster.settings import DBT_PROJECT_DIR, PROJECT_ROOT


def _quiet_environment() -> None:
    """Defaults that keep a local run self-contained and free of telemetry, set in this
    process's environment because Dagster, dbt and the model libraries (and the processes they
    start) read them from there."""
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

    from genre_dagster.duckdb_lock import dbt_duckdb_env
    from genre_dagster.settings import load_settings

    # dbt's profile (profiles.yml) reads the database path and the DuckDB settings from these
    # variables; the build (assets/features.py) sets the same, so dbt keeps this parse
    os.environ.setdefault("GENRE_DUCKDB_PATH", str(load_settings().duckdb_path))
    for name, value in dbt_duckdb_env(os.environ["GENRE_DUCKDB_PATH"]).items():
        os.environ.setdefault(name, value)
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
    if args.llm_answers:
        from genre_dagster.demo.oracle import write_oracle_answers

        for variant, files in write_oracle_answers(config, out, Path(args.llm_answers)).items():
            print(f"  {variant} LLM answers: {', '.join(str(f) for f in files.values())}")
    print(f"  took {time.perf_counter() - started:.1f} s")
    return 0


# Source flags and the environment variables they set (flags win over the environment).
SOURCE_FLAGS = {
    "source": "GENRE_SOURCE",
    "path": "GENRE_SOURCE_PATH",
    "column_map": "GENRE_COLUMN_MAP",
    "domain": "GENRE_DOMAIN",
}


def _source_arguments(parser: argparse.ArgumentParser) -> None:
    from genre_dagster.settings import SOURCE_KINDS

    group = parser.add_argument_group("data source (default: the GENRE_* environment variables)")
    group.add_argument("--source", choices=SOURCE_KINDS, help="sets GENRE_SOURCE")
    group.add_argument(
        "--path",
        help="sets GENRE_SOURCE_PATH: a MIND root (train/, dev/, test/) or a folder with the "
        "items and interactions files",
    )
    group.add_argument(
        "--column-map",
        metavar="JSON_OR_FILE",
        help='sets GENRE_COLUMN_MAP (generic data): a JSON object such as {"item_id": '
        '"book_id"}, or a .json file holding one',
    )
    group.add_argument(
        "--domain", help="sets GENRE_DOMAIN: news, books, products or any noun phrase"
    )


def _apply_source_arguments(args: argparse.Namespace) -> None:
    """Write the source flags into the environment the definitions are built from, and check
    the resulting source now: a wrong flag fails here, before any work, naming the fix."""
    import json

    from genre_dagster.settings import load_settings

    values = {name: getattr(args, name, None) for name in SOURCE_FLAGS}
    if values["column_map"] is not None:
        text = values["column_map"]
        if not text.lstrip().startswith("{"):
            path = Path(text).expanduser()
            if not path.is_file():
                raise SystemExit(f"--column-map: {text!r} is neither a JSON object nor a file")
            text = path.read_text(encoding="utf-8")
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as error:
            raise SystemExit(f"--column-map: not valid JSON ({error})") from None
        if not isinstance(mapping, dict):
            raise SystemExit('--column-map: must be a JSON object, e.g. {"item_id": "book_id"}')
        values["column_map"] = json.dumps(mapping)
    # flags become the GENRE_* variables, so that `load_settings` here and every process the
    # run starts (Dagster steps, dbt) see the same source
    for name, variable in SOURCE_FLAGS.items():
        if values[name] is not None:
            os.environ[variable] = str(values[name])
    try:
        settings = load_settings()
    except ValueError as error:
        raise SystemExit(str(error)) from None
    if settings.source_kind != "demo" and not settings.source_path.exists():
        raise SystemExit(
            f"the {settings.source_kind} source path {settings.source_path} does not exist "
            "(--path or GENRE_SOURCE_PATH)"
        )


# Split flags of `genre-dagster run`: the dbt_features config (dbt vars) of the main job.
SPLIT_FLAGS = ("validation_start", "test_start", "validation_days", "test_days", "holdout_share")


def _split_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "split (default: dbt_project.yml's vars; checked before any work)"
    )
    group.add_argument("--validation-start", metavar="YYYY-MM-DD", help="first validation day")
    group.add_argument("--test-start", metavar="YYYY-MM-DD", help="first test day")
    group.add_argument(
        "--validation-days", type=int, metavar="N", help="automatic split: validation days (1)"
    )
    group.add_argument("--test-days", type=int, metavar="N", help="automatic split: test days (1)")
    group.add_argument(
        "--holdout-share",
        type=float,
        metavar="SHARE",
        help="share of the users held out as validation when no train day would be left "
        "(0.1; 0 = off)",
    )


def _split_settings(args: argparse.Namespace):
    """The split settings of the run: the split flags over dbt_project.yml's defaults."""
    from datetime import date

    from genre_dagster.scoring.splits import SplitSettings

    values = {n: getattr(args, n) for n in SPLIT_FLAGS if getattr(args, n, None) is not None}
    for name in ("validation_start", "test_start"):
        if name in values:
            try:
                date.fromisoformat(values[name])
            except ValueError:
                flag = "--" + name.replace("_", "-")
                raise SystemExit(
                    f"{flag}: {values[name]!r} is not a date like 2019-11-14"
                ) from None
    if not 0 <= values.get("holdout_share", 0) < 1:
        raise SystemExit(f"--holdout-share: {values['holdout_share']} is not in [0, 1)")
    for name in ("validation_days", "test_days"):
        if values.get(name, 1) < 0:
            raise SystemExit(f"--{name.replace('_', '-')}: must be 0 or more")
    return SplitSettings(**values)


def split_preflight(split) -> tuple[list[str], str | None]:
    """The split planned from the source's impression days, as the dbt model will make it,
    before any work: the lines to print (the source, each split's days and impressions, the
    rule) and what is wrong when a split would be empty (naming the days and the flags), else
    None. SystemExit when the source has no day at all."""
    from genre_dagster.resources import dataset_source
    from genre_dagster.scoring.splits import CLI_HINT, describe_rule, plan_splits
    from genre_dagster.settings import load_settings

    source = dataset_source(load_settings())
    try:
        counts = source.impression_days()
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"the {source.kind} source at {source.path}: {error}") from None
    report = plan_splits(counts, split)
    lines = [
        f"source: {source.kind} at {source.path}",
        f"split: {report.summary()}",
        f"  rule: {describe_rule(counts, split)}",
    ]
    unlabelled = [c for c in counts if not c.labelled]
    if unlabelled:
        days = sorted({c.day for c in unlabelled})
        lines.append(
            f"  unlabelled (predictions only): {sum(c.impressions for c in unlabelled):,} "
            f"impressions on {len(days)} day(s), {days[0]}..{days[-1]}"
        )
    problem = report.problem(CLI_HINT)
    labelled = sorted({c.day for c in counts if c.labelled})
    if problem and len(labelled) == 1:
        problem += (
            f" With one labelled day ({labelled[0]}) no setting helps: add a later day (a dev/ "
            "folder, say); with two, the user holdout splits the first into train and validation."
        )
    return lines, problem


def cmd_run(args: argparse.Namespace) -> int:
    """Register the days found in the source, ingest each new one, then rebuild the graph."""
    import dagster as dg

    _apply_source_arguments(args)
    split = _split_settings(args)
    started = time.perf_counter()
    # Before dbt, Dagster or any ingestion: a split that would be empty stops the run here.
    plan, problem = split_preflight(split)
    print("\n".join(plan), flush=True)
    if problem:
        raise SystemExit(f"split preflight: {problem}")
    if not args.verbose:
        # model loading's progress bars and advisories belong to the log, not the terminal
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("TQDM_DISABLE", "1")
    prepare_dbt()
    from genre_dagster.definitions import defs
    from genre_dagster.pipeline import refresh
    from genre_dagster.run_report import summary_lines
    from genre_dagster.settings import load_settings

    settings = load_settings()
    instance = dg.DagsterInstance.get()
    log_file = settings.data_dir / "logs" / f"run-{time.strftime('%Y%m%d-%H%M%S')}.log"
    print(f"full log: {log_file} (and the UI's Runs page)", flush=True)

    terminal = sys.stdout

    def show(entry: dict) -> None:
        status = "ok" if entry["success"] else "FAILED"
        print(
            f"  {entry['job']} {entry['day']}: {status}, {entry['materializations']} "
            f"materializations, {entry['seconds']:.1f} s (run {entry['run_id'][:8]})",
            file=terminal,
        )
        for failure in entry["failures"]:
            print(f"    {failure}", file=sys.stderr)

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if not args.verbose:
            # dagster-dbt echoes dbt's own output on stdout: into the log file with the rest
            raw = stack.enter_context(log_file.open("a", encoding="utf-8", buffering=1))
            stack.enter_context(contextlib.redirect_stdout(raw))
        report = refresh(
            defs,
            instance,
            job_name=args.job,
            run_config=(
                {"ops": {"dbt_features": {"config": split.changed()}}} if split.changed() else None
            ),
            on_run=show,
            log_level="INFO" if args.verbose else "CRITICAL",
            on_step=lambda line: print(line, file=terminal, flush=True),
            log_file=log_file,
        )
    if not report.success:
        print(f"a run failed; its log: {log_file}, or make ui -> Runs", file=sys.stderr)
        return 1
    print("")
    print("\n".join(summary_lines(instance, str(settings.duckdb_path))))
    print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _deployment() -> tuple:
    """(settings, resources) of the deployment from the environment, resources initialized as
    a run would have them (secrets from `dg.EnvVar` resolved)."""
    from genre_dagster.resources import build_resources
    from genre_dagster.settings import load_settings

    settings = load_settings()
    resources = build_resources(settings)
    names = ("source", "privacy", "llm")
    return settings, {n: resources[n].process_config_and_initialize() for n in names}


def cmd_llm_export(args: argparse.Namespace) -> int:
    """Write the prompts the next run would send for one role as an OpenAI Batch input file."""
    from genre_dagster.llm_outputs import export_batch

    _apply_source_arguments(args)
    settings, resources = _deployment()
    batch_model = args.model or settings.llm_model
    if not batch_model:
        print("give --model (the model the batch runs on, e.g. gpt-4o-mini)", file=sys.stderr)
        return 2
    deployment_model = resources["llm"].get_backend().model_name
    plan = export_batch(
        args.role,
        settings.duckdb_path,
        resources["source"],
        deployment_model,
        args.out,
        batch_model,
        budget=args.budget,
        everything=args.all,
        prompt_version=args.prompt_version or "",
    )
    print(
        f"{len(plan.requests)} requests for {plan.items} of {plan.inputs} {args.role} inputs "
        f"written to {args.out} (model {batch_model})"
    )
    print(
        f"  already answered: {plan.answered} (by {deployment_model}), imported: "
        f"{plan.imported}, left for later by the budget: {plan.skipped_by_budget}"
    )
    print(f"  then: genre-dagster llm import ANSWERS.jsonl --role {args.role}")
    return 0


def cmd_llm_import(args: argparse.Namespace) -> int:
    """Import answer files for one role; print a report per import."""
    from genre_dagster.llm_outputs import LLMImportConfig, import_outputs

    _apply_source_arguments(args)
    settings, resources = _deployment()
    config = LLMImportConfig(
        files=args.files,
        role=args.role,
        model=args.model or "",
        name=args.name or "",
        format=args.format,
        user_vocab=args.user_vocab or "",
        key_field=args.key_field or "",
        output_field=args.output_field or "",
        wrap_as=args.wrap_as or "",
        topics=args.topics or "",
        regions=args.regions or "",
        max_topics=args.max_topics,
        max_topic_words=args.max_topic_words,
        max_title_chars=args.max_title_chars,
        max_text_chars=args.max_text_chars,
    )
    reports = import_outputs(
        settings.duckdb_path, resources["source"], resources["privacy"], config
    )
    for report in reports:
        print(report.text())
    print("the next materialization of the enrichment assets publishes them (genre-dagster run)")
    return 0


def _llm_parser(sub) -> None:
    from genre_dagster.enrichment.answer_files import FORMATS
    from genre_dagster.enrichment.roles import ROLES

    llm = sub.add_parser("llm", help="export prompts / import answers of the GENRE roles")
    llm_sub = llm.add_subparsers(dest="llm_command", required=True)
    export = llm_sub.add_parser("export", help="the next run's prompts as an OpenAI Batch file")
    export.add_argument("--role", required=True, choices=ROLES)
    export.add_argument("--out", required=True, help="Batch input file (.jsonl) to write")
    export.add_argument("--model", default=None, help="model named in the requests")
    export.add_argument("--budget", type=int, default=None, help="default: the asset's budget")
    export.add_argument("--all", action="store_true", help="no budget: every input to answer")
    export.add_argument("--prompt-version", default=None, help="default: the asset's")
    _source_arguments(export)
    imp = llm_sub.add_parser("import", help="load answer files into the response cache")
    imp.add_argument("files", nargs="+", help="answer files (Batch output, GENRE logs, JSONL)")
    imp.add_argument("--role", required=True, choices=ROLES)
    imp.add_argument("--model", default=None, help="the model that wrote them (provenance)")
    imp.add_argument("--name", default=None, help="import name (default: the file's stem)")
    imp.add_argument("--format", default="auto", choices=FORMATS)
    imp.add_argument("--user-vocab", default=None, help="raw user ids, one a line (uid = line)")
    imp.add_argument("--key-field", default=None, help="JSONL: the key field")
    imp.add_argument("--output-field", default=None, help="JSONL: the answer field")
    imp.add_argument("--wrap-as", default=None, help="plain-text answers become {FIELD: text}")
    imp.add_argument("--topics", default=None, help="profile topics: e.g. open, genre_news")
    imp.add_argument("--regions", default=None, help="profile regions: e.g. off, us_states")
    imp.add_argument("--max-topics", type=int, default=5)
    imp.add_argument("--max-topic-words", type=int, default=3)
    imp.add_argument("--max-title-chars", type=int, default=150)
    imp.add_argument("--max-text-chars", type=int, default=300)
    _source_arguments(imp)


def main(argv: list[str] | None = None) -> int:
    _quiet_environment()
    parser = argparse.ArgumentParser(prog="genre-dagster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("prepare", help="parse the dbt project (needed once after install)")
    demo = sub.add_parser("demo", help="generate the demo world (MIND format)")
    demo.add_argument(
        "--preset",
        default="small",
        choices=["small", "mind_small", "mind_medium", "mind_large", "catalogue_small"],
    )
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--out", default=None, help="default: $GENRE_DATA_DIR/demo")
    demo.add_argument("--extra-days", type=int, default=0, help="also write N later days")
    demo.add_argument("--landing", default=None, help="where extra days go")
    demo.add_argument(
        "--llm-answers",
        default=None,
        metavar="DIR",
        help="also write what a capable LLM would answer (GENRE's released formats), "
        "informative and shuffled, for `genre-dagster llm import`",
    )
    run = sub.add_parser("run", help="ingest new days and materialize the graph")
    run.add_argument("--job", default="nightly_refresh", help="job for the newest day")
    run.add_argument(
        "--verbose", action="store_true", help="also print Dagster's and dbt's whole log"
    )
    _split_arguments(run)
    _source_arguments(run)
    _llm_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "llm":
        return {"export": cmd_llm_export, "import": cmd_llm_import}[args.llm_command](args)
    handlers = {"prepare": cmd_prepare, "demo": cmd_demo, "run": cmd_run}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
