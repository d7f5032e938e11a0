"""``nerx train TRAIN [--dev DEV] --kind KIND``: fine-tune a span model, save the best epoch.

The options that tune training are the fields of :class:`nerx.train_settings.TrainSettings`:
their defaults, limits and help come from there. Those a model kind may change default to
``None`` here, so the library resolves them (the value given > the kind's
``training_defaults`` > the field's default); ``--help`` lists what each kind uses.
"""

from __future__ import annotations

import functools

import typer
from typer.core import TyperCommand

from nerx.cli.common import (
    device_option,
    err_console,
    from_option,
    handles_errors,
    lang_option,
    output_option,
    precision_option,
    quiet_option,
    warn,
)
from nerx.defaults import DEFAULT_ENCODER, DEFAULT_KIND
from nerx.train_settings import (
    DEFAULT_DEV_SPLIT,
    TrainSettings,
    field_default,
    field_help,
    field_limits,
    per_kind_defaults,
)

HELP = f"""Fine-tune a span model on an encoder and save it as a model directory.

Reads any format nerx reads; labels come from the training data. Scores dev every epoch with
the metric of [bold]nerx eval[/], keeps the best epoch, stops early, logs metrics.jsonl.
Without --dev, a fraction of TRAIN (--dev-split, default {DEFAULT_DEV_SPLIT}, chosen by --seed)
is held out as dev; config.json records which documents. Several TRAIN files are read as one
set. --keep last trains all --epochs and saves the last one: the way to a final model on train
and dev together, once a schedule has been chosen on dev.

Options whose "default per kind" is listed take the value the model kind prefers when not given;
train_config.json and config.json record the values used.

The output directory, its train_config.json and metrics.jsonl exist from the first step.
Under torchrun it trains on every process (DDP; --batch-size is the global batch); with
--save-every it checkpoints mid-epoch, and --resume continues exactly where a run stopped.

[dim]Examples:[/]
  nerx train eng.train --dev eng.testa --kind spandec --output models/conll
  nerx train annotated.jsonl --dev-split 0.2 --output models/mine
  nerx train train.jsonl --dev dev.jsonl --kind token --encoder bert-base-cased --epochs 5
  torchrun --nproc-per-node 4 -m nerx train eng.train --dev eng.testa -o models/ddp
  nerx train eng.train --dev eng.testa -o models/conll --save-every 500 --resume
  nerx train train.json dev.json --dev dev.json --keep last --epochs 25 -o models/final
"""

#: Flags for the TrainSettings fields whose names would not make a good one.
_FLAGS = {"learning_rate": ("--lr",)}
#: The TrainSettings fields that are options of nerx train, each under its own name.
_SETTING_NAMES = frozenset(
    name
    for name in TrainSettings.__dataclass_fields__
    if name not in ("hyper", "symmetric_relations")
)


def per_kind_option(name: str):
    """An option for a field a model kind may change: not given is ``None``."""
    flags = _FLAGS.get(name, ())
    return typer.Option(
        None, *flags, help=f"{field_help(name)} Default: per kind.", **field_limits(name)
    )


def setting_option(name: str, *flags: str):
    """An option for a field with one default for every kind."""
    return typer.Option(
        field_default(name),
        *(flags or _FLAGS.get(name, ())),
        help=field_help(name),
        **field_limits(name),
    )


class TrainCommand(TyperCommand):
    """``nerx train``, whose help names the registered kinds and, for each option a kind may
    change, its default for every kind; built when help is asked for, so the command line
    starts without importing the models."""

    def format_help(self, ctx, formatter) -> None:
        from nerx.errors import NerxError

        try:
            describe_kinds(self.params)
        except NerxError as exc:  # a broken kind from another package: say so, help anyway
            warn(str(exc))
        return super().format_help(ctx, formatter)


