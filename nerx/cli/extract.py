"""``nerx extract CORPUS``: run a model over a corpus, streaming, and write what it finds."""

from __future__ import annotations

import contextlib
import sys
import time

import typer

from nerx.cli.common import (
    ANNOTATOR,
    ID_COLUMN,
    TEXT_COLUMN,
    _escape,
    device_option,
    err_console,
    fail,
    from_option,
    handles_errors,
    lang_option,
    model_option,
    output_option,
    precision_option,
    quiet_option,
    to_option,
)
from nerx.defaults import DEFAULT_MODEL
from nerx.journal import DEFAULT_CHUNK_SIZE

HELP = f"""Find entities (and relations) in a corpus with a bundled or trained model.

Streams its input (- is stdin); raw text is tokenised and split into sentences with a spaCy
blank pipeline. Documents are batched by length and written back in input order, JSONL to
stdout by default. Progress and a summary go to stderr.

With no --model, {DEFAULT_MODEL} (English news entities, shipped with nerx) is used;
`nerx models` lists the bundled models.

[dim]Examples:[/]
  nerx extract corpus.jsonl > predictions.jsonl
  nerx extract corpus.jsonl --model news-re --to brat -o out/
  nerx extract corpus.jsonl --model models/conll > predictions.jsonl
  nerx extract eng.testb --model models/conll --to conll -o pred.conll
  cat texts.jsonl | nerx extract - --model models/conll --to docbin -o out.spacy
  nerx extract corpus.jsonl --model models/conll -o predictions.html   # to look at
  nerx extract notes.txt                                   # one document, or --from lines
  nerx extract corpus.jsonl --to labelstudio -o tasks.json # pre-annotations to correct
  nerx extract rows.parquet --text-column body -o found.parquet

With -o FILE the run works in chunks recorded in a journal beside the output (OUT.nerx-run):
killed, the same command with --resume continues it; under torchrun every process takes every
N-th chunk and process 0 writes the output.

[dim]Large corpora (see the README):[/]
  nerx extract big.jsonl -m models/conll -o out.jsonl --resume    # after a kill, run it again
  nerx extract big.jsonl -m models/conll -o out.jsonl --on-error skip   # out.rejected.jsonl
  torchrun --nproc-per-node 4 -m nerx extract big.jsonl -m models/conll -o out.jsonl
"""


def register(app: typer.Typer) -> None:
    app.command("extract", help=HELP, no_args_is_help=True)(extract_command)


@handles_errors
def extract_command(
    corpus: str = typer.Argument(
        ..., metavar="CORPUS", help="Input documents (any format), or - for stdin."
    ),
    model_path: str = model_option(),
    output: str = output_option("-", "Output file or BRAT directory; - is stdout."),
    to_format: str | None = to_option(
        "Output format: jsonl, docbin, brat, conll, html, labelstudio, doccano, "
        "doccano-relations, prodigy, parquet, csv, tsv. Default: from -o's suffix, else jsonl."
    ),
    from_format: str | None = from_option(),
    device: str = device_option(),
    threads: int | None = typer.Option(
        None, min=1, help="CPU threads for the model (PyTorch and ONNX Runtime); default: all."
    ),
    batch_size: int = typer.Option(32, min=1, help="Windows per forward pass."),
    threshold: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Drop entities and relations scored below this."
    ),
    lang: str = lang_option(),
    text_column: str | None = TEXT_COLUMN,
    id_column: str | None = ID_COLUMN,
    annotator: str | None = ANNOTATOR,
    quiet: bool = quiet_option(),
    precision: str = precision_option(),
    # Large corpora: chunks, the journal, bad documents, input preparation.
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue the run whose journal (OUT.nerx-run) is beside -o, or start one.",
    ),
    chunk_size: int = typer.Option(
        DEFAULT_CHUNK_SIZE,
        "--chunk-size",
        min=1,
        help="Documents per chunk: the unit of the journal and of work across processes.",
    ),
    on_error: str = typer.Option(
        "raise",
        "--on-error",
        help="raise: stop at a bad document. skip: write it to OUT.rejected.jsonl and go on.",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=0,
        help="Background threads that read and prepare input. Default: 1 on a GPU, 0 on a CPU.",
    ),
) -> None:
    from nerx.io import detect_format, source_options
    from nerx.loading import load
    from nerx.pipeline import extract_corpus
    from nerx.runtime import ranks, resolve_device, sigterm_as_interrupt

    source_format = from_format or detect_format(corpus)
    read_options = source_options(
        source_format, text_column=text_column, id_column=id_column, annotator=annotator
    )
    if threads:
        import torch

        torch.set_num_threads(threads)  # ONNX Runtime sessions take torch's thread count
    place = ranks()
    resolved = resolve_device(device)
    model = load(model_path, device=resolved)
    if workers is None:
        workers = 1 if resolved.type == "cuda" else 0
    show = not quiet and place.is_main
    progress = _Progress(interactive=sys.stderr.isatty()) if show else None
    rejections = _FirstRejections()
    try:
        with sigterm_as_interrupt(), progress or contextlib.nullcontext():
            result = extract_corpus(
                corpus,
                output,
                model,
                to_format=to_format,
                from_format=source_format,
                read_options=read_options,
                resume=resume,
                chunk_size=chunk_size,
                batch_size=batch_size,
                threshold=threshold,
                lang=lang,
                on_error=on_error,
                workers=workers,
                precision=precision,
                progress=progress,
                on_reject=rejections if _streamed(output) else None,
            )
    except KeyboardInterrupt as exc:
        raise _interrupted(exc, output, resume) from None
    if show and result.merged:
        _summary(result, rejections)


