"""The tables beside the response cache that make imported answers traceable.

- `enrichment.llm_imports`: where each imported answer came from (import name, file, line,
  format, batch custom_id), keyed like the answer in `enrichment.llm_responses`;
- `enrichment.llm_import_rejects`: every line an import did not take, with its reason (the
  quarantine of imports; user ids only as pseudonyms);
- `enrichment.llm_batch_requests`: the requests of each exported batch (custom_id -> role,
  prompt version, input hash and the item keys it answers), so answers can come back in any
  order, days later.

All writes of one import happen in one transaction under the DuckDB writer lock, through the
response cache's connection: an import that meets a nightly run waits for it and loses nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genre_dagster.enrichment.cache import CachedResponse, ResponseCache, insert_rows

IMPORTS = "enrichment.llm_imports"
REJECTS = "enrichment.llm_import_rejects"
BATCH_REQUESTS = "enrichment.llm_batch_requests"

_DDL = (
    f"""CREATE TABLE IF NOT EXISTS {IMPORTS} (
        role VARCHAR NOT NULL,
        prompt_version VARCHAR NOT NULL,
        model VARCHAR NOT NULL,
        input_hash VARCHAR NOT NULL,
        item_key VARCHAR NOT NULL,
        import_name VARCHAR NOT NULL,
        source_format VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        line_number BIGINT NOT NULL,
        custom_id VARCHAR,
        imported_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (role, prompt_version, model, input_hash)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {REJECTS} (
        import_name VARCHAR NOT NULL,
        role VARCHAR NOT NULL,
        source_file VARCHAR NOT NULL,
        line_number BIGINT NOT NULL,
        item_key VARCHAR,
        reason VARCHAR NOT NULL,
        detail VARCHAR,
        raw_line VARCHAR,
        rejected_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (import_name, role, source_file, line_number)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {BATCH_REQUESTS} (
        custom_id VARCHAR PRIMARY KEY,
        role VARCHAR NOT NULL,
        prompt_version VARCHAR NOT NULL,
        input_hash VARCHAR NOT NULL,
        item_keys VARCHAR[] NOT NULL,
        batch_model VARCHAR NOT NULL,
        export_file VARCHAR NOT NULL,
        exported_at TIMESTAMPTZ NOT NULL
    )""",
)


@dataclass(frozen=True)
class Provenance:
    """Where one imported answer came from."""

    answer: CachedResponse
    import_name: str
    source_format: str
    source_file: str
    line_number: int
    custom_id: str | None = None


@dataclass(frozen=True)
class Reject:
    """One line an import did not take."""

    import_name: str
    role: str
    source_file: str
    line_number: int
    item_key: str | None
    reason: str
    detail: str
    raw_line: str | None


@dataclass(frozen=True)
class ExportedRequest:
    """One request of an exported batch."""

    custom_id: str
    role: str
    prompt_version: str
    input_hash: str
    item_keys: tuple[str, ...]


class ImportStore:
    """Reads and writes the import tables of the DuckDB file of `cache`."""

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache

    def _connection(self, purpose: str):
        return self.cache.connection(purpose)

    @staticmethod
    def _ensure(con: Any) -> None:
        for ddl in _DDL:
            con.execute(ddl)

    def stored(self, answers: Sequence[CachedResponse]) -> dict[tuple, dict[str, Any] | None]:
        """The parsed output already stored under each answer's cache key (key -> parsed)."""
        if not answers:
            return {}
        keys = [[a.role, a.prompt_version, a.model, a.input_hash] for a in answers]
        with self._connection("LLM import (reading)") as con:
            rows = con.execute(
                f"""SELECT role, prompt_version, model, input_hash, parsed_json
                    FROM {self.cache.table}
                    WHERE [role, prompt_version, model, input_hash]
                        IN (SELECT unnest(?::VARCHAR[][]))""",
                [keys],
            ).fetchall()
        return {tuple(r[:4]): json.loads(r[4]) if r[4] is not None else None for r in rows}

    def write(self, provenance: Sequence[Provenance], rejects: Sequence[Reject]) -> None:
        """Answers with their provenance, and rejected lines, in one transaction."""
        if not provenance and not rejects:
            return
        now = datetime.now().astimezone()
        with self._connection("LLM import") as con:
            self._ensure(con)
            con.execute("BEGIN")
            try:
                self.cache.insert(con, [p.answer for p in provenance])
                _insert(
                    con,
                    IMPORTS,
                    [
                        [
                            p.answer.role,
                            p.answer.prompt_version,
                            p.answer.model,
                            p.answer.input_hash,
                            p.answer.item_key,
                            p.import_name,
                            p.source_format,
                            p.source_file,
                            p.line_number,
                            p.custom_id,
                            now,
                        ]
                        for p in provenance
                    ],
                )
                _insert(
                    con,
                    REJECTS,
                    [
                        [
                            r.import_name,
                            r.role,
                            r.source_file,
                            r.line_number,
                            r.item_key,
                            r.reason,
                            r.detail,
                            r.raw_line,
                            now,
                        ]
                        for r in rejects
                    ],
                )
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def rejects(self, import_name: str | None = None) -> list[dict[str, Any]]:
        """Rejected lines (of one import, or all), in file and line order."""
        where, params = ("WHERE import_name = ?", [import_name]) if import_name else ("", [])
        with self._connection("LLM import rejects (reading)") as con:
            self._ensure(con)
            cursor = con.execute(
                f"SELECT * FROM {REJECTS} {where} ORDER BY import_name, source_file, line_number",
                params,
            )
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def record_export(
        self, requests: Sequence[ExportedRequest], batch_model: str, export_file: str
    ) -> None:
        """Remember the requests of an exported batch (a request exported again is updated)."""
        now = datetime.now().astimezone()
        with self._connection("LLM batch export") as con:
            self._ensure(con)
            con.execute("BEGIN")
            _insert(
                con,
                BATCH_REQUESTS,
                [
                    [
                        r.custom_id,
                        r.role,
                        r.prompt_version,
                        r.input_hash,
                        list(r.item_keys),
                        batch_model,
                        export_file,
                        now,
                    ]
                    for r in requests
                ],
            )
            con.execute("COMMIT")

    def exported(self, custom_ids: Sequence[str]) -> dict[str, ExportedRequest]:
        """The exported requests with these custom ids (missing ids are absent)."""
        if not custom_ids:
            return {}
        with self._connection("LLM batch export (reading)") as con:
            self._ensure(con)
            rows = con.execute(
                f"""SELECT custom_id, role, prompt_version, input_hash, item_keys
                    FROM {BATCH_REQUESTS} WHERE custom_id IN (SELECT unnest(?::VARCHAR[]))""",
                [sorted(set(custom_ids))],
            ).fetchall()
        return {r[0]: ExportedRequest(r[0], r[1], r[2], r[3], tuple(r[4])) for r in rows}


def _insert(con: Any, table: str, rows: list[list[Any]]) -> None:
    """Insert or replace `rows` (each a full row in the table's column order)."""
    columns = tuple(
        name
        for (name,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
            "AND table_name = ? ORDER BY ordinal_position",
            table.split("."),
        ).fetchall()
    )
    insert_rows(con, table, columns, rows)
