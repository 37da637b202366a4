"""Generating a demo world directory (atomically), checking it, and writing later days."""

from __future__ import annotations

import json
import os
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from genre_dagster.demo.catalog import render_texts
from genre_dagster.demo.config import DemoWorldConfig
from genre_dagster.demo.files import (
    DEFAULT_CHUNK_IMPRESSIONS,
    ImpressionsWriter,
    TruthWriter,
    news_frame,
    referenced_news,
    write_text,
)
from genre_dagster.demo.world import DayImpressions, World

# Bump whenever the output for a given config changes, so ensure_world regenerates.
GENERATOR_VERSION = "1"
WORLD_FILE = "world.json"
TRUTH_FILE = "truth.parquet"
# Worlds of at least this many users are generated in a child process by `ensure_world`: the
# generator's tables (the users x subcategories tastes, a day of impressions) then go back to
# the operating system when it exits, instead of staying in the heap of the process that goes
# on to run the pipeline (`genre-dagster run` runs every step in the process that generated the
# world: at mind_large it started its first step at 4.1 GB). mind_small has 50k users.
CHILD_PROCESS_MIN_USERS = 100_000
# Truth of extra days: one file per day next to the base truth (a landing folder is watched
# by the pipeline, so nothing but MIND files goes there).
TRUTH_LANDING_DIR = "truth_landing"


def _day_date(config: DemoWorldConfig, day: int) -> str:
    return (config.start_date + timedelta(days=day)).isoformat()


