"""One inference pipeline for every model.

Documents stream in, in chunks of consecutive documents; each chunk is tokenised (spaCy
blank pipeline and sentencizer for raw text), cut into windows, sorted by length so batches
are dense, run through the model, and written back as character-offset entities and
relations, in input order. Nothing here asks which model it holds.

Two entry points:

- :func:`extract` streams predictions for documents already in memory or read lazily;
- :func:`extract_corpus` runs a file into a file through a journal (:mod:`nerx.journal`), so
  a killed run resumes, bad documents can be skipped, and under torchrun every process takes
  every N-th chunk while process 0 writes the output in input order.

Input preparation (reading, validation, tokenising, windowing, collation) can run in
background threads (``workers``), so the model does not wait for the next batch.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import torch

from nerx.doc import Document, Entity, Relation, TextPreparer
from nerx.errors import ConfigError, NerxError
from nerx.journal import DEFAULT_CHUNK_SIZE
from nerx.models.base import Example, Prediction, SpanModel, SpanPrediction, Statistic
from nerx.runtime import autocast, barrier, distributed, move_batch, ranks

ON_ERROR = ("raise", "skip")


@dataclass
class ExtractionStats:
    """What an extraction run did; the CLI prints it as the closing summary."""

    documents: int = 0
    words: int = 0
    entities: int = 0
    relations: int = 0
    windows: int = 0
    split_sentences: int = 0
    rejected: int = 0
    seconds: float = 0.0
    #: Counters a model reports (e.g. candidate spans and spans kept by a filter).
    model: Counter[str] = field(default_factory=Counter)
    #: How the model that ran says to print its counters (``SpanModel.statistics``).
    statistics: tuple[Statistic, ...] = ()

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0

    def add(self, other: ExtractionStats) -> None:
        for name in ("documents", "words", "entities", "relations", "windows"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.split_sentences += other.split_sentences
        self.rejected += other.rejected
        self.model.update(other.model)
        self.statistics = self.statistics or other.statistics

    def model_summary(self) -> list[str]:
        """The model's counters as the model describes them, those that are not zero."""
        found = (statistic.describe(self.model) for statistic in self.statistics)
        return [text for text in found if text]


@dataclass
class Rejection:
    """A document that was not extracted, where it was in the input, and why."""

    ordinal: int  # 1-based position in the input
    reason: str
    line: int | None = None  # its line, for line-based input
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ordinal": self.ordinal, "line": self.line, "id": self.id, "reason": self.reason}


# ----------------------------------------------------------------------------- prediction
@dataclass
class PreparedDocuments:
    """Documents cut into windows and collated into CPU batches, ready for the model."""

    docs: list[Document]
    batches: list[tuple[list[Example], dict]]
    windows: int
    split_sentences: int


def prepare_documents(
    model: SpanModel,
    docs: Sequence[Document],
    *,
    batch_size: int = 32,
    preparer: TextPreparer | None = None,
) -> PreparedDocuments:
    """Everything before the forward pass; safe to run beside it in another thread."""
    if preparer is not None:
        preparer(docs)
    examples: list[Example] = [ex for i, doc in enumerate(docs) for ex in model.prepare(doc, i)]
    upstream = entity_model(model)
    if upstream is not None:  # a two-stage pipeline: that model's entities go in as given
        found = predict_documents(upstream, docs, batch_size=batch_size)
        for example in examples:
            example.given_spans = window_entities(found[example.doc_index], example)
    # Length-sorted batches are dense; predictions go back to their documents afterwards.
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].input_ids))
    batches = []
    for first in range(0, len(order), batch_size):
        chunk = [examples[k] for k in order[first : first + batch_size]]
        batches.append((chunk, model.collate(chunk)))
    return PreparedDocuments(
        docs=list(docs),
        batches=batches,
        windows=len(examples),
        split_sentences=sum(1 for ex in examples if ex.window.piece == 1),
    )


