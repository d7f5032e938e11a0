"""The journal of a resumable extraction run: finished chunks, kept beside the output.

``nerx extract corpus.jsonl -o out.jsonl`` works in chunks of consecutive documents. Each
finished chunk is a part file (native JSONL, which holds everything a document has) and a
record, both flushed to disk before the chunk counts as done::

    out.jsonl.nerx-run/
      run.json                 what the run depends on: input, model, options
      00000000.jsonl           chunk 0's predicted documents
      00000000.rejected.jsonl  chunk 0's rejected documents (only with on_error="skip")
      00000000.done.json       chunk 0's record: documents, entities, relations, rejected

Several processes (torchrun ranks) write their own chunks into one journal, so nothing here
takes a lock: every file has one writer, and a chunk is done exactly when its record exists.
When every chunk is done, :meth:`Journal.merge` writes the output once, in input order, and the
journal is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nerx.errors import ConfigError, NerxError

if TYPE_CHECKING:  # pragma: no cover
    from nerx.doc import Document
    from nerx.io.base import Report

JOURNAL_SUFFIX = ".nerx-run"
REJECTED_SUFFIX = ".rejected.jsonl"
MANIFEST = "run.json"
VERSION = 1
#: Documents per chunk: what one process does between two journal records.
DEFAULT_CHUNK_SIZE = 256
#: How much of the input is hashed: enough to tell files apart, cheap on a huge corpus.
HEAD_BYTES = 1 << 20


def journal_path(output: str | os.PathLike) -> Path:
    """``OUT.nerx-run`` beside the output (``out/`` for BRAT gives ``out.nerx-run``)."""
    return Path(str(output).rstrip("/\\") + JOURNAL_SUFFIX)


def rejected_path(output: str | os.PathLike) -> Path:
    return Path(str(output).rstrip("/\\") + REJECTED_SUFFIX)


class JournalError(NerxError):
    """The journal (or the output it becomes) cannot be written: a full disk, no permission."""


@contextlib.contextmanager
def _writing(what: str, path: Path) -> Iterator[None]:
    try:
        yield
    except NerxError:
        raise
    except OSError as exc:
        raise JournalError(
            f"cannot write {what}: {exc.strerror or exc}",
            where=str(exc.filename or path),
            hint="free space or fix permissions, then run again with --resume",
        ) from None


# ----------------------------------------------------------------------------- fingerprints
def input_fingerprint(source: str | os.PathLike) -> dict[str, Any]:
    """Size, modification time and a hash of the first MiB of a file (or of each file of a
    BRAT directory)."""
    path = Path(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    size = 0
    mtime = 0
    for file in files:
        stat = file.stat()
        size += stat.st_size
        mtime = max(mtime, stat.st_mtime_ns)
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(HEAD_BYTES))
    return {"size": size, "mtime_ns": mtime, "head_sha256": digest.hexdigest()}


def model_fingerprint(model) -> str:
    """A hash of a model's config and weights: two models with one fingerprint predict alike."""
    digest = hashlib.sha256(model.config.to_json().encode("utf-8"))
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode("utf-8"))
        digest.update(str(tensor.dtype).encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(_tensor_bytes(tensor))
    return digest.hexdigest()


def _tensor_bytes(tensor) -> bytes:
    import torch

    # As raw bytes, so bf16 (which numpy cannot hold) hashes like any other dtype.
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@dataclass(frozen=True)
class RunKey:
    """Everything the output of a run depends on; a resumed run must match it exactly."""

    input: dict[str, Any]
    model: str
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    def differences(self, old: dict[str, Any]) -> list[str]:
        """What changed since ``old`` (a manifest), in words; empty when nothing did."""
        changes = []
        if old.get("version") != VERSION:
            changes.append(
                f"the journal was written by another nerx version ({old.get('version')})"
            )
        before = old.get("input", {})
        if before.get("size") != self.input["size"]:
            changes.append(
                f"the input changed: {before.get('size')} bytes then, {self.input['size']} now"
            )
        elif before.get("head_sha256") != self.input["head_sha256"]:
            changes.append("the input changed: its first megabyte differs")
        elif before.get("mtime_ns") != self.input["mtime_ns"]:
            changes.append("the input changed: it was modified since the run started")
        if old.get("model") != self.model:
            changes.append("the model changed: its config or weights differ")
        options = old.get("options", {})
        for name in sorted(set(options) | set(self.options)):
            if options.get(name) != self.options.get(name):
                changes.append(
                    f"option {name} changed: {options.get(name)!r} then, "
                    f"{self.options.get(name)!r} now"
                )
        return changes


# ----------------------------------------------------------------------------- records
@dataclass
class ChunkRecord:
    """What one finished chunk holds; written last, so its presence means the chunk is done."""

    chunk: int
    first_ordinal: int
    #: Documents written to the part; ``rejected`` more of the input's are not.
    documents: int
    rejected: int = 0
    words: int = 0
    entities: int = 0
    relations: int = 0
    windows: int = 0
    split_sentences: int = 0


class Journal:
    """The journal directory of one output; see the module docstring for its layout."""

    def __init__(self, output: str | os.PathLike) -> None:
        self.output = output
        self.path = journal_path(output)

    # ------------------------------------------------------------------ opening
    def check(self, key: RunKey, *, resume: bool) -> None:
        """Refuse a run that would overwrite or wrongly continue another; writes nothing."""
        if not self.path.exists():
            return
        if not resume:
            raise ConfigError(
                f"an unfinished run's journal exists at {self.path}",
                hint="add --resume to continue it, or remove the directory to start over",
            )
        manifest = self.path / MANIFEST
        if not manifest.exists() and not any(self.path.glob("*.done.json")):
            return  # killed before its first write: nothing to keep
        try:
            old = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise ConfigError(
                f"the journal {self.path} has no readable {MANIFEST}",
                hint="remove the directory to start over",
            ) from None
        changes = key.differences(old)
        if changes:
            raise ConfigError(
                "cannot resume: " + "; ".join(changes),
                where=str(self.path),
                hint="run with what the journal was started with, or remove it to start over",
            )

    def create(self, key: RunKey) -> None:
        """Start the journal (kept as it is when resuming); leftovers of killed writes go."""
        with _writing("the journal", self.path):
            self._create(key)

    def _create(self, key: RunKey) -> None:
        if (self.path / MANIFEST).is_file():
            for stale in self.path.glob("*.tmp"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _write_durably(self.path / MANIFEST, json.dumps(key.to_dict(), indent=2).encode())
        _fsync_directory(self.path.parent)

    def exists(self) -> bool:
        return self.path.is_dir()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    # ------------------------------------------------------------------ chunks
    def _part(self, chunk: int) -> Path:
        return self.path / f"{chunk:08d}.jsonl"

    def _rejected(self, chunk: int) -> Path:
        return self.path / f"{chunk:08d}{REJECTED_SUFFIX}"

    def _record(self, chunk: int) -> Path:
        return self.path / f"{chunk:08d}.done.json"

    def record(self, chunk: int) -> ChunkRecord | None:
        """The record of a finished chunk, or None when it is not finished."""
        try:
            data = json.loads(self._record(chunk).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not self._part(chunk).is_file():
            return None
        return ChunkRecord(**data)

    def finished(self, known: dict[int, ChunkRecord] | None = None) -> dict[int, ChunkRecord]:
        """The records of the finished chunks; those already in ``known`` are not read again."""
        done = dict(known or {})
        for file in self.path.glob("*.done.json"):
            chunk = int(file.name.split(".")[0])
            if chunk not in done:
                record = self.record(chunk)
                if record is not None:
                    done[chunk] = record
        return done

    def commit(
        self, record: ChunkRecord, docs: Iterable[Document], rejected: Iterable[dict]
    ) -> None:
        """Write a chunk's part (and rejections), flush them to disk, then its record."""
        with _writing("the journal", self.path):
            self._commit(record, docs, rejected)

    def _commit(
        self, record: ChunkRecord, docs: Iterable[Document], rejected: Iterable[dict]
    ) -> None:
        from nerx.io import jsonl

        part = self._part(record.chunk)
        jsonl.write(docs, part)
        _fsync_file(part)
        lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in rejected]
        if lines:
            _write_durably(self._rejected(record.chunk), b"".join(lines))
        _write_durably(self._record(record.chunk), json.dumps(asdict(record)).encode())
        _fsync_directory(self.path)

    # ------------------------------------------------------------------ merging
    def merge(
        self,
        chunks: int,
        target_format: str,
        *,
        write_options: dict[str, Any] | None = None,
    ) -> Report:
        """Write the output from chunks ``0..chunks-1`` in order, then the rejected file.

        JSONL is the parts' own format, so its parts are concatenated byte for byte; any other
        format reads the parts back and writes the documents once, as an uninterrupted run
        writes them. The output appears whole or not at all.
        """
        with _writing("the output", Path(self.output)):
            return self._merge(chunks, target_format, write_options)

    def _merge(self, chunks: int, target_format: str, write_options: dict | None) -> Report:
        from nerx.io import jsonl, write
        from nerx.io.base import Report, atomic_file

        report = Report()
        parts = [self._part(k) for k in range(chunks)]
        # The rejected file first: once the output appears, everything else is in place.
        rejections = [self._rejected(k) for k in range(chunks) if self._rejected(k).is_file()]
        if rejections:
            with atomic_file(rejected_path(self.output), "wb") as out:
                for file in rejections:
                    out.write(file.read_bytes())
        else:  # an earlier run's rejections do not belong to this output
            with contextlib.suppress(FileNotFoundError):
                rejected_path(self.output).unlink()
        if target_format == jsonl.NAME and not write_options:
            with atomic_file(self.output, "wb") as out:
                for part in parts:
                    with open(part, "rb") as handle:
                        shutil.copyfileobj(handle, out, 1 << 20)
            for k in range(chunks):
                record = self.record(k)
                if record is not None:
                    report.documents_written += record.documents
                    report.entities_written += record.entities
                    report.relations_written += record.relations
        else:
            docs = _read_parts(parts)
            write(docs, self.output, target_format, report=report, **(write_options or {}))
        return report


def _read_parts(parts: list[Path]) -> Iterator[Document]:
    from nerx.io import jsonl

    for part in parts:
        if part.stat().st_size:
            yield from jsonl.read(part, dialect=jsonl.NAME)


# ----------------------------------------------------------------------------- durability
def _write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` through a temporary file, on disk before it takes the final name."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_directory(path: Path) -> None:
    # A rename is durable once its directory is; some systems cannot open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
