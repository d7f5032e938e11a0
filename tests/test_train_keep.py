"""``keep``: save the best dev epoch (with early stopping) or every epoch in turn, so that a
final model can train on train and dev together; several TRAIN files are one training set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nerx.checkpoint import load_tensors, read_checkpoint
from nerx.cli import app
from nerx.errors import ConfigError
from nerx.io import read
from nerx.models import load_model
from nerx.training import CHECKPOINT_DIR, TrainSettings, train
from tests.conftest import overfit_settings

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
NEWS = SAMPLES / "news.jsonl"

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(docs, tiny_encoder: str, output: Path, **changes):
    """Train token on the documents (dev: the same) for 4 epochs at patience 1."""
    settings = overfit_settings(**{"epochs": 4, "patience": 1, "log_every": 0, **changes})
    return train(docs, docs, kind="token", encoder=tiny_encoder, output=output, settings=settings)


def _weights_match(model_dir: Path) -> bool:
    """Whether the saved model holds the weights the run ended with (its last checkpoint)."""
    meta = read_checkpoint(model_dir / CHECKPOINT_DIR)
    final = load_tensors(model_dir / CHECKPOINT_DIR, meta, "model")
    saved = load_model(model_dir, device="cpu").state_dict()
    return all(torch.equal(saved[name].float(), final[name].float()) for name in final)


def test_keep_last_trains_every_epoch_and_saves_the_last(tiny_encoder, tmp_path):
    docs = list(read(NEWS))[:3]
    out = tmp_path / "last"
    # No learning: dev F1 never improves, so keep=best stops after patience 1 ...
    still = _train(docs, tiny_encoder, tmp_path / "best", learning_rate=0.0, head_lr_multiplier=0)
    assert len(still.history) == 2 and still.best_epoch == 1
    # ... and keep=last runs all epochs under the same patience, saving the final one.
    result = _train(docs, tiny_encoder, out, keep="last")
    assert len(result.history) == 4 and result.best_epoch == 4
    assert result.best_score == pytest.approx(result.history[-1]["dev_f1"], abs=1e-3)
    assert _weights_match(out)
    run = json.loads((out / "train_config.json").read_text(encoding="utf-8"))
    assert run["settings"]["keep"] == "last"


def test_an_unknown_keep_is_a_config_error():
    from nerx.train_settings import check_settings

    with pytest.raises(ConfigError, match="keep must be best or last"):
        check_settings(TrainSettings(keep="first").for_kind("token"))


def test_the_command_line_reads_several_train_files_as_one_set(tiny_encoder, tmp_path):
    docs = NEWS.read_text(encoding="utf-8").splitlines()
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("\n".join(docs[:2]) + "\n", encoding="utf-8")
    second.write_text("\n".join(docs[2:4]) + "\n", encoding="utf-8")
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app,
        ["train", str(first), str(second), "--dev", str(second), "--kind", "token"]
        + ["--encoder", tiny_encoder, "--epochs", "2", "--patience", "1", "--keep", "last"]
        + ["--lr", "0", "--head-lr-multiplier", "0", "--device", "cpu", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "on 4 documents" in result.stderr
    assert "dev F1 of the last epoch" in result.stderr and "at epoch 2" in result.stderr
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").open() if '"dev_f1"' in line]
    assert [r["epoch"] for r in epochs] == [1, 2]


def test_the_command_line_refuses_an_unknown_keep(tiny_encoder, tmp_path):
    result = CliRunner().invoke(
        app,
        ["train", str(NEWS), "--dev", str(NEWS), "--encoder", tiny_encoder, "--keep", "worst"]
        + ["--device", "cpu", "-o", str(tmp_path / "m")],
    )
    assert result.exit_code == 2
    assert "keep must be best or last" in result.output


def test_a_setting_given_with_set_is_saved_and_not_tuned(tiny_encoder, tmp_path):
    docs = list(read(NEWS))[:3]
    out = tmp_path / "given"
    result = _train(docs, tiny_encoder, out, epochs=1, hyper={"outside_bias": 0.75})
    assert "outside_bias" not in result.calibration  # token tunes only this one
    saved = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert saved["hyper"]["outside_bias"] == 0.75
    assert load_model(out, device="cpu").settings.outside_bias == 0.75
