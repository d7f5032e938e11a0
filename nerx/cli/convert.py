"""``nerx convert IN OUT``: stream any supported format into any other."""

from __future__ import annotations

from pathlib import Path

import typer

from nerx.cli.common import (
    ANNOTATOR,
    ID_COLUMN,
    TEXT_COLUMN,
    err_console,
    from_option,
    handles_errors,
    quiet_option,
    to_option,
)

HELP = """Convert between JSONL, CoNLL, spaCy DocBin, BRAT, Label Studio, doccano, Prodigy,
plain text and tables (Parquet, CSV, TSV), streaming.

The format comes from the suffix (.jsonl/.json, .conll/.iob/.bio, .spacy, .txt, .parquet,
.csv, a directory for BRAT or for .txt files), then from the content: Label Studio, doccano
and Prodigy share .json/.jsonl, and a .tsv is CoNLL or a table. [bold]--from[/] and
[bold]--to[/] override. Use [bold]-[/] for stdin/stdout. The summary (on stderr) says what
was read, written and what the target could not hold.

[dim]Examples:[/]
  nerx convert eng.train train.spacy
  nerx convert conll04_train.json brat_out/ --from spert
  cat docs.jsonl | nerx convert - out.conll --from jsonl
  nerx convert export.json train.jsonl --annotator 3       # a Label Studio export
  nerx convert reviews.csv reviews.jsonl --text-column body --id-column review_id
"""


def register(app: typer.Typer) -> None:
    app.command("convert", help=HELP, no_args_is_help=True)(convert_command)


@handles_errors
def convert_command(
    source: str = typer.Argument(
        ..., metavar="IN", help="Input file, BRAT directory, or - for stdin."
    ),
    target: str = typer.Argument(
        ..., metavar="OUT", help="Output file, BRAT directory, or - for stdout."
    ),
    from_format: str | None = from_option(
        "Input format: jsonl, conll, docbin, brat, labelstudio, doccano, prodigy, text, lines "
        "(a document per line), parquet, csv, tsv, or a JSONL dialect: spert, dygie, gliner, genia.",
    ),
    to_format: str | None = to_option(
        "Output format: jsonl, conll, docbin, brat, labelstudio, doccano, "
        "doccano-relations, prodigy, text, parquet, csv, tsv, or html (a page to look at).",
    ),
    scheme: str | None = typer.Option(
        None,
        "--scheme",
        help="CoNLL tag scheme: iob1, iob2 or bioes. Detected when reading; iob2 when writing.",
    ),
    sentence_docs: bool = typer.Option(
        False, "--sentence-docs", help="CoNLL input: make every sentence its own document."
    ),
    strict: bool = typer.Option(
        False,
        "--strict",
        help="Fail instead of warning: on an input with no documents, and on a discontinuous "
        "BRAT entity (else kept as its covering span, or as it was when writing BRAT).",
    ),
    text_column: str | None = TEXT_COLUMN,
    id_column: str | None = ID_COLUMN,
    annotator: str | None = ANNOTATOR,
    quiet: bool = quiet_option("Print no summary (warnings still show)."),
) -> None:
    from nerx.io import accepted_options, conversion_options, convert, detect_format

    src_format = from_format or detect_format(source)
    dst_format = to_format or (
        "jsonl" if target == "-" else detect_format(target, for_writing=True)
    )
    read_options, write_options = conversion_options(
        src_format,
        dst_format,
        scheme=scheme,
        sentence_docs=sentence_docs or None,
        text_column=text_column,
        id_column=id_column,
        annotator=annotator,
    )
    if strict and "strict" in accepted_options(src_format):
        read_options["strict"] = True  # --strict applies to every format; BRAT reads stricter
    report = convert(
        source,
        target,
        from_format=src_format,
        to_format=dst_format,
        read_options=read_options,
        write_options=write_options,
        require_documents=strict,
    )
    if quiet:
        print_warnings(report)
    else:
        print_report(
            report,
            f"{src_format} -> {dst_format}",
            Path(target).name if target != "-" else "stdout",
        )


def print_report(report, title: str, target: str) -> None:
    from rich.table import Table

    table = Table(title=f"convert {title}", title_justify="left", show_edge=False)
    table.add_column("")
    table.add_column("documents", justify="right")
    table.add_column("entities", justify="right")
    table.add_column("relations", justify="right")
    table.add_row(
        "read", str(report.documents_read), str(report.entities_read), str(report.relations_read)
    )
    table.add_row(
        f"written to {target}",
        str(report.documents_written),
        str(report.entities_written),
        str(report.relations_written),
    )
    err_console.print(table)
    print_warnings(report)
    for reason, count in sorted(report.lost.items()):
        err_console.print(f"[yellow]not kept:[/] {count} {reason}")
    for reason, count in sorted(report.notes.items()):
        err_console.print(f"[cyan]note:[/] {count} {reason}")


def print_warnings(report) -> None:
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning} (--strict makes this an error)")
