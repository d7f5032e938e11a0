"""The Python API's long calls draw a tqdm bar on stderr when asked (``progress=True``),
and nothing when not."""

from __future__ import annotations

from pathlib import Path

import pytest

import nerx
from nerx.doc import Document
from nerx.models import ModelConfig, model_class

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
NEWS = SAMPLES / "news.jsonl"

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def untrained(tiny_encoder):
    config = ModelConfig(kind="token", labels=["PER"], encoder=tiny_encoder)
    return model_class("token").create(config).eval()


def texts(count: int) -> list[Document]:
    return [Document(f"d{i}", "Ada Lovelace met Charles Babbage in London .") for i in range(count)]


@pytest.mark.parametrize("progress", [True, False])
def test_extract_counts_documents_when_asked(untrained, capsys, progress):
    found = list(nerx.extract(texts(5), untrained, progress=progress))
    assert [doc.id for doc in found] == [f"d{i}" for i in range(5)]
    err = capsys.readouterr().err
    if progress:
        assert "extract" in err and "5/5" in err
    else:
        assert err == ""


def test_extract_counts_a_stream_without_a_total(untrained, capsys):
    found = list(nerx.extract(iter(texts(3)), untrained, progress=True))
    assert len(found) == 3
    assert "3doc" in capsys.readouterr().err.replace(" ", "")


@pytest.mark.parametrize("progress", [True, False])
def test_convert_counts_documents_when_asked(tmp_path, capsys, progress):
    count = sum(1 for _ in nerx.read(NEWS))
    report = nerx.convert(NEWS, tmp_path / "out.conll", progress=progress)
    assert report.documents_written == count
    err = capsys.readouterr().err
    if progress:
        assert "convert" in err and f"{count}doc" in err.replace(" ", "")
    else:
        assert err == ""


def test_train_shows_its_steps_when_asked(tiny_encoder, tmp_path, capsys):
    docs = list(nerx.read(NEWS))[:3]
    settings = nerx.TrainSettings(epochs=2, batch_size=2, device="cpu", log_every=0)
    result = nerx.train(
        docs,
        docs,
        kind="token",
        encoder=tiny_encoder,
        output=tmp_path / "m",
        settings=settings,
        progress=True,
    )
    err = capsys.readouterr().err
    steps = len(result.history) * 2  # three documents, batches of two: two steps an epoch
    assert "train" in err and f"{steps}/{steps}" in err and "loss" in err


def test_train_is_silent_by_default(tiny_encoder, tmp_path, capsys):
    docs = list(nerx.read(NEWS))[:2]
    settings = nerx.TrainSettings(epochs=1, device="cpu", log_every=0)
    nerx.train(
        docs, docs, kind="token", encoder=tiny_encoder, output=tmp_path / "m", settings=settings
    )
    assert "step" not in capsys.readouterr().err
