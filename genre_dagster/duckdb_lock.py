"""One writer at a time on the DuckDB file, across processes, without lock errors.

DuckDB lets one process open a database file for writing; a second process that tries gets
`IOException: Could not set lock on file` at once. Two runs at the same time (a nightly run and a
materialization launched from the UI), or two steps of one run under the multiprocess executor,
would then fail at random. Every connection this project opens goes through `connect`, which
first takes an exclusive `flock` on a sibling lock file and waits for it (logging who holds it),
so accesses are serialized and only the time spent inside a connection is exclusive: steps still
compute in parallel. The kernel releases the lock when a process dies, even by SIGKILL.

The lock is re-entrant inside a process (a step that opens a connection while another is open
in the same process does not deadlock itself) and threads of one process take turns.

Every connection also gets the project's DuckDB settings (memory limit, threads, spill
directory: `genre_dagster.settings.duckdb_settings`), merged under the caller's own config.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genre_dagster.settings import DUCKDB_SETTING_VARS, duckdb_lock_timeout, duckdb_settings

logger = logging.getLogger(__name__)

LOCK_SUFFIX = ".writer-lock"
_POLL_SECONDS = 0.1


class _ProcessLock:
    """The flock on one lock file, shared by all threads of this process (re-entrant)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def acquire(self, purpose: str, timeout: float) -> float:
        """Take the lock; seconds waited. TimeoutError names the holder."""
        started = time.monotonic()
        if not self._thread_lock.acquire(timeout=timeout):
            raise TimeoutError(f"waited {timeout:.0f}s for another thread using {self.path}")
        try:
            if self._depth == 0:
                self._fd = self._flock(purpose, started + timeout)
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise
        return time.monotonic() - started

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._thread_lock.release()

    def _flock(self, purpose: str, deadline: float) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        announced = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    holder = _holder(self.path)
                    if time.monotonic() >= deadline:
                        raise TimeoutError(
                            f"DuckDB file {self.path.name.removesuffix(LOCK_SUFFIX)} is still in "
                            f"use by {holder} after waiting; raise GENRE_DUCKDB_LOCK_TIMEOUT or "
                            "stop that process"
                        ) from None
                    if not announced:
                        logger.warning(
                            "%s waits for the DuckDB file, in use by %s", purpose, holder
                        )
                        announced = True
                    time.sleep(_POLL_SECONDS)
            stamp = datetime.now(UTC).isoformat(timespec="seconds")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} ({purpose}) since {stamp}\n".encode(), 0)
            return fd
        except BaseException:
            os.close(fd)
            raise


def _holder(path: Path) -> str:
    try:
        text = path.read_text().strip()
    except OSError:
        text = ""
    return text or "another process"


_locks: dict[Path, _ProcessLock] = {}
_locks_guard = threading.Lock()


def _lock_for(database: str | Path) -> _ProcessLock:
    path = Path(str(database) + LOCK_SUFFIX).resolve()
    with _locks_guard:
        if path not in _locks:
            _locks[path] = _ProcessLock(path)
        return _locks[path]


@contextmanager
def exclusive(database: str | Path, purpose: str, timeout: float | None = None) -> Iterator[float]:
    """Hold the writer lock of `database` for the block; yields the seconds waited."""
    lock = _lock_for(database)
    waited = lock.acquire(purpose, duckdb_lock_timeout() if timeout is None else timeout)
    try:
        yield waited
    finally:
        lock.release()


@contextmanager
def connect(
    database: str | Path,
    purpose: str = "genre_dagster",
    config: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> Iterator[Any]:
    """A read-write DuckDB connection opened under the writer lock, closed on exit.

    A process outside this project (a DuckDB shell, a stray notebook) does not take our lock but
    still holds DuckDB's own; its lock error is waited out too, until the same deadline.
    """
    import duckdb

    timeout = duckdb_lock_timeout() if timeout is None else timeout
    deadline = time.monotonic() + timeout
    config = connection_config(database, config)
    with exclusive(database, purpose, timeout):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        announced = False
        while True:
            try:
                conn = duckdb.connect(str(database), config=config)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise
                if not announced:
                    logger.warning("%s waits for a process outside genre_dagster: %s", purpose, exc)
                    announced = True
                time.sleep(_POLL_SECONDS)
        try:
            yield conn
        finally:
            conn.close()


def connection_config(database: str | Path, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config `connect` opens `database` with: the project's DuckDB settings (from the
    environment), then the caller's `config` (the IO manager's or the resource's
    `connection_config`) on top. A setting DuckDB refuses raises ValueError naming its variable,
    before any lock is taken."""
    merged: dict[str, Any] = {**duckdb_settings(database), **(config or {})}
    _check(merged, config or {})
    if merged.get("temp_directory"):
        # DuckDB creates the spill folder itself, but not its parents: without them the first
        # query that outgrows the memory limit fails instead of spilling
        Path(merged["temp_directory"]).parent.mkdir(parents=True, exist_ok=True)
    return merged


def _check(merged: dict[str, Any], explicit: dict[str, Any]) -> None:
    """A setting from the environment that DuckDB refuses fails here, naming its variable,
    rather than as a bare parser error on the file (the caller's own config is its own)."""
    for key, variable in DUCKDB_SETTING_VARS.items():
        if key in merged and key not in explicit and key != "temp_directory":
            error = _refused(key, str(merged[key]))
            if error:
                raise ValueError(
                    f"{variable}={merged[key]!r} is not a valid DuckDB {key} "
                    f"(e.g. 2GB for the memory limit, a whole number of threads): {error}"
                )


@functools.lru_cache(maxsize=64)
def _refused(key: str, value: str) -> str:
    """DuckDB's error for `key = value`, "" when accepted (an in-memory DuckDB: milliseconds,
    once per value)."""
    import duckdb

    try:
        duckdb.connect(":memory:", config={key: value}).close()
    except duckdb.Error as exc:
        return str(exc)
    return ""


def effective_settings(
    database: str | Path, config: dict[str, Any] | None = None
) -> dict[str, str]:
    """The memory limit, threads and temp directory a connection to `database` gets, DuckDB's
    defaults filled in (read from an in-memory DuckDB opened with the same options)."""
    import duckdb

    merged = connection_config(database, config)
    keys = list(DUCKDB_SETTING_VARS)
    with duckdb.connect(":memory:", config=merged) as conn:
        row = conn.execute(
            "select " + ", ".join(f"current_setting('{key}')" for key in keys)
        ).fetchone()
    return {key: str(value) for key, value in zip(keys, row, strict=True)}


def dbt_duckdb_env(database: str | Path, config: dict[str, Any] | None = None) -> dict[str, str]:
    """The variables dbt's profile (profiles.yml `settings:`) reads, so that dbt's connections
    get the settings the project's own have: `GENRE_DBT_DUCKDB_MEMORY_LIMIT`, `..._THREADS`,
    `..._TEMP_DIRECTORY`. A profile cannot leave a setting out, so an unset one is passed as
    DuckDB's default as DuckDB reports it (e.g. "18.8 GiB"). The parse that prepares the
    manifest and the build must render the same profile, or dbt drops its partial parse."""
    given = connection_config(database, config)
    effective = effective_settings(database, config)
    return {
        f"GENRE_DBT_DUCKDB_{key.upper()}": str(given.get(key, effective[key]))
        for key in DUCKDB_SETTING_VARS
    }
