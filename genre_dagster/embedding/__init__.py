"""Text encoders (HF encoders, decoder-LLM hidden states), text fields and the embedding cache.

Importing this package is cheap: torch and transformers load when a model is built.
"""

from genre_dagster.embedding.cache import EmbeddingCache, embed_with_cache
from genre_dagster.embedding.decoder import DecoderConfig, DecoderEncoder
from genre_dagster.embedding.devices import resolve_device, resolve_dtype_name
from genre_dagster.embedding.encoder import EncoderConfig, TextEncoder
from genre_dagster.embedding.fields import (
    ITEM_FIELDS,
    build_item_texts,
    build_profile_texts,
    text_hash,
)
from genre_dagster.embedding.modelfiles import default_encoder_path, smollm2_gguf_path

__all__ = [
    "ITEM_FIELDS",
    "DecoderConfig",
    "DecoderEncoder",
    "EmbeddingCache",
    "EncoderConfig",
    "TextEncoder",
    "build_item_texts",
    "build_profile_texts",
    "default_encoder_path",
    "embed_with_cache",
    "resolve_device",
    "resolve_dtype_name",
    "smollm2_gguf_path",
    "text_hash",
]
