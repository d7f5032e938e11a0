"""Prodigy JSONL, both ways: ``text``, ``tokens``, ``spans`` and ``relations``.

Spans are character offsets with the token range they cover (``token_end`` inclusive, as in
Prodigy); a relation names its two spans by their last token (``head``, ``child``) and by the
spans themselves::

    {"text": "Ada met Babbage.", "tokens": [{"text": "Ada", "start": 0, "end": 3, "id": 0,
     "ws": true}, ...], "spans": [{"start": 0, "end": 3, "token_start": 0, "token_end": 0,
     "label": "PER"}, ...], "relations": [{"head": 0, "child": 2, "label": "Knows",
     "head_span": {...}, "child_span": {...}}], "id": "d1"}

What a recipe such as ``ner.correct`` or ``rel.manual`` reads. The document id and ``meta``
fields are top-level keys, which Prodigy keeps with the example. Relation scores and
sentences have no place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from nerx.doc import Document
from nerx.io import jsonl, losses
from nerx.io.base import Report, atomic_file

NAME = "prodigy"
SUFFIXES: tuple[str, ...] = ()  # .jsonl is shared with native JSONL; told apart by content

__all__ = ["NAME", "SUFFIXES", "sniff", "read", "write"]

CUT_TOKEN = "Prodigy spans that cut a token (written without token_start/token_end)"
_KEYS = ("id", "text", "tokens", "spans", "relations")


def sniff(head: str) -> bool:
    """The first line is an object with ``text`` and ``spans``, or spaCy-style token objects."""
    first = head.lstrip("\ufeff \t\r\n").split("\n", 1)[0]
    try:
        data = orjson.loads(first)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(data, dict) or "text" not in data:
        return False
    tokens = data.get("tokens")
    return "spans" in data or (
        isinstance(tokens, list) and bool(tokens) and isinstance(tokens[0], dict)
    )


def read(source: str | os.PathLike, report: Report | None = None) -> Iterator[Document]:
    """Stream the documents of a Prodigy JSONL file (its ``answer`` and other keys to meta)."""
    return jsonl.read(source, report, dialect=NAME)


def write(
    docs: Iterable[Document], target: str | os.PathLike, report: Report | None = None
) -> None:
    """Write Prodigy JSONL; documents without tokens get them from the text."""
    report = report if report is not None else Report()
    with atomic_file(target, "wb") as out:
        for doc in docs:
            example = _example(doc, report)
            out.write(orjson.dumps(example, option=orjson.OPT_APPEND_NEWLINE))
            report.count_written(len(doc.entities), len(example.get("relations", ())))


def _example(doc: Document, report: Report) -> dict[str, Any]:
    doc.ensure_tokens()
    tokens = [
        {
            "text": doc.text[start:end],
            "start": start,
            "end": end,
            "id": i,
            "ws": doc.text[end : end + 1].isspace(),
        }
        for i, (start, end) in enumerate(doc.tokens)
    ]
    spans = []
    for entity, token_span in zip(doc.entities, doc.entity_token_spans(), strict=True):
        span: dict[str, Any] = {"start": entity.start, "end": entity.end, "label": entity.label}
        if token_span is None:
            report.notes[CUT_TOKEN] += 1
        else:
            span["token_start"], span["token_end"] = token_span[0], token_span[1] - 1
        if entity.score is not None:
            span["score"] = entity.score
        spans.append(span)
    relations = []
    for relation in doc.relations:
        head, child = spans[relation.head], spans[relation.tail]
        if "token_end" not in head or "token_end" not in child:
            report.lost[jsonl.LOST_ARGUMENT] += 1
            continue
        relations.append(
            {
                "head": head["token_end"],
                "child": child["token_end"],
                "label": relation.label,
                "head_span": {k: v for k, v in head.items() if k != "score"},
                "child_span": {k: v for k, v in child.items() if k != "score"},
            }
        )
    losses.count_scores(doc, report, entities=False, relations=True)
    if doc.sentences:
        report.lost[losses.LOST_SENTENCES] += 1
    example: dict[str, Any] = {"text": doc.text, "tokens": tokens, "spans": spans}
    if relations:
        example["relations"] = relations
    example["id"] = doc.id
    clashes = [k for k in doc.meta if k in _KEYS]
    if clashes:
        report.lost[losses.LOST_META] += len(clashes)
    example.update({k: v for k, v in doc.meta.items() if k not in _KEYS})
    return example
