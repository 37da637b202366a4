"""Fast grouping and within-group ordering of flat per-candidate arrays.

Both metrics and prediction files need candidates grouped by impression and ordered by score
descending, ties in input order. `np.lexsort` does that in ~2 s for 4.5M candidates; packing
(group, score order) into one uint64 key and doing one stable integer sort takes ~0.3 s.
"""

from __future__ import annotations

import numpy as np


def dense_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys ascending, dense index 0..G-1 of every entry)."""
    keys = np.asarray(keys)
    n = len(keys)
    if n == 0:
        return keys[:0], np.zeros(0, dtype=np.int64)
    if np.all(keys[1:] >= keys[:-1]):  # already grouped and sorted (CSR order): O(n)
        change = np.empty(n, dtype=bool)
        change[0] = True
        np.not_equal(keys[1:], keys[:-1], out=change[1:])
        return keys[change], np.cumsum(change) - 1
    low, high = int(keys.min()), int(keys.max())
    if high - low < 4 * n:  # compact integer range: a bincount avoids np.unique's sort
        offset = keys - low
        present = np.bincount(offset, minlength=high - low + 1) > 0
        dense = np.cumsum(present) - 1
        return np.flatnonzero(present) + low, dense[offset]
    distinct, inverse = np.unique(keys, return_inverse=True)
    return distinct, inverse


def _descending_code32(scores: np.ndarray) -> np.ndarray:
    """uint64 codes (< 2**32) of float32 scores, ascending code = descending score."""
    bits = (scores.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 -> +0.0
    # Order-preserving bit map: flip all bits of negatives, set the sign bit of positives.
    ascending = np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000))
    return (~ascending).astype(np.uint64)


def _descending_code64(scores: np.ndarray) -> np.ndarray:
    """uint64 codes of float64 scores, ascending code = descending score."""
    bits = (scores.astype(np.float64) + 0.0).view(np.uint64)
    ascending = np.where(bits >> np.uint64(63), ~bits, bits | np.uint64(1 << 63))
    return ~ascending


def order_by_group_desc_score(group: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Stable permutation sorting by (group ascending, score descending); ties keep input order.

    `group` must be a dense non-negative index (< 2**31); `scores` must contain no NaN.
    """
    high = np.asarray(group).astype(np.uint64) << np.uint64(32)
    if scores.dtype in (np.float16, np.float32):
        return np.argsort(high | _descending_code32(scores), kind="stable")
    # 64-bit scores: two stable passes, on (group, top 32 code bits) then, within runs of equal
    # (group, top bits), on the low 32 bits. Stable both times, so ties keep input order.
    code = _descending_code64(scores)
    first = np.argsort(high | (code >> np.uint64(32)), kind="stable")
    key = (high | (code >> np.uint64(32)))[first]
    run = np.empty(len(key), dtype=np.uint64)
    if len(key):
        run[0] = 0
        np.cumsum(key[1:] != key[:-1], out=run[1:])
    second = np.argsort(
        (run << np.uint64(32)) | (code[first] & np.uint64(0xFFFFFFFF)), kind="stable"
    )
    return first[second]
