"""Compact model directories: only what fine-tuning changed, against the pretrained encoder.

A full model directory holds every encoder weight (90 MB for MiniLM-L6). A compact one holds

* for each encoder matrix, the change fine-tuning made to it, as a multiple of the
  pretrained matrix plus a rank-``r`` product: ``W_tuned ~= (1 + a) W_pretrained + U @ V``.
  Weight decay shrinks every weight a little at every step, so part of each change is a
  multiple of the pretrained matrix, which no low rank holds (for the word embeddings, the
  30,000 rows that training never saw change by that alone). ``a`` is fitted first (least
  squares), then ``U @ V`` is the truncated SVD of what is left, in fp16;
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
#: The fitted multiple ``a`` of the pretrained matrix in a matrix's change (absent: 0).
ALONG = ".along"
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
            base = base.float().cpu()
            along = (change * base).sum() / (base * base).sum().clamp(min=1e-12)
            left, right = low_rank(change - along * base, rank)
            out[DELTA + key + LEFT] = left.half().contiguous()
            out[DELTA + key + RIGHT] = right.half().contiguous()
            out[DELTA + key + ALONG] = along.reshape(1)
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
        if key.endswith(RIGHT) or key.endswith(SCALE) or key.endswith(ALONG):
            continue
        if key.startswith(INT8):
            name = key[len(INT8) :]
            state[name] = tensor.float() * stored[key + SCALE].float()[:, None]
        elif key.startswith(DELTA):
            name = key[len(DELTA) :]
            if name.endswith(LEFT):
                name = name[: -len(LEFT)]
                change = tensor.float() @ stored[DELTA + name + RIGHT].float()
                along = stored.get(DELTA + name + ALONG)
                if along is not None:  # absent in directories written before it existed
                    change = change + along.float() * state[name].float()
            else:
                change = tensor.float()
            state[name] = (state[name].float() + change).to(state[name].dtype)
        else:
            target = pretrained.get(key)
            state[key] = tensor.to(target.dtype if target is not None else torch.float32)
    return state
