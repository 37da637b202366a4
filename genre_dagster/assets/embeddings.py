"""LLM/PLM embeddings of item texts and of GENRE user-profile topics.

Vectors are cached by (model id, text hash) in DuckDB, so a nightly refresh encodes only new or
changed texts and identical texts are encoded once.
"""

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from pydantic import Field

from genre_dagster import warehouse as wh
from genre_dagster.resources.encoder import EncoderResource
from genre_dagster.scoring.inputs import embedding_fields
from genre_dagster.scoring.variants import DEFAULT_SCORERS
from genre_dagster.step_budget import budgeted

GROUP = "embeddings"
SUMMARIES = dg.AssetKey(["enrichment", "news_summaries"])
PROFILES = wh.USER_PROFILES.key
SYNTHETIC = wh.SYNTHETIC_ITEMS.key
NEWS_TABLE = wh.NEWS_EMBEDDINGS


# What the default scorers read, plus the title (explanations and embedding drift use it).
DEFAULT_FIELDS = sorted(
    {"title"} | {f for spec in DEFAULT_SCORERS for f in embedding_fields(spec.config)}
)


class EmbeddingConfig(dg.Config):
    fields: list[str] = Field(
        default=DEFAULT_FIELDS,
        description=(
            "text fields to embed: title, abstract (falls back to the title), title_abstract "
            "(one text; scorers can average title and abstract vectors instead, as 'title+"
            "abstract'), summary (falls back to the title), summary_replace (summary + "
            "abstract), summary_append (title + abstract + category + summary)"
        ),
    )


def _encoder_metadata(encoder) -> dict:
    return {"model_id": encoder.model_id, "device": encoder.device, "dtype": encoder.dtype}


@dg.asset(
    key=NEWS_TABLE.key,
    ins={
        "summaries": dg.AssetIn(SUMMARIES),
        "synthetic": dg.AssetIn(SYNTHETIC),
    },
    deps=[wh.STG_NEWS.key],
    group_name=GROUP,
    kinds={"pytorch", "duckdb"},
    pool="duckdb",
)
@budgeted
def news_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingConfig,
    summaries: pl.DataFrame,
    synthetic: pl.DataFrame,
    encoder: EncoderResource,
    duckdb: DuckDBResource,
) -> dg.MaterializeResult:
    """One vector per (item, text field), real and synthetic items alike, in table
    `embeddings.news_embeddings` (news_id, field, text_hash, model_id, vector). LLM summaries
    feed the summary fields (items without one fall back to their title). The table is updated
    in place: rows whose text and encoder are unchanged stay, so a nightly run writes only the
    new or changed items' vectors."""
    from genre_dagster.embedding import EmbeddingCache
    from genre_dagster.embedding import tables as vectors

    vectors.check_fields(config.fields)
    model = encoder.get_encoder()
    with duckdb.get_connection() as conn:
        news = vectors.read_news(conn)
        stored = vectors.stored_texts(conn, model.model_id)
    news = vectors.item_texts(news, summaries, synthetic)
    cache = EmbeddingCache(duckdb.database)
    done = vectors.embed_news(news, config.fields, model, cache, stored, log=context.log.info)
    with duckdb.get_connection() as conn:
        deleted = vectors.write_news_vectors(
            conn, done.fresh, done.wanted, model.model_id, update_in_place=stored is not None
        )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": done.wanted.num_rows,  # checked by the write
            "dagster/table_name": NEWS_TABLE,
            **done.counts(deleted),
            "dim": int(model.dim),
            "fields": dg.MetadataValue.md(done.fields_markdown()),
            **_encoder_metadata(model),
        }
    )