_ENTITY_MODELS: weakref.WeakKeyDictionary[SpanModel, tuple[str, SpanModel]] = (
    weakref.WeakKeyDictionary()
)
_ENTITY_MODELS_LOCK = threading.Lock()


def entity_model(model: SpanModel) -> SpanModel | None:
    """The model named by ``model.entity_source()``, whose entities ``model`` takes as
    given, on ``model``'s device; None when ``model`` finds its own. Loaded once per model
    and path (workers preparing chunks in parallel share it)."""
    source = model.entity_source()
    if not source:
        return None
    with _ENTITY_MODELS_LOCK:
        cached = _ENTITY_MODELS.get(model)
        if cached is None or cached[0] != str(source):
            from nerx.loading import load

            cached = (str(source), load(source, device=model.device))
            _ENTITY_MODELS[model] = cached
    return cached[1].to(model.device)


def window_entities(doc: Document, example: Example) -> list[SpanPrediction]:
    """``doc``'s entities that cover whole words inside ``example``'s focus sentences, as
    window-relative word spans in text order (an entity without a score counts as sure)."""
    offset = example.window.start
    spans = []
    for ent, words in zip(doc.entities, doc.entity_token_spans(), strict=True):
        if words is None:
            continue
        s, e = words[0] - offset, words[1] - offset
        if any(first <= s and e <= end for first, end in example.sentences):
            score = 1.0 if ent.score is None else ent.score
            spans.append(SpanPrediction(s, e, ent.label, score))
    return sorted(spans, key=lambda sp: (sp.start, sp.end))


def run_prepared(
    model: SpanModel,
    prepared: PreparedDocuments,
    *,
    threshold: float = 0.0,
    stats: ExtractionStats | None = None,
    precision: str = "auto",
) -> list[Document]:
    """The forward passes and decoding of prepared documents; returns new Documents."""
    local = ExtractionStats(
        windows=prepared.windows,
        split_sentences=prepared.split_sentences,
        statistics=type(model).statistics,
    )
    device = model.device
    found: list[list[tuple[Example, Prediction]]] = [[] for _ in prepared.docs]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(device, precision):
            for chunk, collated in prepared.batches:
                batch = move_batch(collated, device)
                predictions = model.predict(batch, stats=local.model)
                for example, prediction in zip(chunk, predictions, strict=True):
                    found[example.doc_index].append((example, prediction))
    finally:
        model.train(was_training)
    result = [
        _assemble(doc, pieces, threshold, local)
        for doc, pieces in zip(prepared.docs, found, strict=True)
    ]
    if stats is not None:
        stats.add(local)
    return result


def predict_documents(
    model: SpanModel,
    docs: Sequence[Document],
    *,
    batch_size: int = 32,
    threshold: float = 0.0,
    stats: ExtractionStats | None = None,
    precision: str = "auto",
) -> list[Document]:
    """Predict entities (and relations) for tokenised documents; returns new Documents.
    ``precision``: auto (bf16 on GPU, fp32 on CPU), bf16 or fp32."""
    prepared = prepare_documents(model, docs, batch_size=batch_size)
    return run_prepared(model, prepared, threshold=threshold, stats=stats, precision=precision)


