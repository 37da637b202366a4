"""Bring your own LLM outputs: batch export, import of Batch outputs, of GENRE's released logs
and of any JSONL, per role, with provenance; the assets publish imported answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from llm_worlds import answer_batch, build_world, enrichment_assets, materialize

from genre_dagster.ingest.privacy import DEFAULT_LOCAL_PSEUDONYM_KEY, pseudonym

WORLD = dict(n_news=300, n_users=200, n_days=4, impressions_per_day=100, seed=5)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from genre_dagster.demo import DemoWorldConfig

    return build_world(tmp_path_factory.mktemp("llm_import"), DemoWorldConfig(**WORLD))


@pytest.fixture
def db(world, tmp_path) -> Path:
    """A fresh copy of the world's database (dbt names its catalog after the file)."""
    copy = tmp_path / "genre.duckdb"
    shutil.copy(world["settings"].duckdb_path, copy)
    return copy


def _rows(database: Path, sql: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql, params or []).fetchall()


def _import(world, database: Path, files, role: str, **options):
    from genre_dagster.llm_outputs import LLMImportConfig, import_outputs
    from genre_dagster.resources import PrivacyResource

    config = LLMImportConfig(files=[str(f) for f in files], role=role, **options)
    return import_outputs(database, world["defs"].resources["source"], PrivacyResource(), config)


def _export(world, database: Path, role: str, out: Path, **options):
    from genre_dagster.llm_outputs import export_batch

    source = world["defs"].resources["source"]
    return export_batch(role, database, source, "no-llm", out, "gpt-batch-test", **options)


def _raw_users(world) -> list[str]:
    """Raw user ids of the world's users that have a history, in file order."""
    ids = []
    for split in ("train", "dev"):
        for line in (world["root"] / "mind" / split / "behaviors.tsv").read_text().splitlines():
            ids.append(line.split("\t")[1])
    return list(dict.fromkeys(ids))


def _cold_users(database: Path) -> set[str]:
    sql = "select user_id from main.user_histories where history_length between 1 and 5"
    return {u for (u,) in _rows(database, sql)}


def _pseudonym(raw: str) -> str:
    return pseudonym(raw, DEFAULT_LOCAL_PSEUDONYM_KEY)


# ------------------------------------------------------------------------------ round trip


