"""Run one GENRE role over many inputs: render, hash, cache first, budget, batches,
validation, one stricter retry.

For each input the prompt is rendered and hashed; cached ok answers are reused (and cached
failures too when `retry_failed` is False). The rest are sent to the backend in batches, up to
`budget` items (inputs come newest first, so the newest are served first); each answer is
validated, a failing one is retried once with a stricter reminder, and every finished batch is
written to the cache at once, so a crash loses at most the batch in flight. A backend's error
results become failed rows; an exception raised by a backend stops the run (finished batches
are kept).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from genre_dagster.enrichment.backends import ChatRequest, LLMBackend, LLMResult, check_aligned
from genre_dagster.enrichment.cache import CachedResponse, ResponseCache
from genre_dagster.enrichment.prompts import (
    PromptTemplate,
    canonical_json,
    input_hash,
    load_template,
)
from genre_dagster.enrichment.roles import (
    CONTEXT_VALUES,
    ROLES,
    SERVING_ROLES,
    STRICT_REMINDER,
    RoleInput,
    avoid_copying,
    prompt_values,
)
from genre_dagster.enrichment.sanitize import PromptLimits
from genre_dagster.enrichment.schemas import (
    OutputLimits,
    Validated,
    VocabularyConfig,
    json_schema,
    max_answer_tokens,
    validate_answer,
)
from genre_dagster.enrichment.vocabulary import Vocabulary, us_states_vocabulary

__all__ = ["RoleInput", "RoleRow", "RoleRunResult", "Stage", "run_role", "vocabulary_config"]

logger = logging.getLogger(__name__)


@dataclass
class RoleRow:
    """The outcome for one input: status "ok", "failed" or "skipped" (over budget).

    `raw_text`: the model's answer as it came (None when there was none).
    `stale`: an ok row that answers an earlier input of the same item (see
    `with_earlier_answers`), kept because tonight's input got no valid answer."""

    key: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cached: bool
    input_hash: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    attempts: int = 0
    notes: list[str] = field(default_factory=list)
    stale: bool = False
    raw_text: str | None = None


@dataclass
class RoleRunResult:
    """Rows in input order and run statistics.

    stats: answered (fresh ok), cached (served from the cache), failed, skipped_by_budget,
    sent (items sent to the LLM), requests (LLM calls incl. retries), repaired (ok rows with
    repair notes), prompt_tokens / completion_tokens (spent in this run), seconds (wall time).
    For chain_generator, `stage_stats` holds the profiler's and the generator's own stats.
    """

    role: str
    prompt_version: str
    model: str
    rows: list[RoleRow]
    stats: dict[str, float]
    stage_stats: dict[str, dict[str, float]] = field(default_factory=dict)


def vocabulary_config(
    categories: Sequence[str] | Vocabulary,
    topics: Sequence[str] | Vocabulary | None = None,
    regions: Sequence[str] | Vocabulary | None = None,
    max_topics: int = 5,
    limits: OutputLimits | None = None,
) -> VocabularyConfig:
    """Vocabularies for the roles: topics default to the categories, regions to US states
    (`choices.vocabulary_for` reads the same from configuration strings)."""
    as_vocab = lambda v: v if isinstance(v, Vocabulary) else Vocabulary.of(v)  # noqa: E731
    cats = as_vocab(categories)
    return VocabularyConfig(
        topics=as_vocab(topics) if topics is not None else cats,
        categories=cats,
        regions=as_vocab(regions) if regions is not None else us_states_vocabulary(),
        max_topics=max_topics,
        limits=limits or OutputLimits(),
    )


