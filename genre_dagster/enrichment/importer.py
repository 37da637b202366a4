"""Importing LLM answers produced elsewhere into the response cache, per role, with provenance.

For each line of each file (`answer_files`): find the item or user it answers (item ids as
they are; raw user ids, or `uid` lines of a user-id vocabulary file, pseudonymized with the
deployment's key, never stored raw; Batch answers through the exported request's custom id),
check that the item or user exists, validate the answer under the role's schema and vocabulary,
and store it in `enrichment.llm_responses` under the role, the prompt version
`imported:<name>` and the model that wrote it, with its file and line in
`enrichment.llm_imports`. Every line not taken is kept in `enrichment.llm_import_rejects` with
its reason. The next materialization of the enrichment assets publishes the imported answers.

Importing the same file again adds nothing (identical answers already stored are counted as
`already_imported`); a corrected file under the same import name replaces its answers.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genre_dagster.enrichment.answer_files import FileLine, detect_format, read_lines
from genre_dagster.enrichment.cache import IMPORTED_PREFIX, CachedResponse, ResponseCache
from genre_dagster.enrichment.import_store import ImportStore, Provenance, Reject
from genre_dagster.enrichment.roles import ROLES
from genre_dagster.enrichment.schemas import Validated, VocabularyConfig, validate_answer

RAW_LINE_MAX_CHARS = 2000
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def import_name(path: str | Path, name: str | None = None) -> str:
    """The name of an import (`imported:<name>` in the cache): `name`, else the file's stem."""
    value = _NAME.sub("-", (name or Path(path).stem).strip()).strip("-")
    if not value:
        raise ValueError(f"no usable import name from {name or path!r}")
    return value


def imported_hash(role: str, item_key: str, prompt_hash: str | None) -> str:
    """The cache key of an imported answer: one per role, item and (Batch) prompt."""
    return hashlib.sha256(f"{role}\0{item_key}\0{prompt_hash or ''}".encode()).hexdigest()


@dataclass
class ImportReport:
    """What one import did. Lines: read = imported + already_imported + rejected + duplicates."""

    name: str
    role: str
    files: list[str]
    formats: list[str]
    lines_read: int = 0
    imported: int = 0
    already_imported: int = 0
    duplicates: int = 0
    rejected: Counter = field(default_factory=Counter)
    answers_written: int = 0  # cache rows (a Batch request may answer several items)
    models: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "files": self.files,
            "formats": self.formats,
            "lines_read": self.lines_read,
            "imported": self.imported,
            "already_imported": self.already_imported,
            "duplicates": self.duplicates,
            "rejected": dict(sorted(self.rejected.items())),
            "answers_written": self.answers_written,
            "models": dict(self.models),
            "seconds": round(self.seconds, 2),
        }

    def text(self) -> str:
        """A few lines for a terminal."""
        lines = [
            f"import {self.name} ({self.role}): {self.lines_read} lines read from "
            f"{len(self.files)} file(s) [{', '.join(sorted(set(self.formats)))}]",
            f"  imported: {self.imported} ({self.answers_written} answers written)",
            f"  already imported: {self.already_imported}",
            f"  duplicates: {self.duplicates}",
            f"  rejected: {self.rejected_total}",
        ]
        lines += [f"    {reason}: {n}" for reason, n in sorted(self.rejected.items())]
        if self.rejected_total or self.duplicates:
            lines.append(f"  rejected lines: table enrichment.llm_import_rejects ({self.name})")
        return "\n".join(lines)


@dataclass
class ImportRequest:
    """What to import and how to read it (the CLI flags / the job's config)."""

    paths: Sequence[str | Path]
    role: str
    model: str | None = None
    name: str | None = None
    fmt: str = "auto"
    user_vocab: str | Path | None = None
    key_field: str | None = None
    output_field: str | None = None
    wrap_as: str | None = None


@dataclass
class _Answer:
    role: str
    item_keys: tuple[str, ...]
    checked: Validated
    text: str | None
    line: FileLine
    path: Path
    fmt: str
    prompt_hash: str | None = None
    custom_id: str | None = None


