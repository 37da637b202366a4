"""Where raw items and interactions come from: the demo world, a MIND root, or generic files."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from collections.abc import Callable

    import polars as pl

    from genre_dagster.ingest import IngestResult, SourceFile
    from genre_dagster.scoring.splits import DayCount


class DatasetSource(dg.ConfigurableResource):
    """The raw dataset: `demo` (generated on first use), `mind` or `generic`.

    A MIND root holds `train/`, `dev/` (and sometimes `test/`) folders with `news.tsv` and
    `behaviors.tsv`. Generic data is an items file and an interactions file (Parquet or CSV);
    either name may be a glob pattern (`interactions_*.parquet`) matching several files, read
    as one table. New behaviors files dropped into `landing_dir` are picked up as new days.
    A corrupt file next to good ones is quarantined (see `genre_dagster.ingest.unattributable`).
    """

    kind: str = Field(default="demo", description="demo | mind | generic")
    path: str = Field(description="MIND root, generic folder, or where the demo world is written")
    landing_dir: str = Field(default="", description="folder watched for new daily files")
    demo_preset: str = Field(
        default="small",
        description="demo world: small | mind_small | mind_medium | mind_large | catalogue_small",
    )
    demo_seed: int = Field(default=7, description="seed of the demo world")
    items_file: str = Field(
        default="items.parquet", description="generic: items file name or glob pattern"
    )
    interactions_file: str = Field(
        default="interactions.parquet",
        description="generic: interactions file name or glob pattern (interactions_*.parquet)",
    )
    column_map: dict[str, str] = Field(
        default_factory=dict,
        description="generic: canonical column -> column in your files, e.g. item_id: book_id",
    )
    domain: str = Field(
        default="",
        description="what the items are, named in every LLM prompt: news | books | products | "
        "any noun phrase ('podcast episode'); '' = news for demo/mind, item for generic",
    )
    profile_topics: str = Field(
        default="auto",
        description="the profiler's topics: auto (categories, or open for a one-category "
        "catalogue) | categories | genre_news | open | file:PATH | a comma-separated list",
    )
    profile_regions: str = Field(
        default="auto",
        description="the profiler's regions: auto (US states for news, else off) | off | "
        "us_states | file:PATH | a comma-separated list",
    )

    @property
    def item_domain(self) -> str:
        """The domain named in prompts (see `domain`)."""
        return self.domain or ("item" if self.kind == "generic" else "news")

    @property
    def root(self) -> Path:
        return Path(self.path)

    @property
    def landing(self) -> Path | None:
        return Path(self.landing_dir) if self.landing_dir else None

    def prepare(self) -> dict[str, Any] | None:
        """Make sure the data exists: generates the demo world on first use."""
        if self.kind == "demo":
            from genre_dagster.demo import DemoWorldConfig, ensure_world

            config = DemoWorldConfig.preset(self.demo_preset, seed=self.demo_seed)
            return ensure_world(config, self.root)
        if not self.root.exists():
            raise FileNotFoundError(f"{self.kind} source path {self.root} does not exist")
        return None

    def _mind_files(self) -> tuple[list[SourceFile], list[SourceFile]]:
        from genre_dagster.ingest import discover_mind_files

        return discover_mind_files(self.root, self.landing)

    def _column_map(self, which: str) -> dict[str, str] | None:
        """The part of `column_map` that applies to the items or the interactions file."""
        from genre_dagster.ingest.generic import ITEM_OPTIONAL, ITEM_REQUIRED
        from genre_dagster.ingest.generic_interactions import (
            INTERACTION_OPTIONAL,
            INTERACTION_REQUIRED,
        )

        item_cols = {*ITEM_REQUIRED, *ITEM_OPTIONAL}
        interaction_cols = {*INTERACTION_REQUIRED, *INTERACTION_OPTIONAL}
        unknown = sorted(set(self.column_map) - item_cols - interaction_cols)
        if unknown:
            raise ValueError(
                f"column_map has unknown canonical column(s) {unknown}; items use "
                f"{sorted(item_cols)}, interactions use {sorted(interaction_cols)}"
            )
        wanted = item_cols if which == "items" else interaction_cols
        return {k: v for k, v in self.column_map.items() if k in wanted} or None

    def _generic_paths(self, name: str) -> list[Path]:
        """The file `name` under the root, or the files a glob pattern matches, sorted."""
        if any(c in name for c in "*?["):
            paths = sorted(p for p in self.root.glob(name) if p.is_file())
        else:
            paths = [self.root / name] if (self.root / name).exists() else []
        if not paths:
            raise FileNotFoundError(
                f"generic source: {self.root / name} not found (set items_file / interactions_file)"
            )
        return paths

    def source_files(self) -> list[Path]:
        """Every input file, for change detection by the sensor."""
        if self.kind == "generic":
            return [
                *self._generic_paths(self.items_file),
                *self._generic_paths(self.interactions_file),
            ]
        news, behaviors = self._mind_files()
        return [f.path for f in [*news, *behaviors]]

    def days(self) -> dict[date, int]:
        """Days that have interactions, with their line counts. Files whose lines have no day
        (corrupt, wrong format) add none and are logged; ValueError when no file has a day.
        Large sources are read in a child process (`CHILD_READ_MIN_BYTES`)."""
        return _read_in_child_if_large(_interaction_days, *self._interaction_files())

    def impression_days(self) -> list[DayCount]:
        """Impressions per day, source folder and labelled-or-not, read as ingestion will read
        them: the split preflight's input (generates the demo world first, like every read).
        Large sources are read in a child process (`CHILD_READ_MIN_BYTES`)."""
        from genre_dagster.scoring.splits import DayCount

        rows = _read_in_child_if_large(_impression_day_rows, *self._interaction_files())
        return [DayCount(**row) for row in rows]

    def _interaction_files(self) -> tuple[str, list[SourceFile] | list[Path], dict | None]:
        """(kind, the interaction files, the interactions' column map) after `prepare`: what
        the day readers below take, plain values a child process can receive."""
        self.prepare()
        if self.kind == "generic":
            paths = self._generic_paths(self.interactions_file)
            return self.kind, paths, self._column_map("interactions")
        return self.kind, self._mind_files()[1], None

    def read_items(self) -> IngestResult:
        """Parse and validate all items (news)."""
        self.prepare()
        if self.kind == "generic":
            from genre_dagster.ingest import parse_generic_items

            return parse_generic_items(
                self._generic_paths(self.items_file), self._column_map("items")
            )
        from genre_dagster.ingest import parse_news

        return parse_news(self._mind_files()[0])

    def read_interactions(
        self,
        day: date | None,
        known_news_ids: pl.Series,
        pseudonymize: Callable[[pl.Series], pl.Series],
    ) -> IngestResult:
        """Parse and validate the impressions of one day (all days when `day` is None)."""
        self.prepare()
        if self.kind == "generic":
            from genre_dagster.ingest import parse_generic_interactions

            return parse_generic_interactions(
                self._generic_paths(self.interactions_file),
                known_news_ids,
                pseudonymize,
                self._column_map("interactions"),
                day=day,
            )
        from genre_dagster.ingest import parse_behaviors

        return parse_behaviors(self._mind_files()[1], known_news_ids, pseudonymize, day=day)


# Interaction files at least this large (together) are read for the day list and the split
# preflight in a child process. Reading every line of MIND-large's behaviors files takes
# gigabytes, and `genre-dagster run` executes every step in the process that read them: the
# run's first step started at 5.9 GB. Smaller sources are read in place (no interpreter start).
CHILD_READ_MIN_BYTES = 256 * 2**20


def _read_in_child_if_large(read: Callable, kind: str, files: list, column_map: dict | None):
    """`read(kind, files, column_map)`, in a spawned child process when the files hold at
    least CHILD_READ_MIN_BYTES; an error in the child is raised here."""
    paths = [f if isinstance(f, Path) else f.path for f in files]
    if sum(p.stat().st_size for p in paths) < CHILD_READ_MIN_BYTES:
        return read(kind, files, column_map)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter, not a fork of a process that may hold threads and locks
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(read, kind, files, column_map).result()


def _interaction_days(kind: str, files: list, column_map: dict | None) -> dict[date, int]:
    """`DatasetSource.days` of the files."""
    if kind == "generic":
        from genre_dagster.ingest import generic_days

        return generic_days(files, column_map)
    from genre_dagster.ingest import behavior_days

    return behavior_days(files)


def _impression_day_rows(kind: str, files: list, column_map: dict | None) -> list[dict]:
    """The rows of `DatasetSource.impression_days` of the files, as dicts."""
    if kind == "generic":
        from genre_dagster.ingest import generic_impression_days

        frame = generic_impression_days(files, column_map)
    else:
        from genre_dagster.ingest import impression_days

        frame = impression_days(files)
    return frame.to_dicts()