def test_batch_round_trip_every_exported_request_is_answered_and_published(world, db, tmp_path):
    from genre_dagster.enrichment.batch import parse_custom_id
    from genre_dagster.enrichment.inputs import role_inputs

    out = tmp_path / "batches"
    summaries = _export(world, db, "summarizer", out / "summarizer.jsonl", everything=True)
    profiles = _export(world, db, "profiler", out / "profiler.jsonl", everything=True)
    chain = _export(world, db, "chain_generator", out / "chain.jsonl", everything=True)
    with duckdb.connect(str(db), read_only=True) as conn:
        news = [i.key for i in role_inputs(conn, "summarizer")]
        users = [i.key for i in role_inputs(conn, "profiler")]
        cold = [i.key for i in role_inputs(conn, "chain_generator")]
    assert summaries.items == len(news) and profiles.items == len(users)
    lines = [json.loads(x) for x in (out / "summarizer.jsonl").read_text().splitlines()]
    assert len(lines) == len(summaries.requests) == len({x["custom_id"] for x in lines})
    first = lines[0]
    assert first["method"] == "POST" and first["url"] == "/v1/chat/completions"
    body = first["body"]
    assert body["model"] == "gpt-batch-test" and body["max_tokens"] > 0
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    schema = body["response_format"]["json_schema"]["schema"]
    assert body["response_format"]["type"] == "json_schema"
    assert set(schema["required"]) == {"title", "description"}
    assert parse_custom_id(first["custom_id"])[:2] == ("summarizer", "v2")
    # the chain cannot generate before it knows the profiles: its first batch profiles
    assert {parse_custom_id(e.custom_id)[0] for e, _ in chain.requests} == {"profiler"}
    assert chain.items == len(cold)

    for name in ("summarizer", "profiler", "chain"):
        answer_batch(out / f"{name}.jsonl", out / f"{name}_output.jsonl")
    (report,) = _import(world, db, [out / "summarizer_output.jsonl"], "summarizer")
    assert (report.imported, report.rejected_total) == (len(summaries.requests), 0)
    assert report.models == {"offline-test-model": summaries.items}
    (report,) = _import(world, db, [out / "profiler_output.jsonl"], "profiler")
    assert report.answers_written == len(users) and report.rejected_total == 0
    # the chain's first batch: profiles of the cold users (an import of their own)
    (report,) = _import(world, db, [out / "chain_output.jsonl"], "chain_generator", name="chain")
    assert report.imported == len(chain.requests) and report.rejected_total == 0

    # second round: with the profiles known, the chain now asks for the items themselves
    generated = _export(world, db, "chain_generator", out / "chain2.jsonl", everything=True)
    assert {parse_custom_id(e.custom_id)[0] for e, _ in generated.requests} == {"chain_generator"}
    assert generated.items == len(cold)
    answer_batch(out / "chain2.jsonl", out / "chain2_output.jsonl")
    (report,) = _import(world, db, [out / "chain2_output.jsonl"], "chain_generator")
    assert report.answers_written == len(cold) and report.rejected_total == 0
    # nothing is left to export
    assert _export(world, db, "summarizer", out / "again.jsonl", everything=True).requests == []

    metadata = materialize(world, db, enrichment_assets())
    published = {
        "news_summaries": _rows(
            db, "select news_id, prompt_version from enrichment.news_summaries"
        ),
        "user_profiles": _rows(db, "select user_id, prompt_version from enrichment.user_profiles"),
        "synthetic_items": _rows(
            db, "select user_id, prompt_version from enrichment.synthetic_items"
        ),
    }
    expected = {"news_summaries": news, "user_profiles": users, "synthetic_items": cold}
    for asset, rows in published.items():
        assert sorted(k for k, _ in rows) == sorted(expected[asset]), asset
        assert {v for _, v in rows} <= {
            "imported:summarizer_output",
            "imported:profiler_output",
            "imported:chain",
            "imported:chain2_output",
        }
        assert metadata[asset]["imported"] == len(expected[asset])
        assert metadata[asset]["failed"] == 0 and metadata[asset]["skipped_by_budget"] == 0
    assert metadata["news_summaries"]["imported_from"] == {
        "summarizer_output (offline-test-model)": len(news)
    }

    # the combined GENRE variant trains with every plug-in on these answers
    from genre_dagster.assets import embeddings
    from genre_dagster.assets.scoring import scorer_assets

    (variant,) = [a for a in scorer_assets if a.key.path[-1] == "nrms_genre_all"]
    small = json.dumps({"hidden_dim": 16, "attention_dim": 8, "heads": 2, "epochs": 1})
    materialize(
        world,
        db,
        [embeddings.news_embeddings, embeddings.user_profile_embeddings, variant],
        {"ops": {"scoring__nrms_genre_all": {"config": {"overrides_json": small}}}},
    )
    ((profile, inactive, config),) = _rows(
        db, "select profile, inactive_plugins, config_json from scoring.nrms_genre_all"
    )
    config = json.loads(config)
    assert profile and json.loads(inactive) == {} and config["generated_history"]
    assert "summary" in config["fields"]


