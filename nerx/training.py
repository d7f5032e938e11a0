"""One training loop for every model, in one process or under torchrun.

AdamW with weight decay (none on biases and norms), a larger learning rate for the new heads,
linear warmup then linear decay (or one-cycle), gradient clipping, bf16 autocast where asked
(by default on GPU). The model is scored on dev every epoch with the same metric as
``nerx eval``; the best epoch is saved, training stops early when dev stops improving, and a
checkpoint (safetensors + JSON, never pickle, see :mod:`nerx.checkpoint`) lets a run resume,
at an epoch's end or, with ``save_every``, in the middle of one, exactly where it stopped.

Under torchrun the model is wrapped in DistributedDataParallel (NCCL on GPUs, gloo on CPU).
``batch_size`` is the global batch: every rank cuts the same length-bucketed batches (their
order is a function of the seed and the epoch) and takes its share of each; with
``grad_accum`` K every share is run in K pieces before one optimizer step. The loss of a
piece is weighted by its share of the batch's examples, so the update is the same whatever
the number of ranks and pieces when a model's loss is a mean over equal parts. Rank 0 alone
scores dev, saves, calibrates and logs; the others wait for it.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from nerx.checkpoint import load_checkpoint, rng_state, save_checkpoint, write_json_atomic
from nerx.defaults import DEFAULT_ENCODER, DEFAULT_KIND
from nerx.doc import Document, TextPreparer
from nerx.errors import ConfigError
from nerx.models.base import Example, ModelConfig, SpanModel, model_class, save_model
from nerx.pipeline import predict_documents
from nerx.progress import StepBar
from nerx.runtime import (
    Ranks,
    all_reduce_sum,
    autocast,
    barrier,
    broadcast_object,
    gather_objects,
    move_batch,
    ranks,
    resolve_device,
    resolve_precision,
    start_distributed,
    stop_distributed,
)
from nerx.train_settings import DEFAULT_DEV_SPLIT, TrainSettings, check_settings

CHECKPOINT_DIR = "checkpoint"
METRICS_NAME = "metrics.jsonl"
#: The settings a run resolved (kind, encoder, labels, ranks...), written at its first step.
RUN_CONFIG_NAME = "train_config.json"


@dataclass
class Progress:
    """What the loop reports after every step (the CLI draws it as a progress bar)."""

    epoch: int
    step: int
    steps_per_epoch: int
    loss: float
    examples_per_second: float
    #: Optimizer steps since the run began (resumed runs count the steps before the kill).
    global_step: int = 0
    total_steps: int = 0


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
    docs: Sequence[Document], fraction: float = DEFAULT_DEV_SPLIT, seed: int = 13
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
    output: str | Path,
    kind: str = DEFAULT_KIND,
    encoder: str = DEFAULT_ENCODER,
    settings: TrainSettings | None = None,
    resume: bool = False,
    on_step: Callable[[Progress], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    dev_split: DevSplit | None = None,
    progress: bool = False,
) -> TrainResult:
    """Fine-tune a ``kind`` model on ``encoder``; save the best epoch (by dev F1) to ``output``,
    or every epoch in turn with ``settings.keep == "last"`` (``best_*`` then name the last).

    The settings a caller leaves at ``None`` take the kind's ``training_defaults``, else the
    defaults of :class:`TrainSettings`; the values used are recorded in ``train_config.json``
    and the model's ``config.json``. ``dev_split`` says that ``dev_docs`` were held out of
    the training data (:func:`split_dev`); the model's config records it.
    ``progress=True`` shows a ``tqdm`` bar over the steps (a widget in a notebook).

    Under torchrun every rank calls this with the same arguments; ``on_step`` and
    ``on_epoch`` are called on rank 0 only."""
    # A value given > the kind's training_defaults > the default of TrainSettings.
    settings = (settings or TrainSettings()).for_kind(kind)
    check_settings(settings)
    device = resolve_device(settings.device)
    precision = resolve_precision(settings.precision, device)
    shown = StepBar(on_step) if progress and ranks().is_main else None
    on_step = shown or on_step
    started = start_distributed(device)
    try:
        return _train(
            train_docs,
            dev_docs,
            kind=kind,
            encoder=encoder,
            output=Path(output),
            settings=settings,
            device=device,
            precision=precision,
            resume=resume,
            on_step=on_step,
            on_epoch=on_epoch,
            dev_split=dev_split,
        )
    finally:
        if shown is not None:
            shown.close()
        if started:
            stop_distributed()


@dataclass
class _Run:
    """What one training run holds between its steps: built by :func:`_setup`."""

    output: Path
    settings: TrainSettings
    device: torch.device
    precision: str
    world: Ranks
    model: SpanModel
    net: Any  # the module the loop runs forward through (DDP under torchrun)
    examples: list[Example]
    dev_docs: Sequence[Document]
    optimizer: torch.optim.Optimizer
    scheduler: Any
    state: dict[str, Any]
    metrics: Path
    main_metric: str
    total_steps: int
    #: The encoder's parameters, held still for the first ``heads_only_steps`` steps.
    encoder_parameters: list[torch.nn.Parameter]
    heads_only_steps: int

    def frozen(self) -> list[torch.nn.Parameter]:
        """The parameters the next step leaves alone (``heads_first``)."""
        return self.encoder_parameters if self.state["global_step"] < self.heads_only_steps else []

    def checkpoint(self) -> None:
        rng = gather_objects(rng_state())  # every rank's dropout stream
        if self.world.is_main:
            self.state["metrics_bytes"] = self.metrics.stat().st_size
            save_checkpoint(
                self.output / CHECKPOINT_DIR,
                model=self.model,
                optimizer=self.optimizer,
                scheduler=self.scheduler,
                state=self.state,
                rng_states=rng,
            )
        barrier()


def _train(
    train_docs,
    dev_docs,
    *,
    kind: str,
    encoder: str,
    output: Path,
    settings: TrainSettings,
    device: torch.device,
    precision: str,
    resume: bool,
    on_step,
    on_epoch,
    dev_split: DevSplit | None,
) -> TrainResult:
    run = _setup(
        train_docs,
        dev_docs,
        kind=kind,
        encoder=encoder,
        output=output,
        settings=settings,
        device=device,
        precision=precision,
        resume=resume,
        dev_split=dev_split,
    )
    state = run.state
    for epoch in range(state["epoch"] + 1, settings.epochs + 1):
        if state["stale"] >= settings.patience and settings.keep == "best":
            break  # early stop; a resumed run that had stopped early trains no more
        epoch_started = time.perf_counter()
        _run_epoch(run, epoch, on_step)
        _finish_epoch(run, epoch, epoch_started, on_epoch)
    calibration: dict[str, Any] = {}
    if run.world.is_main:
        calibration = _calibrate(output, device, dev_docs, settings, precision, run.main_metric)
    barrier()
    return TrainResult(
        output, state["best_epoch"], state["best_score"], state["history"], calibration
    )


def _setup(
    train_docs,
    dev_docs,
    *,
    kind: str,
    encoder: str,
    output: Path,
    settings: TrainSettings,
    device: torch.device,
    precision: str,
    resume: bool,
    dev_split: DevSplit | None,
) -> _Run:
    """Prepare the data, build the model, optimizer and schedule, restore a checkpoint when
    resuming, and (rank 0) start metrics.jsonl and train_config.json."""
    world = ranks()
    _seed(settings.seed)
    prepare = TextPreparer(settings.lang)
    prepare(train_docs)
    prepare(dev_docs)
    profile = _checked_profile(train_docs, settings)
    model = _new_model(kind, encoder, settings, profile, len(train_docs), dev_split).to(device)
    examples = [ex for i, doc in enumerate(train_docs) for ex in model.prepare(doc, i, gold=True)]
    learned = model.learn_from_data(examples)  # deterministic, so a resumed run agrees
    model.config.hyper.update({k: v for k, v in learned.items() if k not in settings.hyper})
    if world.distributed:
        torch.manual_seed(settings.seed + world.rank)  # dropout differs between ranks
    steps_per_epoch = math.ceil(len(examples) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    optimizer = _optimizer(model, settings)
    scheduler = _scheduler(optimizer, settings, total_steps)
    state = _start_state(settings, output, model, optimizer, scheduler, world, resume)
    metrics = output / METRICS_NAME
    if world.is_main:
        _start_log(output, metrics, state, resume)
        run_config = {
            "kind": kind,
            "encoder": encoder,
            "settings": asdict(settings),
            "precision": precision,
            "device": str(device),
            "world_size": world.world_size,
            "train_documents": len(train_docs),
            "dev_documents": len(dev_docs),
            "train_windows": len(examples),
            "steps_per_epoch": steps_per_epoch,
            "data": profile,
            "hyper": model.config.hyper,
        }
        write_json_atomic(output / RUN_CONFIG_NAME, run_config)
    # Relation models are chosen on Rel+, unless the data has no relations to score.
    has_relations = model.predicts_relations and bool(model.config.relation_labels)
    return _Run(
        output=output,
        settings=settings,
        device=device,
        precision=precision,
        world=world,
        model=model,
        net=_wrap(model, device, world),
        examples=examples,
        dev_docs=dev_docs,
        optimizer=optimizer,
        scheduler=scheduler,
        state=state,
        metrics=metrics,
        main_metric="relations_strict" if has_relations else "entities",
        total_steps=total_steps,
        encoder_parameters=_encoder_parameters(model),
        heads_only_steps=int(total_steps * settings.heads_first),
    )


def _new_model(kind, encoder, settings, profile, train_documents, dev_split) -> SpanModel:
    """A fresh ``kind`` model for the labels of the data; its config records the settings."""
    config = ModelConfig(
        kind=kind,
        labels=profile["labels"],
        relation_labels=profile["relation_labels"],
        symmetric_relations=sorted(settings.symmetric_relations),
        encoder=encoder,
        max_span_length=settings.max_span_length,
        window=settings.window,
        hyper={"nested": profile["nested"], **settings.hyper},
        training={**asdict(settings), "train_documents": train_documents},
    )
    if dev_split is not None:
        config.training["dev_split"] = asdict(dev_split)
    return model_class(kind).create(config)


def _checked_profile(train_docs, settings: TrainSettings) -> dict[str, Any]:
    """:func:`data_profile` of data that can train a model with these settings."""
    profile = data_profile(train_docs)
    if not profile["labels"]:
        raise ConfigError("the training data has no entities", hint="check the file and --from")
    unknown = sorted(set(settings.symmetric_relations) - set(profile["relation_labels"]))
    if unknown:
        raise ConfigError(
            f"symmetric relation labels {unknown} are not in the training data",
            hint=f"its relation labels: {', '.join(profile['relation_labels']) or 'none'}",
        )
    return profile


def _start_log(output: Path, metrics: Path, state: dict, resume: bool) -> None:
    """The output directory and metrics.jsonl: a fresh run starts an empty log; a resumed
    one drops what came after its checkpoint."""
    output.mkdir(parents=True, exist_ok=True)
    with open(metrics, "a+b") as log:
        if not resume or "metrics_bytes" in state:
            log.truncate(state["metrics_bytes"] if resume else 0)


def _start_state(settings, output, model, optimizer, scheduler, world, resume) -> dict:
    """Where the run starts: nothing done, or where its checkpoint stopped."""
    state = {
        "epoch": 0,  # epochs done
        "step": 0,  # steps done in the epoch after them
        "global_step": 0,
        "metrics_bytes": 0,  # metrics.jsonl up to this checkpoint
        "best_score": -1.0,
        "best_epoch": 0,
        "stale": 0,
        "history": [],
        "batch_size": settings.batch_size,  # a place in an epoch counts batches of this size
    }
    if not resume:
        return state
    loaded = _resume(output, model, optimizer, scheduler, world)
    state = {**{k: v for k, v in state.items() if k != "metrics_bytes"}, **loaded}
    state["batch_size"] = settings.batch_size
    if loaded.get("step") and loaded.get("batch_size") != settings.batch_size:
        raise ConfigError(
            f"the checkpoint stopped mid-epoch with --batch-size {loaded.get('batch_size')}, "
            f"not {settings.batch_size}: its place in the epoch would be lost",
            hint=f"resume with --batch-size {loaded.get('batch_size')}",
        )
    return state


def _run_epoch(run: _Run, epoch: int, on_step) -> None:
    """The optimizer steps of one epoch (from where a resumed run stopped in it)."""
    settings, state, main = run.settings, run.state, run.world.is_main
    batches = epoch_batches(run.examples, settings.batch_size, settings.seed, epoch)
    run.model.train()
    epoch_started = time.perf_counter()
    seen, logged = 0, _LogWindow()
    for step in range(state["step"] + 1, len(batches) + 1):
        batch_examples = batches[step - 1]
        learning_rate = run.optimizer.param_groups[0]["lr"]  # the encoder's, for this step
        loss = _optimizer_step(
            run.net,
            run.model,
            run.optimizer,
            run.scheduler,
            batch_examples,
            settings,
            run.device,
            run.precision,
            frozen=run.frozen(),
        )
        if not math.isfinite(loss):
            raise ConfigError(
                f"the loss became {loss} at epoch {epoch}, step {step}",
                hint="lower --lr, or check the data for empty or broken documents",
            )
        state["step"] = step
        state["global_step"] += 1
        seen += len(batch_examples)
        rate = seen / max(time.perf_counter() - epoch_started, 1e-9)
        logged.add(loss, len(batch_examples))
        if main and settings.log_every and state["global_step"] % settings.log_every == 0:
            _append(run.metrics, logged.record(epoch, step, state, learning_rate))
        due = settings.save_every and state["global_step"] % settings.save_every == 0
        if due and step < len(batches):  # the epoch's end checkpoints anyway
            run.checkpoint()
        if main and on_step:
            on_step(
                Progress(
                    epoch,
                    step,
                    len(batches),
                    loss,
                    rate,
                    state["global_step"],
                    run.total_steps,
                )
            )


def _finish_epoch(run: _Run, epoch: int, epoch_started: float, on_epoch) -> None:
    """Score dev and save the best model (rank 0), share the outcome, checkpoint."""
    state, main = run.state, run.world.is_main
    state["step"] = 0
    record = None
    if main:
        record = _end_epoch(
            run.model,
            run.output,
            run.dev_docs,
            run.settings,
            run.precision,
            run.main_metric,
            state,
            epoch,
        )
        record["seconds"] = round(time.perf_counter() - epoch_started, 2)
        record["learning_rate"] = run.scheduler.get_last_lr()[0]
        state["history"].append({k: v for k, v in record.items() if k != "best"})
        _append(run.metrics, {k: v for k, v in record.items() if k != "best"})
    state["epoch"] = epoch
    state.update(broadcast_object({k: v for k, v in state.items()}))
    run.checkpoint()
    if main and on_epoch:
        on_epoch(record)


def _resume(output: Path, model, optimizer, scheduler, world: Ranks) -> dict:
    return load_checkpoint(
        output / CHECKPOINT_DIR,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        rank=world.rank,
    )


def _wrap(model: SpanModel, device: torch.device, world: Ranks):
    """The module the loop runs forward through: DDP under torchrun, else the model itself.
    Inputs are moved to the device by the loop, so DDP is given no device ids."""
    if not world.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    # Some kinds leave parameters unused in some batches (a relation head without relations).
    return DistributedDataParallel(model, find_unused_parameters=True)


def shares(items: list, parts: int) -> list[list]:
    """``items`` cut into ``parts`` contiguous pieces whose sizes differ by at most one (the
    first ones larger; pieces are empty when there are fewer items than parts)."""
    size, extra = divmod(len(items), parts)
    cut, first = [], 0
    for part in range(parts):
        last = first + size + (1 if part < extra else 0)
        cut.append(items[first:last])
        first = last
    return cut


def _optimizer_step(
    net, model, optimizer, scheduler, batch_examples, settings, device, precision, frozen=()
) -> float:
    """One optimizer step on a global batch: this rank's share in ``grad_accum`` pieces.
    The ``frozen`` parameters drop their gradients, so the optimizer skips them (no update,
    no weight decay, no moments). Returns the loss of the whole batch (over all ranks)."""
    world = ranks()
    pieces = shares(batch_examples, world.world_size * settings.grad_accum)
    mine = pieces[world.rank * settings.grad_accum : (world.rank + 1) * settings.grad_accum]
    total = len(batch_examples)
    batch_loss = torch.zeros((), dtype=torch.float64, device=device)
    for index, piece in enumerate(mine):
        # DDP averages gradients over the ranks; the weight turns that into a sum over
        # pieces, each counted by its share of the batch. An empty piece (fewer examples
        # than pieces) runs one example at weight 0, so every rank joins the reduction.
        weight = len(piece) / total * world.world_size
        last = index == len(mine) - 1
        syncing = contextlib.nullcontext() if last or net is model else net.no_sync()
        with syncing:
            batch = move_batch(model.collate(piece or batch_examples[:1]), device)
            with autocast(device, precision):
                loss = net(batch).loss
            (loss * weight).backward()
        if piece:
            batch_loss += loss.detach().double() * (len(piece) / total)
    all_reduce_sum(batch_loss)
    for param in frozen:
        param.grad = None
    torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return batch_loss.item()


class _LogWindow:
    """Loss and examples/s since the last metrics.jsonl step line."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.loss, self.steps, self.examples = 0.0, 0, 0
        self.since = time.perf_counter()

    def add(self, loss: float, examples: int) -> None:
        self.loss += loss
        self.steps += 1
        self.examples += examples

    def record(self, epoch: int, step: int, state: dict, learning_rate: float) -> dict:
        elapsed = max(time.perf_counter() - self.since, 1e-9)
        line = {
            "epoch": epoch,
            "step": step,
            "global_step": state["global_step"],
            "loss": round(self.loss / max(self.steps, 1), 6),
            "learning_rate": learning_rate,
            "examples_per_second": round(self.examples / elapsed, 2),
            "examples": self.examples,
            "seconds": round(elapsed, 4),
        }
        self._reset()
        return line


