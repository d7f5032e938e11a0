"""A subword tokenizer read with the ``tokenizers`` library alone (no transformers import).

It answers the few calls :class:`~nerx.models.base.SpanModel` makes of a Hugging Face fast
tokenizer: ``tokenizer(words, add_special_tokens=...)["input_ids"]``, ``unk_token_id``,
``pad_token_id`` and ``model_max_length``. The special ids come from the exported
``config.json``, written from the tokenizer the model was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nerx.errors import ModelError

TOKENIZER_FILE = "tokenizer.json"


class WordTokenizer:
    def __init__(self, path: Path, specials: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        file = path / TOKENIZER_FILE
        try:
            self._tokenizer = Tokenizer.from_file(str(file))
        except Exception as exc:  # the library raises a bare Exception for a bad file
            raise ModelError(f"cannot read the tokenizer {file}: {exc}") from None
        # Padding and truncation are the model's business, never the tokenizer's.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.unk_token_id = specials.get("unk_token_id")
        self.pad_token_id = specials.get("pad_token_id")
        self.model_max_length = specials.get("model_max_length", 512)

    def __call__(self, text: str | list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        if isinstance(text, str):
            ids = self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids
            return {"input_ids": ids}
        encoded = self._tokenizer.encode_batch(list(text), add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in encoded]}


def special_ids(tokenizer) -> dict[str, Any]:
    """What :class:`WordTokenizer` needs to know of a Hugging Face tokenizer, for the config."""
    return {
        "unk_token_id": tokenizer.unk_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "model_max_length": min(int(tokenizer.model_max_length or 512), 1_000_000),
    }
