"""Plain text: a ``.txt`` file is one document, a folder of them one document per file.

    notes.txt          -> one document, id "notes", the file's text exactly
    letters/a.txt b.txt -> documents "a" and "b" (a folder with .ann files is BRAT instead)
    --from lines       -> every non-blank line its own document, id its line number

``lines`` streams, so a file of millions of lines is read in constant memory; a whole-file
document is as large as the file. Writing gives each document's text on its own line, so
``--from lines`` reads it back; annotations, ids and meta have no place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from nerx.doc import Document
from nerx.errors import FormatError
from nerx.io import losses
from nerx.io.base import STDIO, Report, atomic_file, display_name, iter_lines, read_text

NAME = "text"
SUFFIXES: tuple[str, ...] = (".txt", ".text")
#: ``--from lines`` reads with this module, one document per line.
LINES = "lines"

__all__ = ["NAME", "SUFFIXES", "LINES", "sniff", "read", "write", "is_text_folder"]

LOST_ENTITIES = "entities (plain text holds none)"
LOST_RELATIONS = "relations (plain text holds none)"
LOST_IDS = "document ids (plain text holds none)"
LINE_BREAKS = "documents with line breaks (read back as one document per line they split)"


def sniff(head: str) -> bool:
    """Plain text is anything; it is chosen by its suffix, never by content."""
    return False


def is_text_folder(path: str | os.PathLike) -> bool:
    """A folder with .txt files and no .ann file (which would make it BRAT)."""
    p = Path(path)
    if not p.is_dir():
        return False
    names = [child.suffix.lower() for child in p.iterdir() if child.is_file()]
    return ".txt" in names and ".ann" not in names


def read(
    source: str | os.PathLike, report: Report | None = None, *, lines: bool = False
) -> Iterator[Document]:
    """Stream the documents of a text file, a folder of them, or stdin (``"-"``)."""
    if lines:
        yield from _lines(source)
        return
    path = Path(source)
    if str(source) != STDIO and path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() == ".txt")
        if not files:
            raise FormatError("the folder holds no .txt files", where=display_name(source))
        for file in files:
            yield Document(file.stem, read_text(file))
        return
    name = "stdin" if str(source) == STDIO else path.stem
    yield Document(name, read_text(source))


def _lines(source: str | os.PathLike) -> Iterator[Document]:
    for number, line in iter_lines(source):
        if line.strip():
            yield Document(str(number), line)


def write(
    docs: Iterable[Document],
    target: str | os.PathLike,
    report: Report | None = None,
    *,
    lines: bool = True,
) -> None:
    """Write each document's text on its own line (``--to text`` and ``--to lines`` alike);
    everything else is counted as not kept."""
    report = report if report is not None else Report()
    with atomic_file(target, "w") as out:
        for doc in docs:
            if "\n" in doc.text or "\r" in doc.text:
                report.notes[LINE_BREAKS] += 1
            out.write(doc.text)
            out.write("\n")
            if doc.entities:
                report.lost[LOST_ENTITIES] += len(doc.entities)
            if doc.relations:
                report.lost[LOST_RELATIONS] += len(doc.relations)
            report.lost[LOST_IDS] += 1
            losses.count_meta(doc, report)
            report.count_written(0, 0)
