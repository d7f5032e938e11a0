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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nerx.models.base import (
    Example,
    ModelConfig,
    Output,
    Prediction,
    SpanModel,
    SpanPrediction,
    gather_words,
    register,
    sentence_mask,
)
from nerx.models.encoder import drop_last_layer, encoder_layers, encoder_position_embeddings


def enumerate_spans(sentences: Sequence[tuple[int, int]], max_length: int) -> torch.Tensor:
    """All (start, end) word spans, end exclusive, of at most ``max_length`` words inside each
    sentence: (spans, 2), ordered by start then end."""
    chunks = []
    lengths = torch.arange(1, max_length + 1)
    for s, e in sentences:
        starts = torch.arange(s, e).unsqueeze(1)  # (words, 1)
        ends = starts + lengths  # (words, max_length)
        keep = ends <= e
        chunks.append(torch.stack([starts.expand_as(ends)[keep], ends[keep]], dim=-1))
    return torch.cat(chunks) if chunks else torch.zeros((0, 2), dtype=torch.long)


class SpanDecoderLayer(nn.Module):
    """Pre-norm cross-attention of span queries over ``[own two queries, text]``.

    A query depends only on its word's position, so its projections and its attention over
    the text are computed once per *word*: (B, W, T), not per span. Per span only the 2 x 2
    "own" scores are new; they are merged with the per-word text term through a shared
    log-sum-exp, which gives exactly the softmax over ``[q_i, q_j, z_1..z_L]`` without ever
    building a (spans x text) or (spans x spans) tensor.
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
        start_queries: torch.Tensor,
        end_queries: torch.Tensor,
        spans: torch.Tensor,
        text: torch.Tensor,
        text_mask: torch.Tensor,
        word_positions: torch.Tensor | None = None,
        text_positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # start/end_queries (B, W, H) per word; spans (B, S, 2) word (start, last);
        # text (B, T, H); text_mask (B, T) bool; word/text_positions (B, W, H) / (T, H): the
        # position embeddings for the position term. Returns (B, S, 2, H).
        b, _, h = start_queries.shape
        split = (self.heads, self.head_dim)
        scale = 1.0 / math.sqrt(self.head_dim)
        t_norm = self.norm_text(text)
        k_text = self.key(t_norm).view(b, -1, *split)  # (B, T, heads, d)
        v_text = self.value(t_norm).view(b, -1, *split)
        rows = torch.arange(b, device=spans.device).unsqueeze(1)
        position_scores = None
        if self.position_bias:
            pq = self.position_query(self.norm_position(word_positions)).view(b, -1, *split)
            pk = self.position_key(self.norm_position(text_positions)).view(-1, *split)
            position_scores = torch.einsum("bwhd,thd->bhwt", pq, pk) * scale  # (B, heads, W, T)
        q, k, v, text_max, text_sum, text_mix = [], [], [], [], [], []
        for queries, words in ((start_queries, spans[..., 0]), (end_queries, spans[..., 1])):
            normed = self.norm_query(queries)
            qw = self.query(normed).view(b, -1, *split)  # (B, W, heads, d)
            scores = torch.einsum("bwhd,bthd->bhwt", qw, k_text) * scale  # (B, heads, W, T)
            if position_scores is not None:
                scores = scores + position_scores
            scores = scores.masked_fill(~text_mask[:, None, None, :], float("-inf"))
            peak = scores.amax(-1, keepdim=True)  # (B, heads, W, 1)
            weights = (scores - peak).exp()
            mix = torch.einsum("bhwt,bthd->bwhd", weights, v_text)  # (B, W, heads, d)
            # Gather the per-word pieces for each span's start (or end) word: (B, S, ...)
            q.append(qw[rows, words])
            k.append(self.key(normed).view(b, -1, *split)[rows, words])
            v.append(self.value(normed).view(b, -1, *split)[rows, words])
            text_max.append(peak.squeeze(-1).transpose(1, 2)[rows, words])  # (B, S, heads)
            text_sum.append(weights.sum(-1).transpose(1, 2)[rows, words])  # (B, S, heads)
            text_mix.append(mix[rows, words])  # (B, S, heads, d)
        q_pair, k_pair, v_pair = (torch.stack(x, dim=2) for x in (q, k, v))  # (B, S, 2, heads, d)
        own = torch.einsum("bsqhd,bskhd->bsqhk", q_pair, k_pair) * scale  # (B, S, 2, heads, 2)
        t_max = torch.stack(text_max, dim=2)  # (B, S, 2, heads)
        peak = torch.maximum(own.amax(-1), t_max)
        own_w = (own - peak.unsqueeze(-1)).exp()  # (B, S, 2, heads, 2)
        text_w = (t_max - peak).exp()  # (B, S, 2, heads)
        total = own_w.sum(-1) + text_w * torch.stack(text_sum, dim=2)
        mixed = torch.einsum("bsqhk,bskhd->bsqhd", own_w, v_pair) + text_w.unsqueeze(
            -1
        ) * torch.stack(text_mix, dim=2)
        mixed = mixed / total.unsqueeze(-1)  # (B, S, 2, heads, d)
        queries = torch.stack(
            [start_queries[rows, spans[..., 0]], end_queries[rows, spans[..., 1]]], 2
        )
        return queries + self.dropout(self.out(mixed.reshape(*mixed.shape[:3], h)))


@register("spandec")
class SpanDec(SpanModel):
    uses_filter = False

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__(config, encoder, tokenizer)
        hyper = config.hyper
        hidden = encoder.config.hidden_size
        dropout = hyper.get("dropout", 0.1)
        last_layer = encoder_layers(encoder)[-1]
        drop_last_layer(encoder)
        self.decoder = SpanDecoderLayer(
            hidden,
            hyper.get("decoder_heads", encoder.config.num_attention_heads),
            dropout,
            position_bias=hyper.get("position_bias", True),
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
    def collate(self, examples: Sequence[Example]) -> dict[str, Any]:
        batch = self.pad_inputs(examples)
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
        batch.update(spans=spans, span_mask=span_mask, span_labels=labels)
        if self.uses_filter:
            # A word is "entity" when any gold span covers it; words outside focus: no gold.
            targets = torch.full(batch["word_mask"].shape, -1.0)
            targets[sentence_mask(examples, targets.size(1))] = 0.0
            for row, ex in enumerate(examples):
                for s, e, _ in ex.gold_spans:
                    targets[row, s:e] = 1.0
            batch["filter_targets"] = targets
        return batch

    # ------------------------------------------------------------------ forward
    def forward(self, batch: dict[str, Any]) -> Output:
        text = self.encode(batch)  # (B, T, H), the encoder minus its last layer
        spans, span_mask = batch["spans"], batch["span_mask"]  # (B, S, 2), (B, S)
        stats: dict[str, float] = {}
        loss = torch.zeros((), device=text.device)
        filter_logits = None
        if self.uses_filter:
            words = gather_words(text, batch["word_starts"])  # (B, W, H)
            filter_logits = self.token_filter(words).squeeze(-1)  # (B, W)
            if batch["has_gold"]:
                targets = batch["filter_targets"]
                known = targets >= 0
                loss = loss + F.binary_cross_entropy_with_logits(
                    filter_logits[known], targets[known]
                )
            if not self.training:
                spans, span_mask, kept = self._filter(spans, span_mask, filter_logits)
                stats = {"spans": float(batch["span_mask"].sum()), "spans_kept": float(kept)}
        logits = self._classify(text, batch, spans)  # (B, S, 1 + labels)
        # Filtered spans no longer line up with the gold labels: no span loss then.
        if batch["has_gold"] and (self.training or not self.uses_filter):
            loss = loss + F.cross_entropy(
                logits.flatten(0, 1), batch["span_labels"].flatten(), ignore_index=-100
            )
        return Output(
            loss=loss if batch["has_gold"] else None,
            tensors={"logits": logits, "spans": spans, "span_mask": span_mask},
            stats=stats,
        )

    def _classify(self, text, batch, spans) -> torch.Tensor:
        # Queries per word: m_start / m_end + the position of the word's first subword.
        positions = self._positions(batch["word_starts"])  # (B, W, H)
        text_positions = (
            self._positions(torch.arange(text.size(1), device=text.device))
            if self.decoder.position_bias
            else None
        )
        last_word = (spans[..., 1] - 1).clamp(min=0)
        word_spans = torch.stack([spans[..., 0], last_word], dim=-1)  # (B, S, 2) inclusive
        decoded = self.decoder(
            self.start_query + positions,
            self.end_query + positions,
            word_spans,
            text,
            batch["attention_mask"].bool(),
            positions,
            text_positions,
        )  # (B, S, 2, H)
        pair = self.head_mlp(decoded).flatten(2)  # (B, S, 2H)
        return self.classifier(pair)

    def _positions(self, subword_index: torch.Tensor) -> torch.Tensor:
        if self.own_positions is not None:
            return self.own_positions(subword_index)
        return encoder_position_embeddings(self.encoder)(subword_index)

    def _filter(self, spans, span_mask, filter_logits):
        """Keep spans whose every word passes the filter; repack them densely (B, S', 2)."""
        threshold = self.config.hyper.get("filter_threshold", 0.5)
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
    def decode(self, output: Output, batch: dict[str, Any]) -> list[Prediction]:
        probs = output.tensors["logits"].float().softmax(-1)  # (B, S, 1 + labels)
        score, label = probs.max(-1)
        is_entity = (label > 0) & output.tensors["span_mask"]
        spans = output.tensors["spans"]
        nested = self.config.hyper.get("nested", True)
        predictions = []
        for row in range(len(batch["examples"])):
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
    uses_filter = True

    def calibrate(self, dev_score) -> dict[str, Any]:
        """Choose the filter threshold on dev: the highest one whose F1 is within 0.1 of the
        best, since a higher threshold prunes more spans (faster) at equal accuracy."""
        results = {}
        for threshold in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
            self.config.hyper["filter_threshold"] = threshold
            results[threshold] = dev_score()
        best = max(results.values())
        chosen = max(t for t, f1 in results.items() if f1 >= best - 0.1)
        self.config.hyper["filter_threshold"] = chosen
        return {"filter_threshold": chosen, "dev_f1_by_threshold": results}


def greedy_flat(spans: list[SpanPrediction]) -> list[SpanPrediction]:
    """Most confident first, drop spans overlapping an already kept one (flat NER data)."""
    kept: list[SpanPrediction] = []
    for span in sorted(spans, key=lambda sp: -sp.score):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda sp: (sp.start, sp.end))


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