def run_role(
    role: str,
    inputs: Sequence[RoleInput],
    backend: LLMBackend,
    cache: ResponseCache | None,
    budget: int | None = None,
    batch_size: int = 8,
    vocabulary: VocabularyConfig | None = None,
    prompt_version: str = "v2",
    profiler_version: str = "v2",
    limits: PromptLimits | None = None,
    max_new_tokens: int | None = None,
    temperature: float = 0.0,
    retry_failed: bool = True,
    validation_retries: int = 1,
    template_folder: str | Path | None = None,
    domain: str = "news",
    constrained: bool = True,
    known_profiles: Mapping[str, Mapping[str, Any]] | None = None,
) -> RoleRunResult:
    """Run `role` over `inputs` (newest first) and return one row per input, in input order.

    Args:
        budget: max items sent to the LLM in this run (None: no limit); cached items are free;
            items past the budget are reported "skipped".
        vocabulary: topics/categories/regions (see `vocabulary_config`); needed by all roles
            but the summarizer.
        profiler_version: template version of the profiler step of chain_generator.
        retry_failed: send items whose cached answer failed again (True) or report the cached
            failure (False).
        validation_retries: stricter-reminder retries after an invalid answer.
        domain: what the items are ("news", "books", "podcast episode"), named in the prompts.
        constrained: attach the role's JSON schema to every request, so backends that can
            constrain decoding to it do (part of the cache key).
        known_profiles: chain_generator: profiles already known per input key (e.g. imported
            answers); the profiler step is skipped for these inputs and their topics are used.
    """
    if role not in (*ROLES, *SERVING_ROLES):
        raise ValueError(f"unknown role {role!r}; known: {(*ROLES, *SERVING_ROLES)}")
    if batch_size < 1 or (budget is not None and budget < 0) or validation_retries < 0:
        raise ValueError("run_role: need batch_size >= 1, budget >= 0, validation_retries >= 0")
    keys = [item.key for item in inputs]
    if len(set(keys)) != len(keys):
        raise ValueError("run_role: input keys must be unique")
    stage = Stage(
        backend=backend,
        cache=cache,
        batch_size=batch_size,
        vocab=vocabulary or VocabularyConfig(),
        limits=limits or PromptLimits(),
        temperature=temperature,
        retry_failed=retry_failed,
        validation_retries=validation_retries,
        budget=budget,
        sent=set(),
        domain=domain,
        constrained=constrained,
    )
    load = lambda r, v: load_template(r, v, template_folder)  # noqa: E731
    if role != "chain_generator":
        return stage.run(load(role, prompt_version), inputs, max_new_tokens)
    # Chain: profile first (its answers are cached as the profiler role), then generate.
    profiler = load("profiler", profiler_version)
    wanted = set(keys)
    known = {k: dict(value) for k, value in (known_profiles or {}).items() if k in wanted}
    profiles = stage.run(profiler, chain_profile_inputs(inputs, skip=known), None)
    by_key = {row.key: row for row in profiles.rows}
    by_key.update({key: RoleRow(key, "ok", value, None, True) for key, value in known.items()})
    ready = [
        RoleInput(i.key, {**i.fields, "topics": by_key[i.key].output["topics"]})
        for i in inputs
        if by_key[i.key].status == "ok"
    ]
    generated = stage.run(load(role, prompt_version), ready, max_new_tokens)
    gen_by_key = {row.key: row for row in generated.rows}
    rows = []
    for item in inputs:
        profile = by_key[item.key]
        if item.key in gen_by_key:
            rows.append(gen_by_key[item.key])
        else:
            error = None if profile.status == "skipped" else f"profiler: {profile.error}"
            rows.append(RoleRow(item.key, profile.status, None, error, profile.cached))
    stats = _stats_of(rows, profiles.stats["seconds"] + generated.stats["seconds"])
    for name in ("sent", "requests", "prompt_tokens", "completion_tokens", "llm_seconds"):
        stats[name] = profiles.stats[name] + generated.stats[name]
    stats["rendered"] = profiles.stats["rendered"] + generated.stats["rendered"]
    return RoleRunResult(
        role,
        prompt_version,
        backend.model_name,
        rows,
        stats,
        {"profiler": profiles.stats, "chain_generator": generated.stats},
    )


