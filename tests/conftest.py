"""Test session setup: offline models, no telemetry, a prepared dbt manifest."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers (pytest-xdist) on these 2-core machines: one math
    # thread each, so they do not fight over the cores. Set before torch or NumPy load.
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# `@dbt_assets` needs the manifest when the definitions are imported (at collection time).
if not (ROOT / "dbt_project" / "target" / "manifest.json").exists():
    from genre_dagster.cli import prepare_dbt

    print("preparing the dbt manifest for the test session", file=sys.stderr)
    prepare_dbt()


import dagster as dg  # noqa: E402
import pytest  # noqa: E402

# A small generated MIND-format world: fast enough for CI, big enough for every stage.
TINY = dict(n_news=500, n_users=300, n_days=4, impressions_per_day=120, seed=11)
# The DuckDB memory limit of the session's runs (every connection of the project and dbt's):
# low, so the first nightly run doubles as the memory-bounded run of issue 19 (spilling to the
# data dir's duckdb_tmp where a query outgrows it).
DUCKDB_MEMORY_LIMIT = "256MB"
# The LLM key of the session's runs: set in the environment only, as in production, so the
# security test can look for it everywhere the runs leave traces.
LLM_API_KEY = "sk-genre-test-" + os.urandom(12).hex()


@pytest.fixture(scope="session")
def news_world(tmp_path_factory):
    """A generated news world after its first nightly run through the whole graph, with a fake
    OpenAI-compatible LLM on loopback. Session-scoped: several modules read it."""
    from llm_fakes import fake_llm_server

    from genre_dagster.definitions import build_definitions
    from genre_dagster.demo import DemoWorldConfig, generate_world
    from genre_dagster.pipeline import refresh
    from genre_dagster.settings import Settings

    os.environ["GENRE_LLM_API_KEY"] = LLM_API_KEY
    # kept for the session, as a deployment sets it; a value set outside the tests wins
    os.environ.setdefault("GENRE_DUCKDB_MEMORY_LIMIT", DUCKDB_MEMORY_LIMIT)
    root = tmp_path_factory.mktemp("genre")
    config = DemoWorldConfig(**TINY)
    summary = generate_world(config, root / "mind")
    home = root / "dagster_home"
    home.mkdir()
    with fake_llm_server() as server, dg.instance_for_test(temp_dir=str(home)) as instance:
        settings = Settings(
            env="local",
            data_dir=root / "data",
            source_kind="mind",
            source_path=root / "mind",
            landing_dir=root / "landing",
            demo_preset="small",
            llm_backend="openai",
            llm_base_url=server.base_url,
            llm_model="fake-genre",
        )
        defs = build_definitions(settings)
        # as `genre-dagster run` does: a line per finished step, the whole log in a file
        step_lines: list[str] = []
        log_file = root / "logs" / "run.log"
        report = refresh(defs, instance, on_step=step_lines.append, log_file=log_file)
        yield {
            "step_lines": step_lines,
            "log_file": log_file,
            "root": root,
            "config": config,
            "summary": summary,
            "settings": settings,
            "defs": defs,
            "instance": instance,
            "report": report,
            "llm_server": server,
            "duckdb_memory_limit": os.environ["GENRE_DUCKDB_MEMORY_LIMIT"],
        }


@pytest.fixture(scope="module")
def world(news_world):
    """The session's news world as its first nightly run left it, for the `test_first_night_*`
    modules. Fails instead of handing out a world that test_later_nights.py has moved on."""
    assert not news_world.get("later_nights"), "a first-night test ran after the later nights"
    return news_world


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "later_nights: adds nights to the session's news world; runs after all others"
    )


# The test modules that read the session's `news_world` (directly or through a fixture). `make
# test` runs the suite on two workers (pytest-xdist, `--dist loadscope`): each other module is a
# unit of work, these are one unit together, so the world is built once, on one worker, and its
# `later_nights` tests still run after its other readers. Checked against the collection below.
NEWS_WORLD_MODULES = frozenset(
    f"tests/test_{name}.py"
    for name in (
        "first_night_embeddings", "first_night_enrichment", "first_night_evaluation",
        "first_night_monitoring", "first_night_run_summary", "first_night_serving",
        "first_night_steering", "first_night_warehouse", "generic_source", "inactive_plugins",
        "later_nights",
    )
)  # fmt: skip


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """Tests marked `later_nights` change the session's `news_world`: they run after every other
    test (in their own order), so whatever order the files are collected or listed in, each
    first-night reader sees the first night. (test_generic_source.py and test_inactive_plugins.py
    use the world's models and a copy of its database; they pass on either state.)

    Fails the collection when a module that reads the world is missing from
    NEWS_WORLD_MODULES: it would build a second world on the other worker, and a later-nights
    module there would run before the first-night readers."""
    later = [item for item in items if item.get_closest_marker("later_nights")]
    if later:
        moved = set(later)
        items[:] = [item for item in items if item not in moved] + later
    readers = {_module_of(i.nodeid) for i in items if "news_world" in i.fixturenames}
    if readers - NEWS_WORLD_MODULES:
        raise pytest.UsageError(
            f"add {sorted(readers - NEWS_WORLD_MODULES)} to NEWS_WORLD_MODULES in tests/conftest.py"
        )


def _module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadscope` with the NEWS_WORLD_MODULES as one scope (see above). (Not
    `xdist_group` marks: pytest-xdist 3.8 reads them through a node-id rewrite that pytest 9.2
    no longer applies, pytest-xdist issue 1386.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class NewsWorldScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = _module_of(nodeid)
            return "news_world" if module in NEWS_WORLD_MODULES else module

    return NewsWorldScheduling(config, log)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (used by the neural test modules through
    `pytestmark`): the machine is shared, and one thread keeps runs short and free of
    oversubscription."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_llama():
    """A 2-layer Llama and a byte-level BPE tokenizer trained on a few lines (no download)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    corpus = ["news about sports, finance and health", '{"title": "a neutral title"}'] * 4
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=320,
            special_tokens=["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", eos_token="<|im_end|>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    return LlamaForCausalLM(config).eval(), tokenizer
