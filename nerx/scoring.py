"""Span-level metrics: strict and boundary NER, Rel and Rel+ relation extraction.

>>> result = nerx.evaluate("gold.jsonl", "pred.jsonl", symmetric=["CONJUNCTION"])
>>> result.entities.f1, result.relations.per_label["Work_For"].recall
>>> result.to_dict()                       # plain data, ready for JSON

Gold and predicted documents are paired by id and must carry the same text. Every figure is
micro-averaged over all documents: true positives, false positives and false negatives are
summed first, then turned into precision, recall and F1.

What counts as a match (each document's annotations are sets, so a duplicate counts once):

- **entities** (strict): same ``(start, end, label)``.
- **boundary**: same ``(start, end)`` whatever the label. Micro only: a per-label figure would
  need the gold label for recall and the predicted label for precision, so its true positives
  would differ between the two and fit no single tp/fp/fn row.
- **relations** (Rel): same head span, tail span and relation label.
- **relations_strict** (Rel+): Rel plus the labels of both entities.

Relation labels named in ``symmetric`` have no direction. By default ``(a, b)`` and ``(b, a)``
are one relation, counted once. ``symmetric_twice=True`` follows PL-Marker instead: every
symmetric relation, gold or predicted, stands for both directions, so it counts twice.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nerx.doc import Document, Entity
from nerx.errors import DocumentMismatchError

Source = str | os.PathLike | Iterable[Document]
Key = tuple[Hashable, ...]

# How much of each text to quote when gold and prediction texts disagree.
_QUOTE = 20


@dataclass
class Scores:
    """True positives, false positives and false negatives, with the figures they give.

    ``per_label`` holds the same counts for each label (empty where a block has none);
    the block's own counts are their sums.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0
    per_label: dict[str, Scores] = field(default_factory=dict)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        # Equal to 2PR / (P + R) whenever that is defined, without its rounding.
        return 2 * self.tp / (2 * self.tp + self.fp + self.fn) if self.tp else 0.0

    @property
    def gold(self) -> int:
        return self.tp + self.fn

    @property
    def predicted(self) -> int:
        return self.tp + self.fp

    def add(self, gold: set[Key], pred: set[Key], *, by_label: bool) -> None:
        """Count one document's gold and predicted keys; a key's last item is its label."""
        for name, keys in (("tp", gold & pred), ("fp", pred - gold), ("fn", gold - pred)):
            _bump(self, name, len(keys))
            if by_label:
                for key in keys:
                    _bump(self.per_label.setdefault(str(key[-1]), Scores()), name, 1)

    def figures(self) -> dict[str, Any]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }

    def to_dict(self) -> dict[str, Any]:
        per_label = {label: s.figures() for label, s in sorted(self.per_label.items())}
        return {**self.figures(), "per_label": per_label}


def _bump(scores: Scores, name: str, n: int) -> None:
    setattr(scores, name, getattr(scores, name) + n)


@dataclass
class EvalResult:
    """Everything :func:`evaluate` measured, one :class:`Scores` block per match criterion."""

    documents: int = 0
    entities: Scores = field(default_factory=Scores)
    boundary: Scores = field(default_factory=Scores)
    relations: Scores = field(default_factory=Scores)
    relations_strict: Scores = field(default_factory=Scores)
    symmetric: tuple[str, ...] = ()
    symmetric_twice: bool = False

    @property
    def has_relations(self) -> bool:
        """Whether gold or predictions hold any relation at all."""
        return bool(self.relations.gold or self.relations.predicted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "entities": self.entities.to_dict(),
            "boundary": self.boundary.to_dict(),
            "relations": self.relations.to_dict(),
            "relations_strict": self.relations_strict.to_dict(),
            "symmetric": list(self.symmetric),
            "symmetric_twice": self.symmetric_twice,
        }


# --------------------------------------------------------------------------- keys
def _entity_keys(doc: Document) -> set[Key]:
    return {(e.start, e.end, e.label) for e in doc.entities}


def _boundary_keys(doc: Document) -> set[Key]:
    return {(e.start, e.end) for e in doc.entities}


def _span(entity: Entity) -> Key:
    return (entity.start, entity.end)


def _typed_span(entity: Entity) -> Key:
    return (entity.start, entity.end, entity.label)


def _relation_keys(
    doc: Document,
    argument: Callable[[Entity], Key],
    symmetric: Collection[str],
    twice: bool,
) -> set[Key]:
    """``(head, tail, label)`` keys, with symmetric relations put in their counting form."""
    keys: set[Key] = set()
    for rel in doc.relations:
        head = argument(doc.entities[rel.head])
        tail = argument(doc.entities[rel.tail])
        if rel.label in symmetric:
            if twice:
                keys.add((tail, head, rel.label))
            else:
                head, tail = sorted((head, tail))
        keys.add((head, tail, rel.label))
    return keys


