"""Small demo worlds for the LLM import tests: ingested and built up to the dbt features by the
real jobs, plus helpers that materialize the enrichment (and scorer) assets on them."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import dagster as dg

ENRICHMENT = ("news_summaries", "user_profiles", "synthetic_items")
# The enrichment assets ask no LLM: only imported (or cached) answers are published.
NO_LLM_CALLS = {"ops": {f"enrichment__{name}": {"config": {"budget": 0}} for name in ENRICHMENT}}


def build_world(root: Path, config: Any) -> dict[str, Any]:
    """Generate the demo world `config` under `root`, ingest every day and build the features
    (dbt), as the nightly job does; returns the settings and the DuckDB path."""
    from genre_dagster.demo import generate_world

    generate_world(config, root / "mind")
    return {"config": config, **build_features(root, world_settings(root))}


def world_settings(root: Path) -> Any:
    """Settings of a MIND-format world generated under `root / "mind"`, with an LLM backend
    that is never called (the tests' enrichment budgets are 0)."""
    from genre_dagster.settings import Settings

    return Settings(
        env="local",
        data_dir=root / "data",
        source_kind="mind",
        source_path=root / "mind",
        landing_dir=root / "landing",
        demo_preset="small",
        llm_backend="openai",
        llm_base_url="http://127.0.0.1:9/v1",  # never called: budgets are 0
        llm_model="no-llm",
    )


def small_network_ops(names: Any = None) -> dict[str, dict]:
    """Op config training the neural scorers among `names` (default: every default scorer)
    with the tests' small networks."""
    from genre_dagster.scoring.registry import NEURAL_KINDS
    from genre_dagster.scoring.variants import DEFAULT_SCORERS

    small = {"config": {"overrides_json": json.dumps(SMALL_NETWORKS)}}
    neural = [s.name for s in DEFAULT_SCORERS if s.kind in NEURAL_KINDS]
    return {f"scoring__{n}": small for n in neural if names is None or n in names}


def build_features(root: Path, settings: Any) -> dict[str, Any]:
    """Ingest every day of `settings`' source and build the features (dbt), as the nightly job
    does."""
    from genre_dagster.automation import new_days, unmaterialized_days
    from genre_dagster.definitions import build_definitions

    defs = build_definitions(settings)
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        new_days(defs.resources["source"], instance)
        for day in unmaterialized_days(instance):
            ingest = defs.resolve_job_def("ingest_day")
            assert ingest.execute_in_process(partition_key=day, instance=instance).success
        graph = defs.resolve_asset_graph()
        features = [
            key
            for key in dg.AssetSelection.groups("features").resolve(graph)
            if not graph.get(key).is_partitioned
        ]
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=features, raise_on_error=False
        )
        assert result.success, [e.message for e in result.all_events if e.is_step_failure]
    return {"root": root, "settings": settings, "defs": defs}


def materialize(
    world: dict[str, Any],
    database: Path,
    assets: list,
    run_config: dict | None = None,
    models: Path | None = None,
) -> dict[str, dict]:
    """Materialize `assets` on the DuckDB file `database` with the world's resources; returns
    asset name -> its materialization metadata (values unwrapped)."""
    result = run_assets(world, database, assets, run_config, models)
    assert result.success
    return {
        e.asset_key.path[-1]: {
            k: getattr(v, "value", v) for k, v in e.materialization.metadata.items()
        }
        for e in result.get_asset_materialization_events()
    }


def run_assets(
    world: dict[str, Any],
    database: Path,
    assets: list,
    run_config: dict | None = None,
    models: Path | None = None,
    retry_policy: dg.RetryPolicy | None = None,
) -> Any:
    """Materialize `assets` (and the checks among them) on `database` with the world's
    resources, as one job with `retry_policy` on every step; the run's result, whether it
    succeeded or not."""
    from dagster_duckdb import DuckDBResource

    from genre_dagster.resources.model_store import ModelStore
    from genre_dagster.resources.storage import DuckDBPolarsTablesIOManager

    checks = [a for a in assets if isinstance(a, dg.AssetChecksDefinition)]
    assets = [a for a in assets if a not in checks]
    keys = {key for a in assets for key in a.keys}
    deps = {d for a in assets for group in a.asset_deps.values() for d in group} - keys
    resources = dict(world["defs"].resources)
    resources["duckdb"] = DuckDBResource(database=str(database))
    resources["io_manager"] = DuckDBPolarsTablesIOManager(database=str(database))
    resources["model_store"] = ModelStore(root=str(models or database.parent / "models"))
    selected = {"__".join(key.path) for key in keys}
    ops = {name: op for name, op in NO_LLM_CALLS["ops"].items() if name in selected}
    config = {"ops": {**ops, **(run_config or {}).get("ops", {})}}
    job = dg.define_asset_job(
        "assets_under_test", selection=sorted(keys), op_retry_policy=retry_policy
    )
    defs = dg.Definitions(
        assets=[*(dg.AssetSpec(k) for k in deps), *assets],
        asset_checks=checks,
        jobs=[job],
        resources=resources,
    )
    return defs.resolve_job_def(job.name).execute_in_process(
        run_config=config, raise_on_error=False
    )


