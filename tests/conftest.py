"""Test session setup: offline models, no telemetry, a prepared dbt manifest."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# `@dbt_assets` needs the manifest when the definitions are imported (at collection time).
if not (ROOT / "dbt_project" / "target" / "manifest.json").exists():
    from genre_dagster.cli import prepare_dbt

    print("preparing the dbt manifest for the test session", file=sys.stderr)
    prepare_dbt()
