"""JSON Lines: the native schema (read and written) and read-only dialects of other tools.

Native JSONL holds one document per line; offsets are characters, end exclusive, and relations
index ``entities``. ``tokens``, ``sentences``, ``score`` and ``meta`` are optional::

    {"id": "d1", "text": "Ada Lovelace met Babbage.", "entities": [{"start": 0, "end": 12, "label": "PER"}, {"start": 17, "end": 24, "label": "PER"}], "relations": [{"head": 0, "tail": 1, "label": "Knows"}]}
    {"id": "d2", "text": "Nothing to see.", "entities": [], "relations": [], "meta": {"source": "web"}}
    {"text": "An unannotated document; its id is its ordinal, 3."}

Read-only dialects, told apart by the keys of the first record (``dialect=`` overrides):

- ``spert``: ``{tokens, entities[{type, start, end}], relations[{type, head, tail}], orig_id}``
- ``dygie`` (SciERC): ``{doc_key, sentences, ner, relations, clusters}``, document-level,
  end-inclusive token indices
- ``prodigy`` (spaCy spans): ``{text, spans[{start, end, label}], tokens, relations}``
- ``gliner``: ``{tokenized_text, ner[[start, end, label]]}``, end inclusive
- ``genia``: ``{tokens, doc_id, sent_id, entity_mentions[{start, end, entity_type}]}``, one
  sentence per line; consecutive lines of one ``doc_id`` make one document

A file whose first character is ``[`` is one JSON array of such records instead of lines.
Token-based dialects join their tokens with single spaces to make ``text``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import orjson

from nerx.doc import Document, Entity, Relation
from nerx.errors import ConfigError, FormatError, UnknownFormatError
from nerx.io.base import Report, atomic_file, display_name, iter_lines

NAME = "jsonl"
SUFFIXES: tuple[str, ...] = (".jsonl", ".json", ".jsonlines", ".ndjson")
DIALECTS: tuple[str, ...] = ("spert", "dygie", "prodigy", "gliner", "genia")

LOST_ARGUMENT = "relations whose argument is not an annotated entity"

_DIALECT_HINT = "name the format with --from, one of: jsonl, " + ", ".join(DIALECTS)


class _Record(NamedTuple):
    data: dict[str, Any]
    where: str


# ----------------------------------------------------------------------------- type checks
class _Kind(NamedTuple):
    description: str
    accepts: Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, a subclass of int; an offset of `true` is a mistake.
    return isinstance(value, int) and not isinstance(value, bool)


INT = _Kind("an integer", _is_int)
STR = _Kind("a string", lambda v: isinstance(v, str))
LIST = _Kind("a list", lambda v: isinstance(v, list))
OBJECT = _Kind("an object", lambda v: isinstance(v, dict))
ID = _Kind("a string or an integer", lambda v: isinstance(v, str) or _is_int(v))
SCORE = _Kind("a number or null", lambda v: v is None or _is_int(v) or isinstance(v, float))

_MISSING = object()


def _show(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 40 else text[:37] + "..."


def _check(value: Any, kind: _Kind, where: str, what: str) -> Any:
    if not kind.accepts(value):
        raise FormatError(f"{what} must be {kind.description}, got {_show(value)}", where=where)
    return value


def _get(
    obj: dict[str, Any], key: str, kind: _Kind, where: str, what: str, default: Any = _MISSING
) -> Any:
    """``obj[key]`` checked against ``kind``; a missing key is an error unless a default is given."""
    if key not in obj:
        if default is _MISSING:
            raise FormatError(f"{what} has no {key!r} (expected {kind.description})", where=where)
        return default
    return _check(obj[key], kind, where, f"{what}: {key!r}")


def _objects(obj: dict[str, Any], key: str, where: str, item: str) -> list[dict[str, Any]]:
    """The list ``obj[key]`` (empty when absent) whose items, each an ``item``, are objects."""
    items = _get(obj, key, LIST, where, "the record", default=[])
    return [_check(value, OBJECT, where, f"{item} {i}") for i, value in enumerate(items)]


def _tuple(item: Any, shape: tuple[_Kind, ...], layout: str, where: str, what: str) -> list:
    """A JSON array of fixed length and item kinds, such as ``[start, end, label]``."""
    if not isinstance(item, list) or len(item) != len(shape):
        raise FormatError(f"{what} must be a list {layout}, got {_show(item)}", where=where)
    for value, kind in zip(item, shape, strict=True):
        if not kind.accepts(value):
            raise FormatError(
                f"{what} must be a list {layout} "
                f"({', '.join(k.description for k in shape)}), got {_show(item)}",
                where=where,
            )
    return item


def _word_list(value: Any, where: str, what: str) -> list[str]:
    words = _check(value, LIST, where, what)
    for i, word in enumerate(words):
        _check(word, STR, where, f"{what}: token {i}")
    return words


def _words(obj: dict[str, Any], key: str, where: str) -> list[str]:
    return _word_list(_get(obj, key, LIST, where, "the record"), where, f"the record: {key!r}")


def _token_range(
    start: int, end: int, n: int, where: str, what: str, *, inclusive: bool = False
) -> tuple[int, int]:
    """Check a token range and return it end exclusive; ``inclusive`` ranges are converted."""
    stop = end + 1 if inclusive else end
    if not (0 <= start < stop <= n):
        shown = f"[{start}, {end}] (end inclusive)" if inclusive else f"[{start}, {end})"
        raise FormatError(
            f"{what} covers tokens {shown}, but the record has {n} tokens (indices 0..{n - 1})",
            where=where,
        )
    return start, stop


def _extras(data: dict[str, Any], known: Iterable[str]) -> dict[str, Any]:
    """Keys a dialect does not map, kept in ``meta`` so nothing disappears silently."""
    skip = set(known)
    return {k: v for k, v in data.items() if k not in skip}


def _doc_id(data: dict[str, Any], key: str, where: str, ordinal: int) -> str:
    return str(_get(data, key, ID, where, "the record", default=ordinal))


# ----------------------------------------------------------------------------- records
def _loads(line: str, where: str) -> Any:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise FormatError(
            f"invalid JSON ({exc.msg} at column {exc.colno}); expected one JSON object per line",
            where=where,
            hint="a line cut short usually means the file was truncated while being written",
        ) from None


def _record(value: Any, where: str) -> _Record:
    if not isinstance(value, dict):
        raise FormatError(
            f"expected a JSON object (a document), got {_show(value)}",
            where=where,
            hint="each line (or each element of a JSON array) must be one {...} record",
        )
    return _Record(value, where)


def _records(source: str | os.PathLike) -> Iterator[_Record]:
    """Every record of ``source``, from JSON Lines or from one JSON array."""
    name = display_name(source)
    raw = iter_lines(source)
    lines = ((number, line) for number, line in raw if line.strip())
    first = next(lines, None)
    if first is None:
        return
    number, line = first
    if line.lstrip().startswith("["):
        # Blank lines stay in, so that orjson's line numbers are the file's.
        yield from _array_records(name, number, line, raw)
        return
    for number, line in itertools.chain([first], lines):
        yield _record(_loads(line, f"{name}:{number}"), f"{name}:{number}")


def _array_records(
    name: str, first_number: int, first: str, rest: Iterator[tuple[int, str]]
) -> Iterator[_Record]:
    # A JSON array cannot stream: orjson parses it whole, so it is held in memory at once.
    text = "\n".join(itertools.chain([first], (line for _, line in rest)))
    try:
        items = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FormatError(
            f"invalid JSON ({exc.msg} at column {exc.colno}); expected one JSON array of records",
            where=f"{name}:{first_number + exc.lineno - 1}",
            hint="a file cut short usually means it was truncated while being written",
        ) from None
    for i, item in enumerate(items, start=1):
        # Elements of an array have no line of their own; name the element instead.
        yield _record(item, f"{name}: array element {i}")


# ----------------------------------------------------------------------------- detection
def _detect(record: _Record) -> str:
    """The dialect of a file, from the keys of its first record."""
    keys = record.data.keys()
    if "text" in keys:
        tokens = record.data.get("tokens")
        spacy_tokens = isinstance(tokens, list) and bool(tokens) and isinstance(tokens[0], dict)
        return "prodigy" if "spans" in keys or spacy_tokens else NAME
    if "tokenized_text" in keys:
        return "gliner"
    if "tokens" in keys and "entity_mentions" in keys:
        return "genia"
    if "sentences" in keys and ("ner" in keys or "doc_key" in keys):
        return "dygie"
    if "tokens" in keys and "entities" in keys:
        entities = record.data["entities"]
        if not (isinstance(entities, list) and entities) or (
            isinstance(entities[0], dict) and "type" in entities[0]
        ):
            return "spert"
    # Nothing matched: read as native, whose parser names the missing "text".
    return NAME


def sniff(head: str) -> bool:
    """Does the start of a file look like JSON Lines or a JSON array of records?"""
    text = head.lstrip("\ufeff \t\r\n")
    if text.startswith("["):
        return text[1:].lstrip().startswith(("{", "]"))
    if not text.startswith("{"):
        return False
    first, newline, _ = text.partition("\n")
    if not newline:
        # The first record runs past the head, so only its opening can be judged.
        return text[1:].lstrip().startswith(('"', "}"))
    try:
        return isinstance(orjson.loads(first), dict)
    except orjson.JSONDecodeError:
        return False


# ----------------------------------------------------------------------------- native
_NATIVE_KEYS = ("id", "text", "tokens", "sentences", "entities", "relations", "meta")
_PAIR = (INT, INT)


def _pairs(data: dict[str, Any], key: str, where: str, item: str) -> list[tuple[int, int]]:
    items = _get(data, key, LIST, where, "the record", default=[])
    return [
        tuple(_tuple(p, _PAIR, "[start, end]", where, f"{item} {i}")) for i, p in enumerate(items)
    ]


def _char_entity(obj: dict[str, Any], where: str, what: str) -> Entity:
    return Entity(
        _get(obj, "start", INT, where, what),
        _get(obj, "end", INT, where, what),
        _get(obj, "label", STR, where, what),
        _get(obj, "score", SCORE, where, what, default=None),
    )


def _native_relation(obj: dict[str, Any], where: str, what: str) -> Relation:
    return Relation(
        _get(obj, "head", INT, where, what),
        _get(obj, "tail", INT, where, what),
        _get(obj, "label", STR, where, what),
        _get(obj, "score", SCORE, where, what, default=None),
    )


def _parse_native(record: _Record, ordinal: int, report: Report) -> Document:
    data, where = record
    if "text" not in data:
        raise FormatError(
            "the record has no 'text' (expected a string): native JSONL needs "
            '{"text": ..., "entities": [...], "relations": [...]}',
            where=where,
            hint=f"if the file comes from another tool, {_DIALECT_HINT}",
        )
    meta = _get(data, "meta", OBJECT, where, "the record", default={})
    return Document(
        id=_doc_id(data, "id", where, ordinal),
        text=_get(data, "text", STR, where, "the record"),
        tokens=_pairs(data, "tokens", where, "token"),
        sentences=_pairs(data, "sentences", where, "sentence"),
        entities=[
            _char_entity(e, where, f"entity {i}")
            for i, e in enumerate(_objects(data, "entities", where, "entity"))
        ],
        relations=[
            _native_relation(r, where, f"relation {i}")
            for i, r in enumerate(_objects(data, "relations", where, "relation"))
        ],
        # Unknown top-level keys join meta so that writing the document back keeps them.
        meta={**_extras(data, _NATIVE_KEYS), **meta},
    )


# ----------------------------------------------------------------------------- SpERT
def _parse_spert(record: _Record, ordinal: int, report: Report) -> Document:
    data, where = record
    words = _words(data, "tokens", where)
    entities = []
    for i, e in enumerate(_objects(data, "entities", where, "entity")):
        what = f"entity {i}"
        start, end = _get(e, "start", INT, where, what), _get(e, "end", INT, where, what)
        entities.append(
            (*_token_range(start, end, len(words), where, what), _get(e, "type", STR, where, what))
        )
    relations = [
        (
            _get(r, "head", INT, where, f"relation {i}"),
            _get(r, "tail", INT, where, f"relation {i}"),
            _get(r, "type", STR, where, f"relation {i}"),
        )
        for i, r in enumerate(_objects(data, "relations", where, "relation"))
    ]
    return Document.from_words(
        _doc_id(data, "orig_id", where, ordinal),
        words,
        token_entities=entities,
        token_relations=relations,
        meta=_extras(data, ("tokens", "entities", "relations", "orig_id")),
    )


# ----------------------------------------------------------------------------- DyGIE
_DYGIE_NER = ((INT, INT, STR), "[start, end, label]")
_DYGIE_REL = ((INT, INT, INT, INT, STR), "[head_start, head_end, tail_start, tail_end, label]")


def _per_sentence(data: dict[str, Any], key: str, where: str) -> list[list]:
    """Flatten a DyGIE per-sentence list (``ner``, ``relations``); its indices are document-level."""
    groups = _get(data, key, LIST, where, "the record", default=[])
    return [
        item
        for i, group in enumerate(groups)
        for item in _check(group, LIST, where, f"{key!r} of sentence {i}")
    ]


def _parse_dygie(record: _Record, ordinal: int, report: Report) -> Document:
    data, where = record
    sentences = _get(data, "sentences", LIST, where, "the record")
    words: list[str] = []
    for i, sentence in enumerate(sentences):
        words.extend(_word_list(sentence, where, f"sentence {i}"))
    entities: list[tuple[int, int, str]] = []
    by_span: dict[tuple[int, int], int] = {}
    for i, item in enumerate(_per_sentence(data, "ner", where)):
        start, end, label = _tuple(item, *_DYGIE_NER, where, f"entity {i}")
        span = _token_range(start, end, len(words), where, f"entity {i}", inclusive=True)
        by_span.setdefault((start, end), len(entities))
        entities.append((*span, label))
    relations = []
    for i, item in enumerate(_per_sentence(data, "relations", where)):
        hs, he, ts, te, label = _tuple(item, *_DYGIE_REL, where, f"relation {i}")
        head, tail = by_span.get((hs, he)), by_span.get((ts, te))
        # DyGIE names arguments by span; a span outside "ner" has no entity to point at.
        if head is None or tail is None:
            report.lost[LOST_ARGUMENT] += 1
            continue
        relations.append((head, tail, label))
    return Document.from_words(
        _doc_id(data, "doc_key", where, ordinal),
        words,
        sentence_lengths=[len(s) for s in sentences],
        token_entities=entities,
        token_relations=relations,
        meta=_extras(data, ("doc_key", "sentences", "ner", "relations")),
    )


# ----------------------------------------------------------------------------- GLiNER
def _parse_gliner(record: _Record, ordinal: int, report: Report) -> Document:
    data, where = record
    words = _words(data, "tokenized_text", where)
    entities = []
    for i, item in enumerate(_get(data, "ner", LIST, where, "the record", default=[])):
        start, end, label = _tuple(item, *_DYGIE_NER, where, f"entity {i}")
        # GLiNER's training data gives [start, end, label] with the end token included:
        # its documented example marks the one-token "Cupertino" at index 5 as [5, 5, ...].
        span = _token_range(start, end, len(words), where, f"entity {i}", inclusive=True)
        entities.append((*span, label))
    return Document.from_words(
        _doc_id(data, "id", where, ordinal),
        words,
        token_entities=entities,
        meta=_extras(data, ("id", "tokenized_text", "ner")),
    )


# ----------------------------------------------------------------------------- Prodigy
_PRODIGY_KEYS = ("id", "text", "spans", "tokens", "relations")


def _prodigy_tokens(data: dict[str, Any], where: str) -> list[tuple[int, int]]:
    return [
        (_get(t, "start", INT, where, f"token {i}"), _get(t, "end", INT, where, f"token {i}"))
        for i, t in enumerate(_objects(data, "tokens", where, "token"))
    ]


def _prodigy_argument(
    relation: dict[str, Any],
    role: str,
    entities: list[Entity],
    tokens: list[tuple[int, int]],
    where: str,
    what: str,
) -> int | None:
    """The entity a Prodigy relation's ``head`` or ``child`` points at, or None."""
    span = _get(relation, f"{role}_span", OBJECT, where, what, default=None)
    if span is not None:
        start = _get(span, "start", INT, where, f"{what}: {role}_span")
        end = _get(span, "end", INT, where, f"{what}: {role}_span")
        label = span.get("label")
        exact = [i for i, e in enumerate(entities) if (e.start, e.end) == (start, end)]
        return min(exact, key=lambda i: entities[i].label != label, default=None)
    token = _get(relation, role, INT, where, what)
    if not 0 <= token < len(tokens):
        return None
    first, last = tokens[token]
    covering = [i for i, e in enumerate(entities) if e.start <= first and last <= e.end]
    # Prodigy anchors a span's relations on its last token: prefer the entity that ends
    # there, then the tightest one.
    return min(
        covering,
        key=lambda i: (entities[i].end != last, entities[i].end - entities[i].start),
        default=None,
    )


