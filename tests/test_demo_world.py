"""The demo world generator: determinism, the exact MIND format, the truth file, topic text,
the shift day, extra landing days, idempotent generation, and the catalogue-style preset."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from genre_dagster.demo import (
    PRESETS,
    TRUTH_FILE,
    DemoWorldConfig,
    ensure_world,
    generate_extra_days,
    generate_world,
    read_world_summary,
)
from genre_dagster.demo.config import MAX_USERS
from genre_dagster.demo.files import TRUTH_SCHEMA, TruthWriter
from genre_dagster.demo.generate import CHILD_PROCESS_MIN_USERS
from genre_dagster.demo.world import World

TINY = DemoWorldConfig(n_news=1_500, n_users=800, n_days=4, impressions_per_day=400)
MIND_TIME = "%m/%d/%Y %I:%M:%S %p"
ENTITY_KEYS = ["Label", "Type", "WikidataId", "Confidence", "OccurrenceOffsets", "SurfaceForms"]


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "world"
    generate_world(TINY, out)
    return out


def _copy(world_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "world"
    shutil.copytree(world_dir, target)
    return target


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _lines(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"{path} must end with a newline"
    return [line.split("\t") for line in raw.decode("utf-8").split("\n")[:-1]]


def _mind_time(value: datetime) -> str:
    """MIND's time format without zero padding of month, day and hour."""
    hour = value.hour % 12 or 12
    half = "AM" if value.hour < 12 else "PM"
    return f"{value.month}/{value.day}/{value.year} {hour}:{value:%M:%S} {half}"


def _candidates(world_dir: Path, splits=("train", "dev")) -> pl.DataFrame:
    """One row per shown candidate, parsed from the behaviors files, with the category."""
    rows = []
    for split in splits:
        news = {r[0]: r[1] for r in _lines(world_dir / split / "news.tsv")}
        for impression_id, user, time, history, impressions in _lines(
            world_dir / split / "behaviors.tsv"
        ):
            when = datetime.strptime(time, MIND_TIME)
            for position, token in enumerate(impressions.split(" "), start=1):
                news_id, label = token.rsplit("-", 1)
                rows.append(
                    {
                        "source_split": split,
                        "mind_impression_id": int(impression_id),
                        "position": position,
                        "news_id": news_id,
                        "label": int(label),
                        "category": news[news_id],
                        "user_id": user,
                        "day": when.date().isoformat(),
                        "hour": when.hour,
                        "history_length": len(history.split()),
                    }
                )
    return pl.DataFrame(rows)


