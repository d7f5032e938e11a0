"""BRAT standoff: a directory of ``X.txt`` (the exact text) and ``X.ann`` (the annotations).

::

    T1	PER 0 15	Maria Lindqvist
    T2	ORG 34 52	University of Oslo
    R1	Work_For Arg1:T1 Arg2:T2

``T`` lines become entities (event triggers are ``T`` lines too, so they become entities
like any other), ``R`` lines become relations. ``E``, ``A``, ``M``, ``N``, ``#`` and ``*``
lines have no place in the data model: they are kept verbatim in
``doc.meta["brat"]["extra"]`` with the original ``T``/``R`` ids, counted in the report, and
written back unchanged as long as the entities and relations they refer to are unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from nerx.doc import Document, Entity, Relation, tokenize
from nerx.errors import FormatError
from nerx.io.base import STDIO, Report, atomic_directory, display_name, iter_lines, read_text

NAME = "brat"
SUFFIXES: tuple[str, ...] = (".ann",)
#: The options of :func:`read` the command line may pass (``--strict``).
READ_OPTIONS: tuple[str, ...] = ("strict",)

# Offsets are plain Python ``str`` indices into the exact text: BRAT's standoff
# documentation (https://brat.nlplab.org/standoff.html) defines them as character offsets
# into the .txt, 0-based, end exclusive (its server slices the decoded text with them). So
# a non-BMP character counts as one and the "\r" of a CRLF counts as one. BRAT's own editor
# strays from this on CRLF texts (it counts "\r\n" as one, nlplab/brat#853) and after
# non-BMP characters (UTF-16 units, nlplab/brat#1115); such files fail the text check below
# with a hint, instead of being read at shifted offsets.

# Everything ``str.splitlines`` breaks at: a text field holding one of these would split
# the .ann line for BRAT's own (Python) reader.
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_BREAK_RE = re.compile(f"[{_LINE_BREAKS}]")
_FRAGMENT_RE = re.compile(f"[^{_LINE_BREAKS}]+")
_SPAN_RE = re.compile(r"(\S+) (\d+ \d+(?:;\d+ \d+)*)")
_T_ID_RE = re.compile(r"T\S+")

NOTE_DISCONTINUOUS = (
    "discontinuous entities kept as their covering span (BRAT output writes the fragments back)"
)
NOTE_TRIGGERS = "BRAT event triggers (T lines of E lines) read as entities"
NOTE_EVENT_RELATIONS = "BRAT relations between events read as relations between their triggers"
NOTE_SPLIT = "entities crossing a line break written as fragments that skip it"
NOTE_TRIMMED = "entities trimmed of line breaks at their edges"
NOTE_IDS = "document ids changed into safe, unique file names"
NOTE_LABELS = "labels with whitespace written with '_'"
NOTE_SUBDIRS = "subdirectories not read (one BRAT directory is read at a time)"
LOST_BREAK_ONLY = "entities covering only line breaks"
LOST_RELATIONS = "relations to entities BRAT cannot hold"
LOST_EXTRA = "BRAT E/A/M/N/#/* lines whose entities or relations changed"

# Line kinds kept verbatim, with the note each one is counted under.
EXTRA_KINDS = {
    "E": "BRAT event (E) lines kept in meta",
    "A": "BRAT attribute (A) lines kept in meta",
    "M": "BRAT modifier (M) lines kept in meta",
    "N": "BRAT normalization (N) lines kept in meta",
    "#": "BRAT note (#) lines kept in meta",
    "*": "BRAT equivalence (*) lines kept in meta",
}

_LINE_HINT = "BRAT lines are 'T1<TAB>Label start end<TAB>text' or 'R1<TAB>Label Arg1:T1 Arg2:T2'"


def sniff(head: str) -> bool:
    """BRAT is a directory (or a .txt/.ann pair), recognised by the registry, never by content."""
    return False


# =================================================================================== read
def read(
    source: str | os.PathLike, report: Report | None = None, strict: bool = False
) -> Iterator[Document]:
    """Stream the documents of a BRAT directory, or of one pair named by its .txt or .ann.

    With ``strict=True`` a discontinuous entity is an error instead of being kept as its
    covering span.
    """
    report = report if report is not None else Report()
    for stem, txt, ann in _pairs(source, report):
        yield _read_pair(stem, txt, ann, report, strict)


def _pairs(source: str | os.PathLike, report: Report) -> Iterator[tuple[str, Path, Path | None]]:
    if str(source) == STDIO:
        raise FormatError(
            "BRAT is a directory of .txt/.ann files and cannot be read from stdin",
            hint="give the directory, or one document's .txt or .ann file",
        )
    path = Path(source)
    if path.is_dir():
        yield from _directory_pairs(path, report)
        return
    if path.suffix not in (".txt", ".ann"):
        raise FormatError(
            "expected a BRAT directory or one document's .txt or .ann file",
            where=display_name(source),
            hint="name the directory that holds the X.txt / X.ann pairs",
        )
    txt, ann = path.with_suffix(".txt"), path.with_suffix(".ann")
    if not txt.is_file():
        raise _missing_text(ann)
    yield path.stem, txt, ann if ann.is_file() else None


def _directory_pairs(path: Path, report: Report) -> Iterator[tuple[str, Path, Path | None]]:
    # Hidden entries are not documents (editor files, or an unfinished write's temp folder).
    entries = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    texts = {p.stem: p for p in entries if p.suffix == ".txt" and p.is_file()}
    anns = {p.stem: p for p in entries if p.suffix == ".ann" and p.is_file()}
    subdirs = sum(1 for p in entries if p.is_dir())
    if subdirs:
        report.notes[NOTE_SUBDIRS] += subdirs
    orphans = sorted(anns.keys() - texts.keys())
    if orphans:
        raise _missing_text(anns[orphans[0]])
    for stem in sorted(texts):
        yield stem, texts[stem], anns.get(stem)


def _missing_text(ann: Path) -> FormatError:
    return FormatError(
        f"annotations without their text: {ann.with_suffix('.txt').name} is missing",
        where=display_name(ann),
        hint="BRAT offsets point into X.txt beside X.ann; copy the .txt the annotations were made on",
    )


def _read_pair(stem: str, txt: Path, ann: Path | None, report: Report, strict: bool) -> Document:
    text = read_text(txt)
    parsed = _AnnFile(display_name(ann or txt), txt.name, text, report, strict)
    if ann is not None:
        for number, line in iter_lines(ann):
            if line.strip():
                parsed.add(line, f"{parsed.name}:{number}")
    relations = parsed.relations()
    meta = {"brat": {"T": parsed.t_records, "R": parsed.r_lines, "extra": parsed.extra}}
    return Document(stem, text, entities=parsed.entities, relations=relations, meta=meta)


@dataclass
class _AnnFile:
    """One .ann file, gathered whole because relations may point at lines further down."""

    name: str
    txt_name: str
    text: str
    report: Report
    strict: bool
    entities: list[Entity] = field(default_factory=list)
    # [id, start, end, label] per entity, plus [[start, end], ...] when it has fragments.
    t_records: list[list] = field(default_factory=list)
    t_index: dict[str, int] = field(default_factory=dict)
    r_lines: list[str] = field(default_factory=list)
    r_parsed: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    triggers: dict[str, str] = field(default_factory=dict)  # event id -> trigger T id
    extra: list[str] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)

    def add(self, line: str, where: str) -> None:
        ann_id, tab, _ = line.partition("\t")
        if not tab or not ann_id:
            raise FormatError(
                f"expected an annotation id and a TAB at the start of the line, found {line!r}",
                where=where,
                hint=_LINE_HINT,
            )
        kind = ann_id[0]
        if kind in "TRE":
            self._claim(ann_id, where)
        if kind == "T":
            self._add_textbound(line, where)
        elif kind == "R":
            self.r_lines.append(line)
            self.r_parsed.append((where, *parse_relation(line, where)))
        elif kind in EXTRA_KINDS:
            self.extra.append(line)
            self.report.notes[EXTRA_KINDS[kind]] += 1
            if kind == "E":
                self.triggers[ann_id] = event_trigger(line, where)
        else:
            raise FormatError(
                f"unknown BRAT line kind {kind!r} (annotation id {ann_id!r})",
                where=where,
                hint="BRAT lines start with T, R, E, A, M, N, # or *",
            )

    def _claim(self, ann_id: str, where: str) -> None:
        if ann_id in self.seen:
            raise FormatError(
                f"duplicate annotation id {ann_id!r}",
                where=where,
                hint="every T, R and E id must be unique within its .ann file",
            )
        self.seen.add(ann_id)

    def _add_textbound(self, line: str, where: str) -> None:
        t_id, label, fragments, found = parse_textbound(line, where)
        n = len(self.text)
        for start, end in fragments:
            if not start < end <= n:
                raise FormatError(
                    f"{t_id} has offsets {start} {end}; expected start < end <= {n} "
                    f"(the length of {self.txt_name})",
                    where=where,
                    hint="offsets count characters of the .txt, end exclusive",
                )
        expected = " ".join(self.text[s:e] for s, e in fragments)
        if found != expected:
            raise FormatError(
                f"a BRAT offset that does not match the text: {t_id} should read {found!r}, "
                f"but its offsets hold {expected!r} in {self.txt_name}",
                where=where,
                hint=_mismatch_hint(self.text),
            )
        if not _only_line_breaks_between(self.text, fragments):
            if self.strict:
                raise FormatError(
                    f"discontinuous entity {t_id} ({len(fragments)} fragments)",
                    where=where,
                    hint="nerx holds one span per entity; read without strict to keep "
                    "the covering span",
                )
            self.report.notes[NOTE_DISCONTINUOUS] += 1
        start, end = min(s for s, _ in fragments), max(e for _, e in fragments)
        self.t_index[t_id] = len(self.entities)
        self.entities.append(Entity(start, end, label))
        record: list = [t_id, start, end, label]
        if len(fragments) > 1:
            record.append([list(f) for f in fragments])
        self.t_records.append(record)

    def relations(self) -> list[Relation]:
        used_triggers = {t for t in self.triggers.values() if t in self.t_index}
        if used_triggers:
            self.report.notes[NOTE_TRIGGERS] += len(used_triggers)
        out = []
        for where, r_id, label, head, tail in self.r_parsed:
            h, t = (self._resolve(r_id, ref, where) for ref in (head, tail))
            if head not in self.t_index or tail not in self.t_index:
                self.report.notes[NOTE_EVENT_RELATIONS] += 1
            out.append(Relation(h, t, label))
        return out

    def _resolve(self, r_id: str, ref: str, where: str) -> int:
        if ref in self.t_index:
            return self.t_index[ref]
        trigger = self.triggers.get(ref)
        if trigger in self.t_index:
            return self.t_index[trigger]
        raise FormatError(
            f"relation {r_id} points at {ref!r}, which no T line (nor an E line's trigger) "
            f"of {self.name} defines",
            where=where,
            hint="every relation argument must be the id of a T (or E) line of the same file",
        )


def _mismatch_hint(text: str) -> str:
    hint = "use the exact .txt the annotations were made on; offsets count characters"
    if "\r\n" in text:
        hint += (
            "; BRAT's editor counts each CRLF as one character (nlplab/brat#853): if the "
            "annotations were made there, convert the .txt to LF line endings"
        )
    if any(ord(c) > 0xFFFF for c in text):
        hint += (
            "; BRAT's editor counts a character beyond U+FFFF (an emoji) as two "
            "(nlplab/brat#1115), which shifts every later offset by one"
        )
    return hint


def _only_line_breaks_between(text: str, fragments: list[tuple[int, int]]) -> bool:
    """True if the fragments only skip line breaks: how BRAT stores a span across lines.

    BRAT's own editor splits such a span at the line breaks (trimming whitespace beside
    them), and so does :func:`write`, so the covering span is the one that was annotated.
    """
    ordered = sorted(fragments)
    for (_, prev_end), (start, _) in zip(ordered, ordered[1:], strict=False):
        gap = text[prev_end:start]
        if gap and (gap.strip() or not _BREAK_RE.search(gap)):
            return False
    return True


def parse_textbound(line: str, where: str) -> tuple[str, str, list[tuple[int, int]], str]:
    """``(id, label, [(start, end), ...], text)`` of a T line."""
    parts = line.split("\t", 2)
    if len(parts) != 3:
        raise FormatError(
            f"expected 'T1<TAB>Label start end<TAB>text' (three TAB-separated fields), "
            f"found {line!r}",
            where=where,
            hint=_LINE_HINT,
        )
    t_id, span, found = parts
    m = _SPAN_RE.fullmatch(span)
    if not m:
        raise FormatError(
            f"expected 'Label start end' (or 'Label start end;start end' for fragments) "
            f"after {t_id}, found {span!r}",
            where=where,
            hint="offsets are non-negative integers separated by one space",
        )
    fragments = [(int(s), int(e)) for s, e in (f.split() for f in m.group(2).split(";"))]
    return t_id, m.group(1), fragments, found


def parse_relation(line: str, where: str) -> tuple[str, str, str, str]:
    """``(id, label, head_id, tail_id)`` of an R line (a trailing TAB or comment is allowed)."""
    parts = line.split("\t")
    fields = parts[1].split() if len(parts) > 1 else []
    refs = [f.partition(":")[2] for f in fields[1:]]
    if len(fields) != 3 or not all(refs):
        raise FormatError(
            f"expected 'R1<TAB>Label Arg1:T1 Arg2:T2', found {line!r}",
            where=where,
            hint=_LINE_HINT,
        )
    return parts[0], fields[0], refs[0], refs[1]


def event_trigger(line: str, where: str) -> str:
    """The trigger id of an E line ``E1<TAB>Type:T1 Role:T2 ...``."""
    fields = line.split("\t")[1].split()
    trigger = fields[0].partition(":")[2] if fields else ""
    if not trigger:
        raise FormatError(
            f"expected 'E1<TAB>Type:T1 Role:T2 ...', found {line!r}",
            where=where,
            hint="an event line starts with its type and trigger, e.g. Operation:T4",
        )
    return trigger


# ================================================================================== write
def write(
    docs: Iterable[Document], target: str | os.PathLike, report: Report | None = None
) -> None:
    """Write each document as ``<id>.txt`` + ``<id>.ann`` into the directory ``target``.

    The directory appears only once every document is written.
    """
    report = report if report is not None else Report()
    if str(target) == STDIO:
        raise FormatError(
            "BRAT is a directory of .txt/.ann files and cannot be written to stdout",
            hint="give a directory name as the target",
        )
    if Path(target).exists() and not Path(target).is_dir():
        raise FormatError(
            "BRAT writes a directory, but the target is an existing file",
            where=display_name(target),
            hint="give a directory name (it is created if needed)",
        )
    used: set[str] = set()
    with atomic_directory(target) as folder:
        for number, doc in enumerate(docs, start=1):
            doc.validate()
            name = _file_name(doc.id, number, used, report)
            lines, n_entities, n_relations = _ann_lines(doc, report)
            (folder / f"{name}.txt").write_bytes(doc.text.encode("utf-8"))
            (folder / f"{name}.ann").write_bytes("".join(f"{x}\n" for x in lines).encode("utf-8"))
            _count_unheld(doc, report)
            report.count_written(n_entities, n_relations)


def _file_name(doc_id: str, number: int, used: set[str], report: Report) -> str:
    name = re.sub(r"[/\\\x00]", "_", doc_id) or str(number)
    if name.startswith("."):
        name = "_" + name[1:]
    # Room for a clash suffix and the extension within the usual 255-byte limit.
    name = name.encode("utf-8")[:200].decode("utf-8", errors="ignore")
    base, k = name, 1
    # Case-insensitive, so the directory also unpacks on case-insensitive file systems.
    while name.lower() in used:
        k += 1
        name = f"{base}-{k}"
    used.add(name.lower())
    if name != doc_id:
        report.notes[NOTE_IDS] += 1
    return name


def _ann_lines(doc: Document, report: Report) -> tuple[list[str], int, int]:
    """The .ann lines of a document: T lines, R lines, then the kept extra lines."""
    brat = doc.meta.get("brat") if isinstance(doc.meta.get("brat"), dict) else {}
    records = _original_records(brat, doc)
    fragments = [
        _kept_fragments(doc.text, ent, records[i] if records else None)
        or _fragments(doc.text, ent, report)
        for i, ent in enumerate(doc.entities)
    ]
    position = {i: k for k, i in enumerate(i for i, f in enumerate(fragments) if f)}
    complete = len(position) == len(doc.entities)
    t_ids = _original_t_ids(records) if complete and records else None
    r_lines = _original_r_lines(brat, doc, t_ids) if t_ids is not None else None
    extra = _extra_lines(brat, report)
    if extra and r_lines is None:
        report.lost[LOST_EXTRA] += len(extra)
        extra = []
    t_ids = t_ids or [f"T{k + 1}" for k in range(len(position))]

    lines = [
        _t_line(doc.text, t_ids[position[i]], _label(ent.label, report), fragments[i])
        for i, ent in enumerate(doc.entities)
        if i in position
    ]
    if r_lines is None:
        r_lines = _fresh_r_lines(doc, position, t_ids, report)
    lines += r_lines
    lines += extra
    return lines, len(position), len(r_lines)


def _kept_fragments(text: str, ent: Entity, record: list | None) -> list[tuple[int, int]] | None:
    """The fragments a discontinuous entity was read with, if they still fit the entity
    (sorted, non-empty, inside it from its start to its end, each on one line)."""
    kept = record[4] if record is not None and len(record) > 4 else None
    if not isinstance(kept, list) or len(kept) < 2:
        return None
    try:
        pairs = [(int(s), int(e)) for s, e in kept]
    except (TypeError, ValueError):
        return None
    ordered = all(a[1] <= b[0] for a, b in zip(pairs, pairs[1:], strict=False))
    inside = pairs[0][0] == ent.start and pairs[-1][1] == ent.end
    if not (ordered and inside and all(s < e for s, e in pairs)):
        return None
    if any(_BREAK_RE.search(text[s:e]) for s, e in pairs):
        return None
    return pairs


def _fragments(text: str, ent: Entity, report: Report) -> list[tuple[int, int]]:
    """The entity as fragments that skip line breaks, so its text field stays on one line."""
    piece = text[ent.start : ent.end]
    if not _BREAK_RE.search(piece):
        return [(ent.start, ent.end)]
    out = [(ent.start + m.start(), ent.start + m.end()) for m in _FRAGMENT_RE.finditer(piece)]
    if not out:
        report.lost[LOST_BREAK_ONLY] += 1
    elif (out[0][0], out[-1][1]) != (ent.start, ent.end):
        report.notes[NOTE_TRIMMED] += 1
    if len(out) > 1:
        report.notes[NOTE_SPLIT] += 1
    return out


def _t_line(text: str, t_id: str, label: str, fragments: list[tuple[int, int]]) -> str:
    offsets = ";".join(f"{s} {e}" for s, e in fragments)
    return f"{t_id}\t{label} {offsets}\t{' '.join(text[s:e] for s, e in fragments)}"


def _fresh_r_lines(
    doc: Document, position: dict[int, int], t_ids: list[str], report: Report
) -> list[str]:
    lines = []
    for rel in doc.relations:
        if rel.head not in position or rel.tail not in position:
            report.lost[LOST_RELATIONS] += 1
            continue
        head, tail = t_ids[position[rel.head]], t_ids[position[rel.tail]]
        label = _label(rel.label, report)
        lines.append(f"R{len(lines) + 1}\t{label} Arg1:{head} Arg2:{tail}")
    return lines


def _label(label: str, report: Report) -> str:
    safe = re.sub(r"\s", "_", label) or "_"
    if safe != label:
        report.notes[NOTE_LABELS] += 1
    return safe


def _one_line(value: object) -> bool:
    return isinstance(value, str) and not _BREAK_RE.search(value)


def _original_records(brat: dict, doc: Document) -> list[list] | None:
    """The T records the document was read with, one per entity, if its entities are still
    exactly those (in any order: a DocBin puts them in document order)."""
    records = brat.get("T")
    if not isinstance(records, list) or len(records) != len(doc.entities):
        return None
    waiting: dict[tuple, list[list]] = {}
    for record in records:
        if not isinstance(record, list) or len(record) < 4:
            return None
        key = tuple(record[1:4])
        try:
            waiting.setdefault(key, []).append(record)
        except TypeError:  # an unhashable value where an offset should be
            return None
    matched = []
    for ent in doc.entities:
        candidates = waiting.get((ent.start, ent.end, ent.label))
        if not candidates:
            return None
        matched.append(candidates.pop(0))
    return matched


def _original_t_ids(records: list[list]) -> list[str] | None:
    """The T ids of the matched records, if they are valid and unique."""
    ids = [r[0] for r in records]
    valid = all(isinstance(i, str) and _T_ID_RE.fullmatch(i) for i in ids)
    return ids if valid and len(set(ids)) == len(ids) else None


def _original_r_lines(brat: dict, doc: Document, t_ids: list[str]) -> list[str] | None:
    """The R lines the document was read with, if they still say exactly its relations."""
    lines = brat.get("R")
    if not isinstance(lines, list) or len(lines) != len(doc.relations):
        return None
    if not all(_one_line(line) and line.startswith("R") for line in lines):
        return None
    index = {t: i for i, t in enumerate(t_ids)}
    triggers = {}
    for line in _extra_lines(brat):
        if line.startswith("E") and "\t" in line:
            try:
                triggers[line.split("\t", 1)[0]] = event_trigger(line, "")
            except FormatError:
                return None
    for line, rel in zip(lines, doc.relations, strict=True):
        try:
            _, label, head, tail = parse_relation(line, "")
        except FormatError:
            return None
        ends = [index.get(triggers.get(ref, ref)) for ref in (head, tail)]
        if label != rel.label or ends != [rel.head, rel.tail]:
            return None
    return list(lines)


def _extra_lines(brat: dict, report: Report | None = None) -> list[str]:
    """The kept E/A/M/N/#/* lines; entries that are not one BRAT line are counted as lost."""
    extra = brat.get("extra")
    extra = extra if isinstance(extra, list) else [] if extra is None else [extra]
    good = [x for x in extra if _one_line(x) and "\t" in x and x[0] in EXTRA_KINDS]
    if report is not None and len(good) < len(extra):
        report.lost[LOST_EXTRA] += len(extra) - len(good)
    return good


def _count_unheld(doc: Document, report: Report) -> None:
    """Count what a BRAT pair has no place for: scores, sentences, tokens, other meta."""
    if n := sum(e.score is not None for e in doc.entities):
        report.lost["entity scores"] += n
    if n := sum(r.score is not None for r in doc.relations):
        report.lost["relation scores"] += n
    if doc.sentences:
        report.lost["sentence boundaries (documents)"] += 1
    if doc.tokens:
        derived = tokenize(doc.text, {b for e in doc.entities for b in (e.start, e.end)})
        if [tuple(t) for t in doc.tokens] != derived:
            report.lost["token boundaries (documents)"] += 1
    if n := sum(key != "brat" for key in doc.meta):
        report.lost["document meta fields"] += n