def _parse_prodigy(record: _Record, ordinal: int, report: Report) -> Document:
    data, where = record
    text = _get(data, "text", STR, where, "the record")
    tokens = _prodigy_tokens(data, where)
    entities = [
        _char_entity(s, where, f"span {i}")
        for i, s in enumerate(_objects(data, "spans", where, "span"))
    ]
    relations = []
    for i, rel in enumerate(_objects(data, "relations", where, "relation")):
        what = f"relation {i}"
        label = _get(rel, "label", STR, where, what)
        head = _prodigy_argument(rel, "head", entities, tokens, where, what)
        child = _prodigy_argument(rel, "child", entities, tokens, where, what)
        if head is None or child is None:
            report.lost[LOST_ARGUMENT] += 1
            continue
        relations.append(Relation(head, child, label))
    return Document(
        id=_doc_id(data, "id", where, ordinal),
        text=text,
        tokens=tokens,
        entities=entities,
        relations=relations,
        meta=_extras(data, _PRODIGY_KEYS),
    )


# ----------------------------------------------------------------------------- GENIA
class _Sentence(NamedTuple):
    doc_id: str | None
    words: list[str]
    entities: list[tuple[int, int, str]]
    meta: dict[str, Any]


def _genia_sentence(record: _Record) -> _Sentence:
    data, where = record
    words = _words(data, "tokens", where)
    entities = []
    for i, m in enumerate(_objects(data, "entity_mentions", where, "entity mention")):
        what = f"entity mention {i}"
        start, end = _get(m, "start", INT, where, what), _get(m, "end", INT, where, what)
        span = _token_range(start, end, len(words), where, what)
        entities.append((*span, _get(m, "entity_type", STR, where, what)))
    doc_id = _get(data, "doc_id", ID, where, "the record", default=None)
    meta = _extras(data, ("tokens", "entity_mentions", "doc_id"))
    return _Sentence(None if doc_id is None else str(doc_id), words, entities, meta)