def chain_profile_inputs(
    inputs: Sequence[RoleInput], skip: Mapping[str, Any] | None = None
) -> list[RoleInput]:
    """The profiler step's inputs of a chain: each generator input's history titles (inputs
    whose key is in `skip` are left out)."""
    return [
        RoleInput(i.key, {"history": [_title(h) for h in i.fields.get("history") or []]})
        for i in inputs
        if i.key not in (skip or {})
    ]


def _title(entry: Any) -> Any:
    return entry.get("title") if isinstance(entry, dict) else entry


def with_earlier_answers(result: RoleRunResult, cache: ResponseCache | None) -> RoleRunResult:
    """`result` where every input without a valid answer tonight (failed, or skipped by the
    budget) takes the newest valid answer cached for the same item, marked `stale`.

    A user's history grows every night, so the profiler's input (and its hash) changes; without
    this, a failing LLM or a small budget would unpublish yesterday's profiles. Counted in
    `stats["stale"]`; the failure or skip itself stays counted as before.
    """
    missing = [row.key for row in result.rows if row.status != "ok"]
    earlier = (
        cache.latest_ok(result.role, result.prompt_version, result.model, missing)
        if cache is not None and missing
        else {}
    )
    rows = [
        RoleRow(
            row.key,
            "ok",
            earlier[row.key].parsed,
            None,
            True,
            input_hash=earlier[row.key].input_hash,
            stale=True,
        )  # fmt: skip
        if row.key in earlier
        else row
        for row in result.rows
    ]
    stats = {**result.stats, "stale": len(earlier)}
    return RoleRunResult(
        result.role, result.prompt_version, result.model, rows, stats, result.stage_stats
    )


# --- one pass of one template over its inputs -------------------------------------------------


# Inputs rendered, hashed and looked up in the response cache at a time.
LOOKUP_CHUNK = 20_000


@dataclass
class _Pending:
    request: ChatRequest
    keys: list[str]  # item keys sharing this exact prompt


