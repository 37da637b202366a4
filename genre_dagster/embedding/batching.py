"""The encode loop shared by encoder and decoder models.

Texts are deduplicated, tokenized once without padding, sorted by token length and cut into
batches; each batch is padded only to its own longest text. Sorting makes batch-mates similar
in length, so almost no compute goes to padding (padding every batch to max_length would
multiply the work several times for ~40-token news texts).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from genre_dagster.embedding.pooling import pool

ProgressCallback = Callable[[int, int], None]
TOKENIZE_CHUNK = 50_000
# (input_ids, attention_mask) -> hidden states [batch, tokens, dim]
ForwardFn = Callable[[Any, Any], Any]


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return `texts` as a list, raising ValueError on anything that is not a string."""
    if isinstance(texts, str):
        raise ValueError("encode() takes a list of texts, not a single string")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"text {i} is {type(text).__name__}, not str: {text!r:.80}")
    return texts


def deduplicate(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """Unique texts in first-seen order and, per input text, the index of its unique text."""
    index: dict[str, int] = {}
    inverse = np.fromiter((index.setdefault(t, len(index)) for t in texts), np.int64, len(texts))
    return list(index), inverse


def pad_batch(seqs: list[list[int]], pad_id: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Pad token id lists to the longest one: (input_ids, attention_mask), int64 [b, t].

    Vectorized: a boolean mask of real positions is filled with the concatenated ids in row-major
    order, which keeps each sequence's order for both padding sides.
    """
    lengths = np.fromiter((len(s) for s in seqs), np.int64, len(seqs))
    width = int(lengths.max())
    positions = np.arange(width)
    if side == "right":
        mask = positions[None, :] < lengths[:, None]
    elif side == "left":
        mask = positions[None, :] >= (width - lengths)[:, None]
    else:
        raise ValueError(f"padding side must be 'right' or 'left', got {side!r}")
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    ids[mask] = np.fromiter((t for s in seqs for t in s), np.int64, int(lengths.sum()))
    return ids, mask.astype(np.int64)


def run_batches(
    token_ids: list[list[int]],
    forward: ForwardFn,
    *,
    batch_size: int,
    pad_id: int,
    padding_side: str,
    pooling: str,
    normalize: bool,
    device: str,
    weights: np.ndarray | None = None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Encode tokenized texts in length-sorted batches; rows come back in the input order.

    `weights[i]` is how many input texts token list i stands for (after deduplication), so
    progress is reported in input texts: on_progress(done, total).
    """
    import torch

    n = len(token_ids)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if any(len(s) == 0 for s in token_ids):
        raise ValueError("a text tokenized to zero tokens; the model needs at least one")
    weights = np.ones(n, dtype=np.int64) if weights is None else weights
    total = int(weights.sum())
    # Longest first: the peak memory shows up in the first batch, not after an hour.
    order = np.argsort(-np.fromiter((len(s) for s in token_ids), np.int64, n), kind="stable")
    out: np.ndarray | None = None
    done = 0
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            rows = order[start : start + batch_size]
            ids, mask = pad_batch([token_ids[i] for i in rows], pad_id, padding_side)
            ids_t = torch.from_numpy(ids).to(device)
            mask_t = torch.from_numpy(mask).to(device)
            vectors = pool(forward(ids_t, mask_t), mask_t, pooling)
            if normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2.0, dim=-1)
            block = vectors.cpu().numpy()
            if out is None:
                out = np.empty((n, block.shape[1]), dtype=np.float32)
            out[rows] = block
            done += int(weights[rows].sum())
            if on_progress is not None:
                on_progress(done, total)
    if out is None:
        raise ValueError("run_batches needs at least one text")
    return out


def encode_texts(
    texts: Sequence[str],
    tokenize: Callable[[list[str]], list[list[int]]],
    forward: ForwardFn,
    *,
    dim: int,
    batch_size: int,
    pad_id: int,
    padding_side: str,
    pooling: str,
    normalize: bool,
    device: str,
    num_threads: int | None,
    on_progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Check, deduplicate, tokenize and encode `texts`: float32 [len(texts), dim], input order."""
    from genre_dagster.embedding.devices import torch_threads

    texts = check_texts(texts)
    if not texts:
        return np.empty((0, dim), dtype=np.float32)
    unique, inverse = deduplicate(texts)
    weights = np.bincount(inverse, minlength=len(unique))
    total = len(texts)
    blocks = []
    with torch_threads(num_threads):
        # Token id lists cost ~36 bytes per token in Python: tokenize a chunk at a time.
        for start in range(0, len(unique), TOKENIZE_CHUNK):
            stop = start + TOKENIZE_CHUNK
            offset = int(weights[:start].sum())
            blocks.append(
                run_batches(
                    tokenize(unique[start:stop]),
                    forward,
                    batch_size=batch_size,
                    pad_id=pad_id,
                    padding_side=padding_side,
                    pooling=pooling,
                    normalize=normalize,
                    device=device,
                    weights=weights[start:stop],
                    on_progress=_shifted(on_progress, offset, total),
                )
            )
    vectors = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    # Rows are already in input order when there was nothing to deduplicate.
    return vectors if len(unique) == len(texts) else vectors[inverse]


def _shifted(
    on_progress: ProgressCallback | None, offset: int, total: int
) -> ProgressCallback | None:
    """A progress callback for one chunk that reports overall (done, total)."""
    if on_progress is None:
        return None
    return lambda done, _chunk_total: on_progress(offset + done, total)
