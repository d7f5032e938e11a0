"""spaCy's own command line accepts what ``nerx extract --to docbin`` writes as training data:
``spacy debug data`` finds no problem in it and ``spacy train`` trains on it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from tests.conftest import SAMPLES

# spaCy's debug data calls fewer than 2,000 documents too few to train a new pipeline.
COPIES = 400


def spacy_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spacy", *args], cwd=cwd, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def corpus(model_dir, tmp_path_factory):
    """Predictions of the tiny model on the sample texts, as DocBin (train: many copies; dev:
    one), plus a spaCy config."""
    root = tmp_path_factory.mktemp("spacy-cli")
    texts = [json.loads(line) for line in (SAMPLES / "news_raw.jsonl").read_text().splitlines()]
    with open(root / "texts.jsonl", "w", encoding="utf-8") as out:
        for k in range(COPIES):
            for i, item in enumerate(texts):
                out.write(json.dumps({"id": f"{k}-{i}", "text": item["text"]}) + "\n")
    result = CliRunner().invoke(
        app,
        ["extract", str(root / "texts.jsonl"), "--model", str(model_dir), "--device", "cpu",
         "--to", "docbin", "-o", str(root / "train.spacy")],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    result = CliRunner().invoke(
        app,
        ["extract", str(SAMPLES / "news_raw.jsonl"), "--model", str(model_dir), "--device",
         "cpu", "--to", "docbin", "-o", str(root / "dev.spacy")],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    done = spacy_cli("init", "config", "-l", "en", "-p", "ner", "config.cfg", cwd=root)
    assert done.returncode == 0, done.stderr
    return root


def test_spacy_debug_data_accepts_nerx_docbin(corpus):
    done = spacy_cli(
        "debug", "data", "config.cfg", "--paths.train", "train.spacy",
        "--paths.dev", "dev.spacy", cwd=corpus,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{COPIES * 5} training docs" in done.stdout
    assert "No entities crossing sentence boundaries" in done.stdout
    assert "✘" not in done.stdout


def test_spacy_train_trains_on_nerx_docbin(corpus):
    done = spacy_cli(
        "train", "config.cfg", "--paths.train", "train.spacy", "--paths.dev", "dev.spacy",
        "--training.max_steps", "4", "--training.eval_frequency", "2", "--output", "out",
        cwd=corpus,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (corpus / "out" / "model-last" / "ner").is_dir()
