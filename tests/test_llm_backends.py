"""LLM backends: OpenAI-compatible HTTP (against a real loopback server), local transformers
(tiny model built from a config; the real SmolLM2 in a slow test) and pre-computed JSONL."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from fake_chat_server import FakeChatServer

from genre_dagster.enrichment.backends import ChatRequest, LLMResult
from genre_dagster.enrichment.openai_http import OpenAICompatibleBackend, _retry_after
from genre_dagster.enrichment.precomputed import PrecomputedBackend

os.environ["HF_HUB_OFFLINE"] = "1"
API_KEY = "sk-test-SECRET-0123456789"


def _request(item: str, key: str | None = None, max_new_tokens: int = 32) -> ChatRequest:
    return ChatRequest(
        key=key or f"hash-{item}",
        messages=(
            {"role": "system", "content": "Answer in JSON."},
            {"role": "user", "content": f"<item>\ntitle: {item}\n</item>"},
        ),
        max_new_tokens=max_new_tokens,
        item_id=item,
    )


def _http(server: FakeChatServer, **kwargs: object) -> OpenAICompatibleBackend:
    options = dict(api_key=API_KEY, timeout=0.5, max_retries=2, backoff_base=0.01, backoff_max=0.05)
    options.update(kwargs)
    return OpenAICompatibleBackend(server.base_url, "fake-model", **options)  # type: ignore[arg-type]


# --- request/result types ---------------------------------------------------------------------


def test_result_needs_exactly_text_or_error() -> None:
    assert LLMResult(key="k", text="x").ok
    assert not LLMResult(key="k", text=None, error="boom").ok
    with pytest.raises(ValueError, match="exactly one"):
        LLMResult(key="k", text=None)
    with pytest.raises(ValueError, match="exactly one"):
        LLMResult(key="k", text="x", error="y")
    with pytest.raises(ValueError, match="role"):
        ChatRequest(key="k", messages=({"content": "x"},))


# --- OpenAI-compatible HTTP -------------------------------------------------------------------


def test_http_backend_retries_transient_failures_and_keeps_order() -> None:
    script = {
        "a500": ["http500", "ok"],
        "a429": ["http429", "http429", "ok"],
        "slow": ["timeout", "ok"],
        "down": ["http500"],
        "bad4": ["http400"],
        "html": ["bad_body"],
    }
    items = ["fine", "a500", "a429", "slow", "down", "bad4", "html"]
    with FakeChatServer(script) as server:
        results = _http(server, max_concurrency=3).generate([_request(i) for i in items])
        counts = dict(server.requests)
    assert [r.key for r in results] == [f"hash-{i}" for i in items]
    by = dict(zip(items, results, strict=True))
    for item, attempts in (("fine", 1), ("a500", 2), ("a429", 3), ("slow", 2)):
        assert by[item].ok, by[item].error
        assert by[item].text == json.dumps({"title": f"Neutral report on {item}"})
        assert by[item].attempts == attempts == counts[item]
        assert (by[item].prompt_tokens, by[item].completion_tokens) == (20, 10)
    assert by["slow"].seconds >= 0.5  # the first try waited for the client timeout
    assert by["down"].error.startswith("gave up after 3 attempts: HTTP 500")
    assert counts["down"] == 3
    # Other 4xx and unusable bodies are final: one try, a reason.
    assert by["bad4"].error.startswith("HTTP 400 (not retried)") and counts["bad4"] == 1
    assert by["html"].error.startswith("malformed response body") and counts["html"] == 1


def test_http_backend_prefill_is_opt_in() -> None:
    prefix = '{"title": "'
    request = ChatRequest(
        key="k", messages=_request("fine").messages, response_prefix=prefix, item_id="fine"
    )
    with FakeChatServer() as server:
        plain = _http(server).generate([request])[0]
        filled = _http(server, prefill=True).generate([request])[0]
        last_roles = list(server.roles)
    expected = json.dumps({"title": "Neutral report on fine"})
    assert plain.text == expected and filled.text == expected
    assert last_roles == ["user", "assistant"]  # only the prefill request ends with the prefix


def test_http_backend_never_leaks_the_api_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with FakeChatServer({"e500": ["http500"], "e400": ["http400"]}) as server:
        backend = _http(server, max_retries=1)
        results = backend.generate([_request("e500"), _request("e400"), _request("fine")])
        sent = [headers.get("Authorization") for _, _, headers in server.log]
    assert sent and all(value == f"Bearer {API_KEY}" for value in sent)  # it was sent...
    # ...and the server echoed it back in error bodies, yet it appears nowhere on our side.
    assert "auth=Bearer ***" in results[0].error and "***" in results[1].error
    visible = [repr(backend), caplog.text] + [repr(r) for r in results]
    assert not any(API_KEY in text for text in visible)
    assert results[2].ok


def test_http_backend_connection_refused_is_a_result_not_an_exception() -> None:
    with FakeChatServer() as server:
        url = server.base_url
    backend = OpenAICompatibleBackend(url, "m", timeout=0.3, max_retries=1, backoff_base=0.01)
    (result,) = backend.generate([_request("x")])
    assert not result.ok and "connection error" in result.error and result.attempts == 2


def test_retry_after_header_forms() -> None:
    assert _retry_after("0") == 0.0
    assert _retry_after("2.5") == 2.5
    assert _retry_after(None) is None and _retry_after("soon") is None
    assert 0 <= _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0 + 1e-9  # a past date


# --- circuit breaker (OpenAI-compatible HTTP) -------------------------------------------------

CIRCUIT = "circuit open: "


def _many(n: int) -> list[ChatRequest]:
    return [_request(f"i{k:02d}") for k in range(n)]


def _assert_failed_fast(results: list[LLMResult], tries: int, n: int, breaker: int = 8) -> None:
    """All n requests failed; at most breaker + concurrency (4) tries were made, far below the
    n x 4 tries without a breaker, and every request that was not tried names the circuit."""
    assert len(results) == n and not any(r.ok for r in results)
    assert sum(r.attempts for r in results) == tries
    assert breaker <= tries <= breaker + 4
    untried = [r for r in results if r.attempts == 0]
    assert len(untried) >= n - (breaker + 4)
    assert all(r.error.startswith(CIRCUIT) for r in untried)
    assert all(r.error.endswith("backend treated as unavailable for this run") for r in untried)


def test_circuit_opens_on_a_server_that_always_answers_503(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with FakeChatServer(default_actions=["http503"]) as server:
        backend = _http(server, max_retries=3, max_concurrency=4)
        start = time.perf_counter()
        results = backend.generate(_many(40))
        elapsed = time.perf_counter() - start
        received = server.total_requests
        # The circuit stays open for later calls on the same instance: no HTTP at all.
        later = backend.generate(_many(5))
        assert server.total_requests == received
    _assert_failed_fast(results, received, 40)
    assert elapsed < 5.0, elapsed
    reason = next(r.error for r in results if r.attempts == 0)
    assert reason.startswith(CIRCUIT + "8 consecutive transient failures, last: HTTP 503")
    assert "auth=Bearer ***" in reason  # the server echoed the key; it is scrubbed
    assert all(r.error == reason and r.attempts == 0 for r in later)
    opened = [r for r in caplog.records if "circuit open" in r.getMessage()]
    assert len(opened) == 1 and opened[0].levelno == logging.WARNING  # once, not per request
    assert API_KEY not in caplog.text + "".join(r.error for r in results)


def test_circuit_opens_on_connection_refused() -> None:
    with FakeChatServer() as server:
        url = server.base_url
    backend = OpenAICompatibleBackend(
        url, "m", timeout=0.5, max_retries=3, backoff_base=0.01, backoff_max=0.05
    )
    start = time.perf_counter()
    results = backend.generate(_many(40))  # no exception
    elapsed = time.perf_counter() - start
    _assert_failed_fast(results, sum(r.attempts for r in results), 40)
    assert "connection error" in next(r.error for r in results if r.attempts == 0)
    assert elapsed < 5.0, elapsed


def test_circuit_opens_when_every_request_times_out() -> None:
    with FakeChatServer(default_actions=["timeout"], delay_seconds=1.0) as server:
        backend = _http(server, timeout=0.2, max_retries=3, max_concurrency=4)
        start = time.perf_counter()
        results = backend.generate(_many(40))
        elapsed = time.perf_counter() - start
        received = server.total_requests
    _assert_failed_fast(results, received, 40)
    assert "timeout after 0.2s" in next(r.error for r in results if r.attempts == 0)
    # Without the breaker: 40 x 4 tries x 0.2 s / 4 workers = 8 s; with it about 3 rounds.
    assert elapsed < 3.0, elapsed


def test_circuit_breaker_zero_disables_it() -> None:
    with FakeChatServer(default_actions=["http503"]) as server:
        backend = _http(server, max_retries=1, circuit_breaker_failures=0)
        results = backend.generate(_many(10))
        assert server.total_requests == 20  # every request used all its tries
    assert all(r.error.startswith("gave up after 2 attempts: HTTP 503") for r in results)
    with pytest.raises(ValueError, match="circuit_breaker_failures"):
        OpenAICompatibleBackend("http://127.0.0.1:9/v1", "m", circuit_breaker_failures=-1)


def test_failures_below_the_threshold_never_open_the_circuit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # Every item fails its first try: 30 transient failures, far more than the threshold (8),
    # but each worker alternates failure and success, so at most 4 (the workers) are ever
    # consecutive. With one worker and a threshold of 2 they are never consecutive at all.
    items = [f"i{k:02d}" for k in range(30)]
    for workers, breaker in ((4, 8), (1, 2)):
        with FakeChatServer({i: ["http500", "ok"] for i in items}) as server:
            backend = _http(server, max_concurrency=workers, circuit_breaker_failures=breaker)
            results = backend.generate([_request(i) for i in items])
            assert server.total_requests == 60
        assert all(r.ok and r.attempts == 2 for r in results), [r.error for r in results]
    assert "circuit" not in caplog.text


def test_circuit_half_open_probe_closes_or_reopens_it() -> None:
    now = [1000.0]  # an injected clock: no real waiting
    script = {f"d{k}": ["http503"] for k in range(8)}
    with FakeChatServer(script) as server:
        backend = _http(
            server,
            max_retries=0,
            max_concurrency=1,
            circuit_breaker_failures=3,
            circuit_open_seconds=60,
            clock=lambda: now[0],
        )
        down = backend.generate([_request(f"d{k}") for k in range(5)])
        assert [r.attempts for r in down] == [1, 1, 1, 0, 0] and server.total_requests == 3
        assert down[3].error.startswith(CIRCUIT + "3 consecutive transient failures")
        now[0] += 59  # still open: refused without HTTP
        (early,) = backend.generate([_request("up")])
        assert early.error.startswith(CIRCUIT) and server.requests["up"] == 0
        now[0] += 1  # half-open: one probe; it fails, so the circuit opens for another period
        probe, after = backend.generate([_request("d5"), _request("up")])
        assert probe.attempts == 1 and probe.error.startswith("gave up after 1 attempts: HTTP 503")
        assert after.error.startswith(CIRCUIT + "4 consecutive") and server.requests["up"] == 0
        now[0] += 30
        assert backend.generate([_request("up")])[0].error.startswith(CIRCUIT)
        now[0] += 30  # the probe succeeds: the circuit closes and everything flows again
        closed = backend.generate([_request(i) for i in ("up", "up2", "d6", "d7", "up3")])
        assert [r.ok for r in closed] == [True, True, False, False, True]
        assert [r.attempts for r in closed] == [1, 1, 1, 1, 1]  # 2 failures < 3: still closed
        assert {k: server.requests[k] for k in ("up", "up2", "up3", "d5")} == dict.fromkeys(
            ("up", "up2", "up3", "d5"), 1
        )


def test_llm_resource_passes_the_breaker_through() -> None:
    from genre_dagster.resources.llm import LLMResource

    with FakeChatServer(default_actions=["http503"]) as server:
        resource = LLMResource(
            backend="openai",
            base_url=server.base_url,
            model="m",
            max_retries=0,
            max_concurrency=1,
            circuit_breaker_failures=2,
        )
        results = resource.get_backend().generate(_many(6))
        assert server.total_requests == 2
    assert [r.attempts for r in results] == [1, 1, 0, 0, 0, 0]
    assert results[2].error.startswith(CIRCUIT + "2 consecutive")


# --- local transformers -----------------------------------------------------------------------

PROMPTS = ["hi", "news about sports and finance, with a longer prompt than the others", "x y z"]


def test_transformers_batched_equals_unbatched_greedy(tiny_llama) -> None:
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    model, tokenizer = tiny_llama
    requests = [_request(p, key=f"k{i}", max_new_tokens=12) for i, p in enumerate(PROMPTS)]
    single = TransformersBackend(model=model, tokenizer=tokenizer, batch_size=1)
    batched = TransformersBackend(model=model, tokenizer=tokenizer, batch_size=8)
    one = single.generate(requests)
    many = batched.generate(requests)
    assert [r.key for r in many] == ["k0", "k1", "k2"]
    assert [r.text for r in one] == [r.text for r in many]
    assert all(r.ok and 0 < r.completion_tokens <= 12 for r in many)
    assert tokenizer.padding_side == "left"
    # Prompt tokens are counted without padding, so they differ between prompts.
    assert len({r.prompt_tokens for r in many}) == 3
    # A response prefix is prefilled after the chat template and is part of the answer.
    prefixed = [
        ChatRequest(key=r.key, messages=r.messages, max_new_tokens=6, response_prefix='{"title"')
        for r in requests
    ]
    assert batched.render(prefixed[0]).endswith('<|im_start|>assistant\n{"title"')
    one_p, many_p = single.generate(prefixed), batched.generate(prefixed)
    assert [r.text for r in one_p] == [r.text for r in many_p]
    assert all(r.text.startswith('{"title"') and r.completion_tokens <= 6 for r in many_p)
    # A per-request limit is honoured inside a batch and is a prefix of the longer answer.
    short = batched.generate([_request(PROMPTS[1], key="s", max_new_tokens=3), requests[0]])
    assert short[0].completion_tokens <= 3
    assert many[1].text.startswith(short[0].text)


def test_transformers_stops_a_row_once_its_json_object_is_closed(tiny_llama) -> None:
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    model, tokenizer = tiny_llama
    backend = TransformersBackend(model=model, tokenizer=tokenizer, batch_size=8)
    base = _request(PROMPTS[1], max_new_tokens=10)
    closed = ChatRequest(
        key="closed",
        messages=base.messages,
        max_new_tokens=10,
        response_prefix='{"t": "x"}',
        json_object=True,
    )
    still_open = ChatRequest(
        key="open",
        messages=base.messages,
        max_new_tokens=10,
        response_prefix='{"t": "',
        json_object=True,
    )
    # The random model never closes the open object: that row runs to max_new_tokens while the
    # closed row stops after one token and is padded; the open row's answer is unchanged.
    stopped, running = backend.generate([closed, still_open])
    alone = backend.generate([still_open])[0]
    assert stopped.completion_tokens == 1 and stopped.text.startswith('{"t": "x"}')
    assert running.text == alone.text and running.completion_tokens == 10
    # Without json_object nothing stops early.
    free = ChatRequest(key="free", messages=base.messages, max_new_tokens=10,
                       response_prefix='{"t": "x"}')  # fmt: skip
    (unstopped,) = backend.generate([free])
    assert unstopped.completion_tokens == 10


def test_transformers_loads_lazily_from_a_folder(tiny_llama, tmp_path) -> None:
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    model, tokenizer = tiny_llama
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    backend = TransformersBackend(model_dir=tmp_path, num_threads=1, name="tiny")
    assert backend._model is None  # nothing loaded yet
    (result,) = backend.generate([_request("hi", max_new_tokens=5)])
    assert backend._model is not None and result.ok and backend.model_name == "tiny"
    reference = TransformersBackend(model=model, tokenizer=tokenizer)
    assert result.text == reference.generate([_request("hi", max_new_tokens=5)])[0].text


def test_transformers_batch_failure_becomes_per_item_errors(tiny_llama) -> None:
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    model, tokenizer = tiny_llama

    class Flaky:
        """Fails any batch that contains the poisoned prompt."""

        def __init__(self) -> None:
            self.poison = tokenizer("POISON", add_special_tokens=False).input_ids

        def generate(self, input_ids, **kwargs):
            for row in input_ids.tolist():
                text = tokenizer.decode(row)
                if "POISON" in text:
                    raise RuntimeError("simulated out of memory")
            return model.generate(input_ids=input_ids, **kwargs)

    backend = TransformersBackend(model=Flaky(), tokenizer=tokenizer, batch_size=4)
    results = backend.generate([_request(p, key=p, max_new_tokens=4) for p in ["a", "POISON", "b"]])
    assert [r.key for r in results] == ["a", "POISON", "b"]
    assert results[0].ok and results[2].ok
    assert results[1].error == "generation failed: RuntimeError: simulated out of memory"


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bfloat16"), (False, "float32")])
def test_transformers_auto_dtype_follows_the_cpu(monkeypatch, tmp_path, native_bf16, expected):
    from genre_dagster.embedding import devices
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: native_bf16)
    backend = TransformersBackend(model_dir=tmp_path, dtype="auto")  # nothing loads yet
    assert backend.dtype == expected
    # Answers of another dtype may differ: they are cached under another model name.
    assert backend.model_name.endswith("@bfloat16") == (expected == "bfloat16")
    with pytest.raises(ValueError, match="unsupported dtype"):
        TransformersBackend(model_dir=tmp_path, dtype="int4")


def test_transformers_needs_a_chat_template(tiny_llama) -> None:
    from genre_dagster.enrichment.local_transformers import TransformersBackend

    model, tokenizer = tiny_llama
    bare = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, eos_token="<|im_end|>")
    with pytest.raises(ValueError, match="chat template"):
        TransformersBackend(model=model, tokenizer=bare)


@pytest.mark.slow
def test_real_smollm2_generates_and_is_converted_once(tmp_path) -> None:
    from genre_dagster.enrichment.local_transformers import (
        TransformersBackend,
        default_smollm2_path,
    )

    folder, name = default_smollm2_path()
    assert (folder / name).is_file()
    backend = TransformersBackend(num_threads=2, batch_size=2, convert_cache=tmp_path)
    assert backend.model_name == f"transformers:{folder.name}/{name}"
    request = ChatRequest(
        key="k",
        messages=(
            {"role": "system", "content": "You answer with one JSON object."},
            {"role": "user", "content": 'Reply with {"title": "<a title about cats>"}'},
        ),
        max_new_tokens=8,
    )
    (result,) = backend.generate([request])
    assert result.ok and result.text.strip()
    assert 0 < result.completion_tokens <= 8 and result.prompt_tokens > 10
    assert backend.loaded_from.endswith(name)
    # The first load kept a regular model folder; the next process loads that instead of the
    # GGUF file, under the same cache name, and answers exactly the same.
    (converted,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (converted / "config.json").is_file() and not list(tmp_path.glob("*.partial-*"))
    again = TransformersBackend(num_threads=2, batch_size=2, convert_cache=tmp_path)
    (second,) = again.generate([request])
    assert again.loaded_from == str(converted) and again.model_name == backend.model_name
    assert second.text == result.text


# --- pre-computed JSONL -----------------------------------------------------------------------


def test_precomputed_backend_by_item_id(tmp_path) -> None:
    path = tmp_path / "genre_out.jsonl"
    lines = [
        {"id": "N1", "output": "A plain new title"},
        {"id": "N2", "output": {"title": "Already JSON"}},
        {"id": "N1", "output": "duplicate, ignored"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n", encoding="utf-8")
    backend = PrecomputedBackend([path], match_on="item_id", wrap_as="title", name="genre-gpt35")
    results = backend.generate([_request("N1"), _request("N2"), _request("N3")])
    assert json.loads(results[0].text) == {"title": "A plain new title"}
    assert json.loads(results[1].text) == {"title": "Already JSON"}
    assert results[2].error == "no precomputed output for item_id 'N3'"
    assert backend.duplicates == 1 and backend.model_name == "genre-gpt35"


def test_precomputed_backend_by_input_hash_and_custom_fields(tmp_path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text(json.dumps({"hash": "h1", "answer": '{"title": "x y z"}'}) + "\n")
    backend = PrecomputedBackend(
        [path], match_on="input_hash", key_field="hash", output_field="answer"
    )
    ok, missing = backend.generate([_request("a", key="h1"), _request("b", key="h2")])
    assert ok.text == '{"title": "x y z"}'
    assert missing.error == "no precomputed output for input_hash 'h2'"


def test_precomputed_backend_rejects_bad_lines_with_their_location(tmp_path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "N1", "text": "ok"}\n{"id": "N2", "text": \n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        PrecomputedBackend([path]).generate([_request("N1")])
    other = tmp_path / "nokey.jsonl"
    other.write_text('{"output": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"nokey.jsonl:1: no key field"):
        PrecomputedBackend([other]).generate([_request("N1")])
