"""Readers and writers, one module per format, behind one registry.

>>> docs = nerx.read("train.conll")                 # format from the suffix, then the content
>>> report = nerx.write(docs, "train.spacy")         # returns a Report of what was kept
>>> nerx.convert("data.json", "out/", to="brat")    # both at once, streaming
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nerx.doc import Document
from nerx.errors import ConfigError, FormatError, UnknownFormatError
from nerx.io import brat, conll, docbin, doccano, html, jsonl, labelstudio, prodigy, table, text
from nerx.io.base import STDIO, Report, display_name, head_text, is_stream_target

# A format is a module (or, for the tables, an object) with NAME, SUFFIXES, sniff, read, write.
FORMATS: dict[str, Any] = {
    m.NAME: m
    for m in (jsonl, conll, docbin, brat, html, labelstudio, doccano, prodigy, text, *table.FORMATS)
}

# Read-only JSONL dialects: ``--from spert`` reads with the jsonl module in that dialect.
DIALECTS: tuple[str, ...] = tuple(d for d in jsonl.DIALECTS if d not in FORMATS)

# Suffixes that several formats share: the content decides, in this order of formats.
_BY_CONTENT: dict[str, tuple[Any, ...]] = {
    **dict.fromkeys(jsonl.SUFFIXES, (labelstudio, doccano, prodigy)),
    ".tsv": (conll, table.TSV),
}

__all__ = [
    "FORMATS",
    "DIALECTS",
    "Report",
    "detect_format",
    "source_options",
    "read",
    "write",
    "convert",
]


def _choices() -> str:
    return ", ".join([*FORMATS, text.LINES, doccano.RELATION_PROJECT, *DIALECTS])


def _resolve(name: str) -> tuple[Any, dict]:
    """Map a format or dialect name to its module and the options that select the dialect."""
    key = name.lower()
    if key in FORMATS:
        return FORMATS[key], {}
    if key == text.LINES:
        return text, {"lines": True}
    if key == doccano.RELATION_PROJECT:
        return doccano, {"relations": True}
    if key in DIALECTS:
        return jsonl, {"dialect": key}
    raise UnknownFormatError(f"unknown format {name!r}", hint=f"choose one of: {_choices()}")


def detect_format(path: str | os.PathLike, *, for_writing: bool = False) -> str:
    """Name of the format of ``path``: by suffix first, then by sniffing its content.

    A directory (or a new target without suffix, when writing) is BRAT, unless it holds .txt
    files and no .ann file (plain text, one document per file); an existing file, character
    device or FIFO without suffix (``/dev/null``) is written as JSONL, like ``-``.
    """
    p = Path(path)
    if str(path) == STDIO:
        return "jsonl"
    suffix = p.suffix.lower()
    if suffix == ".txt" and p.with_suffix(".ann").is_file():
        return "brat"
    if not for_writing and suffix in _BY_CONTENT and p.is_file():
        # A first record can be long (a whole article); a megabyte of it holds its keys.
        head = head_text(p, 1 << 20)
        for module in _BY_CONTENT[suffix]:
            if module.sniff(head):
                return module.NAME
    for name, module in FORMATS.items():
        if suffix in module.SUFFIXES:
            return name
    if not for_writing and text.is_text_folder(p):
        return text.NAME
    if p.is_dir():
        return "brat"
    if for_writing and not suffix:
        return "jsonl" if (p.is_file() or is_stream_target(p)) else "brat"
    if not for_writing and p.is_file():
        head = head_text(p)
        if not head.strip():
            raise UnknownFormatError(
                "the file is empty, so its format cannot be detected",
                where=display_name(path),
                hint="give a non-empty file, or name the format with --from",
            )
        for name, module in FORMATS.items():
            if module.sniff(head):
                return name
    if not for_writing and not p.exists():
        # A mistyped path (eng.trian) must say so, not that its format is unknown.
        raise UnknownFormatError(f"no such file or directory: {display_name(path)}")
    raise UnknownFormatError(
        f"cannot tell the format of {display_name(path)!r} from its suffix or content",
        hint=f"name it with --from/--to, one of: {_choices()}",
    )


def accepted_options(format: str, *, writing: bool = False) -> tuple[str, ...]:
    """The options ``format``'s reader (or writer) declares it takes (``READ_OPTIONS`` /
    ``WRITE_OPTIONS`` of its module)."""
    module, _ = _resolve(format)
    return tuple(getattr(module, "WRITE_OPTIONS" if writing else "READ_OPTIONS", ()))


def _refuse(unknown: list[str], where: str, sides: tuple[bool, ...]) -> None:
    """A ConfigError for options that do not apply to ``where``, naming the formats (on each
    side in ``sides``: False reading, True writing) that take them."""
    flags = ", ".join("--" + k.replace("_", "-") for k in unknown)
    takers = [
        f"{name} {'output' if writing else 'input'}"
        for writing in sides
        for name in FORMATS
        if set(unknown) <= set(accepted_options(name, writing=writing))
    ]
    raise ConfigError(
        f"{flags} does not apply to {where}",
        hint=f"it applies to {', '.join(takers)}" if takers else None,
    )


def source_options(format: str, **given: Any) -> dict[str, Any]:
    """The read options among ``given`` (None: not given) that ``format`` takes.

    A given option the format does not take is a ConfigError, so ``--text-column`` on a CoNLL
    file says so instead of being ignored.
    """
    chosen = {k: v for k, v in given.items() if v is not None}
    unknown = [k for k in chosen if k not in accepted_options(format)]
    if unknown:
        _refuse(unknown, f"{format} input", (False,))
    return chosen


def conversion_options(
    source_format: str, target_format: str, **given: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route each given option (None: not given) to the reader, the writer or both, by what
    each format declares; one that neither takes is a ConfigError (``--scheme`` from JSONL to
    JSONL says so instead of doing nothing)."""
    chosen = {k: v for k, v in given.items() if v is not None}
    reads, writes = accepted_options(source_format), accepted_options(target_format, writing=True)
    unknown = [k for k in chosen if k not in reads and k not in writes]
    if unknown:
        _refuse(unknown, f"{source_format} input or {target_format} output", (False, True))
    return (
        {k: v for k, v in chosen.items() if k in reads},
        {k: v for k, v in chosen.items() if k in writes},
    )


