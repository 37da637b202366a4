"""The Dagster code location: assembles assets, checks, jobs and resources. No logic here."""

from __future__ import annotations

import dagster as dg

from genre_dagster.assets import (
    embeddings,
    enrichment,
    evaluation,
    features,
    monitoring,
    quality_checks,
    raw,
    scoring,
    serving,
)
from genre_dagster.automation import (
    ingest_day_job,
    landing_files_sensor,
    nightly_refresh_job,
    nightly_refresh_schedule,
)
from genre_dagster.resources import build_resources
from genre_dagster.settings import Settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """All definitions with the resource set of `settings` (default: from the environment)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(
            [raw, features, enrichment, embeddings, scoring, evaluation, serving, monitoring]
        ),
        asset_checks=dg.load_asset_checks_from_modules([quality_checks, serving]),
        jobs=[ingest_day_job, nightly_refresh_job],
        schedules=[nightly_refresh_schedule],
        sensors=[landing_files_sensor],
        resources=build_resources(settings),
    )


defs = build_definitions()
