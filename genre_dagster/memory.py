"""Hand the heap a finished step freed back to the operating system.

With the in-process executor (`genre-dagster run`, tests) every step shares one process, and
glibc keeps memory that a step freed (embedding matrices, training arrays, report frames) for
later reuse instead of returning it: the process's resident size grows to the sum of the
largest steps' leftovers. `malloc_trim` returns free heap pages; it changes no data.

A full garbage collection walks every object the process holds; once torch, transformers and
Evidently are imported those are mostly long-lived module-level objects, and walking them after
every step adds up over a run. It matters only when the finished steps left
reference cycles holding large buffers (Dagster keeps each step's outputs in its step context
while hooks run, so the previous step's outputs are such a cycle). So the full collection runs
when the resident size has grown by `FULL_COLLECTION_GROWTH_MB` since the last one (or where
the size cannot be read); otherwise only the young generations are collected. Either way
the heap is trimmed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
from functools import lru_cache
from typing import Any

FULL_COLLECTION_GROWTH_MB = 256.0

# resident size (MB) right after the last full collection, lowered whenever the process shrinks
_baseline: dict[str, float | None] = {"rss_mb": None}


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, not macOS)


def resident_mb() -> float | None:
    """This process's resident size in MB (Linux /proc), None where it cannot be read."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def release_memory(full: bool | None = None) -> bool:
    """Collect garbage and return free heap to the OS; False where the C library has no
    `malloc_trim` (then only the garbage collection happens).

    `full` forces (True) or skips (False) the full collection; None decides by the growth of
    the resident size since the last full collection (see the module docstring)."""
    rss = resident_mb()
    baseline = _baseline["rss_mb"]
    if full is None:
        full = rss is None or baseline is None or rss - baseline >= FULL_COLLECTION_GROWTH_MB
    gc.collect(2 if full else 1)
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)  # returns whether pages were released; either way nothing is lost
    after = resident_mb()
    if after is not None:
        _baseline["rss_mb"] = after if full or baseline is None else min(baseline, after)
    return libc is not None
