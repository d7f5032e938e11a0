"""The one small interface every model implements, its registry, and save / load.

The training loop and the extraction pipeline only ever call::

    examples = model.prepare(doc, gold=True)   # windows of words, gold spans, subword ids
    batch = model.collate(examples)            # tensors
    output = model(batch)                      # training: output.loss (the batch has gold)
    predictions = model.predict(batch)         # inference: spans (+ relations) per example

so neither asks which model it holds. ``forward`` returns the loss and tensors only;
``predict`` is ``decode(forward(batch))`` unless a kind's inference has a second step that
depends on what the first decoded (relations between the entities found). ``collate``
returns a :class:`Batch`, which each kind subclasses for its own fields.

A model directory is self-describing: ``config.json`` (kind, labels, encoder,
hyperparameters, nerx version), ``model.safetensors`` and the tokenizer files, plus
``encoder/config.json`` to rebuild the encoder's shape without the network.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import re
import typing
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, get_type_hints

import catalogue
import torch
from torch import nn

from nerx import __version__
from nerx.defaults import DEFAULT_ENCODER
from nerx.doc import Document
from nerx.errors import ConfigError, ModelError, NerxWarning
from nerx.models.encoder import (
    Window,
    load_encoder,
    load_tokenizer,
    max_window,
    plan_windows,
)
from nerx.models.shapes import WORD_SHAPES, lowercases, word_shape

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Amounts tried off the "no entity" logit when a model calibrates its decision on dev.
OUTSIDE_BIASES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
ENCODER_DIR = "encoder"


@dataclass
class ModelConfig:
    kind: str
    labels: list[str]
    relation_labels: list[str] = field(default_factory=list)
    symmetric_relations: list[str] = field(default_factory=list)
    encoder: str = DEFAULT_ENCODER
    max_span_length: int = 8
    #: Subwords per window (specials included); None means the encoder's maximum.
    window: int | None = None
    #: Model-specific hyperparameters (dropout, hidden sizes, thresholds...).
    hyper: dict[str, Any] = field(default_factory=dict)
    #: How the model was trained, recorded for the model card.
    training: dict[str, Any] = field(default_factory=dict)
    #: How the weights are stored: {} (in full) or {"storage": "lowrank-delta", "rank": r}
    #: (changes against the pretrained encoder, see :mod:`nerx.models.compact`).
    weights: dict[str, Any] = field(default_factory=dict)
    nerx_version: str = __version__

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Example:
    """One window of one document, ready for a model's ``collate``.

    Word indices are relative to the window. ``gold_spans`` are ``(start, end, label_id)``
    with ``end`` exclusive; ``gold_relations`` are ``(head, tail, relation_id)`` indexing
    ``gold_spans``.
    """

    doc_index: int
    window: Window
    input_ids: list[int]  # subword ids, specials included
    word_starts: list[int]  # index in input_ids of each word's first subword
    word_ends: list[int]  # index in input_ids of each word's last subword
    sentences: list[tuple[int, int]]  # focus sentences, window-relative words
    focus: tuple[int, int]
    gold_spans: list[tuple[int, int, int]] = field(default_factory=list)
    gold_relations: list[tuple[int, int, int]] = field(default_factory=list)
    has_gold: bool = False
    #: The word shape id (:mod:`nerx.models.shapes`) of each subword's word; 0 for specials.
    input_shapes: list[int] = field(default_factory=list)
    #: Entities another model found in this window (window-relative, focus sentences only),
    #: set by the pipeline for a kind whose ``entity_source`` names that model.
    given_spans: list[SpanPrediction] | None = None

    @property
    def n_words(self) -> int:
        return len(self.word_starts)


@dataclass
class Batch:
    """A collated batch: its examples, whether every one carries gold (``forward`` then
    computes a loss) and the padded encoder inputs :meth:`SpanModel.pad_inputs` builds.
    Each kind subclasses it for the fields its ``collate`` adds."""

    examples: list[Example] = field(default_factory=list)
    has_gold: bool = False
    input_ids: torch.Tensor | None = None  # (B, T) subword ids, padded
    attention_mask: torch.Tensor | None = None  # (B, T) 1 on real subwords
    #: (B, T) each subword's word shape, with case features (None without)
    input_shapes: torch.Tensor | None = None
    word_starts: torch.Tensor | None = None  # (B, W) each word's first subword
    word_ends: torch.Tensor | None = None  # (B, W) each word's last subword
    word_mask: torch.Tensor | None = None  # (B, W) True on real words

    def inputs(self) -> dict[str, Any]:
        """Every field by name (what an exported graph is fed from)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class SpanPrediction:
    start: int  # window-relative word index
    end: int  # exclusive
    label: str
    score: float


