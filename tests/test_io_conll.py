"""CoNLL column files: tag schemes, documents, errors, writing and round trips."""

from __future__ import annotations

import io
import sys
from collections import Counter
from pathlib import Path

import pytest

import nerx.io
from nerx.doc import Document, Entity, Relation
from nerx.errors import ConfigError, FormatError
from nerx.io import Report, conll


def make(tmp_path: Path, text: str, name: str = "data.conll") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read(path: Path, **options) -> list[Document]:
    return list(nerx.io.read(path, "conll", **options))


def token_entities(doc: Document) -> list[tuple[int, int, str]]:
    """Entities as ``(first_token, end_token, label)``, end exclusive."""
    return [(*doc.token_span(e), e.label) for e in doc.entities]


def words(doc: Document) -> list[str]:
    return [doc.text[s:e] for s, e in doc.tokens]


def lines_of(*rows: str) -> str:
    return "\n".join(rows) + "\n"


# ----------------------------------------------------------------------------- schemes
IOB2 = lines_of(
    "John B-PER",
    "Smith I-PER",
    "visited O",
    "New B-LOC",
    "York I-LOC",
    "City I-LOC",
    "with O",
    "Ann B-PER",
    "Bob B-PER",
)

IOB1 = lines_of(
    "Alice I-PER",
    "Smith I-PER",
    "Bob B-PER",
    "met O",
    "Paris I-LOC",
    "Reuters I-ORG",
)

BIOES = lines_of(
    "Ann S-PER",
    "joined O",
    "Bank B-ORG",
    "of I-ORG",
    "Oslo E-ORG",
    "in O",
    "New B-LOC",
    "York E-LOC",
)


def test_iob2_decoding(tmp_path):
    [doc] = read(make(tmp_path, IOB2))
    assert doc.text == "John Smith visited New York City with Ann Bob"
    assert token_entities(doc) == [(0, 2, "PER"), (3, 6, "LOC"), (7, 8, "PER"), (8, 9, "PER")]
    assert [doc.entity_text(e) for e in doc.entities] == [
        "John Smith",
        "New York City",
        "Ann",
        "Bob",
    ]


def test_iob1_decoding(tmp_path):
    [doc] = read(make(tmp_path, IOB1))
    assert token_entities(doc) == [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC"), (5, 6, "ORG")]


def test_bioes_and_bilou_decoding(tmp_path):
    [doc] = read(make(tmp_path, BIOES))
    assert token_entities(doc) == [(0, 1, "PER"), (2, 5, "ORG"), (6, 8, "LOC")]
    bilou = BIOES.replace("S-", "U-").replace("E-", "L-")
    [doc] = read(make(tmp_path, bilou, "bilou.conll"), scheme="bilou")
    assert token_entities(doc) == [(0, 1, "PER"), (2, 5, "ORG"), (6, 8, "LOC")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (IOB2, "iob2"),
        (IOB1, "iob1"),
        (BIOES, "bioes"),
        (BIOES.replace("S-", "U-").replace("E-", "L-"), "bioes"),
        (lines_of("Ann B-PER", "Smith I-LOC"), "iob1"),  # I- after another type
        (lines_of("Ann B-PER", "", "Smith I-PER"), "iob1"),  # I- at a sentence start
    ],
)
def test_scheme_detection(tmp_path, text, expected):
    assert conll.detect_scheme(make(tmp_path, text)) == expected


def test_detected_scheme_decodes_the_file(tmp_path):
    # A file detected as IOB1 lets I- start an entity, while IOB2 would reject it.
    text = lines_of("Ann B-PER", "Smith I-LOC", "", "Oslo I-LOC")
    [doc] = read(make(tmp_path, text), sentence_docs=False)
    assert token_entities(doc) == [(0, 1, "PER"), (1, 2, "LOC"), (2, 3, "LOC")]


def test_bioes_is_checked_when_detected(tmp_path):
    path = make(tmp_path, lines_of("Ann B-PER", "Smith O", "Oslo S-LOC"))
    with pytest.raises(FormatError) as err:
        read(path)
    assert err.value.where == f"{path}:2"
    assert "O after B-PER is not valid BIOES" in err.value.message


I_AFTER_O = lines_of("The O", "bank O", "Acme I-ORG", "Corp I-ORG")


