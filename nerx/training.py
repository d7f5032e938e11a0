"""One training loop for every model.

AdamW with weight decay (none on biases and norms), a larger learning rate for the new heads,
linear warmup then linear decay (or one-cycle), gradient clipping, bf16 autocast on GPU. The
model is scored on dev every epoch with the same metric as ``nerx eval``; the best epoch is
saved, training stops early when dev stops improving, and a checkpoint (safetensors + JSON,
never pickle) lets a run resume.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nerx.doc import Document, TextPreparer
from nerx.errors import ConfigError
from nerx.models.base import (
    Example,
    ModelConfig,
    SpanModel,
    dedupe_shared,
    model_class,
    save_model,
)
from nerx.pipeline import predict_documents
from nerx.runtime import autocast, move_batch, resolve_device

CHECKPOINT_DIR = "checkpoint"
METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainSettings:
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 5e-5
    head_lr_multiplier: float = 10.0
    weight_decay: float = 0.01
    warmup: float = 0.1
    schedule: str = "linear"  # or "onecycle"
    max_grad_norm: float = 1.0
    seed: int = 13
    patience: int = 2
    device: str = "auto"
    eval_batch_size: int = 64
    max_span_length: int = 8
    window: int | None = None
    hyper: dict[str, Any] = field(default_factory=dict)
    #: Relation labels without direction (``(a, b)`` is ``(b, a)``): predicted and written once.
    symmetric_relations: list[str] = field(default_factory=list)
    lang: str = "en"


@dataclass
class Progress:
    """What the loop reports after every step (the CLI draws it as a progress bar)."""

    epoch: int
    step: int
    steps_per_epoch: int
    loss: float
    examples_per_second: float


@dataclass
class TrainResult:
    output: Path
    best_epoch: int
    best_score: float
    history: list[dict[str, Any]]
    calibration: dict[str, Any]


@dataclass
class DevSplit:
    """Which training documents were held out as dev; saved in the model's config.json."""

    fraction: float
    seed: int
    train_documents: int
    dev_documents: int
    #: Positions in the training data as given (0-based), and the ids of those documents.
    dev_indices: list[int]
    dev_ids: list[str]


