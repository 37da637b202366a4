"""GENRE enrichment with the default local model: validity, cost and usefulness of the answers.

For each role (summarizer, profiler, generator, chain generator) on two sources, it sends the
same prompts through the local SmolLM2 backend with and without schema-constrained decoding
(llguidance) and records:
- the share of schema-valid answers (no stricter retry, no repair counted as valid);
- the share whose every vocabulary term (topic, region, category) is exactly a listed term;
- completion tokens/s and seconds per answer (batches of `--batch-size`).
For the summaries of the real HuffPost items it also measures what they add:
- faithfulness: mean cosine (the project's MiniLM encoder) between an item's full text and its
  summary, against the same for a random other item's summary;
- the share of new titles that merely copy the original title (case and punctuation aside);
- informativeness: leave-one-out kNN category accuracy of summary vectors against title vectors.

Sources (read in place, never copied):
- `demo`: the small demo world generated into a temporary folder (its news, its users'
  histories, its cold users);
- `huffpost`: the first items of ../shared/data/huffpost_news_category_v3_first10000.jsonl;
  profiler and generator users are simulated there: each draws 2-6 items from one or two
  categories (seeded), so their histories are real headlines.

Run: .venv/bin/python benchmarks/enrichment_quality.py [--n 200] [--roles summarizer,profiler]
     [--sources demo,huffpost] [--modes constrained,unconstrained]

The same measures for a stronger model behind an OpenAI-compatible server (vLLM, SGLang,
llama.cpp's server, Ollama, OpenAI): `--backend openai --base-url http://HOST:PORT/v1 --model
NAME [--api-key-env VAR]`. Constrained then means the role's JSON schema is sent as
`response_format` (the backend falls back to JSON mode, then to the prompt alone, if the server
rejects it, and the results record which form was used); unconstrained sends no schema.
Writes benchmarks/results/enrichment_quality.json (one run: the ratios compare like with like).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from field_fusion import knn_hits
from machine import describe

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
HUFFPOST = ROOT.parent / "shared" / "data" / "huffpost_news_category_v3_first10000.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "enrichment_quality.json"
ROLES = ("summarizer", "profiler", "generator", "chain_generator")


def huffpost_inputs(n: int, seed: int) -> tuple[dict[str, list], list[str], list[dict]]:
    """Role inputs from the HuffPost items (users simulated over real headlines)."""
    from genre_dagster.enrichment.roles import RoleInput

    rows = [json.loads(line) for line in HUFFPOST.read_text(encoding="utf-8").splitlines()]
    items = rows[:n]
    by_cat: dict[str, list[dict]] = {}
    for r in rows[: max(n * 5, 1000)]:
        by_cat.setdefault(r["category"].lower(), []).append(r)
    cats = sorted(c for c, v in by_cat.items() if len(v) >= 6)
    rnd = random.Random(seed)
    users = []
    for _ in range(n):
        picked = rnd.sample(cats, rnd.choice((1, 2)))
        history = [rnd.choice(by_cat[rnd.choice(picked)]) for _ in range(rnd.randint(2, 6))]
        users.append([{"category": h["category"].lower(), "title": h["headline"]} for h in history])
    inputs = {
        "summarizer": [
            RoleInput(
                f"H{i}",
                {
                    "title": r["headline"],
                    "abstract": r["short_description"],
                    "category": r["category"].lower(),
                    "subcategory": "",
                },
            )  # fmt: skip
            for i, r in enumerate(items)
        ],
        "profiler": [
            RoleInput(f"U{i}", {"history": [h["title"] for h in hist]})
            for i, hist in enumerate(users)
        ],
        "generator": [RoleInput(f"U{i}", {"history": hist}) for i, hist in enumerate(users)],
    }
    inputs["chain_generator"] = inputs["generator"]
    categories = sorted({r["category"].lower() for r in rows})
    return inputs, categories, items


def demo_inputs(n: int) -> tuple[dict[str, list], list[str], list[dict]]:
    """Role inputs from the small demo world (generated into a temporary folder)."""
    import polars as pl

    from genre_dagster.demo import DemoWorldConfig, generate_world
    from genre_dagster.enrichment.roles import RoleInput

    folder = Path(tempfile.mkdtemp(prefix="genre-demo-"))
    generate_world(DemoWorldConfig.preset("small"), folder)
    news = pl.read_csv(
        folder / "train" / "news.tsv", separator="\t", has_header=False, quote_char=None,
        new_columns=["id", "category", "subcategory", "title", "abstract", "url", "te", "ae"],
    )  # fmt: skip
    behaviors = pl.read_csv(
        folder / "train" / "behaviors.tsv", separator="\t", has_header=False, quote_char=None,
        new_columns=["imp", "user", "time", "history", "impressions"],
    )  # fmt: skip
    by_id = {r["id"]: r for r in news.iter_rows(named=True)}
    histories: dict[str, list[str]] = {}
    for user, history in behaviors.select("user", "history").iter_rows():
        ids = [i for i in (history or "").split() if i in by_id]
        if ids:
            histories.setdefault(user, ids)
    warm = [u for u, h in histories.items() if len(h) > 5][:n]
    cold = [u for u, h in histories.items() if len(h) <= 5][:n]

    def entries(ids: list[str]) -> list[dict]:
        return [{"category": by_id[i]["category"], "title": by_id[i]["title"]} for i in ids[-20:]]

    items = list(by_id.values())[:n]
    inputs = {
        "summarizer": [
            RoleInput(
                r["id"], {k: r[k] or "" for k in ("title", "abstract", "category", "subcategory")}
            )  # fmt: skip
            for r in items
        ],
        "profiler": [
            RoleInput(u, {"history": [e["title"] for e in entries(histories[u])]}) for u in warm
        ],
        "generator": [RoleInput(u, {"history": entries(histories[u])}) for u in cold],
    }
    inputs["chain_generator"] = inputs["generator"]
    return inputs, sorted(news["category"].unique().to_list()), items


def _terms_exact(role: str, text: str | None, vocab: Any) -> bool:
    """Every vocabulary term of the raw answer is exactly a listed term (no repair)."""
    from genre_dagster.enrichment.json_repair import parse_json_object

    try:
        raw, _ = parse_json_object(text)
    except ValueError:
        return False
    if role == "profiler":
        topics, regions = raw.get("topics"), raw.get("regions", [])
        if not isinstance(topics, list) or not topics or not isinstance(regions, list):
            return False
        regions_ok = vocab.regions is None or all(r in vocab.regions.terms for r in regions)
        return all(t in vocab.topics.terms for t in topics) and regions_ok
    if role in ("generator", "chain_generator"):
        return raw.get("category") in vocab.categories.terms
    return True


def run_mode(backend, role, inputs, vocab, constrained, batch_size) -> tuple[dict, list]:
    from genre_dagster.enrichment.cache import ResponseCache
    from genre_dagster.enrichment.runner import run_role

    folder = Path(tempfile.mkdtemp(prefix="genre-bench-"))
    cache = ResponseCache(folder / "cache.duckdb")  # raw answers of this run only
    # the local backend times its engine; a server's time is all in `seconds`
    generate_before = getattr(backend, "generate_seconds", 0.0)
    constraint_before = getattr(backend, "constraint_seconds", 0.0)
    started = time.perf_counter()
    result = run_role(role, inputs, backend, cache, batch_size=batch_size, vocabulary=vocab,
                      constrained=constrained, validation_retries=0)  # fmt: skip
    seconds = time.perf_counter() - started
    answers = [r for r in cache.all() if r.role == role]
    n = len(result.rows)
    valid = [r for r in result.rows if r.status == "ok"]
    completion = sum(a.completion_tokens or 0 for a in cache.all())
    stats = {
        "prompts": n,
        "schema_valid_share": round(len(valid) / n, 4) if n else None,
        "terms_exact_share": round(
            sum(_terms_exact(role, a.raw_text, vocab) for a in answers) / max(len(answers), 1), 4
        ),
        "completion_tokens": completion,
        "prompt_tokens": sum(a.prompt_tokens or 0 for a in cache.all()),
        "completion_tokens_per_second": round(completion / seconds, 2),
        "seconds_per_answer": round(seconds / max(n, 1), 3),
        "seconds": round(seconds, 1),
        # the engine's own cost: time in the schema constraint over time in generate()
        "constraint_share_of_generation": round(
            (getattr(backend, "constraint_seconds", 0.0) - constraint_before)
            / max(getattr(backend, "generate_seconds", 0.0) - generate_before, 1e-9),
            4,
        ),
        "failure_examples": [r.error for r in result.rows if r.status != "ok"][:3],
    }
    return stats, result.rows


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^0-9a-z]+", " ", text.lower()).split())


def _jaccard(a: str, b: str) -> float:
    x, y = set(_norm(a).split()), set(_norm(b).split())
    return len(x & y) / max(len(x | y), 1)


def _paired_interval(a: np.ndarray, b: np.ndarray, draws: int = 2000) -> dict:
    """Mean of a - b (per-item 0/1 hits) with a paired bootstrap 95% interval."""
    diff = a.astype(float) - b.astype(float)
    rng = np.random.default_rng(0)
    means = diff[rng.integers(0, len(diff), size=(draws, len(diff)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    return {
        "delta": round(float(diff.mean()), 4),
        "ci95": [round(float(low), 4), round(float(high), 4)],
    }


def summary_quality(rows: list, items: list[dict], encoder: Any, k: int) -> dict:
    """Faithfulness, title copies and kNN informativeness of HuffPost summaries."""
    from genre_dagster.enrichment.schemas import summary_text
    from genre_dagster.scoring.user_profile import unit_rows

    by_key = {r.key: r for r in rows if r.status == "ok"}
    keys = [f"H{i}" for i in range(len(items)) if f"H{i}" in by_key]
    if len(keys) < 3:
        return {"summaries": len(keys), "note": "too few valid summaries to measure"}
    index = [int(k[1:]) for k in keys]
    full = [f"{items[i]['headline']}. {items[i]['short_description']}" for i in index]
    titles = [items[i]["headline"] for i in index]
    summaries = [summary_text(by_key[k].output) for k in keys]
    labels = np.array([items[i]["category"] for i in index])
    k = min(k, len(keys) - 1)
    f_vec, s_vec, t_vec = (unit_rows(encoder.encode(x)) for x in (full, summaries, titles))
    own = (f_vec * s_vec).sum(axis=1)
    shuffled = np.random.default_rng(0).permutation(len(keys))
    shuffled = np.where(shuffled == np.arange(len(keys)), (shuffled + 1) % len(keys), shuffled)
    other = (f_vec * s_vec[shuffled]).sum(axis=1)
    new_titles = [by_key[k].output.get("title", "") for k in keys]
    descriptions = [by_key[k].output.get("description", "") or "" for k in keys]
    n_vec, d_vec = (unit_rows(encoder.encode(x)) for x in (new_titles, descriptions))
    views = {
        "title": t_vec,
        # the item's own title and description: what a summary distils
        "item_text": f_vec,
        "summary": s_vec,
        "summary_title": n_vec,
        "summary_description": d_vec,
        "title+summary": unit_rows(t_vec + s_vec),
    }
    hits = {view: knn_hits(vec, labels, k) for view, vec in views.items()}
    copies = sum(_norm(n) == _norm(t) for n, t in zip(new_titles, titles, strict=True))
    near = sum(_jaccard(n, t) >= 0.8 for n, t in zip(new_titles, titles, strict=True))
    return {
        "summaries": len(keys),
        "faithfulness_cosine": round(float(own.mean()), 4),
        "random_pair_cosine": round(float(other.mean()), 4),
        "faithfulness_margin": round(float(own.mean() - other.mean()), 4),
        "title_copy_share": round(copies / max(len(keys), 1), 4),
        # near copies: the new title's words are at least 80% those of the original (Jaccard)
        "title_near_copy_share": round(near / max(len(keys), 1), 4),
        "knn_category_accuracy": {view: round(float(h.mean()), 4) for view, h in hits.items()},
        # accuracy of each view minus the title's, with a paired bootstrap 95% interval over
        # items (approximate: leave-one-out kNN hits of neighbouring items are not independent)
        "knn_gain_over_title": {
            view: _paired_interval(h, hits["title"]) for view, h in hits.items() if view != "title"
        },
        "examples": [
            {"title": t, "summary": s} for t, s in list(zip(titles, summaries, strict=True))[:5]
        ],
    }


def _backend(args: argparse.Namespace) -> Any:
    """The local SmolLM2 backend (loaded), or an OpenAI-compatible server's."""
    if args.backend == "openai":
        from genre_dagster.enrichment.openai_http import OpenAICompatibleBackend

        key = os.environ.get(args.api_key_env) if args.api_key_env else None
        if args.api_key_env and not key:
            raise SystemExit(f"--api-key-env {args.api_key_env}: that variable is not set")
        return OpenAICompatibleBackend(args.base_url, args.model, api_key=key)
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    backend = TransformersBackend(
        dtype="auto", batch_size=args.batch_size, convert_cache=ROOT / "data" / "models" / "llm"
    )
    backend.load()
    return backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="prompts per role and source")
    parser.add_argument("--roles", default=",".join(ROLES))
    parser.add_argument("--sources", default="demo,huffpost")
    parser.add_argument("--modes", default="constrained,unconstrained")
    parser.add_argument(
        "--n-unconstrained",
        type=int,
        default=None,
        help="prompts per role for the unconstrained baseline (default: --n); its answers run "
        "to the token cap, so a smaller sample keeps the run short",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--max-text-chars",
        type=int,
        default=None,
        help="length cap of a description in answers (default: the launchpad's)",
    )
    parser.add_argument("--backend", choices=("local", "openai"), default="local")
    parser.add_argument("--base-url", default=None, help="--backend openai: the server's /v1 root")
    parser.add_argument("--model", default=None, help="--backend openai: the model name to send")
    parser.add_argument(
        "--api-key-env", default=None, help="--backend openai: environment variable with the key"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.backend == "openai" and not (args.base_url and args.model):
        parser.error("--backend openai needs --base-url and --model")

    import torch

    from genre_dagster.embedding.encoder import EncoderConfig, TextEncoder
    from genre_dagster.enrichment.choices import vocabulary_for
    from genre_dagster.enrichment.schemas import OutputLimits

    backend = _backend(args)
    encoder = TextEncoder(EncoderConfig(dtype="auto", num_threads=2, max_length=128))
    results: dict[str, Any] = {}
    for source in args.sources.split(","):
        loader = demo_inputs if source == "demo" else lambda n: huffpost_inputs(n, seed=3)
        inputs, categories, items = loader(args.n)
        # News prompts as the graph sends them: the dataset's categories as topics, US states.
        limits = OutputLimits()
        if args.max_text_chars is not None:
            limits = replace(
                limits, summary_chars=args.max_text_chars, abstract_chars=args.max_text_chars
            )
        vocab = vocabulary_for(categories, topics="categories", regions="us_states", limits=limits)
        for role in args.roles.split(","):
            for mode in args.modes.split(","):
                prompts = inputs[role]
                if mode == "unconstrained" and args.n_unconstrained is not None:
                    prompts = prompts[: args.n_unconstrained]
                print(f"{source} {role} {mode}: {len(prompts)} prompts", flush=True)
                stats, rows = run_mode(backend, role, prompts, vocab,
                                       mode == "constrained", args.batch_size)  # fmt: skip
                if role == "summarizer" and source == "huffpost":
                    stats["summary_quality"] = summary_quality(rows, items, encoder, args.k)
                results.setdefault(source, {}).setdefault(role, {})[mode] = stats
                print(json.dumps({k: v for k, v in stats.items() if k != "failure_examples"}),
                      flush=True)  # fmt: skip
            modes = results[source][role]
            if {"constrained", "unconstrained"} <= set(modes):
                modes["constrained_tokens_per_second_ratio"] = round(
                    modes["constrained"]["completion_tokens_per_second"]
                    / max(modes["unconstrained"]["completion_tokens_per_second"], 1e-9),
                    3,
                )
    result = {
        "benchmark": "enrichment_quality",
        "command": "python benchmarks/enrichment_quality.py "
        + f"--n {args.n} --roles {args.roles} --sources {args.sources} --modes {args.modes} "
        + f"--batch-size {args.batch_size}"
        + (f" --n-unconstrained {args.n_unconstrained}" if args.n_unconstrained else "")
        + (f" --max-text-chars {args.max_text_chars}" if args.max_text_chars else "")
        + (f" --backend openai --model {args.model}" if args.backend == "openai" else ""),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            **describe(),
            "torch": torch.__version__,
            "llm": backend.model_name,
            "encoder": encoder.model_id,
        },  # fmt: skip
        "engine": "llguidance" if args.backend == "local" else "server response_format",
        **(
            {
                "structured_output": backend.structured_mode,
                "structured_fallbacks": backend.structured_fallbacks,
            }  # fmt: skip
            if args.backend == "openai"
            else {}
        ),
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