def test_export_sends_what_the_next_run_would_in_its_order_and_budget(world, db, tmp_path):
    from genre_dagster.assets.enrichment import ProfilerConfig
    from genre_dagster.enrichment.enrich import role_vocabulary
    from genre_dagster.enrichment.inputs import item_categories, role_inputs
    from genre_dagster.enrichment.prompts import load_template
    from genre_dagster.enrichment.runner import Stage
    from genre_dagster.enrichment.sanitize import PromptLimits

    plan = _export(world, db, "profiler", tmp_path / "p.jsonl")  # the asset's budget: 8
    with duckdb.connect(str(db), read_only=True) as conn:
        inputs = role_inputs(conn, "profiler")
        categories = item_categories(conn)
    assert len(plan.requests) == ProfilerConfig().budget == 8
    assert [e.item_keys[0] for e, _ in plan.requests] == [i.key for i in inputs[:8]]
    assert plan.skipped_by_budget == len(inputs) - 8
    # each request is the one the asset would render (the hash covers messages and schema)
    source = world["defs"].resources["source"]
    vocab = role_vocabulary(
        "profiler",
        categories,
        domain=source.item_domain,
        topics=source.profile_topics,
        regions=source.profile_regions,
    )
    stage = Stage(None, None, 1, vocab, PromptLimits(), 0.0, True, 0, None, set())
    template = load_template("profiler", "v2")
    for (exported, request), item in zip(plan.requests, inputs, strict=False):
        expected = stage.request_for(template, item, None)
        assert request.key == expected.key == exported.input_hash
        assert request.messages == expected.messages
    # an answered item is not exported again; an item with an imported answer neither
    answer_batch(tmp_path / "p.jsonl", tmp_path / "p_out.jsonl")
    _import(world, db, [tmp_path / "p_out.jsonl"], "profiler")
    again = _export(world, db, "profiler", tmp_path / "p2.jsonl")
    assert again.imported == 8
    assert [e.item_keys[0] for e, _ in again.requests] == [i.key for i in inputs[8:16]]


# --------------------------------------------------------------------------- released formats


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _rejects(database: Path, name: str) -> list[tuple]:
    return _rows(
        database,
        "select line_number, reason, item_key, raw_line from enrichment.llm_import_rejects "
        "where import_name = ? order by line_number",
        [name],
    )


def test_released_summaries_with_a_bad_line_of_each_kind(world, db, tmp_path):
    news = [n for (n,) in _rows(db, "select news_id from main.stg_news order by news_id")]
    log = _write(
        tmp_path / "book_summarizer.log",
        [
            f"{news[0]}\t[newtitle] A clear and neutral title",
            f"{news[1]}\t[description] A description longer than two hundred characters: "
            + "it tells what the item is about in a few sentences. " * 4,
            "N0000000\t[newtitle] An item this catalogue does not have",  # unknown_item
            f"{news[2]}\tno marker before the text",  # unparsable
            f"{news[3]}\t[newtitle] " + "far too long " * 30,  # schema (title cap)
            f"{news[0]}\t[newtitle] the same item again",  # duplicate
            "",  # blank lines are not lines of answers
        ],
    )
    (report,) = _import(world, db, [log], "summarizer", model="gpt-3.5-turbo")
    assert (report.lines_read, report.imported, report.duplicates) == (6, 2, 1)
    assert report.rejected == {"unknown_item": 1, "unparsable": 1, "schema": 1}
    stored = dict(
        _rows(
            db,
            "select item_key, parsed_json from enrichment.llm_responses "
            "where prompt_version = 'imported:book_summarizer' and model = 'gpt-3.5-turbo'",
        )
    )
    assert json.loads(stored[news[0]]) == {"title": "A clear and neutral title"}
    assert len(json.loads(stored[news[1]])["description"]) > 200  # released descriptions fit
    rejects = _rejects(db, "book_summarizer")
    assert [(n, reason) for n, reason, *_ in rejects] == [
        (3, "unknown_item"),
        (4, "unparsable"),
        (5, "schema"),
        (6, "duplicate"),
    ]
    provenance = _rows(
        db,
        "select item_key, source_file, line_number, source_format from enrichment.llm_imports "
        "where import_name = 'book_summarizer' order by line_number",
    )
    assert provenance == [
        (news[0], str(log.resolve()), 1, "genre_summaries"),
        (news[1], str(log.resolve()), 2, "genre_summaries"),
    ]
    # a second import of the same file adds nothing
    before = _rows(db, "select count(*) from enrichment.llm_responses")
    rejected_before = len(_rejects(db, "book_summarizer"))
    (again,) = _import(world, db, [log], "summarizer", model="gpt-3.5-turbo")
    assert (again.imported, again.already_imported, again.answers_written) == (0, 2, 0)
    assert _rows(db, "select count(*) from enrichment.llm_responses") == before
    assert len(_rejects(db, "book_summarizer")) == rejected_before


