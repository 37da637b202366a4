"""Named configs for the neural recommenders (plain dicts, no torch).

A config names its parts (item encoder, user encoder, predictor) and its hyper-parameters;
`resolve_neural_config` fills defaults and rejects unknown keys, so the config hash that names an
artifact always covers every setting that shaped it.
"""

from __future__ import annotations

import copy
from types import MappingProxyType
from typing import Any

from genre_dagster.scoring.artifact import resolve_config

BATCHING = ("by_history", "shuffled")
ID_EMBEDDINGS = ("none", "sum", "gated", "only")
ID_OPTIMIZERS = ("auto", "sparse", "dense")
READOUTS = ("attention", "last")
TEXT_ENCODERS = ("frozen", "tuned")
LM_POOLINGS = ("mean", "cls", "last")

# Every key a neural config may hold, with its default.
DEFAULTS: MappingProxyType[str, Any] = MappingProxyType(
    {
        # item side
        "fields": ("title",),  # precomputed embedding fields (ItemFeatures.embeddings)
        "optional_fields": (),  # used when present in the items at fit time
        "category_dim": 0,  # 0 = no learned category embedding
        "item_encoder": "linear",  # linear | multiview
        # hybrid item representation: a learned vector per item seen in training, fused with
        # the content vector (none | sum | gated); items never seen are scored from content.
        # "only": the id vector alone, content not read (an ablation; set id_dropout to 0)
        "id_embedding": "none",
        "id_dropout": 0.5,  # share of items whose id vector is dropped per training batch
        # how the id table learns: "dense" = Adam over every row every step; "sparse" = a lazy
        # SparseAdam that steps only the rows a batch used; "auto" = sparse above
        # components.SPARSE_ID_ROWS items, dense below. Measured (benchmarks/
        # scorer_comparison.py): dense gives +0.003 to +0.007 test AUC (the catalogue world:
        # higher on every seed) but its step grows with the table: on a MIND-small-sized world
        # (50k items) hybrid_naml took 3.2x naml's epoch dense, 1.3x sparse; on 3,000 items the
        # two cost the same. SparseAdam has no weight decay: "sparse" needs weight_decay 0, and
        # "auto" stays dense with weight decay.
        "id_optimizer": "auto",
        # item text: "frozen" reads precomputed vectors (ItemFeatures.embeddings); "tuned" trains
        # the layers above lm_split_layer of a language model, with the rest of the model, over
        # the texts' cached layer states (ItemFeatures.layer_states; scoring/tuned_text.py)
        "text_encoder": "frozen",
        "lm_model": None,  # model folder; None = the offline MiniLM (6 layers)
        "lm_gguf_file": None,  # a GGUF file inside lm_model (e.g. SmolLM2's)
        "lm_split_layer": 4,  # layers 1..k cached, k+1..N trained (MiniLM: the top 2)
        "lm_max_length": 32,  # tokens kept per text
        "lm_pooling": "mean",  # mean | cls | last (decoders: last)
        "lm_lora_rank": 8,  # 0 = train the top layers' weights; r > 0 = LoRA rank r, alpha 2r
        "lm_lr": 5e-4,  # learning rate of the text top (the rest uses lr)
        # user side
        "user_encoder": "mhsa",  # mean | attention | mhsa | gru | causal
        "max_history": 50,  # most recent clicks kept
        "heads": 4,  # mhsa, causal
        "layers": 1,  # causal: self-attention blocks
        # causal: the user vector is additive attention over every click's output (each a
        # summary of the history up to it, its position telling how recent) or, as in SASRec,
        # the most recent click's output
        "readout": "attention",  # attention | last
        "time_gaps": False,  # causal: embed the day gap between consecutive history items
        "profile": False,  # GENRE user-profile plug-in
        # GENRE generated history: trained on histories that include synthetic items. Changes
        # no layer; it is part of the config so the artifact's id names what it learned from.
        "generated_history": False,
        # predictor
        "predictor": "dot",  # dot | mlp
        "mlp_dim": 128,
        # sizes
        "hidden_dim": 128,
        "attention_dim": 64,  # additive-attention query size
        "dropout": 0.2,
        # training
        "negatives": 4,
        "batch_size": 64,
        "lr": 1e-3,
        "weight_decay": 0.0,
        "epochs": 5,
        # samples (clicks) an epoch trains on at most, drawn afresh each epoch (0 = all): a
        # training's cost stops growing with the data above it. MIND-small's train split has
        # about 200k, MIND-large's about 3.5M
        "epoch_samples": 500_000,
        # validation impressions scored after each epoch at most: a seeded sample drawn once
        # (0 = all), so early stopping's cost stops growing with the data above it.
        # MIND-small's dev day has about 20k, MIND-large's about 370k
        "valid_impressions": 50_000,
        "patience": 2,  # epochs without validation-AUC gain before stopping
        "seed": 0,
        # "by_history": samples that share a history (a user's impressions in MIND-format data)
        # stay in one batch and the user is encoded once: 2x faster epochs at the same
        # validation AUC on the MIND-small-sized world (benchmarks/training_options.py);
        # where every impression has its own history it is the same as "shuffled"
        "batching": "by_history",
        # inference
        "score_batch": 1024,  # impressions / users per chunk
    }
)

