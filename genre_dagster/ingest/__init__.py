"""Ingestion: MIND and generic parsers, validation, quarantine, repairs and pseudonymization.

Pure logic (Polars in, Polars out), no Dagster. Output schemas and reason codes are the
canonical raw tables of docs/ARCHITECTURE.md.
"""

from genre_dagster.ingest.generic import parse_generic_items
from genre_dagster.ingest.generic_interactions import (
    generic_days,
    generic_impression_days,
    parse_generic_interactions,
    scan_generic_days,
)
from genre_dagster.ingest.mind_behaviors import (
    IMPRESSION_DAYS_SCHEMA,
    behavior_days,
    impression_days,
    parse_behaviors,
    scan_behavior_days,
)
from genre_dagster.ingest.mind_news import parse_news
from genre_dagster.ingest.privacy import (
    DEFAULT_LOCAL_PSEUDONYM_KEY,
    load_pseudonym_key,
    pseudonymize_user_ids,
)
from genre_dagster.ingest.result import (
    BEHAVIORS_QUARANTINE_SCHEMA,
    BEHAVIORS_SCHEMA,
    FILE_LEVEL_REASONS,
    NEWS_QUARANTINE_SCHEMA,
    NEWS_REPAIRS_SCHEMA,
    NEWS_SCHEMA,
    REASON_CODES,
    REPAIR_REASON_CODES,
    IngestResult,
)
from genre_dagster.ingest.sources import SourceFile, discover_mind_files
from genre_dagster.ingest.unattributable import DayScan

__all__ = [
    "BEHAVIORS_QUARANTINE_SCHEMA",
    "BEHAVIORS_SCHEMA",
    "DEFAULT_LOCAL_PSEUDONYM_KEY",
    "FILE_LEVEL_REASONS",
    "IMPRESSION_DAYS_SCHEMA",
    "NEWS_QUARANTINE_SCHEMA",
    "NEWS_REPAIRS_SCHEMA",
    "NEWS_SCHEMA",
    "REASON_CODES",
    "REPAIR_REASON_CODES",
    "DayScan",
    "IngestResult",
    "SourceFile",
    "behavior_days",
    "discover_mind_files",
    "generic_days",
    "generic_impression_days",
    "impression_days",
    "load_pseudonym_key",
    "parse_behaviors",
    "parse_generic_interactions",
    "parse_generic_items",
    "parse_news",
    "pseudonymize_user_ids",
    "scan_behavior_days",
    "scan_generic_days",
]
