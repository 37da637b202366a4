"""What a capable LLM would have answered about a demo world, in GENRE's released formats.

The demo world knows what no model sees: each item's hidden topic and each user's latent tastes.
These answers state them, so a GENRE variant that reads its plug-in's input has something to
learn from, and a `shuffled` copy (the same answers permuted across items and users) is the
control a plug-in that ignores its input cannot tell apart:
- `summaries.tsv`: `<news id>\\t[newtitle] <text>` naming the item's category and subcategory
  in words, for every news item of the world's files;
- `profiles.jsonl` + `users.txt`: `{"uid": i, "interest": "[topics]\\n- ..."}` (the news
  profiler's text form) with each user's top categories by latent taste, for every user of the
  behaviors files; `uid` is a line of `users.txt` (raw user ids, as a released log has them);
- `generated.jsonl`: `{"uid": i, "news": "<JSON title, abstract, category>"}`, a next item
  rendered by the demo's own text renderer in the favourite subcategory of each cold user.

`genre-dagster llm import` reads all three.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from genre_dagster.demo.catalog import Taxonomy
from genre_dagster.demo.config import DemoWorldConfig
from genre_dagster.demo.generate import read_world_summary
from genre_dagster.demo.text import TextRenderer
from genre_dagster.demo.vocabulary import CATEGORIES
from genre_dagster.demo.world import World
from genre_dagster.settings import COLD_MAX_CLICKS

VARIANTS = ("informative", "shuffled")
SUMMARIES, PROFILES, USERS, GENERATED = (
    "summaries.tsv",
    "profiles.jsonl",
    "users.txt",
    "generated.jsonl",
)
TOP_CATEGORIES = 3


def topic_sentence(category: str, subcategory: str) -> str:
    """An item's hidden topic in words: its category, subcategory and the subcategory's nouns."""
    by_name = {c.name: c for c in CATEGORIES}
    sub = next(s for s in by_name[category].subcategories if s.name == subcategory)
    words = subcategory.replace("_", " ").replace("-", " ")
    nouns = list(sub.nouns[:3])
    listed = ", ".join(nouns[:-1]) + f" and {nouns[-1]}" if len(nouns) > 1 else nouns[0]
    return f"A {category} story about {listed} ({words})"


def category_tastes(world: World) -> np.ndarray:
    """users x categories: how much more than average each user clicks each category (the
    click model's odds, summed over the category's subcategories by their shares)."""
    tax = world.taxonomy
    odds = np.exp(world.config.interest_weight * world.users.log_affinity) * tax.sub_share
    tastes = np.zeros((odds.shape[0], len(tax.categories)))
    np.add.at(tastes.T, tax.sub_category, odds.T)
    return tastes


def _listed_news(world_dir: Path) -> list[str]:
    ids: list[str] = []
    for split in ("train", "dev"):
        with (world_dir / split / "news.tsv").open(encoding="utf-8") as handle:
            ids += [line.split("\t", 1)[0] for line in handle if line.strip()]
    return sorted(set(ids))


def _present_users(world_dir: Path) -> list[str]:
    users: set[str] = set()
    for split in ("train", "dev"):
        with (world_dir / split / "behaviors.tsv").open(encoding="utf-8") as handle:
            users.update(line.split("\t", 2)[1] for line in handle if line.strip())
    return sorted(users)


def write_oracle_answers(
    config: DemoWorldConfig, world_dir: Path, out_dir: Path, seed: int = 0
) -> dict[str, dict[str, Path]]:
    """Write the informative and the shuffled answers for the world at `world_dir` (generated
    from `config`) under `out_dir/<variant>/`; returns variant -> file kind -> path."""
    world_dir, out_dir = Path(world_dir), Path(out_dir)
    summary = read_world_summary(world_dir)
    if summary is None or summary.get("config") != config.to_dict():
        raise ValueError(f"{world_dir} does not hold a demo world generated from this config")
    world = World(config)
    tax, catalog = world.taxonomy, world.catalog
    position = {news_id: i for i, news_id in enumerate(catalog.ids)}
    news = _listed_news(world_dir)
    summaries = [_summary(tax, catalog, position[n]) for n in news]

    users = _present_users(world_dir)
    row = {user: i for i, user in enumerate(world.users.ids)}
    rows = np.array([row[u] for u in users], dtype=np.int64)
    tastes = category_tastes(world)[rows]
    top = np.argsort(-tastes, axis=1, kind="stable")[:, :TOP_CATEGORIES]
    profiles = ["[topics]\n" + "\n".join(f"- {tax.categories[c]}" for c in picks) for picks in top]

    # GENRE's cold users, by the pipeline's own threshold (dbt_project.yml's cold_max_clicks)
    cold = np.flatnonzero(world.users.history_length()[rows] <= COLD_MAX_CLICKS)
    favourite = world.users.log_affinity[rows[cold]].argmax(axis=1)
    renderer = TextRenderer()
    generated = []
    for uid, sub in zip(cold, favourite, strict=True):
        category = tax.categories[tax.sub_category[sub]]
        text = renderer.render(
            random.Random(f"{seed}:{users[uid]}"), category, tax.subcategories[sub]
        )
        item = {"title": text.title, "abstract": text.abstract or text.title, "category": category}
        generated.append(json.dumps(item, ensure_ascii=False))

    rng = np.random.default_rng(seed)
    written = {}
    for variant in VARIANTS:
        if variant == "shuffled":
            summaries = [summaries[i] for i in rng.permutation(len(summaries))]
            profiles = [profiles[i] for i in rng.permutation(len(profiles))]
            generated = [generated[i] for i in rng.permutation(len(generated))]
        folder = out_dir / variant
        folder.mkdir(parents=True, exist_ok=True)
        files = {
            "summaries": folder / SUMMARIES,
            "users": folder / USERS,
            "profiles": folder / PROFILES,
            "generated": folder / GENERATED,
        }
        _write(
            files["summaries"],
            [f"{n}\t[newtitle] {s}" for n, s in zip(news, summaries, strict=True)],
        )
        _write(files["users"], users)
        _write(
            files["profiles"],
            [json.dumps({"uid": i, "interest": p}) for i, p in enumerate(profiles)],
        )
        _write(
            files["generated"],
            [json.dumps({"uid": int(u), "news": g}) for u, g in zip(cold, generated, strict=True)],
        )
        written[variant] = files
    return written


def _summary(tax: Taxonomy, catalog, index: int) -> str:
    category = tax.categories[catalog.category[index]]
    return topic_sentence(category, tax.subcategories[catalog.subcategory[index]])


def _write(path: Path, lines: list[str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    tmp.replace(path)
