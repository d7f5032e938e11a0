"""Span models: the contract every registered kind passes on a tiny random encoder (overfit,
save / load, a broken model that must fail, resume), decoders on hand-built logits, the span
decoder layer against a dense reference, and span enumeration."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nerx.doc import Document, TextPreparer
from nerx.errors import ConfigError
from nerx.io import read
from nerx.models import MODELS, ModelConfig, SpanModel, load_model, model_class, save_model
from nerx.models.base import Batch, Output
from nerx.models.spandec import SpanDecoderLayer
from nerx.models.spans import enumerate_spans
from nerx.models.token import decode_bio
from nerx.pipeline import predict_documents
from nerx.scoring import evaluate
from nerx.training import CHECKPOINT_DIR, METRICS_NAME, train
from tests.conftest import FLAT_KINDS, overfit_docs, overfit_settings

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
KINDS = sorted(MODELS)


pytestmark = pytest.mark.usefixtures("one_thread")


def entity_f1(model: SpanModel, docs: list[Document]) -> float:
    TextPreparer()(docs)
    return evaluate(docs, predict_documents(model, docs)).entities.f1


def prediction_rows(docs: list[Document]) -> list[list[tuple]]:
    return [[(e.start, e.end, e.label, e.score) for e in doc.entities] for doc in docs]


# --------------------------------------------------------------------------- the contract
def test_overfits_two_documents(overfit):
    kind, out, docs = overfit
    model = load_model(out)
    assert model.kind == kind
    assert entity_f1(model, docs) == 1.0
    predicted = predict_documents(model, docs)
    assert all(0.0 < e.score <= 1.0 for doc in predicted for e in doc.entities)
    if kind not in FLAT_KINDS:
        # The nested "Oslo" inside "University of Oslo" is found beside its parent.
        first = predicted[0]
        found = {(first.text[e.start : e.end], e.label) for e in first.entities}
        assert {("University of Oslo", "ORG"), ("Oslo", "LOC")} <= found


def test_save_then_load_predicts_the_same(overfit, tmp_path):
    _, out, docs = overfit
    model = load_model(out)
    TextPreparer()(docs)
    before = prediction_rows(predict_documents(model, docs))
    assert any(before), "the overfit model should find entities"

    copy_dir = save_model(model, tmp_path / "copy")
    assert {"config.json", "model.safetensors"} <= {p.name for p in copy_dir.iterdir()}
    assert not list(copy_dir.rglob("*.bin")) and not list(copy_dir.rglob("*.pt"))
    reloaded = load_model(copy_dir)
    assert reloaded.config == model.config
    after = prediction_rows(predict_documents(reloaded, docs))

    assert len(after) == len(before)
    for old, new in zip(before, after, strict=True):
        assert [row[:3] for row in new] == [row[:3] for row in old]
        assert [row[3] for row in new] == pytest.approx([row[3] for row in old], abs=1e-6)
    state, loaded_state = model.state_dict(), reloaded.state_dict()
    assert state.keys() == loaded_state.keys()
    assert all(torch.equal(state[k], loaded_state[k]) for k in state)


def _shift_gold_labels(monkeypatch) -> None:
    """An off-by-one label bug: every gold span is trained with the next label."""
    original = SpanModel.prepare

    def prepare(self, doc, doc_index=0, *, gold=False):
        examples = original(self, doc, doc_index, gold=gold)
        n = len(self.config.labels)
        for ex in examples:
            ex.gold_spans = [(s, e, k % n + 1) for s, e, k in ex.gold_spans]
        return examples

    monkeypatch.setattr(SpanModel, "prepare", prepare)


@pytest.mark.parametrize("kind", KINDS)
def test_broken_model_fails_the_overfit(kind, tiny_encoder, tmp_path, monkeypatch):
    docs = overfit_docs(kind)
    _shift_gold_labels(monkeypatch)
    result = train(
        docs, docs, kind=kind, encoder=tiny_encoder, output=tmp_path, settings=overfit_settings()
    )
    model = load_model(tmp_path)
    assert result.best_score < 100
    assert entity_f1(model, docs) < 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_resume_continues_from_the_checkpoint(kind, tiny_encoder, tmp_path):
    docs = overfit_docs(kind)
    first_losses: list[float] = []

    def first_loss(progress) -> None:
        if progress.step == 1:
            first_losses.append(progress.loss)

    train(
        docs,
        docs,
        kind=kind,
        encoder=tiny_encoder,
        output=tmp_path,
        settings=overfit_settings(epochs=12, patience=1000),
        on_step=first_loss,
    )
    epochs_seen: list[int] = []
    result = train(
        docs,
        docs,
        kind=kind,
        encoder=tiny_encoder,
        output=tmp_path,
        settings=overfit_settings(epochs=15, patience=1000),
        resume=True,
        on_step=first_loss,
        on_epoch=lambda record: epochs_seen.append(record["epoch"]),
    )

    assert epochs_seen == [13, 14, 15]
    assert [record["epoch"] for record in result.history] == list(range(1, 16))
    lines = (tmp_path / METRICS_NAME).read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 16))
    state = json.loads((tmp_path / CHECKPOINT_DIR / "state.json").read_text(encoding="utf-8"))
    assert state["state"]["epoch"] == 15
    # A fresh start would repeat epoch 1's first loss exactly (same seed, same batches); the
    # resumed weights have already learnt, so their first loss is clearly lower (a language
    # model from random weights learns slowest: about 0.6 of its first loss by then).
    assert first_losses[12] < 0.8 * first_losses[0]


def test_resume_without_a_checkpoint_is_a_clear_error(tiny_encoder, tmp_path):
    docs = overfit_docs("token")
    with pytest.raises(ConfigError, match="no checkpoint"):
        train(
            docs,
            docs,
            kind="token",
            encoder=tiny_encoder,
            output=tmp_path,
            settings=overfit_settings(epochs=1),
            resume=True,
        )


def test_unknown_kind_lists_the_choices():
    from nerx.errors import ModelError

    with pytest.raises(ModelError) as caught:
        model_class("no-such-model")
    assert all(kind in str(caught.value) for kind in KINDS)


# --------------------------------------------------------------------------- decode_bio
def test_decode_bio_repairs_invalid_sequences_and_averages_scores():
    labels = ["LOC", "PER"]  # O = 0, B-LOC = 1, I-LOC = 2, B-PER = 3, I-PER = 4
    tags = [0, 2, 2, 0, 1, 4, 4, 3, 3, 2]
    probs = [0.9, 0.5, 0.7, 0.8, 0.6, 0.4, 0.8, 0.3, 0.9, 0.2]
    spans = decode_bio(tags, probs, labels, offset=10)
    got = [(s.start, s.end, s.label, s.score) for s in spans]
    expected = [
        (11, 13, "LOC", (0.5 + 0.7) / 2),  # I-LOC after O opens a LOC
        (14, 15, "LOC", 0.6),
        (15, 17, "PER", (0.4 + 0.8) / 2),  # I-PER after a LOC opens a PER
        (17, 18, "PER", 0.3),  # B- always opens a new entity
        (18, 19, "PER", 0.9),
        (19, 20, "LOC", 0.2),  # I-LOC after a PER, at the very end
    ]
    assert [row[:3] for row in got] == [row[:3] for row in expected]
    assert [row[3] for row in got] == pytest.approx([row[3] for row in expected])


def test_decode_bio_all_outside_is_empty():
    assert decode_bio([0, 0, 0], [1.0, 1.0, 1.0], ["LOC"]) == []


# --------------------------------------------------------------------------- SpanDec.decode
def _logit_row(label: int, n_classes: int, margin: float) -> list[float]:
    row = [0.0] * n_classes
    row[label] = margin
    return row


def _softmax_top(margin: float, n_classes: int) -> float:
    return math.exp(margin) / (math.exp(margin) + n_classes - 1)


@pytest.fixture(scope="module")
def spandec_model(tiny_encoder):
    config = ModelConfig(kind="spandec", labels=["LOC", "PER"], encoder=tiny_encoder)
    return model_class("spandec").create(config)


def _hand_built_output(model):
    n = 1 + len(model.config.labels)
    # Row 0: nested (0,3) PER around (1,2) LOC; a masked span that must never come out.
    # Row 1: a chain A(0,2) > B(1,3) > C(2,4) where greedy keeps A and C, drops B.
    rows = [
        [((0, 3), 2, 5.0), ((1, 2), 1, 3.0), ((2, 3), 0, 4.0), ((4, 5), 1, 2.0), ((5, 6), 2, 9.0)],
        [((0, 2), 1, 6.0), ((1, 3), 2, 5.0), ((2, 4), 1, 4.0), ((4, 5), 0, 1.0), ((0, 1), 0, 1.0)],
    ]
    masks = [[True, True, True, True, False], [True, True, True, True, True]]
    spans = torch.tensor([[span for span, _, _ in row] for row in rows])
    logits = torch.tensor([[_logit_row(k, n, m) for _, k, m in row] for row in rows])
    output = Output(tensors={"logits": logits, "spans": spans, "span_mask": torch.tensor(masks)})
    return output, Batch(examples=[None, None]), n


def test_spandec_decode_keeps_nested_spans(spandec_model):
    spandec_model.config.hyper["nested"] = True
    output, batch, n = _hand_built_output(spandec_model)
    predictions = spandec_model.decode(output, batch)
    got = [[(s.start, s.end, s.label, s.score) for s in p.spans] for p in predictions]
    assert [[row[:3] for row in doc] for doc in got] == [
        [(0, 3, "PER"), (1, 2, "LOC"), (4, 5, "LOC")],
        [(0, 2, "LOC"), (1, 3, "PER"), (2, 4, "LOC")],
    ]
    assert [row[3] for row in got[0]] == pytest.approx(
        [_softmax_top(m, n) for m in (5.0, 3.0, 2.0)], abs=1e-6
    )


def test_spandec_decode_flat_is_greedy_by_score(spandec_model):
    spandec_model.config.hyper["nested"] = False
    try:
        output, batch, _ = _hand_built_output(spandec_model)
        predictions = spandec_model.decode(output, batch)
    finally:
        spandec_model.config.hyper["nested"] = True
    got = [[(s.start, s.end, s.label) for s in p.spans] for p in predictions]
    assert got == [
        [(0, 3, "PER"), (4, 5, "LOC")],
        [(0, 2, "LOC"), (2, 4, "LOC")],
    ]


def test_spandec_logits_do_not_depend_on_the_span_chunk(spandec_model, samples):
    docs = list(read(samples / "news.jsonl"))[:3]
    TextPreparer()(docs)
    examples = [ex for i, doc in enumerate(docs) for ex in spandec_model.prepare(doc, i)]
    batch = spandec_model.collate(examples)
    spandec_model.eval()
    logits = []
    try:
        for chunk in (3, 10_000):
            spandec_model.config.hyper["span_chunk"] = chunk
            with torch.no_grad():
                logits.append(spandec_model(batch).tensors["logits"])
    finally:
        spandec_model.config.hyper.pop("span_chunk", None)
    real = batch.span_mask
    assert int(real.sum()) > 3 * 10  # many chunks of three
    torch.testing.assert_close(logits[0], logits[1])
    assert bool((logits[0][real] != 0).all()) and bool((logits[0][~real] == 0).all())


@pytest.mark.parametrize("kind", ["token", "spandec", "sf-spandec"])
def test_calibration_picks_the_outside_bias_with_the_best_dev_f1(kind, tiny_encoder):
    model = model_class(kind).create(ModelConfig(kind=kind, labels=["PER"], encoder=tiny_encoder))
    # A dev F1 that peaks at bias 1.5 and is flat above it: the smaller bias wins the tie.
    curve = {0.0: 80.0, 0.5: 81.0, 1.0: 82.0, 1.5: 83.0, 2.0: 83.0, 3.0: 79.0}
    chosen = model.calibrate(lambda: curve[model.config.hyper.get("outside_bias", 0.0)])
    assert chosen["outside_bias"] == 1.5 == model.config.hyper["outside_bias"]
    assert chosen["dev_f1_by_outside_bias"] == curve


def test_outside_bias_turns_a_narrow_no_entity_call_into_an_entity(spandec_model):
    logits = torch.tensor([[[2.0, 1.6, -3.0], [5.0, 0.0, 0.0]]])  # O wins by 0.4, then by 5
    output = Output(
        tensors={
            "logits": logits,
            "spans": torch.tensor([[[0, 1], [1, 2]]]),
            "span_mask": torch.ones(1, 2, dtype=torch.bool),
        }
    )
    batch = Batch(examples=[None])
    found = []
    for bias in (0.0, 0.5):
        spandec_model.config.hyper["outside_bias"] = bias
        found.append(
            [(s.start, s.end, s.label) for s in spandec_model.decode(output, batch)[0].spans]
        )
    spandec_model.config.hyper.pop("outside_bias")
    assert found == [[], [(0, 1, "LOC")]]


# --------------------------------------------------------------------------- SF-SpanDec filter
@pytest.fixture(scope="module")
def sf_model(tiny_encoder):
    config = ModelConfig(kind="sf-spandec", labels=["LOC", "PER"], encoder=tiny_encoder)
    return model_class("sf-spandec").create(config)


@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_sf_filter_keeps_spans_whose_every_word_passes(sf_model, threshold):
    filter_logits = torch.tensor(
        [[3.0, 1.0, -3.0, 2.5, 0.2, 4.0, 2.0], [-1.0, 2.3, 2.2, 3.0, -4.0, 5.0, 5.0]]
    )
    sentences = [[(0, 4), (4, 7)], [(0, 7)]]
    per_row = [enumerate_spans(s, 3) for s in sentences]
    width = max(len(sp) for sp in per_row) + 2  # trailing padding spans point at word 0
    spans = torch.zeros((2, width, 2), dtype=torch.long)
    span_mask = torch.zeros((2, width), dtype=torch.bool)
    for row, sp in enumerate(per_row):
        spans[row, : len(sp)] = sp
        span_mask[row, : len(sp)] = True
    passes = [[1 / (1 + math.exp(-x)) >= threshold for x in row] for row in filter_logits.tolist()]
    expected = [
        [(s, e) for s, e in sp.tolist() if all(passes[row][s:e])] for row, sp in enumerate(per_row)
    ]

    sf_model.config.hyper["filter_threshold"] = threshold
    try:
        packed, packed_mask, kept = sf_model._filter(spans, span_mask, filter_logits)
    finally:
        sf_model.config.hyper.pop("filter_threshold")

    assert kept == sum(len(rows) for rows in expected)
    assert packed.shape[1] == max(1, max(len(rows) for rows in expected))
    for row in range(2):
        assert [tuple(s) for s in packed[row][packed_mask[row]].tolist()] == expected[row]
        assert packed_mask[row].tolist() == [i < len(expected[row]) for i in range(packed.shape[1])]


def _one_example_batch(model):
    doc = Document.from_words(
        "d", ["Tomas", "Keller", "moved", "to", "Berlin", "."], sentence_lengths=[6]
    )
    return model.collate(model.prepare(doc))


@pytest.mark.parametrize(("bias", "all_kept"), [(20.0, True), (-20.0, False)])
def test_sf_forward_reports_spans_kept(sf_model, bias, all_kept):
    batch = _one_example_batch(sf_model)
    candidates = int(batch.span_mask.sum())
    saved = {k: v.clone() for k, v in sf_model.token_filter.state_dict().items()}
    sf_model.eval()
    try:
        with torch.no_grad():
            sf_model.token_filter.weight.zero_()
            sf_model.token_filter.bias.fill_(bias)
            output = sf_model(batch)
            predictions = sf_model.decode(output, batch)
    finally:
        sf_model.token_filter.load_state_dict(saved)
    assert output.stats["spans"] == candidates
    assert output.stats["spans_kept"] == (candidates if all_kept else 0)
    assert int(output.tensors["span_mask"].sum()) == output.stats["spans_kept"]
    if not all_kept:
        assert predictions[0].spans == []


# --------------------------------------------------------------------------- decoder layer
def _dense_reference(
    layer, start_q, end_q, spans, text, text_mask, word_pos=None, text_pos=None
) -> torch.Tensor:
    """Naive attention per span over [q_i, q_j, z_1..z_T] (padding dropped), per head, plus
    the position-to-position term on the text columns when the layer has it."""
    b_size, s_size, _ = spans.shape
    hidden = text.size(-1)
    d = layer.head_dim
    out = torch.zeros(b_size, s_size, 2, hidden)
    for b in range(b_size):
        z = layer.norm_text(text[b][text_mask[b]])  # (T', H)
        for s in range(s_size):
            i, j = spans[b, s].tolist()
            own = torch.stack([start_q[b, i], end_q[b, j]])  # (2, H)
            own_normed = layer.norm_query(own)
            sequence = torch.cat([own_normed, z])  # (2 + T', H)
            queries = layer.query(own_normed)
            keys, values = layer.key(sequence), layer.value(sequence)
            context = torch.zeros(2, hidden)
            for h in range(layer.heads):
                cols = slice(h * d, (h + 1) * d)
                scores = queries[:, cols] @ keys[:, cols].T / math.sqrt(d)
                if layer.position_bias:
                    pq = layer.position_query(layer.norm_position(word_pos[b, [i, j]]))
                    pk = layer.position_key(layer.norm_position(text_pos[text_mask[b]]))
                    scores[:, 2:] += pq[:, cols] @ pk[:, cols].T / math.sqrt(d)
                weights = torch.softmax(scores, -1)
                context[:, cols] = weights @ values[:, cols]
            out[b, s] = own + layer.out(context)
    return out


@pytest.mark.parametrize("position_bias", [False, True])
@pytest.mark.parametrize("heads", [1, 4])
def test_span_decoder_layer_equals_dense_attention(heads, position_bias):
    torch.manual_seed(0)
    hidden, words, length = 16, 6, 9
    layer = SpanDecoderLayer(hidden, heads, dropout=0.0, position_bias=position_bias).eval()
    with torch.no_grad():
        for param in layer.parameters():
            param.normal_(0.0, 0.4)
    m_start, m_end = torch.randn(hidden), torch.randn(hidden)
    positions = torch.randn(length, hidden)  # pos(0..T-1)
    word_starts = torch.tensor([[1, 2, 4, 5, 6, 7], [1, 3, 4, 0, 0, 0]])
    text = torch.randn(2, length, hidden)
    text_mask = torch.ones(2, length, dtype=torch.bool)
    text_mask[1, 5:] = False
    # Padding holds values that would dominate the attention if the mask were ignored.
    text[1, 5:] = 50.0 * torch.randn(length - 5, hidden)
    spans = torch.tensor(
        [
            [[0, 0], [0, 3], [2, 5], [4, 4], [1, 2]],
            [[2, 2], [0, 1], [1, 2], [2, 2], [0, 0]],
        ]
    )
    word_pos = positions[word_starts]  # (B, W, H)
    # The layer takes the spans packed: flat (start, last) word indices into the 2 x 6 words.
    packed = (spans + words * torch.arange(2).view(2, 1, 1)).flatten(0, 1)
    with torch.no_grad():
        got = layer(m_start, m_end, positions, word_starts, packed, text, text_mask)
        expected = _dense_reference(
            layer, m_start + word_pos, m_end + word_pos, spans, text, text_mask, word_pos, positions
        )
        # Training with dropout takes the unfused output path; a dropout that (almost)
        # never drops must give the same numbers through it.
        layer.train()
        layer.dropout = torch.nn.Dropout(1e-12)
        unfused = layer(m_start, m_end, positions, word_starts, packed, text, text_mask)
    torch.testing.assert_close(got.view(2, 5, 2, hidden), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(unfused.view(2, 5, 2, hidden), expected, atol=1e-5, rtol=1e-5)


def test_span_decoder_layer_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="divisible"):
        SpanDecoderLayer(10, 3, dropout=0.0, position_bias=True)


# --------------------------------------------------------------------------- span enumeration
def _brute_force_spans(sentences, max_length):
    return [
        (s, e)
        for a, b in sentences
        for s in range(a, b)
        for e in range(s + 1, b + 1)
        if e - s <= max_length
    ]


@pytest.mark.parametrize(
    ("sentences", "max_length"),
    [
        ([(0, 5)], 1),
        ([(0, 5)], 8),
        ([(0, 3), (3, 10), (12, 13)], 4),
        ([(2, 4), (4, 20)], 3),
    ],
)
def test_enumerate_spans_counts_and_bounds(sentences, max_length):
    spans = enumerate_spans(sentences, max_length)
    got = [tuple(span) for span in spans.tolist()]
    assert spans.dtype == torch.long and spans.shape == (len(got), 2)
    assert got == _brute_force_spans(sentences, max_length)
    expected_count = sum(sum(min(max_length, b - s) for s in range(a, b)) for a, b in sentences)
    assert len(got) == expected_count
    for s, e in got:
        assert 1 <= e - s <= max_length
        assert any(a <= s and e <= b for a, b in sentences), "a span crosses a sentence"


def test_enumerate_spans_without_sentences_is_empty():
    assert enumerate_spans([], 8).shape == (0, 2)
