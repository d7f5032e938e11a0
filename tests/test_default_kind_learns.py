"""``nerx train TRAIN --dev DEV`` with nothing else learns in its first epoch on the shipped
encoder: the default kind, and ``sener``, whose new span layers once left a first epoch
predicting nothing, each with its own defaults, on an easy corpus of generated news sentences
whose dev names are never seen in training."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.defaults import DEFAULT_KIND

pytestmark = pytest.mark.slow

PEOPLE = [
    "Anna Berg", "Tomas Keller", "Maria Lindqvist", "Jonas Weber", "Elena Rossi",
    "Pierre Martin", "Sofia Novak", "Lukas Brandt", "Ingrid Dahl", "Marco Bianchi",
    "Clara Vogel", "Henrik Moen", "Julia Santos", "Oskar Nilsson", "Petra Horvat",
    "Daniel Costa", "Eva Lund", "Felix Bauer", "Nina Kowalski", "Paul Fischer",
]  # fmt: skip
PLACES = [
    "Bergen", "Hamburg", "Rotterdam", "Lyon", "Turin", "Gdansk", "Porto", "Graz",
    "Uppsala", "Leipzig", "Bilbao", "Ghent", "Tartu", "Aarhus", "Brno", "Split",
]  # fmt: skip
TEMPLATES = [
    "{PER} lives in {LOC} .",
    "{PER} flew to {LOC} on Monday .",
    "Police in {LOC} said {PER} was not hurt .",
    "{PER} and {PER} met in {LOC} last week .",
    "The mayor of {LOC} , {PER} , resigned .",
    "{PER} scored twice as {LOC} won 3-1 .",
]


def corpus(n: int, people: list[str], places: list[str], seed: int) -> list[dict]:
    """``n`` sentences from the templates, each placeholder filled from the given names."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        text, entities = "", []
        for piece in rng.choice(TEMPLATES).split(" "):
            word = {"{PER}": rng.choice(people), "{LOC}": rng.choice(places)}.get(piece, piece)
            text += (" " if text else "") + word
            if piece in ("{PER}", "{LOC}"):
                label = piece[1:-1]
                entities.append({"start": len(text) - len(word), "end": len(text), "label": label})
        docs.append({"id": f"s{seed}-{i}", "text": text, "entities": entities})
    return docs


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


@pytest.mark.parametrize("kind", sorted({DEFAULT_KIND, "sener"}))
def test_the_default_settings_learn_in_the_first_epoch(kind, tmp_path):
    train = write_jsonl(tmp_path / "train.jsonl", corpus(320, PEOPLE[:14], PLACES[:11], 1))
    dev = write_jsonl(tmp_path / "dev.jsonl", corpus(60, PEOPLE[14:], PLACES[11:], 2))
    out = tmp_path / "model"
    args = ["train", str(train), "--dev", str(dev), "-o", str(out), "--epochs", "1", "-q"]
    if kind != DEFAULT_KIND:
        args += ["--kind", kind]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert config["kind"] == kind
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (first,) = [r for r in records if "dev_f1" in r]
    # Names the model never saw in training, found from their casing and context alone.
    assert first["dev_f1"] > 50.0, first
