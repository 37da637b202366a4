"""The layer cache: each item text's token states after layer k of a language model, computed
once and kept in DuckDB beside the embedding cache, under the same content-hash keys.

Table (default `embeddings.layer_states`): model_id (StatesSource.cache_id: model, split
layer, length cap, storage dtype), text_hash, n_tokens, dim, states BLOB (the [n_tokens, dim]
matrix in the storage dtype, row-major, native byte order), created_at. Only real tokens are
stored, so a text's attention mask is n_tokens ones and no byte goes to padding. A refresh
computes only texts whose hash is not stored: a changed text gets new states, the others are
read back.

In memory, `LayerStates` holds the states of one text field for rows 0..n-1 (items) as one
ragged tensor; `gather(rows)` pads a batch to its longest text. `LiveLayerStates` is the same
interface without a cache (the lower layers run on every call): the reference the cache is
measured against.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from genre_dagster.embedding.cache import CacheTable, checked_texts
from genre_dagster.warehouse import registered

if TYPE_CHECKING:
    import torch

    from genre_dagster.embedding.lm_split import LowerLayers, StatesSource


@dataclass
class TokenStates:
    """A batch of token states: hidden float32 [B, T, D] (zero at padding), mask int64 [B, T]
    (1 = real token), right-padded."""

    hidden: torch.Tensor
    mask: torch.Tensor


def _torch_dtype(name: str) -> Any:
    from genre_dagster.embedding.devices import torch_dtype

    return torch_dtype(name)


class LayerStates:
    """Token states of one text field per row: `hidden` [total_tokens, dim] in the storage
    dtype; row i is hidden[starts[i] : starts[i] + lengths[i]] (rows with equal texts share)."""

    def __init__(
        self,
        source: StatesSource,
        hidden: torch.Tensor,
        starts: np.ndarray,
        lengths: np.ndarray,
        text_hashes: Sequence[str],
    ) -> None:
        self.source = source
        self.hidden = hidden
        self.starts = np.asarray(starts, dtype=np.int64)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.text_hashes = list(text_hashes)
        if not (len(self.starts) == len(self.lengths) == len(self.text_hashes)):
            raise ValueError("LayerStates: starts, lengths and text_hashes differ in length")
        if len(self.lengths) and (self.lengths < 1).any():
            raise ValueError("LayerStates: every row needs at least one token")
        if len(self.starts) and int((self.starts + self.lengths).max()) > hidden.shape[0]:
            raise ValueError("LayerStates: a row reaches past the end of the hidden states")

    @classmethod
    def for_hashes(
        cls, source: StatesSource, found: dict[str, torch.Tensor], hashes: Sequence[str]
    ) -> LayerStates:
        """Rows whose states are found[hashes[i]]: each distinct text's states held once."""
        unique = list(dict.fromkeys(hashes))
        slot = {h: i for i, h in enumerate(unique)}
        inverse = np.fromiter((slot[h] for h in hashes), np.int64, len(hashes))
        return cls.from_unique(source, [found[h] for h in unique], inverse, hashes)

    @classmethod
    def from_unique(
        cls,
        source: StatesSource,
        unique: list[torch.Tensor],
        inverse: np.ndarray,
        text_hashes: Sequence[str],
    ) -> LayerStates:
        """Rows whose states are unique[inverse[i]]."""
        import torch

        sizes = np.array([len(t) for t in unique], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]) if len(sizes) else sizes
        hidden = torch.cat(unique) if unique else torch.zeros(0, 0)
        return cls(source, hidden, offsets[inverse], sizes[inverse], text_hashes)

    @property
    def n_rows(self) -> int:
        return len(self.lengths)

    @property
    def dim(self) -> int:
        return int(self.hidden.shape[1])

    @property
    def nbytes(self) -> int:
        """Bytes of the stored states (shared rows counted once)."""
        return int(self.hidden.numel() * self.hidden.element_size())

    def gather(self, rows: Any) -> TokenStates:
        """Right-padded float32 states of `rows` (an index tensor or array)."""
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 1
        step = np.arange(width)
        mask = step[None, :] < lengths[:, None]
        position = np.where(mask, self.starts[rows, None] + step[None, :], 0)
        flat = torch.from_numpy(position.reshape(-1))
        hidden = self.hidden.index_select(0, flat).view(len(rows), width, self.dim).float()
        mask_t = torch.from_numpy(mask)
        return TokenStates(hidden.masked_fill(~mask_t[..., None], 0.0), mask_t.long())