def _assemble(
    doc: Document,
    pieces: list[tuple[Example, Prediction]],
    threshold: float,
    stats: ExtractionStats,
) -> Document:
    """Window-relative word spans -> the document's character offsets, one entity per
    (span, label) across windows, relations re-indexed."""
    entity_index: dict[tuple[int, int, str], int] = {}
    entities: list[Entity] = []
    relations: dict[tuple[int, int, str], Relation] = {}
    for example, prediction in sorted(pieces, key=lambda p: p[0].window.start):
        window = example.window
        local: dict[int, int] = {}
        for k, span in enumerate(prediction.spans):
            start_word = window.start + span.start
            if not (window.focus_start <= start_word < window.focus_end) or span.score < threshold:
                continue
            start = doc.tokens[start_word][0]
            end = doc.tokens[window.start + span.end - 1][1]
            key = (start, end, span.label)
            if key in entity_index:
                kept = entities[entity_index[key]]
                kept.score = max(kept.score or 0.0, span.score)
            else:
                entity_index[key] = len(entities)
                entities.append(Entity(start, end, span.label, span.score))
            local[k] = entity_index[key]
        for head, tail, label, score in prediction.relations:
            if head in local and tail in local and score >= threshold:
                key = (local[head], local[tail], label)
                if key not in relations or relations[key].score < score:
                    relations[key] = Relation(*key, score)
    # Entities in text order; relations follow their entities' new indices.
    order = sorted(range(len(entities)), key=lambda i: (entities[i].start, entities[i].end))
    new_index = {old: new for new, old in enumerate(order)}
    result = Document(
        id=doc.id,
        text=doc.text,
        tokens=doc.tokens,
        sentences=doc.sentences,
        entities=[entities[i] for i in order],
        relations=[
            Relation(new_index[r.head], new_index[r.tail], r.label, r.score)
            for r in relations.values()
        ],
        meta=doc.meta,
    )
    stats.documents += 1
    stats.words += len(doc.tokens)
    stats.entities += len(result.entities)
    stats.relations += len(result.relations)
    return result


# ----------------------------------------------------------------------------- input
@dataclass
class InputDocument:
    """One input position: a document, or the reason it could not be read."""

    ordinal: int
    doc: Document | None
    line: int | None = None
    error: str | None = None


def read_corpus(
    source: str | os.PathLike,
    format: str | None = None,
    *,
    on_error: str = "raise",
    read_options: dict[str, Any] | None = None,
) -> Iterator[InputDocument]:
    """The documents of ``source`` with their ordinals.

    With ``on_error="skip"`` a document that fails validation is handed on with its reason
    instead of stopping the read, and so is a JSON Lines record that does not parse (with its
    line). Other formats cannot go on past a syntax error, which still stops the read.
    """
    from nerx.io import DIALECTS, FORMATS, detect_format, jsonl, read
    from nerx.io.base import STDIO, display_name, head_text

    _check_on_error(on_error)
    name = (format or detect_format(source)).lower()
    options = dict(read_options or {})
    checked = read(source, name, **options)  # opens nothing yet: checks the format and path
    if on_error == "raise":
        for ordinal, doc in enumerate(checked, start=1):
            yield InputDocument(ordinal, doc)
        return
    module = FORMATS.get(name, jsonl)
    dialect = name if name in DIALECTS else None
    line_based = (
        module is jsonl
        and dialect != "genia"
        and str(source) != STDIO
        and not head_text(source).lstrip().startswith("[")
    )
    if line_based:
        yield from _tolerant_json_lines(source, dialect)
        return
    where = display_name(source)
    if dialect:
        options["dialect"] = dialect
    for ordinal, doc in enumerate(module.read(source, **options), start=1):
        try:
            doc.validate(where=f"{where}: document {doc.id!r}")
        except NerxError as exc:
            yield InputDocument(ordinal, None, error=str(exc))
            continue
        yield InputDocument(ordinal, doc)


def _tolerant_json_lines(source, dialect: str | None) -> Iterator[InputDocument]:
    # The JSONL module's own record parsers, line by line, so one bad line costs one document.
    from nerx.io import jsonl
    from nerx.io.base import Report, display_name, iter_lines

    name = display_name(source)
    report = Report()
    ordinal = 0
    for number, line in iter_lines(source):
        if not line.strip():
            continue
        ordinal += 1
        where = f"{name}:{number}"
        try:
            record = jsonl._record(jsonl._loads(line, where), where)
            dialect = dialect or jsonl._detect(record)
            if dialect not in jsonl._PARSERS:
                raise ConfigError(
                    f"--on-error skip reads JSON Lines one record at a time; {dialect} is not",
                    hint="use the default --on-error raise for this dialect",
                )
            doc = jsonl._PARSERS[dialect](record, ordinal, report)
            doc.validate(where=where)
        except ConfigError:
            raise
        except NerxError as exc:
            yield InputDocument(ordinal, None, line=number, error=str(exc))
            continue
        yield InputDocument(ordinal, doc, line=number)


