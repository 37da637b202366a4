"""Monitoring reports with Evidently: interaction drift, data quality, embedding drift,
prediction drift and recommendation quality, each saved as a self-contained HTML page plus a
JSON summary, and an index page of the report history. Pure logic, no Dagster; Evidently is
imported inside the functions (it takes seconds to import)."""

from genre_dagster.monitoring.drift import interaction_drift_report, prediction_drift_report
from genre_dagster.monitoring.embeddings import embedding_drift_report
from genre_dagster.monitoring.frames import (
    INTERACTION_CATEGORICAL,
    INTERACTION_NUMERIC,
    click_interactions,
    current_and_reference,
    interaction_frame,
)
from genre_dagster.monitoring.index import read_report_records, write_report_index
from genre_dagster.monitoring.quality import data_quality_report
from genre_dagster.monitoring.recommendations import recommendation_quality_report
from genre_dagster.monitoring.reports import (
    ReportResult,
    markdown_summary,
    threshold_verdict,
    worst_verdict,
)

__all__ = [
    "INTERACTION_CATEGORICAL",
    "INTERACTION_NUMERIC",
    "ReportResult",
    "click_interactions",
    "current_and_reference",
    "data_quality_report",
    "embedding_drift_report",
    "interaction_drift_report",
    "interaction_frame",
    "markdown_summary",
    "prediction_drift_report",
    "read_report_records",
    "recommendation_quality_report",
    "threshold_verdict",
    "worst_verdict",
    "write_report_index",
]
