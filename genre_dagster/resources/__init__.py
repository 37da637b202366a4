"""Resources and the one function that maps an environment to a resource set."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import dagster as dg

from genre_dagster.resources.encoder import EncoderResource
from genre_dagster.resources.llm import LLMResource
from genre_dagster.resources.model_store import ModelStore
from genre_dagster.resources.privacy import PrivacyResource
from genre_dagster.resources.reports import ReportStore
from genre_dagster.resources.source import DatasetSource
from genre_dagster.settings import DBT_PROJECT_DIR, Settings, load_settings

__all__ = [
    "DatasetSource",
    "EncoderResource",
    "LLMResource",
    "ModelStore",
    "PrivacyResource",
    "ReportStore",
    "build_resources",
    "dataset_source",
]


def dataset_source(settings: Settings) -> DatasetSource:
    """The data source of `settings` alone (no dbt import): what the CLI's preflight reads."""
    return DatasetSource(
        kind=settings.source_kind,
        path=str(settings.source_path),
        landing_dir=str(settings.landing_dir),
        demo_preset=settings.demo_preset,
        items_file=settings.items_file,
        interactions_file=settings.interactions_file,
        column_map=settings.column_map,
        domain=settings.domain,
        profile_topics=settings.profile_topics,
        profile_regions=settings.profile_regions,
    )


def build_resources(settings: Settings | None = None) -> dict[str, Any]:
    """The resource set of an environment (`GENRE_ENV=local|prod`).

    local: DuckDB file under the data directory, the demo world unless told otherwise, a
    documented demo pseudonym key, CPU. prod: the same storage layout by default (swap the IO
    manager here for a warehouse), a required pseudonym key from `GENRE_PSEUDONYM_KEY`.
    """
    from dagster_dbt import DbtCliResource

    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager, LockedDuckDBResource

    settings = settings or load_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = str(settings.duckdb_path)
    source = dataset_source(settings)
    llm = LLMResource(
        backend=settings.llm_backend,
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        precomputed_paths=list(settings.llm_precomputed),
        convert_cache_dir=str(settings.models_dir / "llm"),
    )
    if settings.env == "prod":
        privacy = PrivacyResource(pseudonym_key=dg.EnvVar("GENRE_PSEUDONYM_KEY"), require_key=True)
        # GPU encoder: fails loudly when CUDA is missing instead of crawling on CPU.
        encoder = EncoderResource(device="cuda", dtype="bf16", batch_size=512, max_length=256)
    else:
        privacy = PrivacyResource()
        # CPU; bf16 where the CPU computes it natively (AVX-512 BF16/AMX: mean cosine to fp32
        # 0.99995, ~1.6x faster, see docs/benchmarks.md), fp32 everywhere else.
        encoder = EncoderResource(device="cpu", dtype="auto", batch_size=64, max_length=128)
    return {
        "io_manager": DuckDBPolarsTablesIOManager(database=database),
        "duckdb": LockedDuckDBResource(database=database),
        "dbt": DbtCliResource(project_dir=str(DBT_PROJECT_DIR), dbt_executable=dbt_executable()),
        "source": source,
        "privacy": privacy,
        "encoder": encoder,
        "llm": llm,
        "model_store": ModelStore(
            root=str(settings.models_dir), retrain_every_days=settings.retrain_every_days
        ),
        "reports": ReportStore(root=str(settings.reports_dir), base_url=settings.reports_url),
    }


def dbt_executable() -> str:
    """The dbt next to this interpreter (a venv that is not activated), else dbt on PATH."""
    beside = Path(sys.executable).with_name("dbt")
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if found is None:
        raise FileNotFoundError("dbt is not installed next to this Python nor on PATH")
    return found