@pytest.mark.parametrize(("scheme", "title"), [("iob2", "IOB2"), ("bioes", "BIOES")])
def test_i_after_o_is_an_error_under_iob2_and_bioes(tmp_path, scheme, title):
    path = make(tmp_path, I_AFTER_O)
    with pytest.raises(FormatError) as err:
        read(path, scheme=scheme)
    assert err.value.where == f"{path}:3"
    assert f"I-ORG after O is not valid {title}" in err.value.message
    assert f"{path}:3" in str(err.value)


def test_i_after_o_is_valid_iob1(tmp_path):
    [doc] = read(make(tmp_path, I_AFTER_O), scheme="iob1")
    assert token_entities(doc) == [(2, 4, "ORG")]


def test_iob2_message_names_b_as_the_start(tmp_path):
    path = make(tmp_path, lines_of("Acme I-ORG"))
    with pytest.raises(FormatError, match="an entity must start with B-") as err:
        read(path, scheme="iob2")
    assert "at the start of a sentence" in err.value.message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (lines_of("Ann B-PER", "Smith I-PER", "Oslo B-LOC", "", "x O"), 3),  # B- before E-
        (lines_of("Ann B-PER", "Smith E-LOC"), 2),  # E- of another type
        (lines_of("x O", "Ann B-PER", "Smith I-PER", "", "y O"), 3),  # sentence ends inside
    ],
)
def test_invalid_bioes_sequences(tmp_path, text, line):
    path = make(tmp_path, text)
    with pytest.raises(FormatError, match="not valid BIOES") as err:
        read(path, scheme="bioes")
    assert err.value.where == f"{path}:{line}"


def test_e_tag_is_not_iob2(tmp_path):
    path = make(tmp_path, lines_of("Ann B-PER", "Smith E-PER"))
    with pytest.raises(FormatError, match="not an IOB2 tag") as err:
        read(path, scheme="iob2")
    assert err.value.where == f"{path}:2"


@pytest.mark.parametrize("tag", ["X-FOO", "B-", "b-PER", "PER"])
def test_unknown_tag_is_an_error(tmp_path, tag):
    path = make(tmp_path, lines_of("Ann B-PER", f"Smith {tag}"))
    with pytest.raises(FormatError, match="unknown tag") as err:
        read(path, scheme="iob1")
    assert err.value.where == f"{path}:2"


def test_unknown_scheme_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown tag scheme"):
        conll.read(make(tmp_path, IOB2), scheme="iob3")
    with pytest.raises(ConfigError):
        conll.write([], tmp_path / "out.conll", scheme="xml")


# ----------------------------------------------------------------------------- columns
def test_wrong_column_count(tmp_path):
    path = make(tmp_path, lines_of("EU NNP I-ORG", "rejects VBZ O", "German I-MISC", "call NN O"))
    with pytest.raises(FormatError) as err:
        read(path)
    assert err.value.where == f"{path}:3"
    assert "expected 3 columns" in err.value.message
    assert "found 2" in err.value.message


def test_single_column_line_is_an_error(tmp_path):
    path = make(tmp_path, lines_of("", "EU"))
    with pytest.raises(FormatError, match="at least 2 columns") as err:
        read(path)
    assert err.value.where == f"{path}:2"


def test_four_columns_are_kept_and_written_back(tmp_path):
    source = lines_of(
        "-DOCSTART- -X- -X- O",
        "",
        "EU NNP B-NP B-ORG",
        "rejects VBZ B-VP O",
        "German JJ B-NP B-MISC",
        "",
        "Peter NNP B-NP B-PER",
        "Blackburn NNP I-NP I-PER",
        "",
    )
    [doc] = read(make(tmp_path, source))
    assert doc.meta["conll_columns"] == [
        ["NNP", "B-NP"],
        ["VBZ", "B-VP"],
        ["JJ", "B-NP"],
        ["NNP", "B-NP"],
        ["NNP", "I-NP"],
    ]
    assert doc.sentences == [(0, 3), (3, 5)]
    out = tmp_path / "out.conll"
    conll.write([doc], out)
    assert out.read_text(encoding="utf-8") == source


def test_two_column_tab_file(tmp_path):
    path = make(tmp_path, "Selegiline\tB-Chemical\n-\tO\ninduced\tO\nhypotension\tB-Disease\n")
    [doc] = read(path)
    assert words(doc) == ["Selegiline", "-", "induced", "hypotension"]
    assert token_entities(doc) == [(0, 1, "Chemical"), (3, 4, "Disease")]
    assert "conll_columns" not in doc.meta


# ----------------------------------------------------------------------------- documents
LATE_DOCSTART = lines_of(
    "Ann B-PER",
    "ran O",
    "",
    "Bob B-PER",
    "",
    "-DOCSTART- -X- O O",
    "",
    "Oslo B-LOC",
    "",
    "-DOCSTART- -X- O O",
    "Acme B-ORG",
    "",
    "-DOCSTART- -X- O O",
    "",
)


