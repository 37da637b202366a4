"""A backend for any OpenAI-compatible chat server (vLLM, llama.cpp server, Ollama, hosted APIs).

Requests run concurrently in a thread pool. Transient failures (429, 5xx, timeouts, connection
errors) are retried with exponential backoff and jitter, honouring Retry-After; other 4xx answers
are final. The API key is sent as a bearer token and scrubbed from every error text and log line.

A circuit breaker, shared by all requests of one backend instance, stops a dead server from
costing every item all its retries: after `circuit_breaker_failures` consecutive transient
failures the circuit opens and every request still waiting fails at once (a normal error result,
no HTTP), for the rest of that call and later calls, until `circuit_open_seconds` have passed;
then one probe try is let through, whose success closes the circuit.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from genre_dagster.enrichment.backends import ChatRequest, LLMBackend, LLMResult

logger = logging.getLogger(__name__)

_BODY_SNIPPET = 200  # characters of an error body kept in the reason


class _Retryable(Exception):
    """A transient failure; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Final(Exception):
    """A failure that another try would not fix."""


class _FormatRejected(Exception):
    """HTTP 400 about the `response_format` sent: the server does not take that form."""


# How a request's JSON schema is sent, strongest first; a server that rejects one form gets
# the next (remembered for the rest of the backend's life).
STRUCTURED_MODES = ("json_schema", "json_object", "off")
_FORMAT_WORDS = ("response_format", "json_schema", "json_object", "structured", "guided")


