"""The models that ship with nerx: they load offline, find obvious entities (and relations) in
sentences written here, stay small, and are chosen by name from the CLI and the API."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nerx.bundled import DEFAULT_MODEL, card, directory_size, model_path, names
from nerx.doc import Document
from nerx.errors import ModelError

#: The size limit of one bundled model directory.
MAX_BYTES = 15 * 1024 * 1024
TEXT = (
    "Angela Brandt, the chief executive of Nordwind Energy, spoke in Hamburg on Friday. "
    "Later she flew to Madrid."
)


@pytest.fixture(scope="module")
def news_ner():
    import nerx

    return nerx.load("news-ner")


def said(doc: Document) -> set[tuple[str, str]]:
    return {(doc.text[e.start : e.end], e.label) for e in doc.entities}


def test_the_default_model_is_bundled():
    assert DEFAULT_MODEL in names()


@pytest.mark.parametrize("name", names())
def test_bundled_models_stay_under_the_size_limit(name):
    size = directory_size(model_path(name))
    assert 0 < size <= MAX_BYTES
    assert card(name).size_bytes == size


@pytest.mark.parametrize("name", names())
def test_cards_hold_labels_and_both_scores(name):
    found = card(name)
    assert found.labels and found.command.startswith("python -m nerx.bundled.build")
    bundled, full = found.scores["bundled"], found.scores["full"]
    assert 0 < bundled["ner_f1"] <= 100
    assert ("rel_plus_f1" in bundled) == bool(found.relation_labels)
    # The compact model stays within 1.0 F1 of the full fine-tune it came from.
    for metric, score in bundled.items():
        assert score >= full[metric] - 1.0, metric


@pytest.mark.slow  # loads the real MiniLM encoder
def test_news_ner_finds_the_obvious_entities(news_ner):
    from nerx.pipeline import extract

    (doc,) = extract([Document(id="w", text=TEXT)], news_ner)
    assert {
        ("Angela Brandt", "PER"),
        ("Nordwind Energy", "ORG"),
        ("Hamburg", "LOC"),
        ("Madrid", "LOC"),
    } <= said(doc)


@pytest.mark.slow  # loads the real MiniLM encoder
def test_news_re_finds_the_people_the_companies_and_who_works_where():
    import nerx
    from nerx.pipeline import extract

    text = "Tomas Keller, the chief executive of Harbor Freight Lines, lives in Hamburg."
    (doc,) = extract([Document(id="w", text=text)], nerx.load("news-re"))
    assert {("Tomas Keller", "Peop"), ("Harbor Freight Lines", "Org"), ("Hamburg", "Loc")} <= said(
        doc
    )
    relations = {
        (
            doc.text[doc.entities[r.head].start : doc.entities[r.head].end],
            r.label,
            doc.text[doc.entities[r.tail].start : doc.entities[r.tail].end],
        )
        for r in doc.relations
    }
    assert ("Tomas Keller", "Work_For", "Harbor Freight Lines") in relations


def test_both_default_models_ship():
    assert {"news-ner", "news-re"} <= set(names())


def test_an_unknown_name_lists_the_bundled_models():
    import nerx

    with pytest.raises(ModelError) as caught:
        nerx.load("no-such-model")
    assert "no-such-model" in str(caught.value) and DEFAULT_MODEL in str(caught.value)


def test_a_missing_directory_path_is_not_taken_for_a_name(tmp_path):
    import nerx

    with pytest.raises(ModelError, match="does not exist"):
        nerx.load(str(tmp_path / "gone"))


@pytest.mark.slow  # loads the real MiniLM encoder
def test_extract_without_a_model_uses_the_default(samples, tmp_path):
    from nerx.cli import app
    from nerx.io import read

    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["extract", str(samples / "news_raw.jsonl"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    first = next(iter(read(out)))
    assert ("Maria Lindqvist", "PER") in said(first)


def test_models_command_lists_names_labels_and_scores():
    from nerx.cli import app

    result = CliRunner().invoke(app, ["models", "--verbose"])
    assert result.exit_code == 0, result.output
    for name in names():
        found = card(name)
        assert name in result.stdout and found.command in result.stdout
        assert all(label in result.stdout for label in found.labels)
        assert f"{found.scores['bundled']['ner_f1']:.2f}" in result.stdout
        # Each build says what it changed (rich may fold the line: compare the words).
        assert found.changes
        section = result.stdout[result.stdout.index(f"{name}: {found.summary.split()[0]}") :]
        assert f"changed: {found.changes}".split() == _words_after(
            section, "changed: ", len(found.changes.split()) + 1
        )


def _words_after(text: str, start: str, count: int) -> list[str]:
    """The ``count`` words of ``text`` from where ``start`` first begins."""
    return text[text.index(start) :].split()[:count]


def test_models_command_describes_a_model_and_its_settings(tmp_path):
    import json
    import shutil

    from nerx.bundled import model_path
    from nerx.cli import app

    result = CliRunner().invoke(app, ["models", "news-ner", "--verbose"])
    assert result.exit_code == 0, result.output
    assert "kind: token; backend: pytorch" in result.output
    assert "dropout = 0.1" in result.output and "dropout before the tag classifier" in result.output

    copy = tmp_path / "copy"
    shutil.copytree(model_path("news-ner"), copy)
    config = json.loads((copy / "config.json").read_text())
    config["hyper"]["dropout"] = 0.3
    (copy / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["models", str(copy)])
    assert result.exit_code == 0 and "dropout = 0.3" in result.output

    config["hyper"]["dropuot"] = 0.3
    (copy / "config.json").write_text(json.dumps(config))
    result = CliRunner().invoke(app, ["models", str(copy)])
    assert result.exit_code == 2 and "dropuot" in result.output


def test_load_model_reads_directories_and_leaves_names_to_nerx_load(tmp_path, monkeypatch):
    from nerx.models import load_model

    monkeypatch.chdir(tmp_path)  # no directory called news-ner here
    with pytest.raises(ModelError, match="model directory news-ner does not exist") as caught:
        load_model(DEFAULT_MODEL)
    assert "nerx.load" in caught.value.hint