# Keys added after artifacts were published, with the value that behaves as before they
# existed: at that value they are left out of a scorer's stored config (and so of its hash),
# so the ids and artifacts of scorers that do not use them, and ensembles of those, stay valid.
HASH_NEUTRAL: MappingProxyType[str, Any] = MappingProxyType(
    {
        "id_embedding": "none",
        "id_dropout": 0.5,
        "id_optimizer": "auto",
        # every artifact published before it existed trained on fewer samples than this
        "epoch_samples": 500_000,
        # every artifact published before it existed validated on fewer impressions than this
        "valid_impressions": 50_000,
        "layers": 1,
        "readout": "attention",
        "time_gaps": False,
        "text_encoder": "frozen",
    }
)
# Read only with text_encoder="tuned": left out of a frozen config (and of its hash), and
# refused there at any other value than the default.
LM_KEYS = tuple(k for k in DEFAULTS if k.startswith("lm_"))

# A small, fast variant for tests and smoke runs.
_SMALL = {
    "hidden_dim": 32,
    "attention_dim": 16,
    "heads": 2,
    "mlp_dim": 32,
    "dropout": 0.1,
    "lr": 3e-3,  # few epochs on little data
    "epochs": 4,
}

_NRMS = {"fields": ("title",), "item_encoder": "linear", "user_encoder": "mhsa", "predictor": "dot"}
_NAML = {
    "fields": ("title", "abstract"),
    "optional_fields": ("summary",),
    "category_dim": 32,
    "item_encoder": "multiview",
    "user_encoder": "attention",
    "predictor": "dot",
}
_NRMS_GENRE = {**_NRMS, "fields": ("title", "summary"), "profile": True}
# NAML's views plus a learned vector per item seen in training, gated by the content.
_HYBRID_NAML = {**_NAML, "id_embedding": "gated"}
# SASRec-style: the history read in order by causal self-attention over hybrid item vectors
# (NAML's views plus an id vector). Chosen on one seed of each demo world (small, catalogue_small;
# test AUC): NAML's views over title-only 0.615 vs 0.555 and 0.693 vs 0.684; one attention block
# over two 0.615 vs 0.601 and 0.693 vs 0.685, and 20% faster.
_SEQUENTIAL = {
    **_NAML,
    "user_encoder": "causal",
    "id_embedding": "sum",
}

# The fine-tuned text encoder (ONCE's DIRE path): MiniLM's top 2 layers with LoRA adapters,
# trained over cached states of its first 4; each NRMS/NAML view is a tuned MiniLM vector.
_TUNED = {"text_encoder": "tuned"}

PRESETS: MappingProxyType[str, MappingProxyType[str, Any]] = MappingProxyType(
    {
        "nrms": MappingProxyType(_NRMS),
        "naml": MappingProxyType(_NAML),
        "nrms_genre": MappingProxyType(_NRMS_GENRE),
        "nrms_small": MappingProxyType({**_NRMS, **_SMALL}),
        "naml_small": MappingProxyType({**_NAML, **_SMALL, "category_dim": 8}),
        "nrms_genre_small": MappingProxyType({**_NRMS_GENRE, **_SMALL}),
        "hybrid_naml": MappingProxyType(_HYBRID_NAML),
        "hybrid_naml_small": MappingProxyType({**_HYBRID_NAML, **_SMALL, "category_dim": 8}),
        "sequential": MappingProxyType(_SEQUENTIAL),
        "sequential_small": MappingProxyType({**_SEQUENTIAL, **_SMALL, "category_dim": 8}),
        "nrms_tuned": MappingProxyType({**_NRMS, **_TUNED}),
        "naml_tuned": MappingProxyType({**_NAML, **_TUNED}),
        "nrms_tuned_small": MappingProxyType({**_NRMS, **_SMALL, **_TUNED}),
    }
)

# Which scorer kind runs each preset (the scorer class checks its defining parts).
PRESET_KINDS: MappingProxyType[str, str] = MappingProxyType(
    {
        "nrms": "nrms",
        "naml": "naml",
        "nrms_genre": "nrms",
        "nrms_small": "nrms",
        "naml_small": "naml",
        "nrms_genre_small": "nrms",
        "hybrid_naml": "naml",
        "hybrid_naml_small": "naml",
        "sequential": "sequential",
        "sequential_small": "sequential",
        "nrms_tuned": "nrms",
        "naml_tuned": "naml",
        "nrms_tuned_small": "nrms",
    }
)


