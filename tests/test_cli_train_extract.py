"""``nerx train`` and ``nerx extract`` through the command line, on the tiny random encoder:
a model directory, JSONL on stdout, files that ``nerx eval`` and ``nerx.read`` accept, and
user mistakes that end in one clear line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.doc import maximal_non_overlapping
from nerx.io import read
from nerx.models import MODELS
from nerx.scoring import evaluate
from tests.conftest import TRAIN_EPOCHS

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
NEWS = str(SAMPLES / "news.jsonl")
RAW = str(SAMPLES / "news_raw.jsonl")


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner, *args: str):
    return runner.invoke(app, list(args))


def entity_rows(doc) -> set[tuple[int, int, str]]:
    return {(e.start, e.end, e.label) for e in doc.entities}


def test_train_writes_a_model_directory(model_dir):
    assert {"config.json", "model.safetensors", "metrics.jsonl"} <= {
        p.name for p in model_dir.iterdir()
    }
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    assert config["kind"] == "spandec"
    assert config["labels"] == ["LOC", "MISC", "ORG", "PER"]
    assert config["hyper"]["nested"] is True  # "Oslo" nests in "University of Oslo"
    lines = (model_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    dev = [r["epoch"] for r in records if "dev_f1" in r]
    assert dev == list(range(1, TRAIN_EPOCHS + 1))
    steps = [r for r in records if "dev_f1" not in r]  # a line every 50 steps
    assert steps and all(r["global_step"] % 50 == 0 and r["loss"] > 0 for r in steps)


def test_extract_raw_text_writes_jsonl_to_stdout(runner, model_dir):
    result = invoke(runner, "extract", RAW, "--model", str(model_dir))
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    texts = [json.loads(line)["text"] for line in Path(RAW).read_text().splitlines()]
    docs = [json.loads(line) for line in lines]
    assert [doc["text"] for doc in docs] == texts
    assert [doc["id"] for doc in docs] == [str(i) for i in range(1, len(texts) + 1)]
    entities = [e for doc in docs for e in doc["entities"]]
    assert entities, "the trained model should find some entities"
    for doc in docs:
        starts = {s for s, _ in doc["tokens"]}
        ends = {e for _, e in doc["tokens"]}
        for e in doc["entities"]:
            assert 0.0 < e["score"] <= 1.0
            assert e["start"] in starts and e["end"] in ends
    assert "5 documents" in result.stderr


def test_extract_to_a_file_then_eval(runner, model_dir, tmp_path):
    pred = tmp_path / "pred.jsonl"
    result = invoke(runner, "extract", NEWS, "--model", str(model_dir), "-o", str(pred))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert len(list(read(pred))) == 5

    scored = invoke(runner, "eval", NEWS, str(pred), "--json")
    assert scored.exit_code == 0, scored.stderr
    report = json.loads(scored.stdout)
    expected = evaluate(NEWS, str(pred))
    assert report["documents"] == 5
    assert report["entities"]["tp"] == expected.entities.tp > 0
    assert report["entities"]["f1"] == pytest.approx(expected.entities.f1)


@pytest.fixture(scope="module")
def jsonl_predictions(runner, model_dir, tmp_path_factory) -> list:
    pred = tmp_path_factory.mktemp("pred") / "pred.jsonl"
    result = invoke(runner, "extract", NEWS, "--model", str(model_dir), "-o", str(pred))
    assert result.exit_code == 0, result.stderr
    return list(read(pred))


@pytest.mark.parametrize(
    ("fmt", "name"), [("docbin", "pred.spacy"), ("brat", "pred_brat"), ("conll", "pred.conll")]
)
def test_extract_writes_other_formats(runner, model_dir, jsonl_predictions, tmp_path, fmt, name):
    target = tmp_path / name
    result = invoke(
        runner, "extract", NEWS, "--model", str(model_dir), "--to", fmt, "-o", str(target)
    )
    assert result.exit_code == 0, result.stderr
    assert target.exists()
    back = list(read(target, fmt))
    assert len(back) == len(jsonl_predictions)
    if fmt == "conll":
        # CoNLL keeps words, not the original spacing or ids, and only non-overlapping
        # entities: compare what those entities say, spacing aside.
        def said(doc, entities):
            return sorted(("".join(doc.text[e.start : e.end].split()), e.label) for e in entities)

        for doc, ref in zip(back, jsonl_predictions, strict=True):
            flat = [ref.entities[i] for i in maximal_non_overlapping(ref.entities)]
            assert said(doc, doc.entities) == said(ref, flat)
    else:
        assert [doc.id for doc in back] == [doc.id for doc in jsonl_predictions]
        for doc, ref in zip(back, jsonl_predictions, strict=True):
            assert doc.text == ref.text
            assert entity_rows(doc) == entity_rows(ref)
    assert any(doc.entities for doc in back)


def test_extract_with_an_unknown_model_name_lists_the_bundled_ones(runner):
    result = invoke(runner, "extract", RAW, "--model", "no-such-model")
    assert result.exit_code == 2
    assert "unknown model 'no-such-model'" in result.stderr and "news-ner" in result.stderr
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_extract_with_a_directory_that_is_no_model(runner, tmp_path):
    result = invoke(runner, "extract", RAW, "--model", str(tmp_path))
    assert result.exit_code == 2
    assert "not a nerx model directory" in result.stderr


def test_train_with_an_unknown_kind_lists_the_choices(runner, tiny_encoder, tmp_path):
    out = tmp_path / "never"
    result = invoke(
        runner,
        "train",
        NEWS,
        "--dev",
        NEWS,
        "--kind",
        "no-such-model",
        "--encoder",
        tiny_encoder,
        "-o",
        str(out),
    )
    assert result.exit_code == 2
    assert "unknown model kind 'no-such-model'" in result.stderr
    assert all(kind in result.stderr for kind in MODELS)
    assert "Traceback" not in result.output
    assert not out.exists()


def test_train_records_symmetric_relations_and_model_settings(runner, tiny_encoder, tmp_path):
    out = tmp_path / "model"
    result = invoke(
        runner,
        "train",
        NEWS,
        "--dev",
        NEWS,
        "--kind",
        "token",
        "--encoder",
        tiny_encoder,
        "--epochs",
        "1",
        "--symmetric",
        "Located_In",
        "--set",
        "dropout=0.25",
        "--set",
        "nested=false",
        "-o",
        str(out),
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["symmetric_relations"] == ["Located_In"]
    assert config["hyper"]["dropout"] == 0.25 and config["hyper"]["nested"] is False


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--symmetric", "Married_To", "symmetric relation labels ['Married_To'] are not in"),
        ("--set", "omega", "--set 'omega' is not KEY=VALUE"),
    ],
)
def test_train_rejects_bad_relation_and_setting_options(
    runner, tiny_encoder, tmp_path, option, value, message
):
    out = tmp_path / "never"
    result = invoke(
        runner,
        "train",
        NEWS,
        "--dev",
        NEWS,
        "--encoder",
        tiny_encoder,
        option,
        value,
        "-o",
        str(out),
    )
    assert result.exit_code == 2
    assert message in result.stderr and "Traceback" not in result.output
