"""The data model: invariants, word views, the disjoint-entity choice, and format detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nerx.io
from nerx.doc import Document, Entity, Relation, maximal_non_overlapping, tokenize
from nerx.errors import InvalidDocumentError, UnknownFormatError

TEXT = "Ada Lovelace met Babbage."  # 25 characters


def doc(**fields) -> Document:
    return Document(fields.pop("id", "doc-7"), fields.pop("text", TEXT), **fields)


# ----------------------------------------------------------------------------- invariants
def test_a_valid_document_passes_and_is_returned():
    d = doc(
        tokens=[(0, 3), (4, 12), (13, 16), (17, 24), (24, 25)],
        sentences=[(0, 5)],
        entities=[Entity(0, 12, "PER"), Entity(17, 24, "PER"), Entity(0, 25, "S")],
        relations=[Relation(0, 1, "Met"), Relation(1, 1, "Self")],
    )
    assert d.validate() is d


@pytest.mark.parametrize(
    ("fields", "what"),
    [
        ({"entities": [Entity(20, 26, "PER")]}, "entity 0"),  # past the end of the text
        ({"entities": [Entity(-1, 3, "PER")]}, "entity 0"),
        ({"entities": [Entity(0, 3, "PER"), Entity(4, 4, "PER")]}, "entity 1"),  # empty
        ({"entities": [Entity(12, 4, "PER")]}, "entity 0"),  # start after end
        ({"entities": [Entity(0, 3, "")]}, "empty label"),
        ({"entities": [Entity(0, 3, "PER")], "relations": [Relation(0, 1, "R")]}, "relation 0"),
        (
            {
                "entities": [Entity(0, 3, "PER")],
                "relations": [Relation(0, 0, "R"), Relation(-1, 0, "R")],
            },
            "relation 1",
        ),
        ({"relations": [Relation(0, 0, "R")]}, "relation 0"),  # no entities at all
        ({"tokens": [(0, 5), (4, 12)]}, "token 1"),  # overlaps the previous token
        ({"tokens": [(4, 12), (0, 3)]}, "token 1"),  # out of order
        ({"tokens": [(3, 3)]}, "token 0"),  # empty
        ({"tokens": [(20, 30)]}, "token 0"),  # outside the text
        ({"tokens": [(0, 3)], "sentences": [(0, 2)]}, "sentence 0"),
    ],
)
def test_broken_invariants_raise_naming_the_document(fields, what):
    with pytest.raises(InvalidDocumentError) as info:
        doc(**fields).validate()
    message = str(info.value)
    assert "'doc-7'" in message
    assert what in message


def test_validate_uses_the_given_location():
    with pytest.raises(InvalidDocumentError, match=r"^train\.jsonl:3: entity 0"):
        doc(entities=[Entity(0, 99, "PER")]).validate(where="train.jsonl:3")


def test_reading_an_invalid_document_names_file_and_document(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"id": "ok", "text": "abc"}\n'
        '{"id": "d2", "text": "abc", "entities": [{"start": 1, "end": 9, "label": "X"}]}\n',
        encoding="utf-8",
    )
    docs = nerx.io.read(path)
    assert next(docs).id == "ok"
    with pytest.raises(InvalidDocumentError, match=r"bad\.jsonl.*'d2'.*entity 0"):
        next(docs)


# ----------------------------------------------------------------------------- word views
def test_from_words_joins_with_single_spaces_and_maps_token_spans():
    d = Document.from_words(
        "w",
        ["Ada", "Lovelace", "met", "Charles", "Babbage", "."],
        sentence_lengths=[3, 3],
        token_entities=[(0, 2, "PER"), (3, 5, "PER"), (4, 5, "SURNAME")],
        token_relations=[(0, 1, "Met")],
        meta={"source": "test"},
    )
    assert d.text == "Ada Lovelace met Charles Babbage ."
    assert d.tokens == [(0, 3), (4, 12), (13, 16), (17, 24), (25, 32), (33, 34)]
    assert d.sentences == [(0, 3), (3, 6)]
    assert d.entities == [Entity(0, 12, "PER"), Entity(17, 32, "PER"), Entity(25, 32, "SURNAME")]
    assert [d.entity_text(e) for e in d.entities] == ["Ada Lovelace", "Charles Babbage", "Babbage"]
    assert d.relations == [Relation(0, 1, "Met")]
    assert d.meta == {"source": "test"}
    assert d.entity_token_spans() == [(0, 2), (3, 5), (4, 5)]
    assert d.validate() is d


def test_from_words_keeps_non_bmp_words_one_character_each():
    d = Document.from_words("e", ["I", "😀", "Zürich"], token_entities=[(1, 3, "X")])
    assert d.text == "I 😀 Zürich"
    assert d.tokens == [(0, 1), (2, 3), (4, 10)]
    assert d.entity_text(d.entities[0]) == "😀 Zürich"


def test_token_span_is_none_when_an_entity_cuts_a_token():
    d = Document.from_words("c", ["New", "York-based"])
    assert d.token_span(Entity(4, 8, "LOC")) is None
    assert d.token_span(Entity(0, 14, "LOC")) == (0, 2)


def test_sentence_spans_default_to_one_sentence():
    assert doc(tokens=[(0, 3), (4, 12)]).sentence_spans() == [(0, 2)]
    assert doc().sentence_spans() == []


def test_tokenize_words_punctuation_and_inner_hyphens():
    text = "Don't stop: New York-based firm\t(1999)\r\n😀ok"
    words = [text[s:e] for s, e in tokenize(text)]
    assert words == [
        "Don't",
        "stop",
        ":",
        "New",
        "York-based",
        "firm",
        "(",
        "1999",
        ")",
        "😀",
        "ok",
    ]


def test_tokenize_cuts_inside_words_only():
    text = "New York-based firm"
    tokens = tokenize(text, cuts=[8, 4, 8, 0, 19, 3, 100])
    # 8 splits "York-based"; 0, 3, 4 and 19 are already token edges; 100 lies outside.
    assert tokens == [(0, 3), (4, 8), (8, 14), (15, 19)]
    assert tokenize(text, cuts=[5, 6]) == [(0, 3), (4, 5), (5, 6), (6, 14), (15, 19)]


def test_ensure_tokens_cuts_at_entity_edges_and_keeps_given_tokens():
    d = doc(entities=[Entity(4, 8, "X")])
    d.ensure_tokens()
    assert d.tokens == [(0, 3), (4, 8), (8, 12), (13, 16), (17, 24), (24, 25)]
    given_tokens = [(0, 25)]
    assert doc(tokens=given_tokens).ensure_tokens().tokens == given_tokens


# ----------------------------------------------------------------------------- disjoint entities
def spans(entities, indices):
    return [(entities[i].start, entities[i].end) for i in indices]


def test_maximal_non_overlapping_keeps_the_outer_of_nested():
    ents = [Entity(34, 52, "ORG"), Entity(48, 52, "LOC"), Entity(0, 15, "PER")]
    assert maximal_non_overlapping(ents) == [2, 0]  # by position, the inner LOC left out


def test_maximal_non_overlapping_crossing_prefers_longer_then_leftmost():
    longer = [Entity(0, 4, "A"), Entity(2, 9, "B")]
    assert maximal_non_overlapping(longer) == [1]
    same_length = [Entity(3, 8, "B"), Entity(0, 5, "A")]
    assert maximal_non_overlapping(same_length) == [1]


def test_maximal_non_overlapping_same_span_prefers_higher_score():
    ents = [Entity(0, 5, "A", 0.2), Entity(0, 5, "B", 0.9), Entity(0, 5, "C")]
    assert maximal_non_overlapping(ents) == [1]


def test_maximal_non_overlapping_fills_gaps_after_a_long_span():
    # The longest span wins; the two short ones that touch neither it nor each other stay.
    ents = [Entity(0, 3, "A"), Entity(2, 10, "B"), Entity(10, 12, "C"), Entity(12, 13, "D")]
    assert maximal_non_overlapping(ents) == [1, 2, 3]
    assert maximal_non_overlapping([]) == []


entity_lists = st.lists(
    st.tuples(st.integers(0, 30), st.integers(1, 12), st.sampled_from("ABC")).map(
        lambda t: Entity(t[0], t[0] + t[1], t[2])
    ),
    max_size=12,
)


def overlap(a: Entity, b: Entity) -> bool:
    return a.start < b.end and b.start < a.end


@settings(max_examples=60, deadline=None)
@given(entity_lists)
def test_maximal_non_overlapping_is_disjoint_maximal_and_sorted(ents):
    chosen = maximal_non_overlapping(ents)
    assert len(set(chosen)) == len(chosen)
    for k, i in enumerate(chosen):
        assert not any(overlap(ents[i], ents[j]) for j in chosen[k + 1 :])
    for i in set(range(len(ents))) - set(chosen):
        assert any(overlap(ents[i], ents[j]) for j in chosen)  # nothing more fits
    assert spans(ents, chosen) == sorted(spans(ents, chosen))


@st.composite
def nested_families(draw):
    """Disjoint top-level spans, each with spans strictly inside it (which may cross)."""
    tops, ents, pos = [], [], 0
    for _ in range(draw(st.integers(1, 4))):
        pos += draw(st.integers(0, 3))
        length = draw(st.integers(2, 8))
        tops.append(Entity(pos, pos + length, "OUT"))
        for _ in range(draw(st.integers(0, 3))):
            start = draw(st.integers(pos, pos + length - 1))
            end = draw(st.integers(start + 1, pos + length))
            if (start, end) != (pos, pos + length):
                ents.append(Entity(start, end, "IN"))
        pos += length
    ents.extend(tops)
    order = draw(st.permutations(range(len(ents))))
    return [ents[i] for i in order]


@settings(max_examples=60, deadline=None)
@given(nested_families())
def test_maximal_non_overlapping_picks_exactly_the_outermost_of_nested_spans(ents):
    chosen = maximal_non_overlapping(ents)
    assert [ents[i].label for i in chosen] == ["OUT"] * len(chosen)
    assert len(chosen) == sum(e.label == "OUT" for e in ents)


# ----------------------------------------------------------------------------- format detection
def make(path: Path, text: str = "") -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.jsonl", "jsonl"),
        ("a.json", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.conll", "conll"),
        ("a.iob", "conll"),
        ("a.bio", "conll"),
        ("a.tsv", "conll"),
        ("a.spacy", "docbin"),
        ("a.ann", "brat"),
    ],
)
def test_detect_format_by_suffix_even_for_misleading_content(tmp_path, name, expected):
    # The suffix wins over the content: these all hold CoNLL-looking text.
    path = make(tmp_path / name, "EU B-ORG\nrejects O\n")
    assert nerx.io.detect_format(path) == expected
    assert nerx.io.detect_format(tmp_path / ("new_" + name), for_writing=True) == expected


def test_detect_format_by_content(tmp_path):
    jsonl = make(tmp_path / "data.dat", '{"text": "Hello there."}\n{"text": "Bye."}\n')
    array = make(tmp_path / "data.json-array", '[{"tokens": ["a"], "entities": []}]')
    conll = make(tmp_path / "data", "-DOCSTART- O\n\nEU\tB-ORG\nrejects\tO\n")
    assert nerx.io.detect_format(jsonl) == "jsonl"
    assert nerx.io.detect_format(array) == "jsonl"
    assert nerx.io.detect_format(conll) == "conll"


def test_detect_format_of_a_txt_with_an_ann_beside_it(tmp_path):
    txt = make(tmp_path / "doc.txt", "EU B-ORG\nrejects O\n")
    assert nerx.io.detect_format(txt) == "text"  # a .txt alone is one plain-text document
    make(tmp_path / "doc.ann", "T1\tORG 0 2\tEU\n")
    assert nerx.io.detect_format(txt) == "brat"
    [d] = nerx.io.read(txt)
    assert (d.id, d.entities) == ("doc", [Entity(0, 2, "ORG")])


def test_detect_format_of_directories_and_stdio(tmp_path):
    assert nerx.io.detect_format(tmp_path) == "brat"
    assert nerx.io.detect_format(tmp_path / "out", for_writing=True) == "brat"
    assert nerx.io.detect_format("-") == "jsonl"


def test_detect_format_fails_on_unknown_content_and_empty_files(tmp_path):
    prose = make(tmp_path / "notes.dat", "Just some prose, no tags here.\n")
    with pytest.raises(UnknownFormatError, match="notes.dat"):
        nerx.io.detect_format(prose)
    empty = make(tmp_path / "empty.dat")
    with pytest.raises(UnknownFormatError, match="empty") as info:
        nerx.io.detect_format(empty)
    assert info.value.where == str(empty)
    with pytest.raises(UnknownFormatError, match="notes.dat"):
        nerx.io.detect_format(tmp_path / "notes.dat", for_writing=True)


def test_detect_format_of_a_missing_path_says_it_is_missing(tmp_path):
    with pytest.raises(UnknownFormatError, match="^no such file or directory: .*eng.trian$"):
        nerx.io.detect_format(tmp_path / "eng.trian")
    assert nerx.io.detect_format(tmp_path / "missing.jsonl") == "jsonl"  # the suffix says it


def test_unknown_format_names_are_rejected(tmp_path):
    with pytest.raises(UnknownFormatError, match="'xml'.*jsonl, conll, docbin, brat"):
        nerx.io.read(make(tmp_path / "a.jsonl", '{"text": "a"}\n'), "xml")
    with pytest.raises(UnknownFormatError, match="read-only"):
        nerx.io.write([], tmp_path / "out.json", "spert")
