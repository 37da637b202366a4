"""OpenAI Batch API files: the export of the prompts the next run would send, and the reading of
the answers (OpenAI's Batch API and vLLM's `run_batch` read and write the same JSONL format).

An input line is `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}` with
the body the OpenAI-compatible backend would send (model, messages, `response_format` with the
role's JSON schema, max tokens, temperature). The custom id is `genre:<role>:<prompt version>:
<input hash>`, and the export remembers which items each request answers
(`import_store.ExportedRequest`), so answers can come back in any order, days later.

The export runs the enrichment itself (`enrich.enrich`) with a backend that only records what
it is asked and a cache that reads but never writes: its selection, budget, rendering and
schema are the assets' own.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genre_dagster.enrichment.backends import ChatRequest, LLMBackend, LLMResult
from genre_dagster.enrichment.cache import CachedResponse, ResponseCache
from genre_dagster.enrichment.import_store import ExportedRequest
from genre_dagster.enrichment.roles import ROLES, RoleInput
from genre_dagster.enrichment.schemas import VocabularyConfig

CUSTOM_ID_PREFIX = "genre"
BATCH_URL = "/v1/chat/completions"
NOT_SENT = "not sent: exported for an offline batch"


def custom_id(role: str, prompt_version: str, input_hash: str) -> str:
    """The Batch custom id of one request."""
    return f"{CUSTOM_ID_PREFIX}:{role}:{prompt_version}:{input_hash}"


def parse_custom_id(value: Any) -> tuple[str, str, str]:
    """(role, prompt version, input hash) of a custom id; ValueError if it is not ours."""
    parts = value.split(":") if isinstance(value, str) else []
    if len(parts) != 4 or parts[0] != CUSTOM_ID_PREFIX or parts[1] not in ROLES:
        raise ValueError(f"custom_id {value!r} is not a GENRE request (genre:<role>:<v>:<hash>)")
    return parts[1], parts[2], parts[3]


def request_line(cid: str, request: ChatRequest, model: str) -> dict[str, Any]:
    """One Batch input line: the chat completion the OpenAI-compatible backend would send."""
    from genre_dagster.enrichment.openai_http import _response_format

    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in request.messages],
        "max_tokens": request.max_new_tokens,
        "temperature": request.temperature,
    }
    response_format = _response_format(request, "json_schema")
    if response_format is not None:
        body["response_format"] = response_format
    return {"custom_id": cid, "method": "POST", "url": BATCH_URL, "body": body}


class DryRunBackend(LLMBackend):
    """Answers nothing and records every request it is given (under the deployment's model
    name, so cached answers are found as in a real run)."""

    def __init__(self, model_name: str) -> None:
        self._name = model_name
        self.requests: list[ChatRequest] = []

    @property
    def model_name(self) -> str:
        return self._name

    def generate(self, requests: list[ChatRequest]) -> list[LLMResult]:
        self.requests.extend(requests)
        return [LLMResult(key=r.key, text=None, error=NOT_SENT, attempts=0) for r in requests]


class WithheldCache(ResponseCache):
    """A response cache that reads the DuckDB file but keeps what a run would write in
    `withheld` (the dry run's unanswered requests) instead of writing it."""

    def __init__(self, db_path: str | Path) -> None:
        super().__init__(db_path)
        self.withheld: list[CachedResponse] = []

    def put(self, responses: list[CachedResponse]) -> None:
        self.withheld.extend(responses)


@dataclass
class BatchPlan:
    """The requests of an export, in sending order, and what the dry run saw."""

    requests: list[tuple[ExportedRequest, ChatRequest]]
    inputs: int
    imported: int
    answered: int  # inputs that already have tonight's answer in the cache
    skipped_by_budget: int

    @property
    def items(self) -> int:
        return sum(len(e.item_keys) for e, _ in self.requests)


def plan_batch(
    role: str,
    inputs: Sequence[RoleInput],
    config: Any,
    model_name: str,
    database: str | Path,
    vocabulary: VocabularyConfig,
    domain: str,
) -> BatchPlan:
    """The requests the next run of `role` would send to a backend named `model_name`."""
    from genre_dagster.enrichment.enrich import enrich

    backend = DryRunBackend(model_name)
    cache = WithheldCache(database)
    enriched = enrich(role, inputs, config, backend, cache, vocabulary, domain, earlier=False)
    sent = {r.input_hash: (r.role, r.prompt_version) for r in cache.withheld}
    keys = _keys_by_hash(role, inputs, config, enriched.result.rows, vocabulary, domain)
    planned = []
    for request in backend.requests:
        request_role, version = sent[request.key]
        item_keys = tuple(keys.get(request.key) or [request.item_id])
        exported = ExportedRequest(
            custom_id(request_role, version, request.key),
            request_role,
            version,
            request.key,
            item_keys,
        )
        planned.append((exported, request))
    rows = enriched.result.rows
    return BatchPlan(
        requests=planned,
        inputs=len(inputs),
        imported=len(enriched.imported),
        answered=sum(r.status == "ok" for r in rows) - len(enriched.imported),
        skipped_by_budget=sum(r.status == "skipped" for r in rows),
    )


def _keys_by_hash(
    role: str,
    inputs: Sequence[RoleInput],
    config: Any,
    rows: Sequence[Any],
    vocabulary: VocabularyConfig,
    domain: str,
) -> dict[str, list[str]]:
    """Input hash -> the item keys whose prompt it is (inputs with identical prompts share
    one request). The role's own requests are named by its rows; the profiler step of a chain
    is rendered again here because its rows stay inside the chain."""
    from genre_dagster.enrichment.prompts import load_template
    from genre_dagster.enrichment.runner import Stage, chain_profile_inputs
    from genre_dagster.enrichment.sanitize import PromptLimits

    keys: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.input_hash is not None and row.status != "ok":
            keys[row.input_hash].append(row.key)
    if role == "chain_generator":
        stage = Stage(
            backend=DryRunBackend(""),
            cache=None,
            batch_size=1,
            vocab=vocabulary,
            limits=PromptLimits(),
            temperature=0.0,
            retry_failed=True,
            validation_retries=0,
            budget=None,
            sent=set(),
            domain=domain,
            constrained=config.constrained,
        )
        template = load_template("profiler", config.prompt_version)
        for item in chain_profile_inputs(inputs):
            try:
                request = stage.request_for(template, item, None)
            except ValueError:
                continue  # an invalid input is never sent
            keys[request.key].append(item.key)
    return keys


def write_batch(path: str | Path, plan: BatchPlan, model: str) -> int:
    """Write the plan as a Batch input file (written then renamed into place); lines written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for exported, request in plan.requests:
            line = request_line(exported.custom_id, request, model)
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(plan.requests)


@dataclass(frozen=True)
class BatchAnswer:
    """One line of a Batch output (or error) file: the answer text, or why there is none."""

    custom_id: Any
    text: str | None
    error: str | None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def read_answer(record: dict[str, Any]) -> BatchAnswer:
    """The answer of one Batch output record (`response.body.choices[0].message.content`)."""
    cid = record.get("custom_id")
    if record.get("error"):
        error = record["error"]
        message = error.get("message") if isinstance(error, dict) else error
        return BatchAnswer(cid, None, f"batch error: {message}")
    response = record.get("response")
    if not isinstance(response, dict):
        return BatchAnswer(cid, None, "no response in the line")
    status = response.get("status_code")
    body = response.get("body") if isinstance(response.get("body"), dict) else {}
    if status != 200:
        detail = (body.get("error") or {}).get("message") if isinstance(body, dict) else None
        return BatchAnswer(cid, None, f"HTTP {status}: {detail or 'no answer'}")
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return BatchAnswer(cid, None, "no choices[0].message.content in the response body")
    usage = body.get("usage") or {}
    if not isinstance(content, str) or not content.strip():
        return BatchAnswer(cid, None, "empty answer")
    return BatchAnswer(
        cid,
        content,
        None,
        model=body.get("model"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )
