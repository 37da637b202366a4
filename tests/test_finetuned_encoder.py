"""The fine-tuned text encoder (ONCE's DIRE path): the layer cache, the trainable top layers
(full or LoRA) inside NRMS/NAML, and its artifacts. Tiny BERT/Llama models built from a config;
one test reads the real offline MiniLM."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from neural_world import auc, build_world
from tiny_models import save_tiny_bert

from genre_dagster.arrays import ItemFeatures
from genre_dagster.embedding.fields import text_hash
from genre_dagster.scoring.neural import NeuralScorer, from_preset

torch = pytest.importorskip("torch")


def topic_word(category: int, j: int) -> str:
    """Word j of a category's 8 (letters only: BERT's tokenizer here knows no digit words)."""
    return "abcdef"[category] + "ghijklmn"[j] + "word"


TOPIC_WORDS = [topic_word(c, j) for c in range(6) for j in range(8)]
SHARED_WORDS = [f"common{x}" for x in "abcdefghijkl"]
WORDS = TOPIC_WORDS + SHARED_WORDS


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory) -> str:
    """A 3-layer BERT with random weights over the world's words."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), WORDS, layers=3)


@pytest.fixture(scope="module")
def tiny_llama_folder(tmp_path_factory) -> str:
    """A 3-layer Llama (rotary positions, final norm) with a word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny_llama")
    vocab = {w: i for i, w in enumerate(["<unk>", "<s>", "</s>", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=64,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return str(folder)


def _texts_frame(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"text": texts, "text_hash": [text_hash(t) for t in texts]})


def _lower(path: str, split: int, dtype: str = "bf16"):
    from genre_dagster.embedding.lm_split import LowerLayers

    return LowerLayers(path, split_layer=split, max_length=16, store_dtype=dtype, batch_size=3)


TEXTS = [
    "ahword aiword commonb",
    "dkword commonc commond dlword dmword commona",
    "fgword",
    "bhword biword bjword commone commonf",
    "ahword aiword commonb",
]


# ---- the layer cache ----


@pytest.mark.parametrize("model", ["tiny_bert", "tiny_llama_folder"])
@pytest.mark.parametrize("dtype,tol", [("fp32", 1e-5), ("bf16", 3e-2)])
def test_cached_and_uncached_paths_give_same_vectors_and_gradients(
    request, tmp_path, model, dtype, tol
):
    """Top layers over cached states of layer k = the whole model with layers 1..k frozen:
    the same pooled vectors and the same gradients for the top layers' weights."""
    from transformers import AutoModel

    from genre_dagster.embedding.layer_cache import LayerStateCache, cached_layer_states
    from genre_dagster.embedding.lm_split import (
        load_base_model,
        right_padded,
        run_top,
        top_layers,
    )
    from genre_dagster.embedding.pooling import pool

    path, split = request.getfixturevalue(model), 1
    pooling = "mean" if model == "tiny_bert" else "last"
    lower = _lower(path, split, dtype)
    states, _ = cached_layer_states(_texts_frame(TEXTS), lower, LayerStateCache(tmp_path / "c.db"))
    top = top_layers(load_base_model(path).model, split)
    batch = states.gather(np.arange(len(TEXTS)))
    cached = pool(run_top(top, batch.hidden, batch.mask), batch.mask, pooling)

    full = AutoModel.from_pretrained(path).eval()
    input_ids, mask = right_padded(lower.tokenize(TEXTS), 0)  # the cache's truncation
    uncached = pool(full(input_ids=input_ids, attention_mask=mask).last_hidden_state, mask, pooling)
    torch.testing.assert_close(cached, uncached, atol=tol, rtol=tol)

    weights = torch.linspace(-1, 1, cached.shape[1])
    (cached * weights).sum().backward()
    (uncached * weights).sum().backward()
    layers_full = full.encoder.layer if model == "tiny_bert" else full.layers
    layers_top = top.encoder.layer if model == "tiny_bert" else top.layers
    # Relative to each parameter's gradient, but not below 1e-4 of the layers' largest: the
    # attention key bias's true gradient is zero (softmax ignores a shift shared by all keys),
    # so both paths give float noise there (~1e-11 on an AMD EPYC) and any ratio of noise.
    floor = 1e-4 * max(float(p.grad.abs().max()) for p in top.parameters() if p.grad is not None)
    for i, layer in enumerate(layers_top):
        for (name, p_top), (_, p_full) in zip(
            layer.named_parameters(), layers_full[split + i].named_parameters(), strict=True
        ):
            scale = max(float(p_full.grad.abs().max()), floor)
            assert float((p_top.grad - p_full.grad).abs().max() / scale) < tol * 3, name


def test_changed_item_text_invalidates_exactly_its_cached_states(tiny_bert, tmp_path):
    from genre_dagster.embedding.layer_cache import LayerStateCache, cached_layer_states

    cache = LayerStateCache(tmp_path / "cache.duckdb")
    lower = _lower(tiny_bert, 2)
    first, stats = cached_layer_states(_texts_frame(TEXTS), lower, cache)
    assert (stats["unique_texts"], stats["computed"], stats["reused"]) == (4, 4, 0)
    assert stats["cache_bytes"] == stats["state_bytes"] == first.nbytes > 0
    assert first.hidden.dtype == torch.bfloat16
    changed = [*TEXTS[:1], "ekword commonj", *TEXTS[2:]]
    second, stats = cached_layer_states(_texts_frame(changed), lower, cache)
    assert (stats["computed"], stats["reused"]) == (1, 3)
    everything = np.arange(len(TEXTS))
    old, new = first.gather(everything), second.gather(everything)
    for row in (0, 2, 3, 4):
        n = int(old.mask[row].sum())
        assert torch.equal(old.hidden[row, :n], new.hidden[row, :n])
    fresh = lower.states(["ekword commonj"])[0]
    assert torch.equal(second.hidden[second.starts[1] : second.starts[1] + len(fresh)], fresh)
    # another split layer is another cache entry, not a stale hit
    _, stats = cached_layer_states(_texts_frame(changed), _lower(tiny_bert, 1), cache)
    assert stats["computed"] == 4


def test_live_states_equal_cached_states(tiny_bert, tmp_path):
    from genre_dagster.embedding.layer_cache import (
        LayerStateCache,
        LiveLayerStates,
        cached_layer_states,
    )

    lower = _lower(tiny_bert, 2)
    cached, _ = cached_layer_states(_texts_frame(TEXTS), lower, LayerStateCache(tmp_path / "c"))
    live = LiveLayerStates(lower, TEXTS)
    assert live.text_hashes == cached.text_hashes  # a scorer's serving memo keys on them
    rows = np.array([3, 0, 2])
    a, b = cached.gather(rows), live.gather(rows)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.hidden, b.hidden, atol=1e-6, rtol=0)


def test_split_layer_out_of_range_names_the_valid_range(tiny_bert):
    with pytest.raises(ValueError, match=r"split layer 3 is out of range.*choose 0\.\.2"):
        _lower(tiny_bert, 3)


# ---- the tuned encoder inside the recommenders ----


@pytest.fixture(scope="module")
def text_world(tiny_bert, tmp_path_factory):
    """tests/neural_world.py's users and impressions, with item texts drawn from per-category
    words, and their layer states (split at layer 2 of the tiny BERT)."""
    from genre_dagster.embedding.layer_cache import LayerStateCache, cached_layer_states

    world = build_world()
    items = world["items"]
    rng = np.random.default_rng(3)
    texts = []
    for cat in items.categories:
        own = rng.choice(8, size=3, replace=False)
        words = [topic_word(cat, j) for j in own] + list(rng.choice(SHARED_WORDS, size=2))
        texts.append(" ".join(rng.permutation(words)))
    cache = LayerStateCache(tmp_path_factory.mktemp("layers") / "cache.duckdb")
    states, _ = cached_layer_states(_texts_frame(texts), _lower(tiny_bert, 2), cache)
    world["texts"] = texts
    world["items"] = ItemFeatures(
        item_ids=items.item_ids,
        embeddings=items.embeddings,
        categories=items.categories,
        category_names=items.category_names,
        layer_states={"title": states},
    )
    return world


def _tuned(tiny_bert, **overrides):
    config = {"lm_model": tiny_bert, "lm_split_layer": 2, "lm_max_length": 16, "epochs": 2}
    return from_preset("nrms_tuned_small", **{**config, **overrides})


@pytest.fixture(scope="module")
def lora_nrms(text_world, tiny_bert):
    scorer = _tuned(tiny_bert, lm_lora_rank=4, epochs=4)
    scorer.fit(text_world["train"], text_world["items"], text_world["valid"])
    return scorer


def test_lora_adapters_save_reload_and_score_identically(text_world, lora_nrms, tmp_path):
    from genre_dagster.scoring.registry import load_scorer

    world = text_world
    log = lora_nrms.training_log
    assert log["n_trained_parameters"] < log["n_parameters"]
    assert auc(lora_nrms.score(world["test"], world["items"]), world["test"]) > 0.55
    lora_nrms.save(tmp_path)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    text_keys = [k for k in saved if k.startswith("text_top.")]
    assert text_keys and all("lora_" in k for k in text_keys)  # adapters only
    assert any(k.startswith("user_encoder.") for k in saved)
    adapters = [v for k, v in saved.items() if "lora_B" in k]
    assert any(v.abs().sum() > 0 for v in adapters)  # training moved them off zero
    loaded = load_scorer(tmp_path)
    assert loaded.scorer_id == lora_nrms.scorer_id
    np.testing.assert_array_equal(
        loaded.score(world["test"], world["items"]), lora_nrms.score(world["test"], world["items"])
    )
    history, pool = world["test"].history[:7], np.arange(40)
    np.testing.assert_array_equal(
        loaded.score_pool(history, pool, world["items"]),
        lora_nrms.score_pool(history, pool, world["items"]),
    )


