"""CoNLL column files: one token per line, the word first and its tag last.

    EU NNP I-NP I-ORG
    rejects VBZ I-VP O
    German JJ I-NP I-MISC

Columns are separated by spaces or tabs; two-column ``word<TAB>tag`` files read the same way.
A blank line ends a sentence and a ``-DOCSTART-`` line ends a document (CoNLL-2003). Tags are
IOB1, IOB2 or BIOES (BILOU's L-/U- are BIOES's E-/S-); the reader detects which per file.
Middle columns (POS, chunk) are kept per token in ``doc.meta["conll_columns"]`` so the writer
can put them back. The text is the words joined by single spaces, so a round trip is exact.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from nerx.doc import Document, Entity, maximal_non_overlapping
from nerx.errors import ConfigError, FormatError
from nerx.io.base import STDIO, Report, atomic_file, display_name, iter_lines

NAME = "conll"
SUFFIXES: tuple[str, ...] = (".conll", ".iob", ".iob1", ".iob2", ".bio", ".bioes", ".tsv")
#: The options of :func:`read` and :func:`write` the command line may pass (``--scheme``...).
READ_OPTIONS: tuple[str, ...] = ("scheme", "sentence_docs")
WRITE_OPTIONS: tuple[str, ...] = ("scheme",)

DOCSTART = "-DOCSTART-"
SPACING_LOST = "documents' spacing (CoNLL joins words with single spaces)"

_TAG_RE = re.compile(r"O|([BIESLU])-(\S+)")
_NONSPACE_RE = re.compile(r"\S+")
_SPACE_RE = re.compile(r"\s+")
# BILOU's L- (last) and U- (unit) are BIOES's E- (end) and S- (single) under other names.
_PREFIX = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}
_SCHEMES = {
    "iob1": "iob1",
    "iob2": "iob2",
    "bio": "iob2",
    "bioes": "bioes",
    "iobes": "bioes",
    "bilou": "bilou",
}
_TITLES = {"iob1": "IOB1", "iob2": "IOB2", "bioes": "BIOES", "bilou": "BILOU"}
# (single, last) prefixes of the schemes that mark where an entity ends.
_END_PREFIXES = {"bioes": ("S", "E"), "bilou": ("U", "L")}
_TAG_HINT = "a tag is O, or B-, I-, E-, S- (or L-, U-) followed by the entity type, as in B-PER"


def _lose(counter: Any, reason: str, n: int) -> None:
    """Add to a report counter only when there is something to count (no zero entries)."""
    if n:
        counter[reason] += n


def _scheme_option(scheme: str) -> str:
    key = str(scheme).lower()
    if key not in _SCHEMES:
        raise ConfigError(
            f"unknown tag scheme {scheme!r}", hint="choose one of: iob1, iob2, bioes, bilou"
        )
    return _SCHEMES[key]


# --------------------------------------------------------------------------------- sniffing
def sniff(head: str) -> bool:
    """Do the non-blank lines look like columns whose last one is a tag (or ``-DOCSTART-``)?"""
    lines = head.lstrip("\ufeff").splitlines()
    if len(lines) > 1 and not head.endswith(("\n", "\r")):
        lines = lines[:-1]  # the head may stop in the middle of a line
    widths = set()
    for line in lines:
        fields = line.split()
        if not fields or fields[0] == DOCSTART:
            continue
        if len(fields) < 2 or not _TAG_RE.fullmatch(fields[-1]):
            return False
        widths.add(len(fields))
    return len(widths) == 1 or (not widths and DOCSTART in head)


# --------------------------------------------------------------------------------- reading
@dataclass
class _Scan:
    has_docstart: bool
    scheme: str


def _prescan(source: str | os.PathLike) -> _Scan:
    """One cheap streaming pass: does the file have documents, and which tag scheme is it?

    Malformed lines are skipped here; the reading pass reports them with their line number.
    """
    has_docstart = bioes = iob1 = False
    prev_label: str | None = None  # type of the previous token's tag in this sentence
    with contextlib.closing(iter_lines(source)) as lines:
        for _, line in lines:
            fields = line.split()
            if not fields or fields[0] == DOCSTART:
                has_docstart = has_docstart or bool(fields)
                prev_label = None
                continue
            match = _TAG_RE.fullmatch(fields[-1])
            if match is None or match.group(1) is None:
                prev_label = None
                continue
            prefix, label = _PREFIX[match.group(1)], match.group(2)
            bioes = bioes or prefix in "ES"
            iob1 = iob1 or (prefix == "I" and prev_label != label)
            prev_label = label
            if has_docstart and bioes:
                break  # nothing later can change the answer
    scheme = "bioes" if bioes else "iob1" if iob1 else "iob2"
    return _Scan(has_docstart, scheme)


def detect_scheme(source: str | os.PathLike) -> str:
    """The tag scheme of a CoNLL file: "bioes" when it has any E-/S-/L-/U- tag, "iob1" when
    an I- tag starts an entity (after O, at a sentence start, or after another type), else "iob2".
    """
    return _prescan(source).scheme


class _TagDecoder:
    """Turns the tags of one sentence into ``(first_token, end_token, label)`` spans.

    ``scheme`` is "iob1", "iob2", "bioes", or "lenient": the union of the three, which decodes
    every valid IOB1, IOB2 and BIOES sequence as its own scheme would but rejects nothing.
    """

    def __init__(self, scheme: str, name: str, detected: bool):
        self.scheme = scheme
        self.name = name
        if detected:
            self.hint = (
                f"the file was read as {_TITLES.get(scheme, scheme)}, detected from its tags; "
                "fix the tags or name the scheme (iob1, iob2, bioes)"
            )
        else:
            self.hint = "fix the tags, or name another scheme (iob1 lets I- start an entity)"
        self._start_sentence()

    def _start_sentence(self) -> None:
        self.spans: list[tuple[int, int, str]] = []
        self.open: list[Any] | None = None  # [first, end, label] of the entity being read
        self.prev: str | None = None  # the previous tag of the sentence, for messages
        self.prev_line = 0

    def feed(self, index: int, tag: str, line: int) -> None:
        where = f"{self.name}:{line}"
        match = _TAG_RE.fullmatch(tag)
        if match is None:
            raise FormatError(f"unknown tag {tag!r}", where=where, hint=_TAG_HINT)
        prefix = _PREFIX[match.group(1)] if match.group(1) else "O"
        label = match.group(2) or ""
        if self.scheme == "bioes":
            self._bioes(index, prefix, label, tag, where)
        else:
            self._iob(index, prefix, label, tag, where)
        self.prev, self.prev_line = tag, line

    def end_sentence(self) -> list[tuple[int, int, str]]:
        if self.open is not None and self.scheme == "bioes":
            raise FormatError(
                f"the sentence ends inside an entity (after {self.prev}), which is not valid "
                "BIOES (an entity ends with E-, or is a single S- token)",
                where=f"{self.name}:{self.prev_line}",
                hint=self.hint,
            )
        self._close()
        spans = self.spans
        self._start_sentence()
        return spans

    def _close(self) -> None:
        if self.open is not None:
            self.spans.append(tuple(self.open))
            self.open = None

    def _invalid(self, tag: str, where: str, why: str) -> FormatError:
        after = f"after {self.prev}" if self.prev else "at the start of a sentence"
        return FormatError(
            f"{tag} {after} is not valid {_TITLES[self.scheme]} ({why})",
            where=where,
            hint=self.hint,
        )

    def _iob(self, index: int, prefix: str, label: str, tag: str, where: str) -> None:
        if prefix in "ES" and self.scheme != "lenient":
            raise FormatError(
                f"{tag} is not an {_TITLES[self.scheme]} tag (expected O, B-TYPE or I-TYPE)",
                where=where,
                hint="E-/S- (L-/U-) tags belong to BIOES: read the file with scheme bioes",
            )
        if prefix == "O":
            self._close()
            return
        continues = self.open is not None and self.open[2] == label and prefix in "IE"
        if prefix == "I" and not continues and self.scheme == "iob2":
            raise self._invalid(tag, where, "an entity must start with B-")
        if continues:
            self.open[1] = index + 1
        else:
            self._close()
            self.open = [index, index + 1, label]
        if prefix in "ES":
            self._close()

    def _bioes(self, index: int, prefix: str, label: str, tag: str, where: str) -> None:
        if prefix in "BSO" and self.open is not None:
            raise self._invalid(tag, where, "the entity before must end with E- first")
        if prefix in "IE" and (self.open is None or self.open[2] != label):
            raise self._invalid(
                tag, where, "an entity starts with B- and goes on with I- or E- of its type"
            )
        if prefix in "BS":
            self.open = [index, index + 1, label]
        elif prefix in "IE":
            self.open[1] = index + 1
        if prefix in "ES":
            self._close()


class _Builder:
    """Collects the tokens of one document and builds it; checks the column count."""

    def __init__(self, decoder: _TagDecoder, name: str, sentence_docs: bool):
        self.decoder = decoder
        self.name = name
        self.sentence_docs = sentence_docs
        self.width = 0  # columns per token line, fixed by the file's first token line
        self.first_line = 0
        self.count = 0
        self._start_document()

    def _start_document(self) -> None:
        self.words: list[str] = []
        self.middles: list[list[str]] = []
        self.lengths: list[int] = []
        self.spans: list[tuple[int, int, str]] = []
        self.sentence_start = 0

    def token(self, fields: list[str], line: int) -> None:
        self._check_width(len(fields), line)
        self.decoder.feed(len(self.words), fields[-1], line)
        self.words.append(fields[0])
        self.middles.append(fields[1:-1])

    def _check_width(self, n: int, line: int) -> None:
        where = f"{self.name}:{line}"
        if not self.width:
            if n < 2:
                raise FormatError(
                    "expected at least 2 columns (the word first, the tag last), found 1",
                    where=where,
                    hint="separate the columns with a space or a tab",
                )
            self.width, self.first_line = n, line
        elif n != self.width:
            raise FormatError(
                f"expected {self.width} columns like the first token line "
                f"({self.name}:{self.first_line}), found {n}",
                where=where,
                hint="every token line needs the same columns; a word cannot contain spaces",
            )

    def close(self, document: bool) -> Document | None:
        """End the sentence, and the document too when ``document`` (or per sentence)."""
        n = len(self.words) - self.sentence_start
        if n:
            self.spans.extend(self.decoder.end_sentence())
            self.lengths.append(n)
            self.sentence_start = len(self.words)
        if (document or self.sentence_docs) and self.words:
            return self._build()
        return None

    def _build(self) -> Document:
        self.count += 1
        meta: dict[str, Any] = {}
        if self.width > 2:
            meta["conll_columns"] = self.middles
        if self.sentence_docs:
            meta["conll_docstart"] = False  # so the writer adds no -DOCSTART- lines either
        doc = Document.from_words(
            str(self.count),
            self.words,
            sentence_lengths=self.lengths,
            token_entities=self.spans,
            meta=meta,
        )
        self._start_document()
        return doc


def read(
    source: str | os.PathLike,
    report: Report | None = None,
    scheme: str | None = None,
    sentence_docs: bool | None = None,
) -> Iterator[Document]:
    """Stream the documents of a CoNLL file (or ``"-"``).

    ``scheme``: "iob1", "iob2", "bioes" ("bilou"), or None to detect it from the file; tags
    invalid under the scheme raise :class:`FormatError`. ``sentence_docs``: True makes each
    sentence a document; None makes documents at ``-DOCSTART-`` lines when the file has any,
    else one per sentence. Reading CoNLL loses nothing, so ``report`` is not written to.
    """
    chosen = None if scheme is None else _scheme_option(scheme)
    if chosen == "bilou":
        chosen = "bioes"
    return _read(source, chosen, sentence_docs)


def _read(source, scheme: str | None, sentence_docs: bool | None) -> Iterator[Document]:
    name = display_name(source)
    detected = scheme is None
    rescannable = str(source) != STDIO and os.path.isfile(source)
    if rescannable and (scheme is None or sentence_docs is None):
        scan = _prescan(source)
        scheme = scheme or scan.scheme
        sentence_docs = not scan.has_docstart if sentence_docs is None else sentence_docs
    # stdin (or a pipe) cannot be read twice: documents then follow -DOCSTART- lines, and
    # the tags are decoded leniently (the union of IOB1, IOB2 and BIOES), which reads every
    # valid sequence of those schemes right but cannot flag an invalid one.
    decoder = _TagDecoder(scheme or "lenient", name, detected)
    builder = _Builder(decoder, name, bool(sentence_docs))
    for number, line in iter_lines(source):
        fields = line.split()
        if fields and fields[0] != DOCSTART:
            builder.token(fields, number)
            continue
        doc = builder.close(document=bool(fields))
        if doc is not None:
            yield doc
    doc = builder.close(document=True)
    if doc is not None:
        yield doc


# --------------------------------------------------------------------------------- writing
@dataclass
class _WriteState:
    middle_width: int | None = None  # middle columns per line, fixed by the first document
    written: int = 0


def write(
    docs: Iterable[Document],
    target: str | os.PathLike,
    report: Report | None = None,
    scheme: str = "iob2",
    sentence_docs: bool = False,
) -> None:
    """Write documents as CoNLL: ``word [middle columns] tag`` lines, sentences blank-separated.

    ``scheme``: "iob2" (default), "iob1", "bioes" or "bilou". Each document starts with a
    ``-DOCSTART-`` line unless ``sentence_docs`` or the document was read from a file without
    them. CoNLL holds no nesting, relations, scores or document ids: they are counted as lost.
    """
    report = report if report is not None else Report()
    scheme = _scheme_option(scheme)
    state = _WriteState()
    with atomic_file(target) as out:
        for doc in docs:
            _write_document(out, doc, scheme, sentence_docs, state, report)


def _write_document(
    out: IO[str],
    doc: Document,
    scheme: str,
    sentence_docs: bool,
    state: _WriteState,
    report: Report,
) -> None:
    doc.ensure_tokens()
    kept_indices = maximal_non_overlapping(doc.entities)
    _lose(
        report.lost,
        "nested or overlapping entities (CoNLL keeps the outermost)",
        len(doc.entities) - len(kept_indices),
    )
    _lose(report.lost, "relations (CoNLL holds none)", len(doc.relations))
    kept = [doc.entities[i] for i in kept_indices]
    pieces, origin = _pieces(doc, kept, report)
    if not pieces:
        _lose(report.lost, "documents without words (CoNLL cannot hold them)", 1)
        _lose(report.lost, "entities that cover no word", len(kept))
        return
    spans = _entity_spans(pieces, kept, report)
    sentences = _sentences(doc, origin, spans, report)
    tags = _tags(len(pieces), spans, {first for first, _ in sentences}, scheme)
    middles = _middle_columns(doc, origin, state, report)
    state.written += 1
    _lose(report.lost, "document ids (CoNLL holds none)", int(doc.id != str(state.written)))
    scored = sum(1 for *_, ent in spans if ent.score is not None)
    _lose(report.lost, "entity scores", scored)
    _count_unheld(doc, pieces, report)
    if not (sentence_docs or doc.meta.get("conll_docstart") is False):
        out.write(" ".join([DOCSTART, *["-X-"] * state.middle_width, "O"]) + "\n\n")
    for first, end in sentences:
        for p in range(first, end):
            word = doc.text[pieces[p][0] : pieces[p][1]]
            out.write(" ".join([word, *middles[p], tags[p]]) + "\n")
        out.write("\n")
    report.count_written(len(spans), 0)


# meta keys the CoNLL reader writes and this writer reads back.
_OWN_META = {"conll_columns", "conll_docstart"}


def _count_unheld(doc: Document, pieces: list[tuple[int, int]], report: Report) -> None:
    """Count what a CoNLL file has no place for: meta, the text's own spacing, sentences."""
    brat = doc.meta.get("brat")
    extra = brat.get("extra") if isinstance(brat, dict) else None
    _lose(
        report.lost,
        "BRAT E/A/M/N/#/* lines (CoNLL holds none)",
        len(extra) if isinstance(extra, list) else 0,
    )
    others = [key for key in doc.meta if key not in _OWN_META and key != "brat"]
    _lose(report.lost, "document meta fields (CoNLL holds none)", len(others))
    gaps = [doc.text[a[1] : b[0]] for a, b in zip(pieces, pieces[1:], strict=False)]
    edges = doc.text[: pieces[0][0]] + doc.text[pieces[-1][1] :]
    _lose(
        report.lost,
        SPACING_LOST,
        int(edges != "" or any(gap != " " for gap in gaps)),
    )
    _lose(
        report.notes,
        "documents without sentence breaks written as one sentence",
        int(not doc.sentences),
    )


