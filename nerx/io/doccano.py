"""doccano JSONL, both ways: sequence labeling (``label``) and relation projects.

A sequence-labeling line gives ``[start, end, label]`` character offsets, end exclusive; a
relation project gives entities with ids and relations between them::

    {"id": 1, "text": "Ada met Babbage.", "label": [[0, 3, "PER"], [8, 15, "PER"]]}
    {"id": 2, "text": "Ada met Babbage.", "entities": [{"id": 0, "start_offset": 0,
     "end_offset": 3, "label": "PER"}, ...], "relations": [{"id": 0, "from_id": 0, "to_id": 1,
     "type": "Knows"}]}

Other keys (doccano keeps them as the document's metadata) go to ``meta`` and back. The writer
gives the sequence-labeling layout, or the relation-project layout with ``relations=True``
(``--to doccano-relations``).
doccano keeps no scores, tokens or sentences.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from nerx.doc import Document, Entity, Relation
from nerx.io import losses
from nerx.io.base import Report, atomic_file, display_name, iter_lines
from nerx.io.jsonl import ID, INT, STR, _get, _loads, _objects, _record, _tuple

NAME = "doccano"
#: ``--to doccano-relations`` writes the relation-project layout.
RELATION_PROJECT = "doccano-relations"
SUFFIXES: tuple[str, ...] = ()  # .jsonl is shared with native JSONL; told apart by content

__all__ = ["NAME", "SUFFIXES", "sniff", "read", "write"]

LOST_RELATIONS = "relations (doccano sequence labeling has none; --to doccano-relations has)"
DANGLING = "doccano relations whose entity id is not in the line"
_SPAN = ((INT, INT, STR), "[start, end, label]")
_KEYS = ("id", "text", "label", "labels", "entities", "relations")
_DOCCANO_KEYS = re.compile(r'"labels?"\s*:\s*\[\s*\[|"start_offset"\s*:')


def sniff(head: str) -> bool:
    """The first line is an object with ``text`` and either ``label`` triples or entities
    with ``start_offset``."""
    first = head.lstrip("\ufeff \t\r\n").split("\n", 1)[0]
    try:
        data = orjson.loads(first)
    except orjson.JSONDecodeError:
        # A first line longer than the head: judge by the keys that only doccano writes.
        return first.startswith("{") and bool(_DOCCANO_KEYS.search(first))
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return False
    label = data.get("label", data.get("labels"))
    if isinstance(label, list):
        return all(isinstance(x, list) and len(x) == 3 for x in label)
    entities = data.get("entities")
    return (
        isinstance(entities, list)
        and bool(entities)
        and isinstance(entities[0], dict)
        and "start_offset" in entities[0]
    )


def read(
    source: str | os.PathLike, report: Report | None = None, *, relations: bool = False
) -> Iterator[Document]:
    """Stream the documents of a doccano JSONL export, one per line; either layout reads
    (``relations`` names the relation-project layout and changes nothing here)."""
    report = report if report is not None else Report()
    name = display_name(source)
    ordinal = 0
    for number, line in iter_lines(source):
        if not line.strip():
            continue
        ordinal += 1
        where = f"{name}:{number}"
        data, _ = _record(_loads(line, where), where)
        yield _document(data, where, ordinal, report)


def _document(data: dict[str, Any], where: str, ordinal: int, report: Report) -> Document:
    text = _get(data, "text", STR, where, "the line")
    doc_id = _get(data, "id", ID, where, "the line", default=ordinal)
    entities: list[Entity] = []
    relations: list[Relation] = []
    spans = data.get("label", data.get("labels"))
    if isinstance(spans, list):
        for i, item in enumerate(spans):
            start, end, label = _tuple(item, *_SPAN, where, f"label {i}")
            entities.append(Entity(start, end, label))
    by_id: dict[str, int] = {}
    for i, e in enumerate(_objects(data, "entities", where, "entity")):
        what = f"entity {i}"
        if "id" in e:
            by_id[str(_get(e, "id", ID, where, what))] = len(entities)
        entities.append(
            Entity(
                _get(e, "start_offset", INT, where, what),
                _get(e, "end_offset", INT, where, what),
                _get(e, "label", STR, where, what),
            )
        )
    for i, r in enumerate(_objects(data, "relations", where, "relation")):
        what = f"relation {i}"
        head = by_id.get(str(_get(r, "from_id", ID, where, what)))
        tail = by_id.get(str(_get(r, "to_id", ID, where, what)))
        if head is None or tail is None:
            report.lost[DANGLING] += 1
            continue
        relations.append(Relation(head, tail, _get(r, "type", STR, where, what)))
    meta = {k: v for k, v in data.items() if k not in _KEYS}
    return Document(str(doc_id), text, entities=entities, relations=relations, meta=meta)


def write(
    docs: Iterable[Document],
    target: str | os.PathLike,
    report: Report | None = None,
    *,
    relations: bool = False,
) -> None:
    """Write doccano JSONL: sequence labeling, or a relation project with ``relations=True``."""
    report = report if report is not None else Report()
    with atomic_file(target, "wb") as out:
        for doc in docs:
            record: dict[str, Any] = {"id": doc.id, "text": doc.text}
            if relations:
                record["entities"] = [
                    {"id": i, "start_offset": e.start, "end_offset": e.end, "label": e.label}
                    for i, e in enumerate(doc.entities)
                ]
                record["relations"] = [
                    {"id": i, "from_id": r.head, "to_id": r.tail, "type": r.label}
                    for i, r in enumerate(doc.relations)
                ]
            else:
                record["label"] = [[e.start, e.end, e.label] for e in doc.entities]
                if doc.relations:
                    report.lost[LOST_RELATIONS] += len(doc.relations)
            clashes = [k for k in doc.meta if k in _KEYS]
            if clashes:
                report.lost[losses.LOST_META] += len(clashes)
            record.update({k: v for k, v in doc.meta.items() if k not in _KEYS})
            losses.count_scores(doc, report, entities=True, relations=relations)
            losses.count_views(doc, report)
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            kept = len(doc.relations) if relations else 0
            report.count_written(len(doc.entities), kept)
