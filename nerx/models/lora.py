"""LoRA: low-rank adapters on chosen linear layers of a pretrained network, the rest frozen.

``W x + b`` becomes ``W x + b + (alpha / r) * B A x`` with ``A`` (r x in) random and ``B``
(out x r) zero, so an adapted network starts out computing exactly what it computed before
(Hu et al., 2021). :class:`LoRALinear` *is* an ``nn.Linear`` that keeps the original
``weight`` and ``bias`` parameters under their own names, so a state dict gains only
``lora_a`` / ``lora_b`` keys and code that looks for ``nn.Linear`` layers still finds them.

``A`` is drawn from a generator seeded by the layer's name, so every freshly built model has
the same adapters: compact model directories (:mod:`nerx.models.compact`) store changes
against a freshly built model, and rebuild it on load.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nerx.errors import ConfigError

#: The names of LoRA's own parameters; everything else in an adapted network is frozen.
LORA_PARAMETERS = ("lora_a", "lora_b")


class LoRALinear(nn.Linear):
    """A linear layer plus a trainable rank-``rank`` update; the base weights are frozen."""

    def __init__(
        self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, *, seed: int = 0
    ) -> None:
        if rank < 1:
            raise ConfigError(f"LoRA rank must be at least 1, got {rank}", hint="use lora_rank 8")
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None)
        # Share the base parameters themselves (not copies): the adapted layer is the layer.
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, **factory))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, **factory))
        generator = torch.Generator(device=self.lora_a.device).manual_seed(seed)
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5), generator=generator)
        self.scaling = alpha / rank
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)
        return F.linear(x, self.weight, self.bias) + self.scaling * update


def add_lora(
    module: nn.Module,
    targets: Iterable[str],
    rank: int,
    *,
    alpha: float | None = None,
    dropout: float = 0.0,
) -> list[str]:
    """Freeze every parameter of ``module`` and put a LoRA adapter on each ``nn.Linear`` whose
    qualified name ends with one of ``targets`` (e.g. ``attention.self.query``). ``alpha``
    defaults to ``2 * rank``. Returns the adapted layers' names; none found is an error."""
    targets = tuple(targets)
    for param in module.parameters():
        param.requires_grad_(False)
    chosen = [
        name
        for name, child in module.named_modules()
        if isinstance(child, nn.Linear) and not isinstance(child, LoRALinear)
        if any(name == t or name.endswith("." + t) for t in targets)
    ]
    if not chosen:
        raise ConfigError(
            f"no linear layer of {type(module).__name__} matches {', '.join(targets)}",
            hint="LoRA here adapts BERT-like attention projections",
        )
    for name in chosen:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        base = getattr(parent, attr)
        seed = zlib.crc32(name.encode("utf-8"))
        setattr(parent, attr, LoRALinear(base, rank, alpha or 2.0 * rank, dropout, seed=seed))
    return chosen


def is_lora_parameter(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in LORA_PARAMETERS
