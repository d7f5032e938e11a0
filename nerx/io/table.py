"""Tables: Parquet, CSV and TSV, one row per document.

The text is in the ``text`` column (``text_column=``), the id in ``id_column=`` (default: the
``id`` column if there is one, else the row number from 1); every other column goes to
``meta``. Columns ``entities`` and
``relations``, as nerx writes them, are read back as annotations::

    id        text                        entities                                     relations
    news-001  Maria Lindqvist, a chemist  [{start: 0, end: 15, label: PER, score: ...}]  [{head: 0, tail: 1, ...}]

Parquet keeps them as lists of structs, so the file loads straight into pandas, DuckDB or
Spark; CSV and TSV hold them as JSON text. Parquet is read by row groups and written in row
groups of ``row_group_size`` documents, so memory stays flat on any file size; it needs
``pyarrow`` (``pip install 'nerx[parquet]'``). Meta columns are those of the first document
written. Tokens and sentences have no column.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from nerx.doc import Document, Entity, Relation
from nerx.errors import ConfigError, FormatError
from nerx.io import losses
from nerx.io.base import STDIO, Report, atomic_file, display_name

__all__ = ["PARQUET", "CSV", "TSV", "FORMATS", "annotation_columns", "arrow_annotation_types"]

# A header cell: a column name such as text, doc_id or Body Text, never a sentence.
_COLUMN_NAME = re.compile(r"^[A-Za-z_][\w \-]{0,63}$")

READ_OPTIONS: tuple[str, ...] = ("text_column", "id_column")
ANNOTATION_COLUMNS = ("id", "text", "entities", "relations")
LOST_COLUMNS = "meta fields that are not a column of the first document written"
LOST_CLASHES = "meta fields named like a column nerx writes (id, text, entities, relations)"

ENTITY_FIELDS = (("start", "int64"), ("end", "int64"), ("label", "string"), ("score", "float64"))
RELATION_FIELDS = (("head", "int64"), ("tail", "int64"), ("label", "string"), ("score", "float64"))


def require_pyarrow(action: str = "reading or writing Parquet"):
    """``pyarrow.parquet``, or a ConfigError that names the extra to install."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            f"{action} needs pyarrow, which is not installed",
            hint="pip install 'nerx[parquet]'",
        ) from None
    return pq


# ================================================================================ columns
def annotation_columns(doc: Document) -> dict[str, list[dict[str, Any]]]:
    """A document's entities and relations as lists of plain dicts (one table cell each)."""
    return {
        "entities": [
            {
                "start": e.start,
                "end": e.end,
                "label": e.label,
                "score": e.score,
                "text": doc.text[e.start : e.end],
            }
            for e in doc.entities
        ],
        "relations": [
            {"head": r.head, "tail": r.tail, "label": r.label, "score": r.score}
            for r in doc.relations
        ],
    }


def _entities(cell: Any, where: str) -> list[Entity]:
    return _parsed(
        cell, where, "entities", "{start, end, label[, score]}",
        lambda e: Entity(int(e["start"]), int(e["end"]), str(e["label"]), _score(e.get("score"))),
    )  # fmt: skip


def _relations(cell: Any, where: str) -> list[Relation]:
    return _parsed(
        cell, where, "relations", "{head, tail, label[, score]}",
        lambda r: Relation(int(r["head"]), int(r["tail"]), str(r["label"]), _score(r.get("score"))),
    )  # fmt: skip


def _parsed(cell: Any, where: str, column: str, shape: str, build) -> list:
    """The items of an entities or relations cell, each built by ``build``."""
    try:
        return [build(item) for item in _items(cell, where, column)]
    except (KeyError, TypeError, ValueError):
        raise FormatError(
            f"the {column!r} column must hold a list of {shape}",
            where=where,
            hint="rename the column if it holds something else",
        ) from None


def _items(cell: Any, where: str, column: str) -> list:
    if cell is None or cell == "":
        return []
    if isinstance(cell, str):
        try:
            cell = orjson.loads(cell)
        except orjson.JSONDecodeError as exc:
            raise FormatError(
                f"the {column!r} column is not JSON ({exc.msg})",
                where=where,
                hint="rename the column if it holds something else",
            ) from None
    if not isinstance(cell, list) or not all(isinstance(x, dict) for x in cell):
        raise FormatError(f"the {column!r} column must hold a list of objects", where=where)
    return cell


