"""Versioned prompt templates: loading from `genre_dagster/prompts/` and deterministic rendering.

A template file is named `<role>_<version>.txt` and looks like::

    # role: summarizer
    # version: v1
    # description: ...
    # response_prefix: {"title": "      (optional: the start of the answer, for prefilling)
    --- system ---
    ...text...
    --- user ---
    ...text with {{placeholders}}...

Placeholders use double braces so JSON examples in the text need no escaping. Rendering fails on
a missing or unused value, so a template and its role cannot drift apart silently.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_][a-z0-9_]*)\s*\}\}")
_SECTION = re.compile(r"^--- (system|user) ---$", re.MULTILINE)
_NAME = re.compile(r"^([a-z_]+)_(v\d+)\.txt$")


@dataclass(frozen=True)
class PromptTemplate:
    """A parsed template: its role, version, header fields and the two message texts."""

    role: str
    version: str
    header: dict[str, str]
    system: str
    user: str
    source: str

    @property
    def response_prefix(self) -> str:
        """The start of the answer backends may prefill ("" if the header sets none)."""
        return self.header.get("response_prefix", "")

    @functools.cached_property  # read for every input: computed once per template
    def instructions(self) -> tuple[str, ...]:
        """The template's own text between placeholders (what an answer should never copy)."""
        chunks = _PLACEHOLDER.split(self.system + "\n" + self.user)[::2]
        return tuple(c.strip() for c in chunks if len(c.split()) >= 4)

    @functools.cached_property
    def placeholders(self) -> frozenset[str]:
        """Names used in the system and user texts."""
        return frozenset(_PLACEHOLDER.findall(self.system)) | frozenset(
            _PLACEHOLDER.findall(self.user)
        )

    def render(
        self, values: dict[str, str], optional: frozenset[str] = frozenset()
    ) -> tuple[dict[str, str], ...]:
        """System and user messages with every placeholder filled (values used verbatim).

        Every value must be used, except those named in `optional` (context a template
        generation may leave out, e.g. the domain's nouns in a v1 template)."""
        missing = self.placeholders - set(values)
        unused = set(values) - self.placeholders - optional
        if missing or unused:
            raise ValueError(
                f"template {self.role}_{self.version}: missing values {sorted(missing)}, "
                f"unused values {sorted(unused)}"
            )

        def fill(text: str) -> str:
            # One pass: a value containing "{{x}}" is never expanded again.
            return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)

        return (
            {"role": "system", "content": fill(self.system)},
            {"role": "user", "content": fill(self.user)},
        )


def parse_template(text: str, source: str) -> PromptTemplate:
    """Parse template text; `source` names it in errors (file name)."""
    name = _NAME.match(Path(source).name)
    if name is None:
        raise ValueError(f"{source}: template file names look like <role>_v<N>.txt")
    parts = _SECTION.split(text)
    if len(parts) != 5 or parts[1] != "system" or parts[3] != "user":
        raise ValueError(f"{source}: needs a '--- system ---' then a '--- user ---' section")
    header: dict[str, str] = {}
    for line in parts[0].splitlines():
        if not line.strip():
            continue
        if not line.startswith("#") or ":" not in line:
            raise ValueError(f"{source}: header lines look like '# key: value', got {line!r}")
        key, value = line.lstrip("#").split(":", 1)
        header[key.strip()] = value.strip()
    role, version = name.group(1), name.group(2)
    if header.get("role") != role or header.get("version") != version:
        raise ValueError(
            f"{source}: header says role={header.get('role')!r} version={header.get('version')!r},"
            f" file name says {role!r} {version!r}"
        )
    return PromptTemplate(
        role=role,
        version=version,
        header=header,
        system=parts[2].strip("\n"),
        user=parts[4].strip("\n"),
        source=source,
    )


def load_template(
    role: str, version: str = "v1", folder: str | Path | None = None
) -> PromptTemplate:
    """Load `<role>_<version>.txt` from `folder` (default: the package's `prompts/`)."""
    file_name = f"{role}_{version}.txt"
    if folder is None:
        resource = resources.files("genre_dagster") / "prompts" / file_name
        if not resource.is_file():
            raise ValueError(f"no prompt template {file_name} in genre_dagster/prompts")
        return parse_template(resource.read_text(encoding="utf-8"), file_name)
    path = Path(folder) / file_name
    if not path.is_file():
        raise ValueError(f"no prompt template {file_name} in {folder}")
    return parse_template(path.read_text(encoding="utf-8"), str(path))


def input_hash(
    role: str,
    version: str,
    messages: tuple[dict[str, str], ...],
    response_prefix: str = "",
    schema: dict | None = None,
    avoid_copying: tuple[str, ...] = (),
    schema_json: str | None = None,
) -> str:
    """sha256 of (role, prompt version, rendered messages, response prefix, answer schema,
    texts the answer must not copy): any change to the prompt, or to what the answer may
    contain, changes the hash. `schema_json`, when given, is `canonical_json(schema)`: a pass
    that hashes a million prompts under one schema serializes it once."""
    parts: list[object] = [
        role,
        version,
        [[m["role"], m["content"]] for m in messages],
        response_prefix,
    ]
    pieces = [canonical_json(parts)[1:-1]]  # a list's JSON is its items' JSON joined by ","
    if schema is not None:  # unconstrained requests keep the hashes they always had
        pieces.append(schema_json if schema_json is not None else canonical_json(schema))
    if avoid_copying:  # requests without it keep the hashes they always had
        pieces.append(canonical_json(["avoid_copying", list(avoid_copying)]))
    canonical = "[" + ",".join(pieces) + "]"
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def canonical_json(value: object) -> str:
    """The JSON `input_hash` hashes: sorted keys, no spaces, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