class Importer:
    """Imports answer files for one deployment.

    Args:
        database: the DuckDB file (response cache and feature tables).
        vocabularies: role -> the VocabularyConfig its answers must match.
        known_keys: role -> the item ids or pseudonymized user ids that exist.
        pseudonymize: raw user ids -> pseudonyms (the deployment's key).
    """

    def __init__(
        self,
        database: str | Path,
        vocabularies: Callable[[str], VocabularyConfig],
        known_keys: Callable[[str], set[str]],
        pseudonymize: Callable[[list[str]], list[str]],
    ) -> None:
        self.cache = ResponseCache(database)
        self.store = ImportStore(self.cache)
        self.vocabularies = vocabularies
        self.known_keys = known_keys
        self.pseudonymize = pseudonymize
        self._known: dict[str, set[str]] = {}
        self._vocab: dict[str, VocabularyConfig] = {}

    def _known_keys(self, role: str) -> set[str]:
        if role not in self._known:
            self._known[role] = self.known_keys(role)
        return self._known[role]

    def run(self, request: ImportRequest) -> list[ImportReport]:
        """Import each file (one report per import name, in file order)."""
        if request.role not in ROLES:
            raise ValueError(f"unknown role {request.role!r}; known: {', '.join(ROLES)}")
        paths = [Path(p) for p in request.paths]
        if not paths:
            raise ValueError("no answer file given")
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"answer file(s) not found: {', '.join(missing)}")
        vocab_ids = _user_vocabulary(request.user_vocab) if request.user_vocab else None
        groups: dict[str, list[Path]] = {}
        for path in paths:
            groups.setdefault(import_name(path, request.name), []).append(path)
        return [self._import(name, files, request, vocab_ids) for name, files in groups.items()]

    def _import(
        self, name: str, files: list[Path], request: ImportRequest, vocab_ids: list[str] | None
    ) -> ImportReport:
        started = time.perf_counter()
        formats = [detect_format(p) if request.fmt == "auto" else request.fmt for p in files]
        report = ImportReport(name, request.role, [str(p) for p in files], formats)
        rejects: list[Reject] = []
        accepted: list[_Answer] = []
        seen: set[tuple] = set()
        user_role = request.role != "summarizer"
        for path, fmt in zip(files, formats, strict=True):
            if fmt == "genre_jsonl" and vocab_ids is None and user_role:
                raise ValueError(f"{path}: GENRE logs key users by uid; give --user-vocab FILE")
            lines = list(
                read_lines(path, fmt, request.key_field, request.output_field, request.wrap_as)
            )
            report.lines_read += len(lines)
            answers, failed = self._resolve(lines, path, fmt, request, vocab_ids)
            for line, reason, detail, key in failed:
                rejects.append(self._reject(name, request.role, path, line, reason, detail, key))
            for answer in answers:
                dedup = (answer.role, answer.custom_id or answer.item_keys)
                if dedup in seen:
                    report.duplicates += 1
                    what = "request" if answer.custom_id else "key"
                    detail = f"an earlier line of this import answers the same {what}"
                    keys = ",".join(answer.item_keys)
                    rejects.append(
                        self._reject(
                            name, answer.role, path, answer.line, "duplicate", detail, keys
                        )
                    )
                    continue
                seen.add(dedup)
                accepted.append(answer)
        for reject in rejects:
            if reject.reason != "duplicate":
                report.rejected[reject.reason] += 1
        provenance = self._provenance(name, request, accepted, report)
        self.store.write(provenance, rejects)
        report.seconds = time.perf_counter() - started
        return report

    def _resolve(
        self,
        lines: list[FileLine],
        path: Path,
        fmt: str,
        request: ImportRequest,
        vocab_ids: list[str] | None,
    ) -> tuple[list[_Answer], list[tuple[FileLine, str, str, str | None]]]:
        """Lines -> answers with their item keys and validation, or (line, reason, detail,
        key) for the lines not taken. Lines keyed by a raw user id keep it nowhere."""
        failed: list[tuple[FileLine, str, str, str | None]] = []
        readable = []
        for line in lines:
            if line.error is not None:
                failed.append((line, *line.error, None))
            else:
                readable.append(line)
        raw_user_ids = request.role != "summarizer" and fmt != "openai_batch" and not vocab_ids
        if fmt == "openai_batch":
            keyed = self._batch_keys(readable, request.role, failed)
        else:
            keyed = self._file_keys(readable, request.role, vocab_ids, failed)
        if raw_user_ids:
            pseudonyms = {id(line): keys[0] for line, _, keys, *_ in keyed}
            for line in lines:
                line.raw = _without_raw_id(line, pseudonyms.get(id(line)))
        answers = []
        for line, role, keys, prompt_hash, cid in keyed:
            known = self._known_keys(role)
            unknown = [k for k in keys if k not in known]
            if unknown:
                what = "item" if role == "summarizer" else "user"
                detail = f"no {what} {unknown[0]!r} in the data (stg_news / user_histories)"
                failed.append((line, f"unknown_{what}", detail, ",".join(keys)))
                continue
            checked, text = self._validate(role, line.answer)
            if checked.error is not None:
                failed.append((line, _reason(checked.error), checked.error, ",".join(keys)))
                continue
            answers.append(_Answer(role, keys, checked, text, line, path, fmt, prompt_hash, cid))
        return answers, failed

    def _batch_keys(self, lines: list[FileLine], role: str, failed: list) -> list[tuple]:
        from genre_dagster.enrichment.batch import parse_custom_id

        exported = self.store.exported([str(line.key) for line in lines])
        keyed = []
        for line in lines:
            try:
                line_role, _version, prompt_hash = parse_custom_id(line.key)
            except ValueError as exc:
                failed.append((line, "unknown_request", str(exc), None))
                continue
            # a chain's export holds the requests of its profiler step too
            if line_role != role and not (role == "chain_generator" and line_role == "profiler"):
                detail = f"the request is for the {line_role}, this import is for the {role}"
                failed.append((line, "other_role", detail, None))
                continue
            request = exported.get(line.key)
            if request is None:
                detail = f"custom_id {line.key} was not exported from this deployment"
                failed.append((line, "unknown_request", detail, None))
                continue
            keyed.append((line, line_role, request.item_keys, prompt_hash, line.key))
        return keyed

    def _file_keys(
        self, lines: list[FileLine], role: str, vocab_ids: list[str] | None, failed: list
    ) -> list[tuple]:
        keyed = []
        raw_ids: list[tuple[FileLine, str]] = []
        for line in lines:
            key = line.key
            if role == "summarizer":
                keyed.append((line, role, (str(key),), None, None))
                continue
            if vocab_ids is not None:
                if isinstance(key, bool) or not isinstance(key, int):
                    failed.append((line, "unknown_user", "uid is not a line number", None))
                    continue
                if not 0 <= key < len(vocab_ids) or not vocab_ids[key]:
                    detail = f"uid {key} is not a line of the user vocabulary ({len(vocab_ids)})"
                    failed.append((line, "unknown_user", detail, None))
                    continue
                raw_ids.append((line, vocab_ids[key]))
            else:
                raw_ids.append((line, str(key)))
        pseudonyms = self.pseudonymize([raw for _, raw in raw_ids]) if raw_ids else []
        for (line, _raw), pseudonym in zip(raw_ids, pseudonyms, strict=True):
            keyed.append((line, role, (pseudonym,), None, None))
        return keyed

    def _validate(self, role: str, answer: Any) -> tuple[Validated, str | None]:
        from genre_dagster.enrichment.schemas import validate_output

        if role not in self._vocab:
            self._vocab[role] = self.vocabularies(role)
        vocab = self._vocab[role]
        if isinstance(answer, dict):
            return validate_output(role, answer, vocab), json.dumps(answer, ensure_ascii=False)
        return validate_answer(role, answer, vocab), answer

    def _provenance(
        self,
        name: str,
        request: ImportRequest,
        accepted: list[_Answer],
        report: ImportReport,
    ) -> list[Provenance]:
        """Cache rows and provenance of the accepted answers that are new or changed."""
        rows: list[tuple[CachedResponse, _Answer]] = []
        now = datetime.now(UTC)  # one time for the whole import: the newest import wins
        for answer in accepted:
            model = request.model or answer.line.model or "unknown"
            for key in answer.item_keys:
                cached = CachedResponse(
                    role=answer.role,
                    prompt_version=IMPORTED_PREFIX + name,
                    model=model,
                    input_hash=imported_hash(answer.role, key, answer.prompt_hash),
                    item_key=key,
                    status="ok",
                    raw_text=answer.text,
                    parsed=answer.checked.output,
                    error=None,
                    notes=answer.checked.notes,
                    prompt_tokens=answer.line.prompt_tokens,
                    completion_tokens=answer.line.completion_tokens,
                    attempts=1,
                    created_at=now,
                )
                rows.append((cached, answer))
        stored = self.store.stored([r for r, _ in rows])
        fresh: dict[int, bool] = {}  # answer -> has a new or changed row
        out = []
        for cached, answer in rows:
            key = (cached.role, cached.prompt_version, cached.model, cached.input_hash)
            changed = key not in stored or stored[key] != cached.parsed
            fresh[id(answer)] = fresh.get(id(answer), False) or changed
            if changed:
                report.models[cached.model] += 1
                source = str(answer.path.resolve())
                out.append(
                    Provenance(
                        cached, name, answer.fmt, source, answer.line.number, answer.custom_id
                    )
                )
        report.imported = sum(fresh.values())
        report.already_imported = len(fresh) - report.imported
        report.answers_written = len(out)
        return out

    def _reject(
        self,
        name: str,
        role: str,
        path: Path,
        line: FileLine,
        reason: str,
        detail: str,
        key: str | None,
    ) -> Reject:
        raw = line.raw[:RAW_LINE_MAX_CHARS] if line.raw is not None else None
        return Reject(name, role, str(path.resolve()), line.number, key, reason, detail, raw)


def _reason(error: str) -> str:
    """The reject reason of a validation error: the vocabulary or the schema."""
    lowered = error.lower()
    if "vocabulary" in lowered or "category list" in lowered or "valid open topic" in lowered:
        return "vocabulary"
    return "schema"


def _user_vocabulary(path: str | Path) -> list[str]:
    """Raw user ids, one per line (line i is uid i)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"user vocabulary {path} not found")
    ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    if not any(ids):
        raise ValueError(f"user vocabulary {path} holds no user id")
    return ids


def _without_raw_id(line: FileLine, pseudonym: str | None) -> str | None:
    """A line keyed by a raw user id as it may be stored: the JSONL key field holds the
    pseudonym (or a placeholder); a line whose id cannot be located is withheld (None)."""
    if line.key_field is not None:
        try:
            record = json.loads(line.raw)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and line.key_field in record:
            record[line.key_field] = pseudonym or "(raw user id withheld)"
            return json.dumps(record, ensure_ascii=False)
    return None