# ----------------------------------------------------------------------------- chunks
@dataclass
class Chunk:
    """Consecutive input documents; ``todo`` is False for chunks another process or an
    earlier run does."""

    index: int
    items: list[InputDocument]
    todo: bool = True
    prepared: PreparedDocuments | None = None
    failure: BaseException | None = None


@dataclass
class _Settings:
    batch_size: int
    threshold: float
    lang: str
    on_error: str
    read_options: dict[str, Any] = field(default_factory=dict)
    precision: str = "auto"

    def journal_options(self) -> dict[str, Any]:
        """What of these changes the output: a resumed run must have the same."""
        return {
            "threshold": self.threshold,
            "lang": self.lang,
            "batch-size": self.batch_size,
            "precision": self.precision,
            "read-options": self.read_options,
        }


def _chunks(
    items: Iterable[InputDocument], size: int, todo: Callable[[int], bool]
) -> Iterator[Chunk]:
    index = 0
    buffer: list[InputDocument] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= size:
            yield Chunk(index, buffer, todo(index))
            index += 1
            buffer = []
    if buffer:
        yield Chunk(index, buffer, todo(index))


def _prepare_chunk(model: SpanModel, settings: _Settings, preparers: threading.local):
    tokenizer = getattr(model, "tokenizer", None)
    if callable(tokenizer):
        # A fast tokenizer settles its truncation and padding state on its first call; made
        # here, that call cannot race another thread's.
        tokenizer(["a"], add_special_tokens=False)

    def prepare(chunk: Chunk) -> Chunk:
        if not chunk.todo:
            return chunk
        if not hasattr(preparers, "value"):
            preparers.value = TextPreparer(settings.lang)
        docs = [item.doc for item in chunk.items if item.doc is not None]
        try:
            chunk.prepared = prepare_documents(
                model, docs, batch_size=settings.batch_size, preparer=preparers.value
            )
        except Exception as exc:  # handed to the main thread, which decides
            chunk.failure = exc
        return chunk

    return prepare


def _predict_chunk(
    model: SpanModel, chunk: Chunk, settings: _Settings, stats: ExtractionStats
) -> tuple[list[Document], list[Rejection]]:
    """The chunk's predicted documents and its rejections, in input order."""
    rejected = [
        Rejection(item.ordinal, item.error or "", line=item.line)
        for item in chunk.items
        if item.doc is None
    ]
    try:
        if chunk.failure is not None:
            raise chunk.failure
        assert chunk.prepared is not None
        docs = run_prepared(
            model,
            chunk.prepared,
            threshold=settings.threshold,
            stats=stats,
            precision=settings.precision,
        )
    except Exception:
        if settings.on_error == "raise":
            raise
        docs, failed = _predict_one_by_one(model, chunk, settings, stats)
        rejected.extend(failed)
    rejected.sort(key=lambda r: r.ordinal)
    stats.rejected += len(rejected)
    return docs, rejected


def _predict_one_by_one(
    model: SpanModel, chunk: Chunk, settings: _Settings, stats: ExtractionStats
) -> tuple[list[Document], list[Rejection]]:
    # A chunk failed as a whole: find the documents that fail alone and keep the others.
    preparer = TextPreparer(settings.lang)
    docs, rejected = [], []
    for item in chunk.items:
        if item.doc is None:
            continue
        try:
            prepared = prepare_documents(
                model, [item.doc], batch_size=settings.batch_size, preparer=preparer
            )
            docs.extend(
                run_prepared(
                    model,
                    prepared,
                    threshold=settings.threshold,
                    stats=stats,
                    precision=settings.precision,
                )
            )
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            if not isinstance(exc, NerxError):
                reason = f"prediction failed: {type(exc).__name__}: {reason}"
            rejected.append(Rejection(item.ordinal, reason, line=item.line, id=item.doc.id))
    return docs, rejected


