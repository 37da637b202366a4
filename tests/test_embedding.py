"""Encoders, decoder hidden states, text fields and the embedding cache.

Tiny BERT / GPT-2 / Llama models are built from configs (random weights, a tokenizer written
here) to exercise the code paths; the real offline MiniLM checks meaning; the real SmolLM2 GGUF
test is marked slow.
"""

from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

from tiny_models import save_tiny_bert  # noqa: E402

from genre_dagster.embedding import devices  # noqa: E402
from genre_dagster.embedding.cache import EmbeddingCache, embed_with_cache  # noqa: E402
from genre_dagster.embedding.decoder import DecoderConfig, DecoderEncoder  # noqa: E402
from genre_dagster.embedding.encoder import EncoderConfig, TextEncoder  # noqa: E402
from genre_dagster.embedding.fields import (  # noqa: E402
    build_item_texts,
    build_profile_texts,
    text_hash,
)

WORDS = (
    "the a of to in and on for is was city club wins derby after late penalty stocks slide as "
    "bond yields climb third day study links daily walks better sleep older adults heavy snow "
    "expected across northern plains this weekend football match goal coach market bank rates"
).split()

TEXTS = [
    "city club wins derby after late penalty",
    "stocks slide",
    "study links daily walks to better sleep in older adults",
    "heavy snow",
    "football",
    "the bank rates climb as bond yields climb for a third day on the market",
    "coach",
]


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A 2-layer BERT with random weights and a word-piece vocabulary written here."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), WORDS, layers=2)


def _word_tokenizer(bos: bool):
    """A whitespace word-level fast tokenizer without a pad token (like GPT-2's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 1)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    ), len(vocab)


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def tiny_decoder(request, tmp_path_factory) -> str:
    """A 2-layer causal LM folder (GPT-2 or Llama) with random weights."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp(f"tiny_{request.param}")
    tokenizer, size = _word_tokenizer(bos=request.param == "llama")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    if request.param == "gpt2":
        cfg = GPT2Config(vocab_size=size, n_embd=32, n_layer=2, n_head=2, n_positions=64)
        model = GPT2LMHeadModel(cfg)
    else:
        cfg = LlamaConfig(
            vocab_size=size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=64,
        )
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    return str(folder)


def _bert(path: str, **kw) -> TextEncoder:
    kw.setdefault("dtype", "fp32")
    return TextEncoder(EncoderConfig(model_path=path, device="cpu", **kw))


# ---- devices and dtypes ----


def test_resolve_device_auto_and_explicit(monkeypatch):
    monkeypatch.setattr(devices, "_cuda_available", lambda: False)
    monkeypatch.setattr(devices, "_mps_available", lambda: False)
    assert devices.resolve_device("auto") == "cpu"
    assert devices.resolve_device("CPU") == "cpu"
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        devices.resolve_device("cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        devices.resolve_device("cuda:0")
    with pytest.raises(RuntimeError, match="MPS is not available"):
        devices.resolve_device("mps")
    with pytest.raises(RuntimeError, match="no accelerator"):
        devices.resolve_device("auto", require=True)
    with pytest.raises(ValueError, match="device must be one of"):
        devices.resolve_device("tpu")
    monkeypatch.setattr(devices, "_mps_available", lambda: True)
    assert devices.resolve_device("auto") == "mps"
    monkeypatch.setattr(devices, "_cuda_available", lambda: True)
    assert devices.resolve_device("auto", require=True) == "cuda"


def test_encoder_refuses_cuda_without_cuda(tiny_bert):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        TextEncoder(EncoderConfig(model_path=tiny_bert, device="cuda"))


def test_dtype_mapping(monkeypatch):
    import torch

    with pytest.raises(ValueError, match="fp16' is not supported on the CPU"):
        devices.resolve_dtype_name("fp16", "cpu")
    with pytest.raises(ValueError, match="dtype must be one of"):
        devices.resolve_dtype_name("int8", "cpu")
    assert devices.resolve_dtype_name("auto", "cuda") == "fp16"
    assert devices.resolve_dtype_name("bf16", "cpu") == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: True)
    assert devices.resolve_dtype_name("auto", "cpu") == "bf16"
    monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)
    assert devices.resolve_dtype_name("auto", "cpu") == "fp32"
    assert devices.torch_dtype("bf16") is torch.bfloat16
    assert devices.torch_dtype("fp32") is torch.float32


# ---- encoder ----