def describe_kinds(params) -> None:
    """Fill in the help of ``--kind`` and of the per-kind options from the registry."""
    from nerx.models import kinds, model_class
    from nerx.train_settings import kind_defaults

    names = kinds()
    preferred = {kind: kind_defaults(model_class(kind)) for kind in names}
    base = per_kind_defaults()
    for param in params:
        if param.name == "kind":
            param.help = f"Model kind: {', '.join(names)}. Default: {DEFAULT_KIND}."
        elif param.name in base:
            own = {k: v[param.name] for k, v in preferred.items() if param.name in v}
            per = "".join(f"{kind} {value}; " for kind, value in own.items())
            rest = "the others" if own else "every kind"
            param.help = (
                f"{field_help(param.name)} Default per kind: {per}{base[param.name]} for {rest}."
            )


def register(app: typer.Typer) -> None:
    app.command("train", help=HELP, no_args_is_help=True, cls=TrainCommand)(train_command)


# The options of nerx train that are not TrainSettings fields, or that word them for here.
_TRAIN = typer.Argument(
    ..., metavar="TRAIN", help="Training data (any format); several files are one set."
)
_DEV = typer.Option(
    None, "--dev", help="Dev data, scored every epoch (default: part of TRAIN, --dev-split)."
)
_DEV_SPLIT = typer.Option(
    None,
    "--dev-split",
    metavar="FRACTION",
    help="Without --dev: the fraction of TRAIN held out as dev, chosen by --seed "
    f"(default {DEFAULT_DEV_SPLIT}).",
)
_KIND = typer.Option(
    None, "--kind", "-k", help=f"Model kind (listed by nerx train --help). Default: {DEFAULT_KIND}."
)
_MODEL_AS_KIND = typer.Option(
    None, "--model", "-m", hidden=True, help="Deprecated spelling of --kind in nerx train."
)
_ENCODER = typer.Option(
    DEFAULT_ENCODER,
    "--encoder",
    "-e",
    help=f"Hugging Face encoder name or path; {DEFAULT_ENCODER!r} is the bundled MiniLM-L6.",
)
_LIMIT = typer.Option(None, min=1, help="Use only the first N training documents.")
_SENTENCE_DOCS = typer.Option(
    False,
    "--sentence-docs",
    help="CoNLL input: every sentence its own document (shorter windows, more steps, no "
    "cross-sentence context).",
)
_SYMMETRIC = typer.Option(
    None,
    "--symmetric",
    metavar="LABEL",
    help="A relation label without direction (e.g. CONJUNCTION); repeatable. "
    "Such relations are predicted and written once per pair.",
)
_SET = typer.Option(
    None,
    "--set",
    metavar="KEY=VALUE",
    help="A model setting KEY=VALUE (JSON value), repeatable: e.g. --set omega=4 "
    "--set dropout=0.2. A wrong name or value is an error that lists the kind's settings.",
)


