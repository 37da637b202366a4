"""Steering parameters: validation against the vocabulary, merging, and one parameters object
per user from the segments (serving/steering.py)."""

from __future__ import annotations

import numpy as np
import pytest
from steering_world import CATEGORIES

from genre_dagster.serving.reranking import apply_steering
from genre_dagster.serving.steering import NO_STEERING, SteeringParams, merge, resolve_segments


def test_params_round_trip_and_validate_against_the_vocabulary() -> None:
    params = SteeringParams(
        category_weights={"science": 2.0, "news": -0.5},
        exclude_categories=["entertainment", "entertainment"],
        freshness_days=3,
        diversity=0.4,
    )
    assert params.exclude_categories == ["entertainment"]
    assert SteeringParams.model_validate_json(params.model_dump_json()) == params
    assert params.check_categories(CATEGORIES) is params
    with pytest.raises(ValueError, match=r"unknown categories \['gossip'\].*news, science"):
        SteeringParams(exclude_categories=["gossip"]).check_categories(CATEGORIES)
    with pytest.raises(ValueError, match="weights lie in"):
        SteeringParams(category_weights={"science": 5.0})
    with pytest.raises(ValueError, match="both boosted and excluded"):
        SteeringParams(category_weights={"news": 1.0}, exclude_categories=["news"])
    with pytest.raises(ValueError, match="source 'none'"):
        SteeringParams(source="none", freshness_days=1)
    with pytest.raises(ValueError):
        SteeringParams(diversity=1.5)
    # apply_steering refuses unknown categories rather than ignoring them
    with pytest.raises(ValueError, match="unknown categories"):
        apply_steering(
            np.zeros((1, 2)), np.array([0, 1]), CATEGORIES, SteeringParams(exclude_categories=["x"])
        )


def test_merge_lets_the_later_word_win_per_category() -> None:
    base = SteeringParams(
        category_weights={"science": 1.0, "sports": 1.0},
        exclude_categories=["finance"],
        diversity=0.3,
    )
    override = SteeringParams(
        category_weights={"finance": 0.5, "science": 2.0},
        exclude_categories=["sports"],
        freshness_days=2,
        source="instruction",
        instruction="finance please",
    )
    merged = merge(base, override)
    assert merged.category_weights == {"science": 2.0, "finance": 0.5}
    assert merged.exclude_categories == ["sports"]
    assert (merged.freshness_days, merged.diversity) == (2, 0.3)
    assert (merged.source, merged.instruction) == ("instruction", "finance please")
    assert merge(base, NO_STEERING) == base and merge(NO_STEERING, NO_STEERING).is_neutral


def test_segments_resolve_to_one_params_object_per_user() -> None:
    per_user = resolve_segments(
        {
            "all": SteeringParams(exclude_categories=["sports"]),
            "cold": SteeringParams(category_weights={"science": 2.0}),
        },
        ["cold", "warm", "cold"],
    )
    assert per_user[0] is per_user[2]
    assert per_user[0].category_weights == {"science": 2.0}
    assert per_user[0].exclude_categories == ["sports"] == per_user[1].exclude_categories
    assert per_user[1].category_weights == {}
    with pytest.raises(ValueError, match="unknown steering segments"):
        resolve_segments({"new": NO_STEERING}, ["cold"])
    with pytest.raises(ValueError, match="user row 1"):
        resolve_segments({}, ["cold", "lukewarm"])
