"""Imports point down: a model file depends on the shared model modules and the layers
below them, never on another model file, the pipeline, training or the loader."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import nerx

MODELS_DIR = Path(nerx.__file__).parent / "models"
#: Modules of nerx/models/ that every kind may use; every other file there is a model kind.
SHARED = {"__init__", "base", "encoder", "spans", "shapes", "lora", "compact"}
#: What a model file may import from nerx: the shared model modules and the layers below.
ALLOWED = {"nerx", "nerx.doc", "nerx.errors", "nerx.runtime"} | {
    f"nerx.models.{name}" for name in SHARED - {"__init__"}
}
#: Names a model must not import even from an allowed module.
FORBIDDEN_NAMES = {"load_model"}


def violations(source: str, name: str) -> list[str]:
    """What a model file's source imports that it must not, as ``line: import``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against nerx.models
                base = ".".join(["nerx", "models"][: 3 - node.level] + [node.module or ""])
                module = base.rstrip(".")
            else:
                module = node.module or ""
            targets = [(module, alias.name) for alias in node.names]
        else:
            continue
        for module, imported in targets:
            if module != "nerx" and not module.startswith("nerx."):
                continue
            # `from nerx.models import spandec` imports the module nerx.models.spandec.
            full = f"{module}.{imported}" if module in {"nerx", "nerx.models"} else module
            if module == "nerx.models" and imported in SHARED:
                full = f"nerx.models.{imported}"
            bad_module = full not in ALLOWED and not (
                module == "nerx" and imported == "__version__"
            )
            if module == "nerx" and imported == "__version__":
                bad_module = False
            if bad_module or imported in FORBIDDEN_NAMES:
                what = f"from {module} import {imported}" if imported else f"import {module}"
                found.append(f"{name}:{node.lineno}: {what}")
    return found


def model_files() -> list[Path]:
    return sorted(p for p in MODELS_DIR.glob("*.py") if p.stem not in SHARED)


def test_there_are_model_files_to_check():
    assert {"token", "spandec", "plmarker", "iter", "sener", "padellm"} <= {
        p.stem for p in model_files()
    }


@pytest.mark.parametrize("path", model_files(), ids=lambda p: p.stem)
def test_a_model_file_imports_no_other_model_nor_anything_above_models(path):
    assert violations(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize("name", sorted(SHARED - {"__init__"}))
def test_shared_model_modules_import_no_model_kind(name):
    path = MODELS_DIR / f"{name}.py"
    kinds = {p.stem for p in model_files()}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = {node.module.rsplit(".", 1)[-1]} | {a.name for a in node.names}
            if node.module.startswith("nerx.models"):
                assert not names & kinds, f"{path.name}:{node.lineno} imports a model kind"


@pytest.mark.parametrize(
    "source",
    [
        "from nerx.models.spandec import greedy_flat",
        "from nerx.models import spandec",
        "import nerx.models.token",
        "from .spandec import enumerate_spans",
        "def f():\n    from nerx.pipeline import predict_documents",
        "from nerx.models.base import load_model",
        "from nerx.models import load_model",
        "import nerx.training",
        "from nerx.cli.common import handles_errors",
    ],
)
def test_the_check_catches_each_kind_of_violation(source):
    assert violations(source, "model.py")


@pytest.mark.parametrize(
    "source",
    [
        "from nerx.models.spans import greedy_flat",
        "from nerx.models.base import SpanModel, register",
        "from nerx.doc import Document",
        "from nerx.errors import ModelError",
        "from nerx import __version__",
        "from .encoder import max_window",
        "import torch",
    ],
)
def test_the_check_allows_the_shared_modules_and_the_layers_below(source):
    assert violations(source, "model.py") == []
