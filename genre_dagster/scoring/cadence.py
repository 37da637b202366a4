"""When a nightly run retrains a scorer, and when it reuses last night's model.

Training is the costly part of a night; scoring new impressions with a recent model is cheap. The
cadence is counted in days of data (the newest day of the train split), not wall-clock time, so a
backfill of several days behaves like the nights it replays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class PreviousModel:
    """What the scorer's table recorded about the model it published last."""

    scorer_id: str
    config_hash: str
    trained_through: date | None


def retrain_reason(
    previous: PreviousModel | None,
    config_hash: str,
    train_through: date,
    every_days: int,
    artifact_exists: bool,
    force: bool = False,
) -> str | None:
    """Why the scorer must be trained tonight, or None to reuse `previous`.

    Args:
        previous: the last published model, None when there is none.
        config_hash: hash of tonight's scorer config (a changed config always retrains).
        train_through: newest day of tonight's train split.
        every_days: 0 retrains on every run (the default); N >= 1 retrains once the newest
            training day is N or more days past the model's.
        artifact_exists: whether the model store still holds `previous`'s artifact.
        force: retrain regardless (a launchpad switch).
    """
    if every_days < 0:
        raise ValueError(f"retrain_every_days must be >= 0, got {every_days}")
    if force:
        return "forced by config"
    if every_days == 0:
        return "retrain_every_days=0: every run trains"
    if previous is None:
        return "no earlier model"
    if previous.config_hash != config_hash:
        return f"configuration changed ({previous.config_hash} -> {config_hash})"
    if not artifact_exists:
        return f"artifact {previous.scorer_id} is missing from the model store"
    if previous.trained_through is None:
        return "the earlier model does not record its training days"
    age = (train_through - previous.trained_through).days
    if age >= every_days:
        return f"model data is {age} day(s) old (retrain_every_days={every_days})"
    return None
