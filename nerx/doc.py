"""The one in-memory document every reader produces and every writer consumes.

Character offsets are the truth: entities are ``[start, end)`` character spans of ``text``.
Word tokens are a view over the text; formats without tokens get them derived by
:func:`tokenize`. Entities may nest or overlap. Relations point at entities by index.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from nerx.errors import ConfigError, InvalidDocumentError

# Words are runs of letters/digits (with inner apostrophes/hyphens kept), or one other
# non-space character. Good enough to give every format a word view; models that need
# linguistic tokenisation get spaCy's in the extraction pipeline.
_WORD_RE = re.compile(r"\w+(?:['’\-]\w+)*|[^\w\s]", re.UNICODE)


@dataclass(slots=True)
class Entity:
    start: int
    end: int
    label: str
    score: float | None = None


@dataclass(slots=True)
class Relation:
    head: int
    tail: int
    label: str
    score: float | None = None


@dataclass(slots=True)
class Document:
    id: str
    text: str
    tokens: list[tuple[int, int]] = field(default_factory=list)
    sentences: list[tuple[int, int]] = field(default_factory=list)
    entities: list[Entity] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_words(
        cls,
        id: str,
        words: Sequence[str],
        *,
        sentence_lengths: Sequence[int] | None = None,
        token_entities: Iterable[tuple[int, int, str]] = (),
        token_relations: Iterable[tuple[int, int, str]] = (),
        meta: dict[str, Any] | None = None,
    ) -> Document:
        """Build a document from word tokens, joining them with single spaces.

        ``token_entities`` are ``(first_token, end_token, label)`` with ``end_token``
        exclusive; ``token_relations`` index into them.
        """
        tokens: list[tuple[int, int]] = []
        pos = 0
        for word in words:
            tokens.append((pos, pos + len(word)))
            pos += len(word) + 1
        text = " ".join(words)
        sentences: list[tuple[int, int]] = []
        if sentence_lengths:
            first = 0
            for n in sentence_lengths:
                sentences.append((first, first + n))
                first += n
        entities = [Entity(tokens[s][0], tokens[e - 1][1], label) for s, e, label in token_entities]
        relations = [Relation(h, t, label) for h, t, label in token_relations]
        return cls(id, text, tokens, sentences, entities, relations, meta or {})

    # ----------------------------------------------------------------- token views
    def ensure_tokens(self) -> Document:
        """Derive word tokens (split at entity boundaries too) when the document has none."""
        if not self.tokens:
            cuts = {b for e in self.entities for b in (e.start, e.end)}
            self.tokens = tokenize(self.text, cuts)
        return self

    def token_span(self, entity: Entity) -> tuple[int, int] | None:
        """The ``[first, end)`` token range an entity covers exactly, or None if it cuts a token."""
        return self.entity_token_spans([entity])[0]

    def entity_token_spans(
        self, entities: Sequence[Entity] | None = None
    ) -> list[tuple[int, int] | None]:
        """Token ranges of many entities at once (one index build for the whole document)."""
        first_of = {s: i for i, (s, _) in enumerate(self.tokens)}
        last_of = {e: i for i, (_, e) in enumerate(self.tokens)}
        spans: list[tuple[int, int] | None] = []
        for ent in self.entities if entities is None else entities:
            first, last = first_of.get(ent.start), last_of.get(ent.end)
            ok = first is not None and last is not None and first <= last
            spans.append((first, last + 1) if ok else None)
        return spans

    def sentence_spans(self) -> list[tuple[int, int]]:
        """Sentences as token ranges; the whole document is one sentence if none are set."""
        if self.sentences:
            return list(self.sentences)
        return [(0, len(self.tokens))] if self.tokens else []

    # ----------------------------------------------------------------- invariants
    def validate(self, where: str | None = None) -> Document:
        """Check the data model's invariants; raise :class:`InvalidDocumentError` naming the doc."""
        loc = where or f"document {self.id!r}"
        n = len(self.text)
        prev_end = 0
        for i, (s, e) in enumerate(self.tokens):
            if not (0 <= s < e <= n) or s < prev_end:
                raise InvalidDocumentError(
                    f"token {i} has offsets [{s}, {e}) that are empty, overlap the previous "
                    f"token or lie outside the text (length {n})",
                    where=loc,
                )
            prev_end = e
        for i, (s, e) in enumerate(self.sentences):
            if not (0 <= s < e <= len(self.tokens)):
                raise InvalidDocumentError(
                    f"sentence {i} covers tokens [{s}, {e}) but the document has "
                    f"{len(self.tokens)} tokens",
                    where=loc,
                )
        for i, ent in enumerate(self.entities):
            if not (0 <= ent.start < ent.end <= n):
                raise InvalidDocumentError(
                    f"entity {i} ({ent.label}) has offsets [{ent.start}, {ent.end}), expected "
                    f"0 <= start < end <= {n} (the text length)",
                    where=loc,
                )
            if not ent.label:
                raise InvalidDocumentError(f"entity {i} has an empty label", where=loc)
        k = len(self.entities)
        for i, rel in enumerate(self.relations):
            if not (0 <= rel.head < k and 0 <= rel.tail < k):
                raise InvalidDocumentError(
                    f"relation {i} ({rel.label}) points at entities {rel.head} -> {rel.tail}, "
                    f"but the document has {k} entities (indices 0..{k - 1})",
                    where=loc,
                )
        return self

    def entity_text(self, entity: Entity) -> str:
        return self.text[entity.start : entity.end]


