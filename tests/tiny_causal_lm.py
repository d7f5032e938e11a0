"""A tiny random causal LM (Llama or GPT-2) with a word-level tokenizer written here.

The vocabulary is every word of the given texts (cut the way the tokenizer cuts them: on
whitespace, each punctuation mark on its own), the numbers 0-99 (mention counts) and any extra
words asked for. Case is kept, so decoded mentions can be found in the text as written.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def word_tokenizer(texts: Iterable[str], extra: Iterable[str] = ()):
    """A ``PreTrainedTokenizerFast`` knowing every word of ``texts`` plus ``extra``; it puts
    ``<s>`` before a sequence, as Llama tokenizers do."""
    from tokenizers import Tokenizer, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    split = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation("isolated")]
    )
    words = {piece for text in texts for piece, _ in split.pre_tokenize_str(text)}
    words |= {str(n) for n in range(100)} | set(extra)
    vocab = {token: i for i, token in enumerate(SPECIALS + sorted(words - set(SPECIALS)))}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = split
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def build_tiny_causal_lm(
    path: Path,
    texts: Iterable[str],
    *,
    arch: str = "llama",
    extra: Iterable[str] = (),
    hidden: int = 32,
    layers: int = 2,
    heads: int = 2,
    max_positions: int = 256,
    seed: int = 0,
) -> Path:
    """Write a random ``arch`` ("llama" or "gpt2") causal LM and its tokenizer to ``path``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tokenizer = word_tokenizer(texts, extra)
    tokenizer.save_pretrained(str(path))
    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    torch.manual_seed(seed)
    if arch == "llama":
        config = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=2 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            max_position_embeddings=max_positions,
            tie_word_embeddings=False,
            **ids,
        )
        model = LlamaForCausalLM(config)
    elif arch == "gpt2":
        config = GPT2Config(
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_positions=max_positions,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            **ids,
        )
        model = GPT2LMHeadModel(config)
    else:
        raise ValueError(f"unknown architecture {arch!r}: use llama or gpt2")
    model.save_pretrained(str(path))
    return path