def enrichment_assets() -> list:
    from genre_dagster.assets import enrichment

    return [enrichment.news_summaries, enrichment.user_profiles, enrichment.synthetic_items]


# ------------------------------------------------------------------ the oracle world

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


def build_oracle_world(root: Path, **overrides: Any) -> dict[str, Any]:
    """The oracle world (ORACLE_WORLD with `overrides`) built up to its features, with the
    answers a capable LLM would give (`answers`: informative and shuffled file sets)."""
    from genre_dagster.demo import DemoWorldConfig
    from genre_dagster.demo.oracle import write_oracle_answers

    world = build_world(root, DemoWorldConfig(**{**ORACLE_WORLD, **overrides}))
    world["answers"] = write_oracle_answers(world["config"], root / "mind", root / "answers")
    return world


def import_oracle_answers(world: dict[str, Any], database: Path, variant: str) -> None:
    """Import one file set (informative | shuffled) of the oracle answers, every line kept."""
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


def train_scorers(
    world: dict[str, Any],
    database: Path,
    names: list[str],
    extra: list | None = None,
    run_config: dict | None = None,
) -> dict[str, dict]:
    """Publish the imported answers, embed them, train `names` (small networks) and
    materialize `extra` assets after them; the scorers' rows by name."""  # fmt: skip
    import duckdb

    from genre_dagster.assets import embeddings
    from genre_dagster.assets.scoring import scorer_assets

    scorers = [a for a in scorer_assets if a.key.path[-1] in names]
    assets = [*enrichment_assets(), embeddings.news_embeddings, embeddings.user_profile_embeddings]
    ops = small_network_ops(names)
    ops.update((run_config or {}).get("ops", {}))
    materialize(world, database, [*assets, *scorers, *(extra or [])], {"ops": ops})
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


# ------------------------------------------------------------------ a Batch API stand-in


def schema_instance(schema: dict[str, Any], seed: str) -> Any:
    """A value valid under a role's JSON schema (what a model constrained to it writes);
    choices vary with `seed` (the custom id)."""
    pick = zlib.crc32(seed.encode())
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][pick % len(schema["enum"])]
    if kind == "object":
        return {
            name: schema_instance(sub, f"{seed}/{name}")
            for name, sub in schema["properties"].items()
        }
    if kind == "array":
        if schema.get("minItems", 0) == 0 and "enum" in schema["items"]:
            return []  # optional lists (regions) stay empty, as most answers leave them
        return [schema_instance(schema["items"], seed)]
    if kind == "string":
        if "pattern" in schema:  # open topics: lower-case words
            return "interest " + "abcdefghij"[pick % 10] * 3
        text = f"answer {pick % 1000} about the item"
        return text[: schema.get("maxLength", len(text))]
    raise ValueError(f"schema type {kind!r} not handled")


def answer_batch(batch_input: Path, batch_output: Path, model: str = "offline-test-model") -> int:
    """Answer every request of a Batch input file the way the Batch API writes its output file
    (lines in reverse order: outputs come back in any order); returns the lines written."""
    requests = [json.loads(line) for line in batch_input.read_text().splitlines() if line]
    lines = []
    for n, request in enumerate(reversed(requests)):
        schema = request["body"]["response_format"]["json_schema"]["schema"]
        content = json.dumps(schema_instance(schema, request["custom_id"]))
        body = {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
        }
        line = {
            "id": f"batch_req_{n}",
            "custom_id": request["custom_id"],
            "response": {"status_code": 200, "request_id": f"req_{n}", "body": body},
            "error": None,
        }
        lines.append(json.dumps(line))
    batch_output.write_text("\n".join(lines) + "\n")
    return len(lines)