def test_docstart_first_one_late_and_one_at_the_end(tmp_path):
    docs = read(make(tmp_path, LATE_DOCSTART))
    assert [d.id for d in docs] == ["1", "2", "3"]
    assert [d.text for d in docs] == ["Ann ran Bob", "Oslo", "Acme"]
    assert [d.sentences for d in docs] == [[(0, 2), (2, 3)], [(0, 1)], [(0, 1)]]
    assert [token_entities(d) for d in docs] == [
        [(0, 1, "PER"), (2, 3, "PER")],
        [(0, 1, "LOC")],
        [(0, 1, "ORG")],
    ]


def test_leading_docstart_makes_no_empty_document(tmp_path):
    text = lines_of("-DOCSTART- -X- O O", "", "-DOCSTART- -X- O O", "", "Ann B-PER", "")
    docs = read(make(tmp_path, text))
    assert [(d.id, d.text) for d in docs] == [("1", "Ann")]


def test_sentence_docs_true_splits_every_sentence(tmp_path):
    docs = read(make(tmp_path, LATE_DOCSTART), sentence_docs=True)
    assert [d.text for d in docs] == ["Ann ran", "Bob", "Oslo", "Acme"]
    assert [d.id for d in docs] == ["1", "2", "3", "4"]
    assert all(d.sentences == [(0, len(d.tokens))] for d in docs)


def test_no_docstart_means_one_document_per_sentence(tmp_path):
    text = lines_of("Ann B-PER", "ran O", "", "Bob B-PER", "", "", "Oslo B-LOC")
    path = make(tmp_path, text)
    assert [d.text for d in read(path)] == ["Ann ran", "Bob", "Oslo"]
    [whole] = read(path, sentence_docs=False)
    assert whole.text == "Ann ran Bob Oslo"
    assert whole.sentences == [(0, 2), (2, 3), (3, 4)]


def test_docstart_without_blank_line_ends_the_sentence(tmp_path):
    text = lines_of("Ann B-PER", "Smith I-PER", "-DOCSTART- -X- O O", "Smith I-PER")
    docs = read(make(tmp_path, text), scheme="iob1")
    assert [token_entities(d) for d in docs] == [[(0, 2, "PER")], [(0, 1, "PER")]]


def stdin_docs(monkeypatch, text: str, **options) -> list[Document]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(text.encode("utf-8"))))
    return list(conll.read("-", **options))


def test_stdin_reads_every_scheme_leniently(monkeypatch):
    text = IOB1 + "\n" + BIOES + "\n" + IOB2
    [doc] = stdin_docs(monkeypatch, text)
    spans = token_entities(doc)
    assert spans[:4] == [(0, 2, "PER"), (2, 3, "PER"), (4, 5, "LOC"), (5, 6, "ORG")]
    assert spans[4:7] == [(6, 7, "PER"), (8, 11, "ORG"), (12, 14, "LOC")]
    assert spans[7:] == [(14, 16, "PER"), (17, 20, "LOC"), (21, 22, "PER"), (22, 23, "PER")]


def test_stdin_uses_docstart_documents_and_checks_an_explicit_scheme(monkeypatch):
    docs = stdin_docs(monkeypatch, LATE_DOCSTART)
    assert [d.text for d in docs] == ["Ann ran Bob", "Oslo", "Acme"]
    with pytest.raises(FormatError) as err:
        stdin_docs(monkeypatch, I_AFTER_O, scheme="iob2")
    assert err.value.where == "<stdin>:3"


# ----------------------------------------------------------------------------- sniffing
def test_sniff():
    assert conll.sniff("-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\n")
    assert conll.sniff("Selegiline\tB-Chemical\n-\tO\ninduced\tO\nhypo")  # cut mid-line
    assert conll.sniff("Ann S-PER\njoined O\nBank B-ORG\nof I-ORG\nOslo L-ORG\n")
    assert not conll.sniff('{"text": "Ann met Bob", "entities": []}\n')
    assert not conll.sniff("T1\tPER 0 3\tAnn\nR1\tKnows Arg1:T1 Arg2:T2\n")
    assert not conll.sniff("Ann met Bob in Oslo.\nThen they left.\n")
    assert not conll.sniff("EU NNP I-ORG\nrejects O\n")  # columns differ
    assert not conll.sniff("")


