"""One inference pipeline for every model.

Documents stream in; a bounded buffer of them is tokenised (spaCy blank pipeline and
sentencizer for raw text), cut into windows, sorted by length so batches are dense, run
through the model, and written back as character-offset entities and relations, in input
order. Nothing here asks which model it holds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from nerx.doc import Document, Entity, Relation, TextPreparer
from nerx.models.base import Example, Prediction, SpanModel
from nerx.runtime import autocast, move_batch


@dataclass
class ExtractionStats:
    """What an extraction run did; the CLI prints it as the closing summary."""

    documents: int = 0
    words: int = 0
    entities: int = 0
    relations: int = 0
    windows: int = 0
    split_sentences: int = 0
    seconds: float = 0.0
    #: Counters a model reports (e.g. candidate spans and spans kept by a filter).
    model: Counter[str] = field(default_factory=Counter)

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0


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
    stats = stats if stats is not None else ExtractionStats()
    device = model.device
    examples: list[Example] = [ex for i, doc in enumerate(docs) for ex in model.prepare(doc, i)]
    stats.windows += len(examples)
    stats.split_sentences += sum(1 for ex in examples if ex.window.piece == 1)
    # Length-sorted batches are dense; predictions go back to their documents below.
    order = sorted(range(len(examples)), key=lambda k: len(examples[k].input_ids))
    found: list[list[tuple[Example, Prediction]]] = [[] for _ in docs]
    was_training = model.training
    model.eval()
    with torch.inference_mode(), autocast(device, precision):
        for first in range(0, len(order), batch_size):
            chunk = [examples[k] for k in order[first : first + batch_size]]
            batch = move_batch(model.collate(chunk), device)
            output = model(batch)
            stats.model.update(output.stats)
            for example, prediction in zip(chunk, model.decode(output, batch), strict=True):
                found[example.doc_index].append((example, prediction))
    model.train(was_training)
    return [
        _assemble(doc, pieces, threshold, stats) for doc, pieces in zip(docs, found, strict=True)
    ]


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


def extract(
    docs: Iterable[Document],
    model: SpanModel,
    *,
    batch_size: int = 32,
    buffer_size: int | None = None,
    threshold: float = 0.0,
    lang: str = "en",
    stats: ExtractionStats | None = None,
    precision: str = "auto",
) -> Iterator[Document]:
    """Stream predictions for ``docs``, in input order, holding at most ``buffer_size``
    documents (default ``16 * batch_size``) in memory at a time."""
    stats = stats if stats is not None else ExtractionStats()
    buffer_size = buffer_size or max(16 * batch_size, 64)
    prepare = TextPreparer(lang)
    buffer: list[Document] = []
    started = time.perf_counter()

    def flush() -> list[Document]:
        prepare(buffer)
        done = predict_documents(
            model,
            buffer,
            batch_size=batch_size,
            threshold=threshold,
            stats=stats,
            precision=precision,
        )
        buffer.clear()
        stats.seconds = time.perf_counter() - started
        return done

    for doc in docs:
        buffer.append(doc)
        if len(buffer) >= buffer_size:
            yield from flush()
    if buffer:
        yield from flush()
    stats.seconds = time.perf_counter() - started
