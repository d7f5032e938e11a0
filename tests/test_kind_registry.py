"""Model kinds from other packages: through nerx's catalogue registry or a ``nerx_models``
entry point, a kind is listed where kinds are listed and trains, saves and loads like any."""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import catalogue
import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.errors import ModelError
from nerx.models import kinds, load_model, model_class, registry
from nerx.models.token import TokenClassifier

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
NEWS = str(SAMPLES / "news.jsonl")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.usefixtures("one_thread")


class OutsideModel(TokenClassifier):
    """A kind another package adds, registered without nerx's decorator."""


def forget_kind() -> None:
    """model_class names a class registered without the decorator; undo it between tests."""
    if "kind" in vars(OutsideModel):
        del OutsideModel.kind


@pytest.fixture
def entry_point_kind(monkeypatch):
    """``outside`` as another installed package would declare it in its pyproject.toml."""
    point = importlib.metadata.EntryPoint(
        name="outside", value=f"{__name__}:OutsideModel", group="nerx_models"
    )
    monkeypatch.setattr(
        catalogue, "AVAILABLE_ENTRY_POINTS", importlib.metadata.EntryPoints([point])
    )
    yield "outside"
    forget_kind()


@pytest.fixture
def registered_kind():
    """``other`` registered in code through the catalogue registry."""
    registry.register("other", func=OutsideModel)
    yield "other"
    catalogue.REGISTRY.pop((*registry.namespace, "other"), None)
    forget_kind()


def test_an_entry_point_kind_is_found_and_listed(entry_point_kind):
    assert entry_point_kind in kinds()
    cls = model_class(entry_point_kind)
    assert cls is OutsideModel and cls.kind == entry_point_kind
    with pytest.raises(ModelError) as error:
        model_class("no-such-kind")
    assert entry_point_kind in error.value.hint


def test_a_kind_registered_through_catalogue_is_found(registered_kind):
    assert registered_kind in kinds()
    assert model_class(registered_kind) is OutsideModel


def test_the_train_help_lists_an_outside_kind(entry_point_kind):
    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    text = " ".join(ANSI.sub("", result.output).replace("│", " ").split())
    assert result.exit_code == 0
    assert re.search(r"Model kind: [a-z, -]*\boutside\b", text), text


def test_an_outside_kind_trains_saves_and_loads(entry_point_kind, tiny_encoder, tmp_path):
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app,
        ["train", NEWS, "--dev", NEWS, "--kind", entry_point_kind, "--encoder", tiny_encoder]
        + ["--epochs", "1", "--device", "cpu", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text(encoding="utf-8"))["kind"] == "outside"
    assert type(load_model(out)) is OutsideModel


def test_a_registered_object_that_is_no_model_class_is_an_error():
    registry.register("not-a-model", func=len)
    try:
        with pytest.raises(ModelError, match="not a SpanModel class"):
            model_class("not-a-model")
    finally:
        catalogue.REGISTRY.pop((*registry.namespace, "not-a-model"), None)


def test_an_entry_point_that_does_not_import_is_named(monkeypatch):
    point = importlib.metadata.EntryPoint(
        name="broken", value="no_such_package_anywhere:Model", group="nerx_models"
    )
    monkeypatch.setattr(
        catalogue, "AVAILABLE_ENTRY_POINTS", importlib.metadata.EntryPoints([point])
    )
    with pytest.raises(ModelError, match="nerx_models entry point does not load"):
        kinds()
    with pytest.raises(ModelError, match="no_such_package_anywhere"):
        model_class("broken")
