"""Compact model directories: low-rank changes against the pretrained encoder."""

from __future__ import annotations

import torch

from nerx.io import read
from nerx.models import ModelConfig, load_model, model_class, save_model
from nerx.models.compact import (
    ALONG,
    DELTA,
    INT8,
    LEFT,
    compact_state,
    expand_state,
    low_rank,
)
from tests.conftest import SAMPLES


def test_low_rank_is_exact_for_a_low_rank_matrix_and_best_otherwise():
    torch.manual_seed(0)
    exact = torch.randn(128, 5) @ torch.randn(5, 96)
    left, right = low_rank(exact, 5)
    assert torch.allclose(left @ right, exact, atol=1e-4)
    noisy = torch.randn(128, 96)
    left, right = low_rank(noisy, 8)
    singular = torch.linalg.svdvals(noisy)
    # Eckart-Young: the error is exactly the energy in the dropped singular values.
    err = torch.linalg.matrix_norm(noisy - left @ right)
    assert torch.isclose(err, singular[8:].pow(2).sum().sqrt(), rtol=1e-4)


def test_compact_state_stores_changes_only_and_expands_back():
    torch.manual_seed(1)
    pretrained = {
        "encoder.big": torch.randn(128, 96),
        "encoder.bias": torch.randn(96),
        "encoder.frozen": torch.randn(128, 96),
    }
    change = torch.randn(128, 3) @ torch.randn(3, 96) * 0.01
    tuned = {
        "encoder.big": pretrained["encoder.big"] + change,
        "encoder.bias": pretrained["encoder.bias"] + 0.5,
        "encoder.frozen": pretrained["encoder.frozen"].clone(),
        "head.weight": torch.randn(4, 96),
        "head.big": torch.randn(128, 96),
    }
    stored = compact_state(tuned, pretrained, rank=4)
    assert DELTA + "encoder.big" + LEFT in stored
    assert not any("frozen" in k for k in stored)
    assert stored["head.weight"].dtype == torch.float16
    assert stored[INT8 + "head.big"].dtype == torch.int8 and "head.big" not in stored
    back = expand_state(stored, pretrained)
    for key, value in tuned.items():
        if key == "head.big":
            continue
        assert torch.allclose(back[key], value, atol=2e-3), key
    # int8 per row: off by at most half a step (plus the fp16 rounding of the row's scale).
    big = tuned["head.big"]
    step = big.abs().amax(dim=1, keepdim=True) / 127
    assert ((back["head.big"] - big).abs() <= step * 0.5 + step * 2e-3 * 127).all()
    assert not torch.allclose(back["head.big"], big, atol=1e-6)  # it is quantised


def test_weight_decay_shrink_is_stored_exactly_beside_the_low_rank_change():
    """Decay scales every weight; with that multiple fitted first, a decayed matrix plus a
    rank-3 change is recovered at rank 3, while the plain SVD of the change is not."""
    torch.manual_seed(2)
    base = torch.randn(256, 96)
    change = torch.randn(256, 3) @ torch.randn(3, 96) * 0.05
    tuned = {"encoder.big": 0.99 * base + change}
    stored = compact_state(tuned, {"encoder.big": base}, rank=3)
    back = expand_state(stored, {"encoder.big": base})["encoder.big"]
    assert torch.allclose(back, tuned["encoder.big"], atol=2e-3)
    plain_left, plain_right = low_rank(tuned["encoder.big"] - base, 3)
    plain_error = (base + plain_left @ plain_right - tuned["encoder.big"]).abs().max()
    assert plain_error > 10 * (back - tuned["encoder.big"]).abs().max()


def test_a_directory_without_the_fitted_multiple_still_expands():
    torch.manual_seed(3)
    base = torch.randn(128, 96)
    tuned = {"encoder.big": base + torch.randn(128, 2) @ torch.randn(2, 96) * 0.01}
    stored = compact_state(tuned, {"encoder.big": base}, rank=4)
    stored = {k: v for k, v in stored.items() if not k.endswith(ALONG)}  # an older directory
    back = expand_state(stored, {"encoder.big": base})["encoder.big"]
    assert torch.allclose(back, tuned["encoder.big"], atol=2e-3)


def test_compact_directory_gives_the_same_predictions(tiny_encoder, tmp_path):
    docs = [d.ensure_tokens() for d in read(str(SAMPLES / "news.jsonl"))]
    labels = sorted({e.label for d in docs for e in d.entities})
    config = ModelConfig(kind="spandec", labels=labels, encoder=tiny_encoder)
    torch.manual_seed(2)
    model = model_class("spandec").create(config)
    with torch.no_grad():  # as if fine-tuned: every encoder weight moves
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    full = save_model(model, tmp_path / "full")
    compact = save_model(model, tmp_path / "compact", rank=8)
    assert (compact / "model.safetensors").stat().st_size < (
        full / "model.safetensors"
    ).stat().st_size
    a, b = load_model(full), load_model(compact)
    assert b.config.weights == {"storage": "lowrank-delta", "rank": 8}
    batch = a.collate([ex for d in docs for ex in a.prepare(d)])
    with torch.no_grad():
        logits_a = a(batch).tensors["logits"]
        logits_b = b(batch).tensors["logits"]
    # fp16 storage: close, not bit-identical.
    assert torch.allclose(logits_a, logits_b, atol=5e-2)
    assert (logits_a.argmax(-1) == logits_b.argmax(-1)).float().mean() > 0.99