@dataclass
class _Keys:
    """What one document contributes to each block, so gold can be held without its Document."""

    text: str
    entities: set[Key]
    boundary: set[Key]
    relations: set[Key]
    relations_strict: set[Key]

    @classmethod
    def of(cls, doc: Document, symmetric: Collection[str], twice: bool) -> _Keys:
        return cls(
            doc.text,
            _entity_keys(doc),
            _boundary_keys(doc),
            _relation_keys(doc, _span, symmetric, twice),
            _relation_keys(doc, _typed_span, symmetric, twice),
        )


def _tally(result: EvalResult, gold: _Keys, pred: _Keys) -> None:
    result.documents += 1
    result.entities.add(gold.entities, pred.entities, by_label=True)
    result.boundary.add(gold.boundary, pred.boundary, by_label=False)
    result.relations.add(gold.relations, pred.relations, by_label=True)
    result.relations_strict.add(gold.relations_strict, pred.relations_strict, by_label=True)


# --------------------------------------------------------------------------- pairing
def _documents(source: Source, format: str | None, side: str) -> Iterator[Document]:
    if isinstance(source, str | os.PathLike):
        from nerx.io import read

        yield from read(source, format)
        return
    for doc in source:
        yield doc.validate(where=f"{side}: document {doc.id!r}")


def _first_difference(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def _quote(text: str, at: int) -> str:
    return repr(text[at : at + _QUOTE]) if at < len(text) else "the end of the text"


def _check_text(doc_id: str, gold: str, pred: str) -> None:
    if gold == pred:
        return
    at = _first_difference(gold, pred)
    raise DocumentMismatchError(
        f"the predicted text differs from the gold text at character {at}: gold has "
        f"{_quote(gold, at)}, the prediction has {_quote(pred, at)}",
        where=f"document {doc_id!r}",
        hint="predictions must keep the gold text unchanged (same tokenisation and spacing)",
    )


def _hold_gold(
    docs: Iterable[Document], symmetric: Collection[str], twice: bool
) -> dict[str, _Keys]:
    held: dict[str, _Keys] = {}
    for doc in docs:
        if doc.id in held:
            raise DocumentMismatchError(
                f"document id {doc.id!r} occurs twice in gold",
                hint="documents are paired by id, so ids must be unique",
            )
        held[doc.id] = _Keys.of(doc, symmetric, twice)
    return held


def _missing_predictions(gold: dict[str, _Keys]) -> DocumentMismatchError:
    ids = list(gold)
    more = f" (and {len(ids) - 1} more)" if len(ids) > 1 else ""
    return DocumentMismatchError(
        f"gold document {ids[0]!r}{more} has no prediction",
        hint="predict every gold document; give a document with no entities where nothing was found",
    )


def evaluate(
    gold: Source,
    pred: Source,
    *,
    symmetric: Iterable[str] = (),
    symmetric_twice: bool = False,
    gold_format: str | None = None,
    pred_format: str | None = None,
) -> EvalResult:
    """Score predictions against gold: strict and boundary NER, Rel and Rel+.

    ``gold`` and ``pred`` are paths (read with :func:`nerx.read`, in ``gold_format`` /
    ``pred_format`` or a detected format) or iterables of documents. Gold is held in memory;
    predictions stream. A document on one side only, a repeated id, or a text that differs
    between the two raises :class:`~nerx.errors.DocumentMismatchError` naming the document.
    See the module docstring for what each block counts.
    """
    # One label given as a plain string must not become a set of its characters.
    labels = frozenset([symmetric] if isinstance(symmetric, str) else symmetric)
    held = _hold_gold(_documents(gold, gold_format, "gold"), labels, symmetric_twice)
    result = EvalResult(symmetric=tuple(sorted(labels)), symmetric_twice=symmetric_twice)
    seen: set[str] = set()
    for doc in _documents(pred, pred_format, "prediction"):
        if doc.id not in held:
            repeated = doc.id in seen
            raise DocumentMismatchError(
                f"predicted document {doc.id!r} "
                + ("occurs twice in the predictions" if repeated else "has no gold document"),
                hint="documents are paired by id: gold and predictions must hold the same ids",
            )
        gold_keys = held.pop(doc.id)
        seen.add(doc.id)
        _check_text(doc.id, gold_keys.text, doc.text)
        _tally(result, gold_keys, _Keys.of(doc, labels, symmetric_twice))
    if held:
        raise _missing_predictions(held)
    return result
