"""Writing demo days as MIND files (news.tsv, behaviors.tsv) and their truth rows."""

from __future__ import annotations

import io
import os
import shutil
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from genre_dagster.demo.text import NewsText, news_url
from genre_dagster.demo.world import DayImpressions, World

MIND_TIME_FORMAT = "%-m/%-d/%Y %-I:%M:%S %p"  # 11/11/2019 9:05:58 AM

TRUTH_SCHEMA = {
    "source_split": pl.String,
    "mind_impression_id": pl.Int64,
    "position": pl.Int32,
    "news_id": pl.String,
    "label": pl.Int8,
    "click_probability": pl.Float64,
}


@dataclass(frozen=True)
class WrittenDays:
    """What was written for a group of days (a split or a landing day)."""

    news_index: np.ndarray  # catalog indices listed in the news file, ascending
    users: np.ndarray  # population indices of the users seen, ascending
    counts: dict[str, int]


def write_text(path: Path, frame: pl.DataFrame) -> None:
    """Tab-separated, no header, no quoting (MIND style); written then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.write_csv(tmp, separator="\t", include_header=False, quote_style="never")
    os.replace(tmp, path)


def write_parquet(path: Path, frame: pl.DataFrame) -> None:
    """Parquet written then renamed into place."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    frame.write_parquet(tmp)
    os.replace(tmp, path)


def news_frame(world: World, texts: list[NewsText], index: np.ndarray) -> pl.DataFrame:
    """The 8 MIND news columns for the given catalog indices, sorted by id number.

    Raises ValueError if a text contains a tab or line break (the files are unquoted).
    """
    cat, tax = world.catalog, world.taxonomy
    ids = cat.ids[index]
    order = np.argsort([int(i[1:]) for i in ids], kind="stable")
    index, ids = index[order], ids[order]
    rows = [texts[i] for i in index]
    categories = [tax.categories[c] for c in cat.category[index]]
    frame = pl.DataFrame(
        {
            "news_id": list(ids),
            "category": categories,
            "subcategory": [tax.subcategories[s] for s in cat.subcategory[index]],
            "title": [r.title for r in rows],
            "abstract": [r.abstract for r in rows],
            "url": [news_url(n, c, r.title) for n, c, r in zip(ids, categories, rows, strict=True)],
            "title_entities": [r.title_entities for r in rows],
            "abstract_entities": [r.abstract_entities for r in rows],
        },
        schema=dict.fromkeys(
            [
                "news_id",
                "category",
                "subcategory",
                "title",
                "abstract",
                "url",
                "title_entities",
                "abstract_entities",
            ],
            pl.String,
        ),
    )
    broken = frame.filter(pl.any_horizontal(pl.all().str.contains(r"[\t\r\n]")))
    if broken.height:
        raise ValueError(
            f"demo vocabulary produced a tab or line break in news {broken['news_id'][0]}"
        )
    return frame


def referenced_news(world: World, days: list[DayImpressions]) -> np.ndarray:
    """Catalog indices of the candidates and of the histories of the users of these days."""
    users = world.users
    present = np.unique(np.concatenate([d.user for d in days]))
    history = [users.hist_news[users.hist_ptr[u] : users.hist_ptr[u + 1]] for u in present]
    return np.unique(np.concatenate([d.news for d in days] + history))


# Impressions formatted and written at a time: bounds the memory of a big day (MIND-large
# has ~370k impressions a day with ~37 candidates each).
DEFAULT_CHUNK_IMPRESSIONS = 100_000


