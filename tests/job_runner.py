"""Runs a job of the code location in its own process, as a deployment would (fault tests).

    python tests/job_runner.py ingest              # register the source's days, ingest all
    python tests/job_runner.py run JOB DAY GROUP.. # JOB on DAY, restricted to the asset groups
    python tests/job_runner.py reexecute RUN_ID    # re-execute RUN_ID from failure

Settings come from the GENRE_* environment variables and the instance from DAGSTER_HOME. Runs go
through `dg.execute_job` on the reconstructable job (the path `dagster dev` takes), with the
in-process executor so a SIGKILL of this process stops the whole run.
"""

from __future__ import annotations

import sys

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

IN_PROCESS = {"execution": {"config": {"in_process": {}}}}


def _job(name: str):
    repo = ReconstructableRepository.for_module("genre_dagster.definitions", "defs")
    return repo.get_reconstructable_job(name)


def main(argv: list[str]) -> int:
    from genre_dagster.automation import new_days, unmaterialized_days
    from genre_dagster.definitions import defs

    command, *rest = argv
    with dg.DagsterInstance.get() as instance:
        if command == "ingest":
            new_days(defs.resources["source"], instance)
            for day in unmaterialized_days(instance):
                result = defs.resolve_job_def("ingest_day").execute_in_process(
                    partition_key=day, instance=instance
                )
                assert result.success, day
            return 0
        if command == "run":
            job_name, day, *groups = rest
            new_days(defs.resources["source"], instance)
            graph = defs.resolve_asset_graph()
            selection = dg.AssetSelection.groups(*groups).resolve(graph) if groups else None
            result = dg.execute_job(
                _job(job_name),
                instance,
                run_config=IN_PROCESS,
                tags={"dagster/partition": day},
                asset_selection=sorted(selection) if selection else None,
            )
        elif command == "reexecute":
            (run_id,) = rest
            result = dg.execute_job(
                _job(instance.get_run_by_id(run_id).job_name),
                instance,
                run_config=IN_PROCESS,
                reexecution_options=dg.ReexecutionOptions.from_failure(run_id, instance),
            )
        else:
            raise SystemExit(f"unknown command {command!r}")
        print(f"run {result.run_id} success={result.success}", flush=True)
        return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
