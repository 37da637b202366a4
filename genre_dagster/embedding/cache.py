"""Content-hash embedding cache in DuckDB: each (model_id, text_hash) is encoded once, ever.

Table (default `embeddings.text_embeddings`): model_id VARCHAR, text_hash VARCHAR, dim INTEGER,
vector FLOAT[], created_at TIMESTAMP, primary key (model_id, text_hash). `model_id` must name
everything that changes vectors (encoders' `model_id` property does).

DuckDB allows one writer per file, so every call opens a connection, does its work and closes
it. Reads and writes go through Arrow in one statement each (no row-by-row inserts).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from genre_dagster.embedding.fields import text_hash
from genre_dagster.warehouse import connect, registered

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


def vector_list_array(matrix: np.ndarray) -> Any:
    """Rows of a [n, dim] matrix as an Arrow list<float32> array (DuckDB FLOAT[]), without a
    Python list per row."""
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    n, dim = matrix.shape
    offsets = pa.array(
        np.arange(0, (n + 1) * dim, dim, dtype=np.int32) if dim else np.zeros(n + 1, np.int32)
    )
    return pa.ListArray.from_arrays(
        offsets, pa.array(matrix.reshape(-1)), type=pa.list_(pa.float32())
    )


class Encoder(Protocol):
    """What embed_with_cache needs from an encoder (TextEncoder and DecoderEncoder fit)."""

    @property
    def model_id(self) -> str: ...

    def encode(self, texts: Sequence[str], on_progress: Any = None) -> np.ndarray: ...


class CacheTable:
    """A DuckDB table of values keyed by (model_id, text_hash); subclasses define the table.

    `db` is a DuckDB file path or a zero-argument factory returning a connection or a context
    manager that yields one (e.g. dagster-duckdb's `DuckDBResource.get_connection`); connections
    are used in a `with` block and so closed (or handed back) after each call.
    """

    def __init__(self, db: str | Path | Callable[[], Any], table: str) -> None:
        if not _IDENT.match(table):
            raise ValueError(f"table must be 'name' or 'schema.name' (identifiers), got {table!r}")
        self.table = table
        self._db = db
        self._ready = False

    def _connect(self) -> Any:
        if callable(self._db):
            return self._db()
        return connect(Path(self._db), purpose=f"embedding cache {self.table}")

    def _columns_sql(self) -> str:
        """Column definitions besides model_id, text_hash and created_at."""
        raise NotImplementedError

    def _ensure_table(self, con: Any) -> None:
        if self._ready:
            return
        if "." in self.table:
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {self.table.split('.')[0]}")
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {self.table} (
                model_id VARCHAR NOT NULL,
                text_hash VARCHAR NOT NULL,
                {self._columns_sql()},
                created_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (model_id, text_hash)
            )"""
        )
        self._ready = True

    def _count(self, con: Any, model_id: str) -> int:
        row = con.execute(
            f"SELECT count(*) FROM {self.table} WHERE model_id = ?", [model_id]
        ).fetchone()
        return int(row[0])

    def count(self, model_id: str | None = None) -> int:
        """Rows cached for `model_id` (all models when None)."""
        with self._connect() as con:
            self._ensure_table(con)
            if model_id is not None:
                return self._count(con, model_id)
            return int(con.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])


class EmbeddingCache(CacheTable):
    """Vectors keyed by (model_id, text_hash) in a DuckDB table (see CacheTable for `db`)."""

    def __init__(
        self, db: str | Path | Callable[[], Any], table: str = "embeddings.text_embeddings"
    ) -> None:
        super().__init__(db, table)

    def _columns_sql(self) -> str:
        return "dim INTEGER NOT NULL, vector FLOAT[] NOT NULL"

    def lookup_matrix(self, model_id: str, hashes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(found [n] bool, matrix [n, dim] float32) for `hashes` in order; missing rows are 0.

        With nothing found the matrix has 0 columns.
        """
        import pyarrow as pa

        hashes = list(hashes)
        wanted = pa.table({"text_hash": pa.array(hashes, pa.string())})
        with self._connect() as con, registered(con, "_wanted_hashes", wanted):
            self._ensure_table(con)
            got = con.execute(
                f"""SELECT c.text_hash, c.dim, c.vector FROM {self.table} c
                    SEMI JOIN (SELECT DISTINCT text_hash FROM _wanted_hashes) w
                    ON c.text_hash = w.text_hash WHERE c.model_id = ?""",
                [model_id],
            ).to_arrow_table()
        found = np.zeros(len(hashes), dtype=bool)
        if got.num_rows == 0:
            return found, np.zeros((len(hashes), 0), dtype=np.float32)
        dims = np.unique(got["dim"].to_numpy())
        if len(dims) != 1:
            raise ValueError(f"cache {self.table}: model_id {model_id!r} has mixed dims {dims}")
        dim = int(dims[0])
        values = got["vector"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
        if values.size != got.num_rows * dim:
            raise ValueError(f"cache {self.table}: a stored vector's length differs from its dim")
        stored = values.astype(np.float32, copy=False).reshape(got.num_rows, dim)
        position = {h: i for i, h in enumerate(got["text_hash"].to_pylist())}
        index = np.fromiter((position.get(h, -1) for h in hashes), np.int64, len(hashes))
        found = index >= 0
        matrix = np.zeros((len(hashes), dim), dtype=np.float32)
        matrix[found] = stored[index[found]]
        return found, matrix

    def lookup(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors of those `hashes` that are in the cache, by hash."""
        hashes = list(hashes)
        found, matrix = self.lookup_matrix(model_id, hashes)
        return {hashes[i]: matrix[i] for i in np.flatnonzero(found)}

    def store(self, model_id: str, hashes: Sequence[str], matrix: np.ndarray) -> int:
        """Store one vector per hash (rows of `matrix`); returns how many rows were new.

        Hashes already cached for this model_id are kept as they are (the same text gives the
        same vector). Raises ValueError on a shape mismatch or non-finite values.
        """
        import pyarrow as pa

        hashes = list(hashes)
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] != len(hashes):
            raise ValueError(
                f"store: matrix shape {matrix.shape} does not match {len(hashes)} hashes"
            )
        if not np.isfinite(matrix).all():
            raise ValueError("store: matrix has NaN or infinite values; nothing was stored")
        if not hashes:
            return 0
        dim = matrix.shape[1]
        rows = pa.table(
            {"text_hash": pa.array(hashes, pa.string()), "vector": vector_list_array(matrix)}
        )
        with self._connect() as con, registered(con, "_new_vectors", rows):
            self._ensure_table(con)
            before = self._count(con, model_id)
            # Dedupe within the call too: the primary key rejects repeats in one insert.
            con.execute(
                f"""INSERT OR IGNORE INTO {self.table} (model_id, text_hash, dim, vector)
                    SELECT ?, text_hash, {dim}, any_value(vector)
                    FROM _new_vectors GROUP BY text_hash""",
                [model_id],
            )
            return self._count(con, model_id) - before