def test_pooling_modes_match_hidden_states(tiny_bert):
    import torch
    from transformers import AutoModel, AutoTokenizer

    text = TEXTS[2]
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert, attn_implementation="eager").eval()
    with torch.inference_mode():
        hidden = model(**tok([text], return_tensors="pt")).last_hidden_state[0].numpy()
    expected = {"mean": hidden.mean(0), "cls": hidden[0], "last": hidden[-1]}
    for mode, want in expected.items():
        got = _bert(tiny_bert, pooling=mode, normalize=False).encode([text])
        assert got.shape == (1, 32) and got.dtype == np.float32
        np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5, err_msg=mode)


@pytest.mark.parametrize("pooling", ["mean", "cls", "last"])
def test_sorted_batches_equal_one_by_one(tiny_bert, pooling):
    enc = _bert(tiny_bert, pooling=pooling, batch_size=3, normalize=False)
    batched = enc.encode(TEXTS)
    single = np.stack([enc.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)
    # Rows follow the input order, not the length order used inside.
    assert not np.allclose(batched[0], batched[1])


def test_dedup_encodes_each_text_once_and_reports_progress(tiny_bert):
    enc = _bert(tiny_bert, batch_size=2)
    seen: list[int] = []
    original = enc.tokenize
    enc.tokenize = lambda texts: seen.append(len(texts)) or original(texts)  # type: ignore[method-assign]
    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[3], TEXTS[1], TEXTS[0]]
    progress: list[tuple[int, int]] = []
    out = enc.encode(texts, on_progress=lambda d, t: progress.append((d, t)))
    assert seen == [3]
    assert out.shape == (6, 32)
    np.testing.assert_array_equal(out[0], out[2])
    np.testing.assert_array_equal(out[0], out[5])
    np.testing.assert_array_equal(out[1], out[4])
    assert progress[-1] == (6, 6)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_chunked_tokenization_gives_same_vectors(tiny_bert, monkeypatch):
    from genre_dagster.embedding import batching

    enc = _bert(tiny_bert, batch_size=2)
    whole = enc.encode(TEXTS + TEXTS[:2])
    monkeypatch.setattr(batching, "TOKENIZE_CHUNK", 3)
    progress: list[tuple[int, int]] = []
    chunked = enc.encode(TEXTS + TEXTS[:2], on_progress=lambda d, t: progress.append((d, t)))
    np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-5)
    assert progress[-1] == (9, 9)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_normalization_and_empty_input(tiny_bert):
    normed = _bert(tiny_bert, normalize=True).encode(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, rtol=1e-5)
    raw = _bert(tiny_bert, normalize=False).encode(TEXTS)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert _bert(tiny_bert).encode([]).shape == (0, 32)
    with pytest.raises(ValueError, match="not a single string"):
        _bert(tiny_bert).encode("one text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="text 1 is int"):
        _bert(tiny_bert).encode(["ok", 3])  # type: ignore[list-item]


def test_bf16_reported_and_close_to_fp32(tiny_bert):
    fp32 = _bert(tiny_bert)
    bf16 = _bert(tiny_bert, dtype="bf16")
    assert (fp32.dtype, bf16.dtype, bf16.device) == ("fp32", "bf16", "cpu")
    a, b = fp32.encode(TEXTS), bf16.encode(TEXTS)
    assert b.dtype == np.float32
    assert float((a * b).sum(1).min()) > 0.99
    assert fp32.model_id != bf16.model_id


def test_model_id_names_what_changes_vectors(tiny_bert):
    base = _bert(tiny_bert)
    ids = {
        base.model_id,
        _bert(tiny_bert, pooling="cls").model_id,
        _bert(tiny_bert, normalize=False).model_id,
        _bert(tiny_bert, max_length=16).model_id,
    }
    assert len(ids) == 4
    assert _bert(tiny_bert, batch_size=1).model_id == base.model_id  # speed-only setting


def test_bad_config_and_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="pooling must be one of"):
        EncoderConfig(pooling="max")
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        TextEncoder(EncoderConfig(model_path=str(tmp_path / "nope"), device="cpu"))


# ---- decoder hidden states ----


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_decoder_padding_matches_unpadded(tiny_decoder, side, pooling):
    cfg = DecoderConfig(
        model_path=tiny_decoder, device="cpu", dtype="fp32", batch_size=4,
        padding_side=side, pooling=pooling,
    )  # fmt: skip
    enc = DecoderEncoder(cfg)
    batched = enc.encode(TEXTS)
    single = np.stack([enc.encode([t])[0] for t in TEXTS])
    assert batched.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-5)