@dataclass(slots=True)
class Prediction:
    spans: list[SpanPrediction] = field(default_factory=list)
    #: ``(head, tail, label, score)``, head/tail index ``spans``.
    relations: list[tuple[int, int, str, float]] = field(default_factory=list)


@dataclass
class Output:
    loss: torch.Tensor | None = None
    #: Anything ``decode`` needs (logits, candidate spans...), keyed by name.
    tensors: dict[str, Any] = field(default_factory=dict)
    #: Counters summed over a run (e.g. spans kept by a filter); the kind's
    #: :attr:`SpanModel.statistics` say which the summary shows, and how.
    stats: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Statistic:
    """A counter a model reports in :attr:`Output.stats` and how a run's summary prints it.

    ``text`` is a format string: ``{value}`` is the counter summed over the run; with ``of``
    (another counter), ``{total}`` is that one and ``{fraction}`` is value / total. Nothing
    is printed while the counter (or ``of``) is zero.
    """

    counter: str
    text: str
    of: str | None = None

    def describe(self, counters: Mapping[str, float]) -> str | None:
        value = float(counters.get(self.counter, 0.0))
        if self.of is None:
            return self.text.format(value=value) if value else None
        total = float(counters.get(self.of, 0.0))
        if not total:
            return None
        return self.text.format(value=value, total=total, fraction=value / total)


def setting(
    default: Any,
    doc: str,
    *,
    at_least: float | None = None,
    at_most: float | None = None,
    choices: Sequence[str] | None = None,
) -> Any:
    """A field of a kind's :class:`Settings`: its default, a one-line doc and the values it
    accepts beyond its type."""
    meta = {"doc": doc, "at_least": at_least, "at_most": at_most, "choices": choices}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Settings:
    """Typed settings of a model kind (``config.hyper`` as saved, ``--set`` when training).

    Each kind subclasses this next to its model class: names, types, defaults and a one-line
    doc per field. :meth:`from_hyper` checks a ``hyper`` dict against it: an unknown key or a
    value of the wrong type or range is a :class:`ConfigError` naming the setting, what it
    accepts and the valid keys; a missing key (an older saved config) takes the default.
    """

    nested: bool = setting(True, "whether entities may nest (training sets it from the data)")

    @classmethod
    def from_hyper(cls, hyper: dict[str, Any], kind: str = "") -> Settings:
        kind = kind or cls.__qualname__
        if not isinstance(hyper, dict):
            raise ConfigError(f"the settings of {kind} must be an object, got {hyper!r}")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(hyper) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown setting {unknown[0]!r} for model kind {kind}",
                hint=f"valid settings: {cls.describe()}",
            )
        hints = _type_hints(cls)
        values = {
            name: _checked(name, value, hints[name], known[name].metadata, kind, cls)
            for name, value in hyper.items()
        }
        return cls(**values)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}

    @classmethod
    def describe(cls) -> str:
        """``name (type, default)`` of every setting, for messages and help."""
        hints = _type_hints(cls)
        return ", ".join(
            f"{f.name} ({_type_name(hints[f.name], f.metadata)}; default {json.dumps(f.default)})"
            for f in fields(cls)
        )


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a settings class (read once: settings are read often)."""
    return get_type_hints(cls)


def _type_name(hint: Any, meta: Any) -> str:
    """What a setting accepts, in the words of its JSON value: ``integer >= 1 or null``."""
    if meta.get("choices"):
        return " or ".join(json.dumps(c) for c in meta["choices"])
    options = typing.get_args(hint)
    inner = next((a for a in options if a is not type(None)), hint)
    name = {bool: "true or false", int: "an integer", float: "a number", str: "text"}.get(
        inner, getattr(inner, "__name__", str(inner))
    )
    low, high = meta.get("at_least"), meta.get("at_most")
    if low is not None and high is not None:
        name += f" from {low} to {high}"
    elif low is not None:
        name += f" >= {low}"
    elif high is not None:
        name += f" <= {high}"
    return name + (" or null" if type(None) in options else "")


def _checked(name: str, value: Any, hint: Any, meta: Any, kind: str, cls: type) -> Any:
    accepts = _type_name(hint, meta)
    options = typing.get_args(hint)
    if value is None and type(None) in options:
        return None
    target = next((a for a in options if a is not type(None)), hint)
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(target, True)
    if ok and target is float:
        value = float(value)
        ok = math.isfinite(value)
    if ok and meta.get("choices") is not None:
        ok = value in meta["choices"]
    if ok and meta.get("at_least") is not None:
        ok = value >= meta["at_least"]
    if ok and meta.get("at_most") is not None:
        ok = value <= meta["at_most"]
    if not ok:
        raise ConfigError(
            f"setting {name}={value!r} of model kind {kind} is not valid: it accepts {accepts}",
            hint=f"valid settings: {cls.describe()}",
        )
    return value


B = typing.TypeVar("B", bound=Batch)


@dataclass(frozen=True)
class WordSettings(Settings):
    """Settings of the kinds that read the encoder's word states (token, spandec, iter...)."""

    case_features: bool | None = setting(
        None,
        "a learned word-shape embedding (lower, Title, CAPS, digits...) added to each word's "
        "subwords, so an uncased encoder still sees casing; null: on when the tokenizer "
        "lowercases",
    )


