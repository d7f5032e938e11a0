"""``nerx train TRAIN`` without ``--dev``: a deterministic part of TRAIN is held out as dev,
the run says so first, config.json records the split, and a corpus too small to split is one
clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.doc import Document
from nerx.errors import ConfigError
from nerx.io import read
from nerx.training import split_dev

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
NEWS = str(SAMPLES / "news.jsonl")


def corpus(count: int) -> list[Document]:
    return [Document(f"d{i}", f"Text number {i}.") for i in range(count)]


def test_split_is_fixed_by_the_seed_and_keeps_the_input_order():
    docs = corpus(50)
    train, dev, split = split_dev(docs, 0.2, seed=7)
    again_train, again_dev, _ = split_dev(docs, 0.2, seed=7)
    other_train, other_dev, _ = split_dev(docs, 0.2, seed=8)

    assert [d.id for d in dev] == [d.id for d in again_dev]
    assert [d.id for d in train] == [d.id for d in again_train]
    assert {d.id for d in other_dev} != {d.id for d in dev}
    assert len(dev) == 10 and len(train) == 40
    assert {d.id for d in train} | {d.id for d in dev} == {d.id for d in docs}
    assert not {d.id for d in train} & {d.id for d in dev}
    positions = {d.id: i for i, d in enumerate(docs)}
    assert [positions[d.id] for d in dev] == sorted(positions[d.id] for d in dev)
    assert [positions[d.id] for d in train] == sorted(positions[d.id] for d in train)
    assert split.dev_ids == [d.id for d in dev]
    assert split.dev_indices == [positions[d.id] for d in dev]
    assert (split.fraction, split.seed, split.train_documents, split.dev_documents) == (
        0.2,
        7,
        40,
        10,
    )


def test_a_small_corpus_holds_out_at_least_one_document():
    train, dev, _ = split_dev(corpus(3), 0.1, seed=13)
    assert (len(train), len(dev)) == (2, 1)


@pytest.mark.parametrize(("count", "fraction"), [(1, 0.1), (0, 0.1), (10, 0.0), (10, 1.0)])
def test_impossible_splits_are_config_errors(count, fraction):
    with pytest.raises(ConfigError):
        split_dev(corpus(count), fraction, seed=13)


def train_args(tiny_encoder: str, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        *extra,
        "--kind",
        "token",
        "--encoder",
        tiny_encoder,
        "--epochs",
        "1",
        "--device",
        "cpu",
        "-o",
        str(out),
    ]


def test_train_without_dev_holds_out_part_of_train_and_records_it(tiny_encoder, tmp_path):
    out = tmp_path / "model"
    result = CliRunner().invoke(app, train_args(tiny_encoder, out, NEWS, "--seed", "5"))
    assert result.exit_code == 0, result.output
    # The first thing the run prints (rich wraps it at the terminal's width).
    first_line = " ".join(result.stderr.partition(", encoder")[0].split())
    assert first_line.startswith("training token on")
    assert "held out" in first_line and "--dev-split 0.1" in first_line and "seed 5" in first_line

    docs = list(read(NEWS))
    train, dev, _ = split_dev(docs, 0.1, seed=5)
    assert f"on {len(train)} documents" in first_line and f"dev {len(dev)} " in first_line
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    recorded = config["training"]["dev_split"]
    assert recorded["dev_ids"] == [d.id for d in dev]
    assert recorded["dev_indices"] == [docs.index(d) for d in dev]
    assert (recorded["fraction"], recorded["seed"]) == (0.1, 5)
    assert (recorded["train_documents"], recorded["dev_documents"]) == (len(train), len(dev))
    assert config["training"]["train_documents"] == len(train)


def test_train_with_dev_records_no_split(model_dir):
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert "dev_split" not in config["training"]


def one_document(tmp_path: Path) -> str:
    path = tmp_path / "one.jsonl"
    first = Path(NEWS).read_text(encoding="utf-8").splitlines()[0]
    path.write_text(first + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--dev", NEWS, "--dev-split", "0.2"), "with --dev it would do nothing"),
        (("--dev-split", "1.5"), "the dev split is 1.5"),
        ((), "too few to hold out a dev part"),
    ],
)
def test_train_split_mistakes_are_one_clear_line(tiny_encoder, tmp_path, extra, message):
    out = tmp_path / "never"
    result = CliRunner().invoke(app, train_args(tiny_encoder, out, one_document(tmp_path), *extra))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not out.exists()
