"""Tiny models built from a config for the tests (random weights, no download)."""

from __future__ import annotations

from pathlib import Path


def save_tiny_bert(folder: Path, words: list[str], layers: int) -> str:
    """A BERT of `layers` layers (32-d) with random weights and a word-piece vocabulary of
    `words`, saved in `folder`; returns the folder as a string."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    # transformers 5 reads `vocab=`, not `vocab_file=` (which leaves every word unknown)
    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words])}
    tokenizer = BertTokenizerFast(vocab=vocab)
    assert tokenizer.tokenize(words[-1]) == [words[-1]]
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return str(folder)