#: The model kinds of nerx itself, by name. Other packages add kinds through the
#: ``nerx_models`` entry-point group (see :func:`model_class`).
MODELS: dict[str, type[SpanModel]] = {}

#: Every kind, nerx's and other packages': ``pyproject.toml`` of a package adding one has
#: ``[project.entry-points.nerx_models]`` with ``my-kind = "my_package.model:MyModel"``.
registry = catalogue.create("nerx", "models", entry_points=True)


def register(kind: str):
    """Class decorator: make a model available as ``--kind KIND`` and in saved configs."""

    def add(cls: type[SpanModel]) -> type[SpanModel]:
        cls.kind = kind
        MODELS[kind] = cls
        registry.register(kind, func=cls)
        return cls

    return add


def kinds() -> list[str]:
    """The names of every model kind: nerx's own and those other packages register."""
    import nerx.models  # noqa: F401  (importing the package registers every model)

    return sorted(_from_registry(registry.get_all))


def _from_registry(look_up, *args):
    """A registry look-up; an entry point that fails to import is named, not a traceback."""
    try:
        return look_up(*args)
    except (ImportError, AttributeError) as exc:
        raise ModelError(
            f"a package's {registry.entry_point_namespace} entry point does not load: {exc}",
            hint="reinstall or remove the package that declares it",
        ) from None


def model_class(kind: str) -> type[SpanModel]:
    """The class of a model kind, registered by nerx, through :data:`registry` or by another
    package's ``nerx_models`` entry point; an unknown kind is a :class:`ModelError`."""
    import nerx.models  # noqa: F401  (importing the package registers every model)

    if not _from_registry(registry.__contains__, kind):
        raise ModelError(
            f"unknown model kind {kind!r}", hint=f"choose one of: {', '.join(kinds())}"
        )
    cls = _from_registry(registry.get, kind)
    if not (isinstance(cls, type) and issubclass(cls, SpanModel)):
        raise ModelError(
            f"model kind {kind!r} is registered as {cls!r}, which is not a SpanModel class",
            hint="register a subclass of nerx.models.base.SpanModel",
        )
    if "kind" not in vars(cls):
        cls.kind = kind  # registered without the decorator (an entry point, say)
    return cls


