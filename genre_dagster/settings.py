"""Paths and the environment name, read from environment variables; the feature settings that
dbt and Python share, read from dbt_project.yml.

Everything that differs between a laptop and production is decided here or in
`genre_dagster.resources.build_resources`; no other module reads the environment (the few that
set variables for a child process or a library say why where they do).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
ENVIRONMENTS = ("local", "prod")
EXECUTORS = ("multiprocess", "k8s")
K8S_EXECUTOR_CONFIG = PROJECT_ROOT / "deploy" / "k8s" / "gpu_executor.yaml"
SOURCE_KINDS = ("demo", "mind", "generic")


@dataclass(frozen=True)
class Settings:
    """The deployment settings, resolved once from the environment."""

    env: str
    data_dir: Path
    source_kind: str
    source_path: Path
    landing_dir: Path
    demo_preset: str
    items_file: str = "items.parquet"
    interactions_file: str = "interactions.parquet"
    column_map: dict[str, str] = field(default_factory=dict)
    domain: str = ""
    profile_topics: str = "auto"
    profile_regions: str = "auto"
    llm_backend: str = "local"
    llm_base_url: str = ""
    llm_model: str = ""
    llm_precomputed: tuple[str, ...] = ()
    reports_url: str = "http://127.0.0.1:8001"
    retrain_every_days: int = 0
    # optional scorers added to the graph by name (scoring/variants.py OPTIONAL_SCORERS)
    extra_scorers: tuple[str, ...] = ()
    executor: str = "multiprocess"
    k8s_executor_config: Path = K8S_EXECUTOR_CONFIG

    @property
    def duckdb_path(self) -> Path:
        return self.data_dir / "genre.duckdb"

    @property
    def reports_dir(self) -> Path:
        return self.data_dir / "reports"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Read `GENRE_*` variables; raise a clear error for values we do not know."""
    environ = dict(os.environ if environ is None else environ)
    env = environ.get("GENRE_ENV", "local").strip().lower()
    if env not in ENVIRONMENTS:
        raise ValueError(f"GENRE_ENV={env!r} is not one of {', '.join(ENVIRONMENTS)}")
    data_dir = Path(environ.get("GENRE_DATA_DIR") or PROJECT_ROOT / "data").expanduser().resolve()
    source_kind = environ.get("GENRE_SOURCE", "demo").strip().lower()
    if source_kind not in SOURCE_KINDS:
        raise ValueError(f"GENRE_SOURCE={source_kind!r} is not one of {', '.join(SOURCE_KINDS)}")
    default_source = data_dir / "demo" if source_kind == "demo" else None
    raw_source = environ.get("GENRE_SOURCE_PATH") or default_source
    if raw_source is None:
        raise ValueError(
            f"GENRE_SOURCE={source_kind} needs GENRE_SOURCE_PATH (a MIND root with train/ and "
            "dev/ folders, or a folder with items and interactions files)"
        )
    column_map = json.loads(environ.get("GENRE_COLUMN_MAP") or "{}")
    if not isinstance(column_map, dict):
        raise ValueError('GENRE_COLUMN_MAP must be a JSON object, e.g. {"item_id": "book_id"}')
    retrain = environ.get("GENRE_RETRAIN_EVERY_DAYS", "0").strip()
    if not retrain.isdigit():
        raise ValueError(
            f"GENRE_RETRAIN_EVERY_DAYS={retrain!r} must be a whole number of days >= 0 "
            "(0 = train on every run)"
        )
    executor = environ.get("GENRE_EXECUTOR") or ("k8s" if env == "prod" else "multiprocess")
    if executor not in EXECUTORS:
        raise ValueError(f"GENRE_EXECUTOR={executor!r} is not one of {', '.join(EXECUTORS)}")
    return Settings(
        env=env,
        data_dir=data_dir,
        source_kind=source_kind,
        source_path=Path(raw_source).expanduser().resolve(),
        landing_dir=Path(environ.get("GENRE_LANDING_DIR") or data_dir / "landing").resolve(),
        demo_preset=environ.get("GENRE_DEMO_PRESET", "small"),
        items_file=environ.get("GENRE_ITEMS_FILE", "items.parquet"),
        interactions_file=environ.get("GENRE_INTERACTIONS_FILE", "interactions.parquet"),
        column_map={str(k): str(v) for k, v in column_map.items()},
        domain=environ.get("GENRE_DOMAIN", "").strip(),
        profile_topics=environ.get("GENRE_PROFILE_TOPICS", "auto").strip() or "auto",
        profile_regions=environ.get("GENRE_PROFILE_REGIONS", "auto").strip() or "auto",
        llm_backend=environ.get("GENRE_LLM_BACKEND") or ("openai" if env == "prod" else "local"),
        llm_base_url=environ.get("GENRE_LLM_BASE_URL", ""),
        llm_model=environ.get("GENRE_LLM_MODEL", ""),
        llm_precomputed=tuple(p for p in environ.get("GENRE_LLM_PRECOMPUTED", "").split(",") if p),
        reports_url=environ.get("GENRE_REPORTS_URL", "http://127.0.0.1:8001"),
        retrain_every_days=int(retrain),
        extra_scorers=tuple(
            n.strip() for n in environ.get("GENRE_EXTRA_SCORERS", "").split(",") if n.strip()
        ),
        executor=executor,
        k8s_executor_config=Path(
            environ.get("GENRE_K8S_EXECUTOR_CONFIG") or K8S_EXECUTOR_CONFIG
        ).resolve(),
    )


