"""``nerx eval GOLD PRED``: strict / boundary NER and Rel / Rel+ scores, micro and per label."""

from __future__ import annotations

import typer

from nerx.cli.common import err_console, from_option, handles_errors

HELP = """Score predictions against gold: NER (strict, boundary), Rel and Rel+.

Documents are paired by id and must have the same text. Prints precision,
recall and F1 in percent, micro-averaged and per label; [bold]--json[/] prints
every count and figure as JSON (fractions, not percent) instead.

Rel matches the head and tail spans and the relation label; Rel+ also the
two entity labels. Relation labels named with [bold]--symmetric[/] ignore
direction and count once, or in both directions with [bold]--symmetric-twice[/]
(PL-Marker's convention).

[dim]Examples:[/]
  nerx eval eng.testb pred.conll
  nerx eval test.jsonl pred.jsonl --symmetric COMPARE --json
"""


def register(app: typer.Typer) -> None:
    app.command("eval", help=HELP, no_args_is_help=True)(eval_command)


@handles_errors
def eval_command(
    gold: str = typer.Argument(..., metavar="GOLD", help="Gold file or BRAT directory."),
    pred: str = typer.Argument(..., metavar="PRED", help="Predictions, same documents as GOLD."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    symmetric: list[str] | None = typer.Option(  # noqa: B008 (typer reads options from defaults)
        None,
        "--symmetric",
        metavar="LABEL",
        help="A relation label without direction; repeat for more.",
    ),
    symmetric_twice: bool = typer.Option(
        False,
        "--symmetric-twice",
        help="Count each symmetric relation in both directions (PL-Marker).",
    ),
    gold_format: str | None = from_option(
        "Gold format (jsonl, conll, docbin, brat or a JSONL dialect); detected if not given.",
        flags=("--gold-from", "-g"),
    ),
    pred_format: str | None = from_option(
        "Prediction format; detected if not given.", flags=("--pred-from", "-p")
    ),
) -> None:
    from rich.markup import escape

    from nerx.errors import ConfigError
    from nerx.scoring import evaluate

    symmetric = symmetric or []
    if symmetric_twice and not symmetric:
        raise ConfigError(
            "--symmetric-twice needs the symmetric relation labels",
            hint="name them with --symmetric LABEL",
        )
    result = evaluate(
        gold,
        pred,
        symmetric=symmetric,
        symmetric_twice=symmetric_twice,
        gold_format=gold_format,
        pred_format=pred_format,
    )
    for label in sorted(set(symmetric) - set(result.relations.per_label)):
        err_console.print(
            f"[yellow]note:[/] no relation in gold or predictions has label {escape(repr(label))}"
        )
    if as_json:
        import orjson

        typer.echo(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        print_table(result)


def print_table(result) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(
        title=f"eval: {result.documents} documents (P/R/F1 in %)",
        title_justify="left",
        show_edge=False,
    )
    table.add_column("")
    for name in ("P", "R", "F1", "tp", "fp", "fn"):
        table.add_column(name, justify="right")
    blocks = [("entities (strict)", result.entities), ("entities (boundary)", result.boundary)]
    if result.has_relations:
        blocks += [("Rel", result.relations), ("Rel+", result.relations_strict)]
    for name, scores in blocks:
        table.add_row(f"[bold]{name}[/]", *_cells(scores), end_section=not scores.per_label)
        labels = sorted(scores.per_label)
        for label in labels:
            table.add_row(
                f"  {escape(label)}",
                *_cells(scores.per_label[label]),
                end_section=label == labels[-1],
            )
    # The table is the command's output, so it goes to stdout.
    Console(highlight=False).print(table)


def _cells(scores) -> list[str]:
    figures = (scores.precision, scores.recall, scores.f1)
    return [f"{100 * x:.2f}" for x in figures] + [str(scores.tp), str(scores.fp), str(scores.fn)]
