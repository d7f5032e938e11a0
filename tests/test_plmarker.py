"""PL-Marker: the overfit contract with relations, levitated markers that leave the text alone,
marker positions and the directional mask token by token, span packing, inverse and
symmetric relations on hand-built logits, the encoder probe, and an external NER model."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import nerx.models.plmarker  # noqa: F401  (registers the kind)
from nerx.checkpoint import checkpoint_weights
from nerx.doc import Document, TextPreparer
from nerx.errors import ModelError
from nerx.io import read
from nerx.models import ModelConfig, load_model, model_class, save_model
from nerx.models.base import OUTSIDE_BIASES, Batch, Output, SpanPrediction
from nerx.models.plmarker import (
    OBJECT_END,
    OBJECT_START,
    SUBJECT_END,
    SUBJECT_START,
    directional_mask,
    encode_passes,
    inverse_classes,
    marker_pass,
    pack_passes,
    pack_spans,
    pair_targets,
    sample_negatives,
)
from nerx.pipeline import predict_documents
from nerx.scoring import evaluate
from nerx.training import CHECKPOINT_DIR, train
from tests.conftest import overfit_settings
from tests.tiny_encoder import bert_tokenizer

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
RELATIONS = ["Live_In", "Spouse", "Work_For"]


pytestmark = pytest.mark.usefixtures("one_thread")


def news(*ids: str) -> list[Document]:
    docs = {doc.id: doc for doc in read(SAMPLES / "news.jsonl")}
    chosen = [docs[i] for i in ids]
    TextPreparer()(chosen)
    return chosen


@pytest.fixture(scope="module")
def overfit(tiny_encoder, tmp_path_factory):
    """(model directory, documents) of a model trained on news-001 and news-002."""
    docs = news("news-001", "news-002")
    out = tmp_path_factory.mktemp("overfit-plmarker")
    train(
        docs, docs, kind="plmarker", encoder=tiny_encoder, output=out, settings=overfit_settings()
    )
    return out, docs


@pytest.fixture
def model(tiny_encoder):
    """A fresh model whose tokenizer splits unknown words into letters."""
    from nerx.models.encoder import load_encoder
    from nerx.models.plmarker import PLMarker

    tokenizer = bert_tokenizer(Path(tiny_encoder) / "vocab.txt")
    config = ModelConfig(
        kind="plmarker",
        labels=["LOC", "ORG", "PER"],
        relation_labels=RELATIONS,
        symmetric_relations=["Spouse"],
        encoder=tiny_encoder,
        max_span_length=3,
        hyper={"group_size": 4, "dropout": 0.0},
    )
    return PLMarker(config, load_encoder(tiny_encoder), tokenizer).eval()


def last_epoch(out: Path):
    """The model of the last epoch trained (the checkpoint), not the best one saved."""
    model = load_model(out)
    model.load_state_dict(checkpoint_weights(out / CHECKPOINT_DIR))
    return model


def rows(docs: list[Document]) -> list[tuple[list, list]]:
    return [
        (
            [(e.start, e.end, e.label, e.score) for e in doc.entities],
            [(r.head, r.tail, r.label, r.score) for r in doc.relations],
        )
        for doc in docs
    ]


# --------------------------------------------------------------------------- the contract
def test_overfits_entities_and_relations(overfit):
    out, docs = overfit
    best = load_model(out)
    assert best.kind == "plmarker"
    assert evaluate(docs, predict_documents(best, docs)).relations_strict.f1 == 1.0
    # The loop keeps the first epoch at the best Rel+, where an entity outside every relation
    # may still be missing; the last epoch (the checkpoint) must have learnt them all.
    predicted = predict_documents(last_epoch(out), docs)
    result = evaluate(docs, predicted)
    assert result.entities.f1 == 1.0
    assert result.relations_strict.f1 == 1.0
    first = predicted[0]
    found = {(first.text[e.start : e.end], e.label) for e in first.entities}
    assert {("University of Oslo", "ORG"), ("Oslo", "LOC")} <= found
    assert all(0.0 < r.score <= 1.0 for doc in predicted for r in doc.relations)


def test_save_then_load_predicts_the_same(overfit, tmp_path):
    out, docs = overfit
    model = load_model(out)
    before = rows(predict_documents(model, docs))
    assert any(rels for _, rels in before), "the overfit model should find relations"
    reloaded = load_model(save_model(model, tmp_path / "copy"))
    assert reloaded.config == model.config
    after = rows(predict_documents(reloaded, docs))
    for (ents, rels), (ents2, rels2) in zip(before, after, strict=True):
        assert [e[:3] for e in ents2] == [e[:3] for e in ents]
        assert [r[:3] for r in rels2] == [r[:3] for r in rels]
        assert [e[3] for e in ents2] == pytest.approx([e[3] for e in ents], abs=1e-6)
        assert [r[3] for r in rels2] == pytest.approx([r[3] for r in rels], abs=1e-6)
    # Both encoders are saved and restored, and they have drifted apart in training.
    state = reloaded.state_dict()
    assert any(k.startswith("re_encoder.") for k in state)
    assert not torch.equal(
        state["encoder.embeddings.word_embeddings.weight"],
        state["re_encoder.embeddings.word_embeddings.weight"],
    )


# --------------------------------------------------------------------------- markers
def one_example(model, words: list[str], sentence_lengths: list[int] | None = None):
    doc = Document.from_words("d", words, sentence_lengths=sentence_lengths or [len(words)])
    (example,) = model.prepare(doc)
    return example


WORDS = ["Maria", "Zqxv", "lives", "in", "Bergen", "."]  # "Zqxv" is four subwords


def subword_bounds(model, words: list[str]) -> list[tuple[int, int]]:
    """Each word's first and last subword index, counted from the tokenizer here."""
    bounds, at = [], 1  # after [CLS]
    for word in words:
        n = len(model.tokenizer(word, add_special_tokens=False)["input_ids"])
        bounds.append((at, at + n - 1))
        at += n
    return bounds


