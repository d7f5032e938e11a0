"""Shared fixtures: the sample corpus and the public corpora beside the checkout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import torch

if TYPE_CHECKING:
    from nerx.training import TrainSettings

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_corpora"
SHARED_DATA = Path(os.environ.get("NERX_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public corpora not found at {SHARED_DATA} (set NERX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: the tiny models are faster so, and the machine's
    cores are shared. Modules take it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory) -> str:
    """A random 2-layer BERT whose vocabulary holds every word of the sample corpus."""
    import re

    from tests.tiny_encoder import build_tiny_encoder

    words = set(re.findall(r"\w+|[^\w\s]", (SAMPLES / "news.jsonl").read_text(encoding="utf-8")))
    return str(build_tiny_encoder(tmp_path_factory.mktemp("tiny-encoder"), words))


# Epochs for the tiny spandec model that the CLI, extraction and spaCy tests share.
TRAIN_EPOCHS = 60


@pytest.fixture(scope="session")
def model_dir(tiny_encoder, tmp_path_factory) -> Path:
    """A spandec model trained from the command line, long enough to find some entities."""
    import torch
    from typer.testing import CliRunner

    from nerx.cli import app

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # the tiny model gains nothing from more, and cores are shared
    out = tmp_path_factory.mktemp("cli-model")
    try:
        result = CliRunner().invoke(
            app,
            [
                "train",
                str(SAMPLES / "news.jsonl"),
                "--dev",
                str(SAMPLES / "news.jsonl"),
                "--kind",
                "spandec",
                "--encoder",
                tiny_encoder,
                "-o",
                str(out),
                "--epochs",
                str(TRAIN_EPOCHS),
                "--lr",
                "0.003",
                "--head-lr-multiplier",
                "3",
                "--warmup",
                "0",
                "--batch-size",
                "2",
                "--patience",
                str(TRAIN_EPOCHS),
                "--device",
                "cpu",
            ],
        )
    finally:
        torch.set_num_threads(before)
    assert result.exit_code == 0, result.stderr
    assert "best dev F1" in result.stderr
    return out


def overfit_settings(**changes) -> TrainSettings:
    """Settings under which every model kind must overfit two sample documents."""
    from nerx.training import TrainSettings

    values = {
        "epochs": 250,
        "batch_size": 2,
        "learning_rate": 3e-3,
        "head_lr_multiplier": 3,
        "warmup": 0.0,
        # Span models sit at F1 0 for dozens of epochs before they take off.
        "patience": 100,
        "device": "cpu",
        "hyper": {"dropout": 0.0},
    }
    return TrainSettings(**{**values, **changes})


#: BIO tagging holds one entity per word, so these kinds overfit documents without nesting.
FLAT_KINDS = {"token"}


def overfit_docs(kind: str) -> list:
    """Two sample documents, fresh from disk: news-001 (with "Oslo" nested in "University of
    Oslo") and news-002 for span models; news-002 and news-004 (no nesting) for flat ones."""
    from nerx.io import read

    docs = {doc.id: doc for doc in read(SAMPLES / "news.jsonl")}
    ids = ("news-002", "news-004") if kind in FLAT_KINDS else ("news-001", "news-002")
    return [docs[i] for i in ids]


def _kinds() -> list[str]:
    from nerx.models import MODELS

    return sorted(MODELS)


@pytest.fixture(scope="session", params=_kinds())
def overfit(request, tiny_encoder, tmp_path_factory):
    """(kind, model directory, training documents) of a model of every kind trained to overfit
    two documents; trained once for every module that checks what such a model does."""
    from nerx.training import train

    kind = request.param
    docs = overfit_docs(kind)
    out = tmp_path_factory.mktemp(f"overfit-{kind}")
    train(docs, docs, kind=kind, encoder=tiny_encoder, output=out, settings=overfit_settings())
    return kind, out, docs
