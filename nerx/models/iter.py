"""``iter``: joint entity recognition and relation extraction in linear time (ITER).

ITER ("Iterative Transformer-based Entity Recognition and Relation Extraction") reads every
entity and relation off three small heads over the encoder's word vectors ``h`` (each word's
first subword), each a gated feed-forward network ``(f(x W_a) * x W_i) W_o``:

* ``is_left``: one logit per word, "an entity starts here" (a *left bracket*; BCE).
* ``is_span``: every word ``m`` (a candidate last word) is paired with the ``omega`` closest
  left brackets ``n <= m`` in its sentence; the pair ``[h_n; h_m]`` gets one logit per entity
  type (sigmoid per type, so a span may nest in another or carry two types). The network
  reads the concatenation, but a linear map of a concatenation is the sum of the maps of its
  pieces, so ``h W`` is computed once per word and a pair only adds two rows: the gate's
  product ``f(a_n + a_m) * (i_n + i_m)`` then carries the n-m interaction terms (a bilinear
  form in effect), and no pair vector of size ``2H`` is ever built.
* ``is_link``: every ordered pair of entities (gold in training, predicted at inference) of
  one example gets one logit per relation type from ``[h_start_head; h_end_head;
  h_start_tail; h_end_tail]`` (psi = 4: start *and* end, so nested entities that share a
  word differ), by the same sum-of-pieces trick.

The three losses are summed (weights below). ``omega`` bounds the candidates to ``N * omega``
per window of ``N`` words, so inference costs O(N + E^2) for E entities and no N x N tensor
is built. By default ``omega`` is learned from the training data as in the paper: the
smallest value for which every gold entity's start is among the ``omega`` closest left
brackets at or before its last word.

What we do differently: in training, ``is_span`` pairs with the *gold* left brackets only
(teacher forcing). ``omega`` is measured on gold brackets, so every gold span is then a
candidate by construction; extra predicted brackets could push a gold start out of the
``omega`` window and take its positive away. The output biases start at a low prior (about
5%) so an untrained model predicts few spans and pairs instead of nearly all of them.
Relations whose labels are in ``config.symmetric_relations`` are trained with both
directions as positives and predicted once per unordered pair (the higher of the two
directions' scores, head = the entity first in text order); names that are not relation
labels of the model are ignored. With training data that does not nest
(``hyper["nested"]`` False), the spans are reduced to a non-overlapping set, most confident
first.

Settings (``config.hyper``):

* ``omega`` (learned; 4 when never learned): left brackets paired with each word.
* ``ffn_size`` (2 x encoder hidden size): inner size of each gated FFN.
* ``activation`` (``"gelu"``): ``f`` of the gated FFNs (``gelu``, ``silu``, ``relu``).
* ``dropout`` (0.1): on the word vectors and inside the gated FFNs.
* ``left_threshold``, ``span_threshold``, ``link_threshold`` (0.5 each): sigmoid cut-offs.
  After training, the span and then the link threshold are chosen on dev from
  ``THRESHOLDS`` (``nerx train`` records the choice).
* ``left_weight``, ``span_weight``, ``link_weight`` (1.0 each): weights of the three losses.
"""

from __future__ import annotations

import bisect
from collections import Counter
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
    WordSettings,
    gather_words,
    register,
    sentence_mask,
    setting,
)
from nerx.models.spans import greedy_flat

DEFAULT_OMEGA = 4
#: Sigmoid cut-offs tried on dev after training; the default first, so it wins ties.
THRESHOLDS = (0.5, 0.3, 0.4, 0.6, 0.7)
#: Initial output bias: sigmoid(-3) is about 0.05, a prior that keeps early predictions few.
PRIOR_BIAS = -3.0
#: Elements of a pair block built at once while scoring entity pairs (bounds memory).
PAIR_BLOCK = 1 << 24

ACTIVATIONS: dict[str, type[nn.Module]] = {"gelu": nn.GELU, "silu": nn.SiLU, "relu": nn.ReLU}