_END = object()


def _in_background(
    chunks: Iterator[Chunk], prepare: Callable[[Chunk], Chunk], workers: int
) -> Iterator[Chunk]:
    """``prepare`` applied to every chunk, in order; with workers, reading and preparing run
    in background threads, at most a few chunks ahead of the consumer."""
    if workers <= 0:
        for chunk in chunks:
            yield prepare(chunk)
        return
    ready: queue.Queue = queue.Queue(maxsize=workers + 1)
    stop = threading.Event()
    pool = ThreadPoolExecutor(workers, thread_name_prefix="nerx-prepare")

    def put(item) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def feed() -> None:
        try:
            for chunk in chunks:
                if not put(pool.submit(prepare, chunk)):
                    return
            put(_END)
        except BaseException as exc:  # a read error reaches the consumer, in order
            put(exc)

    feeder = threading.Thread(target=feed, name="nerx-read", daemon=True)
    feeder.start()
    try:
        while True:
            try:
                item = ready.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item.result()
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------- streaming
def extract(
    docs: Iterable[Document],
    model: SpanModel,
    *,
    batch_size: int = 32,
    chunk_size: int | None = None,
    threshold: float = 0.0,
    lang: str = "en",
    on_error: str = "raise",
    on_reject: Callable[[Rejection], None] | None = None,
    workers: int = 0,
    stats: ExtractionStats | None = None,
    buffer_size: int | None = None,
    precision: str = "auto",
    progress: bool = False,
) -> Iterator[Document]:
    """Stream predictions for ``docs``, in input order, holding one chunk of ``chunk_size``
    documents (default ``max(16 * batch_size, 64)``) in memory at a time. ``progress=True``
    counts the documents done with a ``tqdm`` bar on stderr (a widget in a notebook).

    With ``on_error="skip"`` a document whose prediction fails is left out and passed to
    ``on_reject``; ``workers`` prepares the next chunks in background threads.
    (``buffer_size`` is the former name of ``chunk_size``.)
    """
    _check_on_error(on_error)
    stats = stats if stats is not None else ExtractionStats()
    size = chunk_size or buffer_size or max(16 * batch_size, 64)
    settings = _Settings(batch_size, threshold, lang, on_error, precision=precision)
    from nerx.progress import bar, length

    items = (InputDocument(k, doc) for k, doc in enumerate(docs, start=1))
    predicted = _stream(items, model, settings, size, workers, stats, on_reject)
    yield from bar(predicted, enabled=progress, total=length(docs), desc="extract")


def _stream(items, model, settings, size, workers, stats, on_reject) -> Iterator[Document]:
    started = time.perf_counter()
    chunks = _chunks(items, size, lambda _: True)
    prepare = _prepare_chunk(model, settings, threading.local())
    for chunk in _in_background(chunks, prepare, workers):
        predicted, rejected = _predict_chunk(model, chunk, settings, stats)
        for rejection in rejected:
            if on_reject is not None:
                on_reject(rejection)
        stats.seconds = time.perf_counter() - started
        yield from predicted
    stats.seconds = time.perf_counter() - started


# ----------------------------------------------------------------------------- files
@dataclass
class ExtractionProgress:
    """Where a run stands, for a progress bar or a log line."""

    documents: int  # documents done: by every process, and by the run it resumed
    started_with: int  # of those, documents an earlier run had done
    seconds: float
    bytes_read: int | None = None
    bytes_total: int | None = None
    waiting: int = 0  # chunks other processes are still working on

    @property
    def rate(self) -> float:
        done = self.documents - self.started_with
        return done / self.seconds if self.seconds else 0.0

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total or self.bytes_read is None:
            return None
        return min(self.bytes_read / self.bytes_total, 1.0)

    @property
    def eta(self) -> float | None:
        fraction = self.fraction
        if not fraction or self.seconds <= 0:
            return None
        return self.seconds * (1 - fraction) / fraction


