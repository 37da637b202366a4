"""LLM enrichment (the GENRE roles) as pure logic: backends, prompts, schemas, cache, runner.

Heavy libraries (httpx, torch, transformers, duckdb) are imported inside the functions that use
them, so importing this package is cheap.
"""

from genre_dagster.enrichment.backends import ChatRequest, LLMBackend, LLMResult
from genre_dagster.enrichment.cache import CachedResponse, ResponseCache
from genre_dagster.enrichment.local_transformers import TransformersBackend, default_smollm2_path
from genre_dagster.enrichment.openai_http import OpenAICompatibleBackend
from genre_dagster.enrichment.precomputed import PrecomputedBackend
from genre_dagster.enrichment.prompts import PromptTemplate, input_hash, load_template
from genre_dagster.enrichment.roles import ROLES, RoleInput
from genre_dagster.enrichment.runner import RoleRow, RoleRunResult, run_role, vocabulary_config
from genre_dagster.enrichment.sanitize import PromptLimits
from genre_dagster.enrichment.schemas import VocabularyConfig, validate_answer
from genre_dagster.enrichment.vocabulary import Vocabulary, us_states_vocabulary

__all__ = [
    "ROLES",
    "CachedResponse",
    "ChatRequest",
    "LLMBackend",
    "LLMResult",
    "OpenAICompatibleBackend",
    "PrecomputedBackend",
    "PromptLimits",
    "PromptTemplate",
    "ResponseCache",
    "RoleInput",
    "RoleRow",
    "RoleRunResult",
    "TransformersBackend",
    "Vocabulary",
    "VocabularyConfig",
    "default_smollm2_path",
    "input_hash",
    "load_template",
    "run_role",
    "us_states_vocabulary",
    "validate_answer",
    "vocabulary_config",
]