def _pieces(
    doc: Document, kept: list[Entity], report: Report
) -> tuple[list[tuple[int, int]], list[int]]:
    """The words to write, as character spans, and the token each comes from.

    A token is split at whitespace (a CoNLL word cannot hold any) and at the boundaries of
    kept entities, so every entity covers whole words.
    """
    cuts = sorted({b for ent in kept for b in (ent.start, ent.end)})
    pieces: list[tuple[int, int]] = []
    origin: list[int] = []
    for i, (start, end) in enumerate(doc.tokens):
        runs = [m.span() for m in _NONSPACE_RE.finditer(doc.text, start, end)]
        if not runs:
            _lose(report.notes, "blank tokens dropped", 1)
        elif runs != [(start, end)]:
            _lose(report.notes, "tokens split at whitespace", 1)
        for run_start, run_end in runs:
            inner = cuts[bisect.bisect_right(cuts, run_start) : bisect.bisect_left(cuts, run_end)]
            _lose(report.notes, "tokens split at entity boundaries", int(bool(inner)))
            for a, b in zip([run_start, *inner], [*inner, run_end], strict=True):
                pieces.append((a, b))
                origin.append(i)
    return pieces, origin


def _entity_spans(
    pieces: list[tuple[int, int]], kept: list[Entity], report: Report
) -> list[tuple[int, int, str, Entity]]:
    """``(first_piece, end_piece, label, entity)`` of each kept entity that covers a word."""
    starts = [s for s, _ in pieces]
    ends = [e for _, e in pieces]
    spans = []
    for ent in kept:
        first = bisect.bisect_left(starts, ent.start)
        end = bisect.bisect_right(ends, ent.end)
        if end <= first:
            _lose(report.lost, "entities that cover no word", 1)
            continue
        label = _SPACE_RE.sub("_", ent.label)
        _lose(report.notes, "entity labels with whitespace written with _", int(label != ent.label))
        spans.append((first, end, label, ent))
    return spans


