"""``nerx export``: a saved model (a directory or a bundled name) as an ONNX model directory.

The encoder and the model's heads are traced into one graph with dynamic batch and sequence
axes (:mod:`nerx.backends.graphs`); ONNX Runtime's graph optimizations are applied and, with
``quantize="int8"``, its dynamic int8 quantization of the optimized graph. The directory is
written beside its target and renamed into place when complete, so a failed export never
leaves something that looks like a model.

>>> from nerx.backends.export import export_model
>>> export_model("news-ner", "news-ner-int8", quantize="int8")
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from nerx.errors import ConfigError, ModelError

QUANTIZATIONS = ("none", "int8")
#: Traced node names inside the model's encoder contain one of these (the module path). With
#: case features the word embeddings are looked up outside the encoder's own forward pass, so
#: their node is named by the embedding module alone.
ENCODER_SCOPES = ("/encoder/", "/word_embeddings/")
DEFAULT_OPSET = 17
#: A sentence whose words the export traces with; any text works, it sets no shape.
TRACE_TEXT = "The quick brown fox of Oslo jumps over the lazy dog in New York ."


@dataclass
class ExportReport:
    path: Path
    kind: str
    precision: str
    opset: int
    size_bytes: int


def check_target(out: Path) -> None:
    """An export never writes into a directory that already holds something."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(
            f"{out} already exists and is not empty",
            hint="give a new directory, or remove this one first",
        )


def require_export_tools() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"exporting needs onnx and onnxruntime ({exc.name} is not installed)",
            hint='pip install "nerx[onnx]"',
        ) from None


def export_model(
    model: str | Path,
    output: str | Path,
    *,
    quantize: str = "none",
    opset: int = DEFAULT_OPSET,
) -> ExportReport:
    """Export ``model`` to ``output``: ``model.onnx``, the tokenizer and a ``config.json``
    that says ``"backend": "onnx"`` and the precision."""
    from nerx.backends.graphs import EXPORTS
    from nerx.loading import load
    from nerx.models.base import CONFIG_NAME

    if quantize not in QUANTIZATIONS:
        raise ConfigError(
            f"unknown quantization {quantize!r}", hint=f"use one of: {', '.join(QUANTIZATIONS)}"
        )
    out = Path(output)
    check_target(out)
    require_export_tools()
    loaded = load(model, device="cpu")
    if getattr(loaded, "precision", None) is not None:
        raise ConfigError(f"{model} is an exported ONNX model already; export its source model")
    if loaded.kind not in EXPORTS:
        raise ModelError(
            f"model kind {loaded.kind!r} cannot be exported to ONNX",
            hint=f"kinds that export: {', '.join(sorted(EXPORTS))}",
        )
    how = EXPORTS[loaded.kind]
    precision = "int8" if quantize == "int8" else "fp32"
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        final = work / "model"
        final.mkdir()
        graphs = _export_graphs(how, loaded, work, final, precision, opset)
        _write_directory(loaded, graphs, final, precision, opset, model)
        if out.exists():
            out.rmdir()  # empty, as check_target made sure
        final.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert (out / CONFIG_NAME).is_file()
    return ExportReport(out, loaded.kind, precision, opset, size)


def trace_batch(model) -> dict:
    """Two windows of different lengths, so the traced graph pads and masks like any batch."""
    from nerx.doc import Document, tokenize

    short, long = TRACE_TEXT[:19], TRACE_TEXT
    docs = [
        Document(id=str(i), text=text, tokens=tokenize(text))
        for i, text in enumerate((short, long))
    ]
    examples = [ex for i, doc in enumerate(docs) for ex in model.prepare(doc, i)]
    return model.collate(examples)


def _export_graphs(how, model, work: Path, final: Path, precision: str, opset: int) -> dict:
    """Trace, optimize (and quantize) each graph of the kind; what config.json records."""
    modules = how.modules(model)
    examples = how.trace_inputs(model, trace_batch(model))
    graphs = {}
    for name, (inputs, outputs) in how.signature(model.config).items():
        raw, optimized = work / f"{name}.traced.onnx", work / f"{name}.optimized.onnx"
        file = f"{name}.onnx"
        args = tuple(examples[name][key] for key in inputs)
        axes = {key: how.axes[key] for key in (*inputs, *outputs) if key in how.axes}
        try:
            _trace(modules[name].eval(), args, inputs, outputs, axes, raw, opset)
            _optimize(raw, optimized)
            if precision == "int8":
                _quantize(optimized, final / file)
            else:
                shutil.move(optimized, final / file)
        except Exception as exc:  # noqa: BLE001
            # torch.onnx and onnxruntime raise many types (onnxruntime's subclass Exception
            # alone) for an operator or an encoder they cannot handle.
            first_line = (
                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            )
            raise ModelError(
                f"cannot export the {model.kind} model's {name} graph: {first_line}",
                hint="try another --opset, or a BERT-like encoder",
            ) from None
        graphs[name] = {"file": file, "inputs": list(inputs), "outputs": list(outputs)}
    return graphs


def _trace(module, args, inputs, outputs, axes, path: Path, opset: int) -> None:
    import torch

    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        # The tracer warns about every Python int it records; the graph is checked by tests.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=axes,
            opset_version=opset,
            do_constant_folding=True,
        )


def _optimize(source: Path, target: Path) -> None:
    """ONNX Runtime's graph optimizations (fusions of attention, layer norm, GELU), saved, so
    quantization sees the fused graph and loading has less to do."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8: weights stored in int8 (per channel), activations quantized per batch at
    run time."""
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The encoder's matrices are most of the weights and the time; the heads (a classifier,
    # a span decoder, ITER's gated FFNs) stay fp32, as their decisions are the most sensitive.
    graph = onnx.load(str(source), load_external_data=False).graph
    heads = [
        node.name for node in graph.node if not any(scope in node.name for scope in ENCODER_SCOPES)
    ]
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice to the root logger
    try:
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            # A scale per output channel: on CoNLL-2003 it keeps int8 within 0.1 F1 of fp32,
            # where one scale per matrix loses a point.
            per_channel=True,
            nodes_to_exclude=heads,
            # The optimizer's fused nodes (SkipLayerNormalization...) carry no type that
            # ONNX shape inference knows; their outputs are float.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        root.setLevel(level)


def _write_directory(model, graphs, out: Path, precision: str, opset: int, source) -> None:
    from nerx.backends.ort import BACKEND, SECTION
    from nerx.backends.tokenizer import special_ids
    from nerx.bundled import CARD_NAME, resolve
    from nerx.models.base import CONFIG_NAME

    model.tokenizer.save_pretrained(str(out))
    card = resolve(source) / CARD_NAME
    if card.is_file():
        shutil.copyfile(card, out / CARD_NAME)
    config = asdict(model.config)
    config["weights"] = {}
    config.update(
        backend=BACKEND,
        precision=precision,
        **{
            SECTION: {
                "graphs": graphs,
                "window_size": model.window_size,
                "opset": opset,
                "exported_from": str(source),
                "tokenizer": special_ids(model.tokenizer),
            }
        },
    )
    # The config goes last: a directory with one is complete.
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
