"""Scorer kinds by name, imported lazily, and loading any saved scorer from its folder.

Modules are imported only when a kind is asked for, so listing kinds (or loading a popularity
artifact) never imports torch or scikit-learn.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from genre_dagster.scoring.artifact import read_scorer_json
from genre_dagster.scoring.base import Scorer

# kind -> (module, class name). Neural kinds live in genre_dagster.scoring.neural.
_KIND_LOCATIONS: dict[str, tuple[str, str]] = {
    "popularity": ("genre_dagster.scoring.popularity", "PopularityScorer"),
    "content_similarity": ("genre_dagster.scoring.content", "ContentSimilarityScorer"),
    "matrix_factorization": ("genre_dagster.scoring.mf", "MatrixFactorizationScorer"),
    "sklearn_ranker": ("genre_dagster.scoring.ranker", "SklearnRankerScorer"),
    "ensemble": ("genre_dagster.scoring.ensemble", "EnsembleScorer"),
    "nrms": ("genre_dagster.scoring.neural", "NRMSScorer"),
    "neural": ("genre_dagster.scoring.neural", "NeuralScorer"),
    "naml": ("genre_dagster.scoring.neural", "NAMLScorer"),
    "sequential": ("genre_dagster.scoring.neural", "SequentialScorer"),
}
# Kinds trained with torch (their steps go where the GPU is in production).
NEURAL_KINDS = frozenset(
    k for k, (module, _) in _KIND_LOCATIONS.items() if module.endswith("neural")
)


class _LazyScorerKinds(Mapping[str, type[Scorer]]):
    """Read-only mapping kind -> Scorer subclass; a kind's module is imported on first access."""

    def __init__(self, locations: dict[str, tuple[str, str]]) -> None:
        self._locations = locations
        self._loaded: dict[str, type[Scorer]] = {}

    def __getitem__(self, kind: str) -> type[Scorer]:
        if kind not in self._loaded:
            if kind not in self._locations:
                raise KeyError(f"unknown scorer kind {kind!r}; known: {sorted(self._locations)}")
            module_name, class_name = self._locations[kind]
            cls = getattr(importlib.import_module(module_name), class_name)
            if not (isinstance(cls, type) and issubclass(cls, Scorer)) or cls.kind != kind:
                raise TypeError(f"{module_name}.{class_name} is not a Scorer of kind {kind!r}")
            self._loaded[kind] = cls
        return self._loaded[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._locations)

    def __len__(self) -> int:
        return len(self._locations)


SCORER_KINDS: Mapping[str, type[Scorer]] = _LazyScorerKinds(_KIND_LOCATIONS)


def create_scorer(kind: str, config: dict[str, Any] | None = None) -> Scorer:
    """A new, unfitted scorer of `kind` with `config`."""
    return SCORER_KINDS[kind](config)


def load_scorer(folder: Path) -> Scorer:
    """Load the scorer saved in `folder`, choosing the class from its `scorer.json` kind."""
    kind = read_scorer_json(folder)["kind"]
    scorer = SCORER_KINDS[kind].load(Path(folder))
    if scorer.kind != kind:
        raise ValueError(f"{folder}: loaded a {scorer.kind!r} scorer from a {kind!r} artifact")
    return scorer