def split_dev(
    docs: Sequence[Document], fraction: float = 0.1, seed: int = 13
) -> tuple[list[Document], list[Document], DevSplit]:
    """Hold out ``fraction`` of ``docs`` (rounded, at least one) as dev, chosen by ``seed``:
    the same documents, the same seed, the same split. Both parts keep the input order."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(
            f"the dev split is {fraction}; it is the fraction of training documents held out",
            hint="use a value between 0 and 1, such as 0.1",
        )
    count = len(docs)
    held = max(1, int(count * fraction + 0.5))
    if count - held < 1:
        raise ConfigError(
            f"the training data has {count} document{'s' if count != 1 else ''}, too few to "
            f"hold out a dev part and still train on something",
            hint="give a dev file with --dev, or (CoNLL) --sentence-docs to make every "
            "sentence a document",
        )
    chosen = sorted(random.Random(seed).sample(range(count), held))
    held_out = set(chosen)
    split = DevSplit(
        fraction=fraction,
        seed=seed,
        train_documents=count - held,
        dev_documents=held,
        dev_indices=chosen,
        dev_ids=[docs[i].id for i in chosen],
    )
    train_part = [doc for i, doc in enumerate(docs) if i not in held_out]
    return train_part, [docs[i] for i in chosen], split


def data_profile(docs: Sequence[Document]) -> dict[str, Any]:
    """Labels and shape of the training data: entity and relation labels, whether entities
    nest or overlap, and the longest entity in words."""
    labels, relation_labels = set(), set()
    nested, longest = False, 1
    for doc in docs:
        labels.update(e.label for e in doc.entities)
        relation_labels.update(r.label for r in doc.relations)
        spans = sorted((e.start, e.end) for e in doc.entities)
        nested |= any(b[0] < a[1] for a, b in zip(spans, spans[1:], strict=False))
        for token_span in doc.entity_token_spans():
            if token_span:
                longest = max(longest, token_span[1] - token_span[0])
    return {
        "labels": sorted(labels),
        "relation_labels": sorted(relation_labels),
        "nested": nested,
        "longest_entity": longest,
    }


def train(
    train_docs: Sequence[Document],
    dev_docs: Sequence[Document],
    *,
    kind: str,
    encoder: str,
    output: str | Path,
    settings: TrainSettings | None = None,
    resume: bool = False,
    on_step: Callable[[Progress], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    dev_split: DevSplit | None = None,
) -> TrainResult:
    """Fine-tune a ``kind`` model on ``encoder``; save the best epoch (by dev F1) to ``output``.

    ``dev_split`` says that ``dev_docs`` were held out of the training data
    (:func:`split_dev`); the model's config records it."""
    settings = settings or TrainSettings()
    output = Path(output)
    _seed(settings.seed)
    device = resolve_device(settings.device)
    prepare = TextPreparer(settings.lang)
    prepare(train_docs)
    prepare(dev_docs)
    profile = data_profile(train_docs)
    if not profile["labels"]:
        raise ConfigError("the training data has no entities", hint="check the file and --from")
    unknown = sorted(set(settings.symmetric_relations) - set(profile["relation_labels"]))
    if unknown:
        raise ConfigError(
            f"symmetric relation labels {unknown} are not in the training data",
            hint=f"its relation labels: {', '.join(profile['relation_labels']) or 'none'}",
        )
    config = ModelConfig(
        kind=kind,
        labels=profile["labels"],
        relation_labels=profile["relation_labels"],
        symmetric_relations=sorted(settings.symmetric_relations),
        encoder=encoder,
        max_span_length=settings.max_span_length,
        window=settings.window,
        hyper={"nested": profile["nested"], **settings.hyper},
        training={**asdict(settings), "train_documents": len(train_docs)},
    )
    if dev_split is not None:
        config.training["dev_split"] = asdict(dev_split)
    model = model_class(kind).create(config).to(device)
    examples = [ex for i, doc in enumerate(train_docs) for ex in model.prepare(doc, i, gold=True)]
    learned = model.learn_from_data(examples)  # deterministic, so a resumed run agrees
    model.config.hyper.update({k: v for k, v in learned.items() if k not in settings.hyper})
    batches_per_epoch = math.ceil(len(examples) / settings.batch_size)
    optimizer = _optimizer(model, settings)
    scheduler = _scheduler(optimizer, settings, batches_per_epoch * settings.epochs)
    state = {"epoch": 0, "best_score": -1.0, "best_epoch": 0, "stale": 0, "history": []}
    if resume:
        state = _load_checkpoint(output / CHECKPOINT_DIR, model, optimizer, scheduler)
    # Relation models are chosen on Rel+, unless the data has no relations to score.
    has_relations = model.predicts_relations and bool(config.relation_labels)
    main_metric = "relations_strict" if has_relations else "entities"

    rng = random.Random(settings.seed)
    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        if state["stale"] >= settings.patience:
            break  # early stop; a resumed run that had stopped early trains no more
        model.train()
        started, seen = time.perf_counter(), 0
        for step, batch_examples in enumerate(_batches(examples, settings.batch_size, rng), 1):
            batch = move_batch(model.collate(batch_examples), device)
            with autocast(device):
                loss = model(batch).loss
            if not torch.isfinite(loss):
                raise ConfigError(
                    f"the loss became {loss.item()} at epoch {epoch}, step {step}",
                    hint="lower --lr, or check the data for empty or broken documents",
                )
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            seen += len(batch_examples)
            if on_step:
                rate = seen / max(time.perf_counter() - started, 1e-9)
                on_step(Progress(epoch, step, batches_per_epoch, loss.item(), rate))
        score, entity_score = _dev_scores(model, dev_docs, settings, main_metric)
        record = {
            "epoch": epoch,
            "dev_f1": round(score, 4),
            "metric": main_metric,
            "dev_entity_f1": round(entity_score, 4),
            "seconds": round(time.perf_counter() - started, 2),
            "learning_rate": scheduler.get_last_lr()[0],
        }
        state["history"].append(record)
        # Ties on the main metric (Rel+ often plateaus) go to the better entity F1.
        improved = (score, entity_score) > (state["best_score"], state.get("best_entities", -1.0))
        if improved:
            state.update(best_score=score, best_entities=entity_score, best_epoch=epoch, stale=0)
            save_model(model, output)
        else:
            state["stale"] += 1
        state["epoch"] = epoch
        with open(output / METRICS_NAME, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")
        _save_checkpoint(output / CHECKPOINT_DIR, model, optimizer, scheduler, state)
        if on_epoch:
            on_epoch({**record, "best": improved})

    # Reload the best epoch, tune inference settings on dev, and save the final model.
    from nerx.models.base import load_model

    best = load_model(output, device=device)
    # A resumed run calibrates afresh: what an earlier calibration chose is dropped first,
    # and --set reaches inference too (e.g. plmarker's ner_model).
    for name in best.config.training.pop("calibration", {}):
        best.config.hyper.pop(name, None)
    best.config.hyper.update(settings.hyper)
    calibration = best.calibrate(lambda: _score_with(best, dev_docs, settings, main_metric))
    if calibration:
        best.config.training["calibration"] = calibration
        save_model(best, output)
    return TrainResult(
        output, state["best_epoch"], state["best_score"], state["history"], calibration
    )


def _score_with(model: SpanModel, dev_docs, settings: TrainSettings, metric: str) -> float:
    """Dev F1 (in %) of the model as it stands, with the metric of ``nerx eval``."""
    return _dev_scores(model, dev_docs, settings, metric)[0]


def _dev_scores(model: SpanModel, dev_docs, settings, metric: str) -> tuple[float, float]:
    """Dev F1 (in %) on ``metric`` and on entities."""
    from nerx.scoring import evaluate

    predicted = predict_documents(model, dev_docs, batch_size=settings.eval_batch_size)
    scores = evaluate(dev_docs, predicted, symmetric=model.config.symmetric_relations)
    return getattr(scores, metric).f1 * 100, scores.entities.f1 * 100


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def _batches(examples: list[Example], size: int, rng: random.Random):
    """Shuffled batches of similar length: shuffle, sort within pools of 50 batches, cut,
    shuffle the batches. Dense batches without a fixed order."""
    shuffled = examples[:]
    rng.shuffle(shuffled)
    pool = size * 50
    batches = []
    for first in range(0, len(shuffled), pool):
        chunk = sorted(shuffled[first : first + pool], key=lambda ex: len(ex.input_ids))
        batches.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(batches)
    return batches


def _optimizer(model: SpanModel, settings: TrainSettings) -> torch.optim.Optimizer:
    heads = model.head_parameter_names()
    groups: dict[tuple[bool, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        no_decay = param.ndim < 2  # biases and norms
        groups.setdefault((name in heads, no_decay), []).append(param)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": settings.learning_rate * (settings.head_lr_multiplier if is_head else 1.0),
                "weight_decay": 0.0 if no_decay else settings.weight_decay,
            }
            for (is_head, no_decay), params in sorted(groups.items())
        ]
    )


