"""Feature tables -> scorer arrays: histories, candidates, labels and synthetic items."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from genre_dagster.arrays import PAD
from genre_dagster.scoring.loading import build_impressions, build_item_features, pad_histories


def _items(synthetic: bool = False) -> pl.DataFrame:
    rows = {
        "news_id": ["N1", "N2", "N3", "N4"],
        "category": ["sports", "news", "sports", "finance"],
        "title": ["a", "b", "c", "d"],
        "abstract": ["", "", "", ""],
        "is_synthetic": [False, False, False, synthetic],
        "first_day": [date(2024, 3, 4), date(2024, 3, 5), None, None],
    }
    return pl.DataFrame(rows)


def _behaviors(candidates=(["N1", "N2"], ["N3"])) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "impression_id": ["train-1", "train-2"],
            "user_id": ["u_a", "u_b"],
            "day": [date(2024, 3, 4), date(2024, 3, 6)],
            "history": [["N1", "N2", "N3"], []],
            "candidate_ids": list(candidates),
            "candidate_labels": [[1, 0], [None]],
        },
        schema_overrides={"candidate_labels": pl.List(pl.Int8)},
    )


def test_pad_histories_keeps_the_most_recent_items_right_aligned():
    offsets = np.array([0, 3, 3, 8])
    flat = np.arange(8)
    out = pad_histories(offsets, flat, max_history=4)
    assert out.tolist() == [[PAD, 0, 1, 2], [PAD] * 4, [4, 5, 6, 7]]


def test_items_and_impressions_become_aligned_arrays():
    embeddings = {
        "title": pl.DataFrame(
            {"news_id": ["N1", "N2", "N3"], "vector": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]},
            schema_overrides={"vector": pl.List(pl.Float32)},
        )
    }
    items = build_item_features(_items(), embeddings, reference_day=date(2024, 3, 4))
    assert items.embeddings["title"].shape == (4, 2)
    assert items.embeddings["title"][3].tolist() == [0.0, 0.0]  # no vector: zero row
    assert items.category_names == ["finance", "news", "sports"]
    assert (
        items.publish_day[0] == 0 and items.publish_day[1] == 1 and np.isnan(items.publish_day[2])
    )

    data = build_impressions(_behaviors(), items, max_history=2, day_zero=date(2024, 3, 4))
    # item indices in int32: half of int64 for a MIND-large split's histories and candidates
    assert data.history.dtype == data.cand_items.dtype == data.candidate_impression.dtype
    assert data.history.dtype == np.int32
    assert data.history.tolist() == [[1, 2], [PAD, PAD]]
    assert data.cand_offsets.tolist() == [0, 2, 3]
    assert data.cand_items.tolist() == [0, 1, 2]
    assert data.labels.tolist() == [1, 0, -1]  # unlabelled candidate
    assert data.day_index.tolist() == [0.0, 2.0]


def test_synthetic_items_extend_histories_but_are_never_candidates():
    items = build_item_features(
        _items(synthetic=True),
        {"title": pl.DataFrame({"news_id": ["N1"], "vector": [[1.0]]})},
    )
    data = build_impressions(_behaviors(), items, max_history=3, extra_history={"u_b": ["N4"]})
    assert data.history[1].tolist() == [PAD, PAD, 3]
    with pytest.raises(ValueError, match="never be candidates"):
        build_impressions(_behaviors(candidates=(["N1", "N4"], ["N3"])), items)


@pytest.mark.parametrize("with_day", [True, False])
def test_chunked_building_gives_the_same_arrays(with_day):
    """Issue 19: impressions are turned into arrays a chunk of rows at a time; chunks of 1, 2
    and 3 rows (empty histories, synthetic extras, unlabeled candidates among them) give the
    arrays of one chunk."""
    items = build_item_features(
        _items(synthetic=True), {"title": pl.DataFrame({"news_id": ["N1"], "vector": [[1.0]]})}
    )
    rng = np.random.default_rng(0)
    n = 11
    behaviors = pl.DataFrame(
        {
            "impression_id": [f"i{j}" for j in range(n)],
            "user_id": [f"u{j % 4}" for j in range(n)],
            "day": [date(2024, 3, 4 + j % 3) for j in range(n)],
            "history": [list(rng.choice(["N1", "N2", "N3"], j % 5)) for j in range(n)],
            "candidate_ids": [list(rng.choice(["N1", "N2", "N3"], 1 + j % 4)) for j in range(n)],
            "candidate_labels": [
                [int(x) if j % 3 else None for x in rng.integers(0, 2, 1 + j % 4)] for j in range(n)
            ],
        },  # fmt: skip
        schema_overrides={"candidate_labels": pl.List(pl.Int8)},
    )
    kwargs = dict(max_history=3, extra_history={"u1": ["N4"]})
    if with_day:
        kwargs["day_zero"] = date(2024, 3, 4)
    whole = build_impressions(behaviors, items, chunk_rows=0, **kwargs)
    for chunk in (1, 2, 3):
        part = build_impressions(behaviors, items, chunk_rows=chunk, **kwargs)
        for name in ("impression_ids", "user_ids", "history", "cand_offsets", "cand_items"):
            assert np.array_equal(getattr(part, name), getattr(whole, name)), (chunk, name)
        assert np.array_equal(part.labels, whole.labels) and part.labels.dtype == np.int8
        if with_day:
            assert np.array_equal(part.day_index, whole.day_index)
        else:
            assert part.day_index is None and whole.day_index is None
    assert whole.history[1].tolist()[-1] == 3  # u1's synthetic item, last in its history


def test_unknown_ids_fail_loudly():
    items = build_item_features(
        _items(), {"title": pl.DataFrame({"news_id": ["N1"], "vector": [[1.0]]})}
    )
    with pytest.raises(KeyError, match="no item row"):
        build_impressions(_behaviors(candidates=(["N1", "N9"], ["N3"])), items)


def test_no_valid_profile_yet_means_every_user_is_without_profile():
    """A weak local LLM may produce no valid profile at all: every user is without profile."""
    import duckdb

    from genre_dagster.scoring.inputs import load_profiles, profile_coverage

    conn = duckdb.connect()
    conn.execute("create schema embeddings")
    conn.execute(
        "create table embeddings.news_embeddings as select 'N1' as news_id, "
        "'title' as field, [0.1, 0.2, 0.3]::float[] as vector"
    )
    conn.execute(
        "create table embeddings.user_profile_embeddings (user_id varchar, vector float[])"
    )
    profiles = load_profiles(conn)
    vectors, has = profiles.rows_for(np.array(["u_a", "u_b"], dtype=object))
    assert vectors.shape == (2, 3) and not has.any()
    assert profile_coverage(profiles, np.array(["u_a"], dtype=object)) == 0.0
    conn.execute("insert into embeddings.user_profile_embeddings values ('u_a', [1, 0, 0])")
    assert profile_coverage(load_profiles(conn), np.array(["u_a", "u_b"], dtype=object)) == 0.5


def _feature_db(with_synthetic: bool):
    """An in-memory DuckDB with the feature tables `load_scorer_inputs` reads."""
    import duckdb

    conn = duckdb.connect()
    conn.execute("create schema embeddings")
    conn.execute("create schema enrichment")
    conn.execute(
        "create table main.stg_news as select * from (values "
        "('N1', 'sports', 'a', ''), ('N2', 'news', 'b', ''), ('N3', 'sports', 'c', '')) "
        "t(news_id, category, title, abstract)"
    )
    conn.execute(
        "create table main.item_daily_stats as select * from (values "
        "('N1', date '2024-03-04'), ('N2', date '2024-03-05')) t(news_id, day)"
    )
    conn.execute(
        """create table main.stg_behaviors as select * from (values
        ('i1', 1, 'train', 'u_cold', timestamp '2024-03-05 10:00', date '2024-03-05',
         ['N1'], ['N2', 'N3'], [1, 0]::tinyint[], 1, true),
        ('i2', 2, 'train', 'u_warm', timestamp '2024-03-05 11:00', date '2024-03-05',
         ['N1', 'N2', 'N3'], ['N3', 'N1'], [0, 1]::tinyint[], 3, true))
        t(impression_id, mind_impression_id, source_split, user_id, time, day, history,
          candidate_ids, candidate_labels, history_length, is_labeled)"""
    )
    conn.execute(
        "create table main.impression_splits as select * from (values "
        "('i1', 'test'), ('i2', 'test')) t(impression_id, split)"
    )
    conn.execute(
        "create table embeddings.news_embeddings as select news_id, 'title' as field, "
        "[n, 1.0, 0.5]::float[] as vector from (values ('N1', 0.1), ('N2', 0.2), ('N3', 0.3), "
        "('S1', 0.4)) t(news_id, n)"
    )
    if with_synthetic:
        conn.execute(
            "create table enrichment.synthetic_items as select 'S1' as news_id, "
            "'u_cold' as user_id, 'sports' as category, 'gen' as title, 'x' as abstract"
        )
    return conn


@pytest.mark.parametrize("with_synthetic", [True, False])
def test_generated_history_from_loaded_inputs_equals_a_fresh_load(with_synthetic):
    from genre_dagster.scoring.inputs import load_scorer_inputs, with_generated_history

    conn = _feature_db(with_synthetic)
    base = load_scorer_inputs(conn, ("test",), ["title"])
    derived = with_generated_history(conn, base)
    fresh = load_scorer_inputs(conn, ("test",), ["title"], generated_history=True)
    got, want = derived.splits["test"], fresh.splits["test"]
    assert np.array_equal(got.history, want.history)
    assert np.array_equal(got.cand_items, want.cand_items)
    assert np.array_equal(got.labels, want.labels)
    assert derived.extra_history == (fresh.extra_history or {})
    if with_synthetic:
        synthetic = int(np.flatnonzero(base.items.item_ids == "S1")[0])
        assert synthetic in got.history[0] and synthetic not in base.splits["test"].history[0]
    else:
        assert derived.splits["test"] is base.splits["test"]  # nothing to rebuild


def test_inputs_hold_no_id_lists_and_generated_histories_come_and_go():
    """No split keeps its id lists (a MIND-large train split's are gigabytes): GENRE's
    synthetic items are appended to the loaded arrays, and taken off again for a variant whose
    plug-in is off."""
    from genre_dagster.scoring.inputs import (
        load_scorer_inputs,
        with_generated_history,
        without_generated_history,
    )
    from genre_dagster.scoring.loading import LIST_COLUMNS

    conn = _feature_db(with_synthetic=True)
    slim = load_scorer_inputs(conn, ("test",), ["title"])
    full = load_scorer_inputs(conn, ("test",), ["title"], generated_history=True)
    for inputs in (slim, full):
        assert not set(LIST_COLUMNS) & set(inputs.behaviors["test"].columns)
        assert inputs.behaviors["test"]["n_candidates"].to_list() == [2, 2]
    data = slim.splits["test"]
    assert np.diff(data.cand_offsets).tolist() == [2, 2]
    assert not np.array_equal(full.splits["test"].history, data.history)
    assert full.splits["test"].cand_items is not None

    derived = with_generated_history(conn, slim)
    assert np.array_equal(derived.splits["test"].history, full.splits["test"].history)
    assert derived.splits["test"].cand_items is data.cand_items  # shared, not copied
    for generated in (full, derived):
        plain = without_generated_history(generated)
        assert np.array_equal(plain.splits["test"].history, data.history)
        assert plain.extra_history == {}
    assert np.array_equal(slim.splits["test"].history, data.history)  # left as it was


def test_appended_history_equals_building_with_the_extra_items():
    """`append_history` patches loaded arrays; `build_impressions(extra_history=...)` builds
    from the id lists. Histories longer than the cap, users with and without extra items,
    several extra items, an empty extra list."""
    from genre_dagster.scoring.loading import append_history

    items = build_item_features(_items(), {}, reference_day=date(2024, 3, 4))
    ids = items.item_ids.tolist()
    behaviors = pl.DataFrame(
        {
            "impression_id": ["i1", "i2", "i3", "i4"],
            "user_id": ["a", "b", "a", "c"],
            "history": [ids[:3], ids[:1], ids[:3], []],
            "candidate_ids": [[ids[0]], [ids[1]], [ids[2]], [ids[0]]],
            "candidate_labels": [[1], [0], [1], [0]],
        },
        schema_overrides={"candidate_labels": pl.List(pl.Int8)},
    )
    extra = {"a": [ids[3], ids[1]], "c": [ids[2]], "b": [], "nobody": [ids[0]]}
    for width in (2, 3, 6):
        plain = build_impressions(behaviors, items, max_history=width)
        want = build_impressions(behaviors, items, max_history=width, extra_history=extra)
        got, rows, before = append_history(plain, items, extra)
        assert np.array_equal(got.history, want.history), width
        assert rows.tolist() == [0, 2, 3]
        assert np.array_equal(before, plain.history[rows])
        assert got.cand_items is plain.cand_items
    with pytest.raises(KeyError, match="unknown item id"):
        append_history(plain, items, {"a": ["no-such-item"]})


@pytest.mark.parametrize("chunk_rows", [1, 2, 0])
def test_streamed_impressions_equal_the_whole_frames_arrays(chunk_rows):
    """DuckDB hands a split over in Arrow batches of `chunk_rows` impressions: the arrays and
    the impression rows are those of the whole frame; an empty split gives empty ones."""
    from genre_dagster.scoring.inputs import load_scorer_inputs
    from genre_dagster.scoring.loading import (
        build_impressions,
        impression_rows,
        load_behaviors,
        stream_impressions,
    )

    conn = _feature_db(with_synthetic=False)
    items = load_scorer_inputs(conn, (), ["title"]).items
    data, rows = stream_impressions(conn, "test", items, 3, chunk_rows=chunk_rows)
    frame = load_behaviors(conn, ("test",))
    want = build_impressions(frame, items, 3)
    for name in ("history", "cand_offsets", "cand_items", "labels"):
        assert np.array_equal(getattr(data, name), getattr(want, name)), name
    assert list(data.impression_ids) == list(want.impression_ids) == ["i1", "i2"]
    assert list(data.user_ids) == list(want.user_ids)
    assert rows.equals(impression_rows(frame, lists=False))
    empty, no_rows = stream_impressions(conn, "train", items, 3, chunk_rows=chunk_rows)
    assert empty.n_impressions == 0 and len(empty.cand_items) == 0 and no_rows.height == 0
    assert set(no_rows.columns) == set(rows.columns)


def test_profile_rows_refer_to_the_profile_table_without_a_copy_per_row():
    """A split's rows share the profile table (one row per profiled user): at MIND-large size a
    vector per impression was 2.9 GB of mostly zeros. Missing users, and users whose row is all
    NaN, get the zero row and no flag; a partly-NaN row is refused."""
    from genre_dagster.scoring.neural import UserProfiles

    vectors = np.array([[1, 2], [np.nan, np.nan], [3, 4]], dtype=np.float32)
    profiles = UserProfiles(np.array(["a", "nan", "b"], dtype=object), vectors)
    users = np.array(["b", "x", "a", "nan", "b"] * 1000, dtype=object)
    rows = profiles.profile_rows(users)
    assert rows.table.shape[0] == 4 and rows.index.shape == (5000,)  # no [5000, dim] copy
    dense, has = rows.dense()
    assert has[:5].tolist() == [True, False, True, False, True]
    assert dense[:5].tolist() == [[3, 4], [0, 0], [1, 2], [0, 0], [3, 4]]
    assert rows.take(slice(0, 2)).dense()[0].tolist() == [[3, 4], [0, 0]]
    with pytest.raises(ValueError, match="partly NaN"):
        UserProfiles(np.array(["a"], dtype=object), np.array([[1, np.nan]], dtype=np.float32))