# ----------------------------------------------------------------------------- writing
def written(doc_or_docs, tmp_path: Path, **options) -> tuple[str, Report]:
    docs = doc_or_docs if isinstance(doc_or_docs, list) else [doc_or_docs]
    report = Report()
    out = tmp_path / "out.conll"
    conll.write(docs, out, report=report, **options)
    return out.read_text(encoding="utf-8"), report


def sample_doc() -> Document:
    return Document.from_words(
        "1",
        ["Ann", "joined", "Bank", "of", "Oslo", "in", "New", "York"],
        sentence_lengths=[5, 3],
        token_entities=[(0, 1, "PER"), (2, 5, "ORG"), (6, 8, "LOC")],
    )


def test_write_iob2_by_default(tmp_path):
    text, report = written(sample_doc(), tmp_path)
    assert text == lines_of(
        "-DOCSTART- O",
        "",
        "Ann B-PER",
        "joined O",
        "Bank B-ORG",
        "of I-ORG",
        "Oslo I-ORG",
        "",
        "in O",
        "New B-LOC",
        "York I-LOC",
        "",
    )
    assert (report.documents_written, report.entities_written) == (1, 3)
    assert report.lost == Counter()


@pytest.mark.parametrize(("scheme", "single", "last"), [("bioes", "S", "E"), ("bilou", "U", "L")])
def test_write_bioes(tmp_path, scheme, single, last):
    text, _ = written(sample_doc(), tmp_path, scheme=scheme, sentence_docs=True)
    assert text == lines_of(
        f"Ann {single}-PER",
        "joined O",
        "Bank B-ORG",
        "of I-ORG",
        f"Oslo {last}-ORG",
        "",
        "in O",
        "New B-LOC",
        f"York {last}-LOC",
        "",
    )
    [back] = read(make(tmp_path, text, "back.conll"), scheme="bioes", sentence_docs=False)
    assert token_entities(back) == token_entities(sample_doc())


def test_write_iob1_uses_b_only_between_touching_entities(tmp_path):
    doc = Document.from_words(
        "1",
        ["Ann", "Bob", "met", "Cy"],
        token_entities=[(0, 1, "PER"), (1, 2, "PER"), (3, 4, "PER")],
    )
    text, _ = written(doc, tmp_path, scheme="iob1", sentence_docs=True)
    assert text == lines_of("Ann I-PER", "Bob B-PER", "met O", "Cy I-PER", "")


def test_write_splits_tokens_at_entity_boundaries_and_whitespace(tmp_path):
    doc = Document(
        "1",
        "New Yorkers cheered",
        tokens=[(0, 11), (12, 19)],
        entities=[Entity(0, 8, "LOC")],
    )
    text, report = written(doc, tmp_path, sentence_docs=True)
    assert text == lines_of("New B-LOC", "York I-LOC", "ers O", "cheered O", "")
    assert report.notes["tokens split at entity boundaries"] == 1
    assert report.notes["tokens split at whitespace"] == 1


def test_write_derives_tokens_when_there_are_none(tmp_path):
    doc = Document("1", "Dr. Ann Lee-Smith arrived.", entities=[Entity(4, 17, "PER")])
    text, _ = written(doc, tmp_path, sentence_docs=True)
    assert text == lines_of("Dr O", ". O", "Ann B-PER", "Lee-Smith I-PER", "arrived O", ". O", "")


def test_write_reports_what_conll_cannot_hold(tmp_path):
    doc = Document(
        "doc-a",
        "University of Oslo staff",
        entities=[Entity(0, 18, "ORG", 0.9), Entity(14, 18, "LOC"), Entity(19, 24, "PER")],
        relations=[Relation(0, 1, "Based_In")],
    )
    empty = Document("doc-b", "   ")
    text, report = written([doc, empty], tmp_path)
    assert report.lost == Counter(
        {
            "nested or overlapping entities (CoNLL keeps the outermost)": 1,
            "relations (CoNLL holds none)": 1,
            "entity scores": 1,
            "document ids (CoNLL holds none)": 1,
            "documents without words (CoNLL cannot hold them)": 1,
        }
    )
    assert (report.documents_written, report.entities_written) == (1, 2)
    assert "B-ORG" in text and "LOC" not in text


def test_write_keeps_an_entity_across_a_sentence_break_whole(tmp_path):
    doc = Document.from_words(
        "1", ["Ann", "Lee", "left"], sentence_lengths=[1, 2], token_entities=[(0, 2, "PER")]
    )
    text, report = written(doc, tmp_path, sentence_docs=True)
    assert text == lines_of("Ann B-PER", "Lee I-PER", "left O", "")
    assert report.notes["sentence breaks dropped inside entities"] == 1