def test_levitated_markers_leave_the_text_states_unchanged(model):
    ex = one_example(model, WORDS)
    batch = model.collate([ex])
    n = len(ex.input_ids)
    with torch.no_grad():
        plain = model.encoder(input_ids=torch.tensor([ex.input_ids])).last_hidden_state[0]
        for chunk in batch.ner_chunks:
            hidden = encode_passes(model.encoder, model.ner_markers, chunk)
            assert hidden.shape[1] > n  # markers were there
            for row in range(hidden.size(0)):
                torch.testing.assert_close(hidden[row, :n], plain, atol=1e-5, rtol=1e-4)
        # RE: the subject's solid markers are text; adding object markers changes nothing.
        inputs = model._re_inputs([ex], [[(0, 1), (1, 2), (4, 5)]])
        (chunk,) = inputs["chunks"]
        text_ids = chunk["input_ids"][0, : n + 2].tolist()
        solid = chunk["markers"][0, : n + 2].tolist()
        alone = pack_passes([marker_pass(text_ids, [], (OBJECT_START, OBJECT_END), solid)], 1, 0)[0]
        with_objects = encode_passes(model.re_network, model.re_markers, chunk)
        text_only = encode_passes(model.re_network, model.re_markers, alone)
    torch.testing.assert_close(with_objects[0, : n + 2], text_only[0], atol=1e-5, rtol=1e-4)