def test_full_tuning_saves_the_top_layers_only(text_world, tiny_bert, tmp_path):
    world = text_world
    scorer = _tuned(tiny_bert, lm_lora_rank=0, epochs=1)
    scorer.fit(world["train"], world["items"])
    scorer.save(tmp_path)
    saved = torch.load(tmp_path / "model.pt", weights_only=True)
    text_keys = {k for k in saved if k.startswith("text_top.")}
    assert text_keys and not any("lora_" in k or "embeddings" in k for k in text_keys)
    assert all(".layer.0." in k for k in text_keys if ".layer." in k)  # layer 3 = top's first
    loaded = NeuralScorer.load(tmp_path)
    np.testing.assert_array_equal(
        loaded.score(world["test"], world["items"]), scorer.score(world["test"], world["items"])
    )


def test_item_vectors_are_computed_once_after_training(text_world, lora_nrms, monkeypatch):
    from genre_dagster.scoring.tuned_text import TextTop

    calls = []
    original = TextTop.forward
    monkeypatch.setattr(TextTop, "forward", lambda self, s: calls.append(1) or original(self, s))
    from genre_dagster.embedding.layer_cache import LayerStates

    lora_nrms.score(text_world["test"], text_world["items"])
    assert calls == []  # every item's tuned vector was computed at the end of fit
    items = text_world["items"]
    s = items.layer_states["title"]
    hashes = ["a text first seen now", *s.text_hashes[1:]]
    changed = ItemFeatures(
        item_ids=items.item_ids,
        embeddings=items.embeddings,
        categories=items.categories,
        category_names=items.category_names,
        layer_states={"title": LayerStates(s.source, s.hidden, s.starts, s.lengths, hashes)},
    )
    lora_nrms.score(text_world["test"], changed)
    assert len(calls) == 1  # the new text only


def test_tuned_config_hash_covers_model_split_rank_and_fields(tiny_bert):
    base = _tuned(tiny_bert)
    others = [
        _tuned(tiny_bert, lm_model=tiny_bert + "/"),
        _tuned(tiny_bert, lm_split_layer=1),
        _tuned(tiny_bert, lm_lora_rank=2),
        _tuned(tiny_bert, fields=["title", "abstract"]),
    ]
    assert len({s.scorer_id for s in [base, *others]}) == 5
    assert from_preset("nrms_small").scorer_id == from_preset("nrms_small").scorer_id
    assert "lm_split_layer" not in from_preset("nrms_small").config  # frozen: ids unchanged
    with pytest.raises(ValueError, match="read only with text_encoder='tuned'"):
        from_preset("nrms_small", lm_split_layer=2)


def test_tuned_scorer_needs_layer_states_from_the_same_split(text_world, tiny_bert):
    world = text_world
    plain = build_world()["items"]
    with pytest.raises(ValueError, match="layer-state fields"):
        _tuned(tiny_bert).fit(world["train"], plain)
    with pytest.raises(ValueError, match="split at layer 1"):
        _tuned(tiny_bert, lm_split_layer=1).fit(world["train"], world["items"])


def test_naml_takes_the_tuned_encoder_on_two_fields(text_world, tiny_bert):
    world = text_world
    states = world["items"].layer_states["title"]
    items = ItemFeatures(
        item_ids=world["items"].item_ids,
        embeddings={},
        categories=world["items"].categories,
        category_names=world["items"].category_names,
        layer_states={"title": states, "abstract": states},
    )
    config = {"lm_model": tiny_bert, "lm_split_layer": 2, "lm_max_length": 16, "epochs": 1}
    scorer = from_preset("naml_tuned", hidden_dim=32, attention_dim=16, category_dim=8, **config)
    log = scorer.fit(world["train"], items)
    assert log["fields"] == ["title", "abstract"]
    assert np.isfinite(scorer.score(world["test"], items)).all()


# ---- the real offline MiniLM ----


def test_minilm_split_top_reproduces_the_whole_model():
    """The default path: MiniLM cut at layer 4, its top 2 layers over fp32 states, mean pooled,
    gives the encoder's own (unnormalized) vectors."""
    from genre_dagster.embedding import EncoderConfig, TextEncoder
    from genre_dagster.embedding.layer_cache import LayerStates
    from genre_dagster.embedding.lm_split import LowerLayers
    from genre_dagster.scoring.presets import preset
    from genre_dagster.scoring.tuned_text import TextTop

    texts = ["Central bank raises interest rates again", "Late penalty wins the derby"]
    lower = LowerLayers(split_layer=4, max_length=32, store_dtype="fp32")
    states = LayerStates.from_unique(lower.source, lower.states(texts), np.arange(2), ["a", "b"])
    top = TextTop(preset("nrms_tuned", lm_lora_rank=0)).eval()
    with torch.no_grad():
        got = top(states.gather(np.arange(2))).numpy()
    reference = TextEncoder(
        EncoderConfig(device="cpu", dtype="fp32", normalize=False, max_length=32)
    ).encode(texts)
    np.testing.assert_allclose(got, reference, atol=1e-4)
    assert lower.dim == 384
