"""What a lossy writer counts as not kept, worded the same in every format's report."""

from __future__ import annotations

from collections.abc import Iterable

from nerx.doc import Document, tokenize
from nerx.io.base import Report

LOST_ENTITY_SCORES = "entity scores"
LOST_RELATION_SCORES = "relation scores"
LOST_SENTENCES = "sentence boundaries (documents)"
LOST_TOKENS = "token boundaries (documents)"
LOST_META = "document meta fields"


def count_scores(doc: Document, report: Report, *, entities: bool, relations: bool) -> None:
    """Count the scores a format has no place for (``entities``/``relations``: it has none)."""
    if entities and (n := sum(e.score is not None for e in doc.entities)):
        report.lost[LOST_ENTITY_SCORES] += n
    if relations and (n := sum(r.score is not None for r in doc.relations)):
        report.lost[LOST_RELATION_SCORES] += n


def count_views(doc: Document, report: Report, *, sentences: bool = True) -> None:
    """Count token (and sentence) boundaries that re-tokenising the text would not give back."""
    if sentences and doc.sentences:
        report.lost[LOST_SENTENCES] += 1
    if doc.tokens:
        derived = tokenize(doc.text, {b for e in doc.entities for b in (e.start, e.end)})
        if [tuple(t) for t in doc.tokens] != derived:
            report.lost[LOST_TOKENS] += 1


def count_meta(doc: Document, report: Report, kept: Iterable[str] = ()) -> None:
    """Count meta fields other than ``kept`` as not kept."""
    keep = set(kept)
    if n := sum(key not in keep for key in doc.meta):
        report.lost[LOST_META] += n