def test_decoder_layer_choice(tiny_decoder):
    import torch
    from transformers import AutoModel, AutoTokenizer

    text = TEXTS[0]
    tok = AutoTokenizer.from_pretrained(tiny_decoder)
    model = AutoModel.from_pretrained(tiny_decoder).eval()
    with torch.inference_mode():
        states = model(**tok([text], return_tensors="pt"), output_hidden_states=True)
    states = [h[0].numpy() for h in states.hidden_states]
    for layer in (0, 1, -2, -1):
        cfg = DecoderConfig(model_path=tiny_decoder, device="cpu", dtype="fp32", layer=layer)
        got = DecoderEncoder(cfg).encode([text])[0]
        np.testing.assert_allclose(got, states[layer][-1], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        DecoderEncoder(DecoderConfig(model_path=tiny_decoder, device="cpu", layer=5))


# ---- real MiniLM ----


def test_minilm_meaning_and_agreement_with_sentence_transformers():
    from sentence_transformers import SentenceTransformer

    from genre_dagster.embedding.modelfiles import default_encoder_path

    texts = [
        "Late penalty gives United a derby win over City in the Premier League",
        "Striker scores twice as the home side beats its rivals in the football cup final",
        "Central bank raises interest rates again as inflation stays high",
    ]
    fast = TextEncoder(EncoderConfig(device="cpu", num_threads=2))  # dtype auto
    exact = TextEncoder(EncoderConfig(device="cpu", dtype="fp32", num_threads=2))
    assert fast.dim == 384 and fast.device == "cpu"
    v = fast.encode(texts)
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 2] + 0.1 and sim[0, 1] > sim[1, 2] + 0.1
    reference = SentenceTransformer(str(default_encoder_path()), device="cpu").encode(texts)
    np.testing.assert_allclose((exact.encode(texts) * reference).sum(1), 1.0, atol=1e-5)
    assert float((v * reference).sum(1).min()) > 0.995


@pytest.mark.slow
def test_smollm2_gguf_hidden_states():
    from genre_dagster.embedding.modelfiles import smollm2_gguf_path

    gguf = smollm2_gguf_path()
    cfg = DecoderConfig(
        model_path=str(gguf.parent), gguf_file=gguf.name, device="cpu", dtype="fp32",
        padding_side="left", num_threads=2,
    )  # fmt: skip
    enc = DecoderEncoder(cfg)
    texts = ["Stocks slide as bond yields climb", "Snow"]
    batched = enc.encode(texts)
    assert batched.shape == (2, 576) and np.isfinite(batched).all()
    np.testing.assert_allclose(batched[1], enc.encode(texts[1:])[0], rtol=1e-3, atol=1e-3)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in enc.model_id


# ---- text fields ----


def _news() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "news_id": ["N1", "N2", "N3", "N4"],
            "title": ["City wins derby", "Stocks slide", "Heavy snow", "Coach leaves"],
            "abstract": ["A late penalty.", "", None, "After ten years."],
            "category": ["sports", "finance", "weather", "sports"],
            "summary": ["Derby decided late", None, "  ", "Coach quits club"],
        }
    )


def _next_day_news(news: pl.DataFrame, drop: str | None = None) -> pl.DataFrame:
    """`news` a day later: N2 retitled, N5 added (empty abstract), `drop` gone."""
    kept = news if drop is None else news.filter(pl.col("news_id") != drop)
    changed = kept.with_columns(
        pl.when(pl.col("news_id") == "N2").then(pl.lit("Stocks rally")).otherwise("title")
        .alias("title")
    )  # fmt: skip
    extra = pl.DataFrame(
        {"news_id": ["N5"], "title": ["Snow again"], "abstract": [""], "category": ["weather"],
         "summary": [None]},
        schema=changed.schema,
    )  # fmt: skip
    return pl.concat([changed, extra])


def test_item_fields_and_fallbacks():
    news = _news()
    expected = {
        "title": (["City wins derby", "Stocks slide", "Heavy snow", "Coach leaves"], 0),
        "abstract": (["A late penalty.", "Stocks slide", "Heavy snow", "After ten years."], 2),
        "title_abstract": (
            ["City wins derby A late penalty.", "Stocks slide", "Heavy snow",
             "Coach leaves After ten years."], 0,
        ),
        "summary": (["Derby decided late", "Stocks slide", "Heavy snow", "Coach quits club"], 2),
        "summary_replace": (
            ["Derby decided late A late penalty.", "Stocks slide", "Heavy snow",
             "Coach quits club After ten years."], 2,
        ),
        "summary_append": (
            ["City wins derby A late penalty. sports Derby decided late", "Stocks slide finance",
             "Heavy snow weather", "Coach leaves After ten years. sports Coach quits club"], 2,
        ),
    }  # fmt: skip
    for field, (texts, fallbacks) in expected.items():
        out = build_item_texts(news, field)
        assert out.columns == ["news_id", "text", "text_hash", "used_fallback"]
        assert out["text"].to_list() == texts, field
        assert int(out["used_fallback"].sum()) == fallbacks, field
        assert out["text_hash"].to_list() == [text_hash(t) for t in texts]


