"""GENRE's plug-ins learn from what the LLM says: with the answers a capable LLM would give about
the demo world (each item's hidden topic, each user's true interests, a plausible next item for
each cold user) every GENRE variant beats its base on validation AUC; with the same answers
shuffled across items and users (the control) none does. A plug-in that ignored its input
would pass the first half by luck at most, never both."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from llm_worlds import build_world, enrichment_assets, materialize

# A small world where the LLM's answers carry information the scorers cannot read elsewhere:
# 30% of the headlines and abstracts are written about another subcategory than the item's own,
# tastes within a category weigh more than in the default world, and a third of the validation
# impressions come from cold users (many users, few impressions each). Smaller worlds give
# effects within the noise of one training (measured: the generated-history gain is the
# smallest, +0.003 to +0.011 over world seeds; shuffled answers gain at most +0.003).
ORACLE_WORLD = dict(
    n_news=800,
    n_users=8000,
    n_days=4,
    impressions_per_day=2400,
    cold_user_share=0.8,
    interest_weight=1.5,
    interest_concentration=0.2,
    subcategory_interest=3.0,
    text_topic_noise=0.3,
    seed=3,
)
# The tests' small networks (scoring/presets.py `_SMALL`): a training takes seconds.
SMALL_NETWORKS = {
    "hidden_dim": 32,
    "attention_dim": 16,
    "heads": 2,
    "mlp_dim": 32,
    "dropout": 0.1,
    "lr": 3e-3,
    "epochs": 4,
}
# Validation AUC: a variant beats its base by more than BEATS with informative answers; with
# shuffled ones it gains less than NO_GAIN, and at least SEPARATION less than informed.
BEATS, NO_GAIN, SEPARATION = 0.002, 0.005, 0.003


@pytest.fixture(scope="module")
def oracle_world(tmp_path_factory):
    from genre_dagster.demo import DemoWorldConfig
    from genre_dagster.demo.oracle import write_oracle_answers

    root = tmp_path_factory.mktemp("genre_oracle")
    world = build_world(root, DemoWorldConfig(**ORACLE_WORLD))
    world["answers"] = write_oracle_answers(world["config"], root / "mind", root / "answers")
    return world


def _import(world, database, variant: str) -> None:
    from genre_dagster.llm_outputs import LLMImportConfig, import_outputs
    from genre_dagster.resources import PrivacyResource

    files = world["answers"][variant]
    vocab = str(files["users"])
    for role, kind, options in (
        ("summarizer", "summaries", {}),
        ("profiler", "profiles", {"user_vocab": vocab}),
        ("generator", "generated", {"user_vocab": vocab}),
    ):
        config = LLMImportConfig(
            files=[str(files[kind])], role=role, model="oracle", name=f"{variant}-{kind}", **options
        )
        source = world["defs"].resources["source"]
        (report,) = import_outputs(database, source, PrivacyResource(), config)
        assert report.rejected_total == 0 and report.imported == report.lines_read > 0


def _train(world, database, names: list[str]) -> dict[str, dict]:
    """Publish the imported answers, embed them, train `names`; their scoring rows by name."""
    from genre_dagster.assets import embeddings
    from genre_dagster.assets.scoring import scorer_assets

    scorers = [a for a in scorer_assets if a.key.path[-1] in names]
    assets = [*enrichment_assets(), embeddings.news_embeddings, embeddings.user_profile_embeddings]
    small = {"config": {"overrides_json": json.dumps(SMALL_NETWORKS)}}
    run_config = {"ops": {f"scoring__{name}": small for name in names}}
    materialize(world, database, [*assets, *scorers], run_config)
    columns = "name, val_auc, profile, generated_history, inactive_plugins, config_json"
    sql = " union all ".join(f"select {columns} from scoring.{name}" for name in names)
    with duckdb.connect(str(database), read_only=True) as conn:
        rows = conn.sql(sql).fetchall()
    return {
        name: {
            "auc": auc,
            "profile": profile,
            "generated_history": generated,
            "inactive": json.loads(inactive),
            "config": json.loads(config),
        }
        for name, auc, profile, generated, inactive, config in rows
    }


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

    _import(oracle_world, database, "informative")
    informed = _train(oracle_world, database, bases + [spec.name for spec in variants])
    for spec in variants:  # every plug-in is on: its input reached the training users
        row = informed[spec.name]
        assert row["inactive"] == {}, spec.name
        assert row["profile"] == spec.profile == row["config"].get("profile", False)
        assert row["config"].get("generated_history", False) == spec.generated_history
        assert ("summary" in row["config"]["fields"]) == ("summary" in spec.config["fields"])

    # The control: the same answers given to other items and users (a newer import wins).
    # The base scorers read no LLM output: their trainings above stand.
    _import(oracle_world, database, "shuffled")
    shuffled = _train(oracle_world, database, [spec.name for spec in variants])

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
