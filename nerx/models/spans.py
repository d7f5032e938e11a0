"""Span enumeration and flat decoding, shared by the span kinds.

``enumerate_spans`` lists the candidate word spans of a window's sentences (spandec,
sf-spandec and plmarker classify them); ``greedy_flat`` keeps the most confident
non-overlapping predictions when the data has no nested entities (spandec, plmarker, iter,
sener). Both work on window-relative word indices, ``end`` exclusive.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from nerx.doc import first_disjoint
from nerx.models.base import SpanPrediction


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


def greedy_flat(spans: Sequence[SpanPrediction]) -> list[SpanPrediction]:
    """Most confident first, drop spans overlapping an already kept one (flat NER data);
    the kept spans in text order."""
    by_confidence = sorted(range(len(spans)), key=lambda i: -spans[i].score)
    kept = first_disjoint([(sp.start, sp.end) for sp in spans], by_confidence)
    return [spans[i] for i in kept]