@dataclass
class Stage:
    """Runs template passes; `sent` (item keys sent to the LLM) is shared between the passes
    of a chain so they spend one budget."""

    backend: LLMBackend
    cache: ResponseCache | None
    batch_size: int
    vocab: VocabularyConfig
    limits: PromptLimits
    temperature: float
    retry_failed: bool
    validation_retries: int
    budget: int | None
    sent: set[str]
    domain: str = "news"
    constrained: bool = True
    # role -> its JSON schema under `vocab`: built once, not per input (building the pydantic
    # model and its schema took 80% of a profiler pass that only looks most users up)
    _schemas: dict[str, dict[str, Any]] = field(default_factory=dict, init=False, repr=False)
    _answer_tokens: dict[str, int] = field(default_factory=dict, init=False, repr=False)
    _schema_json: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def schema(self, role: str) -> dict[str, Any]:
        """`role`'s answer schema under `vocab` (shared by its requests: read, never changed)."""
        if role not in self._schemas:
            self._schemas[role] = json_schema(role, self.vocab)
            self._schema_json[role] = canonical_json(self._schemas[role])
        return self._schemas[role]

    def answer_tokens(self, role: str) -> int:
        """`role`'s answer token budget under `vocab` (`max_answer_tokens`), computed once."""
        if role not in self._answer_tokens:
            self._answer_tokens[role] = max_answer_tokens(role, self.vocab)
        return self._answer_tokens[role]

    def render(self, template: PromptTemplate, fields: Any) -> tuple[dict[str, str], ...]:
        """The messages of one input (ValueError for an invalid input)."""
        values = prompt_values(template.role, fields, self.limits, self.vocab, self.domain)
        return template.render(values, CONTEXT_VALUES)

    def request_for(
        self, template: PromptTemplate, item: RoleInput, max_new_tokens: int | None
    ) -> ChatRequest:
        """The chat request of one input: rendered, hashed (prompt + schema), schema attached."""
        role, version = template.role, template.version
        messages = self.render(template, item.fields)
        schema = self.schema(role) if self.constrained else None
        prefix = "" if schema is not None else template.response_prefix
        avoid = (
            avoid_copying(role, item.fields, self.limits, template.instructions)
            if schema is not None
            else ()
        )
        return ChatRequest(
            key=input_hash(
                role,
                version,
                messages,
                prefix,
                schema,
                avoid,
                schema_json=self._schema_json.get(role) if schema is not None else None,
            ),  # fmt: skip
            messages=messages,
            max_new_tokens=max_new_tokens or self.answer_tokens(role),
            temperature=self.temperature,
            item_id=item.key,
            response_prefix=prefix,
            json_object=True,
            json_schema=schema,
            avoid_copying=avoid,
        )

    def run(
        self, template: PromptTemplate, inputs: Sequence[RoleInput], max_new_tokens: int | None
    ) -> RoleRunResult:
        start = time.perf_counter()
        role, version, model = template.role, template.version, self.backend.model_name
        counters = {"requests": 0, "prompt_tokens": 0, "completion_tokens": 0, "llm_seconds": 0.0}
        rows: dict[str, RoleRow] = {}
        pending: dict[str, _Pending] = {}
        # An item whose fields are those it had when last seen, under the same templates,
        # vocabularies, limits and rendering code (`context`), renders to the input hash kept
        # then: only new and changed items are rendered and hashed to be looked up (a profiler
        # pass over a million users otherwise renders a million prompts to answer eight).
        context = self._input_context(template) if self.cache is not None else None
        known = self.cache.input_keys(role, version, context) if context is not None else {}
        learned: list[tuple[str, str, str]] = []
        # In chunks, in input order (so the budget goes to the newest inputs as before): only
        # the requests that will be sent outlive their chunk, not one rendered prompt per user
        for first in range(0, len(inputs), LOOKUP_CHUNK):
            chunk = inputs[first : first + LOOKUP_CHUNK]
            self._look_up(template, chunk, max_new_tokens, rows, pending, known, learned)
        if context is not None and self.cache is not None:
            self.cache.keep_input_keys(role, version, context, learned)
        lookup_seconds = time.perf_counter() - start
        todo = list(pending.values())
        for first in range(0, len(todo), self.batch_size):
            batch = todo[first : first + self.batch_size]
            finished = self._answer(batch, role, counters)
            responses = [
                _response(role, version, model, p, result, checked)
                for p, (result, checked) in zip(batch, finished, strict=True)
            ]
            if self.cache is not None:
                self.cache.put(responses)  # at once: a crash later loses nothing finished
            for p, response in zip(batch, responses, strict=True):
                for key in p.keys:
                    rows[key] = _row_from_cache(key, response, cached=False)
            logger.info(
                "%s: %d/%d sent items finished", role, min(first + len(batch), len(todo)), len(todo)
            )
        ordered = [rows[item.key] for item in inputs]
        stats = _stats_of(ordered, time.perf_counter() - start)
        stats["sent"] = sum(len(p.keys) for p in todo)
        stats["rendered"] = len(learned)
        stats["lookup_seconds"] = round(lookup_seconds, 3)
        stats.update(counters)
        return RoleRunResult(role, version, model, ordered, stats)

    def _input_context(self, template: PromptTemplate) -> str:
        """Everything besides an item's fields that its prompt and input hash depend on: the
        template, schema, vocabularies, limits, domain and the code that renders and hashes."""
        schema = ""
        if self.constrained:
            self.schema(template.role)  # built once, with its canonical JSON
            schema = self._schema_json[template.role]
        parts = (
            repr(template),
            schema,
            repr(self.vocab),
            repr(self.limits),
            self.domain,
            repr(sorted(CONTEXT_VALUES)),
            _rendering_code_digest(),
        )
        return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()

    def _look_up(
        self,
        template: PromptTemplate,
        inputs: Sequence[RoleInput],
        max_new_tokens: int | None,
        rows: dict[str, RoleRow],
        pending: dict[str, _Pending],
        known: Mapping[str, tuple[str, str]],
        learned: list[tuple[str, str, str]],
    ) -> None:
        """Hash `inputs` (the kept input hash of an item whose fields did not change, else
        rendered; new ones into `learned`), then file each one: answered from the cache (into
        `rows`), joined to an identical pending prompt, sent (into `pending`, within the
        budget), or skipped by the budget (into `rows`)."""
        role, version, model = template.role, template.version, self.backend.model_name
        hashed: list[tuple[RoleInput, str, ChatRequest | None]] = []
        for item in inputs:
            digest = _fields_digest(item.fields)
            kept = known.get(item.key)
            if kept is not None and kept[0] == digest:
                hashed.append((item, kept[1], None))
                continue
            try:
                request = self.request_for(template, item, max_new_tokens)
            except ValueError as exc:
                rows[item.key] = RoleRow(item.key, "failed", None, f"invalid input: {exc}", False)
                continue
            learned.append((item.key, digest, request.key))
            hashed.append((item, request.key, request))
        cached = (
            self.cache.get(role, version, model, [k for _, k, _ in hashed]) if self.cache else {}
        )
        for item, key, request in hashed:
            hit = cached.get(key)
            if hit is not None and (hit.status == "ok" or not self.retry_failed):
                rows[item.key] = _row_from_cache(item.key, hit)
            elif key in pending:
                pending[key].keys.append(item.key)  # same prompt: answered once
            elif item.key in self.sent or self.budget is None or len(self.sent) < self.budget:
                if request is None:  # a kept input hash: render the prompt to send it
                    request = self.request_for(template, item, max_new_tokens)
                    if request.key != key:
                        raise RuntimeError(
                            f"{role} input {item.key!r}: its prompt hashes to {request.key}, "
                            f"not to the kept {key} of the same fields and context; delete "
                            f"the table {self.cache.input_keys_table if self.cache else ''} "
                            "to render every input again, and report this as a bug"
                        )
                self.sent.add(item.key)
                pending[key] = _Pending(request, [item.key])
            else:
                rows[item.key] = RoleRow(item.key, "skipped", None, None, False, input_hash=key)

    def _answer(
        self, batch: list[_Pending], role: str, counters: dict[str, float]
    ) -> list[tuple[LLMResult, Validated]]:
        """Generate, validate and retry invalid answers with the stricter reminder."""
        requests = [p.request for p in batch]
        results = self._generate(requests, counters)
        checked = [self._check(role, r) for r in results]
        merged = list(zip(results, checked, strict=True))
        for _ in range(self.validation_retries):
            # Retry answers that came back but were unusable; backend errors were already
            # retried by the backend.
            redo = [i for i, (res, chk) in enumerate(merged) if res.ok and chk.error is not None]
            if not redo:
                break
            retry_requests = [_stricter(requests[i], merged[i]) for i in redo]
            for i, result in zip(redo, self._generate(retry_requests, counters), strict=True):
                earlier, earlier_check = merged[i]
                check = self._check(role, result)
                if result.ok and check.error is None:
                    check.notes.insert(0, f"retried after: {earlier_check.error}")
                elif result.ok:
                    check.error = f"{check.error} (retry after: {earlier_check.error})"
                else:
                    # No text on retry: keep the first answer and both reasons.
                    result = LLMResult(
                        key=result.key,
                        text=None,
                        error=f"{earlier_check.error}; retry failed: {result.error}",
                        seconds=result.seconds,
                        attempts=result.attempts,
                    )
                    result.extra["raw_text"] = earlier.text
                    check = Validated(None, result.error, earlier_check.notes)
                merged[i] = (_combine(earlier, result), check)
        return merged

    def _generate(self, requests: list[ChatRequest], counters: dict[str, float]) -> list[LLMResult]:
        started = time.perf_counter()
        results = self.backend.generate(requests)
        counters["llm_seconds"] += time.perf_counter() - started
        check_aligned(requests, results, type(self.backend).__name__)
        counters["requests"] += len(requests)
        counters["prompt_tokens"] += sum(r.prompt_tokens or 0 for r in results)
        counters["completion_tokens"] += sum(r.completion_tokens or 0 for r in results)
        return results

    def _check(self, role: str, result: LLMResult) -> Validated:
        if not result.ok:
            return Validated(None, result.error)
        return validate_answer(role, result.text, self.vocab)