@dataclass
class CorpusResult:
    """What :func:`extract_corpus` did: this process's work, and, on process 0, the totals
    of the whole output."""

    stats: ExtractionStats
    documents: int = 0
    entities: int = 0
    relations: int = 0
    rejected: int = 0
    resumed_chunks: int = 0
    chunks: int = 0
    merged: bool = False
    report: Any = None  # nerx.io.Report of the output, on the process that wrote it
    rejected_path: str | None = None


def extract_corpus(
    source: str | os.PathLike,
    output: str | os.PathLike,
    model: SpanModel | str,
    *,
    to_format: str | None = None,
    from_format: str | None = None,
    resume: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    batch_size: int = 32,
    threshold: float = 0.0,
    lang: str = "en",
    on_error: str = "raise",
    workers: int = 0,
    precision: str = "auto",
    read_options: dict[str, Any] | None = None,
    write_options: dict[str, Any] | None = None,
    progress: Callable[[ExtractionProgress], None] | None = None,
    on_reject: Callable[[Rejection], None] | None = None,
    on_chunk: Callable[[Any], None] | None = None,
) -> CorpusResult:
    """Extract ``source`` into ``output`` in chunks, through a journal beside the output.

    Killed at any point, the same call with ``resume=True`` continues where it stopped and
    writes the same output; without ``resume`` an existing journal is an error. Under
    torchrun each process takes every N-th chunk and process 0 writes the output once all
    are done. With ``on_error="skip"`` bad documents go to ``OUT.rejected.jsonl`` (for
    ``output="-"``, to ``on_reject`` only). ``on_chunk`` is called with each chunk's record
    once it is on disk.
    """
    from nerx.io import detect_format, write
    from nerx.io.base import STDIO, is_stream_target
    from nerx.journal import Journal

    _check_corpus_arguments(on_error, chunk_size, batch_size, workers)
    if isinstance(model, str | os.PathLike):
        from nerx.loading import load
        from nerx.runtime import resolve_device

        model = load(model, device=resolve_device("auto"))
    place = ranks()
    settings = _Settings(batch_size, threshold, lang, on_error, dict(read_options or {}), precision)
    stats = ExtractionStats()
    if str(output) == STDIO or is_stream_target(output):
        if resume or place.distributed:
            _refuse_stream_target(output, resume)
        items = read_corpus(
            source, from_format, on_error=on_error, read_options=settings.read_options
        )
        predicted = _stream(items, model, settings, chunk_size, workers, stats, on_reject)
        report = write(predicted, output, to_format or "jsonl", **(write_options or {}))
        return CorpusResult(
            stats=stats,
            documents=stats.documents,
            entities=stats.entities,
            relations=stats.relations,
            rejected=stats.rejected,
            merged=True,
            report=report,
        )
    if str(source) == STDIO and (place.distributed or resume):
        _refuse_stdin(resume)
    target_format = (to_format or detect_format(output, for_writing=True)).lower()
    key = _run_key(
        source, model, from_format, target_format, chunk_size, on_error, settings, write_options
    )
    journal = Journal(output)
    with distributed(model.device):
        journal.check(key, resume=resume)
        barrier()
        try:
            if place.is_main:
                journal.create(key)
            barrier()
            return _run_chunks(
                source, from_format, model, journal, settings, chunk_size, workers, stats,
                target_format, write_options, progress, on_reject, on_chunk,
            )  # fmt: skip
        except BaseException:
            if not resume and place.is_main:
                journal.remove()
            raise


