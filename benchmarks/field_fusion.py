"""Early vs late fusion of title and abstract on real text: quality and encoding cost.

"Early" encodes the concatenated text (field `title_abstract`); "late" averages the unit vectors
of the separately encoded title and abstract (field `title+abstract`), which the graph encodes
anyway for NRMS and NAML, so late fusion costs no extra encoding. Quality is leave-one-out
k-nearest-neighbour category accuracy (cosine, majority vote) on the 10,000 HuffPost headlines
and short descriptions of ../shared/data (read in place, never copied): a representation that
places same-topic stories together scores higher.

Run: .venv/bin/python benchmarks/field_fusion.py [--limit N] [--k 10]
Writes benchmarks/results/field_fusion.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from machine import describe

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "huffpost_news_category_v3_first10000.jsonl"
RESULTS = ROOT / "benchmarks" / "results" / "field_fusion.json"


def knn_hits(vectors: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per item: does the leave-one-out k-NN (cosine) majority vote name its label? Ties go to
    the nearest label."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    codes = np.unique(labels, return_inverse=True)[1]
    hits = np.zeros(len(unit), dtype=bool)
    for start in range(0, len(unit), 1024):
        sims = unit[start : start + 1024] @ unit.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf  # leave the item itself out
        nearest = np.argsort(-sims, axis=1)[:, :k]
        votes = np.zeros((len(sims), codes.max() + 1))
        # weights 1 + tiny rank bonus: majority first, the nearer label breaks ties
        np.add.at(votes, (rows[:, None], codes[nearest]), 1 + 1e-6 * (k - np.arange(k)))
        hits[start : start + len(sims)] = votes.argmax(1) == codes[start : start + 1024]
    return hits


def knn_accuracy(vectors: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Leave-one-out k-NN (cosine) majority-vote accuracy; ties go to the nearest label."""
    return float(knn_hits(vectors, labels, k).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()

    import torch

    from genre_dagster.embedding.encoder import EncoderConfig, TextEncoder
    from genre_dagster.scoring.user_profile import unit_rows

    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    rows = rows[: args.limit] if args.limit else rows
    texts = {
        "title": [r["headline"] for r in rows],
        "abstract": [r["short_description"] or r["headline"] for r in rows],
        "title_abstract": [f"{r['headline']} {r['short_description']}".strip() for r in rows],
    }
    labels = np.array([r["category"] for r in rows])
    encoder = TextEncoder(EncoderConfig(dtype="auto", num_threads=2, max_length=128))
    vectors, seconds = {}, {}
    for field, values in texts.items():
        started = time.perf_counter()
        vectors[field] = encoder.encode(values)
        seconds[field] = round(time.perf_counter() - started, 2)
    vectors["title+abstract"] = (unit_rows(vectors["title"]) + unit_rows(vectors["abstract"])) / 2
    quality = {f: round(knn_accuracy(v, labels, args.k), 4) for f, v in vectors.items()}
    result = {
        "benchmark": "field_fusion",
        "command": f"python benchmarks/field_fusion.py --k {args.k}"
        + (f" --limit {args.limit}" if args.limit else ""),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**describe(), "torch": torch.__version__, "encoder": encoder.model_id},
        "data": {"file": DATA.name, "texts": len(rows), "categories": len(set(labels))},
        "knn_category_accuracy": quality,
        "encode_seconds": seconds,
        "late_fusion_minus_early": round(quality["title+abstract"] - quality["title_abstract"], 4),
        "early_fusion_share_of_encoding": round(
            seconds["title_abstract"] / sum(seconds.values()), 3
        ),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