def test_item_fields_reject_bad_input():
    news = _news()
    with pytest.raises(ValueError, match="lacks columns \\['summary'\\]"):
        build_item_texts(news.drop("summary"), "summary")
    assert build_item_texts(news.drop("summary"), "title").height == 4
    with pytest.raises(ValueError, match="empty title"):
        build_item_texts(news.with_columns(pl.lit(" ").alias("title")), "title")
    with pytest.raises(ValueError, match="text field must be one of"):
        build_item_texts(news, "body")


def test_profile_texts():
    profiles = pl.DataFrame(
        {
            "user_id": ["u1", "u2", "u3"],
            "topics": [["sports", " ", "finance"], [], ["health"]],
            "regions": [["Texas"], None, []],
        }
    )
    out = build_profile_texts(profiles)
    assert out.select("user_id", "kind", "rank", "text").rows() == [
        ("u1", "topic", 0, "sports"),
        ("u1", "topic", 1, "finance"),
        ("u3", "topic", 0, "health"),
        ("u1", "region", 0, "Texas"),
    ]
    assert out["text_hash"][0] == text_hash("sports")


# ---- cache ----


def test_cache_encodes_only_changed_texts(tiny_bert, tmp_path):
    enc = _bert(tiny_bert, batch_size=4)
    cache = EmbeddingCache(tmp_path / "genre.duckdb")
    news = _news()
    first_df = build_item_texts(news, "title_abstract")
    # A repeated row: same text twice is encoded once.
    first_df = pl.concat([first_df, first_df.head(1)])
    first, stats = embed_with_cache(first_df, enc, cache)
    assert {k: stats[k] for k in ("texts", "unique_texts", "encoded", "reused")} == {
        "texts": 5, "unique_texts": 4, "encoded": 4, "reused": 0,
    }  # fmt: skip
    np.testing.assert_allclose(first, enc.encode(first_df["text"].to_list()), atol=1e-6)
    assert cache.count(enc.model_id) == 4

    second_df = build_item_texts(_next_day_news(news), "title_abstract")
    second, stats = embed_with_cache(second_df, enc, cache)
    assert (stats["encoded"], stats["reused"], stats["texts"]) == (2, 3, 5)
    assert stats["texts_per_second"] > 0 and stats["seconds"] >= stats["encode_seconds"]
    # Unchanged items come back exactly as first stored; new ones equal a fresh encode.
    np.testing.assert_array_equal(second[[0, 2, 3]], first[[0, 2, 3]])
    np.testing.assert_allclose(second, enc.encode(second_df["text"].to_list()), atol=1e-6)
    assert cache.count(enc.model_id) == 6

    again, stats = embed_with_cache(second_df, enc, cache)
    assert stats["encoded"] == 0 and stats["reused"] == 5
    np.testing.assert_array_equal(again, second)
    # Another model_id shares nothing.
    _, stats = embed_with_cache(second_df, enc, cache, model_id=enc.model_id + "|other")
    assert stats["encoded"] == 5


def test_cache_store_lookup_and_errors(tmp_path):
    import duckdb

    path = tmp_path / "c.duckdb"
    cache = EmbeddingCache(lambda: duckdb.connect(str(path)), table="emb.vectors")
    matrix = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert cache.store("m", ["h1", "h2", "h1"], matrix) == 2
    assert cache.store("m", ["h2", "h3"], matrix[:2]) == 1
    got = cache.lookup("m", ["h3", "h9", "h1"])
    assert set(got) == {"h3", "h1"}
    np.testing.assert_array_equal(got["h1"], matrix[0])
    np.testing.assert_array_equal(got["h3"], matrix[1])
    assert cache.lookup("other", ["h1"]) == {}
    with duckdb.connect(str(path)) as con:  # the cache left no connection open
        assert con.execute("SELECT count(*) FROM emb.vectors").fetchone()[0] == 3
        assert con.execute("SELECT DISTINCT dim FROM emb.vectors").fetchall() == [(4,)]
    with pytest.raises(ValueError, match="NaN"):
        cache.store("m", ["h4"], np.full((1, 4), np.nan, dtype=np.float32))
    with pytest.raises(ValueError, match="does not match"):
        cache.store("m", ["h4", "h5"], matrix[:1])
    with pytest.raises(ValueError, match="schema.name"):
        EmbeddingCache(path, table="x; DROP TABLE y")
    bad = pl.DataFrame({"text": ["a"], "text_hash": [text_hash("b")]})
    with pytest.raises(ValueError, match="not sha256"):
        embed_with_cache(bad, object(), cache, model_id="m")  # type: ignore[arg-type]