class GatedFFN(nn.Module):
    """``(f(x W_a) * x W_i) W_o`` over an input made of ``parts`` vectors of size ``d_in``.

    ``project(x, part)`` maps one piece alone (no bias); adding the projections of the pieces
    and calling ``finish`` equals ``forward`` on their concatenation, so pairs are scored
    from per-item projections without building the concatenated vectors.
    """

    def __init__(
        self,
        d_in: int,
        d_ff: int,
        d_out: int,
        *,
        parts: int = 1,
        activation: str = "gelu",
        dropout: float = 0.0,
        bias: float = 0.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r} for the gated FFN",
                hint=f"set hyper activation to one of: {', '.join(ACTIVATIONS)}",
            )
        self.d_in = d_in
        self.inner = nn.Linear(parts * d_in, 2 * d_ff)  # [W_a; W_i] in one matrix
        self.out = nn.Linear(d_ff, d_out)
        nn.init.constant_(self.out.bias, bias)
        self.act = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)

    def project(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """(..., d_in) -> (..., 2 d_ff): the contribution of input piece ``part``."""
        return F.linear(x, self.inner.weight[:, part * self.d_in : (part + 1) * self.d_in])

    def finish(self, projected: torch.Tensor) -> torch.Tensor:
        """(..., 2 d_ff), the summed projections of all pieces -> (..., d_out)."""
        gate, value = (projected + self.inner.bias).chunk(2, dim=-1)
        return self.out(self.dropout(self.act(gate) * value))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(F.linear(x, self.inner.weight))


def span_candidates(
    lefts: torch.Tensor, sentence_start: torch.Tensor, omega: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``omega`` closest left brackets at or before each word, within its sentence.

    ``lefts`` (B, W) bool marks the brackets; ``sentence_start`` (B, W) is the first word of
    each word's sentence (``W`` or more for words outside every sentence). Returns the
    bracket positions (B, W, omega), closest first (-1 where there are fewer), and a mask of
    the valid ones. O(W * omega): each step jumps to the bracket before the current one.
    """
    b, w = lefts.shape
    positions = torch.arange(w, device=lefts.device).expand(b, w)
    latest = torch.where(lefts, positions, -1).cummax(dim=1).values  # (B, W) bracket <= m
    columns, current = [], latest
    for _ in range(omega):
        columns.append(current)
        earlier = latest.gather(1, (current - 1).clamp(min=0))
        current = torch.where(current > 0, earlier, -1)
    candidates = torch.stack(columns, dim=-1)  # (B, W, omega)
    return candidates, candidates >= sentence_start.unsqueeze(-1)


def learn_omega(examples: Sequence[Example]) -> int:
    """The smallest omega for which every gold span's start is among the omega closest left
    brackets at or before its last word (0 when there is no gold span)."""
    worst = 0
    for ex in examples:
        lefts = sorted({s for s, _, _ in ex.gold_spans})
        for s, e, _ in ex.gold_spans:
            worst = max(worst, bisect.bisect_right(lefts, e - 1) - bisect.bisect_left(lefts, s))
    return worst


def select_spans(
    span_logits: torch.Tensor,
    candidates: torch.Tensor,
    candidate_mask: torch.Tensor,
    labels: Sequence[str],
    threshold: float,
    nested: bool,
) -> list[list[SpanPrediction]]:
    """Spans per row whose type probability passes ``threshold``, in text order; without
    ``nested``, the most confident non-overlapping ones. span_logits (B, W, omega, T)."""
    probs = span_logits.float().sigmoid()
    hits = (probs >= threshold) & candidate_mask.unsqueeze(-1)
    b, m, k, t = hits.nonzero().unbind(-1)
    rows: list[list[SpanPrediction]] = [[] for _ in range(span_logits.size(0))]
    for row, start, last, label, score in zip(
        b.tolist(),
        candidates[b, m, k].tolist(),
        m.tolist(),
        t.tolist(),
        probs[b, m, k, t].tolist(),
        strict=True,
    ):
        rows[row].append(SpanPrediction(start, last + 1, labels[label], score))
    if not nested:
        return [greedy_flat(row) for row in rows]
    return [sorted(row, key=lambda sp: (sp.start, sp.end, sp.label)) for row in rows]


def entity_bounds(spans: Sequence[Sequence[SpanPrediction]], device=None) -> torch.Tensor:
    """(B, E, 2): each row's spans as (start, last word), zero-padded to the most spans in a
    row (at least one)."""
    most = max(1, max((len(row) for row in spans), default=0))
    bounds = torch.zeros((len(spans), most, 2), dtype=torch.long, device=device)
    for row, found in enumerate(spans):
        if found:
            bounds[row, : len(found)] = torch.tensor(
                [[sp.start, sp.end - 1] for sp in found], device=device
            )
    return bounds


def decode_relations(
    link_logits: torch.Tensor, labels: Sequence[str], symmetric: torch.Tensor, threshold: float
) -> list[tuple[int, int, str, float]]:
    """(head, tail, label, score) from link_logits (E, E, R) over entities in text order. A
    symmetric label (``symmetric`` (R,) bool) scores an unordered pair by the higher of its
    two directions and is emitted once, head first in text order."""
    probs = link_logits.float().sigmoid()  # (E, E, R)
    n = probs.size(0)
    combined = torch.where(symmetric, torch.maximum(probs, probs.transpose(0, 1)), probs)
    index = torch.arange(n, device=probs.device)
    off_diagonal = (index[:, None] != index[None, :]).unsqueeze(-1)  # (E, E, 1)
    forward_only = (index[:, None] < index[None, :]).unsqueeze(-1)
    allowed = off_diagonal & (~symmetric | forward_only)  # (E, E, R)
    hits = (combined >= threshold) & allowed
    return [
        (head, tail, labels[r], float(combined[head, tail, r]))
        for head, tail, r in hits.nonzero().tolist()
    ]


@dataclass(frozen=True)
class IterSettings(WordSettings):
    omega: int = setting(DEFAULT_OMEGA, "left brackets paired with each word (learned)", at_least=1)
    ffn_size: int | None = setting(
        None, "inner size of each gated FFN (null: twice the encoder's hidden size)", at_least=1
    )
    activation: str = setting("gelu", "f of the gated FFNs", choices=tuple(ACTIVATIONS))
    dropout: float = setting(0.1, "on the word vectors and in the FFNs", at_least=0.0, at_most=1.0)
    left_threshold: float = setting(
        0.5, "sigmoid cut-off of a left bracket", at_least=0.0, at_most=1.0
    )
    span_threshold: float = setting(
        0.5, "sigmoid cut-off of a span (chosen on dev)", at_least=0.0, at_most=1.0
    )
    link_threshold: float = setting(
        0.5, "sigmoid cut-off of a relation (chosen on dev)", at_least=0.0, at_most=1.0
    )
    left_weight: float = setting(1.0, "weight of the left-bracket loss", at_least=0.0)
    span_weight: float = setting(1.0, "weight of the span loss", at_least=0.0)
    link_weight: float = setting(1.0, "weight of the relation loss", at_least=0.0)


@dataclass
class IterBatch(Batch):
    sentence_start: torch.Tensor | None = None  # (B, W) first word of each word's sentence
    # With gold only:
    left_targets: torch.Tensor | None = None  # (B, W) 1.0 where a gold span starts
    candidates: torch.Tensor | None = None  # (B, W, omega) gold left brackets paired
    candidate_mask: torch.Tensor | None = None  # (B, W, omega)
    span_targets: torch.Tensor | None = None  # (B, W, omega, labels)
    entity_bounds: torch.Tensor | None = None  # (B, E, 2) gold entities (start, last word)
    entity_mask: torch.Tensor | None = None  # (B, E)
    link_targets: torch.Tensor | None = None  # (B, E, E, relations)


@register("iter")
class Iter(SpanModel):
    Settings = IterSettings
    predicts_relations = True

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__(config, encoder, tokenizer)
        settings = self.settings
        hidden = encoder.config.hidden_size
        dropout = settings.dropout
        shape = {
            "d_in": hidden,
            "d_ff": settings.ffn_size or 2 * hidden,
            "activation": settings.activation,
            "dropout": dropout,
            "bias": PRIOR_BIAS,
        }
        self.dropout = nn.Dropout(dropout)
        self.is_left = GatedFFN(d_out=1, **shape)
        self.is_span = GatedFFN(d_out=len(config.labels), parts=2, **shape)
        n_relations = len(config.relation_labels)
        self.is_link = GatedFFN(d_out=n_relations, parts=4, **shape) if n_relations else None
        known = set(config.symmetric_relations)
        self.register_buffer(
            "symmetric",
            torch.tensor([label in known for label in config.relation_labels], dtype=torch.bool),
            persistent=False,
        )

    @property
    def omega(self) -> int:
        return self.settings.omega

    def learn_from_data(self, examples: Sequence[Example]) -> dict[str, Any]:
        omega = learn_omega(examples)
        return {"omega": omega} if omega else {}

    # ------------------------------------------------------------------ batching
    def collate(self, examples: Sequence[Example]) -> IterBatch:
        batch = self.pad_inputs(examples, IterBatch)
        width = batch.word_mask.size(1)
        starts = torch.full((len(examples), width), width, dtype=torch.long)
        for row, ex in enumerate(examples):
            for s, e in ex.sentences:
                starts[row, s:e] = s
        batch.sentence_start = starts
        if batch.has_gold:
            self._span_targets(examples, batch)
            self._link_targets(examples, batch)
        return batch

    def _span_targets(self, examples: Sequence[Example], batch: IterBatch) -> None:
        """Gold left brackets; candidates paired with them and their per-type targets."""
        sentence_start = batch.sentence_start
        lefts = torch.zeros(sentence_start.shape, dtype=torch.bool)
        for row, ex in enumerate(examples):
            for s, _, _ in ex.gold_spans:
                lefts[row, s] = True
        candidates, mask = span_candidates(lefts, sentence_start, self.omega)
        targets = torch.zeros((*candidates.shape, len(self.config.labels)))
        for row, ex in enumerate(examples):
            for s, e, label_id in ex.gold_spans:
                # Absent only when a user-set omega is smaller than the data needs.
                for k in (candidates[row, e - 1] == s).nonzero().flatten().tolist():
                    targets[row, e - 1, k, label_id - 1] = 1.0
        batch.left_targets, batch.span_targets = lefts.float(), targets
        batch.candidates, batch.candidate_mask = candidates, mask

    def _link_targets(self, examples: Sequence[Example], batch: IterBatch) -> None:
        """Gold entities as (start, last word) and per-relation targets for every pair."""
        most = max(1, max(len(ex.gold_spans) for ex in examples))
        bounds = torch.zeros((len(examples), most, 2), dtype=torch.long)
        mask = torch.zeros((len(examples), most), dtype=torch.bool)
        targets = torch.zeros((len(examples), most, most, len(self.config.relation_labels)))
        symmetric = self.symmetric.tolist()
        for row, ex in enumerate(examples):
            for k, (s, e, _) in enumerate(ex.gold_spans):
                bounds[row, k] = torch.tensor([s, e - 1])
                mask[row, k] = True
            for head, tail, r in ex.gold_relations:
                targets[row, head, tail, r] = 1.0
                if symmetric[r]:
                    targets[row, tail, head, r] = 1.0
        batch.entity_bounds, batch.entity_mask, batch.link_targets = bounds, mask, targets

    # ------------------------------------------------------------------ forward
    def forward(self, batch: IterBatch) -> Output:
        """Word vectors and left-bracket logits; at inference also the spans the predicted
        brackets start and their type logits (training scores the gold brackets' spans, in
        the loss). Links need the spans decoded first: :meth:`predict` adds them."""
        hidden = self.encode(batch)  # (B, T, H)
        words = self.dropout(gather_words(hidden, batch.word_starts))  # (B, W, H)
        left_logits = self._left_logits(words)  # (B, W)
        loss = self._loss(words, left_logits, batch) if batch.has_gold else None
        tensors: dict[str, Any] = {"words": words, "left_logits": left_logits}
        stats: dict[str, float] = {}
        if not self.training:
            lefts = left_logits.float().sigmoid() >= self.settings.left_threshold
            candidates, mask = span_candidates(lefts, batch.sentence_start, self.omega)
            tensors.update(
                candidates=candidates,  # (B, W, omega)
                candidate_mask=mask,
                span_logits=self._span_logits(words, candidates),  # (B, W, omega, labels)
            )
            stats = {"candidate_spans": float(mask.sum()), "left_brackets": float(lefts.sum())}
        return Output(loss=loss, tensors=tensors, stats=stats)

    def _left_logits(self, words: torch.Tensor) -> torch.Tensor:
        return self.is_left(words).squeeze(-1)  # (B, W)

    def _span_logits(self, words: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(B, W, omega, labels) for the pairs (candidates[b, m, k], m)."""
        left = self.is_span.project(words, 0)  # (B, W, 2F)
        right = self.is_span.project(words, 1)
        rows = torch.arange(words.size(0), device=words.device)[:, None, None]
        pairs = left[rows, candidates.clamp(min=0)] + right.unsqueeze(2)  # (B, W, omega, 2F)
        return self.is_span.finish(pairs)

    def _link_logits(self, words: torch.Tensor, bounds: torch.Tensor) -> torch.Tensor:
        """(B, E, E, relations) for every ordered pair of entities (start, last word)."""
        first = gather_words(words, bounds[..., 0])  # (B, E, H)
        last = gather_words(words, bounds[..., 1])
        head = self.is_link.project(first, 0) + self.is_link.project(last, 1)  # (B, E, 2F)
        tail = self.is_link.project(first, 2) + self.is_link.project(last, 3)
        b, e, f = head.shape
        step = max(1, PAIR_BLOCK // max(1, b * e * f))  # heads per block: bounded memory
        blocks = [
            self.is_link.finish(head[:, i : i + step, None] + tail[:, None])  # (B, step, E, R)
            for i in range(0, e, step)
        ]
        return torch.cat(blocks, dim=1)

    def _loss(self, words, left_logits, batch) -> torch.Tensor:
        settings = self.settings
        in_sentence = sentence_mask(batch.examples, words.size(1)).to(words.device)
        loss = settings.left_weight * F.binary_cross_entropy_with_logits(
            left_logits[in_sentence], batch.left_targets[in_sentence]
        )
        span_logits = self._span_logits(words, batch.candidates)
        valid = batch.candidate_mask
        loss = loss + settings.span_weight * F.binary_cross_entropy_with_logits(
            span_logits[valid], batch.span_targets[valid]
        )
        if self.is_link is not None:
            link_logits = self._link_logits(words, batch.entity_bounds)
            pairs = _pair_mask(batch.entity_mask)
            if pairs.any():
                loss = loss + settings.link_weight * F.binary_cross_entropy_with_logits(
                    link_logits[pairs], batch.link_targets[pairs]
                )
        return loss

    # ------------------------------------------------------------------ inference
    def predict(self, batch: IterBatch, stats: Counter[str] | None = None) -> list[Prediction]:
        """Left brackets -> spans -> links between the spans that will be emitted."""
        output = self(batch)
        if self.config.relation_labels:
            words = output.tensors["words"]
            bounds = entity_bounds(self._spans(output), words.device)
            output.tensors["link_logits"] = self._link_logits(words, bounds)  # (B, E, E, R)
        if stats is not None:
            stats.update(output.stats)
        return self.decode(output, batch)

    def _spans(self, output: Output) -> list[list[SpanPrediction]]:
        settings, tensors = self.settings, output.tensors
        return select_spans(
            tensors["span_logits"],
            tensors["candidates"],
            tensors["candidate_mask"],
            self.config.labels,
            settings.span_threshold,
            settings.nested,
        )

    def calibrate(self, dev_score) -> dict[str, Any]:
        """Choose the span, then the link threshold on dev (Rel+ when the data has
        relations); 0.5 stays unless another value scores strictly better."""
        chosen = self.tune(dev_score, "span_threshold", THRESHOLDS)
        if self.is_link is not None:
            chosen.update(self.tune(dev_score, "link_threshold", THRESHOLDS))
        return chosen

    def decode(self, output: Output, batch: IterBatch) -> list[Prediction]:
        """Spans, and relations when the output holds link logits for them (after
        :meth:`predict`)."""
        spans = self._spans(output)
        links = output.tensors.get("link_logits")
        threshold = self.settings.link_threshold
        predictions = []
        for row, found in enumerate(spans):
            relations = []
            if links is not None and len(found) > 1:
                relations = decode_relations(
                    links[row, : len(found), : len(found)],
                    self.config.relation_labels,
                    self.symmetric.to(links.device),
                    threshold,
                )
            predictions.append(Prediction(spans=list(found), relations=relations))
        return predictions


def _pair_mask(entity_mask: torch.Tensor) -> torch.Tensor:
    """(B, E, E) True for ordered pairs of two different real entities."""
    n = entity_mask.size(1)
    different = ~torch.eye(n, dtype=torch.bool, device=entity_mask.device)
    return entity_mask[:, :, None] & entity_mask[:, None, :] & different