def tokenize(text: str, cuts: Iterable[int] = ()) -> list[tuple[int, int]]:
    """Split text into word tokens, also cutting at every offset in ``cuts``.

    Cutting at entity boundaries guarantees that every entity covers whole tokens, so
    token-based formats (CoNLL) can hold every character-level annotation.
    """
    cut_points = sorted(set(cuts))
    tokens: list[tuple[int, int]] = []
    for m in _WORD_RE.finditer(text):
        s, e = m.start(), m.end()
        lo = bisect.bisect_right(cut_points, s)
        hi = bisect.bisect_left(cut_points, e)
        for c in cut_points[lo:hi]:
            tokens.append((s, c))
            s = c
        tokens.append((s, e))
    return tokens


def first_disjoint(bounds: Sequence[tuple[int, int]], order: Iterable[int]) -> list[int]:
    """Walk ``order`` (indices into ``bounds``, ``(start, end)`` with ``end`` exclusive) and
    keep each index that overlaps none kept before it; the kept indices sorted by position.

    The one greedy non-overlap selector: callers differ only in the order they prefer.
    """
    taken: list[int] = []
    for i in order:
        s, e = bounds[i]
        if all(e <= bounds[t][0] or s >= bounds[t][1] for t in taken):
            taken.append(i)
    return sorted(taken, key=lambda i: bounds[i])


def maximal_non_overlapping(entities: Sequence[Entity]) -> list[int]:
    """Indices of a maximal set of pairwise disjoint entities, preferring longer, outer ones.

    Used where a target holds no overlaps (CoNLL tags, spaCy ``doc.ents``). Longest first,
    then leftmost, then highest score; the result is sorted by position.
    """
    bounds = [(ent.start, ent.end) for ent in entities]
    order = sorted(
        range(len(entities)),
        key=lambda i: (
            -(entities[i].end - entities[i].start),
            entities[i].start,
            -(entities[i].score or 0.0),
        ),
    )
    return first_disjoint(bounds, order)


#: Raw text longer than this is tokenised in pieces cut at line breaks (else at spaces), so
#: memory grows linearly with the text and spaCy's ``max_length`` (1,000,000) never applies.
PIECE_CHARS = 100_000


def text_pieces(text: str, size: int = PIECE_CHARS) -> list[tuple[int, int]]:
    """``[start, end)`` pieces of at most ``size`` characters covering ``text``, each cut
    after the last line break in its second half, else after the last whitespace, else at
    ``size`` (a run of ``size`` characters without a space)."""
    pieces = []
    start, n = 0, len(text)
    while n - start > size:
        limit = start + size
        cut = text.rfind("\n", start + size // 2, limit)
        if cut < 0:
            cut = next(
                (i for i in range(limit - 1, start + size // 2 - 1, -1) if text[i].isspace()),
                limit - 1,
            )
        pieces.append((start, cut + 1))
        start = cut + 1
    pieces.append((start, n))
    return pieces


class TextPreparer:
    """Gives raw-text documents word tokens and sentences with a spaCy blank pipeline.

    Text of any length is accepted: a long text is tokenised in pieces (:func:`text_pieces`),
    so a piece boundary, on a line break where there is one, also ends a sentence.
    """

    def __init__(self, lang: str = "en", piece_chars: int = PIECE_CHARS) -> None:
        self.lang = lang
        self.piece_chars = piece_chars
        self._nlp = None

    def __call__(self, docs: Sequence[Document]) -> None:
        raw = [doc for doc in docs if not doc.tokens]
        if not raw:
            return
        nlp = self._pipeline()
        jobs = [
            (doc, start, doc.text[start:end])
            for doc in raw
            for start, end in text_pieces(doc.text, self.piece_chars)
        ]
        for doc in raw:
            doc.tokens, doc.sentences = [], []
        parsed_pieces = nlp.pipe(text for _, _, text in jobs)
        for (doc, offset, _), parsed in zip(jobs, parsed_pieces, strict=True):
            words = [t for t in parsed if not t.is_space]
            first = len(doc.tokens)
            doc.tokens.extend((offset + t.idx, offset + t.idx + len(t.text)) for t in words)
            index = {t.i: first + k for k, t in enumerate(words)}
            for sent in parsed.sents:
                inside = [index[t.i] for t in sent if t.i in index]
                if inside:
                    doc.sentences.append((inside[0], inside[-1] + 1))

    def _pipeline(self):
        if self._nlp is None:
            import spacy

            try:
                self._nlp = spacy.blank(self.lang)
            except ImportError as exc:
                raise ConfigError(
                    f"spaCy cannot make a blank {self.lang!r} pipeline: {exc}",
                    hint="use an ISO code such as en, de, fr",
                ) from None
            self._nlp.add_pipe("sentencizer")
        return self._nlp
