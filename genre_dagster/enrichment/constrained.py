"""Schema-constrained decoding for local transformers models, with llguidance.

Each row of a batch gets a matcher compiled from its request's JSON schema. Before every
decoding step the matcher's token mask sets the logits of tokens the schema does not allow to
-inf, so the answer is valid JSON of that schema by construction (closed vocabularies as
`enum`, list and string lengths included), whatever the model would have preferred. After the
answer is complete only the end-of-sequence token is allowed.

llguidance was chosen after `benchmarks/structured_engines.py` (a Rust wheel with no
dependencies, no native build, microseconds per mask); see docs/benchmarks.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import Any

# Per HF tokenizer object: the llguidance tokenizer and vocabulary tables (each reads the whole
# vocabulary, ~1 s), keyed by (kind, id) and kept with the tokenizer to detect a reused id.
_TOKENIZERS: dict[tuple[str, int], tuple[Any, Any]] = {}
_LOCK = threading.Lock()

# Compact JSON: a flexible-whitespace grammar lets a small model pad answers with newlines.
_COMPILE_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


def _per_tokenizer(kind: str, tokenizer: Any, build: Any) -> Any:
    """`build()` once per (kind, tokenizer object): vocabulary-wide tables take a second."""
    key = (kind, id(tokenizer))
    with _LOCK:
        cached = _TOKENIZERS.get(key)
        if cached is not None and cached[0] is tokenizer:
            return cached[1]
    value = build()
    with _LOCK:
        _TOKENIZERS[key] = (tokenizer, value)
    return value


def _token_texts(tokenizer: Any, n_vocab: int) -> list[str]:
    return tokenizer.batch_decode([[i] for i in range(min(n_vocab, len(tokenizer)))])


def closing_tokens(tokenizer: Any, n_vocab: int) -> Any:
    """A boolean mask over the vocabulary: tokens whose text holds a `"`, `]` or `}` and no
    backslash (they can end a JSON string, list or object). Built once per tokenizer."""
    import numpy as np

    def build() -> Any:
        texts = _token_texts(tokenizer, n_vocab)
        mask = np.zeros(n_vocab, dtype=bool)
        # a backslash would make the quote an escape inside the string, not its end
        mask[: len(texts)] = [any(c in t for c in '"]}') and "\\" not in t for t in texts]
        return mask

    return _per_tokenizer("closers", tokenizer, build)


def spelling_classes(tokenizer: Any, n_vocab: int) -> tuple[Any, dict[int, Any]]:
    """Each token's class (tokens whose text is the same once lower-cased and stripped of
    spaces share one: "Million", " million", "MILLION"), and each class's tokens. Built once
    per tokenizer."""
    import numpy as np

    def build() -> tuple[Any, dict[int, Any]]:
        ids: dict[str, int] = {}
        classes = np.arange(n_vocab, dtype=np.int64) + n_vocab  # tokens without text: own
        for token, text in enumerate(_token_texts(tokenizer, n_vocab)):
            classes[token] = ids.setdefault(text.strip().lower() or text, len(ids))
        order = np.argsort(classes, kind="stable")
        bounds = np.flatnonzero(np.diff(classes[order])) + 1
        return classes, {int(classes[g[0]]): g for g in np.split(order, bounds)}

    return _per_tokenizer("classes", tokenizer, build)


def ll_tokenizer(tokenizer: Any, n_vocab: int) -> Any:
    """The llguidance tokenizer for a Hugging Face fast tokenizer (built once, cached)."""
    import llguidance.hf

    return _per_tokenizer(
        "llguidance", tokenizer, lambda: llguidance.hf.from_tokenizer(tokenizer, n_vocab=n_vocab)
    )


def grammar_for(schema: dict[str, Any]) -> str:
    """The llguidance grammar of a JSON schema; ValueError names what the engine rejects."""
    import llguidance

    grammar = llguidance.LLMatcher.grammar_from_json_schema(
        json.dumps(schema), overrides=_COMPILE_OPTIONS
    )
    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise ValueError(f"the JSON schema cannot be compiled for constrained decoding: {messages}")
    return grammar


class SchemaLogitsProcessor:
    """A transformers logits processor that keeps each row inside its JSON schema.

    Args:
        tokenizer: the model's (fast) tokenizer.
        n_vocab: the width of the model's logits (may exceed the tokenizer's vocabulary).
        schemas: one JSON schema per batch row (None leaves a row unconstrained).
        prompt_len: the padded prompt length of the batch (tokens after it are generated).
        prefixes: token ids already written into each row's answer (a prefilled response
            prefix); the matcher consumes them first.
        no_repeat_ngram: ban a token that would repeat an n-gram of this answer (not of the
            prompt, so copying facts from the item stays possible), as long as the schema still
            allows another token; 0 disables. Small greedy models otherwise loop ("a new story
            about a new story ...") until the length cap.
        copy_sources: per row, token sequences the answer must not copy runs of: a token
            that would complete a `no_copy_ngram`-token window of one of them is banned while
            the schema allows another token (the item's own title for a new title, the
            prompt's instructions, which a small model otherwise recites as its answer).
        budgets: each row's token budget (max_new_tokens). In its last `closing_reserve`
            tokens a row may only close what is open wherever the schema allows a closing
            token, so the answer ends as valid JSON instead of being cut off (text in a script
            that takes a token per character would otherwise outrun a budget sized in
            characters).
    """

    def __init__(
        self,
        tokenizer: Any,
        n_vocab: int,
        schemas: Sequence[dict[str, Any] | None],
        prompt_len: int,
        prefixes: Sequence[Sequence[int]] = (),
        no_repeat_ngram: int = 4,
        budgets: Sequence[int] = (),
        closing_reserve: int = 32,
        copy_sources: Sequence[Sequence[Sequence[int]]] = (),
        no_copy_ngram: int = 4,
    ) -> None:
        import llguidance

        self.n_vocab = n_vocab
        self.prompt_len = prompt_len
        self.eos_token_id = tokenizer.eos_token_id
        # generate() pads a row that finished (eos, or a stopping criterion) with pad tokens
        self.end_tokens = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
        lltok = ll_tokenizer(tokenizer, n_vocab)
        grammars: dict[str, str] = {}
        self.matchers: list[Any] = []
        for row, schema in enumerate(schemas):
            if schema is None:
                self.matchers.append(None)
                continue
            text = json.dumps(schema, sort_keys=True)
            if text not in grammars:
                grammars[text] = grammar_for(schema)
            matcher = llguidance.LLMatcher(lltok, grammars[text], log_level=0)
            prefix = list(prefixes[row]) if row < len(prefixes) else []
            if prefix and not matcher.consume_tokens(prefix):
                raise ValueError(
                    f"the response prefix of row {row} does not fit its schema: "
                    f"{matcher.get_error()}"
                )
            self.matchers.append(matcher)
        self.finished = [False] * len(self.matchers)
        self.generated: list[list[int]] = [[] for _ in self.matchers]
        self.no_repeat_ngram = no_repeat_ngram
        self.mask_calls = 0
        self.repeats_banned = 0
        self.seconds = 0.0  # time spent in this processor (the cost of the constraint)
        self.budgets = list(budgets)
        self.closing_reserve = closing_reserve
        self.closers = closing_tokens(tokenizer, n_vocab) if self.budgets else None
        self.closed_early = 0
        self.no_copy_ngram = no_copy_ngram
        self.classes, self.class_members = (
            spelling_classes(tokenizer, n_vocab) if any(copy_sources) else (None, {})
        )
        self.copy_next = [
            _next_classes(
                [self.classes[list(t)] for t in copy_sources[row]]
                if row < len(copy_sources) and copy_sources[row]
                else [],
                no_copy_ngram,
            )
            for row in range(len(self.matchers))
        ]
        self.copies_banned = 0

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import time

        started = time.perf_counter()
        try:
            return self._constrain(input_ids, scores)
        finally:
            self.seconds += time.perf_counter() - started

    def _constrain(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np
        import torch

        step = input_ids.shape[1] - self.prompt_len
        words = (self.n_vocab + 31) // 32
        bitmask = np.zeros((len(self.matchers), words), dtype=np.int32)
        constrained = np.zeros(len(self.matchers), dtype=bool)
        for row, matcher in enumerate(self.matchers):
            if matcher is None:
                continue
            constrained[row] = True
            if step > 0 and not self.finished[row]:
                token = int(input_ids[row, -1])
                if token in self.end_tokens:
                    self.finished[row] = True
                elif not matcher.consume_token(token):
                    raise RuntimeError(f"constrained decoding lost track: {matcher.get_error()}")
                else:
                    self.generated[row].append(token)
            if self.finished[row] or matcher.is_stopped():
                bitmask[row, self.eos_token_id // 32] = np.int32(
                    np.uint32(1 << (self.eos_token_id % 32)).view(np.int32)
                )
                continue
            matcher.unsafe_compute_mask_ptr(
                bitmask[row].ctypes.data, bitmask[row].size * bitmask.itemsize
            )
            self.mask_calls += 1
        if not constrained.any():
            return scores
        allowed_np = np.unpackbits(bitmask.view(np.uint8), axis=1, bitorder="little")
        allowed_np = allowed_np[:, : scores.shape[1]].astype(bool)
        for row in range(len(self.matchers)):
            if constrained[row] and not self.finished[row]:
                self._ban_repeats(row, allowed_np[row])
                self._ban_copies(row, allowed_np[row])
                if row < len(self.budgets) and self.budgets[row] - step <= self.closing_reserve:
                    self._prefer_closing(allowed_np[row])
        allowed = torch.from_numpy(allowed_np)
        allowed[~torch.from_numpy(constrained)] = True
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))

    def _prefer_closing(self, allowed: Any) -> None:
        """Near the end of the budget: only closing tokens, where the schema allows one."""
        closing = allowed & self.closers[: allowed.size]
        if closing.any():
            allowed &= closing
            self.closed_early += 1

    def _ban_repeats(self, row: int, allowed: Any) -> None:
        """Clear the tokens that would repeat an n-gram of this row's answer, unless that
        would leave no token at all."""
        n, seen = self.no_repeat_ngram, self.generated[row]
        if n < 2 or len(seen) < n:
            return
        tail = seen[len(seen) - n + 1 :]
        banned = [
            seen[i + n - 1]
            for i in range(len(seen) - n + 1)
            if seen[i : i + n - 1] == tail and allowed[seen[i + n - 1]]
        ]
        if banned and _clear_unless_empty(allowed, banned):
            self.repeats_banned += 1

    def _ban_copies(self, row: int, allowed: Any) -> None:
        """Clear the tokens that would complete a run copied from one of this row's copy
        sources (compared by spelling class, so a change of case or spacing is still a copy),
        unless that would leave no token at all."""
        import numpy as np

        n, seen, table = self.no_copy_ngram, self.generated[row], self.copy_next[row]
        if not table or len(seen) < n - 1:
            return
        following = table.get(tuple(int(c) for c in self.classes[seen[len(seen) - n + 1 :]]))
        if not following:
            return
        banned = np.concatenate([self.class_members[c] for c in following])
        banned = banned[banned < allowed.size]
        banned = banned[allowed[banned]]
        if banned.size and _clear_unless_empty(allowed, banned):
            self.copies_banned += 1


def _clear_unless_empty(allowed: Any, banned: Any) -> bool:
    """Clear `banned` in the mask `allowed`, unless no token would be left; whether it did."""
    keep = allowed.copy()
    keep[banned] = False
    if not keep.any():
        return False
    allowed[banned] = False
    return True


def _next_classes(sources: Sequence[Any], n: int) -> dict[tuple[int, ...], set[int]]:
    """For every (n-1)-class window of the sources, the classes that follow it there."""
    table: dict[tuple[int, ...], set[int]] = {}
    if n < 2:
        return table
    for classes in sources:
        seq = [int(c) for c in classes]
        for i in range(len(seq) - n + 1):
            table.setdefault(tuple(seq[i : i + n - 1]), set()).add(seq[i + n - 1])
    return table
