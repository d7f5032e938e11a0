"""``nerx export MODEL -o DIR``: a model as ONNX (optionally int8) for ONNX Runtime."""

from __future__ import annotations

import typer

from nerx.cli.common import err_console, handles_errors, output_option

HELP = """Export a trained or bundled model to ONNX, for fast extraction with ONNX Runtime.

The encoder and the model's heads go into one graph (dynamic batch and sequence length),
optimized by ONNX Runtime; --quantize int8 stores the encoder in int8 (dynamic quantization),
about a quarter of the size and faster on a CPU. The output is an ordinary nerx model
directory: give it to nerx extract --model, nerx.load or the spaCy component.

Kinds that export: token, spandec, sf-spandec, iter. Needs the onnx extra:
pip install "nerx\\[onnx]".

[dim]Examples:[/]
  nerx export news-ner -o news-ner-int8 --quantize int8
  nerx export models/conll -o models/conll-onnx
  nerx extract corpus.jsonl --model news-ner-int8 --threads 2 > predictions.jsonl
"""


def register(app: typer.Typer) -> None:
    app.command("export", help=HELP, no_args_is_help=True)(export_command)


@handles_errors
def export_command(
    model: str = typer.Argument(
        ..., metavar="MODEL", help="A bundled model name or a directory written by nerx train."
    ),
    output: str = output_option(..., "The directory to write; must be new or empty."),
    quantize: str = typer.Option(
        "none", "--quantize", help="none (fp32) or int8 (dynamic int8 quantization)."
    ),
    opset: int = typer.Option(17, min=14, help="ONNX opset version of the graph."),
) -> None:
    from nerx.backends.export import export_model

    report = export_model(model, output, quantize=quantize, opset=opset)
    err_console.print(
        f"exported {report.kind} model {model} to {report.path} "
        f"({report.precision}, opset {report.opset}, {report.size_bytes / 1e6:.1f} MB)"
    )