def _stricter(request: ChatRequest, answered: tuple[LLMResult, Validated]) -> ChatRequest:
    result, check = answered
    reminder = STRICT_REMINDER.format(reason=(check.error or "")[:200])
    messages = (
        *request.messages,
        {"role": "assistant", "content": (result.text or "")[:1000]},
        {"role": "user", "content": reminder},
    )
    return replace(request, messages=messages)


def _combine(first: LLMResult, second: LLMResult) -> LLMResult:
    """The retry's outcome with the costs of both tries."""
    add = lambda a, b: None if a is None and b is None else (a or 0) + (b or 0)  # noqa: E731
    combined = LLMResult(
        key=second.key,
        text=second.text,
        error=second.error,
        prompt_tokens=add(first.prompt_tokens, second.prompt_tokens),
        completion_tokens=add(first.completion_tokens, second.completion_tokens),
        seconds=first.seconds + second.seconds,
        attempts=first.attempts + second.attempts,
    )
    combined.extra.update(second.extra)
    return combined


def _response(
    role: str, version: str, model: str, p: _Pending, result: LLMResult, checked: Validated
) -> CachedResponse:
    ok = checked.error is None
    return CachedResponse(
        role=role,
        prompt_version=version,
        model=model,
        input_hash=p.request.key,
        item_key=p.keys[0],
        status="ok" if ok else "failed",
        raw_text=result.text if result.text is not None else result.extra.get("raw_text"),
        parsed=checked.output if ok else None,
        error=checked.error,
        notes=checked.notes,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        seconds=result.seconds,
        attempts=result.attempts,
    )


