"""Round trips across formats: what two formats can both hold comes back exactly.

The expectations are built from the source documents and from what each format is able to
hold (CoNLL: words joined by single spaces, the outermost entities, no relations, no ids),
never from what a writer happened to produce.
"""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nerx.io
from nerx.doc import Document, Entity, Relation, tokenize
from nerx.io import Report

FORMATS = ("jsonl", "conll", "docbin", "brat")
TARGET_NAMES = {"jsonl": "{}.jsonl", "conll": "{}.conll", "docbin": "{}.spacy", "brat": "{}_brat"}
# Every character Python's str.splitlines breaks at: a BRAT .ann line cannot hold one.
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def target(folder: Path, stem: str, format: str) -> Path:
    return folder / TARGET_NAMES[format].format(stem)


def through(docs, formats: tuple[str, ...], folder: Path) -> tuple[list[Document], Report]:
    """Write ``docs`` to each format in turn, reading every one back; also the last report."""
    report = Report()
    for step, format in enumerate(formats):
        path = target(folder, f"step{step}", format)
        report = nerx.io.write(docs, path, format)
        docs = list(nerx.io.read(path, format))
    return docs, report


# ----------------------------------------------------------------------------- what a format holds
def entity_key(doc: Document, i: int) -> tuple:
    e = doc.entities[i]
    return e.start, e.end, e.label, e.score


def entity_bag(doc: Document) -> Counter:
    return Counter(entity_key(doc, i) for i in range(len(doc.entities)))


def relation_bag(doc: Document) -> Counter:
    """Relations by the entities they join, so that a change of entity order does not matter."""
    return Counter(
        (entity_key(doc, r.head), entity_key(doc, r.tail), r.label, r.score) for r in doc.relations
    )


def char_view(doc: Document, ordered: bool) -> tuple:
    """Everything BRAT, DocBin and JSONL all hold: id, exact text, entities and relations."""
    view = (doc.id, doc.text, entity_bag(doc), relation_bag(doc))
    if ordered:
        view += ([(e.start, e.end, e.label) for e in doc.entities], doc.relations)
    return view


def contains(outer: Entity, inner: Entity) -> bool:
    return outer.start <= inner.start and inner.end <= outer.end


def outermost(doc: Document) -> list[Entity]:
    return [
        e
        for e in doc.entities
        if not any(
            o is not e and contains(o, e) and (o.start, o.end) != (e.start, e.end)
            for o in doc.entities
        )
    ]


def conll_view_of_source(doc: Document, ordinal: int) -> tuple:
    """What CoNLL keeps of a character-offset document: its words, outermost entities, order."""
    words = tokenize(doc.text, {b for e in doc.entities for b in (e.start, e.end)})

    def surface(e: Entity) -> str:
        return " ".join(doc.text[s:t] for s, t in words if e.start <= s and t <= e.end)

    kept = sorted(outermost(doc), key=lambda e: e.start)
    return (
        str(ordinal),
        " ".join(doc.text[s:t] for s, t in words),
        [(surface(e), e.label) for e in kept],
    )


def conll_view_of_result(doc: Document) -> tuple:
    ents = sorted(doc.entities, key=lambda e: e.start)
    return doc.id, doc.text, [(doc.entity_text(e), e.label) for e in ents]


# ----------------------------------------------------------------------------- the news corpus
@pytest.fixture
def news(samples) -> list[Document]:
    return list(nerx.io.read(samples / "news.jsonl"))


def test_news_corpus_has_what_the_round_trips_need(news):
    """Nesting (so CoNLL loses something) and no crossing spans (so outermost is defined)."""
    nested = sum(len(d.entities) - len(outermost(d)) for d in news)
    assert nested == 2
    for d in news:
        for a, b in itertools.combinations(d.entities, 2):
            crossing = a.start < b.end and b.start < a.end
            assert not crossing or contains(a, b) or contains(b, a)
    assert sum(len(d.relations) for d in news) > 0


@pytest.mark.parametrize(("first", "second"), list(itertools.product(FORMATS, FORMATS)))
def test_round_trip_between_formats(news, tmp_path, first, second):
    back, report = through(news, (first, second), tmp_path)
    assert len(back) == len(news)
    if "conll" in (first, second):
        expected = [conll_view_of_source(d, i) for i, d in enumerate(news, start=1)]
        assert [conll_view_of_result(d) for d in back] == expected
        assert all(not d.relations for d in back)
    else:
        ordered = "docbin" not in (first, second)  # DocBin keeps entities in document order
        assert [char_view(d, ordered) for d in back] == [char_view(d, ordered) for d in news]
        assert not report.lost