def _score(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


@dataclass
class _Columns:
    """How the columns of a table map onto a document."""

    text: str
    id: str | None

    def check(self, names: list[str], where: str) -> None:
        if self.id is None and "id" in names:
            self.id = "id"
        for role, column in (("text", self.text), ("id", self.id)):
            if column is not None and column not in names:
                raise FormatError(
                    f"there is no {role} column {column!r} (columns: {', '.join(names)})",
                    where=where,
                    hint=f"name the {role} column with --{role}-column",
                )

    def document(self, row: dict[str, Any], ordinal: int, where: str) -> Document:
        text = row.get(self.text)
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise FormatError(
                f"the text column {self.text!r} holds {type(text).__name__}, not text", where=where
            )
        doc_id = row.get(self.id) if self.id is not None else None
        taken = {self.text, self.id, "entities", "relations"}
        return Document(
            id=str(ordinal if doc_id is None or doc_id == "" else doc_id),
            text=text,
            entities=_entities(row.get("entities"), where),
            relations=_relations(row.get("relations"), where),
            meta={k: v for k, v in row.items() if k not in taken},
        )


def _meta_columns(doc: Document, columns: list[str] | None, report: Report) -> list[str]:
    """The meta columns of the table (those of the first document); count what does not fit."""
    if columns is None:
        columns = [k for k in doc.meta if k not in ANNOTATION_COLUMNS]
    if n := sum(k in ANNOTATION_COLUMNS for k in doc.meta):
        report.lost[LOST_CLASHES] += n
    if n := sum(k not in columns and k not in ANNOTATION_COLUMNS for k in doc.meta):
        report.lost[LOST_COLUMNS] += n
    losses.count_views(doc, report)
    return columns


# ================================================================================ CSV / TSV
class _Delimited:
    def __init__(self, name: str, suffixes: tuple[str, ...], delimiter: str) -> None:
        self.NAME = name
        self.SUFFIXES = suffixes
        self.READ_OPTIONS = READ_OPTIONS
        self.delimiter = delimiter

    def sniff(self, head: str) -> bool:
        """A header of two or more column names (identifiers, not prose), and a first row
        with as many cells."""
        lines = head.lstrip("\ufeff").splitlines()
        if not head.endswith("\n"):
            lines = lines[:-1]  # cut short by the size of the head
        rows = list(csv.reader(lines[:2], delimiter=self.delimiter))
        if len(rows) < 2 or len(rows[0]) < 2 or len(rows[1]) != len(rows[0]):
            return False
        return all(_COLUMN_NAME.match(name.strip()) for name in rows[0])

    def read(
        self,
        source: str | os.PathLike,
        report: Report | None = None,
        *,
        text_column: str = "text",
        id_column: str | None = None,
    ) -> Iterator[Document]:
        """Stream the rows of a CSV or TSV file with a header line, one document each."""
        name = display_name(source)
        columns = _Columns(text_column, id_column)
        # Documents are longer than the csv module's default cell limit (128 KiB).
        csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
        stdin = str(source) == STDIO
        with open(
            sys.stdin.fileno() if stdin else source,
            encoding="utf-8-sig",
            newline="",
            closefd=not stdin,
        ) as handle:
            reader = csv.DictReader(handle, delimiter=self.delimiter)
            try:
                header = reader.fieldnames or []
                columns.check(list(header), f"{name}:1")
                for ordinal, row in enumerate(reader, start=1):
                    where = f"{name}:{reader.line_num}"
                    if None in row:
                        raise FormatError(
                            f"the row has more cells than the header's {len(header)}",
                            where=where,
                            hint="quote cells that hold the delimiter",
                        )
                    yield columns.document(row, ordinal, where)
            except UnicodeDecodeError:
                raise FormatError(
                    "invalid UTF-8",
                    where=f"{name}:{reader.line_num + 1}",
                    hint="nerx reads UTF-8; re-encode the file, e.g. with iconv -t UTF-8",
                ) from None
            except csv.Error as exc:
                raise FormatError(
                    f"not valid {self.NAME.upper()}: {exc}", where=f"{name}:{reader.line_num}"
                ) from None

    def write(
        self, docs: Iterable[Document], target: str | os.PathLike, report: Report | None = None
    ) -> None:
        """Write a header and one row per document; entities and relations as JSON cells."""
        report = report if report is not None else Report()
        meta: list[str] | None = None
        with atomic_file(target, "w") as out:
            writer = csv.writer(out, delimiter=self.delimiter, lineterminator="\n")
            for doc in docs:
                if meta is None:
                    meta = _meta_columns(doc, None, report)
                    writer.writerow([*ANNOTATION_COLUMNS, *meta])
                else:
                    _meta_columns(doc, meta, report)
                cells = annotation_columns(doc)
                writer.writerow(
                    [
                        doc.id,
                        doc.text,
                        orjson.dumps(cells["entities"]).decode(),
                        orjson.dumps(cells["relations"]).decode(),
                        *(_cell(doc.meta.get(k)) for k in meta),
                    ]
                )
                report.count_written(len(doc.entities), len(doc.relations))
            if meta is None:
                writer.writerow(ANNOTATION_COLUMNS)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


# ================================================================================ Parquet
class _Parquet:
    NAME = "parquet"
    SUFFIXES: tuple[str, ...] = (".parquet", ".pq")
    READ_OPTIONS = READ_OPTIONS

    def sniff(self, head: str) -> bool:
        """Parquet is binary; it is recognised by its suffix."""
        return False

    def read(
        self,
        source: str | os.PathLike,
        report: Report | None = None,
        *,
        text_column: str = "text",
        id_column: str | None = None,
        batch_size: int = 1024,
    ) -> Iterator[Document]:
        """Stream the rows of a Parquet file, one row group (or ``batch_size`` rows) at a time."""
        pq = require_pyarrow("reading Parquet")
        import pyarrow as pa

        name = display_name(source)
        if str(source) == STDIO:
            raise ConfigError("Parquet cannot be read from stdin", hint="give the file's path")
        columns = _Columns(text_column, id_column)
        try:
            # A buffered stream decodes page by page instead of reading whole row groups.
            file = pq.ParquetFile(source, buffer_size=1 << 20, pre_buffer=False)
        except (pa.ArrowInvalid, OSError) as exc:
            raise FormatError(f"not a Parquet file: {exc}", where=name) from None
        columns.check(file.schema_arrow.names, name)
        ordinal = 0
        with file:
            for batch in file.iter_batches(batch_size=batch_size):
                for row in batch.to_pylist():
                    ordinal += 1
                    yield columns.document(row, ordinal, f"{name}: row {ordinal}")

    def write(
        self,
        docs: Iterable[Document],
        target: str | os.PathLike,
        report: Report | None = None,
        *,
        row_group_size: int = 4096,
    ) -> None:
        """Write one row per document; a row group every ``row_group_size`` documents."""
        pq = require_pyarrow("writing Parquet")
        import pyarrow as pa

        if str(target) == STDIO:
            raise ConfigError("Parquet cannot be written to stdout", hint="give -o FILE.parquet")
        report = report if report is not None else Report()
        meta: list[str] | None = None
        schema = None
        writer = None
        rows: list[dict[str, Any]] = []

        def flush(out) -> None:
            nonlocal schema, writer
            if schema is None:
                schema = _schema(pa, rows, meta or [])
                writer = pq.ParquetWriter(out, schema)
            try:
                table = pa.Table.from_pylist(rows, schema=schema)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise FormatError(
                    f"a meta value does not fit its column's type: {exc}",
                    where=f"documents {rows[0]['id']!r} to {rows[-1]['id']!r}",
                    hint="give every document's meta field the same type",
                ) from None
            writer.write_table(table)
            rows.clear()

        with atomic_file(target, "wb") as out:
            try:
                for doc in docs:
                    meta = _meta_columns(doc, meta, report)
                    row = {"id": doc.id, "text": doc.text, **annotation_columns(doc)}
                    row.update({k: doc.meta.get(k) for k in meta})
                    rows.append(row)
                    report.count_written(len(doc.entities), len(doc.relations))
                    if len(rows) >= row_group_size:
                        flush(out)
                if rows or writer is None:
                    flush(out)
            finally:
                if writer is not None:
                    writer.close()


def arrow_annotation_types(pa) -> tuple[Any, Any]:
    """The Arrow types of the ``entities`` and ``relations`` columns: lists of structs."""
    entity = [pa.field(n, getattr(pa, t)()) for n, t in ENTITY_FIELDS]
    relation = [pa.field(n, getattr(pa, t)()) for n, t in RELATION_FIELDS]
    return (
        pa.list_(pa.struct([*entity, pa.field("text", pa.string())])),
        pa.list_(pa.struct(relation)),
    )


def _schema(pa, rows: list[dict[str, Any]], meta: list[str]):
    entities, relations = arrow_annotation_types(pa)
    fields = [
        pa.field("id", pa.string()),
        pa.field("text", pa.string()),
        pa.field("entities", entities),
        pa.field("relations", relations),
    ]
    for key in meta:
        values = [row[key] for row in rows]
        try:
            kind = pa.array(values).type
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise FormatError(
                f"the meta field {key!r} has values of mixed types: {exc}",
                where=f"document {rows[0]['id']!r}",
            ) from None
        fields.append(pa.field(key, pa.string() if pa.types.is_null(kind) else kind))
    return pa.schema(fields)


PARQUET = _Parquet()
CSV = _Delimited("csv", (".csv",), ",")
TSV = _Delimited("tsv", (), "\t")  # .tsv is CoNLL's too; the registry tells them apart
FORMATS = (PARQUET, CSV, TSV)
