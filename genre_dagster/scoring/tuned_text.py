"""The fine-tuned text encoder of a neural recommender (config text_encoder="tuned"): the
layers above lm_split_layer of a language model, trained with the user encoder over the item
texts' cached layer states (embedding/layer_cache.py), then pooled. With lm_lora_rank > 0 only
LoRA adapters (the `peft` library's) are trained; with 0 the top layers' own weights are.

Its per-field vectors are the views of the composition's item encoder (linear, multiview), so
NRMS, NAML, the hybrids and the GENRE variants all take it. In training the top runs on the
batch's items only; after training every item's vector is computed once and reused.

Imports torch at the top: import this module lazily.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from genre_dagster.embedding.layer_cache import TokenStates
from genre_dagster.embedding.lm_split import (
    StatesSource,
    check_split_layer,
    load_base_model,
    run_top,
    top_layers,
)
from genre_dagster.embedding.pooling import pool

INFERENCE_CHUNK = 256  # items per forward pass without gradients (bounds [B, T, D] activations)
MEMO_CHUNK = 4096  # items whose states are gathered at once when computing serving vectors


class TextTop(nn.Module):
    """Layers k+1..N of the configured model (+ LoRA adapters) and pooling: token states after
    layer k -> one vector per text."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        base = load_base_model(config["lm_model"], config["lm_gguf_file"])
        split = config["lm_split_layer"]
        check_split_layer(split, base.n_layers, base.name)
        self.source = StatesSource(base.name, split, config["lm_max_length"], "any")
        self.dim = base.hidden_size
        self.pooling = config["lm_pooling"]
        top = top_layers(base.model, split).float()
        rank = config["lm_lora_rank"]
        if rank > 0:
            from peft import LoraConfig, get_peft_model

            # target_modules None: peft's own choice for the architecture (BERT query/value,
            # Llama q_proj/v_proj); adapters start at zero, so training starts from the model.
            top = get_peft_model(top, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0))
        self.top = top

    def forward(self, states: TokenStates) -> torch.Tensor:
        """Vectors [B, dim] float32; without gradients in chunks of INFERENCE_CHUNK texts."""
        if torch.is_grad_enabled() or len(states.mask) <= INFERENCE_CHUNK:
            return self._encode(states.hidden, states.mask)
        chunks = []
        for s in range(0, len(states.mask), INFERENCE_CHUNK):
            mask = states.mask[s : s + INFERENCE_CHUNK]
            width = int(mask.sum(1).max())  # a chunk pads to its own longest text
            hidden = states.hidden[s : s + INFERENCE_CHUNK, :width]
            chunks.append(self._encode(hidden, mask[:, :width]))
        return torch.cat(chunks)

    def _encode(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return pool(run_top(self.top, hidden, mask), mask, self.pooling)

    def check_states(self, field: str, states: Any) -> None:
        """Raise ValueError unless `states` were computed by this model, split and length."""
        if not self.source.same_states_as(states.source):
            raise ValueError(
                f"layer states of field {field!r} come from {states.source.cache_id}, but the "
                f"config asks for {self.source.model} split at layer {self.source.split_layer} "
                f"with max length {self.source.max_length}: build them with "
                "embedding.layer_cache.cached_layer_states and a LowerLayers of that config"
            )


def frozen_keys(model: nn.Module) -> set[str]:
    """state_dict keys of the text top that training does not change (the language model's own
    weights and buffers under LoRA, buffers only under full tuning): an artifact leaves them out
    and rebuilds them from the model folder."""
    if getattr(model, "text_top", None) is None:
        return set()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k for k in model.state_dict() if k.startswith("text_top.") and k not in trainable}


def load_trained(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load an artifact's state into a freshly built `model`: every key but the frozen ones
    must be present, and nothing else."""
    missing, unexpected = model.load_state_dict(state, strict=False)
    frozen = frozen_keys(model)
    wrong = sorted(set(missing) - frozen)
    if wrong or unexpected:
        raise ValueError(
            f"artifact weights do not fit the model: missing {wrong[:5]}, unexpected "
            f"{sorted(unexpected)[:5]}"
        )


class TextVectorMemo:
    """Tuned text vectors per (field, text hash), computed once after training and reused by
    every later score (new or changed texts are computed when first seen)."""

    def __init__(self) -> None:
        self._vectors: dict[str, dict[str, np.ndarray]] = {}

    def clear(self) -> None:
        self._vectors.clear()

    def views(self, top: TextTop, fields: list[str], layer_states: dict[str, Any]) -> list[Any]:
        """One float32 tensor [n_items, dim] per field."""
        out = []
        for field in fields:
            states = layer_states[field]
            top.check_states(field, states)
            known = self._vectors.setdefault(field, {})
            first: dict[str, int] = {}
            for i, h in enumerate(states.text_hashes):
                if h not in known:
                    first.setdefault(h, i)
            hashes, rows = list(first), np.fromiter(first.values(), np.int64, len(first))
            with torch.inference_mode():
                for s in range(0, len(rows), MEMO_CHUNK):
                    fresh = top(states.gather(rows[s : s + MEMO_CHUNK])).numpy()
                    known.update(zip(hashes[s : s + MEMO_CHUNK], fresh, strict=True))
            out.append(torch.from_numpy(np.stack([known[h] for h in states.text_hashes])))
        return out
