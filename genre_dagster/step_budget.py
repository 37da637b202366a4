"""What a step cost: wall seconds, CPU seconds and peak memory, in every asset's metadata.

`@budgeted` goes under an asset decorator. It measures the step while it runs and adds
`step_seconds`, `step_cpu_seconds`, `step_rss_at_start_mb` and `step_peak_rss_mb` to each output
it yields (a multi-output step's outputs each carry the figures up to their emission; the last
one's are the step's). The UI then shows, for every asset, which step needs a bigger machine
(and `deploy/k8s/gpu_executor.yaml` lets that step ask for one).

Peak memory is the resident set of this process plus its child processes (dbt runs as one),
sampled every `SAMPLE_SECONDS` by a daemon thread (children are listed every second).
`genre-dagster run` executes every step in one process, so the process's own high-water mark
(ru_maxrss, VmHWM) would be the run's, not the step's; and resetting the kernel's mark would
corrupt the whole-run figure that GNU time and the end-to-end benchmark read. A spike shorter
than the sampling period can be missed; filling a gigabyte takes longer than that.
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

SAMPLE_SECONDS = 0.05
# Listing the child processes scans every process of the machine: done every this many samples
# (dbt and other children live for seconds), while the known ones are read at every sample.
CHILD_SCAN_EVERY = 20
_MB = 1024 * 1024


def _rss(processes: list) -> int:
    """Resident bytes of `processes` (one that exits meanwhile holds no memory any more)."""
    import psutil

    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return total


class StepMeter:
    """Measures one step from `start()` to each `figures()` call."""

    def __init__(self, sample_seconds: float = SAMPLE_SECONDS) -> None:
        self.sample_seconds = sample_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0
        self.samples = 0  # samples the thread has taken (a test waits for one after an event)

    def start(self) -> StepMeter:
        import psutil

        self._process = psutil.Process()
        self._tree = [self._process, *self._process.children(recursive=True)]
        self._start_rss = _rss(self._tree)
        self._peak = self._start_rss
        self._started = time.perf_counter()
        self._cpu_started = time.process_time()
        self._thread = threading.Thread(target=self._sample, name="step-budget", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        import psutil

        n = 0
        while not self._stop.wait(self.sample_seconds):
            n += 1
            if n % CHILD_SCAN_EVERY == 0:
                try:
                    self._tree = [self._process, *self._process.children(recursive=True)]
                except psutil.NoSuchProcess:  # a child vanished mid-scan: the next scan sees it
                    pass
            self._peak = max(self._peak, _rss(self._tree))
            self.samples += 1

    def figures(self) -> dict[str, float]:
        """The step's cost so far, rounded for the UI."""
        self._peak = max(self._peak, _rss(self._tree))
        return {
            "step_seconds": round(time.perf_counter() - self._started, 2),
            "step_cpu_seconds": round(time.process_time() - self._cpu_started, 2),
            "step_rss_at_start_mb": round(self._start_rss / _MB, 1),
            "step_peak_rss_mb": round(self._peak / _MB, 1),
        }

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _with_figures(event: Any, meter: StepMeter) -> Any:
    """`event` with the step's figures added to its metadata, if it is an output or a
    materialization result (other events, such as check results, pass as they are)."""
    import dagster as dg

    if isinstance(event, dg.Output):
        return event.with_metadata({**(event.metadata or {}), **meter.figures()})
    if isinstance(event, dg.MaterializeResult):
        return event._replace(metadata={**(event.metadata or {}), **meter.figures()})
    return event


def budgeted(fn: Callable) -> Callable:
    """Add the step's cost to the metadata of what the asset function returns or yields.

    A plain returned value (stored by the IO manager) gets the figures through
    `add_output_metadata` of the running context; `Output` and `MaterializeResult` objects,
    returned or yielded, get them merged into their own metadata.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            meter = StepMeter().start()
            try:
                for event in fn(*args, **kwargs):
                    yield _with_figures(event, meter)
            finally:
                meter.stop()

        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        import dagster as dg

        meter = StepMeter().start()
        try:
            result = fn(*args, **kwargs)
            if isinstance(result, dg.Output | dg.MaterializeResult):
                return _with_figures(result, meter)
            dg.AssetExecutionContext.get().add_output_metadata(meter.figures())
            return result
        finally:
            meter.stop()

    return function
