"""Run the graph from Python: register new days, ingest each, rebuild downstream.

Used by the `genre-dagster run` command and by the tests, so both exercise the same path as the
nightly schedule (the same jobs, the same partitions, a real Dagster instance).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import dagster as dg

from genre_dagster.automation import new_days, unmaterialized_days
from genre_dagster.partitions import behavior_days


@dataclass
class RunReport:
    """What a `refresh` did: one entry per Dagster run."""

    runs: list[dict] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(r["success"] for r in self.runs)


def refresh(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str = "nightly_refresh",
    on_run=None,
    log_level: str = "INFO",
    run_config: dict | None = None,
    on_step=None,
    log_file=None,
) -> RunReport:
    """Ingest every day not yet ingested (oldest first) and rebuild the graph on the newest.

    When nothing is new, the newest day is re-ingested and the graph rebuilt: partitions are
    replaced, never appended, so this is idempotent. `on_step` receives a line per finished
    step while a run goes on (`run_report.StepPrinter`); `log_file` receives every run's whole
    event log.
    """
    import uuid
    from contextlib import nullcontext

    from genre_dagster.run_report import StepPrinter, write_run_log

    source = defs.resources["source"]
    new_days(source, instance)
    pending = unmaterialized_days(instance)
    if not pending:
        days = sorted(instance.get_dynamic_partitions(behavior_days.name))
        if not days:
            raise RuntimeError(f"no impressions found in the {source.kind} source at {source.path}")
        pending = [days[-1]]
    report = RunReport()
    plan = [("ingest_day", day) for day in pending[:-1]] + [(job_name, pending[-1])]
    for name, day in plan:
        started = time.perf_counter()
        run_id = str(uuid.uuid4())
        if on_step is not None:
            on_step(f"{name} {day}")
        watch = StepPrinter(instance, run_id, on_step) if on_step is not None else nullcontext()
        with watch:
            result = defs.resolve_job_def(name).execute_in_process(
                partition_key=day,
                instance=instance,
                raise_on_error=False,
                run_id=run_id,
                run_config={
                    **((run_config or {}) if name == job_name else {}),
                    "loggers": {"console": {"config": {"log_level": log_level}}},
                },
            )
        if log_file is not None:
            write_run_log(instance, run_id, log_file)
        checks = result.get_asset_check_evaluations()
        failures = [
            f"{e.step_key}: {e.event_specific_data.error.message.strip()}"
            for e in result.all_events
            if e.is_step_failure
        ]
        entry = {
            "job": name,
            "day": day,
            "run_id": result.run_id,
            "success": result.success,
            "seconds": round(time.perf_counter() - started, 2),
            "materializations": sum(
                1 for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"
            ),
            "failures": failures,
            "checks_passed": sorted(c.check_name for c in checks if c.passed),
            "checks_failed": sorted(
                f"{c.asset_key.to_user_string()}:{c.check_name}" for c in checks if not c.passed
            ),
        }
        report.runs.append(entry)
        if on_run:
            on_run(entry)
        if not result.success:
            break
    return report