@dg.asset(
    key=wh.USER_PROFILE_EMBEDDINGS.key,
    ins={"profiles": dg.AssetIn(PROFILES)},
    group_name=GROUP,
    kinds={"pytorch", "duckdb"},
    pool="duckdb",
)
@budgeted
def user_profile_embeddings(
    context: dg.AssetExecutionContext,
    profiles: pl.DataFrame,
    encoder: EncoderResource,
    duckdb: DuckDBResource,
) -> pl.DataFrame:
    """Per user, the mean embedding of their GENRE profile topics and regions (ONCE): the user
    feature that the profile plug-in of the neural scorers fuses into the user vector."""
    from genre_dagster.embedding import EmbeddingCache
    from genre_dagster.embedding.tables import profile_vectors

    model = encoder.get_encoder()
    out, terms, stats = profile_vectors(profiles, model, EmbeddingCache(duckdb.database))
    if terms == 0:
        context.log.warning("no user profiles yet: nothing to embed")
        context.add_output_metadata({"dagster/row_count": 0, **_encoder_metadata(model)})
        return out
    context.add_output_metadata(
        {
            "dagster/row_count": out.height,
            "profile_terms": terms,
            "texts_encoded": stats["encoded"],
            "texts_reused": stats["reused"],
            **_encoder_metadata(model),
        }
    )
    return out


def layer_states_config(fields: list[str], model) -> type[dg.Config]:
    """The layer-state asset's config class; its defaults are `fields` and `model`
    (layer_cache.LayerModel), the tuned scorers' (a launchpad change must match theirs)."""
    described = {
        "fields": (list[str], fields, "text fields whose item texts get layer states"),
        "lm_model": (str | None, model.model, "model folder; empty = the offline MiniLM"),
        "lm_gguf_file": (str | None, model.gguf_file, "a GGUF file inside lm_model"),
        "lm_split_layer": (int, model.split_layer, "layers 1..k are cached (the split)"),
        "lm_max_length": (int, model.max_length, "tokens kept per text"),
        "store_dtype": (str, "bf16", "bf16 | fp16 | fp32: the stored states' dtype"),
        "batch_size": (int, 64, "texts per forward pass"),
    }
    namespace = {"__annotations__": {k: t for k, (t, _, _) in described.items()}}
    namespace |= {k: Field(default=v, description=d) for k, (_, v, d) in described.items()}
    return type("LayerStatesConfig", (dg.Config,), namespace)


def build_layer_states_asset(specs) -> dg.AssetsDefinition:
    """The layer-state cache of the tuned scorers `specs` (scoring/variants.py `tuned_specs`),
    with their fields and language-model half as config defaults."""
    from genre_dagster.scoring.inputs import layer_state_request

    model, fields = layer_state_request([spec.config for spec in specs])
    Config = layer_states_config(fields, model)  # noqa: N806

    # a summary field reads the LLM's summaries (the title where an item has none)
    summaries = [wh.NEWS_SUMMARIES.key] if "summary" in fields else []

    @dg.asset(key=wh.LAYER_STATES.key, deps=[wh.STG_NEWS.key, SYNTHETIC, *summaries],
              group_name=GROUP, kinds={"pytorch", "duckdb"}, pool="duckdb")  # fmt: skip
    @budgeted
    def layer_states(
        context: dg.AssetExecutionContext, config: Config, duckdb: DuckDBResource
    ) -> dg.MaterializeResult:
        """Token states after layer k of a language model for every item text (real and
        synthetic) of the tuned scorers' fields, keyed by text hash in `embeddings.
        layer_states`: only new or changed texts are computed; the tuned scorers train their
        top layers over them."""
        from genre_dagster.embedding.layer_cache import LayerModel
        from genre_dagster.embedding.tables import refresh_item_layer_states

        half = LayerModel(config.lm_model, config.lm_gguf_file, config.lm_split_layer,
                          config.lm_max_length)  # fmt: skip
        stats = refresh_item_layer_states(
            duckdb.get_connection, config.fields, half, config.store_dtype, config.batch_size,
            log=context.log.info,
        )  # fmt: skip
        fields = stats.pop("fields")
        return dg.MaterializeResult(
            metadata={
                **stats,
                "fields": dg.MetadataValue.json(fields),
                "dagster/table_name": wh.LAYER_STATES,
            }
        )

    return layer_states
