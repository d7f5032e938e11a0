"""spaCy DocBin: round trips through nerx, and what spaCy itself sees in the files."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
import zlib

import pytest
import spacy
from spacy.tokens import Doc, DocBin

import nerx.io
from nerx.doc import Document, Entity, Relation
from nerx.errors import FormatError
from nerx.io import docbin
from nerx.spacy_ext import from_spacy, register_extensions, to_spacy


@pytest.fixture
def nlp():
    return spacy.blank("en")


@pytest.fixture
def news(samples) -> list[Document]:
    docs = list(nerx.io.read(samples / "news.jsonl"))
    # Scores and meta are not in the sample; give them to some documents so both travel.
    docs[0].entities[1].score = 0.75
    docs[0].entities[2].score = 0.5
    docs[0].relations[0].score = 0.25
    docs[1].meta = {"source": "wire", "tags": ["a", ["b", 1]], "page": 3}
    return docs


def _with_tokens(doc: Document) -> Document:
    return dataclasses.replace(doc).ensure_tokens()


def _overlap(a, b) -> bool:
    return a.start_char < b.end_char and b.start_char < a.end_char


def _char_spans(spans) -> list[tuple[int, int, str]]:
    return [(s.start_char, s.end_char, s.label_) for s in spans]


# --------------------------------------------------------------------------- round trips
def test_news_round_trip_keeps_everything(news, tmp_path):
    target = tmp_path / "news.spacy"
    report = nerx.io.write(news, target)
    back = list(nerx.io.read(target))

    assert back == [_with_tokens(d) for d in news]
    assert all(not d.tokens for d in news), "writing must not change the caller's documents"
    assert report.documents_written == 5
    assert report.entities_written == sum(len(d.entities) for d in news)
    assert report.relations_written == sum(len(d.relations) for d in news)
    assert not report.lost
    # "Oslo" inside "University of Oslo", "Rhone" inside "Le Matin Rhone"
    assert report.notes == {docbin.NESTED_NOTE: 2}


def test_spacy_sees_ents_spans_and_plain_relations(news, tmp_path, nlp):
    target = tmp_path / "news.spacy"
    nerx.io.write(news, target)
    register_extensions()
    spacy_docs = list(DocBin().from_disk(target).get_docs(nlp.vocab))

    assert len(spacy_docs) == len(news)
    for doc, original in zip(spacy_docs, news, strict=True):
        assert doc.text == original.text
        ents = list(doc.ents)
        assert not any(_overlap(a, b) for i, a in enumerate(ents) for b in ents[i + 1 :])
        group = doc.spans["nerx"]
        for span in group:
            assert span in ents or any(_overlap(span, e) for e in ents), "doc.ents is not maximal"
        assert _char_spans(group) == [(e.start, e.end, e.label) for e in original.entities]
        assert list(group.attrs["scores"]) == [e.score for e in original.entities]
        for rel, want in zip(doc._.relations, original.relations, strict=True):
            assert type(rel["head"]) is int and type(rel["tail"]) is int
            assert type(rel["label"]) is str
            assert group[rel["head"]].text == original.entity_text(original.entities[want.head])
            assert group[rel["tail"]].text == original.entity_text(original.entities[want.tail])
            assert rel.get("score") == want.score
    assert [e.text for e in spacy_docs[0].ents] == [
        "Maria Lindqvist",
        "University of Oslo",
        "Nordic Science Prize",
        "Bergen",
    ]


def test_docbin_written_by_spacy_reads_into_nerx(nlp, tmp_path):
    texts = ["Angela Merkel visited  Paris.\nShe met Macron.", " Tokyo is big."]
    wanted = [[("Angela Merkel", "PER"), ("Paris", "LOC"), ("Macron", "PER")], [("Tokyo", "LOC")]]
    docs = []
    for text, names in zip(texts, wanted, strict=True):
        doc = nlp(text)
        doc.ents = [doc.char_span(text.index(n), text.index(n) + len(n), lb) for n, lb in names]
        docs.append(doc)
    DocBin(docs=docs).to_disk(tmp_path / "spacy.spacy")

    back = list(nerx.io.read(tmp_path / "spacy.spacy"))

    assert [d.id for d in back] == ["1", "2"]
    assert [d.text for d in back] == texts
    for doc, names in zip(back, wanted, strict=True):
        assert [(doc.entity_text(e), e.label) for e in doc.entities] == names
        assert all(e.score is None for e in doc.entities)
        assert all(not doc.text[s:e].isspace() for s, e in doc.tokens)
        assert doc.relations == [] and doc.sentences == [] and doc.meta == {}
    assert [back[1].text[s:e] for s, e in back[1].tokens] == ["Tokyo", "is", "big", "."]


def test_whitespace_and_non_bmp_text_stay_exact(tmp_path):
    text = " Anna  Lee\tmet 😀 Bob \n\nin  Oslo.\n"
    names = [("Anna  Lee", "PER"), ("😀", "EMO"), ("Bob", "PER"), ("Oslo", "LOC")]
    entities = [Entity(text.index(n), text.index(n) + len(n), lb) for n, lb in names]
    doc = _with_tokens(Document("ws", text, entities=entities))
    doc.sentences = [(0, 5), (5, len(doc.tokens))]

    spacy_doc = to_spacy(doc, spacy.vocab.Vocab())
    assert spacy_doc.text == text
    spans = list(spacy_doc.spans["nerx"])
    assert [(s.start_char, s.end_char, s.text) for s in spans] == [
        (e.start, e.end, text[e.start : e.end]) for e in entities
    ]
    assert [s.text for s in spacy_doc.sents] == [" Anna  Lee\tmet 😀 Bob \n\n", "in  Oslo.\n"]

    nerx.io.write([doc], tmp_path / "ws.docbin")
    assert list(nerx.io.read(tmp_path / "ws.docbin")) == [doc]


def test_entity_on_whitespace_gets_its_own_tokens():
    text = "say  hi"
    # The entity takes the first space after "say", so that space cannot be its trailing space.
    doc = Document("w", text, entities=[Entity(0, 4, "X"), Entity(4, 7, "Y")])
    spacy_doc = to_spacy(doc, spacy.vocab.Vocab())
    assert spacy_doc.text == text
    assert [s.text for s in spacy_doc.spans["nerx"]] == ["say ", " hi"]


def test_entity_boundary_inside_a_given_token(tmp_path):
    text = "a NewYork-based firm"
    tokens = [(0, 1), (2, 15), (16, 20)]
    doc = Document("t", text, tokens=tokens, entities=[Entity(2, 9, "LOC")], sentences=[(0, 3)])

    spacy_doc = to_spacy(doc, spacy.vocab.Vocab())
    assert spacy_doc.text == text
    assert [t.text for t in spacy_doc] == ["a", "NewYork", "-based", "firm"]
    assert [e.text for e in spacy_doc.ents] == ["NewYork"]

    report = nerx.io.write([doc], tmp_path / "t.spacy")
    assert report.notes == {docbin.SPLIT_NOTE: 1}
    (back,) = nerx.io.read(tmp_path / "t.spacy")
    assert back.tokens == [(0, 1), (2, 9), (9, 15), (16, 20)]
    assert back.sentences == [(0, 4)]
    assert back.entities == doc.entities


def test_entities_out_of_order_are_sorted_and_relations_follow(tmp_path):
    text = "Ann works for Acme."
    doc = Document(
        "o",
        text,
        entities=[Entity(14, 18, "ORG", 0.9), Entity(0, 3, "PER")],
        relations=[Relation(1, 0, "Work_For", 0.8)],
    )
    report = nerx.io.write([doc], tmp_path / "o.spacy")
    (back,) = nerx.io.read(tmp_path / "o.spacy")

    assert back.entities == [Entity(0, 3, "PER"), Entity(14, 18, "ORG", 0.9)]
    assert back.relations == [Relation(0, 1, "Work_For", 0.8)]
    assert report.notes == {docbin.ORDER_NOTE: 1}


def test_stdout_and_stdin(news, capsysbinary, monkeypatch):
    docbin.write(news, "-")
    data = capsysbinary.readouterr().out
    assert len(DocBin().from_bytes(data)) == len(news)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert list(docbin.read("-")) == [_with_tokens(d) for d in news]


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": "1", "text": "not a DocBin"}\n',
        zlib.compress(b"\x93\x01\x02\x03"),  # valid zlib around a msgpack list, not a dict
    ],
)
def test_not_a_docbin_is_a_format_error(tmp_path, payload):
    path = tmp_path / "fake.spacy"
    path.write_bytes(payload)
    with pytest.raises(FormatError, match="expected a spaCy DocBin") as info:
        list(nerx.io.read(path))
    assert info.value.where == str(path)


def test_malformed_relation_names_the_document(tmp_path):
    doc = Doc(spacy.vocab.Vocab(), words=["a", "b"])
    doc.user_data[("._.", "relations", None, None)] = [{"head": 0, "label": "R"}]
    DocBin(docs=[doc], store_user_data=True).to_disk(tmp_path / "r.spacy")
    with pytest.raises(FormatError, match="'tail'") as info:
        list(nerx.io.read(tmp_path / "r.spacy"))
    assert info.value.where == f"{tmp_path / 'r.spacy'}: document 1"


# --------------------------------------------------------------------------- helpers
def test_register_extensions_twice_is_harmless():
    register_extensions()
    register_extensions()
    assert Doc.has_extension("relations")


def test_from_spacy_reads_relations_from_user_data():
    doc = Doc(spacy.vocab.Vocab(), words=["Ann", "met", "Bo"])
    doc.ents = [doc.char_span(0, 3, "PER"), doc.char_span(8, 10, "PER")]
    doc.user_data[("._.", "relations", None, None)] = ({"head": 0, "tail": 1, "label": "Knows"},)
    back = from_spacy(doc, "7")
    assert back.id == "7"
    assert back.relations == [Relation(0, 1, "Knows")]
    assert [back.entity_text(e) for e in back.entities] == ["Ann", "Bo"]


# --------------------------------------------------------------------------- public corpus
def test_spacy_converted_conll2003_testa(shared_data, tmp_path):
    # spaCy's own converter, so the count below checks both its IOB1 handling and our reader.
    source = shared_data / "conll2003" / "eng.testa"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "convert",
            str(source),
            str(tmp_path),
            "--converter",
            "ner",
            "-n",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    report = nerx.io.Report()
    docs = list(nerx.io.read(tmp_path / "eng.spacy", report=report))
    assert report.documents_read == 216
    assert report.entities_read == 5942
    assert sum(len(d.sentences) for d in docs) == 3250
    assert sum(len(d.tokens) for d in docs) == 51362