def nightly_schedule(environ: dict[str, str] | None = None) -> tuple[str, str]:
    """(cron, timezone) of the nightly refresh: `GENRE_NIGHTLY_CRON`, `GENRE_TIMEZONE`.

    Read on its own (not in `Settings`): the schedule is defined when its module is imported,
    and a wrong unrelated variable must not take it down."""
    environ = os.environ if environ is None else environ
    return environ.get("GENRE_NIGHTLY_CRON", "0 2 * * *"), environ.get("GENRE_TIMEZONE", "UTC")


DEFAULT_LOCK_TIMEOUT_SECONDS = 1800.0


def duckdb_lock_timeout(environ: dict[str, str] | None = None) -> float:
    """Seconds to wait for the DuckDB writer lock: `GENRE_DUCKDB_LOCK_TIMEOUT`, default 30 min.

    Read on its own at every connection (not in `Settings`): the lock serves every process,
    including those that never load the deployment settings."""
    raw = (os.environ if environ is None else environ).get("GENRE_DUCKDB_LOCK_TIMEOUT")
    if not raw:
        return DEFAULT_LOCK_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"GENRE_DUCKDB_LOCK_TIMEOUT must be a number of seconds, got {raw!r}"
        ) from None
    if value <= 0:
        raise ValueError(f"GENRE_DUCKDB_LOCK_TIMEOUT must be positive, got {raw!r}")
    return value


# DuckDB settings of every connection the project opens (duckdb_lock.connect) and of dbt's
# (profiles.yml, through dbt_duckdb_env): the DuckDB option each variable sets.
DUCKDB_SETTING_VARS = {
    "memory_limit": "GENRE_DUCKDB_MEMORY_LIMIT",
    "threads": "GENRE_DUCKDB_THREADS",
    "temp_directory": "GENRE_DUCKDB_TEMP_DIR",
}


# The share of physical memory a DuckDB database of the project may use when
# GENRE_DUCKDB_MEMORY_LIMIT is not set. DuckDB's own default is 80%, but its queries run inside
# processes that hold the step's Python data too: at MIND-large size the interaction-drift
# query grew its process by 8.8 GB (to 13 GB) before it would have spilled. Under a limit
# DuckDB spills to GENRE_DUCKDB_TEMP_DIR instead (1 GB at MIND-medium size: +1.2 GB, not +2.4,
# and no slower).
DEFAULT_DUCKDB_MEMORY_SHARE = 0.25


def default_duckdb_memory_limit() -> str:
    """DEFAULT_DUCKDB_MEMORY_SHARE of this machine's physical memory, in DuckDB's syntax (MB)."""
    import psutil

    return f"{int(psutil.virtual_memory().total * DEFAULT_DUCKDB_MEMORY_SHARE / 1e6)}MB"


def duckdb_settings(
    database: str | Path, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The DuckDB options of a connection to `database`, from `GENRE_DUCKDB_MEMORY_LIMIT` (DuckDB
    syntax, e.g. "2GB"; unset: DEFAULT_DUCKDB_MEMORY_SHARE of RAM), `GENRE_DUCKDB_THREADS` (unset:
    DuckDB's default, one per core) and `GENRE_DUCKDB_TEMP_DIR` (where a query larger than the
    memory limit spills; default `duckdb_tmp` next to the database file, i.e. under the data dir).

    Each database file spills into its own subdirectory `<temp dir>/<file name>.tmp`: DuckDB's
    temp file names are the same for every database and it deletes the directory it created when
    it closes, so two databases must not share one. Read on its own at every connection (not in
    `Settings`), like the lock timeout. A bad memory limit is reported by `connect`, naming the
    variable (DuckDB's parser is the judge of its syntax)."""
    environ = os.environ if environ is None else environ
    options: dict[str, str] = {}
    memory = (environ.get("GENRE_DUCKDB_MEMORY_LIMIT") or "").strip()
    options["memory_limit"] = memory or default_duckdb_memory_limit()
    threads = (environ.get("GENRE_DUCKDB_THREADS") or "").strip()
    if threads:
        if not threads.isdigit() or int(threads) < 1:
            raise ValueError(f"GENRE_DUCKDB_THREADS={threads!r} must be a whole number >= 1")
        options["threads"] = threads
    database = Path(database).expanduser().resolve()
    temp_root = (environ.get("GENRE_DUCKDB_TEMP_DIR") or "").strip()
    temp_root_path = Path(temp_root).expanduser().resolve() if temp_root else None
    options["temp_directory"] = str(
        (temp_root_path or database.parent / "duckdb_tmp") / f"{database.name}.tmp"
    )
    return options


@functools.cache
def dbt_vars() -> Mapping[str, Any]:
    """The `vars` of dbt_project.yml: the one definition of the feature settings that dbt and
    Python share (cold-user threshold, history cap, split boundaries). Python derives its
    defaults from here, so changing one there changes both."""
    import yaml

    project = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text(encoding="utf-8"))
    return MappingProxyType(dict(project["vars"]))  # cached: read-only for every caller


# A user is cold with at most this many known clicks (GENRE: 5): dbt's user segments, the
# generator's cold users and the evaluation's cold segment.
COLD_MAX_CLICKS: int = dbt_vars()["cold_max_clicks"]
# The most recent clicks kept per user: dbt's user histories, the history a scorer reads.
HISTORY_CAP: int = dbt_vars()["history_cap"]