def test_same_seed_gives_identical_bytes_and_another_seed_differs(
    world_dir: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again"
    generate_world(TINY, again)
    assert _digests(again) == _digests(world_dir)

    other = tmp_path / "other"
    generate_world(dataclasses.replace(TINY, seed=8), other)
    differing = [k for k, v in _digests(other).items() if _digests(world_dir).get(k) != v]
    assert {"train/news.tsv", "train/behaviors.tsv", "dev/behaviors.tsv"} <= set(differing)


def test_news_files_follow_the_mind_format(world_dir: Path) -> None:
    for split in ("train", "dev"):
        rows = _lines(world_dir / split / "news.tsv")
        assert rows and all(len(r) == 8 for r in rows)
        ids = [r[0] for r in rows]
        assert len(set(ids)) == len(ids)
        assert all(re.fullmatch(r"N\d+", i) for i in ids)
        assert all(r[1] and r[2] and r[3] and r[5].startswith("https://") for r in rows)
        assert all(6 <= len(r[3].split()) <= 14 for r in rows)
        empty_abstracts = sum(r[4] == "" for r in rows) / len(rows)
        assert 0.01 < empty_abstracts < 0.12
        assert all(15 <= len(r[4].split()) <= 40 for r in rows if r[4])
        kinds = Counter()
        for r in rows:
            for text, field in ((r[3], r[6]), (r[4], r[7])):
                if field == "":
                    kinds["empty_string"] += 1
                    continue
                entities = json.loads(field)
                kinds["list" if entities else "empty_list"] += 1
                for e in entities:
                    assert list(e) == ENTITY_KEYS
                    assert re.fullmatch(r"Q\d+", e["WikidataId"]) and 0 < e["Confidence"] <= 1
                    for offset in e["OccurrenceOffsets"]:
                        surface = e["SurfaceForms"][0]
                        assert text[offset : offset + len(surface)] == surface
        assert kinds["list"] > 0 and kinds["empty_list"] > 0


def test_behaviors_files_follow_the_mind_format(world_dir: Path) -> None:
    summary = read_world_summary(world_dir)
    histories: dict[str, str] = {}
    for split in ("train", "dev"):
        known = {r[0] for r in _lines(world_dir / split / "news.tsv")}
        rows = _lines(world_dir / split / "behaviors.tsv")
        assert all(len(r) == 5 for r in rows)
        assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
        days = set()
        for _, user, time, history, impressions in rows:
            assert re.fullmatch(r"U\d+", user)
            parsed = datetime.strptime(time, MIND_TIME)
            assert _mind_time(parsed) == time  # round trip: no zero padding of m/d/hour
            days.add(parsed.date().isoformat())
            # As in MIND, a user's history is the same on every impression.
            assert histories.setdefault(user, history) == history
            assert set(history.split()) <= known
            tokens = [t.rsplit("-", 1) for t in impressions.split(" ")]
            assert all(label in ("0", "1") for _, label in tokens)
            assert any(label == "1" for _, label in tokens)
            assert {n for n, _ in tokens} <= known
            assert len({n for n, _ in tokens}) == len(tokens)
        assert sorted(days) == summary["splits"][split]
    assert summary["splits"]["dev"] == [summary["days"][-1]]
    assert summary["splits"]["train"] == summary["days"][:-1]
    # News ids overlap between splits, as in MIND.
    train_news = {r[0] for r in _lines(world_dir / "train" / "news.tsv")}
    dev_news = {r[0] for r in _lines(world_dir / "dev" / "news.tsv")}
    assert train_news & dev_news


def test_about_a_fifth_of_users_are_cold(world_dir: Path) -> None:
    users = _candidates(world_dir).unique("user_id")
    lengths = users["history_length"].to_numpy()
    assert 0.12 < (lengths <= 5).mean() < 0.30
    assert (lengths == 0).any()
    warm = lengths[lengths > 5]
    assert warm.max() <= 60 and np.median(warm) > 8
    counts = read_world_summary(world_dir)["counts"]
    assert counts["n_cold_users"] == int((lengths <= 5).sum())
    assert counts["n_users"] == users.height


def test_truth_has_one_row_per_candidate_and_true_probabilities(world_dir: Path) -> None:
    truth = pl.read_parquet(world_dir / "truth.parquet")
    assert truth.schema == {
        "source_split": pl.String,
        "mind_impression_id": pl.Int64,
        "position": pl.Int32,
        "news_id": pl.String,
        "label": pl.Int8,
        "click_probability": pl.Float64,
    }
    shown = _candidates(world_dir)
    key = ["source_split", "mind_impression_id", "position"]
    joined = shown.join(truth, on=key, how="inner", suffix="_truth")
    assert joined.height == shown.height == truth.height
    assert (joined["news_id"] == joined["news_id_truth"]).all()
    assert (joined["label"] == joined["label_truth"]).all()

    p = truth["click_probability"].to_numpy()
    labels = truth["label"].to_numpy()
    assert ((p > 0) & (p < 1)).all()
    assert 0.03 < labels.mean() < 0.08  # MIND-like CTR per candidate
    # Clicks follow the true probabilities: the top fifth is clicked far more than the bottom.
    low, high = np.quantile(p, [0.2, 0.8])
    assert labels[p >= high].mean() > 3 * labels[p <= low].mean()


def test_topic_words_tell_categories_apart(world_dir: Path) -> None:
    rows = _lines(world_dir / "train" / "news.tsv")
    tokens = [re.findall(r"[a-z0-9']+", r[3].lower()) for r in rows]
    vocab = {w: i for i, w in enumerate(sorted({w for t in tokens for w in t}))}
    bags = np.zeros((len(rows), len(vocab)))
    for i, words in enumerate(tokens):
        for w in words:
            bags[i, vocab[w]] += 1
    # IDF weighting so the shared frame words ("the", "in", "says") do not dominate.
    bags *= np.log(len(rows) / (bags > 0).sum(axis=0))
    bags /= np.linalg.norm(bags, axis=1, keepdims=True)
    categories = np.array([r[1] for r in rows])
    fit = np.arange(len(rows)) % 2 == 0
    names = sorted(set(categories))
    centroids = np.stack([bags[fit & (categories == c)].mean(axis=0) for c in names])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    predicted = np.array(names)[np.argmax(bags[~fit] @ centroids.T, axis=1)]
    accuracy = (predicted == categories[~fit]).mean()
    assert len(names) == 15
    assert accuracy > 0.8, f"nearest-centroid accuracy {accuracy:.2f}"


def _category_mix(frame: pl.DataFrame, categories: list[str]) -> np.ndarray:
    counts = dict(frame.group_by("category").len().iter_rows())
    mix = np.array([counts.get(c, 0) for c in categories], dtype=float)
    return mix / mix.sum()


def test_shift_day_moves_the_category_mix_and_hours(world_dir: Path) -> None:
    shown = _candidates(world_dir)
    summary = read_world_summary(world_dir)
    days, shift = summary["days"], summary["shift_day"]
    assert shift == days[-1]
    categories = sorted(summary["categories"])
    mixes = {d: _category_mix(shown.filter(pl.col("day") == d), categories) for d in days}

    def tvd(a: str, b: str) -> float:
        return 0.5 * float(np.abs(mixes[a] - mixes[b]).sum())

    stable = max(tvd(a, b) for a, b in zip(days[:-2], days[1:-1], strict=True))
    assert tvd(days[-2], shift) > max(0.2, 3 * stable)
    shift_categories = [categories.index(c) for c in summary["shift_categories"]]
    assert mixes[shift][shift_categories].sum() > 2 * mixes[days[0]][shift_categories].sum()

    impressions = shown.unique(["source_split", "mind_impression_id"])
    evening = impressions.with_columns(pl.col("hour").is_between(18, 22).alias("evening"))
    share = dict(evening.group_by("day").agg(pl.col("evening").mean()).iter_rows())
    assert share[shift] > share[days[0]] + 0.15


def test_no_shift_day_when_disabled(tmp_path: Path) -> None:
    config = dataclasses.replace(TINY, shift_day=None, n_users=400, impressions_per_day=300)
    summary = generate_world(config, tmp_path / "world")
    assert summary["shift_day"] is None
    shown = _candidates(tmp_path / "world")
    categories = sorted(summary["categories"])
    a, b = (
        _category_mix(shown.filter(pl.col("day") == d), categories) for d in summary["days"][-2:]
    )
    assert 0.5 * np.abs(a - b).sum() < 0.15


def test_extra_days_are_deterministic_and_leave_the_base_alone(
    world_dir: Path, tmp_path: Path
) -> None:
    out = _copy(world_dir, tmp_path)
    base = _digests(out)
    landing = tmp_path / "landing"
    written = generate_extra_days(TINY, out, landing, 2)
    assert [w["date"] for w in written] == ["2024-03-08", "2024-03-09"]
    after = _digests(out)
    assert {k: after[k] for k in base} == base  # base files untouched
    assert sorted(p.name for p in landing.iterdir()) == [
        "behaviors_2024-03-08.tsv",
        "behaviors_2024-03-09.tsv",
        "news_2024-03-08.tsv",
        "news_2024-03-09.tsv",
    ]

    # The second extra day is the same when generated alone.
    alone = tmp_path / "alone"
    generate_extra_days(TINY, _copy(world_dir, tmp_path / "copy"), alone, 1, first=1)
    for name in ("behaviors_2024-03-09.tsv", "news_2024-03-09.tsv"):
        assert (alone / name).read_bytes() == (landing / name).read_bytes()

    listed = {r[0] for s in ("train", "dev") for r in _lines(out / s / "news.tsv")}
    base_ids = sum(
        read_world_summary(out)["split_counts"][s]["n_impressions"] for s in ("train", "dev")
    )
    seen_ids: set[int] = set()
    for day in ("2024-03-08", "2024-03-09"):
        news = [r[0] for r in _lines(landing / f"news_{day}.tsv")]
        assert not set(news) & listed  # only news no earlier file lists
        listed |= set(news)
        rows = _lines(landing / f"behaviors_{day}.tsv")
        ids = {int(r[0]) for r in rows}
        assert len(ids) == len(rows) and min(ids) > base_ids and not ids & seen_ids
        seen_ids |= ids
        for _, _, time, history, impressions in rows:
            assert datetime.strptime(time, MIND_TIME).date().isoformat() == day
            referenced = set(history.split()) | {t.rsplit("-", 1)[0] for t in impressions.split()}
            assert referenced <= listed
        truth = pl.read_parquet(out / "truth_landing" / f"truth_{day}.parquet")
        assert truth["source_split"].unique().to_list() == ["landing"]
        assert truth.height == sum(len(r[4].split()) for r in rows)


def test_base_days_do_not_depend_on_how_many_days_are_simulated() -> None:
    base, longer = World(TINY), World(TINY, last_day=TINY.n_days + 5)
    assert base.bias == longer.bias
    for day in (0, TINY.n_days - 1):
        a, b = base.simulate_day(day), longer.simulate_day(day)
        assert np.array_equal(a.news, b.news) and np.array_equal(a.label, b.label)
        assert np.array_equal(a.prob, b.prob) and np.array_equal(a.time_s, b.time_s)


def test_chunked_writing_gives_the_same_files_as_one_chunk_per_day(
    world_dir: Path, tmp_path: Path
) -> None:
    # world_dir was written with the default chunk size, one chunk per day of TINY (400
    # impressions); 29 impressions a chunk forces ~14 chunks a day.
    chunked = tmp_path / "chunked"
    generate_world(TINY, chunked, chunk_impressions=29)
    assert _digests(chunked) == _digests(world_dir)  # behaviors, news, truth, world.json
    assert pl.read_parquet(chunked / TRUTH_FILE).equals(pl.read_parquet(world_dir / TRUTH_FILE))

    landings = {}
    for chunk in (29, 100_000):
        root = tmp_path / f"extra-{chunk}"
        generate_extra_days(
            TINY, _copy(world_dir, root), root / "landing", 2, chunk_impressions=chunk
        )
        landings[chunk] = _digests(root)
    assert landings[29] == landings[100_000]
    with pytest.raises(ValueError, match="chunk_impressions"):
        generate_world(TINY, tmp_path / "bad", chunk_impressions=0)


def test_truth_writer_matches_one_write_of_the_whole_table(tmp_path: Path) -> None:
    """Polars makes several row groups above ~100k rows; streamed in small parts and in two
    source chunks, the file must still be byte-identical to concatenating the two frames and
    writing them at once (what the generator did before it streamed)."""
    rng = np.random.default_rng(0)

    def frame(split: str, n: int, first: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "source_split": [split] * n,
                "mind_impression_id": np.arange(first, first + n) // 30,
                "position": np.arange(n) % 30 + 1,
                "news_id": pl.Series(rng.integers(1, 9_999, n)).cast(pl.String),
                "label": (rng.random(n) < 0.05).astype(np.int8),
                "click_probability": rng.random(n),
            },
            schema=TRUTH_SCHEMA,
        )

    train, dev = frame("train", 230_001, 1), frame("dev", 41_000, 1)
    pl.concat([train, dev]).write_parquet(tmp_path / "whole.parquet")
    writer = TruthWriter(tmp_path / "streamed.parquet")
    for part in (train, dev):
        for start in range(0, part.height, 17_000):
            writer.add(part.slice(start, 17_000))
        writer.end_chunk()
    writer.finish()
    whole, streamed = tmp_path / "whole.parquet", tmp_path / "streamed.parquet"
    assert streamed.read_bytes() == whole.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["streamed.parquet", "whole.parquet"]


