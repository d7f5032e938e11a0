"""A model directory is checked on load: every damaged or missing file is a ModelError that
names it, never a traceback and never a model that runs on a fallback tokenizer."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.errors import ModelError
from nerx.models import ModelConfig, load_model, model_class, save_model

ANSI = re.compile(r"\x1b\[[0-9;]*m")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def saved(tiny_encoder, tmp_path_factory) -> Path:
    config = ModelConfig(kind="token", labels=["LOC", "PER"], encoder=tiny_encoder)
    model = model_class("token").create(config)
    return save_model(model, tmp_path_factory.mktemp("saved") / "model")


@pytest.fixture
def copy(saved, tmp_path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(saved, target)
    return target


def test_an_intact_directory_loads(copy):
    assert load_model(copy).config.labels == ["LOC", "PER"]


def load_error(path: Path) -> str:
    with pytest.raises(ModelError) as caught:
        load_model(path)
    return str(caught.value)


def test_a_missing_tokenizer_is_an_error_not_a_fallback_vocabulary(copy):
    (copy / "tokenizer.json").unlink()
    message = load_error(copy)
    assert "tokenizer.json" in message


def test_a_garbled_tokenizer_file_is_named(copy):
    (copy / "tokenizer.json").write_text("{", encoding="utf-8")
    assert f"{copy / 'tokenizer.json'}: not valid JSON" in load_error(copy)


@pytest.mark.parametrize("damage", ["half", "50 bytes", "garbled header"])
def test_damaged_weights_are_named(copy, damage):
    path = copy / "model.safetensors"
    data = path.read_bytes()
    if damage == "half":
        data = data[: len(data) // 2]
    elif damage == "50 bytes":
        data = data[:50]
    else:
        data = data[:8] + b"#" * 16 + data[24:]
    path.write_bytes(data)
    message = load_error(copy)
    assert str(path) in message and "damaged" in message


@pytest.mark.parametrize(
    "config, expected",
    [
        ([1, 2], "expected a JSON object"),
        ("not json", "not valid JSON"),
        ({"kind": "token"}, "no labels"),
        ({"labels": ["LOC"]}, "no kind"),
        ({"kind": "token", "labels": "LOC"}, "labels must be list"),
        ({"kind": "token", "labels": ["LOC"], "hyper": []}, "hyper must be dict"),
        ({"kind": "token", "labels": [1]}, "labels must be a list of non-empty strings"),
    ],
)
def test_a_bad_config_is_named(copy, config, expected):
    text = config if isinstance(config, str) else json.dumps(config)
    (copy / "config.json").write_text(text, encoding="utf-8")
    message = load_error(copy)
    assert str(copy / "config.json") in message and expected in message


def test_weights_of_another_shape_are_named(copy):
    config = json.loads((copy / "config.json").read_text())
    config["labels"] = ["ONLY"]
    (copy / "config.json").write_text(json.dumps(config), encoding="utf-8")
    message = load_error(copy)
    assert str(copy / "model.safetensors") in message and "size mismatch" in message
    assert "\n" not in message


def test_a_missing_encoder_config_is_named(copy):
    (copy / "encoder" / "config.json").unlink()
    assert "encoder/config.json" in load_error(copy)


def test_the_cli_gives_one_line_and_exit_2(copy, tmp_path):
    (copy / "model.safetensors").write_bytes(b"\x00" * 50)
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"text": "Maria lives in Oslo."}\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["extract", str(corpus), "-m", str(copy), "-q"])
    stderr = ANSI.sub("", result.stderr)
    assert result.exit_code == 2, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert "model.safetensors" in stderr


def test_an_encoder_without_tokenizer_files_is_an_error_not_a_fallback(tiny_encoder, tmp_path):
    from nerx.models.encoder import load_tokenizer

    bare = tmp_path / "encoder"
    bare.mkdir()
    for item in Path(tiny_encoder).iterdir():
        if "token" not in item.name and "vocab" not in item.name and item.is_file():
            shutil.copy(item, bare / item.name)
    assert (bare / "config.json").is_file() and not (bare / "vocab.txt").exists()
    with pytest.raises(ModelError, match="no tokenizer vocabulary"):
        load_tokenizer(str(bare))
    assert len(load_tokenizer(tiny_encoder)) > 10  # the intact directory loads


def test_compact_weights_that_do_not_fit_the_encoder_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    from nerx.bundled import model_path

    copy = shutil.copytree(model_path("news-ner"), tmp_path / "model")
    state = load_file(str(copy / "model.safetensors"))
    key = next(k for k in state if k.startswith("delta.") and state[k].ndim == 2)
    state[key] = state[key][:3]
    save_file(state, str(copy / "model.safetensors"), metadata={"format": "pt"})
    message = load_error(copy)
    assert str(copy / "model.safetensors") in message and "do not fit" in message
