"""Deterministic demo world in MIND format: news, users with latent interests, daily
impressions with true click probabilities, a distribution-shift day, and later days for
nightly refreshes. No Dagster here; the CLI and the source resource call this API."""

from genre_dagster.demo.config import PRESETS, DemoWorldConfig
from genre_dagster.demo.generate import (
    GENERATOR_VERSION,
    TRUTH_FILE,
    TRUTH_LANDING_DIR,
    WORLD_FILE,
    ensure_world,
    generate_extra_days,
    generate_world,
    read_world_summary,
)

__all__ = [
    "GENERATOR_VERSION",
    "PRESETS",
    "TRUTH_FILE",
    "TRUTH_LANDING_DIR",
    "WORLD_FILE",
    "DemoWorldConfig",
    "ensure_world",
    "generate_extra_days",
    "generate_world",
    "read_world_summary",
]