def _sentences(
    doc: Document, origin: list[int], spans: list[tuple], report: Report
) -> list[tuple[int, int]]:
    """Sentences as piece ranges; a break that would cut an entity is dropped."""
    bounds = sorted({b for s, e in doc.sentence_spans() for b in (s, e)})
    breaks = [
        p
        for p in range(1, len(origin))
        if bisect.bisect_right(bounds, origin[p - 1]) < bisect.bisect_right(bounds, origin[p])
    ]
    inside = {p for first, end, *_ in spans for p in range(first + 1, end)}
    kept = [p for p in breaks if p not in inside]
    _lose(report.notes, "sentence breaks dropped inside entities", len(breaks) - len(kept))
    edges = [0, *kept, len(origin)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _tags(n: int, spans: list[tuple], sentence_starts: set[int], scheme: str) -> list[str]:
    tags = ["O"] * n
    prev_end, prev_label = -1, None
    for first, end, label, _ in spans:
        for p in range(first, end):
            tags[p] = f"I-{label}"
        if scheme in _END_PREFIXES:
            single, last = _END_PREFIXES[scheme]
            if end - first == 1:
                tags[first] = f"{single}-{label}"
            else:
                tags[first], tags[end - 1] = f"B-{label}", f"{last}-{label}"
        elif scheme == "iob2" or (
            # IOB1 writes B- only where an entity directly follows one of the same type.
            prev_end == first and prev_label == label and first not in sentence_starts
        ):
            tags[first] = f"B-{label}"
        prev_end, prev_label = end, label
    return tags


def _usable_columns(doc: Document) -> list[list[str]] | None:
    """``meta["conll_columns"]`` when it has one row of equal width per token, else None."""
    rows = doc.meta.get("conll_columns")
    if not isinstance(rows, list) or len(rows) != len(doc.tokens):
        return None
    for row in rows:
        if not isinstance(row, list) or len(row) != len(rows[0]):
            return None
        if not all(isinstance(v, str) and _NONSPACE_RE.fullmatch(v) for v in row):
            return None
    return rows


def _middle_columns(
    doc: Document, origin: list[int], state: _WriteState, report: Report
) -> list[list[str]]:
    """The middle columns of each piece; the first document fixes how many a file has."""
    rows = _usable_columns(doc)
    width = len(rows[0]) if rows else 0
    if state.middle_width is None:
        state.middle_width = width
    if rows is None or width != state.middle_width:
        unusable = "conll_columns" in doc.meta and (rows is None or width > 0)
        _lose(
            report.lost,
            "CoNLL middle columns that do not fit the tokens or the file",
            int(unusable),
        )
        return [["_"] * state.middle_width] * len(origin)
    return [rows[i] for i in origin]