def test_released_profiles_with_a_user_vocabulary_are_pseudonymized(world, db, tmp_path):
    raw = _raw_users(world)
    vocab = _write(tmp_path / "users.txt", [raw[0], raw[1], raw[2], "U999999999", raw[3]])
    log = _write(
        tmp_path / "user_profiler.log",
        [
            json.dumps({"uid": 0, "interest": ["Ballet", "love stories", "Family"]}),
            json.dumps({"uid": 1, "interest": ["thrillers", "dark secrets"]}),
            json.dumps({"uid": 9, "interest": ["history"]}),  # no line 9: unknown_user
            json.dumps({"uid": 3, "interest": ["poetry"]}),  # a user the data does not have
            '{"uid": 2, "interest": ["cut off',  # unparsable
            json.dumps({"uid": 4, "interest": ["a very long interest of many words"]}),
            json.dumps({"uid": 0, "interest": ["again"]}),  # duplicate
        ],
    )
    (report,) = _import(
        world, db, [log], "profiler", model="gpt-3.5-turbo", user_vocab=str(vocab), topics="open"
    )
    assert (report.lines_read, report.imported, report.duplicates) == (7, 2, 1)
    assert report.rejected == {"unknown_user": 2, "unparsable": 1, "vocabulary": 1}
    stored = dict(
        _rows(
            db,
            "select item_key, parsed_json from enrichment.llm_responses "
            "where prompt_version = 'imported:user_profiler'",
        )
    )
    assert set(stored) == {_pseudonym(raw[0]), _pseudonym(raw[1])}
    assert json.loads(stored[_pseudonym(raw[0])])["topics"] == ["ballet", "love story", "family"]
    # raw user ids are stored nowhere
    dump = json.dumps(_rows(db, "select * from enrichment.llm_import_rejects"), default=str)
    dump += json.dumps(_rows(db, "select * from enrichment.llm_imports"), default=str)
    dump += json.dumps(_rows(db, "select * from enrichment.llm_responses"), default=str)
    assert not any(user in dump for user in raw[:4])
    reasons = {n: (reason, key) for n, reason, key, _ in _rejects(db, "user_profiler")}
    assert reasons[6] == ("vocabulary", _pseudonym(raw[3]))
    assert reasons[7] == ("duplicate", _pseudonym(raw[0]))


def test_mind_profiler_text_answers_with_topics_and_regions(world, db, tmp_path):
    raw = _raw_users(world)
    vocab = _write(tmp_path / "mind_users.txt", raw[:4])
    answers = [
        "[topics]\n- finance\n- Economy\n- weather\n[region] (optional)\n- New York\n- TX",
        "[topics]\n- travel",
        "[topics]\n- sports\n- gaming",  # none of GENRE's 19 topics: vocabulary
        "[hobbies]\n- knitting",  # an unknown section: unparsable
    ]
    log = _write(
        tmp_path / "mind_profiler.log",
        [json.dumps({"uid": i, "interest": a}) for i, a in enumerate(answers)],
    )
    (report,) = _import(
        world, db, [log], "profiler", model="gpt-3.5-turbo", user_vocab=str(vocab),
        topics="genre_news", regions="us_states",
    )  # fmt: skip
    assert report.imported == 2 and report.rejected == {"vocabulary": 1, "unparsable": 1}
    stored = dict(
        _rows(
            db,
            "select item_key, parsed_json from enrichment.llm_responses "
            "where prompt_version = 'imported:mind_profiler'",
        )
    )
    assert json.loads(stored[_pseudonym(raw[0])]) == {
        "topics": ["finance", "economy", "weather"],
        "regions": ["New York", "Texas"],
    }