def _materialize_news_embeddings(
    tiny_bert, database, news, fields=("title", "title_abstract"), **encoder_kw
):
    """Run the news_embeddings asset on `news` (written as main.stg_news) and return its
    metadata and the stored table."""
    import dagster as dg
    import duckdb
    from dagster_duckdb import DuckDBResource

    from genre_dagster.assets.embeddings import EmbeddingConfig, news_embeddings
    from genre_dagster.resources.encoder import EncoderResource

    stg = news.select("news_id", "title", "abstract", "category")  # noqa: F841 (SQL below)
    with duckdb.connect(str(database)) as conn:
        conn.execute("create schema if not exists main")
        conn.execute("create or replace table main.stg_news as select * from stg")
    result = news_embeddings(
        context=dg.build_asset_context(),
        config=EmbeddingConfig(fields=list(fields)),
        summaries=pl.DataFrame(schema={"news_id": pl.Utf8, "summary": pl.Utf8}),
        synthetic=pl.DataFrame(schema={c: pl.Utf8 for c in stg.columns}),
        encoder=EncoderResource(model_path=tiny_bert, batch_size=4, **encoder_kw),
        duckdb=DuckDBResource(database=str(database)),
    )
    with duckdb.connect(str(database)) as conn:
        table = pl.from_arrow(
            conn.sql(
                "select field, news_id, text_hash, model_id, vector "
                "from embeddings.news_embeddings order by field, news_id"
            ).to_arrow_table()
        )
    return {k: getattr(v, "value", v) for k, v in result.metadata.items()}, table


def test_news_embeddings_table_is_updated_in_place(tiny_bert, tmp_path):
    import duckdb

    database = tmp_path / "genre.duckdb"
    # a table in the layout before text_hash/model_id existed is replaced, not patched
    with duckdb.connect(str(database)) as conn:
        conn.execute("create schema embeddings")
        conn.execute(
            "create table embeddings.news_embeddings as "
            "select 'N9' as news_id, 'title' as field, [1.0, 2.0]::float[] as vector"
        )
    news = _news()
    meta, first = _materialize_news_embeddings(tiny_bert, database, news)
    assert (meta["dagster/row_count"], meta["rows_written"], meta["rows_deleted"]) == (8, 8, 0)
    assert set(first["news_id"]) == {"N1", "N2", "N3", "N4"}

    # N2 retitled, N3 gone, N5 new: only their rows change; N2's and N5's title_abstract is
    # their title (empty abstract), so those texts come from the cache
    later = _next_day_news(news, drop="N3")
    meta, second = _materialize_news_embeddings(tiny_bert, database, later)
    assert (meta["dagster/row_count"], meta["rows_written"], meta["rows_deleted"]) == (8, 4, 4)
    assert meta["rows_unchanged"] == 4
    assert (meta["texts_encoded"], meta["texts_reused"]) == (2, 6)
    assert set(second["news_id"]) == {"N1", "N2", "N4", "N5"}
    kept = second.filter(pl.col("news_id").is_in(["N1", "N4"]))
    assert kept.equals(first.filter(pl.col("news_id").is_in(["N1", "N4"])))
    # every stored vector is the encoding of the item's current text
    encoder = _bert(tiny_bert, batch_size=4)
    texts = pl.concat(
        [
            build_item_texts(later, f).with_columns(field=pl.lit(f))
            for f in ("title", "title_abstract")
        ]
    ).sort("field", "news_id")
    assert second["text_hash"].to_list() == texts["text_hash"].to_list()
    np.testing.assert_allclose(
        np.array(second["vector"].to_list()), encoder.encode(texts["text"].to_list()), atol=1e-5
    )

    # another encoder configuration: every row is rewritten under the new model id
    meta, third = _materialize_news_embeddings(tiny_bert, database, later, normalize=False)
    assert (meta["dagster/row_count"], meta["rows_written"]) == (8, 8)
    assert third["model_id"].n_unique() == 1 and third["model_id"][0] != second["model_id"][0]

    with pytest.raises(ValueError, match="more than once"):
        _materialize_news_embeddings(tiny_bert, database, later, fields=("title", "title"))
