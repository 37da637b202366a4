"""The step meter behind every asset's `step_seconds` / `step_peak_rss_mb` metadata."""

from __future__ import annotations

import subprocess
import sys
import time

import dagster as dg
import pytest

from genre_dagster.step_budget import StepMeter, budgeted

MB = 1024 * 1024


def test_the_peak_covers_memory_the_step_allocated_and_released():
    meter = StepMeter(sample_seconds=0.01).start()
    try:
        block = bytearray(200 * MB)
        block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not reserved
        time.sleep(0.1)
        del block
        figures = meter.figures()
    finally:
        meter.stop()
    assert figures["step_peak_rss_mb"] >= figures["step_rss_at_start_mb"] + 190
    assert figures["step_seconds"] >= 0.1


def test_the_peak_includes_child_processes():
    """dbt runs as a child process: its memory is the step's too."""
    meter = StepMeter(sample_seconds=0.01).start()
    try:
        child = (
            "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
            "time.sleep(0.5)"
        )
        subprocess.run([sys.executable, "-c", child], check=True)
        figures = meter.figures()
    finally:
        meter.stop()
    assert figures["step_peak_rss_mb"] >= figures["step_rss_at_start_mb"] + 290


@pytest.mark.parametrize("style", ["value", "output", "materialize_result", "generator"])
def test_every_return_style_gets_the_figures(style):
    if style == "generator":

        @dg.multi_asset(outs={"a": dg.AssetOut(), "b": dg.AssetOut()})
        @budgeted
        def thing():
            yield dg.Output(1, output_name="a", metadata={"mine": 1})
            yield dg.Output(2, output_name="b")

    else:
        results = {
            "value": lambda: 1,
            "output": lambda: dg.Output(1, metadata={"mine": 1}),
            "materialize_result": lambda: dg.MaterializeResult(metadata={"mine": 1}),
        }

        @dg.asset(name="thing")
        @budgeted
        def thing(context):
            return results[style]()

    result = dg.materialize([thing])
    assert result.success
    materializations = result.get_asset_materialization_events()
    assert len(materializations) == (2 if style == "generator" else 1)
    for event in materializations:
        metadata = event.materialization.metadata
        assert metadata["step_seconds"].value >= 0
        assert metadata["step_peak_rss_mb"].value >= metadata["step_rss_at_start_mb"].value > 0
        if style not in ("value", "generator") or event.asset_key.path == ["a"]:
            assert metadata["mine"].value == 1
