"""Conversion between a nerx :class:`~nerx.doc.Document` and a spaCy ``Doc``.

A spaCy ``Doc`` holds the document like this::

    doc.ents                  the largest set of non-overlapping entities (what spaCy's NER uses)
    doc.spans["nerx"]         every entity, nested ones included; .attrs["scores"] aligned with it
    doc._.relations           [{"head": 0, "tail": 2, "label": "Work_For", "score": 0.9}, ...]

Relation ``head``/``tail`` index ``doc.spans["nerx"]``. The relations, the document id and its
meta live in ``doc.user_data`` as plain values, so they survive ``DocBin(store_user_data=True)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

from spacy.tokens import Doc
from spacy.vocab import Vocab

from nerx.doc import Document, Entity, Relation, maximal_non_overlapping
from nerx.errors import FormatError

SPANS_KEY = "nerx"
ID_KEY = "nerx_id"
META_KEY = "nerx_meta"
# Where spaCy's Underscore keeps ``doc._.relations``; reading it directly works whether or not
# the extension is registered in this process.
RELATIONS_KEY = ("._.", "relations", None, None)

__all__ = [
    "SPANS_KEY",
    "register_extensions",
    "to_spacy",
    "from_spacy",
    "plain_document",
    "annotate",
    "document_order",
]


def register_extensions() -> None:
    """Register ``Doc._.relations``; calling it again is harmless."""
    if not Doc.has_extension("relations"):
        Doc.set_extension("relations", default=None)


def document_order(entities: Sequence[Entity]) -> list[int]:
    """Entity indices sorted by position, ties kept in their given order."""
    return sorted(range(len(entities)), key=lambda i: (entities[i].start, entities[i].end))


# --------------------------------------------------------------------------- nerx -> spaCy
def to_spacy(document: Document, vocab: Vocab) -> Doc:
    """Build a spaCy ``Doc`` whose ``text`` equals ``document.text`` exactly.

    Tokens that an entity boundary cuts are split there; whitespace that is not a single space
    after a word becomes a whitespace token, as spaCy's own tokenizer does. A document that
    breaks the data model's invariants raises :class:`~nerx.errors.InvalidDocumentError`.
    """
    document.validate()
    # A copy derives the tokens, so converting never changes the caller's document.
    tokens = document.tokens or dataclasses.replace(document).ensure_tokens().tokens
    layout = _Layout(document.text, tokens, document.entities)
    doc = Doc(
        vocab,
        words=layout.words,
        spaces=layout.spaces,
        sent_starts=layout.sent_starts(document.sentences) if document.sentences else None,
    )
    annotate(doc, document)
    doc.user_data[ID_KEY] = document.id
    doc.user_data[META_KEY] = dict(document.meta)
    return doc


def annotate(doc: Doc, document: Document) -> None:
    """Set ``doc.ents``, ``doc.spans["nerx"]`` and ``doc._.relations`` from ``document``,
    whose entities must start and end on ``doc``'s token boundaries."""
    spans = []
    for i, e in enumerate(document.entities):
        span = doc.char_span(e.start, e.end, label=e.label)
        if span is None:
            raise FormatError(
                f"entity {i} ({e.start}-{e.end}) does not fall on token boundaries",
                where=f"document {document.id!r}",
            )
        spans.append(span)
    doc.ents = [spans[i] for i in maximal_non_overlapping(document.entities)]
    order = document_order(document.entities)
    position = {old: new for new, old in enumerate(order)}
    doc.spans[SPANS_KEY] = [spans[i] for i in order]
    doc.spans[SPANS_KEY].attrs["scores"] = [document.entities[i].score for i in order]
    register_extensions()
    doc._.relations = [_relation_dict(r, position) for r in document.relations]


def _relation_dict(relation: Relation, position: dict[int, int]) -> dict[str, Any]:
    item: dict[str, Any] = {
        "head": position[relation.head],
        "tail": position[relation.tail],
        "label": relation.label,
    }
    if relation.score is not None:
        item["score"] = relation.score
    return item


class _Layout:
    """The words and spaces of a spaCy ``Doc`` over ``text``, and where each offset falls.

    The text is cut at every token and entity boundary. A piece inside a token is a word; a
    piece between tokens is whitespace (or text no token covers) and becomes its own token,
    except a single leading space that follows a word, which is that word's trailing space,
    unless an entity starts on that space or ends right after it.
    """

    def __init__(self, text: str, tokens: Sequence[tuple[int, int]], entities: Sequence[Entity]):
        self.words: list[str] = []
        self.spaces: list[bool] = []
        self.first_piece: list[int] = []  # nerx token -> index of its first spaCy token
        starts = {e.start for e in entities}
        ends = {e.end for e in entities}
        cuts = sorted({0, len(text)} | {b for t in tokens for b in t} | starts | ends)
        k = 0
        after_word = False
        for a, b in pairwise(cuts):
            while k < len(tokens) and tokens[k][1] <= a:
                k += 1
            if k < len(tokens) and tokens[k][0] <= a:
                if a == tokens[k][0]:
                    self.first_piece.append(len(self.words))
                self._add(text, a, b)
                after_word = True
                continue
            if after_word and text[a] == " " and a not in starts and a + 1 not in ends:
                self.spaces[-1] = True
                a += 1
            if a < b:
                self._add(text, a, b)
            after_word = False

    def _add(self, text: str, start: int, end: int) -> None:
        self.words.append(text[start:end])
        self.spaces.append(False)

    def sent_starts(self, sentences: Sequence[tuple[int, int]]) -> list[bool]:
        flags = [False] * len(self.words)
        for first, _ in sentences:
            # Leading whitespace belongs to the first sentence, as in spaCy's own docs.
            flags[self.first_piece[first] if first else 0] = True
        if flags:
            flags[0] = True
        return flags


