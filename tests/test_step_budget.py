"""The step meter behind every asset's `step_seconds` / `step_peak_rss_mb` metadata."""

from __future__ import annotations

import json
import subprocess
import sys

import dagster as dg
import pytest

from genre_dagster.step_budget import budgeted

MB = 1024 * 1024


# Both memory tests measure in a fresh interpreter. In the pytest process other tests leave
# garbage that the collector may free while the step allocates, and the process's RSS then
# need not rise by what the step allocated (CI once saw +0.1 MB for a 200 MB block).
_ALLOCATE_AND_RELEASE = """
import json, time
from genre_dagster.step_budget import StepMeter
meter = StepMeter(sample_seconds=0.01).start()
try:
    block = bytearray(200 * 2**20)
    block[::4096] = b"x" * len(block[::4096])  # touch every page: resident, not reserved
    time.sleep(0.1)
    # released only after the thread has sampled twice more: on a loaded machine 0.1 s may
    # pass without a sample
    wait_for = meter.samples + 2
    while meter.samples < wait_for:
        time.sleep(0.01)
    del block
    figures = meter.figures()
finally:
    meter.stop()
print(json.dumps(figures))
"""

_CHILD_HOLDS_MEMORY = """
import json, subprocess, sys, time
from genre_dagster.step_budget import CHILD_SCAN_EVERY, StepMeter
meter = StepMeter(sample_seconds=0.01).start()
try:
    # the child holds its memory until told to exit: after the thread has listed the
    # children and sampled them (a loaded machine may take longer than any fixed sleep)
    child = (
        "import sys; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); "
        "print('ready', flush=True); sys.stdin.readline()"
    )
    with subprocess.Popen(
        [sys.executable, "-c", child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout.readline().strip() == "ready"
        wait_for = meter.samples + CHILD_SCAN_EVERY + 2
        while meter.samples < wait_for:
            time.sleep(0.01)
        proc.communicate("exit\\n")
    assert proc.returncode == 0
    figures = meter.figures()
finally:
    meter.stop()
print(json.dumps(figures))
"""


def _figures_in_fresh_interpreter(script: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_peak_covers_memory_the_step_allocated_and_released():
    figures = _figures_in_fresh_interpreter(_ALLOCATE_AND_RELEASE)
    assert figures["step_peak_rss_mb"] >= figures["step_rss_at_start_mb"] + 190
    assert figures["step_seconds"] >= 0.1


def test_the_peak_includes_child_processes():
    """dbt runs as a child process: its memory is the step's too."""
    figures = _figures_in_fresh_interpreter(_CHILD_HOLDS_MEMORY)
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
