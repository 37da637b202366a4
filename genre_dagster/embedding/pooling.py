"""Pooling token hidden states into one vector per text, correct for left or right padding."""

from __future__ import annotations

from typing import Any

POOLINGS = ("mean", "cls", "last")


def pool(hidden: Any, attention_mask: Any, mode: str) -> Any:
    """Pool `hidden` [batch, tokens, dim] into [batch, dim] float32 using `attention_mask`.

    - "mean": average over non-pad tokens.
    - "cls": the first non-pad token (BERT's [CLS] with right padding).
    - "last": the last non-pad token (the causal LM's summary position), found from the mask, so
      left- and right-padded batches give the same vector as an unpadded text.
    Pad positions are masked with `where`, not multiplied, so NaN in pad rows cannot leak.
    """
    import torch

    if mode not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {mode!r}")
    mask = attention_mask.to(torch.bool)
    hidden = hidden.float()
    if mode == "mean":
        summed = torch.where(mask.unsqueeze(-1), hidden, 0.0).sum(dim=1)
        counts = mask.sum(dim=1, keepdim=True).clamp(min=1)
        return summed / counts
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if mode == "cls":
        index = mask.to(torch.int8).argmax(dim=1)
    else:
        index = mask.shape[1] - 1 - mask.flip(1).to(torch.int8).argmax(dim=1)
    return hidden[rows, index]