class OpenAICompatibleBackend(LLMBackend):
    """POSTs `{base_url}/chat/completions` for each request.

    Args:
        base_url: server root including the API prefix, e.g. `http://127.0.0.1:8000/v1`.
        model: model name sent to the server (and used as the cache's model name).
        api_key: bearer token value (the caller reads it from the environment); may be None.
        timeout: seconds per HTTP try.
        max_concurrency: requests in flight at once.
        max_retries: extra tries after the first for transient failures.
        backoff_base, backoff_max: backoff is min(max, base * 2**(try-1)) times a jitter in
            [0.5, 1]; a Retry-After header replaces it (capped at backoff_max).
        extra_body: more JSON fields for every request (e.g. `{"response_format": ...}`).
        prefill: send a request's response prefix as a final assistant message and return
            prefix + continuation (llama.cpp server, Ollama; vLLM also needs
            `continue_final_message` in extra_body). Off: the model writes the whole answer.
        circuit_breaker_failures: consecutive transient failures (each failed try counts; any
            success resets the count) that open the circuit; 0 disables the breaker. While
            open, requests that have not started a try fail at once with an error starting
            `circuit open:`; tries already in flight finish normally.
        circuit_open_seconds: how long the circuit stays open (across `generate` calls on this
            instance) before one probe try is allowed; its success closes the circuit, its
            transient failure opens it for another period.
        structured_output: how a request's JSON schema is sent: "json_schema" (`response_format`
            with the schema, strict, as OpenAI, vLLM, SGLang, llama.cpp's server and Ollama
            take it), "json_object" (JSON mode, no schema), "off" (prompt only). A server that
            answers HTTP 400 about the format gets the next form at once, and the backend keeps
            that form from then on (`structured_mode`, `structured_fallbacks`).
        sleep: backoff wait (a test hook). None: a wait that ends early when the circuit opens.
        clock: monotonic seconds for the breaker (a test hook).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_concurrency: int = 4,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        extra_body: dict[str, Any] | None = None,
        prefill: bool = False,
        circuit_breaker_failures: int = 8,
        circuit_open_seconds: float = 300.0,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        structured_output: str = "json_schema",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"OpenAICompatibleBackend: base_url must be http(s), got {base_url!r}")
        if max_concurrency < 1 or max_retries < 0 or timeout <= 0:
            raise ValueError(
                "OpenAICompatibleBackend: need max_concurrency >= 1, max_retries >= 0, timeout > 0"
            )
        if api_key and not (api_key.isascii() and api_key.isprintable() and " " not in api_key):
            # Checked here so an unusable key never reaches an HTTP library's error message.
            raise ValueError("OpenAICompatibleBackend: api_key must be printable ASCII, no spaces")
        if circuit_breaker_failures < 0 or circuit_open_seconds < 0:
            raise ValueError(
                "OpenAICompatibleBackend: need circuit_breaker_failures >= 0 (0 disables) and "
                f"circuit_open_seconds >= 0, got {circuit_breaker_failures}, {circuit_open_seconds}"
            )
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key or None
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.extra_body = dict(extra_body or {})
        self.prefill = prefill
        self._sleep = sleep
        self._breaker = _CircuitBreaker(circuit_breaker_failures, circuit_open_seconds, clock)
        if structured_output not in STRUCTURED_MODES:
            raise ValueError(
                f"OpenAICompatibleBackend: structured_output must be one of {STRUCTURED_MODES}, "
                f"got {structured_output!r}"
            )
        self.structured_mode = structured_output
        self.structured_fallbacks: list[str] = []  # one line per downgrade, for metadata
        self._mode_lock = threading.Lock()

    def __repr__(self) -> str:  # never show the key
        return f"OpenAICompatibleBackend(base_url={self.base_url!r}, model={self.model!r})"

    @property
    def model_name(self) -> str:
        return self.model

    def generate(self, requests: list[ChatRequest]) -> list[LLMResult]:
        """Send all requests (concurrently); one result per request, in order.

        Never raises for a per-request failure: an unreachable server gives error results
        (`gave up after N attempts: ...` for tried requests, `circuit open: ...` for the rest).
        """
        import httpx

        if not requests:
            return []
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        with httpx.Client(timeout=self.timeout, headers=headers) as client:
            workers = min(self.max_concurrency, len(requests))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(lambda r: self._one(client, r), requests))

    def _scrub(self, text: str) -> str:
        """Remove the API key from any text that leaves this object."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text

    def _one(self, client: Any, request: ChatRequest) -> LLMResult:
        start = time.perf_counter()
        attempts = 0
        reason = ""
        while attempts <= self.max_retries:
            refused = self._breaker.admit()
            if refused is not None:  # logged once when the circuit opened, not per request
                return _failed(request, refused, start, attempts)
            attempts += 1
            mode = self.structured_mode
            try:
                text, usage = self._post(client, request, mode)
            except _FormatRejected as exc:
                self._breaker.no_verdict()
                self._downgrade(mode, self._scrub(str(exc)))
                attempts -= 1  # the server answered; the request is sent again in the next form
                continue
            except _Retryable as exc:
                reason = self._scrub(exc.reason)
                self._breaker.failure(reason)
                if attempts > self.max_retries:
                    break
                if self._breaker.is_open:
                    continue  # no backoff: the next admit() decides (normally a refusal)
                delay = self._delay(attempts, exc.retry_after)
                logger.warning(
                    "request %s: %s; retry %d/%d in %.2fs",
                    request.key[:12],
                    reason,
                    attempts,
                    self.max_retries,
                    delay,
                )
                self._wait(delay)
                continue
            except _Final as exc:
                self._breaker.no_verdict()
                reason = self._scrub(str(exc))
                logger.warning("request %s failed: %s", request.key[:12], reason)
                return _failed(request, reason, start, attempts)
            except BaseException:
                self._breaker.no_verdict()  # an unexpected error must not keep the probe's turn
                raise
            self._breaker.success()
            return LLMResult(
                key=request.key,
                text=text,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
                seconds=time.perf_counter() - start,
                attempts=attempts,
            )
        error = f"gave up after {attempts} attempts: {reason}"
        logger.warning("request %s: %s", request.key[:12], error)
        return _failed(request, error, start, attempts)

    def _downgrade(self, rejected: str, reason: str) -> None:
        """The server refused `rejected`: use the next structured-output form from now on."""
        with self._mode_lock:
            if self.structured_mode != rejected or rejected == "off":
                return  # another thread already moved on
            self.structured_mode = STRUCTURED_MODES[STRUCTURED_MODES.index(rejected) + 1]
            line = f"{rejected} -> {self.structured_mode}: {reason}"
            self.structured_fallbacks.append(line)
        logger.warning("server rejected response_format %s; using %s from now on (%s)",
                       rejected, self.structured_mode, reason)  # fmt: skip

    def _post(
        self, client: Any, request: ChatRequest, mode: str = "off"
    ) -> tuple[str, dict[str, int]]:
        """One HTTP try: the answer text and usage, or _Retryable / _Final / _FormatRejected."""
        import httpx

        messages = [dict(m) for m in request.messages]
        prefix = request.response_prefix if self.prefill else ""
        if prefix:
            messages.append({"role": "assistant", "content": prefix})
        body: dict[str, Any] = {
            **self.extra_body,
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
        }
        response_format = _response_format(request, mode)
        if response_format is not None:
            body["response_format"] = response_format
        try:
            response = client.post(f"{self.base_url}/chat/completions", json=body)
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout after {self.timeout}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection error ({type(exc).__name__}: {exc})") from None
        except httpx.HTTPError as exc:  # e.g. too many redirects, decoding: not transient
            raise _Final(f"HTTP client error ({type(exc).__name__}: {exc})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(
                f"HTTP {status}: {_snippet(response.text)}",
                _retry_after(response.headers.get("Retry-After")),
            )
        if status == 400 and response_format is not None and _about_format(response.text):
            raise _FormatRejected(f"HTTP 400: {_snippet(response.text)}")
        if status >= 400:
            raise _Final(f"HTTP {status} (not retried): {_snippet(response.text)}")
        try:
            payload = response.json()
            content = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise _Final(
                f"malformed response body ({type(exc).__name__}): {_snippet(response.text)}"
            ) from None
        if not isinstance(content, str):
            raise _Final(f"response has no text content (got {type(content).__name__})")
        usage = payload.get("usage") or {}
        tokens = {
            k: int(usage[k])
            for k in ("prompt_tokens", "completion_tokens")
            if isinstance(usage.get(k), int | float)
        }
        return prefix + content, tokens

    def _wait(self, delay: float) -> None:
        """Back off; the default wait wakes up early when the circuit opens meanwhile."""
        if self._sleep is not None:
            self._sleep(delay)
        else:
            self._breaker.opened.wait(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.backoff_max)
        base = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return base * random.uniform(0.5, 1.0)


