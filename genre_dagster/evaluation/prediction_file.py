"""The official MIND prediction file: `impression_id [r1,r2,...]`, one line per impression.

r_i is the 1-based rank of the i-th candidate in the impression's original (shown) order; rank 1
is the highest score and equal scores are ranked by position (earlier first), the same tie rule
as `metrics`. Lines are ordered by impression id ascending. The brackets hold no spaces because
the official scorer splits each line on whitespace.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from genre_dagster.evaluation.grouping import dense_index, order_by_group_desc_score

_LINE = re.compile(r"^(\d+) \[(\d+(?:,\d+)*)\]$")


def candidate_ranks(
    impression_index: np.ndarray, positions: np.ndarray, scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rank of every candidate within its impression, listed in original candidate order.

    Returns (order, ranks): `order` permutes the inputs into (impression, position) order and
    `ranks[j]` is the 1-based rank of candidate `order[j]` (ties: lower position ranks first).
    """
    imp = np.asarray(impression_index)
    pos = np.asarray(positions)
    s = np.asarray(scores)
    if not (imp.shape == pos.shape == s.shape) or imp.ndim != 1:
        raise ValueError(
            f"impression_index, positions and scores must be 1-d of equal length, got "
            f"{imp.shape}, {pos.shape}, {s.shape}"
        )
    if not np.issubdtype(pos.dtype, np.integer):
        raise ValueError(f"positions must be integers, got dtype {pos.dtype}")
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if np.isnan(s).any():
        raise ValueError(
            f"scores contain NaN (first at candidate {np.flatnonzero(np.isnan(s))[0]})"
        )
    _, group = dense_index(imp)
    shifted = (pos - pos.min()).astype(np.uint64)
    by_position = np.argsort((group.astype(np.uint64) << np.uint64(32)) | shifted, kind="stable")
    g = group[by_position]
    # Within each impression, sorted positions must be consecutive (p0, p0+1, ...): a gap or a
    # duplicate means a candidate is missing or doubled and the official scorer would reject it.
    pos_sorted = pos[by_position]
    bad = np.flatnonzero((g[1:] == g[:-1]) & (pos_sorted[1:] != pos_sorted[:-1] + 1))
    if len(bad):
        j = by_position[bad[0] + 1]
        raise ValueError(
            f"positions of impression {imp[j]} are not consecutive (position {pos[j]} after "
            f"{pos_sorted[bad[0]]}): duplicated or missing candidates"
        )
    # In position order, "ties keep input order" means "ties go to the lower position".
    by_rank = order_by_group_desc_score(g, s[by_position])
    starts = np.concatenate(([0], np.cumsum(np.bincount(g))[:-1]))
    ranks = np.empty(len(g), dtype=np.int64)
    ranks[by_rank] = np.arange(len(g)) - starts[g[by_rank]] + 1
    return by_position, ranks


def write_mind_prediction_file(
    mind_impression_ids: np.ndarray,
    impression_index: np.ndarray,
    positions: np.ndarray,
    scores: np.ndarray,
    path: Path,
    chunk_rows: int = 50_000,
) -> int:
    """Write the official prediction file; returns the number of lines written.

    Args:
        mind_impression_ids: MIND impression id (int) of each impression row, unique.
        impression_index: per candidate, the row in `mind_impression_ids` it belongs to.
        positions: per candidate, its position in the shown order (0- or 1-based, consecutive).
        scores: per candidate, higher = better.
        path: output file.
        chunk_rows: impressions turned into text at a time (the file is the same).

    Every impression row must have candidates: the official scorer needs one line per impression.
    """
    ids = np.asarray(mind_impression_ids).astype(np.int64)
    imp = np.asarray(impression_index)
    if not np.issubdtype(imp.dtype, np.integer):
        raise ValueError(f"impression_index must be integers, got dtype {imp.dtype}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("mind_impression_ids contains duplicates")
    if len(imp) and (imp.min() < 0 or imp.max() >= len(ids)):
        raise ValueError(
            f"impression_index must lie in [0, {len(ids)}), got range [{imp.min()}, {imp.max()}]"
        )
    counts = np.bincount(imp, minlength=len(ids))
    empty = np.flatnonzero(counts == 0)
    if len(empty):
        raise ValueError(
            f"impression {ids[empty[0]]} has no candidates ({len(empty)} impressions without any)"
        )
    _, ranks = candidate_ranks(imp, positions, scores)
    bounds = np.concatenate(([0], np.cumsum(counts)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    order = np.argsort(ids, kind="stable")
    with path.open("w", encoding="utf-8", newline="\n") as fh:
        # The ranks become text `chunk_rows` impressions at a time: one Python string per
        # candidate of a whole MIND-large test split (14M) took about 1.4 GB at once.
        for start in range(0, len(order), chunk_rows):
            rows = order[start : start + chunk_rows]
            lengths = counts[rows]
            cuts = np.concatenate(([0], np.cumsum(lengths)))
            flat = np.repeat(bounds[rows] - cuts[:-1], lengths) + np.arange(cuts[-1])
            text = list(map(str, ranks[flat].tolist()))
            cuts = cuts.tolist()
            fh.write(
                "".join(
                    f"{impression} [{','.join(text[cuts[k] : cuts[k + 1]])}]\n"
                    for k, impression in enumerate(ids[rows].tolist())
                )
            )
    return len(ids)


def read_mind_prediction_file(path: Path) -> dict[int, list[int]]:
    """Read a prediction file into {impression id: ranks}, in file order; validates each line."""
    result: dict[int, list[int]] = {}
    with Path(path).open(encoding="utf-8") as fh:
        for line_number, line in enumerate(fh, 1):
            match = _LINE.match(line.rstrip("\n"))
            if match is None:
                raise ValueError(f"{path}:{line_number}: not `id [r1,r2,...]`: {line[:80]!r}")
            impression_id = int(match.group(1))
            if impression_id in result:
                raise ValueError(f"{path}:{line_number}: duplicate impression id {impression_id}")
            ranks = [int(r) for r in match.group(2).split(",")]
            if sorted(ranks) != list(range(1, len(ranks) + 1)):
                raise ValueError(
                    f"{path}:{line_number}: ranks of impression {impression_id} are not a "
                    f"permutation of 1..{len(ranks)}"
                )
            result[impression_id] = ranks
    return result


def write_split_prediction_files(
    folder: Path, split: str, behaviors, data, scores: np.ndarray
) -> list[Path]:
    """Write one prediction file per source split (MIND's dev/test) of the evaluated `split`:
    `folder/<split>_<source split>.txt`. `behaviors` holds one row per impression of `data`
    (`source_split`, `mind_impression_id`), `scores` one value per candidate of `data`."""
    sources = behaviors["source_split"]
    ids = behaviors["mind_impression_id"].to_numpy()
    counts = np.diff(data.cand_offsets)
    paths = []
    for source_split in sources.unique().to_list():
        mask = (sources == source_split).to_numpy()
        cand_mask = np.repeat(mask, counts)
        # the candidates' impression rows, renumbered within this source split
        remap = np.cumsum(mask) - 1
        index = remap[data.candidate_impression[cand_mask]]
        kept = counts[mask]
        positions = np.arange(1, kept.sum() + 1) - np.repeat(np.cumsum(kept) - kept, kept)
        path = Path(folder) / f"{split}_{source_split}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_mind_prediction_file(ids[mask], index, positions, scores[cand_mask], path)
        paths.append(path)
    return paths
