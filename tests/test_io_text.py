"""Plain text in: a file is a document, a folder one per file, --from lines one per line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import nerx
from nerx.cli import app
from nerx.io import detect_format, text
from nerx.models import ModelConfig, model_class, save_model


def test_a_txt_file_is_one_document_with_its_exact_text(tmp_path):
    body = "First line.\r\nSecond  line, \u00e9t\u00e9.\n\n"
    (tmp_path / "notes.txt").write_bytes(body.encode("utf-8"))
    assert detect_format(tmp_path / "notes.txt") == "text"
    (doc,) = nerx.read(tmp_path / "notes.txt")
    assert (doc.id, doc.text, doc.entities) == ("notes", body, [])


def test_a_folder_of_txt_files_is_one_document_per_file_but_with_ann_it_is_brat(tmp_path):
    for name, body in (("b", "Bee."), ("a", "Ay.")):
        (tmp_path / f"{name}.txt").write_text(body, encoding="utf-8")
    assert detect_format(tmp_path) == "text"
    assert [(d.id, d.text) for d in nerx.read(tmp_path)] == [("a", "Ay."), ("b", "Bee.")]
    (tmp_path / "a.ann").write_text("T1\tX 0 2\tAy\n", encoding="utf-8")
    assert detect_format(tmp_path) == "brat"
    assert detect_format(tmp_path / "a.txt") == "brat"


def test_from_lines_streams_one_document_per_non_blank_line(tmp_path):
    (tmp_path / "l.txt").write_text("one\n\n  \nthree four\n", encoding="utf-8")
    docs = nerx.read(tmp_path / "l.txt", "lines")
    assert next(docs).text == "one"  # a stream, not a list
    assert [(d.id, d.text) for d in docs] == [("4", "three four")]


def test_writing_text_gives_a_line_per_document_and_reports_what_is_lost(samples, tmp_path):
    docs = list(nerx.read(samples / "news.jsonl"))
    report = nerx.write(docs, tmp_path / "out.txt")
    assert [d.text for d in nerx.read(tmp_path / "out.txt", "lines")] == [d.text for d in docs]
    assert report.lost[text.LOST_ENTITIES] == sum(len(d.entities) for d in docs)
    assert report.lost[text.LOST_RELATIONS] == sum(len(d.relations) for d in docs)


def test_options_of_other_formats_are_refused_by_name(tmp_path):
    (tmp_path / "n.txt").write_text("Ada.", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["convert", str(tmp_path / "n.txt"), str(tmp_path / "o.jsonl"), "--text-column", "x"]
    )
    assert result.exit_code == 2
    assert "--text-column does not apply to text input" in result.output


@pytest.fixture(scope="module")
def blank_model_dir(tiny_encoder, tmp_path_factory):
    config = ModelConfig(kind="spandec", labels=["LOC", "PER"], encoder=tiny_encoder)
    return save_model(model_class("spandec").create(config), tmp_path_factory.mktemp("m") / "m")


def test_nerx_extract_notes_txt_works(blank_model_dir, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("Maria Lindqvist lives in Bergen.\nShe works in Oslo.\n", encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "extract",
            str(notes),
            "--model",
            str(blank_model_dir),
            "-o",
            str(tmp_path / "o.jsonl"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert record["id"] == "notes" and record["text"] == notes.read_text(encoding="utf-8")
    result = CliRunner().invoke(
        app,
        [
            "extract",
            str(notes),
            "--from",
            "lines",
            "--model",
            str(blank_model_dir),
            "-q",
            "-o",
            str(tmp_path / "lines.jsonl"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["id"] for x in (tmp_path / "lines.jsonl").read_text().splitlines()] == [
        "1",
        "2",
    ]