def test_extra_days_need_the_matching_base_world(world_dir: Path, tmp_path: Path) -> None:
    out = _copy(world_dir, tmp_path)
    with pytest.raises(ValueError, match="does not hold a demo world"):
        generate_extra_days(dataclasses.replace(TINY, seed=99), out, tmp_path / "landing", 1)


def test_ensure_world_is_idempotent_and_safe(world_dir: Path, tmp_path: Path) -> None:
    out = _copy(world_dir, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    assert ensure_world(TINY, out) == read_world_summary(out)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before

    changed = dataclasses.replace(TINY, seed=11)
    summary = ensure_world(changed, out)
    assert summary["config"]["seed"] == 11 == read_world_summary(out)["config"]["seed"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]  # no temp dirs left

    foreign = tmp_path / "not_a_world"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a demo world"):
        ensure_world(TINY, foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_ensure_world_in_a_child_process_writes_the_same_world(
    world_dir: Path, tmp_path: Path
) -> None:
    # what mind_medium and mind_large take (CHILD_PROCESS_MIN_USERS), on the tiny world
    out = tmp_path / "child"
    summary = ensure_world(TINY, out, in_child=True)
    assert summary == read_world_summary(out) == read_world_summary(world_dir)
    assert _digests(out) == _digests(world_dir)
    assert pl.read_parquet(out / TRUTH_FILE).equals(pl.read_parquet(world_dir / TRUTH_FILE))
    # an error in the child reaches the caller as itself
    with pytest.raises(ValueError, match="chunk_impressions"):
        ensure_world(TINY, tmp_path / "bad", chunk_impressions=0, in_child=True)
    assert DemoWorldConfig.preset("mind_medium").n_users >= CHILD_PROCESS_MIN_USERS
    assert DemoWorldConfig.preset("mind_small").n_users < CHILD_PROCESS_MIN_USERS


def test_config_presets_and_validation() -> None:
    small = DemoWorldConfig.preset("small", seed=3)
    assert small.seed == 3 and small.n_news == 3_000
    assert DemoWorldConfig.preset("mind_small").n_users == 50_000
    sizes = [DemoWorldConfig.preset(name) for name in ("mind_small", "mind_medium", "mind_large")]
    for field in ("n_news", "n_users", "impressions_per_day"):
        low, middle, high = (getattr(c, field) for c in sizes)
        assert low < middle < high and 0.8 < middle**2 / (low * high) < 1.25  # geometric middle
    large = DemoWorldConfig.preset("mind_large")
    assert large.n_users <= MAX_USERS and 150_000 <= large.n_news <= 170_000
    assert 2.1e6 <= (large.n_days - 1) * large.impressions_per_day <= 2.3e6  # MIND-large train
    for name, config in PRESETS.items():
        assert DemoWorldConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config, name
    with pytest.raises(ValueError, match="user id space"):
        DemoWorldConfig(n_users=MAX_USERS + 1)
    assert DemoWorldConfig.from_dict(json.loads(json.dumps(small.to_dict()))) == small
    assert small.shift_day_index == small.n_days - 1
    with pytest.raises(ValueError, match="unknown demo preset"):
        DemoWorldConfig.preset("huge")
    with pytest.raises(ValueError, match="shift_day"):
        DemoWorldConfig(shift_day=7)
    with pytest.raises(ValueError, match="shift_categories"):
        DemoWorldConfig(shift_categories=("cricket",))


# sha256 over every file (relative path + bytes) of the `small` preset, before the catalogue
# fields existed (generator at commit 0f94f69): adding them must not change a default world.
SMALL_DIGEST = "ecf9f8b8f46a2e68395918082e645ac4ad26c7f3fb08dbcb2d541d81e70223f9"
SMALL_WITH_TWO_EXTRA_DAYS_DIGEST = (
    "50de7e749827d1a15a96602a2f73755a0ff80e259d456789275800ae4820aab7"
)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_default_presets_are_byte_identical_to_before_the_catalogue_fields(tmp_path: Path) -> None:
    small = DemoWorldConfig.preset("small")
    world = tmp_path / "w"
    generate_world(small, world)
    assert _tree_digest(world) == SMALL_DIGEST
    generate_extra_days(small, world, tmp_path / "landing", 2)
    assert _tree_digest(tmp_path) == SMALL_WITH_TWO_EXTRA_DAYS_DIGEST  # w/ and landing/
    assert "reread_share" not in read_world_summary(world)["config"]


@pytest.fixture(scope="module")
def catalogue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("catalogue") / "world"
    generate_world(DemoWorldConfig.preset("catalogue_small"), out)
    return out


def test_catalogue_preset_writes_valid_mind_files(catalogue_dir: Path) -> None:
    summary = read_world_summary(catalogue_dir)
    config = DemoWorldConfig.from_dict(summary["config"])
    assert config == DemoWorldConfig.preset("catalogue_small")
    assert summary["shift_day"] is None
    for split in ("train", "dev"):
        news = _lines(catalogue_dir / split / "news.tsv")
        assert news and all(len(r) == 8 for r in news)
        known = {r[0] for r in news}
        assert len(known) == len(news)
        for _, user, time, history, impressions in _lines(catalogue_dir / split / "behaviors.tsv"):
            assert re.fullmatch(r"U\d+", user) and _mind_time(datetime.strptime(time, MIND_TIME))
            assert set(history.split()) <= known
            tokens = [t.rsplit("-", 1) for t in impressions.split(" ")]
            assert {n for n, _ in tokens} <= known and len({n for n, _ in tokens}) == len(tokens)
            assert any(label == "1" for _, label in tokens)
    truth = pl.read_parquet(catalogue_dir / TRUTH_FILE)
    assert truth.height == _candidates(catalogue_dir).height
    assert 0.03 < truth["label"].mean() < 0.08
    with pytest.raises(ValueError, match="reread_share"):
        DemoWorldConfig(reread_share=1.5)
    with pytest.raises(ValueError, match="taste_drift"):
        DemoWorldConfig(taste_drift=-0.1)


def test_catalogue_items_persist_are_reread_and_tastes_drift(catalogue_dir: Path) -> None:
    shown = _candidates(catalogue_dir)
    # Items stay on offer for weeks: most of the last day's candidates were shown before it.
    last = shown["day"].max()
    earlier = set(shown.filter(pl.col("day") < last)["news_id"])
    today = shown.filter(pl.col("day") == last)["news_id"]
    assert today.is_in(list(earlier)).mean() > 0.9
    # About a tenth of the candidates are items the reader has in their history.
    histories = {
        user: set(history.split())
        for split in ("train", "dev")
        for _, user, _, history, _ in _lines(catalogue_dir / split / "behaviors.tsv")
    }
    reread = np.array(
        [n in histories[u] for n, u in zip(shown["news_id"], shown["user_id"], strict=True)]
    )
    assert 0.07 < reread.mean() < 0.13
    # Tastes drift: the recent half of a history is closer to the reader's tastes today than
    # the older half.
    world = World(DemoWorldConfig.preset("catalogue_small"))
    users, catalog = world.users, world.catalog
    everyone = np.arange(users.ids.size)
    now = users.affinity(
        everyone[:, None], np.arange(users.log_affinity.shape[1])[None, :], np.full((1, 1), 6e5)
    )
    older, recent = [], []
    for user in everyone[users.history_length() >= 10]:
        clicks = catalog.subcategory[
            users.hist_news[users.hist_ptr[user] : users.hist_ptr[user + 1]]
        ]
        half = clicks.size // 2
        older.append(now[user, clicks[:half]].mean())
        recent.append(now[user, clicks[half:]].mean())
    assert np.mean(recent) - np.mean(older) > 0.03


def test_catalogue_world_runs_through_ingestion(catalogue_dir: Path, tmp_path: Path) -> None:
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from genre_dagster.assets.raw import raw_behaviors, raw_news
    from genre_dagster.resources import DatasetSource, PrivacyResource
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    database = str(tmp_path / "genre.duckdb")
    resources = {
        "io_manager": DuckDBPolarsTablesIOManager(database=database),
        "duckdb": DuckDBResource(database=database),
        "source": DatasetSource(kind="mind", path=str(catalogue_dir)),
        "privacy": PrivacyResource(pseudonym_key="test-key"),
    }
    days = read_world_summary(catalogue_dir)["days"]
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("behavior_days", days)
    accepted = 0
    for day in days:
        result = dg.materialize(
            [raw_news, raw_behaviors], partition_key=day, resources=resources, instance=instance
        )
        assert result.success
        for event in result.get_asset_materialization_events():
            if event.asset_key.path[-1] not in ("news", "behaviors"):
                continue  # the quarantine and repairs tables
            meta = {k: v.value for k, v in event.materialization.metadata.items()}
            assert meta["rows_quarantined"] == 0, (day, event.asset_key)
            if event.asset_key.path[-1] == "behaviors":
                accepted += meta["rows_accepted"]
    lines = sum(len(_lines(catalogue_dir / split / "behaviors.tsv")) for split in ("train", "dev"))
    assert accepted == lines == read_world_summary(catalogue_dir)["counts"]["n_impressions"]