def _genia_document(sentences: list[_Sentence], ordinal: int) -> Document:
    words: list[str] = []
    entities: list[tuple[int, int, str]] = []
    for sentence in sentences:
        entities.extend(
            (s + len(words), e + len(words), label) for s, e, label in sentence.entities
        )
        words.extend(sentence.words)
    # Per-sentence keys (sent_id, ...) become one list per key, a value for every sentence.
    keys = dict.fromkeys(k for s in sentences for k in s.meta)
    meta = {k: [s.meta.get(k) for s in sentences] for k in keys}
    doc_id = sentences[0].doc_id
    return Document.from_words(
        doc_id if doc_id is not None else str(ordinal),
        words,
        sentence_lengths=[len(s.words) for s in sentences],
        token_entities=entities,
        meta=meta,
    )


def _read_genia(records: Iterable[_Record]) -> Iterator[Document]:
    """Group consecutive sentences of one ``doc_id``; only one document is held at a time."""
    pending: list[_Sentence] = []
    ordinal = 0
    for record in records:
        sentence = _genia_sentence(record)
        # A line without doc_id is a document of its own.
        if pending and (sentence.doc_id is None or sentence.doc_id != pending[-1].doc_id):
            ordinal += 1
            yield _genia_document(pending, ordinal)
            pending = []
        pending.append(sentence)
    if pending:
        yield _genia_document(pending, ordinal + 1)


