"""GENRE's plug-ins learn from what the LLM says: with the answers a capable LLM would give about
the demo world (each item's hidden topic, each user's true interests, a plausible next item for
each cold user) every GENRE variant beats its base on validation AUC; with the same answers
shuffled across items and users (the control) none does. A plug-in that ignored its input
would pass the first half by luck at most, never both."""

from __future__ import annotations

import shutil

import pytest
from llm_worlds import build_oracle_world, import_oracle_answers, train_scorers

# Validation AUC: a variant beats its base by more than BEATS with informative answers; with
# shuffled ones it gains less than NO_GAIN, and at least SEPARATION less than informed.
BEATS, NO_GAIN, SEPARATION = 0.002, 0.005, 0.003


@pytest.fixture(scope="module")
def oracle_world(tmp_path_factory):
    return build_oracle_world(tmp_path_factory.mktemp("genre_oracle"))


@pytest.mark.slow
def test_informative_answers_make_every_genre_variant_beat_its_base_and_shuffled_do_not(
    oracle_world, tmp_path
):
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    variants = [spec for spec in DEFAULT_SCORERS if spec.base is not None]
    bases = sorted({spec.base for spec in variants})
    assert {"nrms", "naml"} <= set(bases) and len(variants) == 4 * len(bases)
    database = tmp_path / "genre.duckdb"
    shutil.copy(oracle_world["settings"].duckdb_path, database)

    import_oracle_answers(oracle_world, database, "informative")
    informed = train_scorers(oracle_world, database, bases + [spec.name for spec in variants])
    for spec in variants:  # every plug-in is on: its input reached the training users
        row = informed[spec.name]
        assert row["inactive"] == {}, spec.name
        assert row["profile"] == spec.profile == row["config"].get("profile", False)
        assert row["config"].get("generated_history", False) == spec.generated_history
        assert ("summary" in row["config"]["fields"]) == ("summary" in spec.config["fields"])

    # The control: the same answers given to other items and users (a newer import wins).
    # The base scorers read no LLM output: their trainings above stand.
    import_oracle_answers(oracle_world, database, "shuffled")
    shuffled = train_scorers(oracle_world, database, [spec.name for spec in variants])

    gains = {
        spec.name: (
            informed[spec.name]["auc"] - informed[spec.base]["auc"],
            shuffled[spec.name]["auc"] - informed[spec.base]["auc"],
        )
        for spec in variants
    }
    table = "\n".join(
        f"{n:18s} informative {g:+.4f}  shuffled {s:+.4f}" for n, (g, s) in gains.items()
    )
    for name, (informative, control) in gains.items():
        assert informative > BEATS, f"{name} does not beat its base:\n{table}"
        assert control < NO_GAIN, f"{name} gains from shuffled answers:\n{table}"
        assert informative - control > SEPARATION, f"{name}:\n{table}"
