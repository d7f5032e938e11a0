"""What a training run can be told: :class:`TrainSettings`, the one place of every default.

Kept apart from the training loop so the command line reads names, defaults and help texts
without importing torch. Some settings suit one model kind better than another (a larger
learning rate for a model with more new weights, more epochs for a slow starter): those are
*per-kind* fields. Left at ``None`` they mean "not given", and :meth:`TrainSettings.for_kind`
resolves them, in this order: the value given > the kind's ``training_defaults``
(:attr:`nerx.models.base.SpanModel.training_defaults`) > the default written here.

>>> settings = TrainSettings(epochs=5).for_kind("spandec")
>>> settings.epochs, settings.learning_rate    # 5 as given; the kind's or the base default
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from nerx.errors import ConfigError

#: Without a dev file: the fraction of the training documents held out as dev.
DEFAULT_DEV_SPLIT = 0.1


def per_kind(default: Any, help: str, **limits: Any) -> Any:
    """A field whose default a model kind may change: ``None`` until resolved by
    :meth:`TrainSettings.for_kind`; ``default`` is used when the kind says nothing.
    ``limits`` (``min``, ``max``) are checked on the resolved value and shown by the CLI."""
    return field(default=None, metadata={"default": default, "help": help, **limits})


def setting(default: Any, help: str, **limits: Any) -> Any:
    """A field with one default for every kind, documented for ``--help``."""
    return field(default=default, metadata={"help": help, **limits})


@dataclass
class TrainSettings:
    epochs: int | None = per_kind(3, "Passes over the training data.", min=1)
    batch_size: int | None = per_kind(
        16, "Windows per optimisation step, over all processes together.", min=1
    )
    learning_rate: float | None = per_kind(5e-5, "Learning rate of the encoder.", min=0.0)
    head_lr_multiplier: float | None = per_kind(
        10.0, "Learning rate multiplier of the new heads.", min=0.0
    )
    weight_decay: float | None = per_kind(
        0.01, "AdamW weight decay (not on biases and norms).", min=0.0
    )
    warmup: float | None = per_kind(0.1, "Fraction of steps spent warming up.", min=0.0, max=1.0)
    heads_first: float | None = per_kind(
        0.0,
        "Fraction of steps at the start in which only the new heads train (the encoder waits).",
        min=0.0,
        max=1.0,
    )
    schedule: str | None = per_kind(
        "linear", "Learning-rate schedule after warmup: linear or onecycle."
    )
    max_grad_norm: float | None = per_kind(1.0, "Gradients are clipped to this norm.", min=0.0)
    seed: int = setting(13, "Random seed (also of the --dev-split hold-out).")
    patience: int | None = per_kind(
        2, "Stop after this many epochs without a better dev score.", min=1
    )
    keep: str = setting(
        "best",
        "The epoch saved: best (the best dev score, stopping early at --patience) or last "
        "(every epoch, all --epochs; dev is only scored, e.g. when DEV is part of TRAIN).",
    )
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.")
    eval_batch_size: int | None = per_kind(64, "Windows per forward pass when scoring dev.", min=1)
    max_span_length: int | None = per_kind(8, "Longest candidate span, in words.", min=1)
    window: int | None = setting(
        None,
        "Subwords per window (default: the encoder's maximum). Smaller windows train faster.",
        min=16,
        cli_only=True,  # the library takes smaller windows (tests cut long text with them)
    )
    hyper: dict[str, Any] = field(default_factory=dict)
    #: Relation labels without direction (``(a, b)`` is ``(b, a)``): predicted and written once.
    symmetric_relations: list[str] = field(default_factory=list)
    lang: str = setting("en", "Language of the spaCy tokenizer for raw text.")
    precision: str = setting(
        "auto", "auto (bf16 on GPU, fp32 on CPU), bf16 or fp32: autocast of every step."
    )
    grad_accum: int = setting(
        1, "Run each step's batch in K pieces: the update of a batch K times larger.", min=1
    )
    save_every: int = setting(
        0, "Checkpoint every N optimizer steps as well as every epoch (0: epochs only).", min=0
    )
    log_every: int = setting(
        50, "A metrics.jsonl line (loss, lr, examples/s) every N steps (0: none).", min=0
    )

    def for_kind(self, kind: str) -> TrainSettings:
        """These settings with every per-kind field resolved for ``kind``: the value given,
        else the kind's ``training_defaults``, else the default of the field."""
        from nerx.models import model_class

        preferred = kind_defaults(model_class(kind))
        resolved = {
            name: preferred.get(name, base)
            for name, base in per_kind_defaults().items()
            if getattr(self, name) is None
        }
        return replace(self, **resolved)

    def given(self) -> dict[str, Any]:
        """The per-kind fields set to a value (not left to the kind)."""
        return {n: getattr(self, n) for n in per_kind_defaults() if getattr(self, n) is not None}


def per_kind_defaults() -> dict[str, Any]:
    """The fields a model kind may change, with the default used when it does not."""
    return {f.name: f.metadata["default"] for f in fields(TrainSettings) if "default" in f.metadata}


def field_default(name: str) -> Any:
    """The default of a field: the base default of a per-kind one, else the field's own."""
    found = {f.name: f for f in fields(TrainSettings)}[name]
    if "default" in found.metadata:
        return found.metadata["default"]
    if found.default is not MISSING:
        return found.default
    return found.default_factory()  # type: ignore[misc]


def field_help(name: str) -> str:
    return {f.name: f for f in fields(TrainSettings)}[name].metadata.get("help", "")


def field_limits(name: str) -> dict[str, Any]:
    meta = {f.name: f for f in fields(TrainSettings)}[name].metadata
    return {key: meta[key] for key in ("min", "max") if key in meta}


def kind_defaults(cls: type) -> dict[str, Any]:
    """A model class's ``training_defaults``, checked: only per-kind fields may be named."""
    preferred = dict(getattr(cls, "training_defaults", {}) or {})
    unknown = sorted(set(preferred) - set(per_kind_defaults()))
    if unknown:
        raise ConfigError(
            f"model kind {getattr(cls, 'kind', cls.__name__)} prefers training settings "
            f"{unknown} that a kind cannot change",
            hint=f"a kind may change: {', '.join(per_kind_defaults())}",
        )
    return preferred


#: The values of :attr:`TrainSettings.keep`.
KEEP_CHOICES = ("best", "last")


def check_settings(settings: TrainSettings) -> None:
    """Every resolved value within its field's limits, else a :class:`ConfigError`."""
    if settings.keep not in KEEP_CHOICES:
        raise ConfigError(
            f"keep must be best or last, not {settings.keep!r}",
            hint="best saves the epoch with the best dev score; last saves the final epoch",
        )
    for f in fields(TrainSettings):
        value = getattr(settings, f.name)
        if value is None or not isinstance(value, int | float) or f.metadata.get("cli_only"):
            continue
        low, high = f.metadata.get("min"), f.metadata.get("max")
        if low is not None and value < low:
            off = " (off)" if low == 0 and f.name in ("save_every", "log_every") else ""
            raise ConfigError(f"{f.name} must be at least {low}{off}, not {value}")
        if high is not None and value > high:
            raise ConfigError(f"{f.name} must be at most {high}, not {value}")
