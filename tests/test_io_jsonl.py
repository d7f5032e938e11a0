"""JSONL: native round trips, the read-only dialects, detection, errors and public corpora."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

import nerx.io
from nerx.doc import Document, Entity, Relation
from nerx.errors import ConfigError, FormatError, UnknownFormatError
from nerx.io import jsonl
from nerx.io.base import Report


def write_lines(path: Path, *records, raw: str | None = None) -> Path:
    """Write records as JSON Lines (or ``raw`` text as is) and return the path."""
    text = raw if raw is not None else "".join(json.dumps(r) + "\n" for r in records)
    path.write_text(text, encoding="utf-8")
    return path


def spans(doc: Document) -> list[tuple[str, str]]:
    return [(doc.text[e.start : e.end], e.label) for e in doc.entities]


def rels(doc: Document) -> list[tuple[str, str, str]]:
    return [
        (doc.entity_text(doc.entities[r.head]), doc.entity_text(doc.entities[r.tail]), r.label)
        for r in doc.relations
    ]


class FakeStdin:
    def __init__(self, data: bytes):
        self.buffer = io.BytesIO(data)


# ----------------------------------------------------------------------------- native
def test_news_sample_matches_the_raw_json(samples):
    raw = [json.loads(line) for line in (samples / "news.jsonl").read_text().splitlines()]
    docs = list(jsonl.read(samples / "news.jsonl"))
    assert [d.id for d in docs] == [r["id"] for r in raw]
    assert [d.text for d in docs] == [r["text"] for r in raw]
    for doc, record in zip(docs, raw, strict=True):
        assert [(e.start, e.end, e.label) for e in doc.entities] == [
            (e["start"], e["end"], e["label"]) for e in record["entities"]
        ]
        assert [(r.head, r.tail, r.label) for r in doc.relations] == [
            (r["head"], r["tail"], r["label"]) for r in record["relations"]
        ]
    assert docs[0].entity_text(docs[0].entities[2]) == "Oslo"


def test_news_sample_round_trips(samples, tmp_path):
    docs = list(jsonl.read(samples / "news.jsonl"))
    report = Report()
    jsonl.write(docs, tmp_path / "out.jsonl", report=report)
    assert list(jsonl.read(tmp_path / "out.jsonl")) == docs
    assert report.documents_written == 5
    assert report.entities_written == sum(len(d.entities) for d in docs)
    assert report.relations_written == sum(len(d.relations) for d in docs)
    assert not report.lost


def test_everything_native_holds_round_trips(tmp_path):
    doc = Document(
        id="x",
        text="Ada met Bob. Bye.",
        tokens=[(0, 3), (4, 7), (8, 11), (11, 12), (13, 16), (16, 17)],
        sentences=[(0, 4), (4, 6)],
        entities=[Entity(0, 3, "PER", 0.75), Entity(8, 11, "PER")],
        relations=[Relation(0, 1, "Knows", 0.5), Relation(1, 0, "Knows")],
        meta={"source": "test", "nested": {"a": [1, 2]}},
    )
    jsonl.write([doc], tmp_path / "x.jsonl")
    assert list(jsonl.read(tmp_path / "x.jsonl")) == [doc]


def test_writer_leaves_out_what_is_absent(tmp_path):
    doc = Document("d", "Ada", entities=[Entity(0, 3, "PER")], relations=[])
    jsonl.write([doc], tmp_path / "d.jsonl")
    lines = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == {
        "id": "d",
        "text": "Ada",
        "entities": [{"start": 0, "end": 3, "label": "PER"}],
        "relations": [],
    }


def test_unannotated_lines_and_blank_lines(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", raw='{"text": "one"}\n\n  \n{"text": "two"}\n')
    docs = list(jsonl.read(path))
    assert [(d.id, d.text, d.entities, d.relations) for d in docs] == [
        ("1", "one", [], []),
        ("2", "two", [], []),
    ]


def test_unknown_top_level_keys_are_kept_in_meta(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", {"text": "a", "source": "web", "meta": {"k": 1}})
    (doc,) = jsonl.read(path)
    assert doc.meta == {"source": "web", "k": 1}


def test_stdin_and_stdout(monkeypatch, samples):
    data = (samples / "news.jsonl").read_bytes()
    monkeypatch.setattr(sys, "stdin", FakeStdin(data))
    docs = list(jsonl.read("-"))
    assert len(docs) == 5
    out = FakeStdin(b"")  # only .buffer is used
    monkeypatch.setattr(sys, "stdout", out)
    jsonl.write(docs, "-")
    written = out.buffer.getvalue().decode().splitlines()
    assert [json.loads(line) for line in written] == [
        json.loads(line) for line in data.splitlines()
    ]


def test_failed_write_leaves_no_file(tmp_path):
    def docs():
        yield Document("1", "a")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        jsonl.write(docs(), tmp_path / "out.jsonl")
    assert list(tmp_path.iterdir()) == []


def test_unserializable_meta_is_a_format_error(tmp_path):
    with pytest.raises(FormatError, match="document 'm'"):
        jsonl.write([Document("m", "a", meta={"x": object()})], tmp_path / "m.jsonl")


# ----------------------------------------------------------------------------- dialects
SPERT = {
    "tokens": ["Jane", "Doe", "works", "for", "Acme", "Corp", "."],
    "entities": [{"type": "Peop", "start": 0, "end": 2}, {"type": "Org", "start": 4, "end": 6}],
    "relations": [{"type": "Work_For", "head": 0, "tail": 1}],
    "orig_id": 42,
}

DYGIE = {
    "doc_key": "A-1",
    "sentences": [["We", "use", "CRF", "models", "."], ["CRF", "works", "."]],
    "ner": [[[2, 3, "Method"], [2, 2, "Method"]], [[5, 5, "Method"]]],
    "relations": [[[2, 3, 2, 2, "HYPONYM-OF"], [0, 0, 2, 2, "USED-FOR"]], []],
    "clusters": [[[2, 2], [5, 5]]],
}

PRODIGY = {
    "text": "Jane Doe works for Acme Corp.",
    "tokens": [
        {"text": "Jane", "start": 0, "end": 4, "id": 0},
        {"text": "Doe", "start": 5, "end": 8, "id": 1},
        {"text": "works", "start": 9, "end": 14, "id": 2},
        {"text": "for", "start": 15, "end": 18, "id": 3},
        {"text": "Acme", "start": 19, "end": 23, "id": 4},
        {"text": "Corp", "start": 24, "end": 28, "id": 5},
        {"text": ".", "start": 28, "end": 29, "id": 6},
    ],
    "spans": [
        {"start": 0, "end": 8, "label": "PER", "token_start": 0, "token_end": 1},
        {"start": 19, "end": 28, "label": "ORG", "token_start": 4, "token_end": 5},
        {"start": 24, "end": 28, "label": "PRODUCT", "token_start": 5, "token_end": 5},
    ],
    "relations": [
        # by spans: head Jane Doe, child Acme Corp
        {
            "head": 1,
            "child": 5,
            "label": "works_for",
            "head_span": {"start": 0, "end": 8, "label": "PER"},
            "child_span": {"start": 19, "end": 28, "label": "ORG"},
        },
        # by tokens only: "Doe" -> Jane Doe; "Acme" lies only in Acme Corp
        {"head": 1, "child": 4, "label": "by_tokens"},
        # token 5 ("Corp") ends both Acme Corp and Corp: the tighter one wins
        {"head": 0, "child": 5, "label": "last_token"},
        # "works" is in no span: lost
        {"head": 2, "child": 4, "label": "unmappable"},
    ],
    "answer": "accept",
}

GLINER = {
    "tokenized_text": ["Steve", "Jobs", "founded", "Apple", "."],
    "ner": [[0, 1, "person"], [3, 3, "organization"]],
}

GENIA_LINES = [
    {
        "tokens": ["IL-2", "gene", "expression"],
        "doc_id": "D1",
        "sent_id": "D1-0",
        "entity_mentions": [
            {"start": 0, "end": 2, "entity_type": "DNA", "text": "IL-2 gene"},
            {"start": 0, "end": 1, "entity_type": "protein", "text": "IL-2"},
        ],
    },
    {
        "tokens": ["in", "T", "cells", "."],
        "doc_id": "D1",
        "sent_id": "D1-1",
        "entity_mentions": [{"start": 1, "end": 3, "entity_type": "cell_type", "text": "T cells"}],
    },
    {"tokens": ["NF-kB", "binds", "."], "doc_id": "D2", "sent_id": "D2-0", "entity_mentions": []},
]


def test_spert(tmp_path):
    (doc,) = jsonl.read(write_lines(tmp_path / "s.jsonl", SPERT), dialect="spert")
    assert doc.id == "42"
    assert doc.text == "Jane Doe works for Acme Corp ."
    assert spans(doc) == [("Jane Doe", "Peop"), ("Acme Corp", "Org")]
    assert [(e.start, e.end) for e in doc.entities] == [(0, 8), (19, 28)]
    assert rels(doc) == [("Jane Doe", "Acme Corp", "Work_For")]
    assert doc.tokens[4] == (19, 23)


def test_dygie_end_inclusive_document_indices(tmp_path):
    report = Report()
    (doc,) = jsonl.read(write_lines(tmp_path / "d.jsonl", DYGIE), report=report, dialect="dygie")
    assert doc.id == "A-1"
    assert doc.text == "We use CRF models . CRF works ."
    assert spans(doc) == [("CRF models", "Method"), ("CRF", "Method"), ("CRF", "Method")]
    assert doc.entities[2].start == len("We use CRF models . ")
    assert doc.sentences == [(0, 5), (5, 8)]
    # [0, 0] ("We") is not an annotated entity: that relation is dropped and counted.
    assert rels(doc) == [("CRF models", "CRF", "HYPONYM-OF")]
    assert doc.relations[0].tail == 1
    assert report.lost == {jsonl.LOST_ARGUMENT: 1}
    assert doc.meta == {"clusters": [[[2, 2], [5, 5]]]}


def test_prodigy_relations_by_span_and_by_token(tmp_path):
    report = Report()
    path = write_lines(tmp_path / "p.jsonl", PRODIGY)
    (doc,) = jsonl.read(path, report=report, dialect="prodigy")
    assert doc.id == "1"
    assert doc.text == PRODIGY["text"]
    assert spans(doc) == [("Jane Doe", "PER"), ("Acme Corp", "ORG"), ("Corp", "PRODUCT")]
    assert doc.tokens[6] == (28, 29)
    assert rels(doc) == [
        ("Jane Doe", "Acme Corp", "works_for"),
        ("Jane Doe", "Acme Corp", "by_tokens"),
        ("Jane Doe", "Corp", "last_token"),
    ]
    assert report.lost == {jsonl.LOST_ARGUMENT: 1}
    assert doc.meta == {"answer": "accept"}


def test_prodigy_token_prefers_the_entity_it_ends(tmp_path):
    words = ["Bank", "of", "New", "York", "Mellon", "in", "Ohio"]
    starts = [0, 5, 8, 12, 17, 24, 27]
    record = {
        "text": "Bank of New York Mellon in Ohio",
        "tokens": [
            {"text": w, "start": s, "end": s + len(w), "id": i}
            for i, (w, s) in enumerate(zip(words, starts, strict=True))
        ],
        "spans": [
            {"start": 12, "end": 23, "label": "X"},  # York Mellon: tighter, York not last
            {"start": 0, "end": 16, "label": "ORG"},  # Bank of New York: ends at York
            {"start": 27, "end": 31, "label": "LOC"},
        ],
        "relations": [{"head": 3, "child": 6, "label": "in"}],
    }
    (doc,) = jsonl.read(write_lines(tmp_path / "p.jsonl", record))
    assert rels(doc) == [("Bank of New York", "Ohio", "in")]


def test_prodigy_relation_without_tokens_is_lost(tmp_path):
    record = {"text": "A B", "spans": [{"start": 0, "end": 1, "label": "X"}]}
    record["relations"] = [{"head": 0, "child": 0, "label": "self"}]
    report = Report()
    (doc,) = jsonl.read(write_lines(tmp_path / "p.jsonl", record), report=report)
    assert doc.relations == []
    assert report.lost[jsonl.LOST_ARGUMENT] == 1


def test_gliner_end_is_inclusive(tmp_path):
    (doc,) = jsonl.read(write_lines(tmp_path / "g.jsonl", GLINER), dialect="gliner")
    assert doc.text == "Steve Jobs founded Apple ."
    assert spans(doc) == [("Steve Jobs", "person"), ("Apple", "organization")]


def test_genia_groups_consecutive_sentences(tmp_path):
    lines = [*GENIA_LINES, {**GENIA_LINES[0], "sent_id": "D1-9"}]
    docs = list(jsonl.read(write_lines(tmp_path / "g.jsonlines", *lines), dialect="genia"))
    assert [d.id for d in docs] == ["D1", "D2", "D1"]  # D1 again: not consecutive
    first = docs[0]
    assert first.text == "IL-2 gene expression in T cells ."
    assert first.sentences == [(0, 3), (3, 7)]
    assert spans(first) == [("IL-2 gene", "DNA"), ("IL-2", "protein"), ("T cells", "cell_type")]
    assert first.meta == {"sent_id": ["D1-0", "D1-1"]}
    assert docs[1].entities == []


def test_genia_line_without_doc_id_is_its_own_document(tmp_path):
    lines = [{"tokens": ["a"], "entity_mentions": []}, {"tokens": ["b"], "entity_mentions": []}]
    docs = list(jsonl.read(write_lines(tmp_path / "g.jsonl", *lines), dialect="genia"))
    assert [(d.id, d.text) for d in docs] == [("1", "a"), ("2", "b")]


# ----------------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("records", "dialect"),
    [
        ([SPERT], "spert"),
        ([DYGIE], "dygie"),
        ([PRODIGY], "prodigy"),
        ([GLINER], "gliner"),
        (GENIA_LINES, "genia"),
        ([{"text": "a", "entities": [{"start": 0, "end": 1, "label": "X"}]}], "jsonl"),
    ],
)
def test_dialect_is_detected_from_the_first_record(tmp_path, records, dialect):
    path = write_lines(tmp_path / "data.jsonl", *records)
    detected = list(nerx.io.read(path))
    named = list(nerx.io.read(path, dialect))
    assert detected == named
    assert detected[0].entities


@pytest.mark.parametrize("name", jsonl.DIALECTS)
def test_registry_reads_dialects_by_name(tmp_path, name):
    records = {"spert": [SPERT], "dygie": [DYGIE], "prodigy": [PRODIGY], "gliner": [GLINER]}
    path = write_lines(tmp_path / "d.json", *records.get(name, GENIA_LINES))
    assert next(iter(nerx.io.read(path, name))).entities


def test_dialect_option_overrides_detection(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", *GENIA_LINES)
    docs = list(jsonl.read(path, dialect="spert"))  # one document per line, no "entities"
    assert len(docs) == 3
    assert all(d.entities == [] for d in docs)
    assert docs[0].meta["entity_mentions"] == GENIA_LINES[0]["entity_mentions"]


def test_json_array_of_records(tmp_path):
    path = tmp_path / "spert.json"
    path.write_text("\n" + json.dumps([SPERT, {**SPERT, "orig_id": "b"}], indent=2))
    docs = list(nerx.io.read(path))
    assert [d.id for d in docs] == ["42", "b"]
    assert spans(docs[1]) == [("Jane Doe", "Peop"), ("Acme Corp", "Org")]


def test_empty_json_array(tmp_path):
    assert list(jsonl.read(write_lines(tmp_path / "e.json", raw="[]\n"))) == []


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ('{"text": "a"}\n{"text": "b"}\n', True),
        ('\ufeff  {"text": "a"}\n', True),
        ('[{"tokens": []}]', True),
        ("[\n  {", True),
        ('{"text": "a very long first line that the head cuts', True),
        ("-DOCSTART- -X- O O\n", False),
        ("T1\tPER 0 3\tAda\n", False),
        ("[1, 2]\n", False),
        ("{not json}\nmore\n", False),
    ],
)
def test_sniff(head, expected):
    assert jsonl.sniff(head) is expected


# ----------------------------------------------------------------------------- errors
def assert_format_error(path: Path, line: int, *fragments: str, **read_options) -> None:
    with pytest.raises(FormatError) as caught:
        list(jsonl.read(path, **read_options))
    message = str(caught.value)
    assert f"{path}:{line}" in message
    for fragment in fragments:
        assert fragment in message


GOOD = '{"text": "Ada", "entities": [{"start": 0, "end": 3, "label": "PER"}]}\n'


@pytest.mark.parametrize(
    ("bad_line", "fragments"),
    [
        ('{"text": "trunc', ("invalid JSON", "one JSON object per line")),
        ('["text", "a"]', ("expected a JSON object",)),
        ('{"id": "x", "entities": []}', ("no 'text'", "expected a string")),
        ('{"text": 5}', ("'text' must be a string", "got 5")),
        (
            '{"text": "a", "entities": [{"start": "0", "end": 1, "label": "X"}]}',
            ("'start'", "integer"),
        ),
        (
            '{"text": "a", "entities": [{"start": true, "end": 1, "label": "X"}]}',
            ("'start'", "integer"),
        ),
        ('{"text": "a", "entities": [{"start": 0, "end": 1}]}', ("entity 0 has no 'label'",)),
        ('{"text": "a", "entities": [[0, 1, "X"]]}', ("entity 0 must be an object",)),
        ('{"text": "a", "entities": {"start": 0}}', ("'entities' must be a list",)),
        ('{"text": "a", "relations": ["0 -> 1"]}', ("relation 0 must be an object",)),
        ('{"text": "a", "relations": [{"head": 0, "tail": 1}]}', ("relation 0 has no 'label'",)),
        ('{"text": "a", "tokens": [[0]]}', ("token 0 must be a list [start, end]",)),
        ('{"text": "a", "meta": []}', ("'meta' must be an object",)),
        ('{"text": "a", "id": 1.5}', ("'id' must be a string or an integer",)),
    ],
)
def test_native_errors_name_file_and_line(tmp_path, bad_line, fragments):
    path = write_lines(tmp_path / "bad.jsonl", raw=GOOD + "\n" + bad_line + "\n")
    assert_format_error(path, 3, *fragments)


@pytest.mark.parametrize(
    ("dialect", "good", "bad", "fragments"),
    [
        ("spert", SPERT, {"entities": []}, ("no 'tokens'", "expected a list")),
        ("spert", SPERT, {**SPERT, "tokens": ["a", 1]}, ("token 1", "must be a string")),
        ("spert", SPERT, {**SPERT, "entities": [{"start": 0, "end": 1}]}, ("no 'type'",)),
        (
            "spert",
            SPERT,
            {**SPERT, "entities": [{"type": "X", "start": 5, "end": 9}]},
            ("[5, 9)", "7 tokens"),
        ),
        (
            "spert",
            SPERT,
            {**SPERT, "relations": [{"type": "R", "head": "0", "tail": 1}]},
            ("'head'",),
        ),
        ("dygie", DYGIE, {"doc_key": "x"}, ("no 'sentences'",)),
        ("dygie", DYGIE, {**DYGIE, "ner": [[[0, 9, "X"]], []]}, ("[0, 9] (end inclusive)",)),
        ("dygie", DYGIE, {**DYGIE, "ner": [[[0, "X"]], []]}, ("[start, end, label]",)),
        ("dygie", DYGIE, {**DYGIE, "relations": [[[0, 0, 2, "R"]], []]}, ("head_start",)),
        ("dygie", DYGIE, {**DYGIE, "sentences": ["We use CRF"]}, ("sentence 0 must be a list",)),
        ("prodigy", PRODIGY, {"spans": []}, ("no 'text'",)),
        (
            "prodigy",
            PRODIGY,
            {**PRODIGY, "spans": [{"start": 0, "end": 2}]},
            ("span 0 has no 'label'",),
        ),
        ("prodigy", PRODIGY, {**PRODIGY, "tokens": [{"start": 0}]}, ("token 0 has no 'end'",)),
        (
            "prodigy",
            PRODIGY,
            {**PRODIGY, "relations": [{"child": 1, "label": "R"}]},
            ("no 'head'",),
        ),
        ("gliner", GLINER, {"ner": []}, ("no 'tokenized_text'",)),
        ("gliner", GLINER, {**GLINER, "ner": [[0, 5, "X"]]}, ("[0, 5] (end inclusive)",)),
        ("genia", GENIA_LINES[0], {"doc_id": "D9"}, ("no 'tokens'",)),
        (
            "genia",
            GENIA_LINES[0],
            {**GENIA_LINES[0], "entity_mentions": [{"start": 0, "end": 1}]},
            ("'entity_type'",),
        ),
    ],
)
def test_dialect_errors_name_file_and_line(tmp_path, dialect, good, bad, fragments):
    path = write_lines(tmp_path / "bad.jsonl", good, bad)
    assert_format_error(path, 2, *fragments, dialect=dialect)


def test_invalid_json_inside_an_array_names_the_line(tmp_path):
    path = write_lines(tmp_path / "a.json", raw='\n[\n  {"tokens": []},\n  {"tokens": [}\n]\n')
    assert_format_error(path, 4, "invalid JSON", "array")


def test_array_element_that_is_not_an_object(tmp_path):
    path = write_lines(tmp_path / "a.json", raw='[{"text": "a"}, 7]')
    with pytest.raises(FormatError, match=r"a\.json: array element 2: expected a JSON object"):
        list(jsonl.read(path))


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_bytes(GOOD.encode() + b'{"text": "caf\xe9"}\n')
    assert_format_error(path, 2, "UTF-8")


def test_unknown_dialect_and_option(tmp_path):
    path = write_lines(tmp_path / "a.jsonl", {"text": "a"})
    with pytest.raises(UnknownFormatError, match="conll"):
        list(jsonl.read(path, dialect="conll"))
    with pytest.raises(ConfigError, match="lowercase"):
        list(jsonl.read(path, lowercase=True))
    with pytest.raises(ConfigError, match="indent"):
        jsonl.write([], tmp_path / "b.jsonl", indent=2)


def test_out_of_range_offsets_are_caught_by_the_registry(tmp_path):
    from nerx.errors import InvalidDocumentError

    path = write_lines(
        tmp_path / "a.jsonl", {"text": "a", "entities": [{"start": 0, "end": 5, "label": "X"}]}
    )
    with pytest.raises(InvalidDocumentError, match="entity 0"):
        list(nerx.io.read(path))


# ----------------------------------------------------------------------------- public corpora
@pytest.mark.parametrize(
    ("relpath", "documents", "sentences", "entities", "relations"),
    [
        ("conll04/conll04_train.json", 922, None, 3377, 1283),
        ("scierc/train.json", 350, 1861, 5598, 3219),
        ("genia/dev.jsonlines", 199, 1765, 4714, 0),
        ("genia/test.jsonlines", 199, 1732, 5119, 0),
        ("ade/ade_full.json", 4272, None, 10839, 6821),
    ],
)
def test_counts_match_the_data_readme(
    shared_data, relpath, documents, sentences, entities, relations
):
    report = Report()
    docs = list(nerx.io.read(shared_data / relpath, report=report))
    assert (report.documents_read, report.entities_read, report.relations_read) == (
        documents,
        entities,
        relations,
    )
    assert len(docs) == documents
    assert not report.lost
    if sentences is not None:
        assert sum(len(d.sentences) for d in docs) == sentences


@pytest.mark.parametrize(("split", "nested"), [("dev", 444), ("test", 603)])
def test_genia_nested_entities_match_the_data_readme(shared_data, split, nested):
    count = 0
    for doc in nerx.io.read(shared_data / "genia" / f"{split}.jsonlines"):
        # An entity is nested when another, different span of the document contains it.
        spans_ = [(e.start, e.end) for e in doc.entities]
        count += sum(any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans_) for s in spans_)
    assert count == nested
