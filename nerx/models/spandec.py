"""``spandec`` and ``sf-spandec``: a light span decoder in place of the encoder's last layer.

SpanDec ("Decoding Text Spans for Efficient and Accurate Named-Entity Recognition"):

* The encoder runs without its final layer; its output ``z_1..z_L`` is the decoder's text.
* Each candidate span (i, j) (up to ``max_span_length`` words, inside a sentence) gets two
  queries ``q_i = m_start + pos(i)`` and ``q_j = m_end + pos(j)``: learned vectors plus the
  encoder's own position embedding of the word's first subword.
* One pre-norm cross-attention layer whose keys/values are ``[q_i, q_j, z_1..z_L]``: a span's
  two queries see the text and each other, never another span's queries. The span-pair term
  is a (2 x 2) score per span, so no spans x spans mask is ever built.
* A shared MLP on both outputs; concatenated; a linear layer gives logits over O + labels.

SF-SpanDec adds a token filter: a linear entity-vs-O classifier on the encoder output,
trained jointly. At inference a span containing a word below the threshold is dropped before
the decoder runs, so the decoder only sees the kept spans (the paper keeps about 15%).

Hyperparameters (``config.hyper``): ``dropout`` (0.1), ``decoder_heads`` (the encoder's),
``position_bias`` (True: the position-to-position attention term), ``span_chunk`` (1024: spans
decoded at once), ``nested`` (set from the data), and the dev-calibrated ``filter_threshold``
(sf-spandec) and ``outside_bias``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nerx.errors import ConfigError
from nerx.models.base import (
    Batch,
    Example,
    ModelConfig,
    Output,
    Prediction,
    SpanModel,
    SpanPrediction,
    Statistic,
    WordSettings,
    gather_words,
    register,
    sentence_mask,
    setting,
)
from nerx.models.encoder import drop_last_layer, encoder_layers, encoder_position_embeddings
from nerx.models.spans import enumerate_spans, greedy_flat

#: Spans decoded at once at inference; small enough for the per-span tensors to stay in cache.
SPAN_CHUNK = 1024


class SpanDecoderLayer(nn.Module):
    """Pre-norm cross-attention of span queries over ``[own two queries, text]``.

    A query depends only on its word's first-subword position, so its projections are
    computed once per position and its attention over the text once per *word*: (B, W, T),
    not per span. Per span only the two
    partner scores (q_i . k_j, q_j . k_i) are new; they are merged with the per-word text term
    through a shared log-sum-exp, which gives exactly the softmax over ``[q_i, q_j,
    z_1..z_L]`` without ever building a (spans x text) or (spans x spans) tensor. Spans are
    packed across the batch, so no work is spent on padding.
    """

    def __init__(self, hidden: int, heads: int, dropout: float, position_bias: bool) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads, self.head_dim = heads, hidden // heads
        self.norm_query = nn.LayerNorm(hidden)
        self.norm_text = nn.LayerNorm(hidden)
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        # Position-to-position term: the score of query word i on text subword t also gets
        # (P_q pos(i)) . (P_k pos(t)). Started at identity, it points each query at its own
        # word from the first step; the text z alone carries position too weakly for that.
        self.position_bias = position_bias
        if position_bias:
            self.norm_position = nn.LayerNorm(hidden)
            self.position_query = nn.Linear(hidden, hidden, bias=False)
            self.position_key = nn.Linear(hidden, hidden, bias=False)
            nn.init.eye_(self.position_query.weight)
            nn.init.eye_(self.position_key.weight)

    def forward(
        self,
        start_query: torch.Tensor,
        end_query: torch.Tensor,
        positions: torch.Tensor,
        word_starts: torch.Tensor,
        span_words: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
    ) -> torch.Tensor:
        """Decode N spans packed across the batch.

        start/end_query (H,): m_start, m_end; positions (T, H): the position embeddings of
        subwords 0..T-1; word_starts (B, W): each word's first subword; span_words (N, 2):
        each span's (start, last) word as a flat index into the batch's B * W words; text
        (B, T, H); text_mask (B, T) bool. Returns (N, 2, H): the decoded start and end query
        of every span.
        """
        states = self.word_states(
            start_query,
            end_query,
            positions,
            word_starts,
            text,
            text_mask,
            widest_span(span_words),
        )
        return self.decode_spans(states, span_words)

    def word_states(
        self,
        start_query: torch.Tensor,
        end_query: torch.Tensor,
        positions: torch.Tensor,
        word_starts: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        widest: int,
    ) -> WordStates:
        """Everything a query contributes that depends on its word alone, for spans of up to
        ``widest`` words: the per-span step only gathers from these tables."""
        b, w = word_starts.shape
        heads, d = self.heads, self.head_dim
        h = heads * d
        scale = 1.0 / math.sqrt(d)
        t_norm = self.norm_text(text)
        k_text = self.key(t_norm).view(b, -1, heads, d)  # (B, T, heads, d)
        v_text = self.value(t_norm).view(b, -1, heads, d)
        position_scores = None
        if self.position_bias:
            normed = self.norm_position(positions)
            pq = F.embedding(word_starts, self.position_query(normed)).view(b, w, heads, d)
            pk = self.position_key(normed).view(-1, heads, d)  # (T, heads, d)
            position_scores = torch.einsum("bwhd,thd->bhwt", pq * scale, pk)  # (B, heads, W, T)
        # Without dropout to apply, the output projection's bias rides on the residual.
        bias_in_queries = not (self.training and self.dropout.p > 0)
        rows, projected = [], []
        for query in (start_query, end_query):
            # A query is m + pos(first subword): its projections are computed per position
            # (T rows, not B x W) and looked up for each word.
            queries = query + positions  # (T, H)
            normed = self.norm_query(queries)
            residual = queries + self.out.bias if bias_in_queries else queries
            per_position = torch.cat(
                [self.query(normed), self.key(normed), self.value(normed), residual], -1
            )
            q, k, v, queries = F.embedding(word_starts, per_position).split(h, -1)  # (B, W, H)
            scores = torch.einsum("bwhd,bthd->bhwt", (q * scale).view(b, w, heads, d), k_text)
            if position_scores is not None:
                scores.add_(position_scores)
            scores.masked_fill_(~text_mask[:, None, None, :], float("-inf"))
            # The peak only keeps exp() in range; the result does not depend on it, so it
            # takes no gradient, and the scores can be turned into weights in place.
            peak = scores.detach().amax(-1, keepdim=True)  # (B, heads, W, 1)
            weights = scores.sub_(peak).exp_()
            mix = torch.einsum("bhwt,bthd->bwhd", weights, v_text).reshape(b, w, h)
            self_score = (q * k).view(b, w, heads, d).sum(-1) * scale  # (B, W, heads)
            text_peak = peak.squeeze(-1).transpose(1, 2)  # (B, W, heads)
            text_sum = weights.sum(-1).transpose(1, 2)
            rows.append(torch.cat([v, mix, queries, text_peak, text_sum, self_score], -1))
            projected.append((q, k))
        # Partner scores for every word and span width: q_start(i) . k_end(i + offset) and
        # q_end(i + offset) . k_start(i), (B, W, widest, 2 * heads). Spans never reach past
        # their row's words, so the zero padding is never read.
        (q_start, k_start), (q_end, k_end) = projected
        k_end, q_end = (F.pad(x, (0, 0, 0, widest - 1)) for x in (k_end, q_end))
        partner = (
            torch.stack(
                [
                    torch.cat([q_start * k_end[:, o : o + w], q_end[:, o : o + w] * k_start], -1)
                    .view(b, w, 2 * heads, d)
                    .sum(-1)
                    for o in range(widest)
                ],
                dim=2,
            )
            * scale
        )
        return WordStates(
            rows=torch.cat(rows).flatten(0, 1),  # (2 * B * W, 3H + 3 heads): start, then end
            partner=partner.flatten(0, 2),  # (B * W * widest, 2 * heads)
            words=b * w,
            widest=widest,
            bias_in_queries=bias_in_queries,
        )

    def decode_spans(self, states: WordStates, span_words: torch.Tensor) -> torch.Tensor:
        """(N, 2, H): the decoded start and end query of each span in ``span_words``."""
        heads, d = self.heads, self.head_dim
        h = heads * d
        offset = span_words[:, 1] - span_words[:, 0]
        # The start word's start row and the last word's end row, in one gather. (Built by
        # stack, not from a Python list, so an exported graph keeps the batch size dynamic.)
        rows = torch.stack([span_words[:, 0], span_words[:, 1] + states.words], dim=1)
        own = states.rows.index_select(0, rows.flatten()).view(-1, 2, 3 * h + 3 * heads)
        v, mix, queries = own[..., : 3 * h].view(-1, 2, 3, h).unbind(2)  # (N, 2, H) each
        text_peak, text_sum, self_score = own[..., 3 * h :].view(-1, 2, 3, heads).unbind(2)
        partner = states.partner.index_select(0, span_words[:, 0] * states.widest + offset)
        partner = partner.view(-1, 2, heads)
        # Softmax over [self, partner, text], the text part through its per-word peak and sum.
        peak = torch.maximum(torch.maximum(self_score, partner), text_peak)
        w_self, w_partner, w_text = ((x - peak).exp() for x in (self_score, partner, text_peak))
        total = w_self + w_partner + w_text * text_sum
        w_self, w_partner, w_text = (
            (x / total).unsqueeze(-1) for x in (w_self, w_partner, w_text)
        )  # (N, 2, heads, 1)
        split = (-1, 2, heads, d)
        mixed = (w_self * v.view(split)).addcmul_(w_partner, v.flip(1).view(split))
        mixed = mixed.addcmul_(w_text, mix.view(split)).view(-1, h)  # (2N, H)
        if not states.bias_in_queries:
            return queries + self.dropout(self.out(mixed).view(-1, 2, h))
        # Without dropout, residual + bias + projection is one GEMM.
        return torch.addmm(queries.reshape(-1, h), mixed, self.out.weight.t()).view(-1, 2, h)


@dataclass
class WordStates:
    """Per-word tables of a :class:`SpanDecoderLayer` for one batch."""

    rows: torch.Tensor  # (2 * words, 3H + 3 heads): [value, text mix, query | peak, sum, self]
    partner: torch.Tensor  # (words * widest, 2 * heads): partner scores by start and width
    words: int  # B * W
    widest: int
    bias_in_queries: bool  # the query column holds query + the output bias (no dropout)


def widest_span(span_words: torch.Tensor) -> int:
    """The most words a span in ``span_words`` (N, 2: start, last) covers; at least 1."""
    if not len(span_words):
        return 1
    return int((span_words[:, 1] - span_words[:, 0]).max()) + 1


@dataclass(frozen=True)
class SpanDecSettings(WordSettings):
    dropout: float = setting(0.1, "dropout in the decoder and the head", at_least=0.0, at_most=1.0)
    decoder_heads: int | None = setting(
        None, "attention heads of the span decoder (null: the encoder's)", at_least=1
    )
    position_bias: bool = setting(True, "the position-to-position attention term")
    span_chunk: int = setting(SPAN_CHUNK, "spans decoded at once at inference", at_least=1)
    outside_bias: float = setting(0.0, "taken off the O logit (chosen on dev after training)")


@dataclass(frozen=True)
class SFSpanDecSettings(SpanDecSettings):
    filter_threshold: float = setting(
        0.5, "token filter cut-off (chosen on dev after training)", at_least=0.0, at_most=1.0
    )


@dataclass
class SpanDecBatch(Batch):
    spans: torch.Tensor | None = None  # (B, S, 2) candidate spans, end exclusive
    span_mask: torch.Tensor | None = None  # (B, S) real candidates
    span_labels: torch.Tensor | None = None  # (B, S) gold label ids; -100 without gold
    filter_targets: torch.Tensor | None = None  # (B, W) sf-spandec: 1 entity word, -1 no gold


@register("spandec")
class SpanDec(SpanModel):
    Settings = SpanDecSettings
    uses_filter = False
    #: The decoder starts from the encoder's last layer and trains at the encoder's rate
    #: (see ``head_parameter_names``); at 5e-5 it barely moves in a first epoch (dev F1 0 on a
    #: corpus of 3,400 sentences). Measured on CoNLL-2003 and BC5CDR with MiniLM-L6.
    training_defaults = {"learning_rate": 3e-4}

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__(config, encoder, tokenizer)
        settings = self.settings
        hidden = encoder.config.hidden_size
        dropout = settings.dropout
        heads = settings.decoder_heads or encoder.config.num_attention_heads
        if hidden % heads:
            divisors = [k for k in range(1, hidden + 1) if hidden % k == 0 and k <= 64]
            raise ConfigError(
                f"setting decoder_heads={heads} of model kind {self.kind} is not valid: it "
                f"accepts a divisor of the encoder's hidden size {hidden} "
                f"({', '.join(map(str, divisors))})",
                hint=f"valid settings: {self.Settings.describe()}",
            )
        last_layer = encoder_layers(encoder)[-1]
        drop_last_layer(encoder)
        self.decoder = SpanDecoderLayer(
            hidden,
            heads,
            dropout,
            position_bias=settings.position_bias,
        )
        # Started from the layer it replaces, the decoder is pretrained, not a new head: it
        # trains at the encoder's learning rate. At the head rate its attention drifts before
        # the position queries learn to find their words, and training stalls on all-O.
        self.decoder_pretrained = _init_from_layer(self.decoder, last_layer)
        self.start_query = nn.Parameter(torch.randn(hidden) * 0.02)  # m_start
        self.end_query = nn.Parameter(torch.randn(hidden) * 0.02)  # m_end
        # Encoders without absolute positions (RoPE, relative) get a learned table instead.
        self.own_positions = (
            None
            if encoder_position_embeddings(encoder) is not None
            else nn.Embedding(self.window_size, hidden)
        )
        # The shared MLP on both decoder outputs (pre-norm), then concat -> labels + O.
        self.head_mlp = nn.Sequential(
            nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout)
        )
        self.classifier = nn.Linear(2 * hidden, 1 + len(config.labels))
        if self.uses_filter:
            self.token_filter = nn.Linear(hidden, 1)

    def head_parameter_names(self) -> set[str]:
        names = super().head_parameter_names()
        if self.decoder_pretrained:
            names = {n for n in names if not n.startswith("decoder.")}
        return names

    # ------------------------------------------------------------------ batching
    def collate(self, examples: Sequence[Example]) -> SpanDecBatch:
        batch = self.pad_inputs(examples, SpanDecBatch)
        max_len = self.config.max_span_length
        per_example = [enumerate_spans(ex.sentences, max_len) for ex in examples]
        most = max((len(sp) for sp in per_example), default=0)
        spans = torch.zeros((len(examples), max(most, 1), 2), dtype=torch.long)
        span_mask = torch.zeros(spans.shape[:2], dtype=torch.bool)
        labels = torch.full(spans.shape[:2], -100, dtype=torch.long)
        for row, (ex, sp) in enumerate(zip(examples, per_example, strict=True)):
            spans[row, : len(sp)] = sp
            span_mask[row, : len(sp)] = True
            if ex.has_gold:
                gold = {(s, e): label for s, e, label in ex.gold_spans}
                labels[row, : len(sp)] = torch.tensor(
                    [gold.get((s, e), 0) for s, e in sp.tolist()], dtype=torch.long
                )
        batch.spans, batch.span_mask, batch.span_labels = spans, span_mask, labels
        if self.uses_filter:
            # A word is "entity" when any gold span covers it; words outside focus: no gold.
            targets = torch.full(batch.word_mask.shape, -1.0)
            targets[sentence_mask(examples, targets.size(1))] = 0.0
            for row, ex in enumerate(examples):
                for s, e, _ in ex.gold_spans:
                    targets[row, s:e] = 1.0
            batch.filter_targets = targets
        return batch

    # ------------------------------------------------------------------ forward
    def forward(self, batch: SpanDecBatch) -> Output:
        text = self.encode(batch)  # (B, T, H), the encoder minus its last layer
        spans, span_mask = batch.spans, batch.span_mask  # (B, S, 2), (B, S)
        stats: dict[str, float] = {}
        loss = torch.zeros((), device=text.device)
        filter_logits = None
        if self.uses_filter:
            words = gather_words(text, batch.word_starts)  # (B, W, H)
            filter_logits = self.token_filter(words).squeeze(-1)  # (B, W)
            if batch.has_gold:
                targets = batch.filter_targets
                known = targets >= 0
                loss = loss + F.binary_cross_entropy_with_logits(
                    filter_logits[known], targets[known]
                )
            if not self.training:
                spans, span_mask, kept = self._filter(spans, span_mask, filter_logits)
                stats = {"spans": float(batch.span_mask.sum()), "spans_kept": float(kept)}
        logits = self._classify(text, batch, spans, span_mask)  # (B, S, 1 + labels)
        # Filtered spans no longer line up with the gold labels: no span loss then.
        if batch.has_gold and (self.training or not self.uses_filter):
            loss = loss + F.cross_entropy(
                logits.flatten(0, 1), batch.span_labels.flatten(), ignore_index=-100
            )
        return Output(
            loss=loss if batch.has_gold else None,
            tensors={"logits": logits, "spans": spans, "span_mask": span_mask},
            stats=stats,
        )

    def _classify(self, text, batch, spans, span_mask) -> torch.Tensor:
        """Logits (B, S, 1 + labels) for the spans under span_mask; zeros elsewhere."""
        # Subword positions: a word's queries are m_start / m_end + pos(its first subword).
        positions = self._positions(torch.arange(text.size(1), device=text.device))  # (T, H)
        # Pack the real spans of the whole batch: (N, 2) flat (start, last) word indices.
        rows, columns = span_mask.nonzero(as_tuple=True)
        chosen = spans[rows, columns]  # (N, 2) end exclusive
        base = (rows * batch.word_starts.size(1)).unsqueeze(1)
        span_words = torch.stack([chosen[:, 0], chosen[:, 1] - 1], dim=-1) + base
        states = self.decoder.word_states(
            self.start_query,
            self.end_query,
            positions,
            batch.word_starts,
            text,
            batch.attention_mask.bool(),
            widest_span(span_words),
        )
        # Spans go through the decoder and head a chunk at a time: the working set stays in
        # cache and memory stays bounded however many spans a batch has.
        chunk = self.settings.span_chunk
        packed = [
            self.classifier(
                self.head_mlp(
                    self.decoder.decode_spans(states, span_words[first : first + chunk])
                ).flatten(1)
            )
            for first in range(0, len(span_words), chunk)
        ]
        width = self.classifier.out_features
        logits = text.new_zeros((*spans.shape[:2], width))
        if packed:  # under autocast the head gives bf16: the scatter keeps the logits' dtype
            logits[rows, columns] = torch.cat(packed).to(logits.dtype)
        return logits

    def _positions(self, subword_index: torch.Tensor) -> torch.Tensor:
        if self.own_positions is not None:
            return self.own_positions(subword_index)
        return encoder_position_embeddings(self.encoder)(subword_index)

    def _filter(self, spans, span_mask, filter_logits):
        """Keep spans whose every word passes the filter; repack them densely (B, S', 2)."""
        threshold = self.settings.filter_threshold
        passing = filter_logits.sigmoid() >= threshold  # (B, W)
        # A span passes when no word in it fails: count failures with a prefix sum.
        fails = torch.cat(
            [torch.zeros_like(passing[:, :1], dtype=torch.long), (~passing).long().cumsum(1)], 1
        )  # (B, W + 1)
        rows = torch.arange(spans.size(0), device=spans.device).unsqueeze(1)
        bad = fails[rows, spans[..., 1]] - fails[rows, spans[..., 0]]
        keep = span_mask & (bad == 0)  # (B, S)
        counts = keep.sum(1)
        width = max(int(counts.max()) if counts.numel() else 0, 1)
        # Stable sort puts kept spans first, in their original order.
        order = torch.sort((~keep).long(), dim=1, stable=True).indices[:, :width]
        packed = spans.gather(1, order.unsqueeze(-1).expand(-1, -1, 2))
        packed_mask = keep.gather(1, order)
        return packed, packed_mask, int(counts.sum())

    # ------------------------------------------------------------------ decoding
    def calibrate(self, dev_score) -> dict[str, Any]:
        return self.calibrate_outside_bias(dev_score)

    def decode(self, output: Output, batch: SpanDecBatch) -> list[Prediction]:
        probs = self.outside_biased(output.tensors["logits"].float()).softmax(-1)  # (B, S, C)
        score, label = probs.max(-1)
        is_entity = (label > 0) & output.tensors["span_mask"]
        spans = output.tensors["spans"]
        nested = self.settings.nested
        predictions = []
        for row in range(len(batch.examples)):
            found = [
                SpanPrediction(s, e, self.config.labels[k - 1], p)
                for (s, e), k, p in zip(
                    spans[row][is_entity[row]].tolist(),
                    label[row][is_entity[row]].tolist(),
                    score[row][is_entity[row]].tolist(),
                    strict=True,
                )
            ]
            predictions.append(Prediction(spans=found if nested else greedy_flat(found)))
        return predictions


@register("sf-spandec")
class SFSpanDec(SpanDec):
    Settings = SFSpanDecSettings
    uses_filter = True
    statistics = (
        Statistic(
            "spans_kept", "token filter kept {fraction:.1%} of {total:.0f} candidate spans", "spans"
        ),
    )

    def calibrate(self, dev_score) -> dict[str, Any]:
        """Choose the filter threshold on dev: the highest one whose F1 is within 0.1 of the
        best, since a higher threshold prunes more spans (faster) at equal accuracy. Then the
        outside bias, with that threshold."""
        results = {}
        for threshold in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
            self.config.hyper["filter_threshold"] = threshold
            results[threshold] = dev_score()
        best = max(results.values())
        chosen = max(t for t, f1 in results.items() if f1 >= best - 0.1)
        self.config.hyper["filter_threshold"] = chosen
        return {
            "filter_threshold": chosen,
            "dev_f1_by_threshold": results,
            **self.calibrate_outside_bias(dev_score),
        }


def _init_from_layer(decoder: SpanDecoderLayer, layer: nn.Module) -> bool:
    """Start the decoder from the encoder layer it replaces (BERT-style layers), so the span
    queries read the text the way that layer's attention did; other encoders start at random.
    True when all four projections were copied."""
    pairs = {
        "query": ("attention", "self", "query"),
        "key": ("attention", "self", "key"),
        "value": ("attention", "self", "value"),
        "out": ("attention", "output", "dense"),
    }
    copied = 0
    with torch.no_grad():
        for ours, path in pairs.items():
            source = layer
            for name in path:
                source = getattr(source, name, None)
            target = getattr(decoder, ours)
            if isinstance(source, nn.Linear) and source.weight.shape == target.weight.shape:
                target.weight.copy_(source.weight)
                target.bias.copy_(source.bias)
                copied += 1
    return copied == len(pairs)
