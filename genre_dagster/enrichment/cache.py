"""The LLM response cache: one DuckDB table, `enrichment.llm_responses`.

Rows are keyed by (role, prompt_version, model, input_hash); a rerun reuses finished answers.
Answers imported from files (`genre_dagster.enrichment.importer`) live in the same table under
the prompt version `imported:<name>`; `latest_imported` finds them per item.
Each call opens the database under the project's writer lock (`genre_dagster.duckdb_lock`), does
its work and closes it, because DuckDB allows one writer per file and other pipeline steps need it
between our batches.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

IMPORTED_PREFIX = "imported:"

_COLUMNS = (
    "role",
    "prompt_version",
    "model",
    "input_hash",
    "item_key",
    "status",
    "raw_text",
    "parsed_json",
    "error",
    "notes",
    "prompt_tokens",
    "completion_tokens",
    "seconds",
    "attempts",
    "created_at",
)


@dataclass
class CachedResponse:
    """One stored answer. `status` is "ok" (parsed holds the validated output) or "failed"."""

    role: str
    prompt_version: str
    model: str
    input_hash: str
    item_key: str
    status: str
    raw_text: str | None
    parsed: dict[str, Any] | None
    error: str | None
    notes: list[str] = field(default_factory=list)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    attempts: int = 0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def __post_init__(self) -> None:
        if self.status not in ("ok", "failed"):
            raise ValueError(f"CachedResponse {self.input_hash}: bad status {self.status!r}")
        if (self.status == "ok") != (self.parsed is not None):
            raise ValueError(
                f"CachedResponse {self.input_hash}: ok rows (only) carry parsed output"
            )


class ResponseCache:
    """Reads and writes `<schema>.<table>` in the DuckDB file at `db_path` (created if needed)."""

    def __init__(
        self,
        db_path: str | Path,
        schema: str = "enrichment",
        table: str = "llm_responses",
        lock_timeout: float | None = None,
    ) -> None:
        for name in (schema, table):
            if not name.isidentifier():
                raise ValueError(f"ResponseCache: {name!r} is not a valid identifier")
        self.db_path = Path(db_path)
        self.table = f"{schema}.{table}"
        # each item's last input: its fields' digest and the input hash they rendered to
        self.input_keys_table = f"{schema}.{table}_input_keys"
        self._schema = schema
        self.lock_timeout = lock_timeout
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[Any]:
        """A connection under the project's DuckDB writer lock (waits for other processes)."""
        with self.connection(f"LLM response cache {self.table}") as con:
            yield con

    @contextmanager
    def connection(self, purpose: str) -> Iterator[Any]:
        """A connection under the writer lock with the table in place, for callers that write
        answers together with rows of their own in one transaction (see `insert`)."""
        from genre_dagster.warehouse import connect

        with connect(self.db_path, purpose, timeout=self.lock_timeout) as con:
            self._ensure_table(con)
            yield con

    def _ensure_table(self, con: Any) -> None:
        if not self._ready:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {self._schema}")
            con.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.table} (
                    role VARCHAR NOT NULL,
                    prompt_version VARCHAR NOT NULL,
                    model VARCHAR NOT NULL,
                    input_hash VARCHAR NOT NULL,
                    item_key VARCHAR,
                    status VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
                    raw_text VARCHAR,
                    parsed_json JSON,
                    error VARCHAR,
                    notes VARCHAR[],
                    prompt_tokens INTEGER,
                    completion_tokens INTEGER,
                    seconds DOUBLE,
                    attempts INTEGER,
                    created_at TIMESTAMPTZ NOT NULL,
                    PRIMARY KEY (role, prompt_version, model, input_hash)
                )"""
            )
            con.execute(
                f"""CREATE TABLE IF NOT EXISTS {self.input_keys_table} (
                    role VARCHAR NOT NULL,
                    prompt_version VARCHAR NOT NULL,
                    item_key VARCHAR NOT NULL,
                    context VARCHAR NOT NULL,
                    fields_digest VARCHAR NOT NULL,
                    input_hash VARCHAR NOT NULL,
                    PRIMARY KEY (role, prompt_version, item_key)
                )"""
            )
            self._ready = True

    def get(
        self, role: str, prompt_version: str, model: str, input_hashes: list[str]
    ) -> dict[str, CachedResponse]:
        """Stored rows for these hashes (hash -> row); missing hashes are absent."""
        if not input_hashes:
            return {}
        with self._connect() as con:
            rows = con.execute(
                f"""SELECT {", ".join(_COLUMNS)} FROM {self.table}
                    WHERE role = ? AND prompt_version = ? AND model = ?
                      AND input_hash IN (SELECT unnest(?::VARCHAR[]))""",
                [role, prompt_version, model, sorted(set(input_hashes))],
            ).fetchall()
        return {row[3]: _from_row(row) for row in rows}

    def put(self, responses: list[CachedResponse]) -> None:
        """Insert or replace these rows in one short transaction."""
        if not responses:
            return
        keys = [(r.role, r.prompt_version, r.model, r.input_hash) for r in responses]
        if len(set(keys)) != len(keys):
            raise ValueError("ResponseCache.put: duplicate keys in one write")
        with self._connect() as con:
            con.execute("BEGIN")
            self.insert(con, responses)
            con.execute("COMMIT")

    def insert(self, con: Any, responses: list[CachedResponse]) -> None:
        """Insert or replace rows on an open `connection` (the caller owns the transaction)."""
        insert_rows(con, self.table, _COLUMNS, [_to_row(r) for r in responses])

    def latest_ok(
        self, role: str, prompt_version: str, model: str, item_keys: list[str]
    ) -> dict[str, CachedResponse]:
        """The newest valid answer per item key, whatever input it answered (item key -> row).

        An item's input changes when a user clicks more or an item's text is edited; until
        the new input is answered, the answer to the earlier one is the best there is."""
        if not item_keys:
            return {}
        with self._connect() as con:
            rows = con.execute(
                f"""SELECT {", ".join(_COLUMNS)} FROM {self.table}
                    WHERE role = ? AND prompt_version = ? AND model = ? AND status = 'ok'
                      AND item_key IN (SELECT unnest(?::VARCHAR[]))
                    QUALIFY row_number() OVER (
                        PARTITION BY item_key ORDER BY created_at DESC, input_hash) = 1""",
                [role, prompt_version, model, sorted(set(item_keys))],
            ).fetchall()
        return {row[4]: _from_row(row) for row in rows}

    def latest_imported(
        self, roles: tuple[str, ...], item_keys: list[str]
    ) -> dict[str, CachedResponse]:
        """The newest imported answer per item key among `roles`, whatever model or input it
        answered (item key -> row): imports are chosen by the user, so they are published in
        place of the deployment's own LLM for these items."""
        if not item_keys or not roles:
            return {}
        with self._connect() as con:
            rows = con.execute(
                f"""SELECT {", ".join(_COLUMNS)} FROM {self.table}
                    WHERE role IN (SELECT unnest(?::VARCHAR[])) AND status = 'ok'
                      AND starts_with(prompt_version, ?)
                      AND item_key IN (SELECT unnest(?::VARCHAR[]))
                    QUALIFY row_number() OVER (
                        PARTITION BY item_key
                        ORDER BY created_at DESC, prompt_version, role, input_hash) = 1""",
                [list(roles), IMPORTED_PREFIX, sorted(set(item_keys))],
            ).fetchall()
        return {row[4]: _from_row(row) for row in rows}

    def input_keys(
        self, role: str, prompt_version: str, context: str
    ) -> dict[str, tuple[str, str]]:
        """The input hash each item's fields rendered to when last seen under `context` (item
        key -> (fields digest, input hash)); see `Stage.run`."""
        with self._connect() as con:
            rows = con.execute(
                f"""SELECT item_key, fields_digest, input_hash FROM {self.input_keys_table}
                    WHERE role = ? AND prompt_version = ? AND context = ?""",
                [role, prompt_version, context],
            ).fetchall()
        return {key: (digest, input_hash) for key, digest, input_hash in rows}

    def keep_input_keys(
        self, role: str, prompt_version: str, context: str, entries: list[tuple[str, str, str]]
    ) -> None:
        """Remember (item key, fields digest, input hash) under `context`, replacing each
        item's earlier entry."""
        if not entries:
            return
        rows = [[role, prompt_version, key, context, d, h] for key, d, h in entries]
        columns = ("role", "prompt_version", "item_key", "context", "fields_digest", "input_hash")
        with self._connect() as con:
            con.execute("BEGIN")
            insert_rows(con, self.input_keys_table, columns, rows)
            con.execute("COMMIT")

    def all(self, role: str | None = None) -> list[CachedResponse]:
        """Every stored row (optionally of one role), oldest first."""
        where, params = ("WHERE role = ?", [role]) if role else ("", [])
        with self._connect() as con:
            rows = con.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM {self.table} {where} "
                "ORDER BY created_at, input_hash",
                params,
            ).fetchall()
        return [_from_row(row) for row in rows]