def checked_texts(
    texts_df: pl.DataFrame, caller: str
) -> tuple[list[str], list[str], dict[str, int]]:
    """(texts, hashes, first row of each distinct hash) of a frame with columns text and
    text_hash; raises ValueError on a missing column, a null or a hash that is not sha256(text)."""
    missing_cols = [c for c in ("text", "text_hash") if c not in texts_df.columns]
    if missing_cols:
        raise ValueError(f"{caller}: texts_df lacks columns {missing_cols}")
    texts = texts_df["text"].to_list()
    hashes = texts_df["text_hash"].to_list()
    if None in texts or None in hashes:
        raise ValueError(f"{caller}: text and text_hash must not be null")
    bad = [i for i, (t, h) in enumerate(zip(texts, hashes, strict=True)) if text_hash(t) != h]
    if bad:
        raise ValueError(
            f"{caller}: {len(bad)} row(s) have a text_hash that is not sha256(text), "
            f"e.g. rows {bad[:5]}"
        )
    first_row: dict[str, int] = {}
    for i, h in enumerate(hashes):
        first_row.setdefault(h, i)
    return texts, hashes, first_row


def embed_with_cache(
    texts_df: pl.DataFrame,
    encoder: Encoder,
    cache: EmbeddingCache,
    model_id: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Vectors for every row of `texts_df` (columns text, text_hash), reusing the cache.

    Only hashes not cached under `model_id` (default: `encoder.model_id`) are encoded, each
    unique text once; new vectors are stored. Returns (matrix aligned with the rows, stats) with
    stats = texts, unique_texts, encoded, reused, seconds, texts_per_second (rows / seconds),
    encode_seconds. Raises ValueError when a text_hash is not the sha256 of its text.
    """
    start = time.perf_counter()
    model_id = model_id or encoder.model_id
    texts, hashes, first_row = checked_texts(texts_df, "embed_with_cache")
    unique_hashes = list(first_row)
    found, cached = cache.lookup_matrix(model_id, unique_hashes)
    todo = [h for h, hit in zip(unique_hashes, found, strict=True) if not hit]
    encode_seconds = 0.0
    fresh = None
    if todo:
        t0 = time.perf_counter()
        fresh = encoder.encode([texts[first_row[h]] for h in todo], on_progress=on_progress)
        encode_seconds = time.perf_counter() - t0
        cache.store(model_id, todo, fresh)
    dim = fresh.shape[1] if fresh is not None else cached.shape[1]
    if found.any() and fresh is not None and cached.shape[1] != dim:
        raise ValueError(
            f"embed_with_cache: cached vectors for {model_id!r} have dim {cached.shape[1]}, "
            f"the encoder gives {dim}: model_id does not describe the encoder"
        )
    unique_matrix = np.zeros((len(unique_hashes), dim), dtype=np.float32)
    if found.any():
        unique_matrix[found] = cached[found]
    if fresh is not None:
        unique_matrix[~found] = fresh
    slot = {h: i for i, h in enumerate(unique_hashes)}
    matrix = unique_matrix[np.fromiter((slot[h] for h in hashes), np.int64, len(hashes))]
    seconds = time.perf_counter() - start
    stats = {
        "texts": len(hashes),
        "unique_texts": len(unique_hashes),
        "encoded": len(todo),
        "reused": len(unique_hashes) - len(todo),
        "seconds": round(seconds, 3),
        "texts_per_second": round(len(hashes) / seconds, 1) if seconds > 0 else float("inf"),
        "encode_seconds": round(encode_seconds, 3),
    }
    return matrix, stats
