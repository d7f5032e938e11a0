"""What every format module shares: opening sources and targets, atomic output, the report.

A format module exposes::

    NAME: str                       # "jsonl", "conll", ...
    SUFFIXES: tuple[str, ...]       # file suffixes that select it
    def sniff(head: str) -> bool    # does the first few KB of text look like this format?
    def read(source, report=None, **opts) -> Iterator[Document]
    def write(docs, target, report=None, **opts) -> None

``source``/``target`` is a path or ``"-"`` (stdin/stdout). Readers stream; writers consume an
iterable lazily and never leave a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from nerx.errors import FormatError

STDIO = "-"


@dataclass
class Report:
    """Counts of what went through a read and a write, and everything that was not kept.

    ``lost`` maps a reason ("nested entities (CoNLL keeps the outermost)") to a count of items
    the target could not hold; ``notes`` counts things kept in another form (a discontinuous
    BRAT span kept as its covering span). Nothing is lost without a line here.
    """

    documents_read: int = 0
    entities_read: int = 0
    relations_read: int = 0
    documents_written: int = 0
    entities_written: int = 0
    relations_written: int = 0
    lost: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def count_read(self, doc) -> None:
        self.documents_read += 1
        self.entities_read += len(doc.entities)
        self.relations_read += len(doc.relations)

    def count_written(self, entities: int, relations: int) -> None:
        self.documents_written += 1
        self.entities_written += entities
        self.relations_written += relations

    def as_dict(self) -> dict:
        return {
            "documents_read": self.documents_read,
            "entities_read": self.entities_read,
            "relations_read": self.relations_read,
            "documents_written": self.documents_written,
            "entities_written": self.entities_written,
            "relations_written": self.relations_written,
            "lost": dict(self.lost),
            "notes": dict(self.notes),
        }


def display_name(source: str | os.PathLike) -> str:
    return "<stdin>" if str(source) == STDIO else str(source)


def iter_lines(source: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` of a UTF-8 text source, newline stripped, streaming.

    Invalid UTF-8 raises :class:`FormatError` naming the file and line. A UTF-8 BOM on the
    first line is dropped.
    """
    name = display_name(source)
    with _open_binary(source) as stream:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FormatError(
                    f"invalid UTF-8 at byte {exc.start} of the line",
                    where=f"{name}:{number}",
                    hint="nerx reads UTF-8; re-encode the file, e.g. with iconv -t UTF-8",
                ) from None
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield number, line.rstrip("\r\n")


def _open_binary(source: str | os.PathLike) -> contextlib.AbstractContextManager[IO[bytes]]:
    if str(source) == STDIO:
        return contextlib.nullcontext(sys.stdin.buffer)
    return open(source, "rb")


def read_text(path: str | os.PathLike) -> str:
    """Read a whole UTF-8 file exactly (no newline translation, a leading BOM kept as a
    character, since standoff offsets count it), naming the line on bad bytes."""
    data = sys.stdin.buffer.read() if str(path) == STDIO else Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise FormatError(
            "invalid UTF-8",
            where=f"{display_name(path)}:{line}",
            hint="nerx reads UTF-8; re-encode the file, e.g. with iconv -t UTF-8",
        ) from None
    return text


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``target`` for writing so it appears only once complete.

    Writes to a temporary file beside it and renames on success; on any error the temporary
    file is removed and the target is left as it was. ``"-"`` writes to stdout.
    """
    binary = "b" in mode
    if str(target) == STDIO:
        out = sys.stdout.buffer if binary else sys.stdout
        yield out
        out.flush()
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Fill a fresh directory that replaces ``target`` only once complete.

    Files already in an existing ``target`` that the writer does not produce are kept.
    """
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield tmp
        path.mkdir(exist_ok=True)
        for item in tmp.iterdir():
            os.replace(item, path / item.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def head_text(source: str | os.PathLike, size: int = 8192) -> str:
    """The first ``size`` bytes of a file as text, for content sniffing (never stdin)."""
    with open(source, "rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")