class _FirstRejections(list):
    """Keeps the first rejections, to show when the output is stdout (no rejected file)."""

    limit = 20

    def __call__(self, rejection) -> None:
        if len(self) < self.limit:
            self.append(rejection)


def _interrupted(exc: KeyboardInterrupt, output: str, resume: bool):
    from nerx.journal import journal_path
    from nerx.runtime import Terminated

    code = Terminated.exit_code if isinstance(exc, Terminated) else 130
    what = "terminated" if isinstance(exc, Terminated) else "interrupted"
    if resume and output != "-" and journal_path(output).exists():
        message = (
            f"{what}; finished chunks are kept in {journal_path(output)}: "
            "run the same command (with --resume) to continue"
        )
    else:
        message = f"{what}; no output file was left half-written"
    return fail(_escape(message), code)


class _Progress:
    """A bar (bytes of the input read, documents, rate, ETA) on a terminal; a plain line
    every ``interval`` seconds otherwise, so a log under nohup or a scheduler shows the run."""

    def __init__(self, *, interactive: bool, interval: float = 30.0) -> None:
        self.interactive = interactive
        self.interval = interval
        self._bar = None
        self._task = None
        self._last_line = time.monotonic()

    def __enter__(self):
        if self.interactive:
            from rich.progress import BarColumn, Progress, TextColumn

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[line]}"),
                console=err_console,
                transient=True,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task("", total=None, line="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)

    def __call__(self, state) -> None:
        line = describe_progress(state)
        if self._bar is not None:
            self._bar.update(
                self._task,
                total=state.bytes_total,
                completed=state.bytes_read or 0,
                line=line,
            )
        elif time.monotonic() - self._last_line >= self.interval:
            self._last_line = time.monotonic()
            err_console.print(f"nerx extract: {line}", soft_wrap=True)


def describe_progress(state) -> str:
    """``1200 documents, 35.2 docs/s, 45% of the input, ETA 2m10s``"""
    parts = [f"{state.documents} documents", f"{state.rate:.1f} docs/s"]
    if state.fraction is not None:
        parts.append(f"{state.fraction:.0%} of the input")
    if state.waiting:
        parts.append(f"waiting for {state.waiting} chunks of other processes")
    elif state.eta is not None:
        parts.append(f"ETA {_duration(state.eta)}")
    return ", ".join(parts)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _summary(result, rejections) -> None:
    stats = result.stats
    line = (
        f"{result.documents} documents, {result.entities} entities, "
        f"{result.relations} relations; this run: {stats.documents} documents, "
        f"{stats.words} words in {stats.seconds:.1f}s "
        f"({stats.docs_per_second:.1f} docs/s, {stats.words_per_second:.0f} words/s); "
        f"{stats.windows} windows, {stats.split_sentences} sentences split"
    )
    if result.resumed_chunks:
        line += f"; {result.resumed_chunks} chunks done by an earlier run"
    for note in stats.model_summary():
        line += f"; {note}"
    err_console.print(line)
    if result.rejected:
        where = f" (see {result.rejected_path})" if result.rejected_path else ""
        err_console.print(f"[yellow]rejected: {result.rejected} documents{where}[/]")
        for rejection in rejections:
            place = f"line {rejection.line}" if rejection.line else f"document {rejection.ordinal}"
            err_console.print(f"[yellow]  {place}:[/] {_escape(rejection.reason)}")
    report = result.report
    if not result.documents:
        err_console.print("[yellow]warning:[/] the input holds no documents")
    for reason, count in sorted(report.lost.items()):
        err_console.print(f"[yellow]not kept by the output format:[/] {count} {reason}")


def _streamed(output: str) -> bool:
    """stdout, /dev/null or a FIFO: written as it comes, with no rejected file beside it."""
    from nerx.io.base import STDIO, is_stream_target

    return output == STDIO or is_stream_target(output)
