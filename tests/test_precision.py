"""Mixed precision on every model kind, without a GPU: bf16 autocast on the CPU runs the same
casts as on a GPU, so dtype errors in custom attention, gathers and masks show up here. Every
kind trains under bf16 with finite losses and gradients, decodes, and a model overfit in fp32
predicts the same entities (and relations) under bf16. SeNER's FlexAttention path (compiled,
forward only on a CPU) is checked against its banded CPU path; tests marked ``gpu`` run the
same on CUDA, gradients included (``benchmarks/gpu_check.sh`` runs them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import nerx.models.sener as sener
from nerx.doc import Document, TextPreparer
from nerx.models import MODELS, ModelConfig, load_model, model_class
from nerx.pipeline import predict_documents
from nerx.runtime import autocast, resolve_precision
from nerx.training import RUN_CONFIG_NAME, train
from tests.conftest import FLAT_KINDS, overfit_docs, overfit_settings

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
KINDS = sorted(MODELS)
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


def rows(docs: list[Document]) -> list[tuple[list, list]]:
    """Per document: entities (start, end, label) and relations (head span, tail span, label)."""
    found = []
    for doc in docs:
        spans = [(e.start, e.end, e.label) for e in doc.entities]
        relations = sorted((spans[r.head], spans[r.tail], r.label) for r in doc.relations)
        found.append((sorted(spans), relations))
    return found


# --------------------------------------------------------------------------- precision names
def test_auto_precision_is_fp32_on_a_cpu_and_bf16_asked_for_is_bf16():
    assert resolve_precision("auto", CPU) == "fp32"
    assert resolve_precision("bf16", CPU) == "bf16"
    assert resolve_precision("auto", torch.device("cuda", 0)) == "bf16"
    with autocast(CPU, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(CPU, "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


# --------------------------------------------------------------------------- every kind
@pytest.mark.parametrize("kind", KINDS)
def test_a_bf16_step_has_finite_loss_and_gradients_and_decodes(kind, tiny_encoder):
    docs = overfit_docs(kind)
    TextPreparer()(docs)
    config = ModelConfig(
        kind=kind,
        labels=sorted({e.label for d in docs for e in d.entities}),
        relation_labels=sorted({r.label for d in docs for r in d.relations}),
        encoder=tiny_encoder,
        hyper={"nested": kind not in FLAT_KINDS},
    )
    model = model_class(kind).create(config)
    examples = [ex for i, doc in enumerate(docs) for ex in model.prepare(doc, i, gold=True)]
    model.config.hyper.update(model.learn_from_data(examples))
    dtypes: set[torch.dtype] = set()
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: (
            dtypes.add(out.dtype)
            if isinstance(module, torch.nn.Linear) and torch.is_tensor(out)
            else None
        )
    )
    try:
        model.train()
        batch = model.collate(examples)
        with autocast(CPU, "bf16"):
            loss = model(batch).loss
        assert torch.bfloat16 in dtypes  # autocast reached the model's layers
        assert torch.isfinite(loss)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert all(p.grad.dtype == p.dtype for p in model.parameters() if p.grad is not None)

        model.eval()
        unlabelled = [ex for i, doc in enumerate(docs) for ex in model.prepare(doc, i)]
        batch = model.collate(unlabelled)
        with torch.inference_mode(), autocast(CPU, "bf16"):
            predictions = model.predict(batch)
    finally:
        hook.remove()
    assert len(predictions) == len(unlabelled)
    for prediction in predictions:
        assert all(0.0 <= s.score <= 1.0 and not math.isnan(s.score) for s in prediction.spans)
        assert all(0.0 <= r[3] <= 1.0 for r in prediction.relations)


@pytest.mark.parametrize("kind", KINDS)
def test_training_under_bf16_keeps_finite_losses(kind, tiny_encoder, tmp_path):
    docs = overfit_docs(kind)
    losses: list[float] = []
    train(
        docs,
        docs,
        kind=kind,
        encoder=tiny_encoder,
        output=tmp_path,
        settings=overfit_settings(epochs=4, precision="bf16"),
        on_step=lambda p: losses.append(p.loss),
    )
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)
    config = json.loads((tmp_path / RUN_CONFIG_NAME).read_text(encoding="utf-8"))
    assert config["precision"] == "bf16"


def test_a_model_overfit_in_fp32_predicts_the_same_under_bf16(overfit):
    kind, out, docs = overfit
    model = load_model(out)
    TextPreparer()(docs)
    full = predict_documents(model, docs, precision="fp32")
    half = predict_documents(model, docs, precision="bf16")
    # The fp32 model did overfit (so there is something to agree on).
    assert [spans for spans, _ in rows(full)] == [spans for spans, _ in rows(docs)]
    assert rows(half) == rows(full)
    for a, b in zip(full, half, strict=True):
        # bf16 keeps 8 bits of mantissa: scores agree to a few hundredths.
        assert [e.score for e in b.entities] == pytest.approx(
            [e.score for e in a.entities], abs=0.05
        )


# --------------------------------------------------------------------------- SeNER's flex path
def _sener_batch(tiny_encoder: str):
    config = ModelConfig(
        kind="sener",
        labels=["LOC", "ORG", "PER"],
        encoder=tiny_encoder,
        hyper={"attention_window": 4, "logn_scaling": True, "logn_base": 4},
    )
    model = model_class("sener").create(config).eval()
    doc = Document.from_words(
        "d", ["Maria", "Lindqvist", "works", "at", "the", "University", "of", "Oslo", "."]
    )
    short = Document.from_words("e", ["Bergen", "is", "rainy", "."])
    return model, model.collate(model.prepare(doc) + model.prepare(short, 1))


def _use_flex(monkeypatch) -> None:
    def flex(q, k, v, valid, half, scale, dropout=0.0):
        return sener.flex_arrow_attention(q, k, v, valid, half, scale)

    monkeypatch.setattr(sener, "arrow_attention", flex)


def test_sener_flex_attention_on_cpu_matches_the_banded_path(tiny_encoder, monkeypatch):
    """Compiled FlexAttention with its block mask, forward (torch has no CPU backward for it):
    the whole encoder and the span logits against the banded path, padding included."""
    model, batch = _sener_batch(tiny_encoder)
    with torch.no_grad():
        banded = model.encode(batch)
        banded_logits = model(batch).tensors
        _use_flex(monkeypatch)
        flex = model.encode(batch)
        flex_logits = model(batch).tensors
    mask = batch.attention_mask.bool()
    torch.testing.assert_close(flex[mask], banded[mask], atol=1e-4, rtol=1e-4)
    for name, value in banded_logits.items():
        if torch.is_tensor(value) and value.is_floating_point():
            torch.testing.assert_close(flex_logits[name], value, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- on a GPU
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_sener_flex_attention_on_cuda_matches_banded_with_gradients():
    torch.manual_seed(0)
    cuda = torch.device("cuda")
    b, h, n, d = 2, 2, 300, 16
    q, k, v = (torch.randn(b, h, n, d, device=cuda, requires_grad=True) for _ in range(3))
    valid = torch.ones(b, n, dtype=torch.bool, device=cuda)
    valid[1, 200:] = False
    scale = torch.tensor([1.0, 1.5], device=cuda)
    flex = sener.flex_arrow_attention(q, k, v, valid, 8, scale)
    flex_grads = torch.autograd.grad(flex[valid[:, None].expand(-1, h, -1)].sum(), (q, k, v))
    banded = sener.banded_arrow_attention(q, k, v, valid, 8, scale)
    banded_grads = torch.autograd.grad(banded[valid[:, None].expand(-1, h, -1)].sum(), (q, k, v))
    keep = valid[:, None].expand(-1, h, -1)
    torch.testing.assert_close(flex[keep], banded[keep], atol=2e-3, rtol=2e-3)
    for got, expected in zip(flex_grads, banded_grads, strict=True):
        torch.testing.assert_close(got[keep], expected[keep], atol=2e-3, rtol=2e-3)


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_training_on_cuda_under_bf16_keeps_finite_losses(kind, tiny_encoder, tmp_path):
    docs = overfit_docs(kind)
    losses: list[float] = []
    train(
        docs,
        docs,
        kind=kind,
        encoder=tiny_encoder,
        output=tmp_path,
        settings=overfit_settings(epochs=4, device="cuda", precision="bf16"),
        on_step=lambda p: losses.append(p.loss),
    )
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses)


# --------------------------------------------------------------------------- the CLI
def test_extract_takes_a_precision(model_dir):
    from typer.testing import CliRunner

    from nerx.cli import app

    news = str(SAMPLES / "news.jsonl")
    runner = CliRunner()
    found = {}
    for precision in ("fp32", "bf16"):
        result = runner.invoke(
            app, ["extract", news, "--model", str(model_dir), "--precision", precision]
        )
        assert result.exit_code == 0, result.stderr
        found[precision] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["id"] for d in found["bf16"]] == [d["id"] for d in found["fp32"]]
    assert any(d["entities"] for d in found["bf16"])

    wrong = runner.invoke(app, ["extract", news, "--model", str(model_dir), "--precision", "x"])
    assert wrong.exit_code == 2
    assert "unknown precision 'x'" in wrong.stderr and "Traceback" not in wrong.stderr