@handles_errors
def train_command(
    train_paths: list[str] = _TRAIN,
    dev_path: str | None = _DEV,
    dev_split: float | None = _DEV_SPLIT,
    kind: str | None = _KIND,
    model: str | None = _MODEL_AS_KIND,
    encoder: str = _ENCODER,
    output: str = output_option(..., "Directory for the model, metrics.jsonl and the checkpoint."),
    from_format: str | None = from_option("Format of TRAIN and DEV, when detection is not enough."),
    epochs: int | None = per_kind_option("epochs"),
    batch_size: int | None = per_kind_option("batch_size"),
    learning_rate: float | None = per_kind_option("learning_rate"),
    head_lr_multiplier: float | None = per_kind_option("head_lr_multiplier"),
    weight_decay: float | None = per_kind_option("weight_decay"),
    warmup: float | None = per_kind_option("warmup"),
    heads_first: float | None = per_kind_option("heads_first"),
    schedule: str | None = per_kind_option("schedule"),
    max_grad_norm: float | None = per_kind_option("max_grad_norm"),
    eval_batch_size: int | None = per_kind_option("eval_batch_size"),
    max_span_length: int | None = per_kind_option("max_span_length"),
    window: int | None = setting_option("window"),
    patience: int | None = per_kind_option("patience"),
    keep: str = setting_option("keep"),
    seed: int = setting_option("seed"),
    device: str = device_option(field_default("device")),
    limit: int | None = _LIMIT,
    sentence_docs: bool = _SENTENCE_DOCS,
    symmetric: list[str] | None = _SYMMETRIC,
    model_settings: list[str] | None = _SET,
    resume: bool = typer.Option(False, help="Continue from the checkpoint in OUTPUT."),
    precision: str = precision_option(field_default("precision")),
    lang: str = lang_option(field_default("lang")),
    grad_accum: int = setting_option("grad_accum"),
    save_every: int = setting_option("save_every"),
    log_every: int = setting_option("log_every"),
    quiet: bool = quiet_option("No progress and no summary on stderr (errors still show)."),
) -> None:
    """The body of nerx train: read the data, train, report (rank 0 only)."""
    options = {name: value for name, value in locals().items() if name in _SETTING_NAMES}
    from nerx.models import model_class
    from nerx.runtime import ranks
    from nerx.training import train

    kind = _chosen_kind(kind, model)
    model_class(kind)  # an unknown kind fails before any data is read
    settings = TrainSettings(
        **options,
        hyper=parse_settings(model_settings or [], kind),
        symmetric_relations=list(symmetric or []),
    )
    train_docs, dev_docs, held_out = _read_data(
        train_paths, dev_path, dev_split, from_format, sentence_docs, limit, seed
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
    if quiet or not world.is_main:  # rank 0 speaks for every process
        run()
        return
    held = f"held out of it (--dev-split {held_out.fraction}, seed {seed})" if held_out else ""
    processes = f", {world.world_size} processes" if world.distributed else ""
    err_console.print(
        f"training [bold]{kind}[/] on {len(train_docs)} documents ({', '.join(train_paths)}), "
        f"dev {len(dev_docs)} documents{' ' + held if held else ''}, encoder {encoder}{processes}"
    )
    shown = _TrainingProgress() if err_console.is_terminal else PlainProgress(_plain_line)
    with shown as progress:
        result = run(on_step=progress.step, on_epoch=progress.epoch)
    _print_result(result, keep)


def _chosen_kind(kind: str | None, model: str | None) -> str:
    """``--kind``, or the deprecated ``--model KIND`` with a warning; both is an error."""
    from nerx.errors import ConfigError

    if model is None:
        return kind or DEFAULT_KIND
    if kind is not None:
        raise ConfigError(
            f"--kind {kind} and --model {model} both name the model kind",
            hint="give only --kind (--model in nerx train is deprecated)",
        )
    warn(f"--model in nerx train is deprecated and will name a model; use --kind {model}")
    return model


def _read_data(train_paths, dev_path, dev_split, from_format, sentence_docs, limit, seed):
    """The training and dev documents, and which were held out when there is no dev file."""
    from nerx.errors import ConfigError
    from nerx.io import detect_format, read, source_options
    from nerx.training import split_dev

    if dev_path is not None and dev_split is not None:
        raise ConfigError(
            "--dev-split holds out part of TRAIN as dev when there is no --dev; "
            "with --dev it would do nothing",
            hint="give either --dev DEV or --dev-split FRACTION",
        )

    def load(path: str) -> list:
        name = from_format or detect_format(path)
        options = source_options(name, sentence_docs=sentence_docs or None)
        return list(read(path, name, **options))

    train_docs = [doc for path in train_paths for doc in load(path)]
    if limit:
        train_docs = train_docs[:limit]
    if dev_path is not None:
        return train_docs, load(dev_path), None
    fraction = DEFAULT_DEV_SPLIT if dev_split is None else dev_split
    return split_dev(train_docs, fraction, seed)


def _print_result(result, keep: str) -> None:
    which = "best dev F1" if keep == "best" else "dev F1 of the last epoch"
    err_console.print(
        f"[green]{which} {result.best_score:.2f}[/] at epoch {result.best_epoch}; "
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
