"""Everything a scorer needs for given splits, read from DuckDB in one place.

Shared by the training, evaluation and serving assets so that every stage sees the same items,
histories (including GENRE's synthetic items for the generated-history variant) and profiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date

import numpy as np
import polars as pl

from genre_dagster.arrays import ImpressionData, ItemFeatures
from genre_dagster.scoring.loading import (
    append_history,
    build_item_features,
    load_item_table,
    stream_impressions,
)
from genre_dagster.settings import HISTORY_CAP
from genre_dagster.warehouse import (
    LAYER_STATES,
    NEWS_EMBEDDINGS,
    STG_BEHAVIORS,
    SYNTHETIC_ITEMS,
    USER_PROFILE_EMBEDDINGS,
    query_frame,
    table_exists,
)


@dataclass
class ScorerInputs:
    items: ItemFeatures
    item_table: pl.DataFrame
    splits: dict[str, ImpressionData]
    behaviors: dict[str, pl.DataFrame]
    day_zero: date
    extra_history: dict[str, list[str]] | None
    profiles: object | None  # genre_dagster.scoring.neural.UserProfiles
    # split -> (rows whose history GENRE's synthetic items extended, their histories before):
    # what `without_generated_history` puts back
    plain_history: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


LAYER_STATES_ASSET = "embeddings/layer_states"  # the asset that fills the layer-state cache


def is_tuned(config: dict) -> bool:
    """Whether a scorer config fine-tunes its text encoder (it reads layer states, not the
    item embeddings)."""
    return config.get("text_encoder") == "tuned"


def embedding_fields(config: dict) -> list[str]:
    """Text fields a scorer config reads from the item embeddings ("a+b" reads a and b); a
    tuned text encoder reads none (see `layer_state_fields`)."""
    fields = [] if is_tuned(config) else list(config.get("fields") or [])
    if config.get("field"):
        fields += config["field"].split("+")
    for member in config.get("members") or []:  # ensembles read their members' fields
        fields += embedding_fields(member.get("config") or {})
    return sorted(set(fields))


def tuned_configs(configs) -> list[dict]:
    """The configs among `configs` (ensemble members included) with a tuned text encoder."""
    out = []
    for config in configs:
        out += [config] if is_tuned(config) else []
        out += tuned_configs([m.get("config") or {} for m in config.get("members") or []])
    return out


def layer_state_request(configs) -> tuple[object, list[str]] | None:
    """(layer_cache.LayerModel, fields) whose layer states the tuned scorers among `configs`
    read, or None when none is tuned. Their fields are `fields` (the optional ones are read
    when present, and these are not). Raises ValueError when two read different models: items
    hold one set of layer states per field."""
    from genre_dagster.embedding.layer_cache import LayerModel

    tuned = tuned_configs(configs)
    if not tuned:
        return None
    models = {LayerModel.of(c) for c in tuned}
    if len(models) > 1:
        raise ValueError(
            "tuned scorers read layer states of different models or split layers: "
            + "; ".join(sorted(m.describe() for m in models))
            + ". Give them one lm_model, lm_gguf_file, lm_split_layer and lm_max_length"
        )
    return models.pop(), sorted({f for c in tuned for f in c.get("fields") or []})


def load_layer_states(conn, item_table: pl.DataFrame, model, fields: list[str]) -> dict:
    """field -> LayerStates of the `item_table` rows, read from the layer-state cache; raises
    RuntimeError naming the asset to materialize when the cache or an item's state is missing."""
    from contextlib import nullcontext

    from genre_dagster.embedding.layer_cache import LayerStateCache, read_layer_states
    from genre_dagster.embedding.tables import item_field_texts

    if not table_exists(conn, LAYER_STATES):
        raise RuntimeError(
            f"{LAYER_STATES} does not exist: materialize the asset {LAYER_STATES_ASSET} (in the "
            "graph when a tuned scorer is, e.g. GENRE_EXTRA_SCORERS=nrms_tuned) with "
            f"{model.describe()}"
        )
    cache = LayerStateCache(lambda: nullcontext(conn), LAYER_STATES)
    texts = item_field_texts(conn, item_table, fields)
    return read_layer_states(cache, texts, model, LAYER_STATES_ASSET)


def load_embeddings(conn, fields: list[str]) -> dict[str, pl.DataFrame]:
    """field -> (news_id, vector) from `embeddings.news_embeddings`; clear error when missing."""
    if not fields:
        return {}
    if not table_exists(conn, NEWS_EMBEDDINGS):
        raise RuntimeError(f"{NEWS_EMBEDDINGS} does not exist: materialize it first")
    frame = query_frame(
        conn,
        f"select field, news_id, vector from {NEWS_EMBEDDINGS} where field in ("
        + ", ".join("?" for _ in fields)
        + ")",
        list(fields),
    )
    out = {}
    for name in fields:
        part = frame.filter(pl.col("field") == name).select("news_id", "vector")
        if part.height == 0:
            raise RuntimeError(
                f"no embeddings for text field {name!r}; add it to the fields of news_embeddings"
            )
        out[name] = part
    return out


