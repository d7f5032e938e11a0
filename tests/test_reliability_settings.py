"""Typed settings per model kind: a bad or unknown ``--set`` is an error that names the
setting, what it accepts and the valid keys; an older config without a key takes its default."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.cli.train import parse_settings
from nerx.errors import ConfigError, NerxWarning
from nerx.models import MODELS, ModelConfig, load_model, model_class, save_model
from nerx.models.base import Settings

ANSI = re.compile(r"\x1b\[[0-9;]*m")
pytestmark = pytest.mark.usefixtures("one_thread")


def kinds() -> list[str]:
    model_class("token")  # registers every kind
    return sorted(MODELS)


@pytest.mark.parametrize("kind", kinds())
def test_every_kind_has_typed_documented_settings(kind):
    settings = model_class(kind).Settings
    assert issubclass(settings, Settings) and settings is not Settings
    for f in dataclasses.fields(settings):
        assert f.metadata.get("doc"), f"{kind}.{f.name} has no doc"
    defaults = settings.from_hyper({}, kind)  # an empty (older) config takes every default
    assert all(getattr(defaults, f.name) == f.default for f in dataclasses.fields(settings))


@pytest.mark.parametrize("kind", kinds())
def test_an_unknown_key_names_it_and_the_valid_keys(kind):
    with pytest.raises(ConfigError) as caught:
        model_class(kind).Settings.from_hyper({"dropuot": 0.2}, kind)
    message = str(caught.value)
    assert "'dropuot'" in message and kind in message
    for f in dataclasses.fields(model_class(kind).Settings):
        assert f.name in message


@pytest.mark.parametrize(
    "kind, key, value, accepts",
    [
        ("plmarker", "group_size", "abc", "an integer >= 1"),
        ("plmarker", "group_size", 2.5, "an integer >= 1"),
        ("plmarker", "encoder_batch", 0, "an integer >= 1"),
        ("token", "dropout", 1.5, "a number from 0.0 to 1.0"),
        ("spandec", "position_bias", "yes", "true or false"),
        ("iter", "activation", "tanhh", '"gelu" or "silu" or "relu"'),
        ("padellm", "decoding", "beam", '"parallel" or "autoregressive"'),
        ("sener", "lora_rank", -1, "an integer >= 0"),
    ],
)
def test_a_bad_value_names_the_setting_and_what_it_accepts(kind, key, value, accepts):
    with pytest.raises(ConfigError) as caught:
        model_class(kind).Settings.from_hyper({key: value}, kind)
    message = str(caught.value)
    assert f"{key}={value!r}" in message and accepts in message


def test_parse_settings_checks_against_the_kind():
    assert parse_settings(["dropout=0.2", "nested=false"], "token") == {
        "dropout": 0.2,
        "nested": False,
    }
    with pytest.raises(ConfigError, match="dropuot"):
        parse_settings(["dropuot=0.2"], "token")


def test_decoder_heads_that_do_not_divide_the_hidden_size(tiny_encoder):
    config = ModelConfig("spandec", ["PER"], encoder=tiny_encoder, hyper={"decoder_heads": 5})
    with pytest.raises(ConfigError, match=r"decoder_heads=5 .* divisor of the encoder's hidden"):
        model_class("spandec").create(config)


def test_a_bad_setting_on_the_command_line_is_one_line_and_exit_2(tiny_encoder, samples, tmp_path):
    news = samples / "news.jsonl"
    for item in ("decoder_heads=5", "span_chunk=many", "decoder_head=4"):
        result = CliRunner().invoke(
            app,
            ["train", str(news), "--dev", str(news), "--kind", "spandec"]
            + ["--encoder", tiny_encoder, "--set", item, "-o", str(tmp_path / "m")],
        )
        stderr = ANSI.sub("", result.stderr)
        assert result.exit_code == 2, stderr
        assert "Traceback" not in stderr
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and item.split("=")[0] in errors[0]
        assert not (tmp_path / "m" / "config.json").exists()


@pytest.fixture(scope="module")
def saved(tiny_encoder, tmp_path_factory):
    config = ModelConfig("spandec", ["PER"], encoder=tiny_encoder, hyper={"dropout": 0.0})
    return save_model(model_class("spandec").create(config), tmp_path_factory.mktemp("s") / "m")


def rewrite_hyper(path, hyper):
    config = json.loads((path / "config.json").read_text())
    config["hyper"] = hyper
    (path / "config.json").write_text(json.dumps(config))


def saved_by(path, version: str) -> None:
    config = json.loads((path / "config.json").read_text())
    config["nerx_version"] = version
    (path / "config.json").write_text(json.dumps(config))


def test_a_model_from_a_newer_nerx_loads_with_a_warning(saved, tmp_path):
    copy = shutil.copytree(saved, tmp_path / "m")
    saved_by(copy, "999.1.0")
    with pytest.warns(NerxWarning, match="saved by nerx 999.1.0, newer than this nerx"):
        load_model(copy)


def test_a_model_from_an_older_nerx_loads_quietly(saved, tmp_path):
    import warnings

    copy = shutil.copytree(saved, tmp_path / "m")
    saved_by(copy, "0.0.1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NerxWarning)
        load_model(copy)


def test_the_command_line_prints_the_warning_in_yellow(saved, tmp_path):
    import subprocess
    import sys

    copy = shutil.copytree(saved, tmp_path / "m")
    saved_by(copy, "999.1.0")
    result = subprocess.run(
        [sys.executable, "-m", "nerx", "models", str(copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "warning: " in result.stderr and "newer than this nerx" in result.stderr
    assert "NerxWarning" not in result.stderr  # not Python's own display


def test_an_older_config_without_settings_loads_with_defaults(saved, tmp_path):
    copy = shutil.copytree(saved, tmp_path / "m")
    rewrite_hyper(copy, {})
    model = load_model(copy)
    assert model.settings.span_chunk == 1024 and model.settings.dropout == 0.1


def test_a_saved_config_with_a_bad_setting_is_a_config_error(saved, tmp_path):
    copy = shutil.copytree(saved, tmp_path / "m")
    rewrite_hyper(copy, {"span_chunk": "many"})
    with pytest.raises(ConfigError, match="span_chunk"):
        load_model(copy)