class LiveLayerStates:
    """The uncached path: like LayerStates, but the lower layers run for the rows asked for on
    every `gather` (rounded to the same storage dtype, so both paths feed the same numbers)."""

    def __init__(self, lower: LowerLayers, texts: Sequence[str]) -> None:
        from genre_dagster.embedding.fields import text_hash

        self.source = lower.source
        self.text_hashes = [text_hash(t) for t in texts]
        self._lower = lower
        self._token_ids = lower.tokenize(list(texts))

    @property
    def n_rows(self) -> int:
        return len(self._token_ids)

    @property
    def dim(self) -> int:
        return self._lower.dim

    def gather(self, rows: Any) -> TokenStates:
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        states = self._lower.states_of_tokens([self._token_ids[i] for i in rows])
        hidden = torch.nn.utils.rnn.pad_sequence(states, batch_first=True)  # zeros at padding
        lengths = torch.tensor([len(s) for s in states])
        mask = torch.arange(hidden.shape[1])[None, :] < lengths[:, None]
        return TokenStates(hidden.float(), mask.long())


class LayerStateCache(CacheTable):
    """Token states keyed by (StatesSource.cache_id, text_hash) in a DuckDB table."""

    def __init__(
        self, db: str | Path | Callable[[], Any], table: str = "embeddings.layer_states"
    ) -> None:
        super().__init__(db, table)

    def _columns_sql(self) -> str:
        return "n_tokens INTEGER NOT NULL, dim INTEGER NOT NULL, states BLOB NOT NULL"

    def lookup(self, source: StatesSource, hashes: Sequence[str]) -> dict[str, torch.Tensor]:
        """Stored states [n_tokens, dim] (storage dtype) of those `hashes` that are cached."""
        import pyarrow as pa
        import torch

        wanted = pa.table({"text_hash": pa.array(list(hashes), pa.string())})
        with self._connect() as con:
            self._ensure_table(con)
            with registered(con, "_wanted_hashes", wanted):
                got = con.execute(
                    f"""SELECT c.text_hash, c.n_tokens, c.dim, c.states FROM {self.table} c
                        SEMI JOIN (SELECT DISTINCT text_hash FROM _wanted_hashes) w
                        ON c.text_hash = w.text_hash WHERE c.model_id = ?""",
                    [source.cache_id],
                ).fetchall()
        dtype = _torch_dtype(source.dtype)
        out = {}
        for text_hash, n_tokens, dim, blob in got:
            flat = torch.frombuffer(bytearray(blob), dtype=torch.uint8).view(dtype)
            if flat.numel() != n_tokens * dim:
                raise ValueError(f"cache {self.table}: states of {text_hash} have a wrong size")
            out[text_hash] = flat.view(n_tokens, dim)
        return out

    def store(
        self, source: StatesSource, hashes: Sequence[str], states: Sequence[torch.Tensor]
    ) -> int:
        """Store one [n_tokens, dim] tensor per hash; returns how many rows were new."""
        import pyarrow as pa
        import torch

        if len(hashes) != len(states):
            raise ValueError(f"store: {len(hashes)} hashes but {len(states)} state matrices")
        if not hashes:
            return 0
        dtype = _torch_dtype(source.dtype)
        blobs = []
        for s in states:
            if s.dtype != dtype or s.ndim != 2:
                raise ValueError(f"store: states must be 2-D {source.dtype}, got {s.dtype}")
            if not torch.isfinite(s).all():
                raise ValueError("store: states have NaN or infinite values; nothing was stored")
            blobs.append(s.contiguous().view(torch.uint8).numpy().tobytes())
        rows = pa.table(
            {
                "text_hash": pa.array(list(hashes), pa.string()),
                "n_tokens": pa.array([s.shape[0] for s in states], pa.int32()),
                "dim": pa.array([s.shape[1] for s in states], pa.int32()),
                "states": pa.array(blobs, pa.large_binary()),
            }
        )
        with self._connect() as con:
            self._ensure_table(con)
            with registered(con, "_new_states", rows):
                before = self._count(con, source.cache_id)
                con.execute(
                    f"""INSERT OR IGNORE INTO {self.table} (model_id, text_hash, n_tokens, dim,
                        states) SELECT ?, text_hash, any_value(n_tokens), any_value(dim),
                        any_value(states) FROM _new_states GROUP BY text_hash""",
                    [source.cache_id],
                )
                return self._count(con, source.cache_id) - before

    def stored_hashes(self, source: StatesSource, hashes: Sequence[str]) -> set[str]:
        """Those of `hashes` whose states are stored under `source` (no state is read)."""
        import pyarrow as pa

        wanted = pa.table({"text_hash": pa.array(list(hashes), pa.string())})
        with self._connect() as con:
            self._ensure_table(con)
            with registered(con, "_wanted_hashes", wanted):
                got = con.execute(
                    f"""SELECT c.text_hash FROM {self.table} c
                        SEMI JOIN (SELECT DISTINCT text_hash FROM _wanted_hashes) w
                        ON c.text_hash = w.text_hash WHERE c.model_id = ?""",
                    [source.cache_id],
                ).fetchall()
        return {h for (h,) in got}

    def nbytes(self, source: StatesSource) -> int:
        """Bytes of the states stored under `source` (the cache's size for this model)."""
        with self._connect() as con:
            self._ensure_table(con)
            row = con.execute(
                f"SELECT coalesce(sum(octet_length(states)), 0) FROM {self.table} "
                "WHERE model_id = ?",
                [source.cache_id],
            ).fetchone()
        return int(row[0])