# ----------------------------------------------------------------------------- read / write
_PARSERS: dict[str, Callable[[_Record, int, Report], Document]] = {
    NAME: _parse_native,
    "spert": _parse_spert,
    "dygie": _parse_dygie,
    "prodigy": _parse_prodigy,
    "gliner": _parse_gliner,
}


def _reject_options(options: dict[str, Any], allowed: str) -> None:
    if options:
        raise ConfigError(
            f"unknown option(s) for the jsonl format: {', '.join(sorted(options))}",
            hint=f"the jsonl format takes {allowed}",
        )


def read(
    source: str | os.PathLike,
    report: Report | None = None,
    *,
    dialect: str | None = None,
    **options: Any,
) -> Iterator[Document]:
    """Stream the documents of a JSONL (or JSON array) file, ``"-"`` for stdin.

    ``dialect`` is ``"jsonl"`` (native) or one of :data:`DIALECTS`; None detects it from the
    first record. What a dialect cannot map (a relation to an unannotated span) is counted in
    ``report.lost``.
    """
    _reject_options(options, "only dialect= when reading")
    report = report if report is not None else Report()
    if dialect is not None and dialect.lower() not in (NAME, *DIALECTS):
        raise UnknownFormatError(f"unknown JSON dialect {dialect!r}", hint=_DIALECT_HINT)
    records = _records(source)
    first = next(records, None)
    if first is None:
        return
    chosen = dialect.lower() if dialect is not None else _detect(first)
    records = itertools.chain([first], records)
    if chosen == "genia":
        yield from _read_genia(records)
        return
    parse = _PARSERS[chosen]
    for ordinal, record in enumerate(records, start=1):
        yield parse(record, ordinal, report)


