"""Where trained scorers live: a local folder by default, swappable per environment."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from genre_dagster.scoring.base import Scorer


class ModelStore(dg.ConfigurableResource):
    """Saves and loads scorer artifacts under `<root>/<scorer_id>/`.

    The scorer id is `<kind>-<config hash>`, so an artifact is named by what produced it. Saving
    goes through a temporary folder and a rename: a crash never leaves half an artifact.
    """

    root: str = Field(description="folder holding one sub-folder per scorer id")
    retrain_every_days: int = Field(
        default=0,
        ge=0,
        description=(
            "default training cadence of the scorers: 0 = train on every run; N = reuse the "
            "published model until the newest training day is N days past it"
        ),
    )

    def path_of(self, scorer_id: str) -> Path:
        if not scorer_id or "/" in scorer_id or scorer_id.startswith("."):
            raise ValueError(f"invalid scorer id {scorer_id!r}")
        return Path(self.root) / scorer_id

    def save(self, scorer: Scorer) -> Path:
        target = self.path_of(scorer.scorer_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{scorer.scorer_id}-", dir=target.parent))
        try:
            scorer.save(staging)
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return target

    def load(self, scorer_id: str) -> Scorer:
        from genre_dagster.scoring.registry import load_scorer

        path = self.path_of(scorer_id)
        if not path.exists():
            raise FileNotFoundError(f"no saved scorer {scorer_id!r} under {self.root}")
        return load_scorer(path)