class SpanModel(nn.Module):
    """Base class: holds the encoder, tokenizer and config, and turns documents into examples."""

    kind: ClassVar[str] = ""
    #: The kind's typed settings (``config.hyper``), checked on create and on load.
    Settings: ClassVar[type[Settings]] = Settings
    #: Whether the model predicts relations (the pipeline then fills ``doc.relations``).
    predicts_relations: ClassVar[bool] = False
    #: The counters of :attr:`Output.stats` a run's summary shows, and how.
    statistics: ClassVar[tuple[Statistic, ...]] = ()
    #: The kind's preferred training settings (fields of :class:`nerx.train_settings.
    #: TrainSettings`, e.g. ``{"learning_rate": 3e-4, "epochs": 4}``): used where the user
    #: gave no value, in place of the field's default.
    training_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__()
        type(self).Settings.from_hyper(config.hyper, self.kind)  # a bad setting fails here
        self.config = config
        self.encoder = encoder
        self.tokenizer = tokenizer
        # Kept before a subclass reshapes the encoder, so load() rebuilds the same shape.
        self.encoder_config = copy.deepcopy(encoder.config)
        self.label_to_id = {label: i + 1 for i, label in enumerate(config.labels)}  # 0 = O
        self.relation_to_id = {label: i for i, label in enumerate(config.relation_labels)}
        limit = max_window(tokenizer, encoder.config)
        self.window_size = min(config.window or limit, limit)
        self._prefix, self._suffix = _special_tokens_around(tokenizer)
        #: Whether each subword carries its word's shape (``input_shapes``) to the encoder.
        self.case_features = self._uses_case_features(config, tokenizer)
        self.case_embedding = self._case_embedding() if self.case_features else None

    def _uses_case_features(self, config: ModelConfig, tokenizer) -> bool:
        """``case_features`` of the config; ``null`` resolves here, for a new model, to
        whether the tokenizer lowercases, and is saved as that choice."""
        if "case_features" not in type(self).Settings.field_names():
            return False
        if config.hyper.get("case_features") is None:
            config.hyper["case_features"] = lowercases(tokenizer)
        return bool(config.hyper["case_features"])

    def _case_embedding(self) -> nn.Module | None:
        """The word-shape embedding, added to the encoder's input embeddings. It starts at
        zero, so a new model begins as the plain encoder."""
        width = self.encoder.get_input_embeddings().embedding_dim
        embedding = nn.Embedding(len(WORD_SHAPES), width, padding_idx=0)
        nn.init.zeros_(embedding.weight)
        return embedding

    @property
    def settings(self) -> Any:
        """``config.hyper`` as the kind's typed :class:`Settings`, defaults filled in. Read
        afresh each time, since calibration and training change ``config.hyper``."""
        return type(self).Settings.from_hyper(self.config.hyper, self.kind)

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, config: ModelConfig) -> SpanModel:
        """A new model on the pretrained encoder named in the config."""
        return cls(config, cls.load_backbone(config.encoder), load_tokenizer(config.encoder))

    @classmethod
    def load_backbone(cls, name_or_path: str, *, config_only: bool = False) -> nn.Module:
        """The pretrained network the model is built on (an ``AutoModel`` encoder here); with
        ``config_only``, a fresh one of the same shape. Kinds on other networks override it."""
        return load_encoder(name_or_path, config_only=config_only)

    def learn_from_data(self, examples: Sequence[Example]) -> dict[str, Any]:
        """Settings a kind derives from its training examples before training (for example a
        width from the longest entity). Called once by the training loop; what it returns is
        merged into ``config.hyper`` and saved. Settings the user gave are kept."""
        return {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def head_parameter_names(self) -> set[str]:
        """Parameters that are new (not the pretrained encoder's): they get the larger LR."""
        return {name for name, _ in self.named_parameters() if not name.startswith("encoder.")}

    # ------------------------------------------------------------------ documents -> examples
    def prepare(self, doc: Document, doc_index: int = 0, *, gold: bool = False) -> list[Example]:
        """Cut a tokenised document into windows; with ``gold``, attach its gold spans."""
        words = [doc.text[s:e] for s, e in doc.tokens]
        if not words:
            return []
        pieces = self.tokenizer(words, add_special_tokens=False)["input_ids"]
        unk = self.tokenizer.unk_token_id
        pieces = [p if p else [unk] for p in pieces]
        budget = self.window_size - len(self._prefix) - len(self._suffix)
        plan = plan_windows([len(p) for p in pieces], doc.sentence_spans(), budget)
        token_spans = _gold_token_spans(doc, self.label_to_id) if gold else []
        shapes = [word_shape(word) for word in words] if self.case_features else []
        return [
            self._example(doc_index, window, pieces, token_spans, doc, gold, shapes)
            for window in plan.windows
        ]

    def _example(self, doc_index, window, pieces, token_spans, doc, gold, shapes) -> Example:
        input_ids = list(self._prefix)
        input_shapes = [0] * len(input_ids) if shapes else []
        starts, ends = [], []
        for word in range(window.start, window.end):
            starts.append(len(input_ids))
            input_ids.extend(pieces[word])
            ends.append(len(input_ids) - 1)
            if shapes:
                input_shapes.extend([shapes[word]] * len(pieces[word]))
        input_ids.extend(self._suffix)
        if shapes:
            input_shapes.extend([0] * len(self._suffix))
        offset = window.start
        sentences = [(s - offset, e - offset) for s, e in window.sentences]
        example = Example(
            doc_index=doc_index,
            window=window,
            input_ids=input_ids,
            word_starts=starts,
            word_ends=ends,
            sentences=sentences,
            focus=(window.focus_start - offset, window.focus_end - offset),
            has_gold=gold,
            input_shapes=input_shapes,
        )
        if gold:
            kept: dict[int, int] = {}  # document entity index -> example span index
            for ent_index, (s, e, label_id) in token_spans:
                if any(ss <= s - offset and e - offset <= se for ss, se in sentences):
                    kept[ent_index] = len(example.gold_spans)
                    example.gold_spans.append((s - offset, e - offset, label_id))
            for rel in doc.relations:
                if rel.head in kept and rel.tail in kept and rel.label in self.relation_to_id:
                    example.gold_relations.append(
                        (kept[rel.head], kept[rel.tail], self.relation_to_id[rel.label])
                    )
        return example

    # ------------------------------------------------------------------ the interface
    def collate(self, examples: Sequence[Example]) -> Batch:
        raise NotImplementedError

    def forward(self, batch: Batch) -> Output:  # type: ignore[override]
        raise NotImplementedError

    def decode(self, output: Output, batch: Batch) -> list[Prediction]:
        raise NotImplementedError

    def predict(self, batch: Batch, stats: Counter[str] | None = None) -> list[Prediction]:
        """Inference on a collated batch: entities (+ relations) per example. The model's
        counters (:attr:`Output.stats`) are added to ``stats`` when given."""
        output = self(batch)
        if stats is not None:
            stats.update(output.stats)
        return self.decode(output, batch)

    def entity_source(self) -> str | None:
        """A saved model whose entities this one takes as given at inference, or None when
        it finds its own. The pipeline runs that model first and sets each example's
        ``given_spans`` (a two-stage pipeline is composed there, never inside a model)."""
        return None

    #: Inference settings the user gave (``--set``): :meth:`tune` leaves them as they are.
    given_settings: frozenset[str] = frozenset()

    def calibrate(self, dev_score) -> dict[str, Any]:
        """Tune inference settings on dev after training. ``dev_score()`` returns the dev F1
        of the model as it stands. Returns what was chosen (recorded in the config)."""
        return {}

    # ------------------------------------------------------------------ shared helpers
    def tune(self, dev_score, name: str, values: Sequence[float]) -> dict[str, Any]:
        """Set ``config.hyper[name]`` to whichever of ``values`` gives the best dev F1; a tie
        goes to the earlier value. Returns the choice and every value's dev F1. A setting in
        :attr:`given_settings` (given with ``--set``) keeps its value and is not tuned."""
        if name in self.given_settings:
            return {}
        results = {}
        for value in values:
            self.config.hyper[name] = value
            results[value] = dev_score()
        chosen = max(results, key=lambda value: results[value])  # first of the best
        self.config.hyper[name] = chosen
        return {name: chosen, f"dev_f1_by_{name}": results}

    def calibrate_outside_bias(self, dev_score) -> dict[str, Any]:
        """Choose on dev how much to take off the "no entity" logit (class 0) before
        decoding: span and tag classifiers trained on mostly-O data lean to precision, and
        this trades some of it for recall. A tie goes to the smaller bias. Shared by the
        classifiers whose class 0 is O (token, spandec, sf-spandec,
        plmarker's NER step)."""
        return self.tune(dev_score, "outside_bias", OUTSIDE_BIASES)

    def outside_biased(self, logits: torch.Tensor, setting: str = "outside_bias") -> torch.Tensor:
        """``logits`` (..., classes) with the calibrated bias (``config.hyper[setting]``,
        ``outside_bias`` by default) taken off class 0."""
        bias = float(getattr(self.settings, setting))
        if not bias:
            return logits
        return torch.cat([logits[..., :1] - bias, logits[..., 1:]], dim=-1)

    def input_embeddings(self, batch: Batch) -> torch.Tensor | None:
        """The subwords' input embeddings with their words' shape vectors added: (batch,
        subwords, hidden); ``None`` without case features (the encoder looks the ids up)."""
        if self.case_embedding is None:
            return None
        embeds = self.encoder.get_input_embeddings()(batch.input_ids)
        return embeds + self.case_embedding(batch.input_shapes).to(embeds.dtype)

    def encode(self, batch: Batch) -> torch.Tensor:
        """Run the encoder: (batch, subwords, hidden). With case features, each subword's
        input embedding has its word's shape vector added."""
        embeds = self.input_embeddings(batch)
        if embeds is None:
            return self.encoder(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).last_hidden_state
        return self.encoder(
            inputs_embeds=embeds, attention_mask=batch.attention_mask
        ).last_hidden_state

    def pad_inputs(self, examples: Sequence[Example], batch_type: type[B] = Batch) -> B:
        """A ``batch_type`` of the examples: subword ids and mask, padded to the longest
        example; word -> subword indices. ``has_gold`` says every example carries gold, so
        ``forward`` computes a loss. The kind's ``collate`` fills in its own fields."""
        longest = max(len(ex.input_ids) for ex in examples)
        most_words = max(ex.n_words for ex in examples)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(examples), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(examples), longest), dtype=torch.long)
        starts = torch.zeros((len(examples), most_words), dtype=torch.long)
        ends = torch.zeros((len(examples), most_words), dtype=torch.long)
        word_mask = torch.zeros((len(examples), most_words), dtype=torch.bool)
        shapes = torch.zeros((len(examples), longest), dtype=torch.long)
        for row, ex in enumerate(examples):
            if ex.input_shapes:
                shapes[row, : len(ex.input_shapes)] = torch.tensor(ex.input_shapes)
            ids[row, : len(ex.input_ids)] = torch.tensor(ex.input_ids)
            mask[row, : len(ex.input_ids)] = 1
            starts[row, : ex.n_words] = torch.tensor(ex.word_starts)
            ends[row, : ex.n_words] = torch.tensor(ex.word_ends)
            word_mask[row, : ex.n_words] = True
        return batch_type(
            examples=list(examples),
            has_gold=all(ex.has_gold for ex in examples),
            input_ids=ids,
            attention_mask=mask,
            input_shapes=shapes if self.case_features else None,
            word_starts=starts,
            word_ends=ends,
            word_mask=word_mask,
        )