def test_ner_markers_take_their_span_positions_and_the_mask_follows_the_rule(model):
    ex = one_example(model, WORDS, [5, 1])
    bounds = subword_bounds(model, WORDS)
    assert bounds[1][1] - bounds[1][0] == 3, "the test needs a word of several subwords"
    assert [(ex.word_starts[w], ex.word_ends[w]) for w in range(len(WORDS))] == bounds
    batch = model.collate([ex])
    (chunk,) = batch.ner_chunks  # every pass in one chunk, shorter ones padded
    spans = batch.ner_spans.tolist()
    n = len(ex.input_ids)
    per_pass = torch.bincount(chunk["read_rows"], minlength=len(chunk["input_ids"])).tolist()
    assert sorted(per_pass) == [1, 4, 4, 4]  # 12 spans in the first sentence, 1 in the second
    for rows_, tokens, item in zip(
        chunk["read_rows"].tolist(),
        chunk["read_tokens"].tolist(),
        chunk["read_items"].tolist(),
        strict=True,
    ):
        _, s, e = spans[item]
        start_marker, end_marker, first, last = tokens
        assert (first, last) == (bounds[s][0], bounds[e - 1][1])
        assert chunk["positions"][rows_, start_marker] == bounds[s][0]
        assert chunk["positions"][rows_, end_marker] == bounds[e - 1][1]
        assert end_marker == start_marker + 1 and start_marker >= n
    allowed = directional_mask(chunk["pairs"], chunk["valid"])
    width = chunk["input_ids"].size(1)
    for p, count in enumerate(per_pass):
        length = n + 2 * count
        assert chunk["positions"][p, :n].tolist() == list(range(n))
        for i in range(width):
            for j in range(width):
                same_pair = n <= i < length and n <= j < length and (i - n) // 2 == (j - n) // 2
                expected = j < length and (j < n or same_pair)
                assert bool(allowed[p, i, j]) == expected, (p, i, j)


def test_re_pass_inserts_solid_markers_and_shifts_object_positions(model):
    ex = one_example(model, WORDS)
    bounds = subword_bounds(model, WORDS)
    # (1, 3) covers "Zqxv lives"; (1, 2) nests inside it and starts where it starts.
    entities = [(0, 1), (1, 3), (1, 2), (4, 5)]
    inputs = model._re_inputs([ex], [entities])
    assert inputs["pairs"] == [
        (0, s, o) for s in range(len(entities)) for o in range(len(entities)) if s != o
    ]
    (chunk,) = inputs["chunks"]
    n = len(ex.input_ids)
    for row, tokens, item in zip(
        chunk["read_rows"].tolist(),
        chunk["read_tokens"].tolist(),
        chunk["read_items"].tolist(),
        strict=True,
    ):
        _, subject, obj = inputs["pairs"][item]
        a, b = bounds[entities[subject][0]][0], bounds[entities[subject][1] - 1][1]
        s_open, s_close, o_start, o_end = tokens
        assert (s_open, s_close) == (a, b + 2)
        markers = chunk["markers"][row]
        assert (markers[s_open], markers[s_close]) == (SUBJECT_START, SUBJECT_END)
        assert (markers[o_start], markers[o_end]) == (OBJECT_START, OBJECT_END)
        text = [
            t
            for k, t in enumerate(chunk["input_ids"][row, : n + 2].tolist())
            if k not in tokens[:2]
        ]
        assert text == ex.input_ids

        def shifted(i, a=a, b=b):
            return i + (i >= a) + (i > b)

        first, last = bounds[entities[obj][0]][0], bounds[entities[obj][1] - 1][1]
        assert chunk["positions"][row, o_start] == shifted(first)
        assert chunk["positions"][row, o_end] == shifted(last)
        assert chunk["positions"][row, : n + 2].tolist() == list(range(n + 2))


def test_pack_spans_sorts_by_start_then_end_and_cuts_groups():
    sentences = [(6, 9), (0, 4)]
    groups = pack_spans(sentences, 3, 4)
    expected = sorted(
        (s, e) for a, b in sentences for s in range(a, b) for e in range(s + 1, min(b, s + 3) + 1)
    )
    assert [span for group in groups for span in group] == expected
    assert [len(group) for group in groups] == [4, 4, 4, 3]


def test_collate_makes_one_pass_per_group(model):
    ex = one_example(model, WORDS + ["She", "left", "."], [6, 3])
    batch = model.collate([ex, ex])
    spans_per_example = len(pack_spans(ex.sentences, 3, 4))
    assert sum(len(c["input_ids"]) for c in batch.ner_chunks) == 2 * spans_per_example
    assert batch.ner_spans[:, 0].tolist().count(1) == len(batch.ner_spans) // 2


