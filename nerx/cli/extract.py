"""``nerx extract CORPUS``: run a model over a corpus, streaming, and write what it finds."""

from __future__ import annotations

import sys

import typer

from nerx.cli.common import err_console, handles_errors

HELP = """Find entities (and relations) in a corpus with a bundled or trained model.

Streams its input (- is stdin); raw text is tokenised and split into sentences with a spaCy
blank pipeline. Documents are batched by length and written back in input order, JSONL to
stdout by default. Progress and a summary go to stderr.

With no --model, news-ner (English news entities, shipped with nerx) is used; `nerx models`
lists the bundled models.

[dim]Examples:[/]
  nerx extract corpus.jsonl > predictions.jsonl
  nerx extract corpus.jsonl --model news-re --to brat -o out/
  nerx extract corpus.jsonl --model models/conll > predictions.jsonl
  nerx extract eng.testb --model models/conll --to conll -o pred.conll
  cat texts.jsonl | nerx extract - --model models/conll --to docbin -o out.spacy
  nerx extract corpus.jsonl --model models/conll -o predictions.html   # to look at
"""


def register(app: typer.Typer) -> None:
    app.command("extract", help=HELP, no_args_is_help=True)(extract_command)


@handles_errors
def extract_command(
    corpus: str = typer.Argument(
        ..., metavar="CORPUS", help="Input documents (any format), or - for stdin."
    ),
    model_path: str = typer.Option(
        "news-ner",
        "--model",
        "-m",
        help="A bundled model name (see `nerx models`) or a directory written by nerx train.",
    ),
    output: str = typer.Option(
        "-", "--output", "-o", help="Output file or BRAT directory; - is stdout."
    ),
    to_format: str | None = typer.Option(
        None,
        "--to",
        "-t",
        help="Output format: jsonl, docbin, brat, conll, html. Default: from -o's suffix, else jsonl.",
    ),
    from_format: str | None = typer.Option(
        None, "--from", "-f", help="Input format, when detection is not enough."
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda or cuda:N."),
    batch_size: int = typer.Option(32, min=1, help="Windows per forward pass."),
    threshold: float = typer.Option(
        0.0, min=0.0, max=1.0, help="Drop entities and relations scored below this."
    ),
    lang: str = typer.Option("en", help="Language of the spaCy tokenizer for raw text."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
    precision: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU), bf16 or fp32."),
) -> None:
    from nerx.io import Report, detect_format, read, write
    from nerx.models import load_model
    from nerx.pipeline import ExtractionStats, extract
    from nerx.runtime import resolve_device

    model = load_model(model_path, device=resolve_device(device))
    target_format = to_format or (
        "jsonl" if output == "-" else detect_format(output, for_writing=True)
    )
    stats = ExtractionStats()
    docs = read(corpus, from_format)
    predicted = extract(
        docs,
        model,
        batch_size=batch_size,
        threshold=threshold,
        lang=lang,
        stats=stats,
        precision=precision,
    )
    show = not quiet and sys.stderr.isatty()
    if show:
        predicted = _with_progress(predicted, stats)
    report = write(predicted, output, target_format, report=Report())
    if not quiet:
        _summary(stats, report)


def _with_progress(docs, stats):
    from rich.progress import Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.completed} documents"),
        TextColumn("{task.fields[rate]:.1f} docs/s"),
        console=err_console,
        transient=True,
    ) as bar:
        task = bar.add_task("", total=None, rate=0.0)
        for doc in docs:
            bar.update(task, advance=1, rate=stats.docs_per_second)
            yield doc


def _summary(stats, report) -> None:
    line = (
        f"{stats.documents} documents, {stats.words} words, {stats.entities} entities, "
        f"{stats.relations} relations in {stats.seconds:.1f}s "
        f"({stats.docs_per_second:.1f} docs/s, {stats.words_per_second:.0f} words/s); "
        f"{stats.windows} windows, {stats.split_sentences} sentences split"
    )
    if stats.model.get("spans"):
        kept = stats.model["spans_kept"] / stats.model["spans"]
        line += f"; token filter kept {kept:.1%} of {int(stats.model['spans'])} candidate spans"
    err_console.print(line)
    for reason, count in sorted(report.lost.items()):
        err_console.print(f"[yellow]not kept by the output format:[/] {count} {reason}")
