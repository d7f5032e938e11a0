"""``nerx train TRAIN [--dev DEV] --model KIND``: fine-tune a span model, save the best epoch."""

from __future__ import annotations

import functools

import typer

from nerx.cli.common import err_console, handles_errors

HELP = """Fine-tune a span model on an encoder and save it as a model directory.

Reads any format nerx reads; labels come from the training data. Scores dev every epoch with
the metric of [bold]nerx eval[/], keeps the best epoch, stops early, logs metrics.jsonl.
Without --dev, a fraction of TRAIN (--dev-split, default 0.1, chosen by --seed) is held out
as dev; config.json records which documents.

The output directory, its train_config.json and metrics.jsonl exist from the first step.
Under torchrun it trains on every process (DDP; --batch-size is the global batch); with
--save-every it checkpoints mid-epoch, and --resume continues exactly where a run stopped.

[dim]Examples:[/]
  nerx train eng.train --dev eng.testa --model spandec --output models/conll
  nerx train annotated.jsonl --dev-split 0.2 --output models/mine
  nerx train train.jsonl --dev dev.jsonl --model token --encoder bert-base-cased --epochs 5
  torchrun --nproc-per-node 4 -m nerx train eng.train --dev eng.testa -o models/ddp
  nerx train eng.train --dev eng.testa -o models/conll --save-every 500 --resume
"""


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP, no_args_is_help=True)(train_command)


@handles_errors
def train_command(
    train_path: str = typer.Argument(..., metavar="TRAIN", help="Training data (any format)."),
    dev_path: str | None = typer.Option(
        None, "--dev", help="Dev data, scored every epoch (default: part of TRAIN, --dev-split)."
    ),
    dev_split: float | None = typer.Option(
        None,
        "--dev-split",
        metavar="FRACTION",
        help="Without --dev: the fraction of TRAIN held out as dev, chosen by --seed "
        "(default 0.1).",
    ),
    kind: str = typer.Option(
        "spandec",
        "--model",
        "-m",
        help="Model kind: token, spandec, sf-spandec (NER); iter, plmarker (NER and relations); "
        "sener (long documents); padellm (a causal LM, with --encoder naming it).",
    ),
    encoder: str = typer.Option(
        "minilm",
        "--encoder",
        "-e",
        help="Hugging Face encoder name or path; 'minilm' is the bundled MiniLM-L6.",
    ),
    output: str = typer.Option(
        ..., "--output", "-o", help="Directory for the model, metrics.jsonl and the checkpoint."
    ),
    from_format: str | None = typer.Option(
        None, "--from", "-f", help="Format of TRAIN and DEV, when detection is not enough."
    ),
    epochs: int = typer.Option(3, min=1, help="Passes over the training data."),
    batch_size: int = typer.Option(16, min=1, help="Windows per optimisation step."),
    lr: float = typer.Option(5e-5, help="Learning rate of the encoder."),
    head_lr_multiplier: float = typer.Option(
        10.0, help="Learning rate multiplier of the new heads."
    ),
    weight_decay: float = typer.Option(0.01, help="AdamW weight decay (not on biases and norms)."),
    warmup: float = typer.Option(0.1, min=0.0, max=1.0, help="Fraction of steps spent warming up."),
    schedule: str = typer.Option(
        "linear", help="Learning-rate schedule after warmup: linear or onecycle."
    ),
    max_span_length: int = typer.Option(8, min=1, help="Longest candidate span, in words."),
    window: int | None = typer.Option(
        None,
        min=16,
        help="Subwords per window (default: the encoder's maximum). Smaller windows train faster.",
    ),
    patience: int = typer.Option(
        2, min=1, help="Stop after this many epochs without a better dev score."
    ),
    seed: int = typer.Option(13, help="Random seed."),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    limit: int | None = typer.Option(None, min=1, help="Use only the first N training documents."),
    sentence_docs: bool = typer.Option(
        False,
        "--sentence-docs",
        help="CoNLL input: every sentence its own document (shorter windows, more steps, no "
        "cross-sentence context).",
    ),
    symmetric: list[str] | None = typer.Option(  # noqa: B008 (typer reads options from defaults)
        None,
        "--symmetric",
        metavar="LABEL",
        help="A relation label without direction (e.g. CONJUNCTION); repeatable. "
        "Such relations are predicted and written once per pair.",
    ),
    model_settings: list[str] | None = typer.Option(  # noqa: B008
        None,
        "--set",
        metavar="KEY=VALUE",
        help="A model setting KEY=VALUE (JSON value), repeatable: e.g. --set omega=4 "
        "--set dropout=0.2. A wrong name or value is an error that lists the kind's settings.",
    ),
    resume: bool = typer.Option(False, help="Continue from the checkpoint in OUTPUT."),
    precision: str = typer.Option(
        "auto", help="auto (bf16 on GPU, fp32 on CPU), bf16 or fp32: autocast of every step."
    ),
    grad_accum: int = typer.Option(
        1, min=1, help="Run each step's batch in K pieces: the update of a batch K times larger."
    ),
    save_every: int = typer.Option(
        0, min=0, help="Checkpoint every N optimizer steps as well as every epoch (0: epochs only)."
    ),
    log_every: int = typer.Option(
        50, min=0, help="A metrics.jsonl line (loss, lr, examples/s) every N steps (0: none)."
    ),
) -> None:
    from nerx.errors import ConfigError
    from nerx.io import detect_format, read
    from nerx.models import model_class
    from nerx.runtime import ranks
    from nerx.training import TrainSettings, split_dev, train

    model_class(kind)  # an unknown kind fails before any data is read
    if dev_path is not None and dev_split is not None:
        raise ConfigError(
            "--dev-split holds out part of TRAIN as dev when there is no --dev; "
            "with --dev it would do nothing",
            hint="give either --dev DEV or --dev-split FRACTION",
        )

    def load(path: str) -> list:
        name = from_format or detect_format(path)
        options = {"sentence_docs": True} if sentence_docs and name == "conll" else {}
        return list(read(path, name, **options))

    train_docs = load(train_path)
    if limit:
        train_docs = train_docs[:limit]
    held_out = None
    if dev_path is None:
        fraction = 0.1 if dev_split is None else dev_split
        train_docs, dev_docs, held_out = split_dev(train_docs, fraction, seed)
    else:
        dev_docs = load(dev_path)
    settings = TrainSettings(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        head_lr_multiplier=head_lr_multiplier,
        weight_decay=weight_decay,
        warmup=warmup,
        schedule=schedule,
        max_span_length=max_span_length,
        window=window,
        patience=patience,
        seed=seed,
        device=device,
        hyper=parse_settings(model_settings or [], kind),
        symmetric_relations=list(symmetric or []),
        precision=precision,
        grad_accum=grad_accum,
        save_every=save_every,
        log_every=log_every,
    )
    run = functools.partial(
        train,
        train_docs,
        dev_docs,
        kind=kind,
        encoder=encoder,
        output=output,
        settings=settings,
        resume=resume,
        dev_split=held_out,
    )
    world = ranks()
    if not world.is_main:  # rank 0 speaks for every process
        run()
        return
    processes = f", {world.world_size} processes" if world.distributed else ""
    dev_note = (
        f"dev {len(dev_docs)} documents held out of it (--dev-split {held_out.fraction}, "
        f"seed {seed})"
        if held_out
        else f"dev {len(dev_docs)} documents"
    )
    err_console.print(
        f"training [bold]{kind}[/] on {len(train_docs)} documents ({train_path}), "
        f"{dev_note}, encoder {encoder}{processes}"
    )
    shown = _TrainingProgress() if err_console.is_terminal else PlainProgress(_plain_line)
    with shown as progress:
        result = run(on_step=progress.step, on_epoch=progress.epoch)
    err_console.print(
        f"[green]best dev F1 {result.best_score:.2f}[/] at epoch {result.best_epoch}; "
        f"model saved to [bold]{result.output}[/]"
    )
    if result.calibration:
        chosen = {k: v for k, v in result.calibration.items() if not isinstance(v, dict)}
        err_console.print(f"chosen on dev: {chosen}")