class _CircuitBreaker:
    """Consecutive transient failures of one backend instance, shared by its worker threads.

    Closed: tries go ahead and failures are counted. Open (after `threshold` in a row): every
    `admit()` is refused with the reason, until `open_seconds` have passed; then the first
    `admit()` becomes the probe (half-open) and the others are still refused. The probe's
    success closes the circuit, its transient failure opens it again. A threshold of 0 disables
    the breaker.
    """

    def __init__(self, threshold: int, open_seconds: float, clock: Callable[[], float]) -> None:
        self.threshold = threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._reason = ""
        self._probe: int | None = None  # thread id of the try let through while half-open
        self.opened = threading.Event()  # set while open: wakes requests sleeping in backoff

    @property
    def is_open(self) -> bool:
        """True while open or half-open."""
        return self._opened_at is not None

    def admit(self) -> str | None:
        """None when a try may go ahead; otherwise the error text for the refused request."""
        with self._lock:
            if self._opened_at is None:
                return None
            if self._probe is None and self._clock() - self._opened_at >= self.open_seconds:
                self._probe = threading.get_ident()
                logger.info("circuit half-open: one probe request after %.0fs", self.open_seconds)
                return None
            return self._reason

    def success(self) -> None:
        """A try got an answer: the count restarts and an open circuit closes."""
        with self._lock:
            self._failures = 0
            if self._opened_at is not None:
                logger.info("circuit closed: the server answered again")
            self._opened_at = None
            self._probe = None
            self.opened.clear()

    def no_verdict(self) -> None:
        """A try ended without telling whether the server is up (a final 4xx, a bad body, an
        unexpected error): not counted, but a probe's turn is over."""
        with self._lock:
            if self._probe == threading.get_ident():
                self._probe = None

    def failure(self, reason: str) -> None:
        """A transient failure (`reason` already scrubbed); may open the circuit."""
        if self.threshold == 0:
            return
        with self._lock:
            self._failures += 1
            probe_failed = self._probe == threading.get_ident()
            if probe_failed or (self._opened_at is None and self._failures >= self.threshold):
                self._open(reason, probe_failed)

    def _open(self, reason: str, probe_failed: bool) -> None:
        """Open (or re-open) the circuit; the caller holds the lock."""
        self._opened_at = self._clock()
        self._probe = None
        self._reason = (
            f"circuit open: {self._failures} consecutive transient failures, last: {reason}; "
            "backend treated as unavailable for this run"
        )
        self.opened.set()
        logger.warning(
            "%s%s (requests fail at once for %.0fs, then one probe)",
            "probe failed, " if probe_failed else "",
            self._reason,
            self.open_seconds,
        )


def _response_format(request: ChatRequest, mode: str) -> dict[str, Any] | None:
    """The `response_format` of a request under `mode` (None: send none)."""
    if request.json_schema is None or mode == "off":
        return None
    if mode == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": request.json_schema, "strict": True},
    }


def _about_format(body: str) -> bool:
    """Whether an HTTP 400 body names the structured-output request (not the prompt)."""
    text = body.lower()
    return any(word in text for word in _FORMAT_WORDS)


def _failed(request: ChatRequest, error: str, start: float, attempts: int) -> LLMResult:
    return LLMResult(
        key=request.key,
        text=None,
        error=error,
        seconds=time.perf_counter() - start,
        attempts=attempts,
    )


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text[:_BODY_SNIPPET] + ("..." if len(text) > _BODY_SNIPPET else "")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
