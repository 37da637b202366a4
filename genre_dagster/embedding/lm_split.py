"""A language model cut at layer k: frozen lower layers (run once per item, their output
cached) and the layers above k (trained with the recommender). ONCE's DIRE path.

The two halves are the model's own transformers modules, not a re-implementation: the lower
half is the model with its layer list truncated to the first k layers (and, for decoders, no
final norm); the top half is the model with the layers above k whose input embedding is a
pass-through, so `model(inputs_embeds=states, attention_mask=mask)` runs exactly the layers
k+1..N of the original forward (masks, rotary positions and the final norm included).

Supported shapes: BERT-like encoders (`embeddings` + `encoder.layer`, e.g. MiniLM) and
Llama-like decoders (`embed_tokens` + `layers` + `norm`, e.g. SmolLM2, also from a GGUF file).
Texts are right-padded, so positions of real tokens are 0..n-1 as for an unpadded text.

Imports torch at the top: import this module lazily (inside functions).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genre_dagster.embedding import devices, modelfiles


@dataclass(frozen=True)
class StatesSource:
    """What made a set of cached layer states: the cache key prefix and the check a trainable
    top runs before reading them. `model` is "<name>@<fingerprint>"."""

    model: str
    split_layer: int
    max_length: int
    dtype: str  # storage dtype: "bf16" | "fp16" | "fp32"

    @property
    def cache_id(self) -> str:
        """The cache's model_id: everything that changes the stored states."""
        return (
            f"layers:{self.model}|split={self.split_layer}|maxlen={self.max_length}"
            f"|dtype={self.dtype}"
        )

    def same_states_as(self, other: StatesSource) -> bool:
        """Same model, split layer and length cap (the storage dtype may differ)."""
        return (self.model, self.split_layer, self.max_length) == (
            other.model,
            other.split_layer,
            other.max_length,
        )


@dataclass
class BaseModel:
    """A loaded model folder: tokenizer, the transformers base model (no LM head), identity."""

    tokenizer: Any
    model: Any
    name: str  # "<folder or gguf name>@<fingerprint>"
    n_layers: int
    hidden_size: int
    pad_id: int


def load_base_model(
    model_path: str | None = None, gguf_file: str | None = None, dtype: str = "fp32"
) -> BaseModel:
    """Load a local model folder (None: the offline MiniLM) on the CPU; nothing is downloaded."""
    from transformers import AutoModel, AutoTokenizer

    modelfiles.set_offline()
    raw = model_path or modelfiles.default_encoder_path()
    folder = modelfiles.check_model_folder(Path(raw), gguf_file)
    kwargs: dict[str, Any] = {"local_files_only": True}
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    model = AutoModel.from_pretrained(str(folder), dtype=devices.torch_dtype(dtype), **kwargs)
    model.eval()
    _layers(model)  # fail early on an unsupported architecture
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    return BaseModel(
        tokenizer=tokenizer,
        model=model,
        name=modelfiles.model_name(folder, gguf_file),
        n_layers=int(model.config.num_hidden_layers),
        hidden_size=int(model.config.hidden_size),
        pad_id=int(pad if pad is not None else 0),
    )


def check_split_layer(split_layer: int, n_layers: int, name: str) -> None:
    """Raise ValueError unless 0 <= split_layer < n_layers (at least one layer to train)."""
    if not 0 <= split_layer < n_layers:
        raise ValueError(
            f"split layer {split_layer} is out of range for {name}, which has {n_layers} "
            f"layers: choose 0..{n_layers - 1} (k layers are cached, the {n_layers} - k above "
            "them are trained)"
        )


def _layers(model: Any) -> tuple[str, Any]:
    """("bert" | "llama", the model's layer list)."""
    if hasattr(model, "embeddings") and hasattr(getattr(model, "encoder", None), "layer"):
        return "bert", model.encoder.layer
    if all(hasattr(model, a) for a in ("embed_tokens", "layers", "norm")):
        return "llama", model.layers
    raise ValueError(
        f"{type(model).__name__} cannot be split: supported are BERT-like encoders "
        "(embeddings + encoder.layer, e.g. MiniLM) and Llama-like decoders (embed_tokens + "
        "layers + norm, e.g. SmolLM2)"
    )


def _set_layers(model: Any, arch: str, layers: list[Any]) -> None:
    if arch == "bert":
        model.encoder.layer = nn.ModuleList(layers)
    else:
        model.layers = nn.ModuleList(layers)


def lower_layers(model: Any, split_layer: int) -> Any:
    """A copy of `model` whose output is the hidden state after layer `split_layer`."""
    arch, layers = _layers(model)
    check_split_layer(split_layer, len(layers), type(model).__name__)
    lower = copy.deepcopy(model)
    _set_layers(lower, arch, list(_layers(lower)[1])[:split_layer])
    if arch == "bert":
        lower.pooler = None
    else:
        lower.norm = nn.Identity()  # hidden_states[k] of the full model: before the final norm
    return lower.eval()


