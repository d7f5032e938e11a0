"""spaCy DocBin (``.spacy``): the binary corpus format of ``spacy train``.

A DocBin is zlib-compressed msgpack, so instead of its bytes, here is what each Doc holds::

    doc.ents              [University of Oslo (ORG), Bergen (LOC)]            non-overlapping
    doc.spans["nerx"]     [University of Oslo (ORG), Oslo (LOC), Bergen (LOC)]  every entity
    doc._.relations       [{"head": 0, "tail": 1, "label": "OrgBased_In"}]   index doc.spans["nerx"]

Scores, the document id and its meta travel in the span group's attrs and ``doc.user_data``
(see :mod:`nerx.spacy_ext`). The format is binary, so it is detected by suffix only.
"""

from __future__ import annotations

import bisect
import itertools
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from spacy.tokens import DocBin
from spacy.vocab import Vocab

from nerx.doc import Document, maximal_non_overlapping
from nerx.errors import FormatError, NerxError
from nerx.io.base import STDIO, Report, atomic_file, display_name
from nerx.spacy_ext import document_order, from_spacy, to_spacy

NAME = "docbin"
SUFFIXES: tuple[str, ...] = (".spacy", ".docbin")

NESTED_NOTE = "entities outside doc.ents (kept in doc.spans['nerx'])"
SPLIT_NOTE = "tokens split at entity boundaries"
ORDER_NOTE = "documents whose entities were put in document order (relation indices follow)"

__all__ = ["NAME", "SUFFIXES", "sniff", "read", "write"]


def sniff(head: str) -> bool:
    """A DocBin is binary; it is recognised by its suffix, never by content."""
    return False


def read(source: str | os.PathLike, report: Report | None = None, **options) -> Iterator[Document]:
    """Yield the documents of a DocBin; ids default to the 1-based ordinal."""
    # A DocBin is one serialized blob, so it is loaded whole; its Docs are then built one at
    # a time.
    name = display_name(source)
    vocab = Vocab()  # a blank vocab: the DocBin carries its own strings, no model is needed
    spacy_docs = _load(source).get_docs(vocab)
    for number in itertools.count(1):
        where = f"{name}: document {number}"
        # A DocBin whose arrays, strings or user data were damaged fails inside spaCy (or
        # while its user data is read back) with whatever error that step raises.
        try:
            spacy_doc = next(spacy_docs, None)
            if spacy_doc is None:
                return
            doc = from_spacy(spacy_doc, str(number), where=where)
        except NerxError:
            raise
        except Exception as exc:
            raise FormatError(
                f"the DocBin is damaged: spaCy cannot rebuild this document ({exc})",
                where=where,
                hint="write the file again, e.g. with nerx convert or DocBin.to_disk",
            ) from None
        yield doc


def _load(source: str | os.PathLike) -> DocBin:
    data = sys.stdin.buffer.read() if str(source) == STDIO else Path(source).read_bytes()
    if not data:
        return DocBin()  # an empty file holds no documents, as an empty JSONL file
    try:
        return DocBin().from_bytes(data)
    # zlib, msgpack and DocBin's own field lookups each fail differently on foreign bytes; all
    # of them mean the same thing to the user.
    except Exception:
        raise FormatError(
            "expected a spaCy DocBin (zlib-compressed msgpack, as written by DocBin.to_disk)",
            where=display_name(source),
            hint="name the input format with --from if this is not a .spacy file",
        ) from None


def write(
    docs: Iterable[Document], target: str | os.PathLike, report: Report | None = None, **options
) -> None:
    """Write documents to a DocBin, with user data so relations, ids and meta survive."""
    report = report if report is not None else Report()
    vocab = Vocab()
    # A DocBin is one serialized blob, so the whole corpus is held here, in DocBin's compact
    # array form (the Docs themselves are dropped as they are added), until it is written.
    docbin = DocBin(store_user_data=True)
    for doc in docs:
        spacy_doc = to_spacy(doc, vocab)
        docbin.add(spacy_doc)
        _note(doc, report)
        report.count_written(len(doc.entities), len(doc.relations))
    data = docbin.to_bytes()
    with atomic_file(target, "wb") as out:
        out.write(data)


def _note(doc: Document, report: Report) -> None:
    """Count what is kept, but in another form than the document had."""
    outside = len(doc.entities) - len(maximal_non_overlapping(doc.entities))
    if outside:
        report.notes[NESTED_NOTE] += outside
    split = _cuts_inside_tokens(doc)
    if split:
        report.notes[SPLIT_NOTE] += split
    if document_order(doc.entities) != list(range(len(doc.entities))):
        report.notes[ORDER_NOTE] += 1


def _cuts_inside_tokens(doc: Document) -> int:
    """How many entity boundaries fall strictly inside a given token (each adds a token)."""
    starts = [s for s, _ in doc.tokens]
    cuts = {b for e in doc.entities for b in (e.start, e.end)}
    count = 0
    for cut in cuts:
        i = bisect.bisect_right(starts, cut) - 1
        if i >= 0 and doc.tokens[i][0] < cut < doc.tokens[i][1]:
            count += 1
    return count
