"""``token``: BIO token classification on each word's first subword (the yardstick).

A linear layer over the encoder gives, for every word, logits over ``O, B-X, I-X...``.
Decoding repairs invalid sequences (an ``I-X`` after ``O`` or after another type opens a new
entity) instead of dropping them. Flat entities only: nested ones in training data are
reduced to the outermost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nerx.doc import Entity, maximal_non_overlapping
from nerx.models.base import (
    Batch,
    Example,
    ModelConfig,
    Output,
    Prediction,
    SpanModel,
    SpanPrediction,
    WordSettings,
    gather_words,
    register,
    sentence_mask,
    setting,
)


@dataclass(frozen=True)
class TokenSettings(WordSettings):
    dropout: float = setting(0.1, "dropout before the tag classifier", at_least=0.0, at_most=1.0)
    outside_bias: float = setting(0.0, "taken off the O logit (chosen on dev after training)")


@dataclass
class TokenBatch(Batch):
    tags: torch.Tensor | None = None  # (B, W) gold BIO tag ids; -100 where there is no gold


@register("token")
class TokenClassifier(SpanModel):
    Settings = TokenSettings
    #: Measured on CoNLL-2003 and BC5CDR with MiniLM-L6 (see the README's accuracy table).
    training_defaults = {"learning_rate": 3e-4}

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__(config, encoder, tokenizer)
        hidden = encoder.config.hidden_size
        self.dropout = nn.Dropout(self.settings.dropout)
        # Tag 0 is O; label k (1-based) has B = 2k - 1 and I = 2k.
        self.classifier = nn.Linear(hidden, 1 + 2 * len(config.labels))

    def collate(self, examples: Sequence[Example]) -> TokenBatch:
        batch = self.pad_inputs(examples, TokenBatch)
        # Outside the focus sentences there is no gold: words there are not trained on.
        tags = torch.full(batch.word_mask.shape, -100, dtype=torch.long)
        tags[sentence_mask(examples, tags.size(1))] = 0
        for row, ex in enumerate(examples):
            flat = maximal_non_overlapping([Entity(s, e, str(k)) for s, e, k in ex.gold_spans])
            for index in flat:
                s, e, label_id = ex.gold_spans[index]
                tags[row, s] = 2 * label_id - 1
                tags[row, s + 1 : e] = 2 * label_id
        batch.tags = tags
        return batch

    def forward(self, batch: TokenBatch) -> Output:
        hidden = self.encode(batch)  # (batch, subwords, hidden)
        words = gather_words(hidden, batch.word_starts)  # (batch, words, hidden)
        logits = self.classifier(self.dropout(words))  # (batch, words, tags)
        loss = None
        if batch.has_gold:
            loss = F.cross_entropy(logits.flatten(0, 1), batch.tags.flatten(), ignore_index=-100)
        return Output(loss=loss, tensors={"logits": logits})

    def calibrate(self, dev_score) -> dict[str, Any]:
        return self.calibrate_outside_bias(dev_score)

    def decode(self, output: Output, batch: TokenBatch) -> list[Prediction]:
        probs = self.outside_biased(output.tensors["logits"].float()).softmax(-1)
        best_p, best = probs.max(-1)
        best, best_p = best.tolist(), best_p.tolist()
        return [
            Prediction(spans=self._spans(best[row], best_p[row], ex))
            for row, ex in enumerate(batch.examples)
        ]

    def _spans(self, tags: list[int], probs: list[float], ex: Example) -> list[SpanPrediction]:
        spans = []
        for s, e in ex.sentences:
            spans.extend(decode_bio(tags[s:e], probs[s:e], self.config.labels, offset=s))
        return spans


def decode_bio(
    tags: Sequence[int], probs: Sequence[float], labels: Sequence[str], offset: int = 0
) -> list[SpanPrediction]:
    """Turn tag ids (0 = O, 2k-1 = B-label_k, 2k = I-label_k) into spans, repairing invalid
    sequences: an I- tag that does not continue an entity of its type starts one. The score is
    the mean probability of the entity's tags."""
    spans: list[SpanPrediction] = []
    start, label, scores = None, 0, []

    def close(end: int) -> None:
        if start is not None:
            spans.append(
                SpanPrediction(
                    offset + start, offset + end, labels[label - 1], sum(scores) / len(scores)
                )
            )

    for i, tag in enumerate(tags):
        if tag == 0:
            close(i)
            start, scores = None, []
            continue
        tag_label, is_begin = (tag + 1) // 2, tag % 2 == 1
        if is_begin or start is None or tag_label != label:
            close(i)
            start, label, scores = i, tag_label, []
        scores.append(probs[i])
    close(len(tags))
    return spans