class _TrainingProgress:
    """A rich progress bar per epoch with the loss and examples/s, on stderr."""

    def __enter__(self):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.1f} ex/s"),
            TimeRemainingColumn(),
            console=err_console,
            transient=False,
        )
        self._bar.__enter__()
        self._task = None
        self._epoch = 0
        return self

    def step(self, p) -> None:
        if self._task is None or p.epoch != self._epoch:
            self._epoch = p.epoch
            self._task = self._bar.add_task(
                "", total=p.steps_per_epoch, epoch=p.epoch, loss=p.loss, rate=0.0
            )
        self._bar.update(self._task, completed=p.step, loss=p.loss, rate=p.examples_per_second)

    def epoch(self, record: dict) -> None:
        mark = " [green](best)[/]" if record["best"] else ""
        self._bar.console.print(
            f"epoch {record['epoch']}: dev {record['metric']} F1 {record['dev_f1']:.2f}{mark}"
        )

    def __exit__(self, *exc):
        return self._bar.__exit__(*exc)


class PlainProgress:
    """For logs (stderr not a terminal): one plain line every ``interval`` seconds with the
    epoch, step, loss, examples/s and the time left; epoch results as they come."""

    def __init__(self, write, *, interval: float = 30.0, clock=None) -> None:
        import time

        self._write = write
        self._interval = interval
        self._clock = clock or time.monotonic
        self._started = self._last = None
        self._first_step = 0

    def __enter__(self):
        self._started = self._last = self._clock()
        return self

    def step(self, p) -> None:
        now = self._clock()
        if not self._first_step:
            self._first_step = p.global_step  # a resumed run counts from its checkpoint
            self._started = now
        if now - self._last < self._interval:
            return
        self._last = now
        done = p.global_step - self._first_step
        left = max(p.total_steps - p.global_step, 0)
        eta = _duration(left * (now - self._started) / done) if done > 0 else "?"
        self._write(
            f"epoch {p.epoch} step {p.step}/{p.steps_per_epoch} loss {p.loss:.4f} "
            f"{p.examples_per_second:.1f} ex/s ETA {eta}"
        )

    def epoch(self, record: dict) -> None:
        mark = " (best)" if record["best"] else ""
        self._write(
            f"epoch {record['epoch']}: dev {record['metric']} F1 {record['dev_f1']:.2f}{mark}"
        )

    def __exit__(self, *exc):
        return False


def _plain_line(text: str) -> None:
    err_console.print(text, markup=False, highlight=False, soft_wrap=True)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def parse_settings(items: list[str], kind: str | None = None) -> dict:
    """``KEY=VALUE`` pairs; a value is read as JSON (numbers, booleans, lists), else text.
    With ``kind``, checked against that kind's settings (unknown keys, types, ranges)."""
    import json

    from nerx.errors import ConfigError
    from nerx.models import model_class

    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} is not KEY=VALUE", hint="e.g. --set omega=4")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    if kind is not None:
        model_class(kind).Settings.from_hyper(settings, kind)
    return settings