def _special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special token ids the tokenizer puts before and after a single sequence."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for at in range(len(full) - len(bare) + 1):
        if full[at : at + len(bare)] == bare:
            return full[:at], full[at + len(bare) :]
    raise ModelError("cannot find where the tokenizer puts its special tokens")


def _gold_token_spans(doc: Document, label_to_id: dict[str, int]) -> list[tuple[int, tuple]]:
    """Gold entities as word ranges (entity index, (start, end, label_id)); entities that do
    not cover whole words or have unknown labels are skipped (the tokens come from the data)."""
    spans = []
    for i, (ent, token_span) in enumerate(zip(doc.entities, doc.entity_token_spans(), strict=True)):
        if token_span is not None and ent.label in label_to_id:
            spans.append((i, (*token_span, label_to_id[ent.label])))
    return spans


def sentence_mask(examples: Sequence[Example], width: int) -> torch.Tensor:
    """(batch, words) True for words inside a focus sentence: the only ones with gold."""
    mask = torch.zeros((len(examples), width), dtype=torch.bool)
    for row, ex in enumerate(examples):
        for s, e in ex.sentences:
            mask[row, s:e] = True
    return mask


def gather_words(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick subword vectors per word: hidden (B, T, H), index (B, W) -> (B, W, H)."""
    return hidden.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))


# ---------------------------------------------------------------------- save / load
def save_model(model: SpanModel, path: str | os.PathLike, *, rank: int | None = None) -> Path:
    """Write a self-describing model directory (safetensors only, never pickle). With
    ``rank``, store only the changes to the pretrained encoder, at that rank (compact)."""
    from safetensors.torch import save_file

    from nerx.models.compact import compact_state

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    config = copy.deepcopy(model.config)
    config.weights = {}
    if rank is not None:
        state = compact_state(state, _pretrained_encoder_state(config), rank)
        config.weights = {"storage": "lowrank-delta", "rank": rank}
    save_file(dedupe_shared(state), str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    model.tokenizer.save_pretrained(str(out))
    model.encoder_config.save_pretrained(str(out / ENCODER_DIR))
    # The config goes last: a directory with one is complete.
    (out / CONFIG_NAME).write_text(config.to_json() + "\n", encoding="utf-8")
    return out


def _encoder_state(model: SpanModel) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("encoder.")}


def _pretrained_encoder_state(config: ModelConfig) -> dict[str, torch.Tensor]:
    """The encoder weights a new model of this config starts from (what compact storage is
    measured against)."""
    return _encoder_state(model_class(config.kind).create(config))


def dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied weights): clone them apart."""
    seen: set[int] = set()
    result = {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        result[key] = tensor.clone() if ptr in seen else tensor
        seen.add(ptr)
    return result


TOKENIZER_NAME = "tokenizer.json"

# The fields of config.json and the JSON types each must have.
_CONFIG_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "labels": (list,),
    "relation_labels": (list,),
    "symmetric_relations": (list,),
    "encoder": (str,),
    "max_span_length": (int,),
    "window": (int, type(None)),
    "hyper": (dict,),
    "training": (dict,),
    "weights": (dict,),
}
_REQUIRED = ("kind", "labels")
_COPY_HINT = "copy the whole model directory again, or train it again"


def read_model_config(root: Path) -> ModelConfig:
    """The checked ``config.json`` of a model directory: a JSON object with the fields a
    model needs, each of the right type; anything else is a :class:`ModelError` naming it."""
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise ModelError(
            f"{root} is not a nerx model directory (no {CONFIG_NAME})",
            hint="give a directory written by `nerx train`, or a bundled model name",
        )
    try:
        data = json.loads(config_path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read it: {exc.strerror}", where=str(config_path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"not valid JSON ({exc})", where=str(config_path), hint=_COPY_HINT
        ) from None
    if not isinstance(data, dict):
        raise ModelError(
            f"expected a JSON object of model settings, found a {type(data).__name__}",
            where=str(config_path),
            hint=_COPY_HINT,
        )
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise ModelError(
            f"the config has no {' and no '.join(missing)}", where=str(config_path), hint=_COPY_HINT
        )
    for name, types in _CONFIG_TYPES.items():
        value = data.get(name)
        if name in data and (not isinstance(value, types) or isinstance(value, bool)):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise ModelError(
                f"{name} must be {wanted}, found {value!r}", where=str(config_path), hint=_COPY_HINT
            )
    for name in ("labels", "relation_labels", "symmetric_relations"):
        if not all(isinstance(x, str) and x for x in data.get(name, [])):
            raise ModelError(f"{name} must be a list of non-empty strings", where=str(config_path))
    saved_by = str(data.get("nerx_version", ""))
    if _release(saved_by) > _release(__version__):
        warnings.warn(
            NerxWarning(
                f"{root} was saved by nerx {saved_by}, newer than this nerx {__version__}: "
                "settings it added are unknown here (pip install -U nerx)"
            ),
            stacklevel=2,
        )
    return ModelConfig.from_dict(data)


def _release(version: str) -> tuple[int, ...]:
    """``"1.2.3rc1"`` -> ``(1, 2, 3)``: enough to tell an older release from a newer one."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def _check_tokenizer_file(root: Path) -> None:
    """A saved model runs only with the tokenizer it was trained with: ``tokenizer.json``
    must be there and parse (without it transformers quietly builds a tokenizer that knows
    only the special tokens, and every word becomes [UNK])."""
    path = root / TOKENIZER_NAME
    if not path.is_file():
        raise ModelError(
            f"{root} has no {TOKENIZER_NAME}: the model cannot run without the tokenizer "
            "it was trained with",
            hint=_COPY_HINT,
        )
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except OSError as exc:
        raise ModelError(f"cannot read it: {exc.strerror}", where=str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"not valid JSON ({exc})", where=str(path), hint=_COPY_HINT) from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ModelError(
            "not a Hugging Face tokenizer file (no tokenizer model in it)",
            where=str(path),
            hint=_COPY_HINT,
        )


def _check_vocabulary(model: SpanModel, root: Path) -> None:
    embeddings = (
        model.encoder.get_input_embeddings()
        if hasattr(model.encoder, "get_input_embeddings")
        else None
    )
    size = getattr(embeddings, "num_embeddings", None)
    if size and len(model.tokenizer) > size:
        raise ModelError(
            f"the tokenizer has {len(model.tokenizer)} tokens but the encoder's embeddings "
            f"only {size}: they come from different models",
            where=str(root / TOKENIZER_NAME),
            hint=_COPY_HINT,
        )


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelError(
            f"{path.parent} has no {WEIGHTS_NAME}", hint="copy the whole model directory"
        )
    try:
        return load_file(str(path))
    except OSError as exc:
        raise ModelError(f"cannot read it: {exc.strerror or exc}", where=str(path)) from None
    # safetensors raises its own SafetensorError (and torch a RuntimeError) on a file that is
    # cut short or whose header is garbled; they all mean the same to the user.
    except Exception as exc:
        raise ModelError(
            f"the weights are damaged (cut short, or not a safetensors file): {exc}",
            where=str(path),
            hint=_COPY_HINT,
        ) from None


def fill_saved_defaults(config: ModelConfig, *, has_case_embedding: bool) -> None:
    """Settings whose default for a new model differs from what a saved model was built
    with: without the key (a model saved before case features existed), the weights tell."""
    if "case_features" in model_class(config.kind).Settings.field_names():
        config.hyper.setdefault("case_features", has_case_embedding)


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> SpanModel:
    """Load a model directory written by :func:`save_model` (a bundled model by name is
    :func:`nerx.load`'s). Every file is checked first: a missing, unreadable or damaged one
    is a :class:`ModelError` naming it."""
    root = Path(path)
    if not root.is_dir():
        raise ModelError(
            f"model directory {root} does not exist",
            hint="give a directory written by `nerx train`; nerx.load also takes bundled names",
        )
    config = read_model_config(root)
    data = json.loads((root / CONFIG_NAME).read_bytes())  # read and checked just above
    if data.get("backend", "pytorch") == "onnx":  # written by `nerx export`
        from nerx.backends.ort import load_onnx_model

        return load_onnx_model(root, data, device=device)
    cls = model_class(config.kind)
    state = _read_weights(root / WEIGHTS_NAME)
    fill_saved_defaults(config, has_case_embedding="case_embedding.weight" in state)
    _check_tokenizer_file(root)
    tokenizer = load_tokenizer(str(root))
    if config.weights.get("storage") == "lowrank-delta":
        from nerx.models.compact import expand_state

        # The pretrained encoder, reshaped as the model kind needs it, plus the changes.
        model = cls(config, cls.load_backbone(config.encoder), tokenizer)
        try:
            state = expand_state(state, _encoder_state(model))
        except (KeyError, RuntimeError, ValueError, IndexError) as exc:
            raise ModelError(
                f"the stored changes do not fit the encoder {config.encoder!r}: {exc}",
                where=str(root / WEIGHTS_NAME),
                hint=_COPY_HINT,
            ) from None
    else:
        if not (root / ENCODER_DIR / CONFIG_NAME).is_file():
            raise ModelError(
                f"{root} has no {ENCODER_DIR}/{CONFIG_NAME} (the encoder's shape)",
                hint=_COPY_HINT,
            )
        encoder = cls.load_backbone(str(root / ENCODER_DIR), config_only=True)
        model = cls(config, encoder, tokenizer)
    _check_vocabulary(model, root)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # a tensor of the wrong shape
        mismatches = [line.strip() for line in str(exc).splitlines() if "size mismatch" in line]
        detail = mismatches[0] if mismatches else str(exc).splitlines()[-1].strip()
        if len(mismatches) > 1:
            detail += f" (and {len(mismatches) - 1} more)"
        raise ModelError(
            f"the weights do not fit the {config.kind} model its config describes: {detail}",
            where=str(root / WEIGHTS_NAME),
            hint=_COPY_HINT,
        ) from None
    if missing or unexpected:
        raise ModelError(
            f"weights in {root} do not fit a {config.kind} model: "
            f"missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )
    model.eval()
    return model.to(device)