def test_released_generator_logs_for_books_and_news(world, db, tmp_path):
    raw = _raw_users(world)
    vocab = _write(tmp_path / "users.txt", raw[:5])
    book = {"title": "The Quiet Harbour", "description": "A family saga on a northern coast."}
    news = {
        "title": "What comes next",
        "abstract": "A short story for a reader.",
        "category": "sports",
    }
    log = _write(
        tmp_path / "generator_v1.log",
        [
            json.dumps({"uid": 0, "news": json.dumps(news)}),
            json.dumps({"uid": 1, "news": json.dumps({**news, "category": "knitting"})}),
            json.dumps({"uid": 2, "news": '{"title": "cut'}),  # schema (not a JSON object)
            json.dumps({"uid": 3, "profile": "nothing to generate"}),  # unparsable
        ],
    )
    (report,) = _import(world, db, [log], "generator", model="gpt-3.5-turbo", user_vocab=str(vocab))
    assert report.imported == 1 and report.rejected == {
        "vocabulary": 1,
        "schema": 1,
        "unparsable": 1,
    }
    # books: one category, a description instead of an abstract
    books = _write(tmp_path / "books.log", [json.dumps({"uid": 4, "book": json.dumps(book)})])
    from genre_dagster.enrichment.choices import vocabulary_for
    from genre_dagster.enrichment.schemas import validate_output

    checked = validate_output("generator", book, vocabulary_for(["book"], "open", "off", "books"))
    assert checked.output == {**{"title": book["title"]}, "abstract": book["description"],
                              "category": "book"}  # fmt: skip
    (report,) = _import(world, db, [books], "generator", user_vocab=str(vocab))
    assert report.rejected == {"schema": 1}  # no category, and this catalogue has several


def test_any_jsonl_with_key_output_and_wrapping(world, db, tmp_path):
    news = [n for (n,) in _rows(db, "select news_id from main.stg_news order by news_id")]
    raw = _raw_users(world)
    titles = _write(
        tmp_path / "titles.jsonl",
        [
            json.dumps({"doc": news[0], "answer": "A plain new title"}),
            json.dumps({"doc": news[1], "answer": {"title": "An object answer"}}),
            json.dumps({"doc": news[2]}),  # no answer field: unparsable
        ],
    )
    (report,) = _import(
        world, db, [titles], "summarizer", model="m", key_field="doc", output_field="answer",
        wrap_as="title",
    )  # fmt: skip
    assert report.imported == 2 and report.rejected == {"unparsable": 1}
    interests = _write(
        tmp_path / "interests.jsonl",
        [
            json.dumps({"user": raw[0], "interests": ["jazz", "chess"]}),
            json.dumps({"user": "U123456789", "interests": ["golf"]}),  # unknown_user
        ],
    )
    (report,) = _import(
        world, db, [interests], "profiler", model="m", key_field="user",
        output_field="interests", wrap_as="topics", topics="open",
    )  # fmt: skip
    assert report.imported == 1 and report.rejected == {"unknown_user": 1}
    ((key, line),) = [(k, r) for _, _, k, r in _rejects(db, "interests")]
    assert key == _pseudonym("U123456789") and "U123456789" not in line
    assert json.loads(line)["user"] == _pseudonym("U123456789")