def test_conll_in_the_middle_reports_exactly_what_it_drops(news, tmp_path):
    report = nerx.io.write(news, tmp_path / "news.conll")
    nested = sum(len(d.entities) - len(outermost(d)) for d in news)
    relations = sum(len(d.relations) for d in news)
    assert report.entities_written == sum(len(d.entities) for d in news) - nested
    assert report.lost["nested or overlapping entities (CoNLL keeps the outermost)"] == nested
    assert report.lost["relations (CoNLL holds none)"] == relations
    assert report.lost["document ids (CoNLL holds none)"] == len(news)


# ----------------------------------------------------------------------------- random documents
TEXT_PIECES = st.one_of(
    st.sampled_from(
        [
            "\ufeff",
            "\r\n",
            "\n",
            "\t",
            " ",
            "  ",
            "😀",
            "𝔘𝔫𝔦",
            "Zürich",
            "中文",
            "a",
            "Bob",
            ".",
            "-",
            "'",
        ]
    ),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=4),
)
LABELS = st.sampled_from(["PER", "ORG", "LOC", "Misc-1", "x"])
SCORES = st.one_of(st.none(), st.floats(0, 1, allow_nan=False))


def brat_can_hold(text: str, start: int, end: int) -> bool:
    """A BRAT T line keeps a span whose edges are not line breaks (inner ones are skipped)."""
    return text[start] not in LINE_BREAKS and text[end - 1] not in LINE_BREAKS


@st.composite
def documents(draw, doc_id: str, brat: bool = False) -> Document:
    text = "".join(draw(st.lists(TEXT_PIECES, max_size=12)))
    entities = []
    for _ in range(draw(st.integers(0, 6)) if text else 0):
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start + 1, min(len(text), start + 15)))
        if brat and not brat_can_hold(text, start, end):
            continue
        entities.append(Entity(start, end, draw(LABELS), draw(SCORES)))
    relations = []
    if entities:
        index = st.integers(0, len(entities) - 1)
        for _ in range(draw(st.integers(0, 4))):
            relations.append(Relation(draw(index), draw(index), draw(LABELS), draw(SCORES)))
    return Document(doc_id, text, entities=entities, relations=relations)


def corpora(brat: bool = False):
    return st.integers(1, 3).flatmap(
        lambda n: st.tuples(*(documents(f"d{i}", brat) for i in range(n))).map(list)
    )


def fresh(tmp_path: Path) -> Path:
    """A new folder per generated example: a BRAT target keeps files already in it."""
    return Path(tempfile.mkdtemp(dir=tmp_path))


PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@PROPERTY
@given(docs=corpora())
def test_jsonl_keeps_everything(tmp_path, docs):
    path = fresh(tmp_path) / "random.jsonl"
    report = nerx.io.write(docs, path)
    assert list(nerx.io.read(path)) == docs
    assert not report.lost


@PROPERTY
@given(docs=corpora())
def test_docbin_keeps_everything(tmp_path, docs):
    path = fresh(tmp_path) / "random.spacy"
    report = nerx.io.write(docs, path)
    back = list(nerx.io.read(path))
    assert [char_view(d, ordered=False) for d in back] == [
        char_view(d, ordered=False) for d in docs
    ]
    assert not report.lost


@PROPERTY
@given(docs=corpora(brat=True))
def test_brat_keeps_entities_and_relations_and_reports_scores(tmp_path, docs):
    out = fresh(tmp_path) / "random_brat"
    report = nerx.io.write(docs, out, "brat")
    back = list(nerx.io.read(out, "brat"))

    def unscored(doc: Document) -> tuple:
        return (
            doc.id,
            doc.text,
            [(e.start, e.end, e.label) for e in doc.entities],
            [(r.head, r.tail, r.label) for r in doc.relations],
        )

    assert [unscored(d) for d in back] == [unscored(d) for d in docs]
    entity_scores = sum(e.score is not None for d in docs for e in d.entities)
    relation_scores = sum(r.score is not None for d in docs for r in d.relations)
    assert report.lost == Counter(
        {
            k: v
            for k, v in {"entity scores": entity_scores, "relation scores": relation_scores}.items()
            if v
        }
    )
    assert all(e.score is None for d in back for e in d.entities)


def test_brat_keeps_a_leading_byte_order_mark(tmp_path):
    # BRAT decodes a .txt as plain UTF-8, so a leading U+FEFF is a character its offsets count.
    docs = [Document("bom", "\ufeffAda met Bob", entities=[Entity(1, 4, "PER"), Entity(0, 4, "X")])]
    nerx.io.write(docs, tmp_path / "out", "brat")
    [back] = nerx.io.read(tmp_path / "out")
    assert (back.text, back.entities) == (docs[0].text, docs[0].entities)
