"""Prodigy JSONL, now written too: spans with token ranges, relations by head/child token."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import nerx
from nerx.cli import app
from nerx.doc import Document, Entity, Relation
from nerx.io import detect_format, prodigy


def view(docs):
    return [
        (
            d.id,
            d.text,
            [(e.start, e.end, e.label, e.score) for e in d.entities],
            [(r.head, r.tail, r.label) for r in d.relations],
            d.meta,
        )
        for d in docs
    ]


def test_round_trip_of_the_sample_corpus(samples, tmp_path):
    docs = list(nerx.read(samples / "news.jsonl"))
    report = nerx.write(docs, tmp_path / "p.jsonl", "prodigy")
    assert detect_format(tmp_path / "p.jsonl") == "prodigy"
    assert view(nerx.read(tmp_path / "p.jsonl")) == view(docs)
    assert not report.lost


def test_spans_carry_inclusive_token_ranges_and_relations_their_last_tokens(samples, tmp_path):
    docs = list(nerx.read(samples / "news.jsonl"))
    nerx.write(docs, tmp_path / "p.jsonl", "prodigy")
    for line, doc in zip((tmp_path / "p.jsonl").read_text().splitlines(), docs, strict=True):
        example = json.loads(line)
        tokens = example["tokens"]
        assert [t["id"] for t in tokens] == list(range(len(tokens)))
        assert all(doc.text[t["start"] : t["end"]] == t["text"] for t in tokens)
        for span in example["spans"]:
            assert tokens[span["token_start"]]["start"] == span["start"]
            assert tokens[span["token_end"]]["end"] == span["end"]
        for rel, ours in zip(example.get("relations", []), doc.relations, strict=True):
            head, child = example["spans"][ours.head], example["spans"][ours.tail]
            assert rel["head"] == head["token_end"] and rel["child"] == child["token_end"]
            assert rel["head_span"]["start"] == head["start"]


def test_a_span_inside_a_token_keeps_its_characters_without_a_token_range(tmp_path):
    doc = Document(
        "d",
        "Lovelace-Byron met Bob",
        tokens=[(0, 14), (15, 18), (19, 22)],
        entities=[Entity(0, 8, "PER"), Entity(19, 22, "PER")],
        relations=[Relation(0, 1, "Knows")],
    )
    report = nerx.write([doc], tmp_path / "p.jsonl", "prodigy")
    example = json.loads((tmp_path / "p.jsonl").read_text())
    assert "token_start" not in example["spans"][0]
    assert report.notes[prodigy.CUT_TOKEN] == 1
    assert report.lost["relations whose argument is not an annotated entity"] == 1
    assert report.relations_written == 0


def test_cli_writes_prodigy_and_reads_it_with_from_prodigy(samples, tmp_path):
    out = tmp_path / "p.jsonl"
    runner = CliRunner()
    result = runner.invoke(
        app, ["convert", str(samples / "news.conll"), str(out), "--to", "prodigy"]
    )
    assert result.exit_code == 0, result.output
    back = tmp_path / "back.jsonl"
    result = runner.invoke(app, ["convert", str(out), str(back), "--from", "prodigy"])
    assert result.exit_code == 0, result.output
    assert [d.text for d in nerx.read(back)] == [d.text for d in nerx.read(samples / "news.conll")]
