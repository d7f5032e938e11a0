"""doccano JSONL both ways: sequence labeling and relation projects."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import nerx
from nerx.cli import app
from nerx.errors import FormatError
from nerx.io import detect_format, doccano, losses


def view(docs, relations=True):
    return [
        (
            d.id,
            d.text,
            [(e.start, e.end, e.label) for e in d.entities],
            [(r.head, r.tail, r.label) for r in d.relations] if relations else [],
            d.meta,
        )
        for d in docs
    ]


def test_relation_project_round_trip_of_the_sample_corpus(samples, tmp_path):
    docs = list(nerx.read(samples / "news.jsonl"))
    report = nerx.write(docs, tmp_path / "d.jsonl", "doccano", relations=True)
    assert detect_format(tmp_path / "d.jsonl") == "doccano"
    assert view(nerx.read(tmp_path / "d.jsonl")) == view(docs)
    assert not report.lost


def test_sequence_labeling_round_trip_reports_the_relations_it_cannot_hold(samples, tmp_path):
    docs = list(nerx.read(samples / "news.jsonl"))
    report = nerx.write(docs, tmp_path / "d.jsonl", "doccano")
    lines = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert all(set(x) == {"id", "text", "label"} for x in lines)
    assert view(nerx.read(tmp_path / "d.jsonl"), relations=False) == view(docs, relations=False)
    assert report.lost[doccano.LOST_RELATIONS] == sum(len(d.relations) for d in docs)
    assert report.relations_written == 0


def test_reads_both_layouts_and_keeps_other_keys_as_meta(tmp_path):
    path = tmp_path / "export.jsonl"
    lines = [
        {"id": 7, "text": "Ada met Bob.", "label": [[0, 3, "PER"], [8, 11, "PER"]], "Comments": []},
        {
            "id": 8,
            "text": "Ada met Bob.",
            "entities": [
                {"id": 31, "start_offset": 0, "end_offset": 3, "label": "PER"},
                {"id": 32, "start_offset": 8, "end_offset": 11, "label": "PER"},
            ],
            "relations": [
                {"id": 5, "from_id": 32, "to_id": 31, "type": "Knows"},
                {"id": 6, "from_id": 32, "to_id": 99, "type": "Knows"},
            ],
        },
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    report = nerx.Report()
    first, second = nerx.read(path, report=report)
    assert first.id == "7" and first.meta == {"Comments": []}
    assert [(e.start, e.end) for e in first.entities] == [(0, 3), (8, 11)]
    assert [(r.head, r.tail, r.label) for r in second.relations] == [(1, 0, "Knows")]
    assert report.lost[doccano.DANGLING] == 1


def test_scores_are_reported_as_not_kept(tmp_path):
    doc = nerx.Document("d", "Ada", entities=[nerx.Entity(0, 3, "PER", 0.9)])
    report = nerx.write([doc], tmp_path / "d.jsonl", "doccano")
    assert report.lost[losses.LOST_ENTITY_SCORES] == 1


def test_a_bad_label_names_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(
        '{"text": "Ada", "label": [[0, 3, "PER"]]}\n{"text": "Bob", "label": [[0, "PER"]]}\n'
    )
    with pytest.raises(FormatError, match=r"bad.jsonl:2: label 0"):
        list(nerx.read(path))
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "bad.jsonl:2" in result.output


def test_a_line_with_a_long_text_is_still_detected(tmp_path):
    text = "Ada met Bob. " * 2000  # 26 kB, beyond the first block read for detection
    doc = nerx.Document("long", text, entities=[nerx.Entity(0, 3, "PER")])
    nerx.write([doc], tmp_path / "long.jsonl", "doccano")
    assert detect_format(tmp_path / "long.jsonl") == "doccano"
    (back,) = nerx.read(tmp_path / "long.jsonl")
    assert [(e.start, e.end, e.label) for e in back.entities] == [(0, 3, "PER")]


def test_cli_writes_a_relation_project_with_to_doccano_relations(samples, tmp_path):
    out = tmp_path / "rel.jsonl"
    result = CliRunner().invoke(
        app, ["convert", str(samples / "news.jsonl"), str(out), "--to", "doccano-relations", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert all("relations" in json.loads(x) for x in out.read_text().splitlines())
    assert view(nerx.read(out)) == view(nerx.read(samples / "news.jsonl"))
