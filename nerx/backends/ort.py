"""The ONNX Runtime backend: an exported model directory that behaves like its SpanModel.

``nerx export`` writes ``model.onnx`` (the encoder and the heads in one graph), the tokenizer
and a ``config.json`` that says ``"backend": "onnx"``. :func:`load_onnx_model` builds the
kind's class with the forward pass swapped for an ONNX Runtime session, so the pipeline, the
spaCy component and the benchmark use it as they use any model: ``prepare`` and ``collate``
are the kind's own, ``forward`` feeds the batch tensors to the session, and ``decode`` is
the very code the PyTorch path runs. Nothing here imports transformers' model code.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

from nerx.errors import ModelError
from nerx.models.base import (
    Batch,
    ModelConfig,
    Output,
    SpanModel,
    fill_saved_defaults,
    model_class,
)

BACKEND = "onnx"
#: What the ``onnx`` section of an exported ``config.json`` holds.
SECTION = "onnx"


def require_onnxruntime():
    """The ``onnxruntime`` module, or a ModelError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ModelError(
            "ONNX models need onnxruntime, which is not installed",
            hint='pip install "nerx[onnx]"',
        ) from None
    return onnxruntime


def providers(device: torch.device | str) -> list[str]:
    """The CPU execution provider, with CUDA's first when the device is a GPU and this
    onnxruntime build has it."""
    ort = require_onnxruntime()
    if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in (
        ort.get_available_providers()
    ):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session(path: Path, device: torch.device | str = "cpu", threads: int | None = None):
    """An inference session on ``path``; ``threads`` (default: torch's) for one operator."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # warnings about unused initializers are noise to users
    try:
        return ort.InferenceSession(str(path), options, providers=providers(device))
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        raise ModelError(f"cannot load the ONNX graph {path}: {exc}") from None


class OnnxBackend:
    """Mixed in front of a kind's class: the same model, its forward pass on ONNX Runtime."""

    def __init__(
        self, config: ModelConfig, section: dict[str, Any], precision: str, tokenizer, sessions
    ) -> None:
        # The kind's own __init__ builds torch layers; the shared base sets up everything
        # prepare, collate and decode read (labels, windows, special tokens).
        window = int(section["window_size"])
        stand_in = SimpleNamespace(config=SimpleNamespace(max_position_embeddings=window))
        SpanModel.__init__(self, config, stand_in, tokenizer)  # type: ignore[arg-type]
        self.window_size = window
        #: "fp32" or "int8": how the exported weights are stored.
        self.precision = precision
        self._graphs = section["graphs"]
        self._sessions = sessions
        from nerx.backends.graphs import EXPORTS

        EXPORTS[config.kind].attach(self)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # batches stay on the host; the session moves its inputs

    def head_parameter_names(self) -> set[str]:
        return set()

    def _case_embedding(self) -> None:
        return None  # in the graph; the batches still carry input_shapes

    def _run(self, name: str, tensors: dict[str, Any]) -> dict[str, torch.Tensor]:
        graph = self._graphs[name]
        feed = {key: tensors[key].detach().cpu().numpy() for key in graph["inputs"]}
        results = self._sessions[name].run(graph["outputs"], feed)
        return {
            key: torch.from_numpy(value)
            for key, value in zip(graph["outputs"], results, strict=True)
        }

    def forward(self, batch: Batch) -> Output:  # type: ignore[override]
        from nerx.backends.graphs import EXPORTS

        return EXPORTS[self.kind].infer(self.config, self._run, batch)


@cache
def onnx_model_class(kind: str) -> type[SpanModel]:
    """The kind's class with its forward pass on ONNX Runtime (one class per kind)."""
    cls = model_class(kind)
    return type(f"Onnx{cls.__name__}", (OnnxBackend, cls), {"kind": kind})


def load_onnx_model(
    root: Path,
    data: dict[str, Any],
    *,
    device: torch.device | str = "cpu",
    threads: int | None = None,
) -> SpanModel:
    """Load an exported model directory (``data`` is its parsed ``config.json``)."""
    from nerx.backends.graphs import EXPORTS
    from nerx.backends.tokenizer import WordTokenizer

    config = ModelConfig.from_dict(data)
    section = data.get(SECTION)
    if not isinstance(section, dict) or not {"graphs", "window_size"} <= set(section):
        raise ModelError(
            f"{root / 'config.json'} says backend onnx but has no complete {SECTION!r} section",
            hint="export the model again with `nerx export`",
        )
    takes_shapes = any("input_shapes" in g.get("inputs", ()) for g in section["graphs"].values())
    fill_saved_defaults(config, has_case_embedding=takes_shapes)
    if config.kind not in EXPORTS:
        raise ModelError(f"{root}: model kind {config.kind!r} has no ONNX backend")
    for graph in section["graphs"].values():
        if not (root / graph["file"]).is_file():
            raise ModelError(
                f"{root} has no {graph['file']}", hint="copy the whole model directory"
            )
    tokenizer = WordTokenizer(root, section.get("tokenizer", {}))
    sessions = {
        name: session(root / graph["file"], device, threads)
        for name, graph in section["graphs"].items()
    }
    precision = str(data.get("precision", "fp32"))
    model = onnx_model_class(config.kind)(config, section, precision, tokenizer, sessions)
    model.eval()
    return model


def read_config(root: Path) -> dict[str, Any]:
    return json.loads((root / "config.json").read_text(encoding="utf-8"))