def resolve_neural_config(config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults updated with `config` (`artifact.resolve_config`: unknown keys raise), then
    checked; raises ValueError naming the offending value."""
    resolved = copy.deepcopy(resolve_config("neural", DEFAULTS, config))
    for key in ("fields", "optional_fields"):
        resolved[key] = list(resolved[key])
    if not resolved["fields"]:
        raise ValueError("config 'fields' must name at least one embedding field")
    if resolved["epoch_samples"] < 0:
        raise ValueError(
            f"config 'epoch_samples' must be >= 0 (0 = every sample), "
            f"got {resolved['epoch_samples']}"
        )
    if resolved["valid_impressions"] < 0:
        raise ValueError(
            f"config 'valid_impressions' must be >= 0 (0 = every impression), "
            f"got {resolved['valid_impressions']}"
        )
    if resolved["negatives"] < 1:
        raise ValueError(f"config 'negatives' must be >= 1, got {resolved['negatives']}")
    if resolved["id_embedding"] not in ID_EMBEDDINGS:
        raise ValueError(
            f"config 'id_embedding' must be one of {ID_EMBEDDINGS}, "
            f"got {resolved['id_embedding']!r}"
        )
    if resolved["id_optimizer"] not in ID_OPTIMIZERS:
        raise ValueError(
            f"config 'id_optimizer' must be one of {ID_OPTIMIZERS}, "
            f"got {resolved['id_optimizer']!r}"
        )
    if (
        resolved["id_embedding"] != "none"
        and resolved["id_optimizer"] == "sparse"
        and resolved["weight_decay"] > 0
    ):
        raise ValueError(
            "config 'weight_decay' > 0 with a sparse id table: SparseAdam has no weight decay; "
            "set id_optimizer='dense' or weight_decay=0"
        )
    if not 0.0 <= resolved["id_dropout"] < 1.0:
        raise ValueError(f"config 'id_dropout' must be in [0, 1), got {resolved['id_dropout']}")
    if resolved["layers"] < 1:
        raise ValueError(f"config 'layers' must be >= 1, got {resolved['layers']}")
    if resolved["readout"] not in READOUTS:
        raise ValueError(f"config 'readout' must be one of {READOUTS}, got {resolved['readout']!r}")
    if resolved["time_gaps"] and resolved["user_encoder"] != "causal":
        raise ValueError("config 'time_gaps' needs user_encoder='causal' (the others read none)")
    _check_text_encoder(resolved)
    if resolved["batching"] not in BATCHING:
        raise ValueError(
            f"config 'batching' must be one of {BATCHING}, got {resolved['batching']!r}"
        )
    return resolved


def _check_text_encoder(resolved: dict[str, Any]) -> None:
    if resolved["text_encoder"] not in TEXT_ENCODERS:
        raise ValueError(
            f"config 'text_encoder' must be one of {TEXT_ENCODERS}, "
            f"got {resolved['text_encoder']!r}"
        )
    if resolved["text_encoder"] == "frozen":
        changed = [k for k in LM_KEYS if resolved[k] != DEFAULTS[k]]
        if changed:
            raise ValueError(f"config {changed} are read only with text_encoder='tuned'")
        return
    if resolved["lm_pooling"] not in LM_POOLINGS:
        raise ValueError(
            f"config 'lm_pooling' must be one of {LM_POOLINGS}, got {resolved['lm_pooling']!r}"
        )
    for key, low in (("lm_split_layer", 0), ("lm_max_length", 2), ("lm_lora_rank", 0)):
        if resolved[key] < low:
            raise ValueError(f"config {key!r} must be >= {low}, got {resolved[key]}")


def compact_config(config: dict[str, Any]) -> dict[str, Any]:
    """A resolved config as a scorer stores and hashes it: HASH_NEUTRAL keys at their neutral
    value are left out (a config written before they existed is the same config), and so are
    the language-model keys of a frozen text encoder (they are unused there)."""
    frozen = config.get("text_encoder", "frozen") == "frozen"
    return {
        k: v
        for k, v in config.items()
        if not (k in HASH_NEUTRAL and v == HASH_NEUTRAL[k]) and not (frozen and k in LM_KEYS)
    }


def preset(name: str, **overrides: Any) -> dict[str, Any]:
    """The resolved config of preset `name`, with `overrides` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown neural preset {name!r}; known: {sorted(PRESETS)}")
    return resolve_neural_config({**PRESETS[name], **overrides})