def test_sample_negatives_keeps_every_gold_span_and_caps_the_rest():
    spans = [(s, s + k) for s in range(30) for k in (1, 2)]
    gold = {(3, 4), (10, 12), (29, 30)}
    torch.manual_seed(0)
    kept = sample_negatives(spans, gold, 20)
    assert len(kept) == 20 and len(set(kept)) == 20
    assert gold <= set(kept) and set(kept) <= set(spans)
    torch.manual_seed(1)
    assert set(sample_negatives(spans, gold, 20)) != set(kept)  # drawn, not the first ones
    assert sample_negatives(spans, gold, 60) == spans  # nothing to drop
    assert set(sample_negatives(spans, gold, 2)) == gold  # never drops gold


def test_training_collate_samples_negatives_and_inference_scores_all(model):
    words = WORDS * 5  # one 30-word sentence: 87 candidates of up to 3 words
    doc = Document.from_words(
        "d", words, sentence_lengths=[30], token_entities=[(0, 1, "PER"), (28, 29, "LOC")]
    )
    (ex,) = model.prepare(doc, gold=True)
    model.config.hyper["train_spans"] = 12
    try:
        model.train()
        trained = model.collate([ex])
        model.eval()
        scored = model.collate([ex])
    finally:
        model.config.hyper.pop("train_spans")
    all_spans = [span for group in pack_spans(ex.sentences, 3, 4) for span in group]
    assert len(scored.ner_spans) == len(all_spans) == 87
    assert len(trained.ner_spans) == 12
    picked = [tuple(row[1:]) for row in trained.ner_spans.tolist()]
    assert picked == sorted(picked)  # still packed by start, then end
    assert {(0, 1), (28, 29)} <= set(picked)
    assert int((trained.ner_labels > 0).sum()) == 2


# --------------------------------------------------------------------------- relations
def test_inverse_classes_and_pair_targets():
    inverse = inverse_classes(RELATIONS, ["Spouse"])
    # 0 none, 1 Live_In, 2 Spouse, 3 Work_For, 4 Live_In^-1, 5 Work_For^-1
    assert inverse == [4, 2, 5]
    targets = pair_targets([(0, 1, 0), (1, 2, 1), (2, 0, 2)], inverse)
    assert targets == {(0, 1): 1, (1, 0): 4, (1, 2): 2, (2, 1): 2, (2, 0): 3, (0, 2): 5}
    # A pair stated in its own direction keeps that class over an inverse.
    assert pair_targets([(0, 1, 0), (1, 0, 2)], inverse) == {(0, 1): 1, (1, 0): 3}


def _logits(**probs: float) -> list[float]:
    """Log-probabilities over the six classes; unnamed classes share what is left evenly."""
    names = ["none", "live", "spouse", "work", "live_inv", "work_inv"]
    rest = (1.0 - sum(probs.values())) / (len(names) - len(probs))
    return [math.log(probs.get(name, rest)) for name in names]


def relation_output(spans, logits: list[list[float]], pairs) -> tuple[Output, dict]:
    """What predict hands to decode: RE logits and their (row, subject, object) pairs, and a
    batch whose examples carry their entities."""
    output = Output(
        tensors={"re_logits": torch.tensor(logits), "re_pairs": torch.tensor(pairs).view(-1, 3)}
    )
    return output, Batch(examples=[SimpleNamespace(given_spans=row) for row in spans])