def read(
    source: str | os.PathLike,
    format: str | None = None,
    *,
    report: Report | None = None,
    require_documents: bool = False,
    **options,
) -> Iterator[Document]:
    """Stream the documents of ``source`` (a path or ``"-"``), validated on the way in.

    A source without documents (an empty file, blank lines, an empty directory) gives none;
    with ``require_documents`` that is a :class:`FormatError` once the source is exhausted,
    so a writer consuming the stream leaves no output behind."""
    name = format or detect_format(source)
    module, dialect_options = _resolve(name)
    if not os.path.exists(source) and str(source) != STDIO:
        raise UnknownFormatError(f"no such file or directory: {display_name(source)}")
    report = report if report is not None else Report()
    return _validated(
        module.read(source, report=report, **dialect_options, **options),
        source,
        report,
        require_documents,
    )


def _validated(
    docs: Iterable[Document], source, report: Report, require_documents: bool
) -> Iterator[Document]:
    name = display_name(source)
    count = 0
    for doc in docs:
        doc.validate(where=f"{name}: document {doc.id!r}")
        report.count_read(doc)
        count += 1
        yield doc
    if not count:
        report.warnings.append(f"no documents in {name}")
        if require_documents:
            raise FormatError(
                "no documents to read",
                where=name,
                hint="check the path; an unannotated document still needs a line like "
                '{"text": ...}',
            )


def write(
    docs: Iterable[Document],
    target: str | os.PathLike,
    format: str | None = None,
    *,
    report: Report | None = None,
    **options,
) -> Report:
    """Write documents to ``target``; return the report of what was written and lost."""
    name = format or detect_format(target, for_writing=True)
    module, variant = _resolve(name)
    if module is jsonl and name.lower() in DIALECTS:
        raise UnknownFormatError(
            f"{name!r} is a read-only dialect", hint="write native JSONL with --to jsonl"
        )
    report = report if report is not None else Report()
    module.write(docs, target, report=report, **variant, **options)
    return report


def convert(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    from_format: str | None = None,
    to_format: str | None = None,
    read_options: dict | None = None,
    write_options: dict | None = None,
    require_documents: bool = False,
    progress: bool = False,
) -> Report:
    """Stream ``source`` into ``target``, converting formats; return the report. A source
    without documents is a warning in the report (an error with ``require_documents``).
    ``progress=True`` counts the documents with a ``tqdm`` bar on stderr."""
    from nerx.progress import bar

    report = Report()
    docs = read(
        source,
        from_format,
        report=report,
        require_documents=require_documents,
        **(read_options or {}),
    )
    docs = bar(docs, enabled=progress, desc="convert")
    return write(docs, target, to_format, report=report, **(write_options or {}))