def _native_record(doc: Document) -> dict[str, Any]:
    record: dict[str, Any] = {"id": doc.id, "text": doc.text}
    if doc.tokens:
        record["tokens"] = doc.tokens
    if doc.sentences:
        record["sentences"] = doc.sentences
    record["entities"] = [
        _scored({"start": e.start, "end": e.end, "label": e.label}, e.score) for e in doc.entities
    ]
    record["relations"] = [
        _scored({"head": r.head, "tail": r.tail, "label": r.label}, r.score) for r in doc.relations
    ]
    if doc.meta:
        record["meta"] = doc.meta
    return record


def _scored(item: dict[str, Any], score: float | None) -> dict[str, Any]:
    if score is not None:
        item["score"] = score
    return item


_DUMP_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def write(
    docs: Iterable[Document],
    target: str | os.PathLike,
    report: Report | None = None,
    **options: Any,
) -> None:
    """Write native JSONL, one document per line, ``"-"`` for stdout; it holds everything."""
    _reject_options(options, "no options when writing")
    report = report if report is not None else Report()
    with atomic_file(target, "wb") as out:
        for doc in docs:
            try:
                line = orjson.dumps(_native_record(doc), option=_DUMP_OPTIONS)
            except orjson.JSONEncodeError as exc:
                raise FormatError(
                    f"the document cannot be written as JSON: {exc}",
                    where=f"document {doc.id!r}",
                    hint="meta values must be JSON data: strings, numbers, lists, objects",
                ) from None
            out.write(line)
            report.count_written(len(doc.entities), len(doc.relations))