def test_write_is_atomic_on_failure(tmp_path):
    out = tmp_path / "out.conll"
    out.write_text("old\n", encoding="utf-8")

    def docs():
        yield sample_doc()
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        conll.write(docs(), out)
    assert out.read_text(encoding="utf-8") == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.conll"]


def test_sentence_documents_are_written_without_docstart(tmp_path):
    source = "Ann\tB-PER\nran\tO\n\nBob\tB-PER\n"
    docs = read(make(tmp_path, source, "in.tsv"))
    text, _ = written(docs, tmp_path)
    assert text == source.replace("\t", " ") + "\n"


def is_nested(entity: Entity, others: list[Entity]) -> bool:
    return any(o is not entity and o.start <= entity.start and entity.end <= o.end for o in others)


def test_round_trip_of_the_sample_corpus(tmp_path, samples):
    originals = list(nerx.io.read(samples / "news.jsonl"))
    report = Report()
    out = tmp_path / "news.conll"
    conll.write(nerx.io.read(samples / "news.jsonl"), out, report=report)
    back = read(out)
    assert len(back) == len(originals)
    for orig, doc in zip(originals, back, strict=True):
        outer = [
            (orig.entity_text(e), e.label) for e in orig.entities if not is_nested(e, orig.entities)
        ]
        assert [(doc.entity_text(e), e.label) for e in doc.entities] == outer
    nested = sum(is_nested(e, d.entities) for d in originals for e in d.entities)
    assert nested == 2
    assert report.lost["nested or overlapping entities (CoNLL keeps the outermost)"] == nested
    assert report.lost["relations (CoNLL holds none)"] == sum(len(d.relations) for d in originals)
    # A second round trip is exact: offsets, tokens and sentences all come back.
    out2 = tmp_path / "again.conll"
    conll.write(back, out2)
    assert out2.read_bytes() == out.read_bytes()


# ----------------------------------------------------------------------------- public corpora
@pytest.mark.parametrize(
    ("name", "counts"),
    [
        ("eng.train", (946, 14041, 203621, 23499)),
        ("eng.testa", (216, 3250, 51362, 5942)),
        ("eng.testb", (231, 3453, 46435, 5648)),
    ],
)
def test_conll2003_counts(shared_data, name, counts):
    path = shared_data / "conll2003" / name
    assert conll.detect_scheme(path) == "iob1"
    docs = read(path)
    found = (
        len(docs),
        sum(len(d.sentences) for d in docs),
        sum(len(d.tokens) for d in docs),
        sum(len(d.entities) for d in docs),
    )
    assert found == counts
    assert all(len(d.meta["conll_columns"]) == len(d.tokens) for d in docs)


def test_bc5cdr_train_counts(shared_data):
    path = shared_data / "bc5cdr" / "train.tsv"
    assert conll.detect_scheme(path) == "iob2"
    docs = read(path)
    assert len(docs) == 4560
    assert sum(len(d.sentences) for d in docs) == 4560
    labels = Counter(e.label for d in docs for e in d.entities)
    assert labels == Counter({"Chemical": 5203, "Disease": 4182})


def iob1_to_iob2(path: Path) -> list[tuple[str, str]]:
    """(word, IOB2 tag) of every token of a raw IOB1 file, converted independently."""
    pairs = []
    prev_type = None
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            prev_type = None
            continue
        tag = fields[-1]
        if tag.startswith("I-") and prev_type != tag[2:]:
            tag = "B-" + tag[2:]
        prev_type = None if tag == "O" else tag[2:]
        pairs.append((fields[0], tag))
    return pairs


def iob2_tags(doc: Document) -> list[str]:
    tags = ["O"] * len(doc.tokens)
    for entity in doc.entities:
        first, end = doc.token_span(entity)
        tags[first:end] = [f"B-{entity.label}"] + [f"I-{entity.label}"] * (end - first - 1)
    return tags


def test_conll2003_train_round_trip_gives_iob2(shared_data, tmp_path):
    source = shared_data / "conll2003" / "eng.train"
    out = tmp_path / "train.iob2"
    conll.write(read(source), out)
    assert conll.detect_scheme(out) == "iob2"
    back = read(out, scheme="iob2")
    found = [(w, t) for d in back for w, t in zip(words(d), iob2_tags(d), strict=True)]
    assert found == iob1_to_iob2(source)
    assert len(back) == 946
