"""A tiny random BERT (2 layers, hidden 32) with a word-level vocabulary written here."""

from __future__ import annotations

import inspect
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def build_tiny_encoder(path: Path, words: set[str], *, seed: int = 0) -> Path:
    """Write a random 2-layer BERT and a WordPiece tokenizer knowing ``words`` to ``path``."""
    import torch
    from transformers import BertConfig, BertModel

    path.mkdir(parents=True, exist_ok=True)
    pieces = sorted({w.lower() for w in words} | set("abcdefghijklmnopqrstuvwxyz0123456789.,;:'-"))
    vocab = SPECIALS + pieces + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = bert_tokenizer(path / "vocab.txt")
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config).save_pretrained(str(path))
    return path


def bert_tokenizer(vocab_file: Path):
    """A lower-casing WordPiece tokenizer over ``vocab_file``: transformers 5 takes the
    vocabulary as ``vocab``, 4.x as ``vocab_file``."""
    from transformers import BertTokenizerFast

    takes_vocab = "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters
    argument = "vocab" if takes_vocab else "vocab_file"
    return BertTokenizerFast(**{argument: str(vocab_file)}, do_lower_case=True)