def test_decode_averages_both_directions_and_emits_symmetric_once(model):
    spans = [
        [SpanPrediction(0, 1, "PER", 0.9), SpanPrediction(2, 3, "ORG", 0.8)],
        [SpanPrediction(0, 1, "PER", 0.9), SpanPrediction(2, 4, "ORG", 0.7)],
        [SpanPrediction(0, 2, "PER", 0.9), SpanPrediction(3, 4, "PER", 0.9)],
    ]
    pairs_and_logits = [
        # Example 0: (0 -> 1) says Work_For, (1 -> 0) says Work_For^-1: one Work_For.
        ((0, 0, 1), _logits(work=0.7, none=0.1)),
        ((0, 1, 0), _logits(work_inv=0.5, none=0.4)),
        # Example 1: the subject-0 pass leans Work_For, but the other pass says no
        # relation firmly: the average is no relation.
        ((1, 0, 1), _logits(work=0.45, none=0.35)),
        ((1, 1, 0), _logits(none=0.9, work_inv=0.02)),
        # Example 2: Spouse is symmetric: both passes agree, it comes out once, head first.
        ((2, 1, 0), _logits(spouse=0.5, none=0.3)),
        ((2, 0, 1), _logits(spouse=0.6, none=0.2)),
    ]
    output, batch = relation_output(
        spans, [row for _, row in pairs_and_logits], [pair for pair, _ in pairs_and_logits]
    )
    predictions = model.decode(output, batch)
    got = [[r[:3] for r in p.relations] for p in predictions]
    assert got == [[(0, 1, "Work_For")], [], [(0, 1, "Spouse")]]
    assert predictions[0].relations[0][3] == pytest.approx((0.7 + 0.5) / 2)
    assert predictions[2].relations[0][3] == pytest.approx((0.6 + 0.5) / 2)
    assert [p.spans for p in predictions] == spans


def test_decode_reads_an_inverse_as_the_other_direction(model):
    spans = [[SpanPrediction(0, 1, "PER", 0.9), SpanPrediction(2, 3, "ORG", 0.8)]]
    # The pass with entity 0 as subject says Work_For^-1 (1 works for 0), and the pass with
    # entity 1 as subject agrees: the relation is emitted with entity 1 as head.
    logits = [_logits(work_inv=0.8, none=0.1), _logits(work=0.3, none=0.6)]
    output, batch = relation_output(spans, logits, [(0, 0, 1), (0, 1, 0)])
    (prediction,) = model.decode(output, batch)
    assert [r[:3] for r in prediction.relations] == [(1, 0, "Work_For")]
    assert prediction.relations[0][3] == pytest.approx((0.8 + 0.3) / 2)


def test_relation_bias_turns_a_narrow_no_relation_call_into_a_relation(model):
    spans = [[SpanPrediction(0, 1, "PER", 0.9), SpanPrediction(2, 3, "ORG", 0.8)]]
    # Both passes say no relation, but only just (0.45 against 0.40 for Work_For).
    logits = [_logits(none=0.45, work=0.40), _logits(none=0.45, work_inv=0.40)]
    output, batch = relation_output(spans, logits, [(0, 0, 1), (0, 1, 0)])
    hyper = model.config.hyper
    try:
        (before,) = model.decode(output, batch)
        hyper["relation_bias"] = 0.5
        (after,) = model.decode(output, batch)
    finally:
        hyper.pop("relation_bias", None)
    assert before.relations == []
    assert [r[:3] for r in after.relations] == [(0, 1, "Work_For")]


@pytest.mark.parametrize("external_ner", [False, True])
def test_calibration_chooses_the_entity_then_the_relation_bias(model, external_ner):
    hyper = model.config.hyper
    seen = []

    def dev_score():  # best at entity bias 1.0 and relation bias 0.5
        seen.append((hyper.get("outside_bias"), hyper.get("relation_bias")))
        entity = {1.0: 70.0}.get(hyper.get("outside_bias", 0.0), 60.0)
        return entity + {0.5: 5.0}.get(hyper.get("relation_bias", 0.0), 0.0)

    if external_ner:
        hyper["ner_model"] = "elsewhere"
    try:
        chosen = model.calibrate(dev_score)
    finally:
        for name in ("outside_bias", "relation_bias", "ner_model"):
            hyper.pop(name, None)
    assert chosen["relation_bias"] == 0.5
    assert all(relation is None for _, relation in seen[: len(seen) - len(OUTSIDE_BIASES)])
    if external_ner:  # the entities are another model's: nothing to tune on them
        assert "outside_bias" not in chosen and len(seen) == len(OUTSIDE_BIASES)
    else:
        assert chosen["outside_bias"] == 1.0 and len(seen) == 2 * len(OUTSIDE_BIASES)
        assert all(entity == 1.0 for entity, _ in seen[len(OUTSIDE_BIASES) :])