@dataclass(frozen=True)
class LayerModel:
    """The lower half whose token states a tuned scorer reads: its config keys lm_model (None:
    the offline MiniLM), lm_gguf_file, lm_split_layer and lm_max_length."""

    model: str | None
    gguf_file: str | None
    split_layer: int
    max_length: int

    @classmethod
    def of(cls, config: dict[str, Any]) -> LayerModel:
        """From a (resolved or stored) neural config; absent keys take presets.DEFAULTS."""
        from genre_dagster.scoring.presets import DEFAULTS

        value = {k: config.get(k, DEFAULTS[k]) for k in DEFAULTS if k.startswith("lm_")}
        return cls(
            value["lm_model"],
            value["lm_gguf_file"],
            int(value["lm_split_layer"]),
            int(value["lm_max_length"]),
        )

    def describe(self) -> str:
        """The asset config that builds these states, as a person would type it."""
        return (
            f"lm_model={self.model or 'None (the offline MiniLM)'}, lm_gguf_file="
            f"{self.gguf_file}, lm_split_layer={self.split_layer}, "
            f"lm_max_length={self.max_length}"
        )

    def lower(self, store_dtype: str = "bf16", batch_size: int = 64) -> LowerLayers:
        """Its frozen lower layers (loads the model)."""
        from genre_dagster.embedding.lm_split import LowerLayers

        return LowerLayers(
            self.model,
            self.gguf_file,
            split_layer=self.split_layer,
            max_length=self.max_length,
            store_dtype=store_dtype,
            batch_size=batch_size,
        )