def _run_key(
    source, model, from_format, target_format, chunk_size, on_error, settings, write_options
):
    """What a journal records of a run: the input, the model and every option that changes
    the output."""
    from nerx.io import detect_format
    from nerx.io.base import STDIO
    from nerx.journal import RunKey, input_fingerprint, model_fingerprint

    return RunKey(
        input=input_fingerprint(source)
        if str(source) != STDIO
        else {"size": None, "mtime_ns": None, "head_sha256": None},
        model=model_fingerprint(model),
        options={
            "from": (from_format or detect_format(source)).lower(),
            "to": target_format,
            "chunk-size": chunk_size,
            "on-error": on_error,
            **settings.journal_options(),
            "write-options": dict(write_options or {}),
        },
    )


def _check_corpus_arguments(on_error: str, chunk_size: int, batch_size: int, workers: int):
    _check_on_error(on_error)
    if chunk_size < 1 or batch_size < 1:
        raise ConfigError("chunk_size and batch_size must be at least 1")
    if workers < 0:
        raise ConfigError("workers must be 0 or more")


def _refuse_stdin(resume: bool) -> None:
    """A journalled run reads stdin once, on one process, and cannot know it again."""
    if resume:
        raise ConfigError(
            "--resume cannot tell whether stdin is the same input as before",
            hint="give the input as a file",
        )
    raise ConfigError(
        "under torchrun every process reads the whole input, and stdin can be read once",
        hint="give the input as a file",
    )


def _refuse_stream_target(output, resume: bool) -> None:
    """stdout, /dev/null or a FIFO is written as it comes, with no journal beside it: it
    can be neither resumed nor written by every process."""
    from nerx.io.base import STDIO

    shown = "stdout" if str(output) == STDIO else str(output)
    if resume:
        raise ConfigError(
            f"--resume needs an output file: {shown} cannot be continued",
            hint="write to a file with -o OUT",
        )
    raise ConfigError(
        f"under torchrun every process would write to {shown}",
        hint="give an output file with -o OUT; process 0 writes it",
    )


class _RunProgress:
    """How far a journalled run is (this process's chunks, and under torchrun the others'
    from the journal), reported to ``progress`` after every chunk."""

    def __init__(self, journal, finished: dict, source, progress) -> None:
        self.place = ranks()
        self.journal = journal
        self.finished = finished
        self.resumed_documents = sum(r.documents + r.rejected for r in finished.values())
        self.done_documents = self.resumed_documents
        self.started = time.perf_counter()
        self.position = _InputPosition(source)
        self.progress = progress
        self._everyone = dict(finished)
        self._read_at = time.monotonic()

    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def documents_done(self) -> int:
        # Under torchrun the journal tells what the other processes have done; it is read at
        # most every few seconds, so a huge journal costs nothing.
        place = self.place
        if not place.distributed:
            return self.done_documents
        if time.monotonic() - self._read_at >= 5.0:
            self._everyone = self.journal.finished(self._everyone)
            self._read_at = time.monotonic()
        others = sum(
            r.documents + r.rejected
            for k, r in self._everyone.items()
            if k not in self.finished and k % place.world_size != place.rank
        )
        return self.done_documents + others

    def report(self, waiting: int = 0) -> None:
        if self.progress is not None:
            self.progress(
                ExtractionProgress(
                    documents=self.documents_done(),
                    started_with=self.resumed_documents,
                    seconds=self.seconds(),
                    bytes_read=self.position(),
                    bytes_total=self.position.size,
                    waiting=waiting,
                )
            )

    def todo(self, index: int) -> bool:
        return index not in self.finished and index % self.place.world_size == self.place.rank


