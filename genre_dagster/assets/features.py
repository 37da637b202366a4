"""Cleaned features: the dbt project on the shared DuckDB file, run through dagster-dbt.

Every dbt model is an asset in the group `features`; every dbt test is an asset check on it.
"""

import json
import os
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    dbt_assets,
)
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster.settings import DBT_PROJECT_DIR, dbt_vars
from genre_dagster.step_budget import budgeted

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
# Under `dagster dev` this re-parses the project so edits show up; elsewhere the manifest is
# prepared by `genre-dagster prepare` (run by `make setup`, CI and the test session).
dbt_project.prepare_if_dev()
if not dbt_project.manifest_path.exists():
    raise FileNotFoundError(
        f"dbt manifest not found at {dbt_project.manifest_path}. Run `genre-dagster prepare` "
        "(or `make setup`) once after installing, then load the definitions again."
    )


class FeaturesConfig(dg.Config):
    """dbt variables, editable from the launchpad; their defaults are dbt_project.yml's vars."""

    cold_max_clicks: int = Field(
        default=dbt_vars()["cold_max_clicks"], description="cold user = at most this many clicks"
    )
    history_cap: int = Field(
        default=dbt_vars()["history_cap"], description="most recent clicks kept per user"
    )
    validation_start: str = Field(
        default=dbt_vars()["validation_start"], description="YYYY-MM-DD; empty = automatic"
    )
    test_start: str = Field(
        default=dbt_vars()["test_start"], description="YYYY-MM-DD; empty = automatic"
    )
    validation_days: int = Field(
        default=dbt_vars()["validation_days"], description="automatic split: validation days"
    )
    test_days: int = Field(
        default=dbt_vars()["test_days"], description="automatic split: test days"
    )
    holdout_share: float = Field(
        default=dbt_vars()["holdout_share"],
        ge=0.0,
        lt=1.0,
        description=(
            "when the automatic split would leave no train day: this share of the users of "
            "the days before the test split is validation, the rest train (0 = off)"
        ),
    )
    holdout_seed: int = Field(
        default=dbt_vars()["holdout_seed"], description="seed of the user holdout's hash"
    )


class FeaturesTranslator(DagsterDbtTranslator):
    """Puts every dbt model in the `features` group; sources keep their `raw/...` keys, and
    dbt's tests on them are non-blocking checks of those raw assets."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "source":
            return "raw"
        return "features"

    def get_asset_check_spec(
        self,
        asset_spec: dg.AssetSpec,
        manifest: Mapping[str, Any],
        unique_id: str,
        project: DbtProject | None,
    ) -> dg.AssetCheckSpec | None:
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or asset_spec.group_name != "raw" or not spec.blocking:
            return spec
        # A blocking check of raw/news run by this op would have to finish before raw/behaviors
        # (its child) starts, which this op also reads: Dagster would then cut the op in two
        # dbt builds, and the first one's partial selection pulls in the relationships test
        # of `impressions` before that model exists. `dbt build` already skips the models
        # downstream of a failing source test, so blocking adds nothing here.
        return dg.AssetCheckSpec(
            name=spec.name,
            asset=spec.asset_key,
            description=spec.description,
            additional_deps=spec.additional_deps,
            metadata=spec.metadata,
            blocking=False,
            automation_condition=spec.automation_condition,
        )


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    # dbt's tests on the sources are checks of the raw assets they read (raw/news, ...), shown
    # with those assets, instead of observations logged with a warning on every build. They run
    # in this op, so the per-day ingestion job leaves them out (automation.py).
    dagster_dbt_translator=FeaturesTranslator(
        settings=DagsterDbtTranslatorSettings(enable_source_tests_as_checks=True)
    ),
    pool="duckdb",
)
@budgeted
def dbt_features(
    context: dg.AssetExecutionContext,
    config: FeaturesConfig,
    dbt: DbtCliResource,
    duckdb: DuckDBResource,
):
    """Staging, exploded impressions, user histories, time-based splits, cold/warm segments and
    per-item daily counts, built and tested by `dbt build` on the project's DuckDB file."""
    from genre_dagster.duckdb_lock import dbt_duckdb_env, effective_settings

    # dbt's profile reads the database path and the DuckDB settings (memory limit, threads,
    # spill directory: the ones every connection of the project gets) from the environment of
    # this step's process.
    os.environ["GENRE_DUCKDB_PATH"] = duckdb.database
    os.environ.update(dbt_duckdb_env(duckdb.database, duckdb.connection_config))
    # shown with every model: what a user checks when a build runs out of memory or spills
    settings = effective_settings(duckdb.database, duckdb.connection_config)
    duckdb_metadata = {
        "duckdb_memory_limit": settings["memory_limit"],
        "duckdb_threads": int(settings["threads"]),
        "duckdb_temp_directory": dg.MetadataValue.path(settings["temp_directory"]),
    }
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    # Passing dbt_project.yml's own values anyway would make dbt drop the partial parse
    # prepared with the manifest ("config vars changed") and re-parse each build.
    changed = {k: v for k, v in config.model_dump().items() if v != dbt_vars()[k]}
    args = ["build", *(["--vars", json.dumps(changed)] if changed else [])]
    from genre_dagster.warehouse import exclusive

    # dbt opens the file from its own process: hold the project's writer lock for the whole
    # build so a concurrent run waits instead of failing on DuckDB's lock.
    with exclusive(duckdb.database, "dbt build") as waited:
        if waited > 1:
            context.log.info(f"waited {waited:.1f}s for the DuckDB file")
        for event in dbt.cli(args, context=context).stream():
            if isinstance(event, dg.Output | dg.AssetMaterialization):
                event = event.with_metadata({**event.metadata, **duckdb_metadata})
            yield event