def test_batch_outputs_with_errors_other_roles_and_unknown_requests(world, db, tmp_path):
    _export(world, db, "summarizer", tmp_path / "in.jsonl", budget=3)
    answer_batch(tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    failed = json.loads(lines[1])
    failed["response"] = None
    failed["error"] = {"code": "server_error", "message": "The server had an error"}
    lines[1] = json.dumps(failed)
    other = json.loads(lines[2])
    stranger = {
        **other,
        "custom_id": other["custom_id"].replace("genre:summarizer", "genre:profiler"),
    }
    unknown = {**other, "custom_id": "request-42"}
    _write(tmp_path / "out.jsonl", [*lines, json.dumps(stranger), json.dumps(unknown), lines[0]])
    (report,) = _import(world, db, [tmp_path / "out.jsonl"], "summarizer")
    assert (report.lines_read, report.imported, report.duplicates) == (6, 2, 1)
    assert report.rejected == {"llm_error": 1, "other_role": 1, "unknown_request": 1}


# ------------------------------------------------------------------ publication and roles


def test_a_profile_and_a_synthetic_item_for_the_same_user_both_survive(world, db, tmp_path):
    cold = sorted(_cold_users(db))
    raw_by_pseudonym = {_pseudonym(u): u for u in _raw_users(world)}
    user = raw_by_pseudonym[cold[0]]
    vocab = _write(tmp_path / "users.txt", [user])
    profile = _write(tmp_path / "profile.jsonl", [json.dumps({"uid": 0, "interest": ["sports"]})])
    item = {"title": "Next up", "abstract": "A match report.", "category": "sports"}
    generated = _write(tmp_path / "gen.jsonl", [json.dumps({"uid": 0, "news": json.dumps(item)})])
    _import(world, db, [profile], "profiler", model="m", user_vocab=str(vocab))
    _import(world, db, [generated], "generator", model="m", user_vocab=str(vocab))
    materialize(world, db, enrichment_assets())
    profiles = _rows(
        db,
        "select topics, prompt_version from enrichment.user_profiles where user_id = ?",
        [cold[0]],
    )
    items = _rows(
        db,
        "select title, prompt_version from enrichment.synthetic_items where user_id = ?",
        [cold[0]],
    )
    assert profiles == [(["sports"], "imported:profile")]
    assert items == [("Next up", "imported:gen")]
    # the launchpad can switch imports off for a role
    off = {"ops": {"enrichment__user_profiles": {"config": {"budget": 0, "use_imported": False}}}}
    metadata = materialize(world, db, enrichment_assets(), off)
    assert metadata["user_profiles"]["imported"] == 0
    assert metadata["synthetic_items"]["imported"] == 1


def test_the_import_job_runs_from_the_launchpad(world, db, tmp_path):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from genre_dagster.llm_outputs import import_llm_outputs_job

    news = [n for (n,) in _rows(db, "select news_id from main.stg_news order by news_id limit 2")]
    log = _write(tmp_path / "ui.tsv", [f"{n}\t[newtitle] Title of {n}" for n in news])
    resources = dict(world["defs"].resources)
    resources["duckdb"] = DuckDBResource(database=str(db))
    config = {"files": [str(log)], "role": "summarizer", "model": "ui-model"}
    with dg.instance_for_test() as instance:
        result = import_llm_outputs_job.execute_in_process(
            run_config={"ops": {"import_answer_files": {"config": config}}},
            resources={k: resources[k] for k in ("duckdb", "privacy", "source")},
            instance=instance,
        )
    assert result.success
    (observation,) = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    assert observation.asset_key.path == ["enrichment", "news_summaries"]
    assert observation.metadata["imported"].value == 2
    assert world["defs"].resolve_job_def("import_llm_outputs") is not None


HOLD_THE_LOCK = """
import sys, time
from genre_dagster.duckdb_lock import connect
with connect(sys.argv[1], "nightly run (test)") as conn:
    open(sys.argv[2], "w").close()
    conn.execute("create table if not exists main.nightly_marker (n integer)")
    time.sleep(3)
    conn.execute("insert into main.nightly_marker values (1)")
"""


def test_an_import_during_a_nightly_write_waits_for_the_lock_and_loses_nothing(world, db, tmp_path):
    news = [n for (n,) in _rows(db, "select news_id from main.stg_news order by news_id")]
    log = _write(tmp_path / "during.tsv", [f"{n}\t[newtitle] Title of {n}" for n in news])
    started = tmp_path / "holding"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(db), str(started)])
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert holder.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        begin = time.monotonic()
        (report,) = _import(world, db, [log], "summarizer", model="m")
        waited = time.monotonic() - begin
    finally:
        holder.wait(timeout=60)
    assert holder.returncode == 0
    assert waited > 1.5  # it waited for the other writer instead of failing
    assert report.imported == len(news)
    assert _rows(db, "select count(*) from main.nightly_marker") == [(1,)]
    assert _rows(
        db, "select count(*) from enrichment.llm_responses where prompt_version = 'imported:during'"
    ) == [(len(news),)]


# ------------------------------------------------------------------------------------ CLI


