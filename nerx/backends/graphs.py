"""The torch modules that ``nerx export`` traces: one per exportable kind.

Each wraps a loaded :class:`~nerx.models.base.SpanModel` from the outside. Its ``forward``
takes the batch tensors the kind's ``collate`` builds and returns the tensors its ``decode``
reads, so the exported graph holds the encoder and the heads, and decoding (spans to
entities) stays in Python, shared with the PyTorch path. Shapes that depend on the data are
kept out of Python ints, so one graph serves every batch and sequence length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from nerx.models.base import SpanModel, gather_words


class TokenGraph(nn.Module):
    """``token``: (input_ids, attention_mask, word_starts) -> logits (batch, words, tags)."""

    inputs: Sequence[str] = ("input_ids", "attention_mask", "word_starts")
    outputs: Sequence[str] = ("logits",)
    #: Which axes of each tensor vary from batch to batch.
    axes = {
        "input_ids": {0: "batch", 1: "subwords"},
        "attention_mask": {0: "batch", 1: "subwords"},
        "word_starts": {0: "batch", 1: "words"},
        "logits": {0: "batch", 1: "words"},
    }

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, word_starts):
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        words = gather_words(self.model.encode(batch), word_starts)  # (batch, words, hidden)
        return self.model.classifier(words)

    @staticmethod
    def output_tensors(outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
        """The ``Output.tensors`` that the kind's ``decode`` reads, from the graph's outputs."""
        return {"logits": outputs["logits"]}

    @staticmethod
    def stats(outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, float]:
        """The counters the kind's ``forward`` reports in ``Output.stats``."""
        return {}


class SpanDecGraph(nn.Module):
    """``spandec`` and ``sf-spandec``: (input_ids, attention_mask, word_starts, spans,
    span_mask[, filter_threshold]) -> logits (batch, spans, 1 + labels) and the mask of the
    spans that were decoded (the token filter's survivors for sf-spandec).

    The PyTorch path decodes spans in chunks and repacks the filter's survivors; here every
    surviving span is decoded at once in place, which gives the same logits for the same spans
    without a Python int that depends on the data. Spans are at most ``max_span_length``
    words, so that is the width of the decoder's partner table.
    """

    axes = {
        "input_ids": {0: "batch", 1: "subwords"},
        "attention_mask": {0: "batch", 1: "subwords"},
        "word_starts": {0: "batch", 1: "words"},
        "spans": {0: "batch", 1: "spans"},
        "span_mask": {0: "batch", 1: "spans"},
        "logits": {0: "batch", 1: "spans"},
        "decoded": {0: "batch", 1: "spans"},
    }
    outputs: Sequence[str] = ("logits", "decoded")

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.model = model
        self.uses_filter = bool(getattr(model, "uses_filter", False))
        base = ("input_ids", "attention_mask", "word_starts", "spans", "span_mask")
        self.inputs = (*base, "filter_threshold") if self.uses_filter else base

    def forward(self, input_ids, attention_mask, word_starts, spans, span_mask, *threshold):
        model = self.model
        text = model.encode({"input_ids": input_ids, "attention_mask": attention_mask})
        if self.uses_filter:
            words = gather_words(text, word_starts)  # (B, W, H)
            passing = model.token_filter(words).squeeze(-1).sigmoid() >= threshold[0]  # (B, W)
            # A span survives when no word in it fails: failures counted by a prefix sum.
            fails = torch.cat(
                [torch.zeros_like(passing[:, :1], dtype=torch.long), (~passing).long().cumsum(1)],
                1,
            )  # (B, W + 1)
            bad = fails.gather(1, spans[..., 1]) - fails.gather(1, spans[..., 0])
            span_mask = span_mask & (bad == 0)
        positions = model._positions(torch.arange(text.size(1), device=text.device))  # (T, H)
        rows, columns = span_mask.nonzero(as_tuple=True)
        chosen = spans[rows, columns]  # (N, 2) end exclusive
        base = (rows * word_starts.size(1)).unsqueeze(1)
        span_words = torch.stack([chosen[:, 0], chosen[:, 1] - 1], dim=-1) + base
        states = model.decoder.word_states(
            model.start_query,
            model.end_query,
            positions,
            word_starts,
            text,
            attention_mask.bool(),
            model.config.max_span_length,
        )
        decoded = model.decoder.decode_spans(states, span_words)  # (N, 2, H)
        packed = model.classifier(model.head_mlp(decoded).flatten(1))  # (N, C)
        logits = text.new_zeros((*spans.shape[:2], packed.size(-1)))
        logits = logits.index_put((rows, columns), packed)
        return logits, span_mask

    @staticmethod
    def output_tensors(outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, Any]:
        decoded = outputs["decoded"]
        return {"logits": outputs["logits"], "spans": batch["spans"], "span_mask": decoded}

    @staticmethod
    def stats(outputs: dict[str, Any], batch: dict[str, Any]) -> dict[str, float]:
        if "filter_threshold" not in batch:
            return {}
        kept = float(outputs["decoded"].sum())
        return {"spans": float(batch["span_mask"].sum()), "spans_kept": kept}


#: Kinds that export, and the module that traces each.
GRAPHS: dict[str, type[nn.Module]] = {
    "token": TokenGraph,
    "spandec": SpanDecGraph,
    "sf-spandec": SpanDecGraph,
}