def _scheduler(optimizer, settings: TrainSettings, total_steps: int):
    total_steps = max(total_steps, 1)
    if settings.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=[group["lr"] for group in optimizer.param_groups],
            total_steps=total_steps,
            pct_start=max(settings.warmup, 0.01),
        )
    if settings.schedule != "linear":
        raise ConfigError(f"unknown schedule {settings.schedule!r}", hint="use linear or onecycle")
    warmup = int(total_steps * settings.warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


# ---------------------------------------------------------------------- checkpoints
def _save_checkpoint(path: Path, model, optimizer, scheduler, state: dict) -> None:
    """Weights and optimizer tensors in safetensors; everything else in JSON."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(dedupe_shared(weights), str(path / "model.safetensors"))
    opt = optimizer.state_dict()
    tensors, plain = {}, {}
    for param_id, values in opt["state"].items():
        for key, value in values.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}/{key}"] = value.detach().cpu().contiguous()
            else:
                plain[f"{param_id}/{key}"] = value
    if tensors:
        save_file(tensors, str(path / "optimizer.safetensors"))
    meta = {
        "state": state,
        "optimizer_groups": opt["param_groups"],
        "optimizer_plain": plain,
        "scheduler": {k: v for k, v in scheduler.state_dict().items() if _is_plain(v)},
    }
    (path / "state.json").write_text(json.dumps(meta), encoding="utf-8")


def _is_plain(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def _load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    from safetensors.torch import load_file

    if not (path / "state.json").is_file():
        raise ConfigError(
            f"no checkpoint to resume from in {path}", hint="run without --resume to start anew"
        )
    meta = json.loads((path / "state.json").read_text(encoding="utf-8"))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    state: dict[int, dict] = {}
    if (path / "optimizer.safetensors").is_file():
        for key, value in load_file(str(path / "optimizer.safetensors")).items():
            param_id, name = key.split("/", 1)
            state.setdefault(int(param_id), {})[name] = value
    for key, value in meta["optimizer_plain"].items():
        param_id, name = key.split("/", 1)
        state.setdefault(int(param_id), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_groups"]})
    scheduler.load_state_dict({**scheduler.state_dict(), **meta["scheduler"]})
    return meta["state"]
