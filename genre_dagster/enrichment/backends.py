"""The interface every LLM backend implements, and its request/result types.

A backend turns a list of chat requests into a list of results, one per request and in the same
order. A per-item failure is a result with an `error` (a reason), never an exception that loses
the rest of the batch, and never a missing result.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to produce.

    `key` is the input hash (cache key); `item_id` is the caller's id of the item or user, which
    lets a pre-computed backend match outputs released per item. `response_prefix` is the start
    of the answer (e.g. `{"title": "`): backends that can prefill the assistant turn continue
    from it and return prefix + continuation; others let the model write the whole answer.
    `json_object` says the caller reads only the first JSON object of the answer: a backend may
    stop generating once that object is closed (nothing after it would be read).
    `json_schema`: the JSON schema the answer must match; backends that can constrain decoding
    to it do (local: llguidance; OpenAI-compatible: `response_format`), others ignore it and
    the caller's validation decides.
    `avoid_copying`: texts the answer should not copy runs of words from (an item's own title
    when the answer is a new title, the prompt's instructions). A backend that controls
    decoding enforces it (local: a token that would complete a 4-token run of one of these
    texts is banned, while the schema allows another); others ignore it.
    """

    key: str
    messages: tuple[dict[str, str], ...]
    max_new_tokens: int = 256
    temperature: float = 0.0
    item_id: str | None = None
    response_prefix: str = ""
    json_object: bool = False
    json_schema: dict[str, Any] | None = field(default=None, hash=False, compare=False)
    avoid_copying: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError(f"ChatRequest {self.key!r}: messages must not be empty")
        for message in self.messages:
            if set(message) != {"role", "content"}:
                raise ValueError(
                    f"ChatRequest {self.key!r}: each message needs exactly 'role' and 'content', "
                    f"got keys {sorted(message)}"
                )
        if self.max_new_tokens < 1:
            raise ValueError(f"ChatRequest {self.key!r}: max_new_tokens must be >= 1")
        if self.temperature < 0:
            raise ValueError(f"ChatRequest {self.key!r}: temperature must be >= 0")


@dataclass
class LLMResult:
    """The answer to one request: `text`, or `error` (a reason) when there is no answer.

    Token counts are None when the backend cannot tell. `seconds` is this item's share of the
    wall time; `attempts` counts HTTP tries (or generation passes) made for it.
    """

    key: str
    text: str | None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    attempts: int = 1
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.text is None) == (self.error is None):
            raise ValueError(
                f"LLMResult {self.key!r}: exactly one of text and error must be set "
                f"(text={self.text is not None}, error={self.error!r})"
            )

    @property
    def ok(self) -> bool:
        """True when the backend produced text."""
        return self.error is None


class LLMBackend(ABC):
    """Turns chat requests into results; `model_name` names the model in the response cache."""

    @property
    @abstractmethod
    def model_name(self) -> str:
        """A stable name of the model (and quantization) that produced the answers."""

    @abstractmethod
    def generate(self, requests: list[ChatRequest]) -> list[LLMResult]:
        """Answer every request; the result list is aligned with `requests`."""


def check_aligned(requests: list[ChatRequest], results: list[LLMResult], backend: str) -> None:
    """Raise when a backend returned results that do not match its requests one to one."""
    if len(results) != len(requests) or any(
        req.key != res.key for req, res in zip(requests, results, strict=True)
    ):
        raise ValueError(
            f"{backend}: returned {len(results)} results for {len(requests)} requests "
            "or in a different order"
        )