# --------------------------------------------------------------------------- spaCy -> nerx
def from_spacy(spacy_doc: Doc, default_id: str, *, where: str | None = None) -> Document:
    """Read a spaCy ``Doc`` back into a :class:`Document`.

    Entities come from ``doc.spans["nerx"]`` when present, else from ``doc.ents``. ``where``
    names the document in errors (default: its id).
    """
    data = spacy_doc.user_data
    doc_id = data.get(ID_KEY)
    doc_id = doc_id if isinstance(doc_id, str) and doc_id else default_id
    meta = _plain(data.get(META_KEY))
    tokens, ordinal = _tokens(spacy_doc)
    return Document(
        id=doc_id,
        text=spacy_doc.text,
        tokens=tokens,
        sentences=_sentences(spacy_doc, ordinal),
        entities=_entities(spacy_doc),
        relations=_relations(data.get(RELATIONS_KEY), where or f"document {doc_id!r}"),
        meta=meta if isinstance(meta, dict) else {},
    )


def plain_document(
    spacy_doc: Doc, doc_id: str, *, sent_starts: Sequence[bool] | None = None
) -> Document:
    """What a model reads from a spaCy ``Doc``: its text, word tokens and sentences, with no
    entities, relations or meta. The sentences are the Doc's own, or those that
    ``sent_starts`` (one flag per spaCy token, as ``Sentencizer.predict`` gives) marks."""
    tokens, before = _tokens(spacy_doc)
    if sent_starts is None:
        sentences = _sentences(spacy_doc, before)
    else:
        firsts = [i for i, first in enumerate(sent_starts) if first or i == 0]
        spans = ((before[s], before[e]) for s, e in pairwise([*firsts, len(spacy_doc)]))
        sentences = [(first, end) for first, end in spans if first < end]
    return Document(id=doc_id, text=spacy_doc.text, tokens=tokens, sentences=sentences)


def _tokens(spacy_doc: Doc) -> tuple[list[tuple[int, int]], list[int]]:
    """Character offsets of the non-space tokens, and for each spaCy token index ``i`` the
    number of non-space tokens before it (one extra entry for the end of the doc)."""
    tokens: list[tuple[int, int]] = []
    before: list[int] = []
    for token in spacy_doc:
        before.append(len(tokens))
        # token.is_space needs a language's lexical attributes, which a blank Vocab lacks.
        if not token.text.isspace():
            tokens.append((token.idx, token.idx + len(token.text)))
    before.append(len(tokens))
    return tokens, before


def _sentences(spacy_doc: Doc, before: list[int]) -> list[tuple[int, int]]:
    if not spacy_doc.has_annotation("SENT_START"):
        return []
    spans = ((before[s.start], before[s.end]) for s in spacy_doc.sents)
    return [(first, end) for first, end in spans if first < end]


def _entities(spacy_doc: Doc) -> list[Entity]:
    if SPANS_KEY not in spacy_doc.spans:
        return [Entity(s.start_char, s.end_char, s.label_) for s in spacy_doc.ents]
    group = spacy_doc.spans[SPANS_KEY]
    scores = group.attrs.get("scores")
    if not isinstance(scores, (list, tuple)) or len(scores) != len(group):
        scores = [None] * len(group)
    return [
        Entity(span.start_char, span.end_char, span.label_, _score(score))
        for span, score in zip(group, scores, strict=True)
    ]


def _relations(raw: Any, where: str) -> list[Relation]:
    relations = []
    for i, item in enumerate(raw or ()):
        try:
            relations.append(
                Relation(
                    int(item["head"]),
                    int(item["tail"]),
                    str(item["label"]),
                    _score(item.get("score")),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise FormatError(
                f"relation {i} in doc._.relations is {item!r}; expected a dict with integer "
                f"'head' and 'tail' (indices into doc.spans[{SPANS_KEY!r}]) and a string 'label'",
                where=where,
            ) from None
    return relations


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _plain(value: Any) -> Any:
    """Undo msgpack's tuples: DocBin loads user data with ``use_list=False``."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