def _append(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")
        log.flush()


def _end_epoch(model, output, dev_docs, settings, precision, main_metric, state, epoch) -> dict:
    """Score dev (rank 0), save the model when it is the best so far; the epoch's record."""
    score, entity_score = _dev_scores(model, dev_docs, settings, main_metric, precision)
    record = {
        "epoch": epoch,
        "dev_f1": round(score, 4),
        "metric": main_metric,
        "dev_entity_f1": round(entity_score, 4),
    }
    # Ties on the main metric (Rel+ often plateaus) go to the better entity F1.
    # Under keep=last every epoch is saved, and best_* name the last one.
    improved = settings.keep == "last" or (score, entity_score) > (
        state["best_score"],
        state.get("best_entities", -1.0),
    )
    if improved:
        state.update(best_score=score, best_entities=entity_score, best_epoch=epoch, stale=0)
        save_model(model, output)
    else:
        state["stale"] += 1
    model.train()
    return {**record, "best": improved}


def _calibrate(output, device, dev_docs, settings, precision, main_metric) -> dict:
    """Reload the best epoch, tune inference settings on dev, and save the final model."""
    from nerx.models.base import load_model

    best = load_model(output, device=device)
    # A resumed run calibrates afresh: what an earlier calibration chose is dropped first,
    # and --set reaches inference too (e.g. plmarker's ner_model).
    earlier = best.config.training.pop("calibration", {})
    for name in earlier:
        best.config.hyper.pop(name, None)
    best.config.hyper.update(settings.hyper)
    best.given_settings = frozenset(settings.hyper)  # --set values are kept, not tuned
    calibration = best.calibrate(
        lambda: _score_with(best, dev_docs, settings, main_metric, precision)
    )
    if calibration:
        best.config.training["calibration"] = calibration
    if calibration or earlier or settings.hyper:
        save_model(best, output)
    return calibration


def _score_with(
    model: SpanModel, dev_docs, settings: TrainSettings, metric: str, precision: str = "fp32"
) -> float:
    """Dev F1 (in %) of the model as it stands, with the metric of ``nerx eval``."""
    return _dev_scores(model, dev_docs, settings, metric, precision)[0]


def _dev_scores(
    model: SpanModel, dev_docs, settings, metric: str, precision: str = "fp32"
) -> tuple[float, float]:
    """Dev F1 (in %) on ``metric`` and on entities."""
    from nerx.scoring import evaluate

    predicted = predict_documents(
        model, dev_docs, batch_size=settings.eval_batch_size, precision=precision
    )
    scores = evaluate(dev_docs, predicted, symmetric=model.config.symmetric_relations)
    return getattr(scores, metric).f1 * 100, scores.entities.f1 * 100


def _seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def epoch_batches(examples: list[Example], size: int, seed: int, epoch: int) -> list:
    """The global batches of one epoch, a function of the seed and the epoch alone, so every
    rank cuts the same ones and a resumed run finds its place by counting."""
    return _batches(examples, size, random.Random(f"{seed}/{epoch}"))


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


def _encoder_parameters(model: SpanModel) -> list[torch.nn.Parameter]:
    """The pretrained encoder's parameters: every one that is not a new head's."""
    heads = model.head_parameter_names()
    return [param for name, param in model.named_parameters() if name not in heads]


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
