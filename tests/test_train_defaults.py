"""Per-kind training defaults: a value given > the kind's ``training_defaults`` > the field's
default of ``TrainSettings``, through the Python API and ``nerx train``; the resolved values
are what the run records; ``--help`` lists them per kind; ``--kind`` and the old ``--model``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.errors import ConfigError
from nerx.models import MODELS, model_class
from nerx.train_settings import TrainSettings, per_kind_defaults

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
NEWS = str(SAMPLES / "news.jsonl")
ANSI = re.compile(r"\x1b\[[0-9;]*m")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def token_prefers(monkeypatch):
    """Give the token kind preferred training settings for one test."""

    def prefer(**values):
        for kind in MODELS:  # no other kind prefers anything: the test sees token's alone
            monkeypatch.setattr(model_class(kind), "training_defaults", {})
        monkeypatch.setattr(model_class("token"), "training_defaults", values)

    return prefer


def test_a_kind_gets_its_training_defaults_and_a_given_value_wins(token_prefers):
    token_prefers(learning_rate=3e-4, epochs=4)
    resolved = TrainSettings(epochs=7).for_kind("token")
    assert resolved.epochs == 7  # given
    assert resolved.learning_rate == 3e-4  # the kind's
    assert resolved.batch_size == per_kind_defaults()["batch_size"]  # the field's
    other = TrainSettings().for_kind("spandec")
    assert other.learning_rate == per_kind_defaults()["learning_rate"]
    assert other.epochs == per_kind_defaults()["epochs"]


def test_every_per_kind_field_is_resolved(token_prefers):
    token_prefers(patience=9)
    resolved = TrainSettings().for_kind("token")
    assert all(getattr(resolved, name) is not None for name in per_kind_defaults())
    assert TrainSettings().given() == {}
    assert TrainSettings(warmup=0.0).given() == {"warmup": 0.0}  # 0 is given, not "unset"
    assert TrainSettings(warmup=0.0).for_kind("token").warmup == 0.0


def test_a_kind_that_prefers_an_unknown_setting_is_an_error(token_prefers):
    token_prefers(seed=1)  # not a setting a kind may change
    with pytest.raises(ConfigError, match=r"\['seed'\]"):
        TrainSettings().for_kind("token")


def test_the_api_records_the_resolved_values(token_prefers, tiny_encoder, tmp_path):
    from nerx.io import read
    from nerx.training import RUN_CONFIG_NAME, train

    token_prefers(epochs=1, max_span_length=3, patience=4)
    docs = list(read(NEWS))[:3]
    out = tmp_path / "model"
    result = train(
        docs,
        docs,
        kind="token",
        encoder=tiny_encoder,
        output=out,
        settings=TrainSettings(patience=6, device="cpu", log_every=0),
    )
    assert len(result.history) == 1  # the kind's epochs
    run = json.loads((out / RUN_CONFIG_NAME).read_text(encoding="utf-8"))["settings"]
    assert (run["epochs"], run["max_span_length"], run["patience"]) == (1, 3, 6)
    assert run["learning_rate"] == per_kind_defaults()["learning_rate"]
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["max_span_length"] == 3
    assert config["training"]["epochs"] == 1 and config["training"]["patience"] == 6


def test_the_command_line_gives_the_kind_its_defaults_unless_told(
    token_prefers, tiny_encoder, tmp_path
):
    token_prefers(epochs=1, max_span_length=3, batch_size=4)
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app,
        ["train", NEWS, "--dev", NEWS, "--kind", "token", "--encoder", tiny_encoder]
        + ["--max-span-length", "5", "--device", "cpu", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "train_config.json").read_text(encoding="utf-8"))["settings"]
    assert settings["epochs"] == 1 and settings["batch_size"] == 4  # the kind's
    assert settings["max_span_length"] == 5  # given
    assert settings["warmup"] == per_kind_defaults()["warmup"]  # the field's


def plain_help(*args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return " ".join(ANSI.sub("", result.output).replace("│", " ").split())


def test_help_lists_each_kinds_default(token_prefers):
    token_prefers(learning_rate=0.0003)
    text = plain_help("train")
    base = per_kind_defaults()
    assert f"Default per kind: token 0.0003; {base['learning_rate']} for the others." in text
    assert f"Default per kind: {base['epochs']} for every kind." in text
    assert "--kind" in text and "-k" in text
    for kind in ("token", "spandec", "padellm"):
        assert kind in text


def test_train_takes_lang_and_quiet(tiny_encoder, tmp_path, monkeypatch, token_prefers):
    from nerx import doc as doc_module

    seen = []
    real = doc_module.TextPreparer.__init__

    def spy(self, lang="en", *args, **kwargs):
        seen.append(lang)
        real(self, lang, *args, **kwargs)

    monkeypatch.setattr(doc_module.TextPreparer, "__init__", spy)
    token_prefers(epochs=1)
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app,
        ["train", NEWS, "--dev", NEWS, "-k", "token", "--encoder", tiny_encoder]
        + ["--lang", "de", "--quiet", "-d", "cpu", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "de" in seen
    # No start line, no progress, no summary (transformers may report its own loading).
    assert "training token" not in result.stderr and "best dev F1" not in result.stderr
    assert "epoch 1" not in result.stderr
    assert json.loads((out / "train_config.json").read_text())["settings"]["lang"] == "de"


def test_model_naming_a_kind_in_train_still_works_with_a_warning(tmp_path):
    missing = str(tmp_path / "missing.jsonl")
    result = CliRunner().invoke(app, ["train", missing, "--model", "token", "-o", str(tmp_path)])
    stderr = ANSI.sub("", result.stderr)
    assert "--model in nerx train is deprecated" in stderr and "--kind token" in stderr
    assert "missing.jsonl" in stderr  # the kind was accepted; the data is what is missing
    assert result.exit_code == 2 and "Traceback" not in result.output
    unknown = CliRunner().invoke(app, ["train", missing, "-m", "no-such", "-o", str(tmp_path)])
    assert unknown.exit_code == 2 and "unknown model kind 'no-such'" in unknown.stderr


def test_kind_and_model_together_is_an_error(tmp_path):
    result = CliRunner().invoke(
        app, ["train", NEWS, "-k", "token", "-m", "spandec", "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert "--kind token and --model spandec" in ANSI.sub("", result.stderr)
    assert not (tmp_path / "m").exists()


def test_resolved_values_are_checked_against_the_fields_limits(token_prefers):
    from nerx.train_settings import check_settings

    token_prefers(batch_size=0)  # a kind's preference is checked like a given value
    with pytest.raises(ConfigError, match="batch_size must be at least 1, not 0"):
        check_settings(TrainSettings().for_kind("token"))
    with pytest.raises(ConfigError, match="warmup must be at most 1.0, not 2"):
        check_settings(TrainSettings(warmup=2, batch_size=4).for_kind("token"))
    token_prefers()
    check_settings(TrainSettings(window=12).for_kind("token"))  # small windows: library only


def test_the_shipped_kinds_that_need_a_higher_rate_prefer_it():
    # At 5e-5 SpanDec's decoder (trained at the encoder's rate) barely moves in an epoch.
    for kind in ("token", "spandec", "sf-spandec"):
        assert TrainSettings().for_kind(kind).learning_rate == 3e-4, kind
