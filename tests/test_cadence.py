"""The training cadence: when a night retrains a scorer and when it reuses the last model."""

from __future__ import annotations

from datetime import date

import pytest

from genre_dagster.scoring.cadence import PreviousModel, retrain_reason

DAY = date(2024, 3, 10)
PREVIOUS = PreviousModel("nrms-abc", "abc", date(2024, 3, 8))


def test_every_run_trains_by_default_and_when_forced():
    assert "every run" in retrain_reason(PREVIOUS, "abc", DAY, 0, True)
    assert retrain_reason(PREVIOUS, "abc", DAY, 7, True, force=True) == "forced by config"


def test_reuses_a_recent_model_and_retrains_an_old_one():
    assert retrain_reason(PREVIOUS, "abc", DAY, 3, True) is None  # 2 days old, cadence 3
    assert "2 day(s) old" in retrain_reason(PREVIOUS, "abc", DAY, 2, True)


def test_missing_changed_or_undated_models_are_retrained():
    assert retrain_reason(None, "abc", DAY, 7, False) == "no earlier model"
    assert "configuration changed" in retrain_reason(PREVIOUS, "xyz", DAY, 7, True)
    assert "missing" in retrain_reason(PREVIOUS, "abc", DAY, 7, False)
    undated = PreviousModel("nrms-abc", "abc", None)
    assert "does not record" in retrain_reason(undated, "abc", DAY, 7, True)


def test_negative_cadence_is_rejected():
    with pytest.raises(ValueError, match="retrain_every_days"):
        retrain_reason(PREVIOUS, "abc", DAY, -1, True)