class TruthWriter:
    """Truth rows written as they come, then merged into one Parquet file that is byte-identical
    to writing all rows at once as one in-memory frame per *source chunk* (what the generator
    did before it streamed: `pl.concat([train_truth, dev_truth]).write_parquet(path)`).

    Polars' writer decides the file's row groups from the chunk layout of the frame it writes,
    and the bytes follow the row groups. So `finish` asks Polars which row groups it would make
    for that layout (on a one-byte dummy column of the same chunk sizes), cuts the buffered
    rows into one single-row-group file per row group, and streams those through
    `scan_parquet(...).sink_parquet`, which writes the same row groups again. Memory: one row
    group (~100k rows) plus one chunk at a time, never the whole table.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._dir = self.path.with_name(f".{self.path.name}.parts-{os.getpid()}")
        if self._dir.exists():
            shutil.rmtree(self._dir)
        self._dir.mkdir()
        self._parts: list[Path] = []
        self._layout: list[int] = []  # rows of each finished source chunk
        self._open_rows = 0

    def add(self, frame: pl.DataFrame) -> None:
        """Buffer rows (on disk) in the current source chunk."""
        if frame.height == 0:
            return
        part = self._dir / f"part-{len(self._parts):06d}.parquet"
        frame.write_parquet(part, compression="uncompressed", statistics=False)
        self._parts.append(part)
        self._open_rows += frame.height

    def end_chunk(self) -> None:
        """Close the current source chunk (as the end of one frame of the old layout)."""
        if self._open_rows:
            self._layout.append(self._open_rows)
        self._open_rows = 0

    def finish(self) -> None:
        """Write the Parquet file (then rename it into place) and drop the buffered parts."""
        self.end_chunk()
        try:
            if not self._layout:
                write_parquet(self.path, pl.DataFrame(schema=TRUTH_SCHEMA))
                return
            sizes = polars_row_groups(self._layout)
            tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
            pl.scan_parquet(self._group_files(sizes)).sink_parquet(tmp)
            if _row_groups(pq.ParquetFile(tmp).metadata) != sizes:
                # Polars streamed the groups differently than it writes the frame: write the
                # frame itself (memory grows with the table, the bytes stay the same).
                warnings.warn(
                    f"demo truth {self.path.name}: streamed row groups differ, written in memory",
                    stacklevel=2,
                )
                self._in_memory_frame().write_parquet(tmp)
            os.replace(tmp, self.path)
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def _in_memory_frame(self) -> pl.DataFrame:
        """All rows, one chunk per source chunk (the layout the file must follow)."""
        frames, parts = [], iter(self._parts)
        for rows in self._layout:
            chunk, n = [], 0
            while n < rows:
                chunk.append(pl.read_parquet(next(parts)))
                n += chunk[-1].height
            frames.append(pl.concat(chunk, rechunk=True))
        return pl.concat(frames)

    def abort(self) -> None:
        """Drop the buffered parts without writing the file."""
        shutil.rmtree(self._dir, ignore_errors=True)

    def _group_files(self, sizes: list[int]) -> list[Path]:
        """Re-cut the buffered parts into one single-chunk file per target row group."""
        files: list[Path] = []
        buffer, offset = pl.DataFrame(schema=TRUTH_SCHEMA), 0
        parts = iter(self._parts)
        for size in sizes:
            while buffer.height - offset < size:
                # The unwritten rest and the next part (no copy until a group is cut).
                buffer, offset = pl.concat([buffer.slice(offset), pl.read_parquet(next(parts))]), 0
            group = buffer.slice(offset, size).rechunk()
            offset += size
            out = self._dir / f"group-{len(files):06d}.parquet"
            group.write_parquet(out, row_group_size=size)
            files.append(out)
        if buffer.height > offset or next(parts, None) is not None:
            raise RuntimeError("demo truth: row groups do not add up to the buffered rows")
        return files


def polars_row_groups(layout: list[int]) -> list[int]:
    """Rows of each row group Polars writes for a frame made of chunks of these sizes."""
    dummy = pl.concat([pl.DataFrame({"x": pl.zeros(n, pl.Int8, eager=True)}) for n in layout])
    buffer = io.BytesIO()
    dummy.write_parquet(buffer)
    sizes = _row_groups(pq.ParquetFile(io.BytesIO(buffer.getvalue())).metadata)
    if sum(sizes) != sum(layout):
        raise RuntimeError(f"demo truth: Polars row groups {sizes} do not cover {layout}")
    return sizes


def _row_groups(meta: pq.FileMetaData) -> list[int]:
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


class ImpressionsWriter:
    """Writes the days of one split (or one landing day) to a behaviors file as they are
    simulated, in chunks of `chunk_impressions` impressions, and their truth rows to a
    TruthWriter; the file is the same whatever the chunk size. `close` renames the file into
    place and returns the referenced news and the counts."""

    def __init__(
        self,
        world: World,
        behaviors_path: Path,
        split: str,
        truth: TruthWriter,
        first_impression_id: int = 1,
        chunk_impressions: int = DEFAULT_CHUNK_IMPRESSIONS,
    ) -> None:
        if chunk_impressions < 1:
            raise ValueError(f"chunk_impressions must be >= 1, got {chunk_impressions}")
        self.world, self.split, self.truth = world, split, truth
        self.chunk_impressions = chunk_impressions
        self.path = Path(behaviors_path)
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._handle = self._tmp.open("wb")
        self._next_id = first_impression_id
        self._present = np.zeros(world.users.ids.size, dtype=bool)
        self._candidates = np.zeros(world.catalog.ids.size, dtype=bool)
        self._news_ids = pl.Series("news_id", world.catalog.ids.astype(str))
        self._user_ids = pl.Series(world.users.ids.astype(str))
        self._start = datetime.combine(world.config.start_date, datetime.min.time())
        self.counts = {"n_impressions": 0, "n_candidates": 0, "n_clicks": 0}

    def add_day(self, imp: DayImpressions) -> None:
        for start in range(0, imp.n_impressions, self.chunk_impressions):
            self._write_chunk(imp, start, min(start + self.chunk_impressions, imp.n_impressions))
        self._present[imp.user] = True
        self._candidates[imp.news] = True
        self.counts["n_impressions"] += imp.n_impressions
        self.counts["n_candidates"] += int(imp.news.size)
        self.counts["n_clicks"] += int(imp.label.sum())

    def _write_chunk(self, imp: DayImpressions, start: int, stop: int) -> None:
        users, catalog = self.world.users, self.world.catalog
        lo, hi = int(imp.ptr[start]), int(imp.ptr[stop])
        user, ptr = imp.user[start:stop], imp.ptr[start : stop + 1] - lo
        news, label = imp.news[lo:hi], imp.label[lo:hi]
        n_imp, n_cand = user.size, news.size
        impression_ids = np.arange(self._next_id, self._next_id + n_imp, dtype=np.int64)
        self._next_id += n_imp
        row = np.repeat(np.arange(n_imp), np.diff(ptr))
        # Gathering from a Series of all ids is much faster than converting millions of strings.
        news_ids = self._news_ids.gather(news)

        history = {
            u: " ".join(catalog.ids[users.hist_news[users.hist_ptr[u] : users.hist_ptr[u + 1]]])
            for u in np.unique(user)
        }
        candidates = pl.DataFrame(
            {"row": row, "news_id": news_ids, "label": label},
            schema={"row": pl.Int64, "news_id": pl.String, "label": pl.Int8},
        )
        impressions = candidates.group_by("row", maintain_order=True).agg(
            pl.concat_str([pl.col("news_id"), pl.lit("-"), pl.col("label").cast(pl.String)])
            .str.join(" ")
            .alias("impressions")
        )
        behaviors = pl.DataFrame(
            {
                "impression_id": impression_ids,
                "user_id": self._user_ids.gather(user),
                "seconds": imp.time_s[start:stop],
                "history": [history[u] for u in user],
            },
            schema={
                "impression_id": pl.Int64,
                "user_id": pl.String,
                "seconds": pl.Int64,
                "history": pl.String,
            },
        ).select(
            "impression_id",
            "user_id",
            (pl.lit(self._start) + pl.duration(seconds=pl.col("seconds")))
            .dt.strftime(MIND_TIME_FORMAT)
            .alias("time"),
            "history",
            impressions["impressions"],
        )
        behaviors.write_csv(self._handle, separator="\t", include_header=False, quote_style="never")
        self.truth.add(
            pl.DataFrame(
                {
                    "source_split": [self.split] * n_cand,
                    "mind_impression_id": impression_ids[row],
                    "position": np.arange(n_cand) - ptr[row] + 1,
                    "news_id": news_ids,
                    "label": label,
                    "click_probability": imp.prob[lo:hi],
                },
                schema=TRUTH_SCHEMA,
            )
        )

    def close(self) -> WrittenDays:
        """Rename the behaviors file into place; the referenced news (candidates and the
        histories of the users seen) and the counts of everything written."""
        self._handle.close()
        os.replace(self._tmp, self.path)
        users = self.world.users
        lengths = users.history_length()
        referenced = self._candidates.copy()
        referenced[users.hist_news[np.repeat(self._present, lengths)]] = True
        present_lengths = lengths[self._present]
        counts = {
            **self.counts,
            "n_users": int(self._present.sum()),
            "n_cold_users": int((present_lengths <= 5).sum()),
            "n_empty_history_users": int((present_lengths == 0).sum()),
            "n_news": int(referenced.sum()),
        }
        return WrittenDays(
            news_index=np.flatnonzero(referenced),
            users=np.flatnonzero(self._present),
            counts=counts,
        )

    def abort(self) -> None:
        self._handle.close()
        self._tmp.unlink(missing_ok=True)
