"""Hand the heap a finished step freed back to the operating system.

With the in-process executor (`genre-dagster run`, tests) every step shares one process, and
glibc keeps memory that a step freed (embedding matrices, training arrays, report frames) for
later reuse instead of returning it: the process's resident size grows to the sum of the
largest steps' leftovers. `malloc_trim` returns free heap pages; it changes no data.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None  # glibc only (not musl, not macOS)


def release_memory() -> bool:
    """Collect garbage and return free heap to the OS; False where the C library has no
    `malloc_trim` (then only the garbage collection happens)."""
    gc.collect()
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)  # returns whether pages were released; either way nothing is lost
    return True
