"""Label Studio JSON tasks: pre-annotations written as ``predictions``, exports read back.

A task holds the text under ``data`` and regions as ``labels`` results (character offsets,
end exclusive); a relation is a ``relation`` result between two region ids::

    [{"data": {"text": "Ada met Babbage.", "id": "d1"},
      "predictions": [{"model_version": "nerx", "score": 0.9, "result": [
        {"id": "d1-0", "from_name": "label", "to_name": "text", "type": "labels", "score": 0.9,
         "value": {"start": 0, "end": 3, "text": "Ada", "labels": ["PER"]}}, ...,
        {"from_id": "d1-0", "to_id": "d1-1", "type": "relation", "direction": "right",
         "labels": ["Knows"]}]}]}]

Reading takes each task's latest ``annotations`` entry (by ``updated_at``, else
``created_at``, else its place in the list) that was not cancelled, or the latest one by
``annotator`` (a user id or e-mail in ``completed_by``). A task nobody annotated is skipped and
counted; a file in which no task has an annotation (pre-annotations, such as nerx writes) is
read from its ``predictions`` instead. The JSON-MIN export (one flattened annotation per
record, ``annotation_id`` and ``annotator`` beside the data) reads too. The text is ``data["text"]``, or the field named by
``text_column``; the document id is ``data["id"]``, else the task id; other ``data`` fields
go to ``meta``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from nerx.doc import Document, Entity, Relation
from nerx.errors import ConfigError, FormatError
from nerx.io import losses
from nerx.io.base import Report, atomic_file
from nerx.io.jsonl import ID, INT, LIST, OBJECT, SCORE, STR, _get, _objects, _Record, _records

NAME = "labelstudio"
SUFFIXES: tuple[str, ...] = ()  # .json is shared with JSONL; told apart by content
READ_OPTIONS: tuple[str, ...] = ("annotator", "text_column")

__all__ = ["NAME", "SUFFIXES", "READ_OPTIONS", "sniff", "read", "write"]

SKIPPED = "Label Studio tasks without an annotation (skipped)"
NOT_SPAN = "Label Studio results that are not text spans or relations"
UNLABELLED = "Label Studio relations without a label"
DANGLING = "Label Studio relations whose region is not a labelled span"
BIDIRECTIONAL = "bidirectional Label Studio relations (read as from -> to)"
UTF16 = "Label Studio regions with UTF-16 offsets (converted to characters)"
FROM_PREDICTIONS = "Label Studio tasks read from their predictions (no task has an annotation)"


_FIRST_KEY_DATA = re.compile(r'\A\[?\s*\{\s*"data"\s*:')
# Keys as keys (a name, a colon, the value's opening bracket), never the same words as text.
_DATA_KEY = re.compile(r'"data"\s*:\s*\{')
_RESULTS_KEY = re.compile(r'"(?:annotations|predictions)"\s*:\s*\[')
_JSON_MIN_KEYS = (re.compile(r'"annotation_id"\s*:'), re.compile(r'"annotator"\s*:'))


def sniff(head: str) -> bool:
    """A task is an object whose first key is ``data`` (as nerx writes it), or one with
    ``data`` beside ``annotations`` or ``predictions`` (as Label Studio exports it), alone or
    in a JSON array."""
    text = head.lstrip("\ufeff \t\r\n")
    if not text.startswith(("{", "[")):
        return False
    if _FIRST_KEY_DATA.match(text):
        return True
    if all(key.search(text) for key in _JSON_MIN_KEYS):
        return True  # the JSON-MIN export: one flattened annotation per record
    return bool(_DATA_KEY.search(text) and _RESULTS_KEY.search(text))


# ===================================================================================== read
def read(
    source: str | os.PathLike,
    report: Report | None = None,
    *,
    annotator: str | int | None = None,
    text_column: str | None = None,
) -> Iterator[Document]:
    """Stream the documents of a Label Studio export (a JSON array or JSON Lines of tasks)."""
    report = report if report is not None else Report()
    # An export is one JSON array, which is parsed whole anyway; holding the tasks lets the
    # reader tell an annotated export from a file of pre-annotations.
    tasks = [_Record(_full_task(t.data), t.where) for t in _records(source)]
    use_predictions = annotator is None and not any(
        _usable(_objects(t.data, "annotations", t.where, "annotation"), None) for t in tasks
    )
    if use_predictions and any(t.data.get("predictions") for t in tasks):
        report.notes[FROM_PREDICTIONS] += len(tasks)
    for ordinal, (data, where) in enumerate(tasks, start=1):
        key = "predictions" if use_predictions else "annotations"
        chosen = _latest(_usable(_objects(data, key, where, key[:-1]), annotator))
        if chosen is None and not use_predictions:
            report.lost[SKIPPED] += 1
            continue
        yield _document(data, chosen, where, ordinal, text_column, report)


_MIN_KEYS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time")


def _full_task(record: dict[str, Any]) -> dict[str, Any]:
    """A JSON-MIN record (one annotation, flattened) as the task it came from."""
    if "data" in record or "annotation_id" not in record:
        return record
    spans = {
        k: v
        for k, v in record.items()
        if isinstance(v, list) and v and all(isinstance(x, dict) and "labels" in x for x in v)
    }
    result = [{"type": "labels", "value": value} for values in spans.values() for value in values]
    data = {k: v for k, v in record.items() if k not in spans and k not in _MIN_KEYS}
    annotation = {
        "completed_by": record.get("annotator"),
        "updated_at": record.get("updated_at"),
        "result": result,
    }
    return {"id": record.get("id"), "data": data, "annotations": [annotation]}


def _usable(entries: list[dict[str, Any]], annotator: str | int | None) -> list[dict[str, Any]]:
    kept = [e for e in entries if not e.get("was_cancelled")]
    if annotator is None:
        return kept
    return [e for e in kept if _by(e, str(annotator))]


def _by(entry: dict[str, Any], annotator: str) -> bool:
    who = entry.get("completed_by")
    if isinstance(who, dict):
        return annotator in {str(who.get(k)) for k in ("id", "email", "username") if k in who}
    return who is not None and str(who) == annotator


def _latest(entries: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not entries:
        return None
    # ISO 8601 stamps compare as strings; an entry without one keeps its place in the list.
    order = sorted(
        range(len(entries)),
        key=lambda i: (str(entries[i].get("updated_at") or entries[i].get("created_at") or ""), i),
    )
    return entries[order[-1]]


def _document(
    task: dict[str, Any],
    chosen: dict[str, Any] | None,
    where: str,
    ordinal: int,
    text_column: str | None,
    report: Report,
) -> Document:
    data = _get(task, "data", OBJECT, where, "the task")
    text = _task_text(data, where, text_column)
    text_key = next(k for k, v in data.items() if v is text)
    doc_id = _get(data, "id", ID, where, "the task's data", default=None)
    if doc_id is None:
        doc_id = _get(task, "id", ID, where, "the task", default=ordinal)
    meta = {k: v for k, v in data.items() if k not in (text_key, "id")}
    entities: list[Entity] = []
    regions: dict[str, int] = {}
    pending: list[tuple[dict[str, Any], str]] = []
    results = _objects(chosen, "result", where, "result") if chosen is not None else []
    for i, result in enumerate(results):
        what = f"result {i}"
        kind = result.get("type")
        if kind == "relation":
            pending.append((result, what))
            continue
        value = result.get("value")
        if not (isinstance(value, dict) and "start" in value and isinstance(value.get(kind), list)):
            report.lost[NOT_SPAN] += 1
            continue
        start, end = _offsets(value, text, where, what, report)
        labels = value[kind]
        score = _get(result, "score", SCORE, where, what, default=None)
        region = result.get("id")
        for label in labels:
            if region is not None:
                regions.setdefault(str(region), len(entities))
            entities.append(Entity(start, end, _check_label(label, where, what), score))
    relations = [_relation(r, regions, where, what, report) for r, what in pending]
    return Document(
        id=str(doc_id),
        text=text,
        entities=entities,
        relations=[r for rel in relations for r in rel],
        meta=meta,
    )


def _task_text(data: dict[str, Any], where: str, text_column: str | None) -> str:
    if text_column is not None:
        return _get(data, text_column, STR, where, "the task's data")
    if isinstance(data.get("text"), str):
        return data["text"]
    strings = [k for k, v in data.items() if isinstance(v, str) and k != "id"]
    if len(strings) == 1:
        return data[strings[0]]
    raise FormatError(
        "the task's data has no 'text' and no single text field "
        f"(fields: {', '.join(data) or 'none'})",
        where=where,
        hint="name the field that holds the text with --text-column",
    )


def _check_label(label: Any, where: str, what: str) -> str:
    if not isinstance(label, str) or not label:
        raise FormatError(f"{what}: a label must be a non-empty string, got {label!r}", where=where)
    return label


def _offsets(
    value: dict[str, Any], text: str, where: str, what: str, report: Report
) -> tuple[int, int]:
    start = _get(value, "start", INT, where, f"{what}: value")
    end = _get(value, "end", INT, where, f"{what}: value")
    shown = value.get("text")
    if isinstance(shown, str) and text[start:end] != shown:
        # Older Label Studio releases counted JavaScript (UTF-16) units, not characters.
        converted = _from_utf16(text, start, end)
        if converted is not None and text[converted[0] : converted[1]] == shown:
            report.notes[UTF16] += 1
            return converted
    return start, end


def _from_utf16(text: str, start: int, end: int) -> tuple[int, int] | None:
    position, units, found = 0, 0, {}
    for position, char in enumerate(text):
        if units == start:
            found["start"] = position
        if units == end:
            found["end"] = position
        units += 2 if ord(char) > 0xFFFF else 1
    if units == end:
        found["end"] = len(text)
    if "start" in found and "end" in found:
        return found["start"], found["end"]
    return None


def _relation(
    result: dict[str, Any], regions: dict[str, int], where: str, what: str, report: Report
) -> list[Relation]:
    source = regions.get(str(result.get("from_id")))
    target = regions.get(str(result.get("to_id")))
    if source is None or target is None:
        report.lost[DANGLING] += 1
        return []
    labels = _get(result, "labels", LIST, where, what, default=[])
    if not labels:
        report.lost[UNLABELLED] += 1
        return []
    direction = result.get("direction", "right")
    if direction == "left":
        source, target = target, source
    elif direction == "bi":
        report.notes[BIDIRECTIONAL] += 1
    return [Relation(source, target, _check_label(label, where, what)) for label in labels]


# ==================================================================================== write
def write(
    docs: Iterable[Document],
    target: str | os.PathLike,
    report: Report | None = None,
    *,
    from_name: str = "label",
    to_name: str = "text",
    model_version: str = "nerx",
) -> None:
    """Write one JSON array of tasks whose entities and relations are ``predictions``.

    ``from_name`` and ``to_name`` are the names of the ``<Labels>`` and ``<Text>`` tags of the
    project's labeling config (``label`` and ``text`` in Label Studio's NER template).
    """
    for name, value in (("from_name", from_name), ("to_name", to_name)):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    report = report if report is not None else Report()
    with atomic_file(target, "wb") as out:
        out.write(b"[")
        for number, doc in enumerate(docs):
            task = _task(doc, from_name, to_name, model_version, report)
            try:
                line = orjson.dumps(task, option=orjson.OPT_NON_STR_KEYS)
            except orjson.JSONEncodeError as exc:
                raise FormatError(
                    f"the document cannot be written as JSON: {exc}",
                    where=f"document {doc.id!r}",
                    hint="meta values must be JSON data: strings, numbers, lists, objects",
                ) from None
            out.write(b"\n" if number == 0 else b",\n")
            out.write(line)
            report.count_written(len(doc.entities), len(doc.relations))
        out.write(b"\n]\n")


def _task(
    doc: Document, from_name: str, to_name: str, model_version: str, report: Report
) -> dict[str, Any]:
    data: dict[str, Any] = {"text": doc.text, "id": doc.id}
    clashes = [k for k in doc.meta if k in data]
    if clashes:
        report.lost[losses.LOST_META] += len(clashes)
    data.update({k: v for k, v in doc.meta.items() if k not in data})
    losses.count_scores(doc, report, entities=False, relations=True)
    losses.count_views(doc, report)
    regions = [f"{doc.id}-{i}" for i in range(len(doc.entities))]
    result: list[dict[str, Any]] = []
    for region, entity in zip(regions, doc.entities, strict=True):
        item: dict[str, Any] = {
            "id": region,
            "from_name": from_name,
            "to_name": to_name,
            "type": "labels",
            "value": {
                "start": entity.start,
                "end": entity.end,
                "text": doc.text[entity.start : entity.end],
                "labels": [entity.label],
            },
        }
        if entity.score is not None:
            item["score"] = entity.score
        result.append(item)
    for relation in doc.relations:
        result.append(
            {
                "from_id": regions[relation.head],
                "to_id": regions[relation.tail],
                "type": "relation",
                "direction": "right",
                "labels": [relation.label],
            }
        )
    prediction: dict[str, Any] = {"model_version": model_version, "result": result}
    scores = [e.score for e in doc.entities if e.score is not None]
    if scores:
        # Label Studio sorts tasks by this score, so annotators can start with the least sure.
        prediction["score"] = min(scores)
    return {"data": data, "predictions": [prediction]}