def _row_from_cache(key: str, hit: CachedResponse, cached: bool = True) -> RoleRow:
    return RoleRow(
        key=key,
        status=hit.status,
        output=hit.parsed,
        error=hit.error,
        cached=cached,
        input_hash=hit.input_hash,
        prompt_tokens=hit.prompt_tokens,
        completion_tokens=hit.completion_tokens,
        seconds=hit.seconds,
        attempts=hit.attempts,
        notes=list(hit.notes),
        raw_text=hit.raw_text,
    )


def _fields_digest(fields: Mapping[str, Any]) -> str:
    """A digest of an input's fields (text, lists and mappings of text: `repr` is exact)."""
    return hashlib.blake2b(repr(fields).encode(), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=1)
def _rendering_code_digest() -> str:
    """A digest of the modules that turn fields into a prompt and its hash: changed code never
    reuses input hashes kept by the code before it."""
    from genre_dagster.enrichment import prompts, roles, sanitize, schemas

    digest = hashlib.blake2b(digest_size=16)
    for module in (prompts, roles, sanitize, schemas):
        digest.update(Path(module.__file__).read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def _stats_of(rows: list[RoleRow], seconds: float) -> dict[str, float]:
    return {
        "answered": sum(r.status == "ok" and not r.cached for r in rows),
        "cached": sum(r.cached for r in rows),
        "failed": sum(r.status == "failed" for r in rows),
        "skipped_by_budget": sum(r.status == "skipped" for r in rows),
        "repaired": sum(r.status == "ok" and bool(r.notes) for r in rows),
        "seconds": round(seconds, 3),
    }
