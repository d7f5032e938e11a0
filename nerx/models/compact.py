"""Compact model directories: only what fine-tuning changed, against the pretrained encoder.

A full model directory holds every encoder weight (90 MB for MiniLM-L6). A compact one holds

* for each encoder matrix, the change fine-tuning made to it, as a rank-``r`` product
  ``U @ V`` (truncated SVD of ``W_tuned - W_pretrained``), in fp16;
* for each encoder vector (biases, norms) and small matrix, the full change, in fp16;
* every new parameter (heads, decoders) as it is, in fp16, except large new matrices (both
  sides at least ``LOW_RANK_MIN_SIDE``), which are stored in int8 with one fp16 scale per
  row (symmetric, round to nearest): half the bytes of fp16, and an error per weight of at
  most half a step, ``max|row| / 254``.

Loading rebuilds the model on the pretrained encoder (which must be installed or reachable,
as ``minilm`` always is) and adds the changes back. ``config.json`` records it under
``weights``, so :func:`nerx.models.load_model` reads both kinds of directory.
"""

from __future__ import annotations

import torch

#: Matrices with both sides at least this long are stored as low-rank changes.
LOW_RANK_MIN_SIDE = 64
DELTA = "delta."
LEFT, RIGHT = ".left", ".right"
INT8, SCALE = "int8.", ".scale"


def compact_state(
    tuned: dict[str, torch.Tensor],
    pretrained: dict[str, torch.Tensor],
    rank: int,
) -> dict[str, torch.Tensor]:
    """The tensors of a compact directory: ``tuned`` minus ``pretrained`` for shared keys,
    low rank where it pays; keys only in ``tuned`` are kept whole."""
    out: dict[str, torch.Tensor] = {}
    for key, weight in tuned.items():
        weight = weight.detach().float().cpu()
        base = pretrained.get(key)
        if base is None or base.shape != weight.shape:
            if weight.ndim == 2 and min(weight.shape) >= LOW_RANK_MIN_SIDE:
                out[INT8 + key], out[INT8 + key + SCALE] = quantize_rows(weight)
            else:
                out[key] = weight.half()
            continue
        change = weight - base.float().cpu()
        if not change.any():
            continue  # frozen: nothing to store
        if change.ndim == 2 and min(change.shape) >= LOW_RANK_MIN_SIDE and rank < min(change.shape):
            left, right = low_rank(change, rank)
            out[DELTA + key + LEFT] = left.half().contiguous()
            out[DELTA + key + RIGHT] = right.half().contiguous()
        else:
            out[DELTA + key] = change.half()
    return out


def low_rank(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``left @ right`` is the best rank-``rank`` approximation of ``matrix`` (Eckart-Young)."""
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return u[:, :rank] * s[:rank], vh[:rank]


def quantize_rows(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: ``matrix ~= values * scale[:, None]``."""
    scale = matrix.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    values = torch.round(matrix / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return values.contiguous(), scale.half()


def expand_state(
    stored: dict[str, torch.Tensor], pretrained: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The full state dict: ``pretrained`` plus the stored changes, and the stored heads."""
    # Every changed tensor below is a new one, so the pretrained ones are shared, not copied
    # (a copy of the whole encoder cost a noticeable part of loading a bundled model).
    state = dict(pretrained)
    for key, tensor in stored.items():
        if key.endswith(RIGHT) or key.endswith(SCALE):
            continue
        if key.startswith(INT8):
            name = key[len(INT8) :]
            state[name] = tensor.float() * stored[key + SCALE].float()[:, None]
        elif key.startswith(DELTA):
            name = key[len(DELTA) :]
            if name.endswith(LEFT):
                name = name[: -len(LEFT)]
                change = tensor.float() @ stored[DELTA + name + RIGHT].float()
            else:
                change = tensor.float()
            state[name] = (state[name].float() + change).to(state[name].dtype)
        else:
            target = pretrained.get(key)
            state[key] = tensor.to(target.dtype if target is not None else torch.float32)
    return state
