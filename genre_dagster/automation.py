"""Jobs, the nightly schedule and the landing-file sensor."""

import hashlib
import json
from pathlib import Path

import dagster as dg

from genre_dagster.assets.features import dbt_features
from genre_dagster.memory import release_memory
from genre_dagster.partitions import behavior_days
from genre_dagster.resources import DatasetSource
from genre_dagster.settings import nightly_schedule

NIGHTLY_CRON, TIMEZONE = nightly_schedule()

# Transient failures (a locked file, a flaky LLM server, a node lost) are retried with backoff;
# a step that fails three times fails the run, visible and re-executable from failure in the UI.
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=20, backoff=dg.Backoff.EXPONENTIAL)


@dg.success_hook(name="release_memory_after_success")
def release_memory_after_success(context: dg.HookContext) -> None:
    """Return the heap the step freed to the OS (steps share a process in-process)."""
    release_memory()


@dg.failure_hook(name="release_memory_after_failure")
def release_memory_after_failure(context: dg.HookContext) -> None:
    """The same after a failed step, so a retry or the next step starts lean."""
    release_memory()


RELEASE_MEMORY = {release_memory_after_success, release_memory_after_failure}

ingest_day_job = dg.define_asset_job(
    name="ingest_day",
    # dbt's source tests are checks of the raw assets run by the dbt op: selecting them would
    # pull a dbt build into every ingestion run, before the models it tests exist.
    selection=dg.AssetSelection.groups("raw") - dg.AssetSelection.checks(dbt_features),
    description="Ingest one day of impressions (and refresh the item table).",
    op_retry_policy=TRANSIENT_RETRY,
    hooks=RELEASE_MEMORY,
)

nightly_refresh_job = dg.define_asset_job(
    name="nightly_refresh",
    selection=dg.AssetSelection.all(),
    description="Ingest a new day, then rebuild everything downstream of it.",
    op_retry_policy=TRANSIENT_RETRY,
    hooks=RELEASE_MEMORY,
)


def new_days(source: DatasetSource, instance: dg.DagsterInstance) -> list[str]:
    """Days in the source that are not partitions yet; registers them as partitions."""
    available = sorted(d.isoformat() for d in source.days())
    known = set(instance.get_dynamic_partitions(behavior_days.name))
    missing = [d for d in available if d not in known]
    if missing:
        instance.add_dynamic_partitions(behavior_days.name, missing)
    return missing


def unmaterialized_days(instance: dg.DagsterInstance) -> list[str]:
    """Registered days whose impressions were never ingested, oldest first."""
    from genre_dagster.warehouse import RAW_BEHAVIORS

    done = instance.get_materialized_partitions(RAW_BEHAVIORS.key)
    return sorted(set(instance.get_dynamic_partitions(behavior_days.name)) - set(done))


@dg.schedule(
    job=nightly_refresh_job,
    cron_schedule=NIGHTLY_CRON,
    execution_timezone=TIMEZONE,
    description="Every night: ingest each day that arrived and rebuild the graph downstream.",
)
def nightly_refresh_schedule(context: dg.ScheduleEvaluationContext, source: DatasetSource):
    new_days(source, context.instance)
    pending = unmaterialized_days(context.instance)
    if not pending:
        return dg.SkipReason("no new day of impressions since the last refresh")
    # One run per new day; the last day's run also rebuilds the downstream graph last.
    return [
        dg.RunRequest(run_key=f"nightly-{day}", partition_key=day, tags={"genre/day": day})
        for day in pending
    ]


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


@dg.sensor(
    job=ingest_day_job,
    minimum_interval_seconds=60,
    description=(
        "Watches the landing directory for new behaviors files and launches the ingestion of "
        "each day they contain exactly once (run keys are file content hashes)."
    ),
)
def landing_files_sensor(context: dg.SensorEvaluationContext, source: DatasetSource):
    from genre_dagster.ingest import SourceFile, scan_behavior_days

    landing = source.landing
    if landing is None or not landing.exists():
        return dg.SkipReason(f"landing directory {landing} does not exist")
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests: list[dg.RunRequest] = []
    days: set[str] = set()
    for path in sorted(landing.glob("behaviors*.tsv")):
        fingerprint = _fingerprint(path)
        if seen.get(path.name) == fingerprint:
            continue
        seen[path.name] = fingerprint
        scan = scan_behavior_days([SourceFile(path, "landing")])
        for reason in scan.unattributable.values():
            # Not a sensor failure: the file is quarantined by the next ingestion that reads it.
            context.log.warning(f"{path.name}: no day can be read from it ({reason})")
        for day in sorted(scan.days):
            key = day.isoformat()
            days.add(key)
            requests.append(
                dg.RunRequest(
                    run_key=f"{path.name}:{fingerprint}:{key}",
                    partition_key=key,
                    tags={"genre/landing_file": path.name},
                )
            )
    if not requests:
        return dg.SkipReason("no new or changed behaviors files")
    known = set(context.instance.get_dynamic_partitions(behavior_days.name))
    new_keys = sorted(days - known)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=(
            [behavior_days.build_add_request(new_keys)] if new_keys else []
        ),
        cursor=json.dumps(seen, sort_keys=True),
    )
