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
import errno
import os
import shutil
import stat
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
    #: Things the user should look at that are not errors (a source with no documents).
    warnings: list[str] = field(default_factory=list)

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
            "warnings": list(self.warnings),
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


def _user_error(
    exc: OSError, target: str | os.PathLike, *internal: str | Path, under: str | Path = ""
) -> OSError:
    """``exc`` naming the path the user gave, when it names nothing, one of ``internal``
    (nerx's temporary file, the paths derived from the target) or a path ``under`` a
    temporary directory. An error about another file (the input, read lazily while
    writing) keeps its name."""
    name = None if exc.filename is None else str(exc.filename)
    names = {str(p) for p in internal if p}
    inside = bool(under) and name is not None and name.startswith(str(under) + os.sep)
    inside = inside or (name is not None and _is_temporary(name))
    if name is not None and name not in names and not inside:
        return exc
    shown = "<stdout>" if str(target) == STDIO else str(target)
    try:  # the same class, so a BrokenPipeError stays one
        return type(exc)(exc.errno, exc.strerror or str(exc), shown)
    except Exception:  # a subclass with a constructor of its own
        return OSError(exc.errno, exc.strerror or str(exc), shown)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def _is_temporary(name: str) -> bool:
    """A name :func:`tempfile.mkstemp` / ``mkdtemp`` gave here (``.out.jsonl.XXXX.part``)."""
    base = os.path.basename(name)
    return base.startswith(".") and base.endswith(".part")


def is_stream_target(path: str | os.PathLike) -> bool:
    """A character device or FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): written in
    place, since nothing can be renamed over it."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _new_file_mode(existing: Path) -> int:
    """The permission bits a new output gets: the replaced file's, else what ``open`` would
    give under the umask."""
    try:
        return stat.S_IMODE(existing.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _check_replaceable(path: Path, target: str | os.PathLike) -> None:
    if path.is_dir():
        raise IsADirectoryError(
            errno.EISDIR, "is a directory, not a file to write", display_name(target)
        )
    if path.is_file() and not stat.S_IMODE(path.stat().st_mode) & 0o222:
        raise PermissionError(
            errno.EACCES,
            "is read-only; make it writable or remove it to replace it",
            display_name(target),
        )


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open ``target`` for writing so it appears only once complete.

    Writes to a temporary file beside it and renames on success; on any error the temporary
    file is removed and the target is left as it was. ``"-"`` writes to stdout; a character
    device or FIFO is written in place. A symlink keeps pointing where it did: its target
    is replaced. The new file keeps the mode of the one it replaces (else the umask's). An
    ``OSError`` names the path the user gave, never the temporary file.
    """
    binary = "b" in mode
    kwargs = {} if binary else {"encoding": "utf-8", "newline": ""}
    if str(target) == STDIO:
        out = sys.stdout.buffer if binary else sys.stdout
        try:
            yield out
            out.flush()
        except OSError as exc:
            if exc.filename is None:
                _silence_stdout()
            raise _user_error(exc, target) from None
        return
    path = Path(target)
    if is_stream_target(path):
        try:
            with open(path, mode, **kwargs) as handle:
                yield handle
        except OSError as exc:
            raise _user_error(exc, target, str(path)) from None
        return
    real = Path(os.path.realpath(path)) if path.is_symlink() else path
    tmp = ""
    try:
        _check_replaceable(real, target)
        real.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(real), suffix=".part", dir=real.parent)
        os.chmod(tmp, _new_file_mode(real))
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, real)
    except OSError as exc:
        _remove(tmp)
        raise _user_error(exc, target, tmp, str(real), str(real.parent)) from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: str) -> None:
    if path:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _silence_stdout() -> None:
    """After a failed write to stdout (a full disk), point it at /dev/null so the buffered
    rest is not flushed again, with a second error, when the interpreter exits."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Fill a fresh directory that replaces ``target`` only once complete.

    Files already in an existing ``target`` that the writer does not produce are kept. An
    ``OSError`` names the path the user gave, never the temporary directory.
    """
    path = Path(target)
    tmp: Path | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(
            tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".part", dir=path.parent)
        )
        yield tmp
        path.mkdir(exist_ok=True)
        for item in tmp.iterdir():
            os.replace(item, path / item.name)
    except OSError as exc:
        raise _user_error(exc, target, path, path.parent, tmp or "", under=tmp or "") from None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def head_text(source: str | os.PathLike, size: int = 8192) -> str:
    """The first ``size`` bytes of a file as text, for content sniffing (never stdin)."""
    with open(source, "rb") as handle:
        return handle.read(size).decode("utf-8", errors="replace")
