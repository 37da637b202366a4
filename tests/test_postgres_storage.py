"""Dagster's own storage in PostgreSQL, as in production: `scripts/postgres_nightly.sh` starts a
throwaway cluster (installing Debian's postgresql when missing), runs `genre-dagster run` with a
dagster-postgres instance and checks with psql what PostgreSQL holds.

The test runs the ingestion job for every day (about 40 s); the script's default, the whole
nightly graph, takes minutes and is run by hand or in a nightly CI job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "postgres_nightly.sh"
SKIP_CODE = 77  # the script's "PostgreSQL missing and not installable here"
RAW_ASSETS = {
    "raw/news",
    "raw/news_quarantine",
    "raw/news_repairs",
    "raw/behaviors",
    "raw/behaviors_quarantine",
}


def test_runs_materializations_and_partitions_are_stored_in_postgres():
    pytest.importorskip(
        "dagster_postgres", reason="dagster-postgres is not installed (dagster-postgres==0.29.27)"
    )
    if shutil.which("bash") is None:
        pytest.skip("bash is needed to run scripts/postgres_nightly.sh")
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--job", "ingest_day"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=540,
    )
    if proc.returncode == SKIP_CODE:
        pytest.skip(f"PostgreSQL is not available here: {proc.stderr.strip()}")
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-4000:]
    result = json.loads(lines[0].removeprefix("RESULT "))

    days = result["day_partitions"]
    assert days >= 3  # the generated world spans several days, each registered in PostgreSQL
    # one ingestion run per day, every one stored and successful
    assert result["runs_by_status"] == {"SUCCESS": days}
    assert result["runs_by_job"] == {"ingest_day": days}
    # each run materializes the news table, its quarantine, and one day of impressions + its
    # quarantine: the event log in PostgreSQL holds every one of them
    assert set(result["materialized_key_sample"]) == RAW_ASSETS
    assert result["materialized_assets"] == len(RAW_ASSETS)
    assert result["materializations"] == len(RAW_ASSETS) * days
    assert result["asset_keys"] == len(RAW_ASSETS)
    assert result["check_evaluations"] >= days  # row conservation at least, every run
    assert result["sqlite_files"] == 0  # nothing fell back to the default SQLite storage