# --------------------------------------------------------------------------- the probe
class _FakeEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = SimpleNamespace(hidden_size=8, max_position_embeddings=64)
        self.words = nn.Embedding(200, 8)
        self.places = nn.Embedding(64, 8)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.words


class TakesNoPositionIds(_FakeEncoder):
    def forward(self, inputs_embeds, attention_mask=None):
        return SimpleNamespace(last_hidden_state=inputs_embeds)


class IgnoresTheMask(_FakeEncoder):
    def forward(self, inputs_embeds, attention_mask=None, position_ids=None):
        h = inputs_embeds + self.places(position_ids)
        return SimpleNamespace(last_hidden_state=h + h.mean(1, keepdim=True))


class IgnoresPositionIds(_FakeEncoder):
    def forward(self, inputs_embeds, attention_mask=None, position_ids=None):
        weights = (attention_mask.squeeze(1) == 0).float()  # (P, L, L) what each token sees
        mixed = weights @ inputs_embeds / weights.sum(-1, keepdim=True)
        return SimpleNamespace(last_hidden_state=mixed)


@pytest.mark.parametrize("fake", [TakesNoPositionIds, IgnoresTheMask, IgnoresPositionIds])
def test_an_encoder_without_marker_support_is_a_clear_error(fake, tiny_encoder):
    from nerx.models.encoder import load_tokenizer
    from nerx.models.plmarker import PLMarker

    config = ModelConfig(kind="plmarker", labels=["PER"], encoder=tiny_encoder)
    with pytest.raises(ModelError, match=fake.__name__) as caught:
        PLMarker(config, fake(), load_tokenizer(tiny_encoder))
    assert "position_ids" in str(caught.value)


# --------------------------------------------------------------------------- ner_model
def test_ner_model_supplies_the_entities(overfit, tiny_encoder, tmp_path):
    out, docs = overfit
    trained = last_epoch(out)
    source = save_model(trained, tmp_path / "ner")
    config = ModelConfig(
        kind="plmarker",
        labels=trained.config.labels,
        relation_labels=trained.config.relation_labels,
        encoder=tiny_encoder,
        hyper={"nested": True},
    )
    torch.manual_seed(0)
    fresh = model_class("plmarker").create(config)
    own = predict_documents(fresh, docs)
    fresh.config.hyper["ner_model"] = str(source)
    borrowed = predict_documents(fresh, docs)
    expected = predict_documents(trained, docs)
    assert [[(e.start, e.end, e.label) for e in d.entities] for d in borrowed] == [
        [(e.start, e.end, e.label) for e in d.entities] for d in expected
    ]
    assert [[(e.start, e.end, e.label) for e in d.entities] for d in own] != [
        [(e.start, e.end, e.label) for e in d.entities] for d in expected
    ]
    assert evaluate(docs, borrowed).entities.f1 == 1.0
    # The other model is not part of this one: nothing of it is saved here.
    saved = load_model(save_model(fresh, tmp_path / "with-ner-model"))
    assert saved.config.hyper["ner_model"] == str(source)
    assert set(saved.state_dict()) == set(fresh.state_dict())


def test_resuming_a_finished_run_with_ner_model_calibrates_relations_on_its_entities(
    overfit, tiny_encoder, tmp_path
):
    out, docs = overfit
    source = save_model(last_epoch(out), tmp_path / "ner")
    run = tmp_path / "run"
    shutil.copytree(out, run)
    epochs_before = (run / "metrics.jsonl").read_text().count("\n")
    settings = overfit_settings(hyper={"dropout": 0.0, "ner_model": str(source)})
    result = train(
        docs,
        docs,
        kind="plmarker",
        encoder=tiny_encoder,
        output=run,
        settings=settings,
        resume=True,
    )
    assert (run / "metrics.jsonl").read_text().count("\n") == epochs_before  # no more training
    assert "relation_bias" in result.calibration and "outside_bias" not in result.calibration
    saved = load_model(run)
    assert saved.config.hyper["ner_model"] == str(source)
    assert evaluate(docs, predict_documents(saved, docs)).relations_strict.f1 == 1.0