def read_world_summary(out_dir: Path) -> dict[str, Any] | None:
    """The world.json of a directory, or None when there is none."""
    path = Path(out_dir) / WORLD_FILE
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _matches(summary: dict[str, Any] | None, config: DemoWorldConfig) -> bool:
    return (
        summary is not None
        and summary.get("generator_version") == GENERATOR_VERSION
        and summary.get("config") == config.to_dict()
    )


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / WORLD_FILE).exists():
        raise ValueError(
            f"{out_dir} exists and is not a demo world (no {WORLD_FILE}); refusing to replace it"
        )


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move a finished world into place; the old one is removed only after the swap."""
    if not out_dir.exists():
        os.rename(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    shutil.rmtree(old)


def generate_world(
    config: DemoWorldConfig,
    out_dir: Path,
    chunk_impressions: int = DEFAULT_CHUNK_IMPRESSIONS,
) -> dict[str, Any]:
    """Generate the base days as a MIND directory at `out_dir` and return its summary.

    Writes `train/` (all days but the last), `dev/` (the last day), `truth.parquet` and
    `world.json`. The world is built in a temporary sibling directory and renamed into place,
    so a crash never leaves half a world; an existing world at `out_dir` is replaced.
    Days are written as they are simulated, `chunk_impressions` impressions at a time, so
    memory holds one day (and one chunk of its text) rather than the world; the files do
    not depend on the chunk size.
    """
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        summary = _write_world(config, tmp, chunk_impressions)
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return summary


def ensure_world(
    config: DemoWorldConfig,
    out_dir: Path,
    chunk_impressions: int = DEFAULT_CHUNK_IMPRESSIONS,
    in_child: bool | None = None,
) -> dict[str, Any]:
    """Return the world at `out_dir`, generating it only if it is missing or was generated
    from a different config or generator version.

    `in_child`: generate in a child process (the same files; an error in it is raised here).
    None: for worlds of at least CHILD_PROCESS_MIN_USERS users."""
    summary = read_world_summary(Path(out_dir))
    if _matches(summary, config):
        return summary
    if in_child is None:
        in_child = config.n_users >= CHILD_PROCESS_MIN_USERS
    if not in_child:
        return generate_world(config, out_dir, chunk_impressions)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter, not a fork of a process that may hold threads and locks
    # (Dagster's, DuckDB's)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(generate_world, config, Path(out_dir), chunk_impressions).result()


def _write_world(
    config: DemoWorldConfig, out: Path, chunk_impressions: int = DEFAULT_CHUNK_IMPRESSIONS
) -> dict[str, Any]:
    world = World(config)
    texts = render_texts(config, world.taxonomy, world.catalog)
    last = config.n_days - 1
    splits = {"train": list(range(last)), "dev": [last]}
    # The truth of each split is one source chunk: the file is as if both splits' frames
    # were concatenated and written at once (see TruthWriter).
    truth = TruthWriter(out / TRUTH_FILE)
    split_counts, news_sets, users, day_counts = {}, [], [], []
    for split, split_days in splits.items():
        (out / split).mkdir()
        writer = ImpressionsWriter(
            world, out / split / "behaviors.tsv", split, truth, chunk_impressions=chunk_impressions
        )
        try:
            for day in split_days:
                impressions = world.simulate_day(day)
                writer.add_day(impressions)
                day_counts.append(_day_counts(config, impressions))
                del impressions
        except BaseException:
            writer.abort()
            raise
        written = writer.close()
        truth.end_chunk()
        write_text(out / split / "news.tsv", news_frame(world, texts, written.news_index))
        split_counts[split] = written.counts
        news_sets.append(written.news_index)
        users.append(written.users)
    truth.finish()

    present = np.unique(np.concatenate(users))
    lengths = world.users.history_length()
    shift = config.shift_day_index
    summary = {
        "generator": "genre_dagster.demo",
        "generator_version": GENERATOR_VERSION,
        "config": config.to_dict(),
        "days": [_day_date(config, d) for d in range(config.n_days)],
        "splits": {s: [_day_date(config, d) for d in ds] for s, ds in splits.items()},
        "shift_day": None if shift is None else _day_date(config, shift),
        "shift_categories": list(config.shift_categories),
        "categories": {
            c: [
                s
                for s, ci in zip(
                    world.taxonomy.subcategories, world.taxonomy.sub_category, strict=True
                )
                if ci == i
            ]
            for i, c in enumerate(world.taxonomy.categories)
        },
        "click_model": {"bias": world.bias, "target_ctr": config.target_ctr},
        "counts": {
            "n_news": int(np.unique(np.concatenate(news_sets)).size),
            "n_news_generated": int(world.catalog.ids.size),
            "n_users": int(present.size),
            "n_cold_users": int((lengths[present] <= 5).sum()),
            "n_population_users": config.n_users,
            "n_impressions": sum(c["n_impressions"] for c in split_counts.values()),
            "n_candidates": sum(c["n_candidates"] for c in split_counts.values()),
            "n_clicks": sum(c["n_clicks"] for c in split_counts.values()),
        },
        "split_counts": split_counts,
        "day_counts": day_counts,
        "files": {
            "truth": TRUTH_FILE,
            "truth_landing": f"{TRUTH_LANDING_DIR}/truth_YYYY-MM-DD.parquet",
        },
    }
    (out / WORLD_FILE).write_text(
        json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return summary


def _day_counts(config: DemoWorldConfig, d: DayImpressions) -> dict[str, Any]:
    return {
        "date": _day_date(config, d.day),
        "n_impressions": d.n_impressions,
        "n_candidates": int(d.news.size),
        "n_clicks": int(d.label.sum()),
        "is_shift_day": d.day == config.shift_day_index,
    }


def _news_ids_in(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [line.split("\t", 1)[0] for line in handle if line.strip()]


def generate_extra_days(
    config: DemoWorldConfig,
    out_dir: Path,
    landing_dir: Path,
    n_extra: int,
    first: int = 0,
    chunk_impressions: int = DEFAULT_CHUNK_IMPRESSIONS,
) -> list[dict[str, Any]]:
    """Write days after the base period (extra days `first`..`first + n_extra - 1`, 0-based)
    for nightly-refresh tests.

    Each day gives `landing_dir/news_YYYY-MM-DD.tsv` (news published that day plus any news
    the day references that no earlier file lists), `landing_dir/behaviors_YYYY-MM-DD.tsv`
    (impression ids continue after the base splits' and earlier extra days' ids, so they are
    unique across all landing files) and `out_dir/truth_landing/truth_YYYY-MM-DD.parquet`
    (source_split `landing`). A day's files are the same whether it is written alone or with
    others, and the base world is not touched. Requires the base world at `out_dir`.
    """
    out_dir, landing_dir = Path(out_dir), Path(landing_dir)
    if n_extra < 0 or first < 0:
        raise ValueError(f"n_extra ({n_extra}) and first ({first}) must be >= 0")
    summary = read_world_summary(out_dir)
    if not _matches(summary, config):
        raise ValueError(
            f"{out_dir} does not hold a demo world generated from this config; "
            "run generate_world/ensure_world first"
        )
    if n_extra == 0:
        return []
    world = World(config, last_day=config.n_days - 1 + first + n_extra)
    texts = render_texts(config, world.taxonomy, world.catalog)
    catalog = world.catalog
    position = {news_id: i for i, news_id in enumerate(catalog.ids)}
    listed = np.zeros(catalog.ids.size, dtype=bool)
    for split in ("train", "dev"):
        path = out_dir / split / "news.tsv"
        unknown = [n for n in _news_ids_in(path) if n not in position]
        if unknown:
            raise ValueError(f"{path}: news ids {unknown[:3]} are not part of this demo world")
        listed[[position[n] for n in _news_ids_in(path)]] = True
    next_id = 1 + sum(c["n_impressions"] for c in summary["split_counts"].values())

    landing_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / TRUTH_LANDING_DIR).mkdir(exist_ok=True)
    written_days = []
    for k in range(first + n_extra):
        day = config.n_days + k
        impressions = world.simulate_day(day)
        published = np.flatnonzero((catalog.day == day) & ~catalog.is_event)
        referenced = referenced_news(world, [impressions])
        new_news = np.union1d(published, referenced[~listed[referenced]])
        listed[new_news] = True
        if k >= first:
            stamp = _day_date(config, day)
            news_path = landing_dir / f"news_{stamp}.tsv"
            behaviors_path = landing_dir / f"behaviors_{stamp}.tsv"
            truth_path = out_dir / TRUTH_LANDING_DIR / f"truth_{stamp}.parquet"
            # News first: whoever sees a behaviors file can already resolve its news.
            write_text(news_path, news_frame(world, texts, new_news))
            truth = TruthWriter(truth_path)
            writer = ImpressionsWriter(
                world, behaviors_path, "landing", truth, next_id, chunk_impressions
            )
            try:
                writer.add_day(impressions)
            except BaseException:
                writer.abort()
                truth.abort()
                raise
            written = writer.close()
            truth.finish()
            written_days.append(
                {
                    "date": stamp,
                    "news_file": str(news_path),
                    "behaviors_file": str(behaviors_path),
                    "truth_file": str(truth_path),
                    "first_impression_id": next_id,
                    "n_news_listed": int(new_news.size),
                    **written.counts,
                }
            )
        next_id += impressions.n_impressions
    return written_days
