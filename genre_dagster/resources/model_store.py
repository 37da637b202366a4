"""Where trained scorers live: a local folder by default, swappable per environment."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

if TYPE_CHECKING:
    from genre_dagster.scoring.base import Scorer

TRAINING_JSON = "training.json"
VALIDATION_JSON = "validation.json"
VALIDATION_SCORES = "validation_scores"  # <name>.<fingerprint>.npy beside validation.json


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

    def save(self, scorer: Scorer, training: dict[str, Any] | None = None) -> Path:
        """Write the artifact; `training` (what it learned from: the training fingerprint,
        validation metrics) goes beside it as `training.json`, read by `training_record`."""
        target = self.path_of(scorer.scorer_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{scorer.scorer_id}-", dir=target.parent))
        try:
            scorer.save(staging)
            if training is not None:
                text = json.dumps(training, indent=2, sort_keys=True, default=str)
                (staging / TRAINING_JSON).write_text(text + "\n", encoding="utf-8")
            if target.exists():
                shutil.rmtree(target)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging)
        return target

    def training_record(self, scorer_id: str) -> dict[str, Any] | None:
        """The `training` dict saved with the artifact, or None (no artifact, or saved without
        one)."""
        path = self.path_of(scorer_id) / TRAINING_JSON
        if not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def remember_validation(
        self,
        scorer_id: str,
        fingerprint: str,
        metrics: dict,
        scores: Any = None,
        source: str = "",
        impressions: Any = None,
    ) -> None:
        """Keep the metrics of the artifact on the impressions `fingerprint` names
        (scoring.score_memo), and its scores of the candidates when given, replacing what was
        kept before. Kept by a scorer step that validated the model (another scorer asset
        publishing the same model on the same night reads the metrics back, the ensemble the
        scores) and by the leaderboard for its test day (tomorrow's validation day). `source`
        says which, for the step's log.

        `impressions` (with `scores`): uint64 [n_impressions, 3], each impression's digest
        (`score_memo.impression_digests`, two words) and its number of candidates, so that
        the scores of the impressions whose inputs did not change can be reused when the
        split's fingerprint differs (`recall_kept_scores`)."""
        import numpy as np

        folder = self.path_of(scorer_id)
        if not folder.is_dir():
            raise FileNotFoundError(f"no saved scorer {scorer_id!r} under {self.root}")
        record: dict[str, Any] = {"fingerprint": fingerprint, "metrics": metrics, "source": source}
        files = []
        if scores is not None:
            files.append(("scores_file", "npy", scores, np.float32))
            if impressions is not None:
                files.append(("impressions_file", "impressions.npy", impressions, np.uint64))
        for key, suffix, array, dtype in files:
            name = f"{VALIDATION_SCORES}.{fingerprint}.{suffix}"
            staging = folder / f".{name}.{os.getpid()}"
            with staging.open("wb") as fh:
                np.save(fh, np.asarray(array, dtype=dtype))
            staging.replace(folder / name)
            record[key] = name
        keep = {record.get("scores_file"), record.get("impressions_file")}
        for stale in folder.glob(f"{VALIDATION_SCORES}.*.npy"):
            if stale.name not in keep:
                stale.unlink(missing_ok=True)
        payload = json.dumps(record, sort_keys=True)
        staging = folder / f".{VALIDATION_JSON}.{os.getpid()}"
        staging.write_text(payload + "\n", encoding="utf-8")
        staging.replace(folder / VALIDATION_JSON)  # atomic: readers see old or new, whole

    def recall_validation_scores(self, scorer_id: str, fingerprint: str) -> Any:
        """The scores saved by `remember_validation` for this exact validation data (float32,
        one per candidate), or None."""
        import numpy as np

        path = self.path_of(scorer_id) / f"{VALIDATION_SCORES}.{fingerprint}.npy"
        if not path.is_file():
            return None
        return np.load(path, allow_pickle=False)

    def recall_kept_scores(self, scorer_id: str) -> tuple[Any, Any, str] | None:
        """(impressions, scores, source) of the scores kept last with impression digests
        (`remember_validation`), whatever data they were of, or None."""
        import numpy as np

        folder = self.path_of(scorer_id)
        path = folder / VALIDATION_JSON
        if not path.is_file():
            return None
        record = json.loads(path.read_text(encoding="utf-8"))
        names = record.get("impressions_file"), record.get("scores_file")
        if not all(names) or not all((folder / n).is_file() for n in names):
            return None
        impressions, scores = (np.load(folder / n, allow_pickle=False) for n in names)
        return impressions, scores, record.get("source") or "unknown"

    def recall_validation(self, scorer_id: str, fingerprint: str) -> dict | None:
        """Metrics saved by `remember_validation` for these exact impressions, or None."""
        record = self._validation_record(scorer_id, fingerprint)
        return None if record is None else record["metrics"]

    def recall_validation_source(self, scorer_id: str, fingerprint: str) -> str | None:
        """Who saved the metrics `recall_validation` returns (`remember_validation`'s source)."""
        record = self._validation_record(scorer_id, fingerprint)
        return None if record is None else record.get("source") or "unknown"

    def _validation_record(self, scorer_id: str, fingerprint: str) -> dict | None:
        path = self.path_of(scorer_id) / VALIDATION_JSON
        if not path.is_file():
            return None
        payload = json.loads(path.read_text(encoding="utf-8"))
        return payload if payload.get("fingerprint") == fingerprint else None

    def publishes(self, folder: Path, scorer_id: str) -> bool:
        """Whether the published `scorer_id` artifact is the model saved in `folder` (a copy of
        it, such as an ensemble's member): every file in `folder` is there, byte for byte. A
        member retrained since the ensemble copied it is not."""
        import filecmp

        published, folder = self.path_of(scorer_id), Path(folder)
        files = [p for p in folder.rglob("*") if p.is_file()]
        if not files or not published.is_dir():
            return False
        for file in files:
            twin = published / file.relative_to(folder)
            if not twin.is_file() or not filecmp.cmp(file, twin, shallow=False):
                return False
        return True

    def load(self, scorer_id: str) -> Scorer:
        from genre_dagster.scoring.registry import load_scorer

        path = self.path_of(scorer_id)
        if not path.exists():
            raise FileNotFoundError(f"no saved scorer {scorer_id!r} under {self.root}")
        return load_scorer(path)
