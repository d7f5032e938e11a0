"""ITER: the overfit contract with relations, omega learned from the data, the candidate builder
(linear in the words), the decoder on hand-built logits, symmetric relations, the gated FFN."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import nerx.models.iter  # noqa: F401  (registers the kind)
from nerx.doc import Document, TextPreparer
from nerx.errors import ConfigError
from nerx.io import read
from nerx.models import ModelConfig, load_model, model_class, save_model
from nerx.models.iter import THRESHOLDS, GatedFFN, span_candidates
from nerx.pipeline import predict_documents
from nerx.scoring import evaluate
from nerx.training import train
from tests.conftest import overfit_settings

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"


pytestmark = pytest.mark.usefixtures("one_thread")


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- the contract
@pytest.fixture(scope="module")
def overfit(tiny_encoder, tmp_path_factory):
    docs = {doc.id: doc for doc in read(SAMPLES / "news.jsonl")}
    docs = [docs["news-001"], docs["news-002"]]
    out = tmp_path_factory.mktemp("overfit-iter")
    settings = overfit_settings()
    train(docs, docs, kind="iter", encoder=tiny_encoder, output=out, settings=settings)
    TextPreparer()(docs)
    return out, docs


def rows(docs: list[Document]) -> list[tuple[list[tuple], list[tuple]]]:
    """Entities and relations (by entity offsets) of each document, with scores."""
    result = []
    for doc in docs:
        ents = [(e.start, e.end, e.label, e.score) for e in doc.entities]
        rels = [(ents[r.head][:3], ents[r.tail][:3], r.label, r.score) for r in doc.relations]
        result.append((ents, sorted(rels)))
    return result


def test_overfits_entities_and_relations(overfit):
    out, docs = overfit
    model = load_model(out)
    assert model.kind == "iter" and model.predicts_relations
    # "Oslo" starts at the 2nd closest left bracket before the end of "University of Oslo".
    assert model.config.hyper["omega"] == 2
    predicted = predict_documents(model, docs)
    result = evaluate(docs, predicted)
    assert result.entities.f1 == 1.0
    assert result.relations_strict.f1 == 1.0
    assert all(0.0 < x.score <= 1.0 for doc in predicted for x in doc.entities + doc.relations)
    first = predicted[0]
    found = {(first.text[e.start : e.end], e.label) for e in first.entities}
    assert {("University of Oslo", "ORG"), ("Oslo", "LOC")} <= found


def test_save_then_load_predicts_the_same(overfit, tmp_path):
    out, docs = overfit
    model = load_model(out)
    before = rows(predict_documents(model, docs))
    assert all(ents and rels for ents, rels in before)
    reloaded = load_model(save_model(model, tmp_path / "copy"))
    assert reloaded.config == model.config
    after = rows(predict_documents(reloaded, docs))
    for (old_ents, old_rels), (new_ents, new_rels) in zip(before, after, strict=True):
        assert [e[:3] for e in new_ents] == [e[:3] for e in old_ents]
        assert [r[:3] for r in new_rels] == [r[:3] for r in old_rels]
        assert [x[3] for x in new_ents + new_rels] == pytest.approx(
            [x[3] for x in old_ents + old_rels], abs=1e-6
        )


# --------------------------------------------------------------------------- omega
@pytest.fixture(scope="module")
def blank_model(tiny_encoder):
    config = ModelConfig(
        kind="iter",
        labels=["LOC", "ORG", "PER"],
        relation_labels=["Located_In", "Near", "Work_For"],
        symmetric_relations=["Near", "Not_A_Label"],
        encoder=tiny_encoder,
        hyper={"omega": 2, "dropout": 0.0},
    )
    return model_class("iter").create(config).eval()


def doc(words: str, entities, relations=(), sentences=None) -> Document:
    tokens = words.split()
    return Document.from_words(
        "d",
        tokens,
        sentence_lengths=sentences or [len(tokens)],
        token_entities=entities,
        token_relations=relations,
    )


@pytest.mark.parametrize(
    ("entities", "sentences", "expected"),
    [
        # flat: each start is the closest bracket before its end
        ([(0, 1, "PER"), (1, 3, "ORG"), (5, 6, "LOC")], None, 1),
        # "University of Oslo" around "Oslo": brackets 2 and 4 before word 4
        ([(2, 5, "ORG"), (4, 5, "LOC")], None, 2),
        # three levels ending at one word, plus a bracket after the end that must not count
        ([(0, 4, "ORG"), (1, 4, "ORG"), (3, 4, "LOC"), (5, 6, "PER")], None, 3),
        # a start two brackets back and a bracket inside another sentence before it
        ([(0, 1, "PER"), (2, 6, "ORG"), (3, 4, "LOC"), (5, 6, "LOC")], [2, 5], 3),
    ],
)
def test_omega_is_learned_from_gold_spans(blank_model, entities, sentences, expected):
    example = doc("a b c d e f g", entities, sentences=sentences)
    examples = blank_model.prepare(example, gold=True)
    assert blank_model.learn_from_data(examples) == {"omega": expected}


def test_omega_without_gold_spans_keeps_the_default(blank_model):
    assert blank_model.learn_from_data(blank_model.prepare(doc("a b c", []), gold=True)) == {}


# --------------------------------------------------------------------------- candidates
def brute_candidates(lefts: list[bool], sentences, omega: int) -> list[list[int]]:
    result = []
    for m in range(len(lefts)):
        inside = [(s, e) for s, e in sentences if s <= m < e]
        start = inside[0][0] if inside else m + 1
        brackets = [n for n in range(start, m + 1) if lefts[n]]
        result.append(sorted(brackets, reverse=True)[:omega])
    return result


def test_candidates_are_the_omega_closest_brackets_in_the_sentence():
    torch.manual_seed(0)
    width, omega = 40, 3
    sentences = [(0, 7), (7, 25), (28, 40)]  # words 25..27 are outside every sentence
    lefts = torch.rand(2, width) < 0.4
    starts = torch.full((2, width), width)
    for s, e in sentences:
        starts[:, s:e] = s
    candidates, mask = span_candidates(lefts, starts, omega)
    assert candidates.shape == mask.shape == (2, width, omega)
    for row in range(2):
        got = [
            [n for n, ok in zip(c, v, strict=True) if ok]
            for c, v in zip(candidates[row].tolist(), mask[row].tolist(), strict=True)
        ]
        assert got == brute_candidates(lefts[row].tolist(), sentences, omega)


def test_candidates_grow_linearly_with_the_words(blank_model):
    words, omega = 3000, 4
    lefts = torch.ones(1, words, dtype=torch.bool)  # the worst case: a bracket everywhere
    candidates, mask = span_candidates(lefts, torch.zeros(1, words, dtype=torch.long), omega)
    assert candidates.shape == (1, words, omega)
    assert int(mask.sum()) == words * omega - (omega * (omega - 1)) // 2
    hidden = blank_model.encoder.config.hidden_size
    with torch.no_grad():
        logits = blank_model._span_logits(torch.randn(1, words, hidden), candidates)
    assert logits.shape == (1, words, omega, len(blank_model.config.labels))


# --------------------------------------------------------------------------- decoding
WORDS = "Maria works at University of Oslo near Bergen ."
# Word indices: Maria 0, works 1, University 3, Oslo 5, Bergen 7.
LEFT = {0: 4.0, 1: 1.0, 3: 3.0, 5: 2.0, 7: 5.0}
SPAN = {  # (first word, last word, label): logit
    (0, 0, "PER"): 4.0,
    (1, 1, "PER"): -2.0,  # a left bracket without an entity
    (3, 5, "ORG"): 3.0,
    (3, 5, "LOC"): -1.0,
    (5, 5, "LOC"): 2.0,
    (7, 7, "LOC"): 5.0,
    (0, 5, "ORG"): 9.0,  # start is the 4th bracket before word 5; omega = 2 hides it
}
LINK = {  # ((head first, last), (tail first, last), relation): logit
    ((0, 0), (3, 5), "Work_For"): 3.0,
    ((3, 5), (0, 0), "Work_For"): -3.0,
    ((3, 5), (5, 5), "Located_In"): 1.5,
    ((5, 5), (7, 7), "Near"): 1.0,  # symmetric: both directions pass, one comes out
    ((7, 7), (5, 5), "Near"): 2.5,
    ((1, 1), (3, 5), "Work_For"): 6.0,  # "works" is no entity: never emitted
}


def stub_heads(model, monkeypatch) -> list[set]:
    """Replace the three heads by the hand-built logits above; record the entity pairs the
    link head was asked about."""
    labels, relations = model.config.labels, model.config.relation_labels
    asked: list[set] = []

    def left(words):
        logits = torch.full(words.shape[:2], -5.0)
        for word, value in LEFT.items():
            logits[:, word] = value
        return logits

    def span(words, candidates):
        b, w, omega = candidates.shape
        logits = torch.full((b, w, omega, len(labels)), -6.0)
        for (n, m, label), value in SPAN.items():
            logits[..., labels.index(label)][
                (candidates == n) & (torch.arange(w) == m)[:, None]
            ] = value
        return logits

    def link(words, bounds):
        b, e, _ = bounds.shape
        logits = torch.full((b, e, e, len(relations)), -6.0)
        pairs = [tuple(map(tuple, row)) for row in bounds.tolist()]
        asked.append({pair for row in pairs for pair in row})
        for row, entity in enumerate(pairs):
            for i, head in enumerate(entity):
                for j, tail in enumerate(entity):
                    for r, label in enumerate(relations):
                        logits[row, i, j, r] = LINK.get((head, tail, label), -6.0)
        return logits

    monkeypatch.setattr(model, "_left_logits", left)
    monkeypatch.setattr(model, "_span_logits", span)
    monkeypatch.setattr(model, "_link_logits", link)
    return asked


def predict_hand_built(model, monkeypatch, nested: bool):
    asked = stub_heads(model, monkeypatch)
    monkeypatch.setitem(model.config.hyper, "nested", nested)
    batch = model.collate(model.prepare(doc(WORDS, [])))
    with torch.no_grad():
        (prediction,) = model.predict(batch)
    spans = [(s.start, s.end, s.label, s.score) for s in prediction.spans]
    return spans, prediction.relations, asked


def test_decode_nested_spans_and_relations(blank_model, monkeypatch):
    spans, relations, asked = predict_hand_built(blank_model, monkeypatch, nested=True)
    assert [s[:3] for s in spans] == [
        (0, 1, "PER"),
        (3, 6, "ORG"),
        (5, 6, "LOC"),
        (7, 8, "LOC"),
    ]
    assert [s[3] for s in spans] == pytest.approx([sigmoid(x) for x in (4.0, 3.0, 2.0, 5.0)])
    # The link head only ever sees the emitted entities.
    assert asked == [{(0, 0), (3, 5), (5, 5), (7, 7)}]
    assert [r[:3] for r in relations] == [
        (0, 1, "Work_For"),
        (1, 2, "Located_In"),
        (2, 3, "Near"),  # once, head first in text, scored by the stronger direction
    ]
    assert [r[3] for r in relations] == pytest.approx([sigmoid(x) for x in (3.0, 1.5, 2.5)])


def test_decode_flat_drops_overlaps_and_their_relations(blank_model, monkeypatch):
    spans, relations, _ = predict_hand_built(blank_model, monkeypatch, nested=False)
    assert [s[:3] for s in spans] == [(0, 1, "PER"), (3, 6, "ORG"), (7, 8, "LOC")]
    # "Oslo" lost to the more confident ORG around it, so its two relations are gone too.
    assert [r[:3] for r in relations] == [(0, 1, "Work_For")]


def test_decode_thresholds_are_settings(blank_model, monkeypatch):
    monkeypatch.setitem(blank_model.config.hyper, "span_threshold", sigmoid(3.5))
    monkeypatch.setitem(blank_model.config.hyper, "link_threshold", sigmoid(2.0))
    spans, relations, _ = predict_hand_built(blank_model, monkeypatch, nested=True)
    assert [s[:3] for s in spans] == [(0, 1, "PER"), (7, 8, "LOC")]
    assert relations == []


def test_calibration_chooses_the_span_then_the_link_threshold_on_dev(blank_model):
    hyper = blank_model.config.hyper
    seen = []

    def dev_score():  # best at span 0.4 and link 0.3; 0.6 ties 0.5 for links and loses
        seen.append((hyper.get("span_threshold"), hyper.get("link_threshold")))
        span = {0.4: 70.0}.get(hyper["span_threshold"], 60.0)
        return span + {0.3: 5.0, 0.6: 0.0}.get(hyper.get("link_threshold", 0.5), 0.0)

    try:
        chosen = blank_model.calibrate(dev_score)
    finally:
        hyper.pop("span_threshold", None), hyper.pop("link_threshold", None)
    assert chosen["span_threshold"] == 0.4 and chosen["link_threshold"] == 0.3
    assert len(seen) == 2 * len(THRESHOLDS)
    assert all(link is None for _, link in seen[: len(THRESHOLDS)])  # spans first
    assert all(span == 0.4 for span, _ in seen[len(THRESHOLDS) :])


def test_symmetric_relations_are_trained_both_ways(blank_model):
    example = doc(
        "Oslo near Bergen and Anna at Acme",
        [(0, 1, "LOC"), (2, 3, "LOC"), (4, 5, "PER"), (6, 7, "ORG")],
        [(0, 1, "Near"), (2, 3, "Work_For")],
    )
    batch = blank_model.collate(blank_model.prepare(example, gold=True))
    targets = batch.link_targets[0]  # (entities, entities, relations)
    near, work_for = blank_model.relation_to_id["Near"], blank_model.relation_to_id["Work_For"]
    positives = {(h, t, r) for h, t, r in targets.nonzero().tolist()}
    assert positives == {(0, 1, near), (1, 0, near), (2, 3, work_for)}
    assert blank_model.symmetric.tolist() == [False, True, False]


# --------------------------------------------------------------------------- pieces
def test_gated_ffn_pieces_add_up_to_the_concatenation():
    torch.manual_seed(0)
    ffn = GatedFFN(5, 7, 3, parts=2)
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    torch.testing.assert_close(
        ffn.finish(ffn.project(a, 0) + ffn.project(b, 1)), ffn(torch.cat([a, b], -1))
    )
    inner = ffn.inner(torch.cat([a, b], -1))
    gate, value = inner.chunk(2, -1)
    expected = ffn.out(torch.nn.functional.gelu(gate) * value)
    torch.testing.assert_close(ffn(torch.cat([a, b], -1)), expected)


def test_bad_settings_are_config_errors(tiny_encoder):
    config = ModelConfig(kind="iter", labels=["LOC"], encoder=tiny_encoder)
    with pytest.raises(ConfigError, match="activation"):
        model_class("iter").create(replace(config, hyper={"activation": "tanhh"}))
    with pytest.raises(ConfigError, match="omega"):
        model_class("iter").create(replace(config, hyper={"omega": 0}))


def test_calibration_keeps_a_threshold_given_with_set(blank_model, monkeypatch):
    hyper = blank_model.config.hyper
    monkeypatch.setitem(hyper, "link_threshold", 0.7)
    monkeypatch.setattr(blank_model, "given_settings", frozenset({"link_threshold"}))
    seen = []

    def dev_score():  # would choose link 0.3 if it were tuned
        seen.append(hyper.get("link_threshold"))
        return {0.4: 70.0}.get(hyper["span_threshold"], 60.0) + (5.0 if seen[-1] == 0.3 else 0)

    try:
        chosen = blank_model.calibrate(dev_score)
    finally:
        hyper.pop("span_threshold", None)
    assert chosen == {
        "span_threshold": 0.4,
        "dev_f1_by_span_threshold": chosen["dev_f1_by_span_threshold"],
    }
    assert hyper["link_threshold"] == 0.7 and set(seen) == {0.7}
