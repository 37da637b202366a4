"""A backend that answers from pre-computed outputs in JSONL files (e.g. released by a paper).

Each line is a JSON object such as `{"id": "N123", "output": "..."}`. Outputs are matched either
by the item id the caller passes (`ChatRequest.item_id`) or by the input hash (`ChatRequest.key`).
A request without a matching line gets an error result, never a guess.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from genre_dagster.enrichment.backends import ChatRequest, LLMBackend, LLMResult

logger = logging.getLogger(__name__)

_KEY_FIELDS = ("key", "id")
_OUTPUT_FIELDS = ("output", "text")


class PrecomputedBackend(LLMBackend):
    """Looks answers up in JSONL files.

    Args:
        paths: JSONL files, read in order; the first line for a key wins (later duplicates are
            counted in `duplicates`).
        match_on: "item_id" (line key = the item/user id) or "input_hash" (line key = input hash).
        key_field, output_field: field names; default the first present of key/id and
            output/text.
        wrap_as: when set, an output that is plain text (not a JSON object) is wrapped as
            `{wrap_as: text}` (GENRE released summarizer titles as bare strings).
        name: the cache's model name.
    """

    def __init__(
        self,
        paths: Iterable[str | Path],
        match_on: Literal["item_id", "input_hash"] = "item_id",
        key_field: str | None = None,
        output_field: str | None = None,
        wrap_as: str | None = None,
        name: str = "precomputed",
    ) -> None:
        if match_on not in ("item_id", "input_hash"):
            raise ValueError("PrecomputedBackend: match_on must be item_id or input_hash")
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("PrecomputedBackend: no JSONL paths given")
        self.match_on = match_on
        self.key_field = key_field
        self.output_field = output_field
        self.wrap_as = wrap_as
        self._name = name
        self._outputs: dict[str, str] | None = None
        self.duplicates = 0

    @property
    def model_name(self) -> str:
        return self._name

    def load(self) -> dict[str, str]:
        """Read all files (once); returns key -> output text. Bad lines raise ValueError."""
        if self._outputs is not None:
            return self._outputs
        outputs: dict[str, str] = {}
        for path in self.paths:
            with path.open(encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    key, text = self._parse_line(line, path, number)
                    if key in outputs:
                        self.duplicates += 1
                        continue
                    outputs[key] = text
        logger.info(
            "precomputed outputs: %d keys from %d files (%d duplicates ignored)",
            len(outputs),
            len(self.paths),
            self.duplicates,
        )
        self._outputs = outputs
        return outputs

    def _parse_line(self, line: str, path: Path, number: int) -> tuple[str, str]:
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
        key_field = self.key_field or next((f for f in _KEY_FIELDS if f in record), None)
        out_field = self.output_field or next((f for f in _OUTPUT_FIELDS if f in record), None)
        if key_field is None or key_field not in record:
            raise ValueError(
                f"{where}: no key field ({self.key_field or ' or '.join(_KEY_FIELDS)})"
            )
        if out_field is None or out_field not in record:
            raise ValueError(
                f"{where}: no output field ({self.output_field or ' or '.join(_OUTPUT_FIELDS)})"
            )
        output = record[out_field]
        if isinstance(output, dict | list):
            text = json.dumps(output, ensure_ascii=False)
        elif isinstance(output, str):
            text = output
            if self.wrap_as and not output.lstrip().startswith("{"):
                text = json.dumps({self.wrap_as: output}, ensure_ascii=False)
        else:
            raise ValueError(f"{where}: output must be text or JSON, got {type(output).__name__}")
        return str(record[key_field]), text

    def generate(self, requests: list[ChatRequest]) -> list[LLMResult]:
        """One result per request: the stored output, or an error naming the missing key."""
        outputs = self.load()
        results = []
        for request in requests:
            key = request.item_id if self.match_on == "item_id" else request.key
            if key is None:
                results.append(
                    LLMResult(key=request.key, text=None, error="request has no item_id to match")
                )
            elif key in outputs:
                results.append(LLMResult(key=request.key, text=outputs[key], attempts=1))
            else:
                results.append(
                    LLMResult(
                        key=request.key,
                        text=None,
                        error=f"no precomputed output for {self.match_on} {key!r}",
                    )
                )
        return results
