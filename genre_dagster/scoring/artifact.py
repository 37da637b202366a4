"""Scorer artifact metadata: resolved configs and the `scorer.json` every artifact folder holds.

`scorer.json` = {"kind": ..., "config": ..., "scorer_id": ..., "state": {...}};
`registry.load_scorer` reads the kind from it to pick the class. `state` holds small fitted
values (weights, reference day).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genre_dagster.scoring.base import Scorer

SCORER_JSON = "scorer.json"


def resolve_config(
    kind: str, defaults: Mapping[str, Any], given: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Defaults overridden by `given`; unknown keys raise so a typo cannot pass unnoticed."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(
            f"unknown {kind} config keys {unknown} (unknown config keys are rejected so that a "
            f"typo cannot pass unnoticed); known: {sorted(defaults)}"
        )
    return {**defaults, **given}


def check_choice(kind: str, config: Mapping[str, Any], key: str, choices: tuple[str, ...]) -> None:
    """Raise ValueError when config[key] is not one of `choices`."""
    if config[key] not in choices:
        raise ValueError(f"{kind}: config {key}={config[key]!r} must be one of {choices}")


def write_scorer_json(folder: Path, scorer: Scorer, state: dict[str, Any] | None = None) -> Path:
    """Write `folder/scorer.json` for `scorer` (creating the folder); returns the path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SCORER_JSON
    payload = {
        "kind": scorer.kind,
        "config": scorer.config,
        "scorer_id": scorer.scorer_id,
        "state": state or {},
    }
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def read_scorer_json(folder: Path, kind: str | None = None) -> dict[str, Any]:
    """Read `folder/scorer.json`; with `kind`, raise if the artifact is of another kind."""
    path = Path(folder) / SCORER_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no {SCORER_JSON} in scorer folder {folder}")
    payload = json.loads(path.read_text(encoding="utf-8"))
    for key in ("kind", "config", "scorer_id"):
        if key not in payload:
            raise ValueError(f"{path}: missing key {key!r}")
    if kind is not None and payload["kind"] != kind:
        raise ValueError(f"{path}: artifact of kind {payload['kind']!r}, expected {kind!r}")
    payload.setdefault("state", {})
    return payload
