"""SeNER: the arrow attention pattern probed position by position, the banded CPU path against
the dense reference (with and without LogN), the vertical grouping of BiSPA, the extended
position table, whole long documents in one window, LoRA, decoding, and the model contract
(overfit two documents, save -> load)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import nerx.models.sener as sener
from nerx.doc import Document, TextPreparer
from nerx.errors import ConfigError
from nerx.io import read
from nerx.models import ModelConfig, load_model, model_class, save_model
from nerx.models.base import Batch, Output
from nerx.models.encoder import load_encoder
from nerx.models.sener import (
    BiSPABlock,
    arrow_layer,
    banded_arrow_attention,
    dense_arrow_attention,
    horizontal_index,
    logn_factor,
    span_validity,
    vertical_index,
)
from nerx.pipeline import predict_documents
from nerx.scoring import evaluate
from nerx.training import train
from tests.conftest import overfit_settings

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
LABELS = ["LOC", "MISC", "ORG", "PER"]


pytestmark = pytest.mark.usefixtures("one_thread")


def make_model(tiny_encoder: str, **hyper):
    config = ModelConfig(kind="sener", labels=LABELS, encoder=tiny_encoder, hyper=hyper)
    return model_class("sener").create(config).eval()


def allowed_by_definition(valid: list[bool], half: int) -> list[list[bool]]:
    """The arrow pattern, written out: [CLS] (position 0) sees every real token, every token
    sees [CLS], and the others see the real tokens at most ``half`` positions away."""
    n = len(valid)
    return [
        [valid[j] and (i == 0 or j == 0 or abs(i - j) <= half) for j in range(n)] for i in range(n)
    ]


def probe(outputs: torch.Tensor, inputs: torch.Tensor, row: int, dim: int = 1) -> list:
    """probed[i][j]: output position i of sequence ``row`` changes with input position j
    (a gradient probe); positions run along ``dim`` of both tensors."""
    n = outputs.size(dim)
    # A random weighting: a plain sum of a layer-normed vector is constant.
    weights = torch.randn(outputs.select(dim, 0)[row].shape)
    probed = []
    for i in range(n):
        picked = outputs.select(dim, i)[row]
        (grad,) = torch.autograd.grad((picked * weights).sum(), inputs, retain_graph=True)
        probed.append([bool(grad[row].select(dim - 1, j).abs().sum() > 0) for j in range(n)])
    return probed


# --------------------------------------------------------------------------- arrow attention
@pytest.mark.parametrize(("n", "half"), [(11, 1), (13, 2), (16, 3), (7, 0), (6, 8)])
def test_banded_attention_follows_the_arrow_pattern(n, half):
    torch.manual_seed(0)
    q, k = torch.randn(2, 2, n, 4), torch.randn(2, 2, n, 4)
    v = torch.randn(2, 2, n, 4, requires_grad=True)
    valid = torch.ones(2, n, dtype=torch.bool)
    valid[1, n - 2 :] = False  # the second sequence ends in padding
    out = banded_arrow_attention(q, k, v, valid, half, torch.tensor([1.0, 1.5]))
    for row in range(2):
        # Output i depends on value j exactly when i may attend to j.
        probed = probe(out, v, row, dim=2)
        assert probed == allowed_by_definition(valid[row].tolist(), half)


def test_encoder_layer_follows_the_arrow_pattern(tiny_encoder):
    model = make_model(tiny_encoder, attention_window=4)  # two tokens on each side
    n = 12
    torch.manual_seed(1)
    hidden = torch.randn(1, n, 32, requires_grad=True)
    valid = torch.ones(1, n, dtype=torch.bool)
    valid[0, 10:] = False
    out = arrow_layer(model._layers[0], hidden, valid, model.half_window, torch.tensor([1.3]))
    probed = probe(out, hidden, 0)
    expected = allowed_by_definition(valid[0].tolist(), 2)
    # Through a whole layer, a padded position still feeds itself (residual, FFN).
    for i in range(10, n):
        expected[i][i] = True
    assert probed == expected


@pytest.mark.parametrize("logn_base", [None, 4])
def test_banded_attention_equals_the_dense_reference(logn_base):
    torch.manual_seed(2)
    n = 23
    q, k, v = (torch.randn(2, 3, n, 8) for _ in range(3))
    valid = torch.ones(2, n, dtype=torch.bool)
    valid[1, 17:] = False
    lengths = valid.sum(1)
    scale = torch.ones(2) if logn_base is None else logn_factor(lengths, logn_base)
    if logn_base is not None:
        assert scale.tolist() == pytest.approx(
            [math.log(23) / math.log(4), math.log(17) / math.log(4)]
        )
    for half in (0, 1, 3, 5, 30):
        got = banded_arrow_attention(q, k, v, valid, half, scale)
        expected = dense_arrow_attention(q, k, v, valid, half, scale)
        torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got[1, :, :17], expected[1, :, :17], atol=1e-5, rtol=1e-5)


def test_logn_scaling_changes_only_the_cls_row():
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, 2, 20, 8) for _ in range(3))
    valid = torch.ones(1, 20, dtype=torch.bool)
    plain = banded_arrow_attention(q, k, v, valid, 2, torch.ones(1))
    scaled = banded_arrow_attention(q, k, v, valid, 2, torch.tensor([2.0]))
    assert not torch.allclose(plain[:, :, 0], scaled[:, :, 0])
    torch.testing.assert_close(plain[:, :, 1:], scaled[:, :, 1:])
    # Scaling [CLS]'s logits by 2 is attending with a query twice as long.
    doubled = dense_arrow_attention(q * 2, k, v, valid, 2, torch.ones(1))
    torch.testing.assert_close(scaled[:, :, 0], doubled[:, :, 0], atol=1e-5, rtol=1e-5)


def test_logn_factor_is_log_n_over_log_base_above_the_base():
    got = logn_factor(torch.tensor([1, 100, 512, 1024, 16384]), 512).tolist()
    expected = [1.0, 1.0, 1.0, math.log(1024) / math.log(512), math.log(16384) / math.log(512)]
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("logn", [False, True])
def test_model_encoder_banded_equals_dense(tiny_encoder, monkeypatch, logn):
    # logn_base 4: the 14-token input is "long", so LogN is active when switched on.
    model = make_model(tiny_encoder, attention_window=4, logn_scaling=logn, logn_base=4)
    doc = Document.from_words(
        "d", ["Maria", "Lindqvist", "works", "at", "the", "University", "of", "Oslo", "."]
    )
    short = Document.from_words("e", ["Bergen", "is", "rainy", "."])
    batch = model.collate(model.prepare(doc) + model.prepare(short, 1))
    with torch.no_grad():
        banded = model.encode(batch)

        def dense(q, k, v, valid, half, scale, dropout=0.0):
            if logn:
                assert scale[0] > 1.0 and scale[1] > 1.0
            return dense_arrow_attention(q, k, v, valid, half, scale)

        monkeypatch.setattr(sener, "arrow_attention", dense)
        reference = model.encode(batch)
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(banded[mask], reference[mask], atol=1e-5, rtol=1e-5)


def test_arrow_encoder_with_a_wide_window_is_the_plain_encoder(tiny_encoder):
    """A band wider than the input is full attention: the encoder's own forward pass."""
    model = make_model(tiny_encoder, attention_window=1000, logn_scaling=False)
    doc = Document.from_words(
        "d", ["Maria", "Lindqvist", "works", "at", "the", "University", "of", "Oslo", "."]
    )
    short = Document.from_words("e", ["Bergen", "is", "rainy", "."])
    batch = model.collate(model.prepare(doc) + model.prepare(short, 1))
    with torch.no_grad():
        ours = model.encode(batch)
        theirs = model.encoder(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask
        ).last_hidden_state
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(ours[mask], theirs[mask], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- BiSPA
def test_vertical_index_gathers_the_spans_that_share_an_end():
    index, valid = vertical_index(4, 3)
    width = 3
    # Grid position i * width + k holds span (i, i + k), last word inclusive.
    got = [
        [(p // width, p // width + p % width) for p, ok in zip(row, oks, strict=True) if ok]
        for row, oks in zip(index.tolist(), valid.tolist(), strict=True)
    ]
    assert got == [
        [(0, 0)],
        [(1, 1), (0, 1)],
        [(2, 2), (1, 2), (0, 2)],
        [(3, 3), (2, 3), (1, 3)],
    ]


def test_horizontal_index_undoes_the_vertical_grouping():
    n, width = 6, 4
    grid = torch.arange(n * width)
    index, _ = vertical_index(n, width)
    back, real = horizontal_index(n, width)
    by_end = grid[index.view(-1)]
    restored = by_end[back.view(-1)].view(n, width)
    expected = [[i * width + k for k in range(width)] for i in range(n)]
    for i in range(n):
        for k in range(width):
            assert bool(real[i, k]) == (i + k < n)
            if i + k < n:
                assert restored[i, k].item() == expected[i][k]


def test_bispa_block_mixes_spans_sharing_a_start_or_an_end():
    n, width, size = 5, 3, 8
    torch.manual_seed(4)
    block = BiSPABlock(size, heads=2, dropout=0.0).eval()
    grid = torch.randn(1, n, width, size, requires_grad=True)
    valid = span_validity([_FakeExample([(0, 3), (3, 5)])], n, width)
    out = block(grid, valid)
    spans = [(i, k) for i in range(n) for k in range(width) if valid[0, i, k]]
    assert spans == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (3, 0), (3, 1), (4, 0)]
    weights = torch.randn(size)
    for i, k in spans:
        (grad,) = torch.autograd.grad((out[0, i, k] * weights).sum(), grid, retain_graph=True)
        # Over the whole grid: spans across sentences or past the end must not leak in.
        seen = {(a, c) for a in range(n) for c in range(width) if grad[0, a, c].abs().sum() > 0}
        expected = {(a, c) for a, c in spans if a == i or a + c == i + k}
        assert seen == expected, (i, k)


class _FakeExample:
    def __init__(self, sentences):
        self.sentences = sentences


def test_span_validity_keeps_spans_inside_one_sentence():
    valid = span_validity([_FakeExample([(0, 2), (2, 5)]), _FakeExample([(1, 3)])], 6, 3)
    got = [[(i, i + k) for i in range(6) for k in range(3) if valid[row, i, k]] for row in range(2)]
    assert got == [
        [(0, 0), (0, 1), (1, 1), (2, 2), (2, 3), (2, 4), (3, 3), (3, 4), (4, 4)],
        [(1, 1), (1, 2), (2, 2)],
    ]


# --------------------------------------------------------------------------- positions, windows
def test_positions_beyond_the_table_copy_the_learned_rows(tiny_encoder):
    pretrained = load_encoder(tiny_encoder).embeddings.position_embeddings.weight
    assert pretrained.size(0) == 128
    model = make_model(tiny_encoder, max_length=300)
    table = model.encoder.embeddings.position_embeddings.weight
    assert table.shape == (300, pretrained.size(1))
    for p in range(300):
        # Rows 1..127 repeat; row 0 stays [CLS]'s alone.
        source = p if p < 128 else 1 + (p - 128) % 127
        assert torch.equal(table[p], pretrained[source]), p
    assert model.window_size == 300


def _long_document(words: int) -> Document:
    sentence = [
        "Maria",
        "Lindqvist",
        "moved",
        "from",
        "Bergen",
        "to",
        "the",
        "University",
        "of",
        "Oslo",
        ".",
    ]
    count = -(-words // len(sentence))
    return Document.from_words("long", sentence * count, sentence_lengths=[len(sentence)] * count)


def test_a_long_document_is_one_window(tiny_encoder):
    model = make_model(tiny_encoder, max_length=1024)
    doc = _long_document(400)
    examples = model.prepare(doc)
    assert len(examples) == 1
    assert len(examples[0].input_ids) > 128  # past the tiny encoder's own positions
    assert examples[0].n_words == len(doc.tokens)
    assert examples[0].focus == (0, len(doc.tokens))
    # The same document is cut into windows for a model on the plain encoder.
    plain = model_class("spandec").create(
        ModelConfig(kind="spandec", labels=LABELS, encoder=tiny_encoder)
    )
    assert len(plain.prepare(doc)) > 1
    batch = model.collate(examples)
    with torch.no_grad():
        output = model(batch)
    assert output.tensors["logits"].shape[:3] == (1, len(doc.tokens), 8)
    assert torch.isfinite(output.tensors["logits"]).all()


# --------------------------------------------------------------------------- decoding
def test_decode_nested_and_flat(tiny_encoder):
    model = make_model(tiny_encoder, max_span_width=3)
    n, width = 6, 3
    logits = torch.zeros(1, n, width, 1 + len(LABELS))
    logits[..., 0] = 5.0  # O everywhere ...
    hits = {(0, 2): (4, 8.0), (1, 0): (1, 7.0), (3, 1): (1, 6.0), (4, 1): (3, 9.0)}
    for (i, k), (label, margin) in hits.items():  # ... except these (start, width - 1)
        logits[0, i, k, label] = margin
    valid = span_validity([_FakeExample([(0, 6)])], n, width)
    valid[0, 1, 0] = True
    output = Output(tensors={"logits": logits, "span_valid": valid})
    batch = Batch(examples=[None])

    model.config.hyper["nested"] = True
    nested = [(s.start, s.end, s.label) for s in model.decode(output, batch)[0].spans]
    assert nested == [(0, 3, "PER"), (1, 2, "LOC"), (3, 5, "LOC"), (4, 6, "ORG")]
    score = model.decode(output, batch)[0].spans[0].score
    assert score == pytest.approx(math.exp(8.0) / (math.exp(8.0) + math.exp(5.0) + 3))

    model.config.hyper["nested"] = False
    flat = [(s.start, s.end, s.label) for s in model.decode(output, batch)[0].spans]
    # Most confident first: ORG (4, 6) at 9, PER (0, 3) at 8; both LOCs overlap one of them.
    assert flat == [(0, 3, "PER"), (4, 6, "ORG")]


def test_bad_settings_are_config_errors(tiny_encoder):
    with pytest.raises(ConfigError, match="divisible"):
        make_model(tiny_encoder, span_hidden=30, bispa_heads=4)
    with pytest.raises(ConfigError, match="max_span_width"):
        make_model(tiny_encoder, max_span_width=0)


# --------------------------------------------------------------------------- LoRA
def test_lora_trains_adapters_and_heads_only(tiny_encoder, tmp_path):
    full = make_model(tiny_encoder)
    model = make_model(tiny_encoder, lora_rank=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora = {n for n in trainable if n.endswith(("lora_a", "lora_b"))}
    assert len(lora) == 2 * 4 * 2  # (A, B) x (q, k, v, out) x 2 layers
    assert trainable - lora == {n for n in trainable if not n.startswith("encoder.")}
    assert lora <= model.head_parameter_names()
    assert not any(n.startswith("encoder.") for n in full.head_parameter_names())

    doc = Document.from_words(
        "d", ["Maria", "Lindqvist", "works", "at", "the", "University", "of", "Oslo", "."]
    )
    batch = model.collate(model.prepare(doc))
    with torch.no_grad():  # B starts at zero: the adapted encoder is the pretrained one
        torch.testing.assert_close(model.encode(batch), full.encode(batch))

    docs = _overfit_docs()
    train(
        docs,
        docs,
        kind="sener",
        encoder=tiny_encoder,
        output=tmp_path,
        settings=overfit_settings(epochs=3, hyper={"dropout": 0.0, "lora_rank": 2}),
    )
    tuned = load_model(tmp_path)
    state = tuned.state_dict()
    for name, value in full.state_dict().items():
        if name.startswith("encoder."):
            assert torch.equal(state[name], value), name
    assert any(state[n].abs().sum() > 0 for n in lora if n.endswith("lora_b"))
    TextPreparer()(docs)
    before = _rows(predict_documents(tuned, docs))
    again = _rows(predict_documents(load_model(save_model(tuned, tmp_path / "copy")), docs))
    assert again == before


# --------------------------------------------------------------------------- the contract
def _overfit_docs() -> list[Document]:
    docs = {doc.id: doc for doc in read(SAMPLES / "news.jsonl")}
    return [docs["news-001"], docs["news-002"]]


def _rows(docs: list[Document]) -> list[list[tuple]]:
    return [[(e.start, e.end, e.label, round(e.score, 6)) for e in doc.entities] for doc in docs]


@pytest.fixture(scope="module")
def overfit(tiny_encoder, tmp_path_factory):
    docs = _overfit_docs()
    out = tmp_path_factory.mktemp("overfit-sener")
    train(docs, docs, kind="sener", encoder=tiny_encoder, output=out, settings=overfit_settings())
    return out, docs


def test_overfits_two_documents_with_the_nested_span(overfit):
    out, docs = overfit
    model = load_model(out)
    assert model.kind == "sener" and model.config.hyper["nested"] is True
    TextPreparer()(docs)
    predicted = predict_documents(model, docs)
    assert evaluate(docs, predicted).entities.f1 == 1.0
    assert all(0.0 < e.score <= 1.0 for doc in predicted for e in doc.entities)
    first = predicted[0]
    found = {(first.text[e.start : e.end], e.label) for e in first.entities}
    assert {("University of Oslo", "ORG"), ("Oslo", "LOC")} <= found


def test_save_then_load_predicts_the_same(overfit, tmp_path):
    out, docs = overfit
    model = load_model(out)
    TextPreparer()(docs)
    before = predict_documents(model, docs)
    reloaded = load_model(save_model(model, tmp_path / "copy"))
    assert reloaded.config == model.config
    assert reloaded.window_size == model.window_size
    after = predict_documents(reloaded, docs)
    assert any(doc.entities for doc in before)
    assert _rows(after) == _rows(before)
    state, loaded = model.state_dict(), reloaded.state_dict()
    assert state.keys() == loaded.keys()
    assert all(torch.equal(state[k], loaded[k]) for k in state)


def test_documents_shorter_than_the_widest_span_train_and_predict(tiny_encoder):
    # Fewer words than max_span_width (8): the span grid is wider than the text.
    from nerx.doc import Entity, tokenize

    model = make_model(tiny_encoder).train()
    texts = ["Anna lives in Oslo .", "Tomas flew home ."]
    docs = [
        Document(id=str(i), text=t, tokens=tokenize(t), entities=[Entity(0, 5, "PER")])
        for i, t in enumerate(texts)
    ]
    examples = [ex for i, doc in enumerate(docs) for ex in model.prepare(doc, i, gold=True)]
    output = model(model.collate(examples))
    output.loss.backward()
    assert torch.isfinite(output.loss)
    with torch.no_grad():
        predictions = model.eval().predict(model.collate(examples))
    assert len(predictions) == 2
