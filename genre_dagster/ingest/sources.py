"""Finding MIND files: split folders under a root, plus daily files in a landing folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KNOWN_SPLITS: tuple[str, ...] = ("train", "dev", "test")
LANDING_SPLIT = "landing"
NEWS_FILE = "news.tsv"
BEHAVIORS_FILE = "behaviors.tsv"


@dataclass(frozen=True)
class SourceFile:
    """One input file and the split it belongs to (`train`, `dev`, `test` or `landing`)."""

    path: Path
    split: str


def split_of_directory(directory: Path) -> str | None:
    """The split a folder name stands for: `train`, `dev`, `test`, or the same after an
    underscore as MIND's archives are often unpacked (`MINDsmall_train`); None otherwise."""
    name = directory.name.lower()
    if name in KNOWN_SPLITS:
        return name
    suffix = name.rsplit("_", 1)[-1]
    return suffix if "_" in name and suffix in KNOWN_SPLITS else None


def _is_split_dir(directory: Path) -> bool:
    return (directory / NEWS_FILE).is_file() or (directory / BEHAVIORS_FILE).is_file()


def _files(folder: Path, pattern: str) -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if p.is_file())


def _split_dirs(root: Path) -> list[tuple[str, Path]]:
    if _is_split_dir(root):
        # A root holding the files itself is one split; an unrecognised folder name (say
        # `data/mind`) is treated as training data, the common case for a single dump.
        return [(split_of_directory(root) or "train", root)]
    found: dict[str, Path] = {}
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        split = split_of_directory(child)
        if split is None or not _is_split_dir(child):
            continue
        if split in found:
            raise ValueError(
                f"MIND root {root}: both {found[split].name}/ and {child.name}/ look like the "
                f"{split!r} split; keep one"
            )
        found[split] = child
    return [(split, found[split]) for split in KNOWN_SPLITS if split in found]


def discover_mind_files(
    root: Path, landing_dir: Path | None = None
) -> tuple[list[SourceFile], list[SourceFile]]:
    """News files and behaviors files of a MIND root, in a deterministic order.

    `root` holds split folders `train/`, `dev/` and optionally `test/` (also accepted:
    `*_train`, `*_dev`, `*_test`, as in `MINDsmall_train/`), each with `news.tsv` and/or
    `behaviors.tsv`; other files (entity embeddings, ...) are ignored. A root that directly
    contains `news.tsv`/`behaviors.tsv` is a single split named after the folder when that name
    is a known split, else `train`. Files come in split order train, dev, test, then the landing
    folder's `news*.tsv` / `behaviors*.tsv` sorted by name, with split `landing`. A landing
    folder that does not exist yet counts as empty (files are dropped there later).

    Raises FileNotFoundError when the root is missing, holds no split, or when no news or no
    behaviors file is found at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MIND root {root} does not exist or is not a directory")
    splits = _split_dirs(root)
    if not splits:
        raise FileNotFoundError(
            f"no MIND data under {root}: expected {NEWS_FILE}/{BEHAVIORS_FILE} in the folder "
            f"itself or in split folders named {', '.join(KNOWN_SPLITS)}"
        )
    news = [SourceFile(d / NEWS_FILE, s) for s, d in splits if (d / NEWS_FILE).is_file()]
    behaviors = [
        SourceFile(d / BEHAVIORS_FILE, s) for s, d in splits if (d / BEHAVIORS_FILE).is_file()
    ]
    if landing_dir is not None and Path(landing_dir).is_dir():
        landing = Path(landing_dir)
        news += [SourceFile(p, LANDING_SPLIT) for p in _files(landing, "news*.tsv")]
        behaviors += [SourceFile(p, LANDING_SPLIT) for p in _files(landing, "behaviors*.tsv")]
    where = f"{root}" + (f" or landing folder {landing_dir}" if landing_dir else "")
    if not news:
        raise FileNotFoundError(f"no {NEWS_FILE} found in {where}")
    if not behaviors:
        raise FileNotFoundError(f"no {BEHAVIORS_FILE} found in {where}")
    return news, behaviors