def refresh_layer_cache(
    texts_df: pl.DataFrame,
    lower: LowerLayers,
    cache: LayerStateCache,
    chunk: int = 2048,
    log: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Make the cache hold the states of every text of `texts_df` (columns text, text_hash)
    under `lower.source`, computing only the texts it lacks (each distinct text once), `chunk`
    texts per write (so a stopped run keeps what it computed). Nothing is read back.

    Returns texts (rows), unique_texts, computed, reused, cache_mb (every state stored under
    this source), seconds, compute_seconds.
    """
    start = time.perf_counter()
    texts, hashes, first_row = checked_texts(texts_df, "refresh_layer_cache")
    unique_hashes = list(first_row)
    stored = cache.stored_hashes(lower.source, unique_hashes)
    todo = [h for h in unique_hashes if h not in stored]
    compute_seconds = 0.0
    for s in range(0, len(todo), chunk):
        part = todo[s : s + chunk]
        t0 = time.perf_counter()
        states = lower.states([texts[first_row[h]] for h in part])
        compute_seconds += time.perf_counter() - t0
        cache.store(lower.source, part, states)
        log(f"layer states: {s + len(part)} of {len(todo)} new texts computed")
    return {
        "texts": len(hashes),
        "unique_texts": len(unique_hashes),
        "computed": len(todo),
        "reused": len(unique_hashes) - len(todo),
        "cache_mb": round(cache.nbytes(lower.source) / 2**20, 3),
        "seconds": round(time.perf_counter() - start, 3),
        "compute_seconds": round(compute_seconds, 3),
    }


def read_layer_states(
    cache: LayerStateCache,
    texts: dict[str, pl.DataFrame],
    model: LayerModel,
    asset: str,
) -> dict[str, LayerStates]:
    """Per field, the cached states of its texts (frames with news_id, text, text_hash, in the
    item table's row order), for `model` in whichever storage dtype holds every text.

    Raises RuntimeError naming `asset` (what to materialize, with which config) when a text has
    no state: states are never computed here, so a scorer never silently trains on others."""
    from genre_dagster.embedding.lm_split import STORE_DTYPES, StatesSource
    from genre_dagster.embedding.modelfiles import model_name

    name = model_name(model.model, model.gguf_file)
    wanted = list(dict.fromkeys(h for frame in texts.values() for h in frame["text_hash"]))
    best: tuple[int, Any] = (-1, None)
    for dtype in STORE_DTYPES:
        source = StatesSource(name, model.split_layer, model.max_length, dtype)
        n_stored = len(cache.stored_hashes(source, wanted))
        if n_stored > best[0]:
            best = (n_stored, source)
    n_stored, source = best
    if n_stored < len(wanted):
        stored = cache.stored_hashes(source, wanted)
        missing = [
            f"{field} of {news_id}"
            for field, frame in texts.items()
            for news_id, h in zip(frame["news_id"], frame["text_hash"], strict=True)
            if h not in stored
        ]
        raise RuntimeError(
            f"{cache.table} lacks the layer states of {len(wanted) - n_stored} of "
            f"{len(wanted)} item texts for {name} ({len(missing)} item fields, e.g. "
            f"{missing[:3]}): materialize the asset {asset} with {model.describe()} and the "
            f"fields {sorted(texts)} (new, changed and synthetic items are added by it)"
        )
    found = cache.lookup(source, wanted)
    out = {}
    for field, frame in texts.items():
        out[field] = LayerStates.for_hashes(source, found, frame["text_hash"].to_list())
    return out


def cached_layer_states(
    texts_df: pl.DataFrame, lower: LowerLayers, cache: LayerStateCache
) -> tuple[LayerStates, dict[str, Any]]:
    """Layer states for every row of `texts_df` (columns text, text_hash), reusing the cache.

    Only hashes not cached under `lower.source` are run through the lower layers (each distinct
    text once) and stored. Returns (states aligned with the rows, stats): texts, unique_texts,
    computed, reused, tokens, state_bytes (these rows' states), cache_bytes (every state stored
    for this model, split and length), seconds, compute_seconds.
    """
    start = time.perf_counter()
    texts, hashes, first_row = checked_texts(texts_df, "cached_layer_states")
    unique_hashes = list(first_row)
    found = cache.lookup(lower.source, unique_hashes)
    todo = [h for h in unique_hashes if h not in found]
    compute_seconds = 0.0
    if todo:
        t0 = time.perf_counter()
        fresh = lower.states([texts[first_row[h]] for h in todo])
        compute_seconds = time.perf_counter() - t0
        cache.store(lower.source, todo, fresh)
        found.update(zip(todo, fresh, strict=True))
    states = LayerStates.for_hashes(lower.source, found, hashes)
    stats = {
        "texts": len(hashes),
        "unique_texts": len(unique_hashes),
        "computed": len(todo),
        "reused": len(unique_hashes) - len(todo),
        "tokens": int(states.hidden.shape[0]),
        "state_bytes": states.nbytes,
        "cache_bytes": cache.nbytes(lower.source),
        "seconds": round(time.perf_counter() - start, 3),
        "compute_seconds": round(compute_seconds, 3),
    }
    return states, stats
