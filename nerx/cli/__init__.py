"""The ``nerx`` command line: one thin module per command over the library."""

from __future__ import annotations

import os

import typer

from nerx import __version__

app = typer.Typer(
    name="nerx",
    help=(
        "Span-based named-entity recognition and relation extraction.\n\n"
        "Read JSONL, CoNLL, spaCy DocBin and BRAT; train span models; extract entities and "
        "relations; evaluate against gold.\n\n"
        "[dim]Example:[/]\n\n"
        "  nerx extract corpus.jsonl -o predictions.jsonl"
    ),
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nerx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Span-based NER and relation extraction."""


def _register() -> None:
    from nerx.cli import convert, evaluate, export, extract, models, train

    for module in (convert, train, extract, evaluate, models, export):
        module.register(app)


_register()


def quiet_transformers() -> None:
    """transformers and the hub draw their own progress bars and warnings while a model loads;
    the command line reports on its own. Library callers keep their own logging settings."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def show_nerx_warnings() -> None:
    """Print the library's :class:`~nerx.errors.NerxWarning` as yellow lines on stderr;
    other warnings keep Python's own display."""
    import warnings

    from nerx.cli.common import warn
    from nerx.errors import NerxWarning

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, NerxWarning):
            warn(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main() -> None:
    quiet_transformers()
    show_nerx_warnings()
    app()
