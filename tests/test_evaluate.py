"""Metrics: hand-counted NER / Rel / Rel+ cases, document pairing, the CLI, and seqeval on CoNLL-2003."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.doc import Document, Entity, Relation
from nerx.errors import DocumentMismatchError, InvalidDocumentError
from nerx.scoring import Scores, evaluate

WORDS = ["The", "University", "of", "Oslo", "hired", "Ann", "Lee", "in", "Oslo"]


def words_doc(doc_id, entities=(), relations=(), words=WORDS) -> Document:
    """A document over ``words``; entities are token ranges ``(first, end, label)``."""
    return Document.from_words(doc_id, words, token_entities=entities, token_relations=relations)


def counts(scores: Scores) -> tuple[int, int, int]:
    return scores.tp, scores.fp, scores.fn


# --------------------------------------------------------------------------- entities
def test_strict_and_boundary_counts_with_nesting_wrong_label_and_duplicates():
    gold = words_doc("a", [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER"), (8, 9, "LOC")])
    pred = words_doc(
        "a",
        [
            (1, 4, "ORG"),  # right
            (3, 4, "LOC"),  # right, nested in the ORG
            (5, 7, "ORG"),  # wrong label: boundary only
            (8, 9, "LOC"),  # right ...
            (8, 9, "LOC"),  # ... and repeated: counts once
            (0, 1, "MISC"),  # spurious
            (5, 6, "PER"),  # partial span
        ],
    )
    result = evaluate([gold], [pred])

    assert result.documents == 1
    assert counts(result.entities) == (3, 3, 1)
    assert result.entities.precision == pytest.approx(3 / 6)
    assert result.entities.recall == pytest.approx(3 / 4)
    assert result.entities.f1 == pytest.approx(2 * 0.5 * 0.75 / (0.5 + 0.75))
    per_label = {label: counts(s) for label, s in result.entities.per_label.items()}
    assert per_label == {"ORG": (1, 1, 0), "LOC": (2, 0, 0), "PER": (0, 1, 1), "MISC": (0, 1, 0)}
    assert result.entities.per_label["PER"].f1 == 0.0

    assert counts(result.boundary) == (4, 2, 0)
    assert result.boundary.precision == pytest.approx(4 / 6)
    assert result.boundary.recall == 1.0
    assert result.boundary.f1 == pytest.approx(0.8)
    assert result.boundary.per_label == {}


def test_counts_are_summed_over_documents_before_dividing():
    a_gold = words_doc("a", [(1, 4, "ORG"), (5, 7, "PER")])
    a_pred = words_doc("a", [(1, 4, "ORG"), (5, 7, "PER"), (8, 9, "LOC")])
    b_gold = words_doc("b", [(3, 4, "LOC"), (8, 9, "LOC"), (5, 7, "PER")])
    b_pred = words_doc("b", [])
    # Predictions may come in any order; documents are paired by id.
    result = evaluate([a_gold, b_gold], iter([b_pred, a_pred]))

    assert result.documents == 2
    assert counts(result.entities) == (2, 1, 3)
    # Micro (P 2/3, R 2/5), not the mean of per-document F1 (0.8 and 0).
    assert result.entities.f1 == pytest.approx(0.5)
    assert counts(result.entities.per_label["LOC"]) == (0, 1, 2)


def test_same_span_with_two_labels_is_one_boundary():
    gold = words_doc("a", [(5, 7, "PER"), (5, 7, "PER"), (5, 7, "ORG")])
    pred = words_doc("a", [(5, 7, "PER")])
    result = evaluate([gold], [pred])
    assert counts(result.entities) == (1, 0, 1)
    assert counts(result.boundary) == (1, 0, 0)


def test_nothing_to_count_gives_zero_not_an_error():
    result = evaluate([words_doc("a")], [words_doc("a")])
    for block in (result.entities, result.boundary, result.relations, result.relations_strict):
        assert (block.precision, block.recall, block.f1) == (0.0, 0.0, 0.0)
    assert not result.has_relations


def test_precision_is_zero_without_predictions_and_recall_without_gold():
    only_gold = evaluate([words_doc("a", [(5, 7, "PER")])], [words_doc("a")])
    only_pred = evaluate([words_doc("a")], [words_doc("a", [(5, 7, "PER")])])
    assert (only_gold.entities.precision, only_gold.entities.recall) == (0.0, 0.0)
    assert (only_pred.entities.precision, only_pred.entities.recall) == (0.0, 0.0)
    assert counts(only_gold.entities) == (0, 0, 1)
    assert counts(only_pred.entities) == (0, 1, 0)


# --------------------------------------------------------------------------- relations
PEOPLE = [(0, 1, "PER"), (1, 2, "PER"), (2, 3, "ORG"), (3, 4, "ORG")]
NAMES = ["Ann", "Bob", "Acme", "Initech", "work", "together"]


def test_rel_ignores_entity_labels_but_rel_plus_does_not():
    gold = words_doc("a", [(5, 7, "PER"), (1, 4, "ORG")], [(0, 1, "Work_For")])
    pred = words_doc(
        "a",
        [(5, 7, "ORG"), (1, 4, "ORG"), (8, 9, "LOC")],
        [
            (0, 1, "Work_For"),  # right spans, wrong head label: Rel yes, Rel+ no
            (1, 0, "Work_For"),  # wrong direction (not symmetric)
            (0, 2, "Live_In"),  # spurious
        ],
    )
    result = evaluate([gold], [pred])

    assert result.has_relations
    assert counts(result.relations) == (1, 2, 0)
    assert counts(result.relations.per_label["Work_For"]) == (1, 1, 0)
    assert counts(result.relations.per_label["Live_In"]) == (0, 1, 0)
    assert counts(result.relations_strict) == (0, 3, 1)
    assert counts(result.relations_strict.per_label["Work_For"]) == (0, 2, 1)
    assert result.relations_strict.f1 == 0.0


def test_relation_with_the_right_labels_but_a_wrong_span_misses_both():
    gold = words_doc("a", [(5, 7, "PER"), (1, 4, "ORG")], [(0, 1, "Work_For")])
    pred = words_doc("a", [(5, 7, "PER"), (3, 4, "ORG")], [(0, 1, "Work_For")])
    result = evaluate([gold], [pred])
    assert counts(result.relations) == (0, 1, 1)
    assert counts(result.relations_strict) == (0, 1, 1)


def test_duplicate_relations_count_once():
    gold = words_doc("a", PEOPLE, [(0, 2, "Work_For"), (0, 2, "Work_For")], words=NAMES)
    pred = words_doc("a", PEOPLE, [(0, 2, "Work_For")] * 3, words=NAMES)
    result = evaluate([gold], [pred])
    assert counts(result.relations) == (1, 0, 0)
    assert counts(result.relations_strict) == (1, 0, 0)


def _symmetric_pair() -> tuple[Document, Document]:
    # Gold: CONJ(Ann, Bob), CONJ(Initech, Acme), USED(Ann, Acme).
    gold = words_doc("a", PEOPLE, [(0, 1, "CONJ"), (3, 2, "CONJ"), (0, 2, "USED")], words=NAMES)
    # Predicted: both CONJ reversed, a spurious CONJ(Ann, Initech), USED reversed.
    pred = words_doc(
        "a",
        PEOPLE,
        [(1, 0, "CONJ"), (2, 3, "CONJ"), (0, 3, "CONJ"), (2, 0, "USED")],
        words=NAMES,
    )
    return gold, pred


def test_without_symmetric_labels_direction_matters():
    gold, pred = _symmetric_pair()
    result = evaluate([gold], [pred])
    assert counts(result.relations.per_label["CONJ"]) == (0, 3, 2)
    assert counts(result.relations.per_label["USED"]) == (0, 1, 1)
    assert counts(result.relations) == (0, 4, 3)


def test_symmetric_relations_count_once():
    gold, pred = _symmetric_pair()
    result = evaluate([gold], [pred], symmetric=["CONJ"])
    # Gold {Ann-Bob, Acme-Initech}; predicted the same two plus Ann-Initech.
    assert counts(result.relations.per_label["CONJ"]) == (2, 1, 0)
    assert counts(result.relations.per_label["USED"]) == (0, 1, 1)
    assert counts(result.relations) == (2, 2, 1)
    assert counts(result.relations_strict) == (2, 2, 1)
    assert result.relations.precision == pytest.approx(2 / 4)
    assert result.relations.recall == pytest.approx(2 / 3)
    assert evaluate([gold], [pred], symmetric="CONJ").to_dict() == result.to_dict()


def test_symmetric_relations_count_twice():
    gold, pred = _symmetric_pair()
    result = evaluate([gold], [pred], symmetric=["CONJ"], symmetric_twice=True)
    # Every CONJ stands for both directions: 2 gold become 4, 3 predicted become 6.
    assert counts(result.relations.per_label["CONJ"]) == (4, 2, 0)
    assert counts(result.relations.per_label["USED"]) == (0, 1, 1)
    assert counts(result.relations) == (4, 3, 1)
    assert counts(result.relations_strict) == (4, 3, 1)
    assert result.relations.precision == pytest.approx(4 / 7)
    assert result.relations.recall == pytest.approx(4 / 5)
    assert result.to_dict()["symmetric_twice"] is True


def test_symmetric_relation_annotated_in_both_directions():
    gold = words_doc("a", PEOPLE, [(0, 1, "CONJ"), (1, 0, "CONJ")], words=NAMES)
    pred = words_doc("a", PEOPLE, [(0, 1, "CONJ")], words=NAMES)
    once = evaluate([gold], [pred], symmetric=["CONJ"])
    twice = evaluate([gold], [pred], symmetric=["CONJ"], symmetric_twice=True)
    assert counts(once.relations) == (1, 0, 0)
    # Both directions are already there, so "twice" still means two, not four.
    assert counts(twice.relations) == (2, 0, 0)


def test_symmetric_rel_plus_keeps_each_label_with_its_span():
    gold = words_doc("a", PEOPLE, [(0, 2, "CONJ")], words=NAMES)
    # Reversed, but the arguments keep their own labels: a match.
    right = words_doc("a", PEOPLE, [(2, 0, "CONJ")], words=NAMES)
    # Reversed, and Acme (now the head) is labelled PER: Rel yes, Rel+ no.
    relabelled = [(0, 1, "PER"), (1, 2, "PER"), (2, 3, "PER"), (3, 4, "ORG")]
    wrong = words_doc("a", relabelled, [(2, 0, "CONJ")], words=NAMES)
    assert counts(evaluate([gold], [right], symmetric=["CONJ"]).relations_strict) == (1, 0, 0)
    result = evaluate([gold], [wrong], symmetric=["CONJ"])
    assert counts(result.relations) == (1, 0, 0)
    assert counts(result.relations_strict) == (0, 1, 1)


# --------------------------------------------------------------------------- pairing
def test_prediction_without_gold_names_the_document():
    with pytest.raises(DocumentMismatchError, match="'extra'.*no gold document"):
        evaluate([words_doc("a")], [words_doc("a"), words_doc("extra")])


def test_gold_without_prediction_names_the_document():
    with pytest.raises(DocumentMismatchError, match=r"'b' \(and 1 more\) has no prediction"):
        evaluate([words_doc("a"), words_doc("b"), words_doc("c")], [words_doc("a")])


def test_repeated_ids_are_rejected_on_either_side():
    with pytest.raises(DocumentMismatchError, match="'a' occurs twice in gold"):
        evaluate([words_doc("a"), words_doc("a")], [words_doc("a")])
    with pytest.raises(DocumentMismatchError, match="'a' occurs twice in the predictions"):
        evaluate([words_doc("a")], [words_doc("a"), words_doc("a")])


def test_different_text_names_the_document_and_the_first_difference():
    gold = words_doc("doc-7")
    pred = Document("doc-7", gold.text.replace("hired", "fired"))
    with pytest.raises(DocumentMismatchError) as info:
        evaluate([gold], [pred])
    at = gold.text.index("hired")
    assert info.value.where == "document 'doc-7'"
    assert f"character {at}" in info.value.message
    assert "gold has 'hired Ann" in info.value.message
    assert "the prediction has 'fired Ann" in info.value.message


def test_prediction_text_cut_short_is_a_mismatch():
    gold = words_doc("a")
    with pytest.raises(DocumentMismatchError, match="the end of the text"):
        evaluate([gold], [Document("a", gold.text[:10])])


def test_in_memory_documents_are_validated():
    broken = Document("a", "Ann", entities=[Entity(0, 3, "PER")], relations=[Relation(0, 4, "X")])
    with pytest.raises(InvalidDocumentError, match="prediction: document 'a'"):
        evaluate([Document("a", "Ann")], [broken])


def test_to_dict_is_plain_json():
    gold, pred = _symmetric_pair()
    data = json.loads(json.dumps(evaluate([gold], [pred], symmetric=["CONJ"]).to_dict()))
    assert data["documents"] == 1
    assert data["symmetric"] == ["CONJ"]
    assert data["relations"]["per_label"]["CONJ"] == {
        "precision": pytest.approx(2 / 3),
        "recall": 1.0,
        "f1": pytest.approx(0.8),
        "tp": 2,
        "fp": 1,
        "fn": 0,
    }
    assert data["boundary"]["per_label"] == {}
    assert set(data) >= {"entities", "boundary", "relations", "relations_strict"}


def test_sample_corpus_against_itself_is_perfect(samples):
    path = samples / "news.jsonl"
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    n_entities = sum(len(d["entities"]) for d in lines)
    n_relations = sum(len(d["relations"]) for d in lines)
    result = evaluate(path, path)
    assert result.documents == len(lines)
    assert counts(result.entities) == (n_entities, 0, 0)
    assert counts(result.relations_strict) == (n_relations, 0, 0)
    assert result.entities.f1 == 1.0


# --------------------------------------------------------------------------- CLI
runner = CliRunner()


def write_jsonl(path: Path, docs: list[Document]) -> Path:
    rows = [
        {
            "id": d.id,
            "text": d.text,
            "entities": [{"start": e.start, "end": e.end, "label": e.label} for e in d.entities],
            "relations": [{"head": r.head, "tail": r.tail, "label": r.label} for r in d.relations],
        }
        for d in docs
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def gold_pred(tmp_path) -> tuple[str, str]:
    # Entities: tp 2 (ORG, LOC), fp 1 (PER as ORG), fn 1: P = R = F1 = 2/3.
    gold = words_doc("a", [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "PER")], [(2, 0, "Work_For")])
    pred = words_doc("a", [(1, 4, "ORG"), (3, 4, "LOC"), (5, 7, "ORG")], [(2, 0, "Work_For")])
    return (
        str(write_jsonl(tmp_path / "gold.jsonl", [gold])),
        str(write_jsonl(tmp_path / "pred.jsonl", [pred])),
    )


def test_cli_prints_a_table_with_the_scores(gold_pred):
    result = runner.invoke(app, ["eval", *gold_pred])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "66.67" in out
    for row in ("entities (strict)", "entities (boundary)", "Rel+", "Work_For", "PER"):
        assert row in out


def test_cli_table_leaves_out_relations_when_there_are_none(tmp_path):
    doc = words_doc("a", [(5, 7, "PER")])
    path = str(write_jsonl(tmp_path / "g.jsonl", [doc]))
    result = runner.invoke(app, ["eval", path, path])
    assert result.exit_code == 0, result.output
    assert "100.00" in result.stdout
    assert "Rel" not in result.stdout


def test_cli_json_has_the_numbers(gold_pred):
    result = runner.invoke(app, ["eval", *gold_pred, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["documents"] == 1
    assert data["entities"]["f1"] == pytest.approx(2 / 3)
    assert (data["entities"]["tp"], data["entities"]["fp"], data["entities"]["fn"]) == (2, 1, 1)
    assert data["boundary"]["f1"] == 1.0
    # The head was PER in gold and ORG in the prediction.
    assert data["relations"]["tp"] == 1
    assert data["relations_strict"]["tp"] == 0


def test_cli_symmetric_options(tmp_path):
    gold, pred = _symmetric_pair()
    g = str(write_jsonl(tmp_path / "g.jsonl", [gold]))
    p = str(write_jsonl(tmp_path / "p.jsonl", [pred]))
    once = runner.invoke(app, ["eval", g, p, "--json", "--symmetric", "CONJ"])
    twice = runner.invoke(app, ["eval", g, p, "--json", "--symmetric", "CONJ", "--symmetric-twice"])
    assert once.exit_code == twice.exit_code == 0, once.output + twice.output
    assert json.loads(once.stdout)["relations"]["per_label"]["CONJ"]["tp"] == 2
    assert json.loads(twice.stdout)["relations"]["per_label"]["CONJ"]["tp"] == 4


def test_cli_symmetric_twice_needs_labels(gold_pred):
    result = runner.invoke(app, ["eval", *gold_pred, "--symmetric-twice"])
    assert result.exit_code == 2
    assert "--symmetric" in result.stderr


def test_cli_mismatch_is_one_line_and_exit_code_2(tmp_path, gold_pred):
    other = str(write_jsonl(tmp_path / "other.jsonl", [words_doc("zzz")]))
    result = runner.invoke(app, ["eval", gold_pred[0], other])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'zzz'" in lines[0]
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- seqeval
def _prediction(gold: Document, index: int, counter: list[int], labels: list[str]) -> Document:
    """Damage gold deterministically: drop, relabel, stretch, and (every 13th doc) add."""
    entities: list[Entity] = []
    starts = sorted(e.start for e in gold.entities)
    for ent in gold.entities:
        k = counter[0] = counter[0] + 1
        if k % 5 == 0:
            continue
        if k % 7 == 0:
            ent = Entity(ent.start, ent.end, labels[(labels.index(ent.label) + 1) % len(labels)])
        elif k % 11 == 0:
            ent = _stretched(gold, ent, starts) or ent
        entities.append(Entity(ent.start, ent.end, ent.label))
    if index % 13 == 0:
        covered = {i for e in entities for i in range(*gold.token_span(e))}
        covered |= {i for e in gold.entities for i in range(*gold.token_span(e))}
        free = next(i for i in range(len(gold.tokens)) if i not in covered)
        entities.append(Entity(*gold.tokens[free], "PER"))
    entities.sort(key=lambda e: (e.start, e.end))
    return Document(gold.id, gold.text, list(gold.tokens), list(gold.sentences), entities)


def _stretched(gold: Document, ent: Entity, starts: list[int]) -> Entity | None:
    """The entity one token longer, unless that runs off the text or into the next entity."""
    _, end = gold.token_span(ent)
    if end >= len(gold.tokens):
        return None
    new_end = gold.tokens[end][1]
    if any(ent.end <= s < new_end for s in starts):
        return None
    return Entity(ent.start, new_end, ent.label)


def _iob2(doc: Document) -> list[str]:
    tags = ["O"] * len(doc.tokens)
    for ent in doc.entities:
        first, end = doc.token_span(ent)
        tags[first:end] = [f"B-{ent.label}"] + [f"I-{ent.label}"] * (end - first - 1)
    return tags


def _assert_faithful_to_tags(doc: Document) -> None:
    """Entities cover whole tokens and never overlap, so an IOB2 sequence holds them all."""
    spans = sorted(doc.token_span(e) for e in doc.entities)
    assert all(span is not None for span in spans)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_strict_scores_agree_with_seqeval_on_conll2003(shared_data):
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    from nerx.io import read

    path = shared_data / "conll2003" / "eng.testb"
    gold_docs = list(read(path, "conll"))
    assert len(gold_docs) == 231
    assert sum(len(d.entities) for d in gold_docs) == 5648
    labels = sorted({e.label for d in gold_docs for e in d.entities})
    assert labels == ["LOC", "MISC", "ORG", "PER"]

    counter = [0]
    pred_docs = [_prediction(d, i, counter, labels) for i, d in enumerate(gold_docs, start=1)]
    for doc in gold_docs + pred_docs:
        _assert_faithful_to_tags(doc)

    result = evaluate(path, pred_docs, gold_format="conll")

    assert result.documents == 231
    assert 0.5 < result.entities.f1 < 0.95
    y_true = [_iob2(d) for d in gold_docs]
    y_pred = [_iob2(d) for d in pred_docs]
    assert result.entities.precision == pytest.approx(precision_score(y_true, y_pred), abs=1e-9)
    assert result.entities.recall == pytest.approx(recall_score(y_true, y_pred), abs=1e-9)
    assert result.entities.f1 == pytest.approx(f1_score(y_true, y_pred), abs=1e-9)
    report = classification_report(y_true, y_pred, output_dict=True)
    assert set(result.entities.per_label) == set(labels)
    for label in labels:
        ours = result.entities.per_label[label]
        theirs = report[label]
        assert ours.precision == pytest.approx(theirs["precision"], abs=1e-9)
        assert ours.recall == pytest.approx(theirs["recall"], abs=1e-9)
        assert ours.f1 == pytest.approx(theirs["f1-score"], abs=1e-9)
        assert ours.gold == theirs["support"]
