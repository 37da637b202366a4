"""Tokens/s of the local LLM backend (SmolLM2-135M GGUF via transformers): batched vs one at a time.

Run: `.venv/bin/python benchmarks/llm_throughput.py [--threads 1,2]` (about 1 minute per thread
setting on this 2-core CPU; 2 threads become much slower when other jobs compete for the cores,
see `load_average_before_after`).
Also times loading the model from its GGUF file (a first run) and from the folder the first load
converted it to (every later run). Writes `benchmarks/results/llm_throughput.json`. Prompts
are real summarizer prompts built from synthetic news items (written here, not MIND data).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import describe

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from genre_dagster.enrichment.backends import ChatRequest  # noqa: E402
from genre_dagster.enrichment.local_transformers import TransformersBackend  # noqa: E402
from genre_dagster.enrichment.prompts import input_hash, load_template  # noqa: E402
from genre_dagster.enrichment.roles import CONTEXT_VALUES, prompt_values  # noqa: E402
from genre_dagster.enrichment.sanitize import PromptLimits  # noqa: E402
from genre_dagster.enrichment.schemas import VocabularyConfig  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "llm_throughput.json"

SUBJECTS = [
    ("sports", "football", "City club wins derby after late penalty"),
    ("finance", "markets", "Stocks slide as bond yields climb for a third day"),
    ("health", "nutrition", "Study links daily walks to better sleep in older adults"),
    ("weather", "storms", "Heavy snow expected across the northern plains this weekend"),
    ("autos", "electric", "Carmaker recalls thousands of electric vans over brake issue"),
    ("foodanddrink", "recipes", "Five quick dinners that use one pan"),
    ("travel", "destinations", "Small coastal towns see record summer visitors"),
    ("tv", "reviews", "Long-running drama ends with a quiet final episode"),
]


def build_requests(n: int, max_new_tokens: int) -> list[ChatRequest]:
    """n summarizer requests over synthetic items (varied lengths)."""
    template = load_template("summarizer")
    requests = []
    for i in range(n):
        category, sub, title = SUBJECTS[i % len(SUBJECTS)]
        abstract = f"Officials said on day {i + 1} that " + "details remain unclear. " * (1 + i % 4)
        fields = {"title": title, "abstract": abstract, "category": category, "subcategory": sub}
        messages = template.render(
            prompt_values("summarizer", fields, PromptLimits(), VocabularyConfig()), CONTEXT_VALUES
        )
        requests.append(
            ChatRequest(
                key=input_hash("summarizer", "v1", messages) + f"-{i}",
                messages=messages,
                max_new_tokens=max_new_tokens,
                response_prefix=template.response_prefix,
            )
        )
    return requests


def measure(backend: TransformersBackend, requests: list[ChatRequest], batch_size: int) -> dict:
    """Generate `requests` with `batch_size`; tokens/s counts generated tokens up to each answer's
    end (a batch keeps computing until its longest answer ends, which is part of its cost)."""
    backend.batch_size = batch_size
    start = time.perf_counter()
    results = backend.generate(requests)
    seconds = time.perf_counter() - start
    errors = [r.error for r in results if not r.ok]
    if errors:
        raise ValueError(f"generation failed at batch size {batch_size}: {errors[:3]}")
    tokens = sum(r.completion_tokens or 0 for r in results)
    return {
        "batch_size": batch_size,
        "prompts": len(requests),
        "seconds": round(seconds, 2),
        "completion_tokens": tokens,
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in results),
        "tokens_per_second": round(tokens / seconds, 2),
        "items_per_second": round(len(requests) / seconds, 3),
        "texts": [r.text for r in results],
    }


def run_threads(backend: TransformersBackend, requests: list[ChatRequest], args) -> list[dict]:
    """Unbatched, then each batch size, with `backend.num_threads` torch threads."""
    backend.generate(requests[:1])  # warm-up: first-call overheads out of the measurements
    single = measure(backend, requests[: args.single], 1)
    runs = [single]
    for size in (int(s) for s in args.batch_sizes.split(",")):
        run = measure(backend, requests, size)
        # Same greedy answers as one at a time? (fp rounding with padding may flip a token)
        same = sum(
            a == b for a, b in zip(single["texts"], run["texts"][: args.single], strict=True)
        )
        run["same_text_as_unbatched"] = f"{same}/{args.single}"
        runs.append(run)
    for run in runs:
        run["threads"] = backend.num_threads
        run["speedup_vs_unbatched"] = round(
            run["tokens_per_second"] / single["tokens_per_second"], 2
        )
        run["sample_text"] = run.pop("texts")[0]
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prompts", type=int, default=16, help="prompts for the batched runs")
    parser.add_argument("--single", type=int, default=4, help="prompts for the unbatched run")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument(
        "--threads",
        default="1",
        help="comma-separated torch thread counts; 2 threads on a busy 2-core machine is "
        "several times slower than 1 (threads spin waiting for each other)",
    )
    parser.add_argument(
        "--dtypes", default="float32,bfloat16", help="comma-separated dtypes, measured in turn"
    )
    parser.add_argument("--batch-sizes", default="8,16")
    args = parser.parse_args()

    import torch

    load_before = os.getloadavg()[0]
    requests = build_requests(args.prompts, args.max_new_tokens)
    per_dtype = {}
    for dtype in args.dtypes.split(","):
        # Load from the GGUF file (what a first run does), then from the folder it was
        # converted to (every later run), each into a fresh backend.
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            TransformersBackend(dtype=dtype, convert_cache=cache).load()
            load_seconds = time.perf_counter() - start
            backend = TransformersBackend(dtype=dtype, convert_cache=cache)
            start = time.perf_counter()
            backend.load()
            converted_load_seconds = time.perf_counter() - start
        runs = []
        for threads in (int(t) for t in args.threads.split(",")):
            backend.num_threads = threads
            runs += run_threads(backend, requests, args)
        per_dtype[dtype] = {
            "model": backend.model_name,
            "load_seconds": round(load_seconds, 1),
            "converted_load_seconds": round(converted_load_seconds, 1),
            "runs": runs,
        }
        for run in runs:
            print(
                f"{dtype} threads {run['threads']} batch {run['batch_size']:>2}: "
                f"{run['tokens_per_second']:6.2f} tokens/s, {run['items_per_second']:.3f} "
                f"items/s ({run['prompts']} prompts, {run['seconds']} s, "
                f"x{run['speedup_vs_unbatched']})"
            )

    report = {
        "max_new_tokens": args.max_new_tokens,
        "torch": torch.__version__,
        "machine": describe(),
        # Other jobs on a shared machine slow every run; the 1-minute load average says how busy.
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "dtypes": per_dtype,
        "command": "python benchmarks/llm_throughput.py " + " ".join(sys.argv[1:]),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
