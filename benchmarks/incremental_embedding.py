"""Incremental refresh: after a cold run, how long does a run with 1% new texts take?

Uses the project's embedding path (`embed_with_cache` + the local encoder settings) on the real
HuffPost headlines+descriptions in ../shared/data (read in place, never copied): a cold run over
99% of the texts, then a refresh over all of them (the 1% are new). Writes
benchmarks/results/incremental_embedding.json.

    python benchmarks/incremental_embedding.py [--limit 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import describe

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "huffpost_news_category_v3_first10000.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=10_000)
    parser.add_argument("--new-share", type=float, default=0.01)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import polars as pl

    from genre_dagster.embedding import EmbeddingCache, embed_with_cache, text_hash
    from genre_dagster.resources import build_resources
    from genre_dagster.resources.encoder import EncoderResource
    from genre_dagster.settings import load_settings

    rows = [json.loads(line) for line in DATA.read_text().splitlines()[: args.limit]]
    texts = [f"{r['headline']} {r['short_description']}".strip() for r in rows]
    frame = pl.DataFrame({"text": texts}).with_columns(
        pl.col("text").map_elements(text_hash, return_dtype=pl.Utf8).alias("text_hash")
    )
    n_new = max(1, int(len(texts) * args.new_share))
    old, new_total = frame.head(len(texts) - n_new), frame
    with tempfile.TemporaryDirectory() as tmp:
        resources = build_resources(load_settings({"GENRE_DATA_DIR": tmp}))
        encoder: EncoderResource = resources["encoder"]
        model = encoder.get_encoder()
        model.encode(texts[:64])  # warm-up: model load and first-call overheads are not encoding
        cache = EmbeddingCache(str(Path(tmp) / "cache.duckdb"))
        started = time.perf_counter()
        _, cold = embed_with_cache(old, model, cache)
        cold_seconds = time.perf_counter() - started
        started = time.perf_counter()
        _, warm = embed_with_cache(new_total, model, cache)
        warm_seconds = time.perf_counter() - started
    result = {
        "benchmark": "incremental_embedding",
        "command": f"python benchmarks/incremental_embedding.py --limit {args.limit}",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": describe(),
        "encoder": {"model_id": model.model_id, "device": model.device, "dtype": model.dtype},
        "texts": len(texts),
        "new_texts": n_new,
        "cold": {"seconds": round(cold_seconds, 2), **{k: cold[k] for k in ("encoded", "reused")}},
        "incremental": {
            "seconds": round(warm_seconds, 2),
            **{k: warm[k] for k in ("encoded", "reused")},
        },
        "incremental_share_of_cold": round(warm_seconds / cold_seconds, 4),
    }
    out = ROOT / "benchmarks" / "results" / "incremental_embedding.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