def load_profiles(conn):
    """GENRE user-profile vectors as UserProfiles, or None when the table does not exist.

    When no user has a valid profile yet (e.g. a small local LLM whose answers all failed
    validation), every user is "without profile": the plug-in would see only zero vectors and
    a missing flag, so the scorer asset trains the base configuration instead
    (scoring/plugins.py); `profile_coverage` reports it."""
    from genre_dagster.scoring.neural import UserProfiles

    if not table_exists(conn, USER_PROFILE_EMBEDDINGS):
        return None
    frame = query_frame(conn, f"select user_id, vector from {USER_PROFILE_EMBEDDINGS}")
    if frame.height == 0:
        (dim,) = conn.execute(f"select len(vector) from {NEWS_EMBEDDINGS} limit 1").fetchone()
        # one NaN row = "no profile" for everyone (UserProfiles' documented convention)
        return UserProfiles(np.array(["__no_profile__"], dtype=object), np.full((1, dim), np.nan))
    dim = int(frame["vector"].list.len().max())
    vectors = np.asarray(frame["vector"].cast(pl.Array(pl.Float32, dim)).to_numpy(), np.float32)
    return UserProfiles(frame["user_id"].to_numpy().astype(object), vectors)


def profile_coverage(profiles, user_ids: np.ndarray) -> float:
    """Share of `user_ids` that have a GENRE profile."""
    if profiles is None or len(user_ids) == 0:
        return 0.0
    has = profiles.profile_rows(user_ids).has
    return float(np.mean(has))


def load_generated_history(conn) -> dict[str, list[str]]:
    """user_id -> synthetic item ids to append to that cold user's history."""
    if not table_exists(conn, SYNTHETIC_ITEMS):
        return {}
    frame = query_frame(
        conn,
        "select user_id, list(news_id order by news_id) as ids "
        f"from {SYNTHETIC_ITEMS} group by user_id",
    )
    return dict(zip(frame["user_id"].to_list(), frame["ids"].to_list(), strict=True))


def load_scorer_inputs(
    conn,
    splits: tuple[str, ...],
    fields: list[str],
    profile: bool = False,
    generated_history: bool = False,
    max_history: int = HISTORY_CAP,
    configs: Sequence[dict] = (),
) -> ScorerInputs:
    """Items with the embedding `fields`, impressions of `splits`, and the GENRE extras. When
    a scorer config in `configs` has a tuned text encoder, the items also carry the layer
    states of its fields (`ItemFeatures.layer_states`, from the layer-state cache).

    `behaviors` holds one row per impression of each split with its `n_candidates`, without
    the id lists (LIST_COLUMNS): every split is streamed from DuckDB (`stream_impressions`).
    With `generated_history`, GENRE's synthetic items extend the histories of their users
    (`append_history`)."""
    (day_zero,) = conn.execute(f"select min(day) from {STG_BEHAVIORS}").fetchone()
    if day_zero is None:
        raise RuntimeError("no impressions: ingest data first")
    item_table = load_item_table(conn, include_synthetic=True)
    items = build_item_features(item_table, load_embeddings(conn, fields), reference_day=day_zero)
    request = layer_state_request(configs)
    if request is not None:
        states = load_layer_states(conn, item_table, *request)
        items = replace(items, layer_states=states)
    extra = load_generated_history(conn) if generated_history else None
    data, frames, plain = {}, {}, {}
    for split in splits:
        data[split], frames[split] = stream_impressions(
            conn, split, items, max_history, day_zero=day_zero
        )
        if extra:
            data[split], rows, before = append_history(data[split], items, extra)
            plain[split] = (rows, before)
    profiles = load_profiles(conn) if profile else None
    if profile and profiles is None:
        raise RuntimeError(f"the profile variant needs {USER_PROFILE_EMBEDDINGS} rows")
    return ScorerInputs(items, item_table, data, frames, day_zero, extra, profiles, plain)


def with_generated_history(conn, inputs: ScorerInputs) -> ScorerInputs:
    """`inputs` with GENRE's synthetic items appended to cold users' histories.

    Only the histories of those users' impressions change (`append_history`); items,
    embeddings, candidates and profiles are shared. With no synthetic item the splits are
    shared as they are."""
    extra = load_generated_history(conn)
    if not extra:
        return replace(inputs, extra_history={})
    splits, plain = {}, {}
    for name, data in inputs.splits.items():
        splits[name], rows, before = append_history(data, inputs.items, extra)
        plain[name] = (rows, before)
    return replace(inputs, splits=splits, extra_history=extra, plain_history=plain)


def without_generated_history(inputs: ScorerInputs) -> ScorerInputs:
    """`inputs` as the base scorer sees them: histories without GENRE's synthetic items.

    For a variant whose generated-history plug-in is off (no training history holds a synthetic
    item, though a validation user's may): it trains and validates the base configuration on the
    base scorer's data, so both share one training. The changed rows get their histories back.
    """
    if not inputs.extra_history:
        return inputs
    splits = {}
    for name, data in inputs.splits.items():
        rows, before = inputs.plain_history[name]
        if len(rows):
            history = data.history.copy()
            history[rows] = before
            data = replace(data, history=history)
        splits[name] = data
    return replace(inputs, splits=splits, extra_history={}, plain_history={})