def insert_rows(con: Any, table: str, columns: tuple[str, ...], rows: list[list[Any]]) -> None:
    """Insert or replace `rows` (values in `columns` order) in one statement through Arrow:
    DuckDB's executemany costs milliseconds a row, which an import of 50,000 answers feels."""
    if not rows:
        return
    import pyarrow as pa

    from genre_dagster.warehouse import registered

    data = pa.table({name: [row[i] for row in rows] for i, name in enumerate(columns)})
    names = ", ".join(columns)
    with registered(con, "_rows_to_insert", data):
        con.execute(f"INSERT OR REPLACE INTO {table} ({names}) SELECT {names} FROM _rows_to_insert")


def _to_row(r: CachedResponse) -> list[Any]:
    parsed = json.dumps(r.parsed, ensure_ascii=False) if r.parsed is not None else None
    return [
        r.role,
        r.prompt_version,
        r.model,
        r.input_hash,
        r.item_key,
        r.status,
        r.raw_text,
        parsed,
        r.error,
        list(r.notes),
        r.prompt_tokens,
        r.completion_tokens,
        r.seconds,
        r.attempts,
        r.created_at,
    ]


def _from_row(row: tuple[Any, ...]) -> CachedResponse:
    values = dict(zip(_COLUMNS, row, strict=True))
    parsed = values.pop("parsed_json")
    values["parsed"] = json.loads(parsed) if parsed is not None else None
    values["notes"] = list(values["notes"] or [])
    return CachedResponse(**values)