def _run_chunks(
    source, from_format, model, journal, settings, chunk_size, workers, stats,
    target_format, write_options, progress, on_reject, on_chunk,
) -> CorpusResult:  # fmt: skip
    from nerx.journal import ChunkRecord

    finished = journal.finished()
    run = _RunProgress(journal, finished, source, progress)
    last_chunk = -1
    items = read_corpus(
        source, from_format, on_error=settings.on_error, read_options=settings.read_options
    )
    chunks = _chunks(_watch_end(items, run.position), chunk_size, run.todo)
    prepare = _prepare_chunk(model, settings, threading.local())
    for chunk in _in_background(chunks, prepare, workers):
        last_chunk = chunk.index
        if not chunk.todo:  # another process's, or done by an earlier run
            continue
        local = ExtractionStats()
        predicted, rejected = _predict_chunk(model, chunk, settings, local)
        record = ChunkRecord(
            chunk=chunk.index,
            first_ordinal=chunk.items[0].ordinal,
            documents=len(predicted),
            rejected=len(rejected),
            words=local.words,
            entities=local.entities,
            relations=local.relations,
            windows=local.windows,
            split_sentences=local.split_sentences,
        )
        journal.commit(record, predicted, [r.to_dict() for r in rejected])
        stats.add(local)
        run.done_documents += len(chunk.items)
        stats.seconds = run.seconds()
        for rejection in rejected:
            if on_reject is not None:
                on_reject(rejection)
        if on_chunk is not None:
            on_chunk(record)
        run.report()
    chunks_total = last_chunk + 1
    stats.seconds = run.seconds()
    result = CorpusResult(stats=stats, chunks=chunks_total, resumed_chunks=len(finished))
    if run.place.is_main:
        _merge_run(journal, result, target_format, write_options, run.report)
        stats.seconds = run.seconds()
    return result


def _merge_run(journal, result: CorpusResult, target_format, write_options, report) -> None:
    """Process 0, once every chunk is on disk: the output written whole from the parts, the
    totals from the records, the journal removed."""
    from nerx.journal import rejected_path

    records = _wait_for_chunks(journal, result.chunks, report)
    result.report = journal.merge(result.chunks, target_format, write_options=write_options)
    result.merged = True
    result.documents = sum(r.documents for r in records)
    result.entities = sum(r.entities for r in records)
    result.relations = sum(r.relations for r in records)
    result.rejected = sum(r.rejected for r in records)
    if result.rejected:
        result.rejected_path = str(rejected_path(journal.output))
    journal.remove()


def _wait_for_chunks(journal, chunks: int, report: Callable[[int], None]) -> list:
    """Process 0 waits, polling the journal, until every chunk has its record."""
    records: dict[int, Any] = {}
    while True:
        for k in range(chunks):
            if k not in records:
                record = journal.record(k)
                if record is not None:
                    records[k] = record
        missing = chunks - len(records)
        if not missing:
            return [records[k] for k in range(chunks)]
        report(missing)
        time.sleep(0.2)


class _InputPosition:
    """How far the reader is through the input file, read off its open file descriptor."""

    def __init__(self, source) -> None:
        from nerx.io.base import STDIO

        self.size: int | None = None
        self.path: str | None = None
        self.ended = False
        self._fd: int | None = None
        if str(source) != STDIO and os.path.isfile(source):
            self.path = os.path.realpath(source)
            self.size = os.path.getsize(source)

    def __call__(self) -> int | None:
        if self.path is None:
            return None
        if self.ended:
            return self.size
        with contextlib.suppress(OSError):
            if self._fd is None or os.readlink(f"/proc/self/fd/{self._fd}") != self.path:
                self._fd = self._find()
            if self._fd is not None:
                return os.lseek(self._fd, 0, os.SEEK_CUR)
        return None

    def _find(self) -> int | None:
        for name in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/self/fd/{name}") == self.path:
                    return int(name)
        return None


def _watch_end(items: Iterable[InputDocument], position: _InputPosition):
    yield from items
    position.ended = True


def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ConfigError(f"unknown on_error {on_error!r}", hint="use raise or skip")


__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "CorpusResult",
    "ExtractionProgress",
    "ExtractionStats",
    "Rejection",
    "extract",
    "extract_corpus",
    "predict_documents",
    "prepare_documents",
    "read_corpus",
    "run_prepared",
]