class PassThrough(nn.Module):
    """Stands in for the input embedding of a top half: its input already is a hidden state."""

    def forward(self, input_ids: Any = None, inputs_embeds: Any = None, **_: Any) -> Any:
        if inputs_embeds is None:
            raise ValueError("the top layers read hidden states (inputs_embeds), not token ids")
        return inputs_embeds


def top_layers(model: Any, split_layer: int) -> Any:
    """A copy of `model` running only layers split_layer+1..N (and the final norm) on hidden
    states passed as `inputs_embeds`; its weights are those layers' weights only."""
    arch, layers = _layers(model)
    check_split_layer(split_layer, len(layers), type(model).__name__)
    # Copy without the token embedding (the largest matrix of a small model).
    held = model.embeddings if arch == "bert" else model.embed_tokens
    placeholder = PassThrough()
    if arch == "bert":
        model.embeddings = placeholder
    else:
        model.embed_tokens = placeholder
    try:
        top = copy.deepcopy(model)
    finally:
        if arch == "bert":
            model.embeddings = held
        else:
            model.embed_tokens = held
    _set_layers(top, arch, list(_layers(top)[1])[split_layer:])
    if arch == "bert":
        top.pooler = None
    return top


def run_top(top: Any, hidden: Any, mask: Any) -> Any:
    """Token states [B, T, D] after the top layers for states `hidden` and mask [B, T]."""
    return top(inputs_embeds=hidden, attention_mask=mask.to(hidden.dtype)).last_hidden_state


def right_padded(token_ids: list[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input_ids, attention_mask) int64 tensors, right-padded to the longest list."""
    from genre_dagster.embedding.batching import pad_batch

    ids, mask = pad_batch(token_ids, pad_id, "right")
    return torch.from_numpy(ids), torch.from_numpy(mask)


STORE_DTYPES = ("bf16", "fp16", "fp32")


class LowerLayers:
    """The frozen embedding and layers 1..k of a model: token states per text, computed in fp32
    and returned in the storage dtype (bf16 by default: half the bytes, the precision the top
    layers' weights see anyway on bf16 hardware)."""

    def __init__(
        self,
        model_path: str | None = None,
        gguf_file: str | None = None,
        split_layer: int = 4,
        max_length: int = 32,
        store_dtype: str = "bf16",
        batch_size: int = 64,
        num_threads: int | None = None,
        base: BaseModel | None = None,
    ) -> None:
        if store_dtype not in STORE_DTYPES:
            raise ValueError(f"store_dtype must be one of {STORE_DTYPES}, got {store_dtype!r}")
        if max_length < 1 or batch_size < 1:
            raise ValueError("max_length and batch_size must be >= 1")
        base = base or load_base_model(model_path, gguf_file)
        check_split_layer(split_layer, base.n_layers, base.name)
        self.source = StatesSource(base.name, split_layer, max_length, store_dtype)
        self.dim = base.hidden_size
        self._tokenizer = base.tokenizer
        self._pad_id = base.pad_id
        self._lower = lower_layers(base.model, split_layer)
        self._batch_size = batch_size
        self._num_threads = num_threads
        self._dtype = devices.torch_dtype(store_dtype)

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to max_length; raises on a text with no token."""
        ids = self._tokenizer(
            list(texts), truncation=True, max_length=self.source.max_length, padding=False
        )["input_ids"]
        empty = [i for i, row in enumerate(ids) if not row]
        if empty:
            raise ValueError(f"texts {empty[:5]} tokenize to zero tokens; the model needs one")
        return ids

    def states(self, texts: list[str]) -> list[torch.Tensor]:
        """Per text, its token states after layer k: [n_tokens, dim] in the storage dtype."""
        return self.states_of_tokens(self.tokenize(texts))

    def states_of_tokens(self, token_ids: list[list[int]]) -> list[torch.Tensor]:
        """`states` for texts already tokenized; length-sorted batches, each padded to its own
        longest text."""
        import numpy as np

        out: list[torch.Tensor | None] = [None] * len(token_ids)
        order = np.argsort([-len(t) for t in token_ids], kind="stable")
        with devices.torch_threads(self._num_threads), torch.inference_mode():
            for s in range(0, len(order), self._batch_size):
                rows = order[s : s + self._batch_size]
                ids, mask = right_padded([token_ids[i] for i in rows], self._pad_id)
                hidden = self._lower(input_ids=ids, attention_mask=mask).last_hidden_state
                hidden = hidden.to(self._dtype)
                for j, i in enumerate(rows):
                    out[i] = hidden[j, : len(token_ids[i])].clone()
        return out  # type: ignore[return-value]