def test_cli_export_and_import_use_the_deployment_key(world, tmp_path, monkeypatch, capsys):
    from genre_dagster import cli

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(world["settings"].duckdb_path, data / "genre.duckdb")
    for name, value in {
        "GENRE_ENV": "prod",
        "GENRE_EXECUTOR": "multiprocess",
        "GENRE_PSEUDONYM_KEY": "a-secret-deployment-key",
        "GENRE_DATA_DIR": str(data),
        "GENRE_SOURCE": "mind",
        "GENRE_SOURCE_PATH": str(world["root"] / "mind"),
        "GENRE_LLM_BACKEND": "openai",
        "GENRE_LLM_BASE_URL": "http://127.0.0.1:9/v1",
        "GENRE_LLM_MODEL": "no-llm",
    }.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "batch.jsonl"
    assert (
        cli.main(
            [
                "llm",
                "export",
                "--role",
                "summarizer",
                "--budget",
                "2",
                "--out",
                str(out),
                "--model",
                "gpt-x",
            ]
        )
        == 0
    )
    assert len(out.read_text().splitlines()) == 2
    assert "2 requests for 2" in capsys.readouterr().out
    raw = _raw_users(world)[0]
    vocab = _write(tmp_path / "u.txt", [raw])
    log = _write(tmp_path / "p.jsonl", [json.dumps({"uid": 0, "interest": ["news"]})])
    assert (
        cli.main(
            [
                "llm",
                "import",
                str(log),
                "--role",
                "profiler",
                "--user-vocab",
                str(vocab),
                "--model",
                "gpt-3.5-turbo",
            ]
        )
        == 0
    )
    # the world was ingested under the local demo key: under this deployment's own key the
    # user is another pseudonym, which the data does not hold (and the key is the secret's,
    # not the name of its environment variable)
    assert "unknown_user: 1" in capsys.readouterr().out
    keys = _rows(
        data / "genre.duckdb",
        "select item_key from enrichment.llm_import_rejects where import_name = 'p'",
    )
    assert keys == [(pseudonym(raw, b"a-secret-deployment-key"),)]


# ----------------------------------------------------------------------- demo oracle answers


def _answers(path: Path) -> list[str]:
    """The answers of a file without their keys."""
    lines = path.read_text().splitlines()
    if path.suffix == ".tsv":
        return [line.split("\t", 1)[1] for line in lines]
    return [json.dumps({k: v for k, v in json.loads(line).items() if k != "uid"}) for line in lines]


def test_the_demo_writes_informative_and_shuffled_answers_the_import_reads(world, db, tmp_path):
    from genre_dagster.demo.oracle import category_tastes, topic_sentence, write_oracle_answers
    from genre_dagster.demo.world import World

    config, out = world["config"], tmp_path / "answers"
    files = write_oracle_answers(config, world["root"] / "mind", out)
    good, shuffled = files["informative"], files["shuffled"]
    news = dict(_rows(db, "select news_id, category || '/' || subcategory from main.stg_news"))
    for line in good["summaries"].read_text().splitlines():
        news_id, text = line.split("\t")
        category, subcategory = news[news_id].split("/")
        assert text == "[newtitle] " + topic_sentence(category, subcategory)
    # profiles name each user's top categories by latent taste
    demo = World(config)
    tastes = category_tastes(demo)
    row = {u: i for i, u in enumerate(demo.users.ids)}
    users = good["users"].read_text().splitlines()
    first = json.loads(good["profiles"].read_text().splitlines()[0])
    best = demo.taxonomy.categories[int(tastes[row[users[first["uid"]]]].argmax())]
    assert first["interest"].splitlines()[:2] == ["[topics]", f"- {best}"]
    # the control holds the same answers, given to other items and users
    for kind in ("summaries", "profiles", "generated"):
        a, b = _answers(good[kind]), _answers(shuffled[kind])
        assert sorted(a) == sorted(b) and a != b, kind
    vocab = str(good["users"])
    reports = [
        *_import(world, db, [good["summaries"]], "summarizer", model="oracle"),
        *_import(world, db, [good["profiles"]], "profiler", model="oracle", user_vocab=vocab),
        *_import(world, db, [good["generated"]], "generator", model="oracle", user_vocab=vocab),
    ]
    for report in reports:
        assert report.rejected_total == 0 and report.imported == report.lines_read > 0


def test_the_demo_command_writes_llm_answers(tmp_path, monkeypatch):
    from genre_dagster import cli

    monkeypatch.setenv("GENRE_DATA_DIR", str(tmp_path / "data"))
    args = ["demo", "--out", str(tmp_path / "world"), "--llm-answers", str(tmp_path / "llm")]
    assert cli.main(args) == 0
    for variant in ("informative", "shuffled"):
        names = sorted(p.name for p in (tmp_path / "llm" / variant).iterdir())
        assert names == ["generated.jsonl", "profiles.jsonl", "summaries.tsv", "users.txt"]
