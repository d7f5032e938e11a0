"""Label Studio tasks: pre-annotations written as predictions, exports read back for training."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import nerx
from nerx.cli import app
from nerx.doc import Document, Entity, Relation
from nerx.errors import FormatError
from nerx.io import detect_format, labelstudio, losses


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


def scored(docs):
    for k, doc in enumerate(docs):
        for i, e in enumerate(doc.entities):
            e.score = round(0.5 + 0.01 * (i + k), 3)
    return docs


def test_round_trip_of_the_sample_corpus_keeps_entities_scores_and_relations(samples, tmp_path):
    docs = scored(list(nerx.read(samples / "news.jsonl")))
    assert any(d.relations for d in docs)
    report = nerx.write(docs, tmp_path / "tasks.json", "labelstudio")
    assert detect_format(tmp_path / "tasks.json") == "labelstudio"
    back = list(nerx.read(tmp_path / "tasks.json"))
    assert view(back) == view(docs)
    assert report.documents_written == len(docs)
    assert not report.lost


def test_written_tasks_follow_the_documented_task_format(samples, tmp_path):
    docs = list(nerx.read(samples / "news.jsonl"))
    nerx.write(docs, tmp_path / "tasks.json", "labelstudio")
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    assert isinstance(tasks, list) and len(tasks) == len(docs)
    for task, doc in zip(tasks, docs, strict=True):
        assert task["data"]["text"] == doc.text
        (prediction,) = task["predictions"]
        spans = [r for r in prediction["result"] if r["type"] == "labels"]
        links = [r for r in prediction["result"] if r["type"] == "relation"]
        assert len(spans) == len(doc.entities) and len(links) == len(doc.relations)
        ids = [r["id"] for r in spans]
        assert len(set(ids)) == len(ids)
        for r in spans:
            assert (r["from_name"], r["to_name"]) == ("label", "text")
            value = r["value"]
            assert doc.text[value["start"] : value["end"]] == value["text"]
            assert len(value["labels"]) == 1
        for r in links:
            assert r["from_id"] in ids and r["to_id"] in ids
            assert r["direction"] == "right" and len(r["labels"]) == 1


def test_relation_scores_are_reported_as_not_kept(tmp_path):
    doc = Document(
        "d",
        "Ada met Bob.",
        entities=[Entity(0, 3, "PER"), Entity(8, 11, "PER")],
        relations=[Relation(0, 1, "Knows", 0.8)],
    )
    report = nerx.write([doc], tmp_path / "t.json", "labelstudio")
    assert report.lost[losses.LOST_RELATION_SCORES] == 1


def region(rid, start, end, text, label):
    return {
        "id": rid,
        "from_name": "label",
        "to_name": "text",
        "type": "labels",
        "value": {"start": start, "end": end, "text": text, "labels": [label]},
    }


TEXT = "Ada Lovelace met Charles Babbage in London."


def export():
    ada, bab, lon = (0, 12, "Ada Lovelace"), (17, 32, "Charles Babbage"), (36, 42, "London")
    old = {
        "id": 1,
        "completed_by": 7,
        "updated_at": "2024-01-01T10:00:00Z",
        "result": [region("a", *ada, "ORG")],
    }
    new = {
        "id": 2,
        "completed_by": {"id": 9, "email": "b@example.org"},
        "updated_at": "2024-03-01T10:00:00Z",
        "result": [
            region("a", *ada, "PER"),
            region("b", *bab, "PER"),
            region("c", *lon, "LOC"),
            {
                "from_id": "c",
                "to_id": "b",
                "type": "relation",
                "direction": "left",
                "labels": ["Lives_In"],
            },
            {
                "id": "x",
                "from_name": "mood",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": ["fine"]},
            },
        ],
    }
    cancelled = {
        "id": 3,
        "completed_by": 9,
        "was_cancelled": True,
        "updated_at": "2025-01-01T00:00:00Z",
        "result": [],
    }
    return [
        {
            "id": 41,
            "data": {"text": TEXT, "source": "letters"},
            "annotations": [old, new, cancelled],
            "predictions": [{"result": [region("p", 0, 3, "Ada", "MISC")]}],
        },
        {"id": 42, "data": {"text": "Nobody looked at this."}, "annotations": []},
    ]


def write_export(tmp_path):
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export()), encoding="utf-8")
    return path


def test_an_export_reads_the_latest_annotation_of_each_task(tmp_path):
    report = nerx.Report()
    (doc,) = nerx.read(write_export(tmp_path), report=report)
    assert doc.id == "41" and doc.text == TEXT and doc.meta == {"source": "letters"}
    assert [(e.start, e.end, e.label) for e in doc.entities] == [
        (0, 12, "PER"),
        (17, 32, "PER"),
        (36, 42, "LOC"),
    ]
    # direction "left": the arrow points from the second region to the first
    assert [(r.head, r.tail, r.label) for r in doc.relations] == [(1, 2, "Lives_In")]
    assert report.lost[labelstudio.SKIPPED] == 1
    assert report.lost[labelstudio.NOT_SPAN] == 1


@pytest.mark.parametrize("annotator", ["7", 7])
def test_annotator_picks_that_persons_annotation(tmp_path, annotator):
    (doc,) = nerx.read(write_export(tmp_path), annotator=annotator)
    assert [(e.label, e.start) for e in doc.entities] == [("ORG", 0)]


def test_annotator_matches_an_email_and_the_cli_passes_it(tmp_path):
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(
        app, ["convert", str(write_export(tmp_path)), str(out), "--annotator", "b@example.org"]
    )
    assert result.exit_code == 0, result.output
    (doc,) = nerx.read(out)
    assert [e.label for e in doc.entities] == ["PER", "PER", "LOC"]


def test_a_file_of_pre_annotations_only_is_read_from_its_predictions(tmp_path):
    tasks = [
        {
            "data": {"text": TEXT},
            "predictions": [{"result": [region("p", 0, 12, "Ada Lovelace", "PER")]}],
        }
    ]
    path = tmp_path / "pre.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    report = nerx.Report()
    (doc,) = nerx.read(path, report=report)
    assert [(e.start, e.end, e.label) for e in doc.entities] == [(0, 12, "PER")]
    assert report.notes[labelstudio.FROM_PREDICTIONS] == 1


def test_utf16_offsets_of_older_releases_are_converted(tmp_path):
    text = "\U0001f600 Ada met Bob"
    # JavaScript counts the emoji as two units: "Ada" is at [3, 6) there, [2, 5) in Python.
    tasks = [
        {"data": {"text": text}, "annotations": [{"result": [region("a", 3, 6, "Ada", "PER")]}]}
    ]
    path = tmp_path / "emoji.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    (doc,) = nerx.read(path, "labelstudio")
    assert doc.entity_text(doc.entities[0]) == "Ada"


def test_text_column_names_the_data_field(tmp_path):
    tasks = [
        {
            "data": {"body": "Ada met Bob", "title": "x"},
            "annotations": [{"result": [region("a", 0, 3, "Ada", "PER")]}],
        }
    ]
    path = tmp_path / "body.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    (doc,) = nerx.read(path, "labelstudio", text_column="body")
    assert doc.text == "Ada met Bob" and doc.meta == {"title": "x"}


def test_a_task_without_text_names_the_task(tmp_path):
    tasks = [{"data": {"a": "one", "b": "two"}, "annotations": [{"result": []}]}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(tasks), encoding="utf-8")
    with pytest.raises(FormatError, match="array element 1.*no 'text'"):
        list(nerx.read(path, "labelstudio"))
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert "--text-column" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.jsonl").exists()


def test_a_task_with_a_long_text_is_still_detected(tmp_path):
    text = "Ada met Bob. " * 2000  # 26 kB, beyond the first block read for detection
    doc = Document("long", text, entities=[Entity(0, 3, "PER")])
    nerx.write([doc], tmp_path / "long.json", "labelstudio")
    assert detect_format(tmp_path / "long.json") == "labelstudio"
    export = [{"id": 1, "annotations": [{"result": [region("a", 0, 3, "Ada", "PER")]}],
               "data": {"text": text}}]  # fmt: skip
    (tmp_path / "export.json").write_text(json.dumps(export), encoding="utf-8")
    assert detect_format(tmp_path / "export.json") == "labelstudio"


NER_CONFIG = """<View>
  <Relations>{relations}</Relations>
  <Labels name="label" toName="text">{labels}</Labels>
  <Text name="text" value="$text"/>
</View>"""


def test_written_predictions_pass_the_label_studio_sdk_validation(samples, tmp_path):
    # The SDK pulls in some thirty packages (OpenCV, NLTK) and pins numpy, so CI does not
    # install it; where it is installed, it checks the tasks against a labeling config.
    sdk = pytest.importorskip("label_studio_sdk.label_interface")
    docs = scored(list(nerx.read(samples / "news.jsonl")))
    nerx.write(docs, tmp_path / "tasks.json", "labelstudio")
    labels = sorted({e.label for d in docs for e in d.entities})
    relations = sorted({r.label for d in docs for r in d.relations})
    interface = sdk.LabelInterface(
        NER_CONFIG.format(
            labels="".join(f'<Label value="{x}"/>' for x in labels),
            relations="".join(f'<Relation value="{x}"/>' for x in relations),
        )
    )
    tasks = json.loads((tmp_path / "tasks.json").read_text(encoding="utf-8"))
    for task in tasks:
        (prediction,) = task["predictions"]
        assert interface.validate_prediction(prediction, return_errors=True) == []
    # The check can fail: a label outside the config is refused.
    wrong = json.loads(json.dumps(tasks[0]["predictions"][0]))
    wrong["result"][0]["value"]["labels"] = ["NOT_A_LABEL"]
    assert interface.validate_prediction(wrong, return_errors=True) != []


def test_the_json_min_export_reads_too(tmp_path):
    records = [
        {"text": TEXT, "id": 5, "source": "letters",
         "label": [{"start": 0, "end": 12, "text": "Ada Lovelace", "labels": ["PER"]},
                   {"start": 36, "end": 42, "text": "London", "labels": ["LOC"]}],
         "annotator": 2, "annotation_id": 11, "created_at": "2024-01-01T00:00:00Z",
         "updated_at": "2024-01-01T00:00:00Z", "lead_time": 3.5},
    ]  # fmt: skip
    path = tmp_path / "min.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    assert detect_format(path) == "labelstudio"
    (doc,) = nerx.read(path)
    assert (doc.id, doc.text, doc.meta) == ("5", TEXT, {"source": "letters"})
    assert [(e.start, e.end, e.label) for e in doc.entities] == [(0, 12, "PER"), (36, 42, "LOC")]


def test_words_data_and_predictions_in_a_text_are_not_label_studio_keys():
    from nerx.io import labelstudio

    dygie = '{"doc_key": "x", "sentences": [["the", "data", ",", "predictions", "[", "and"]]}'
    assert not labelstudio.sniff(dygie)
    assert not labelstudio.sniff('{"tokens": ["data", ":", "{", "predictions", ":", "["]}')
    assert labelstudio.sniff('[{"id": 1, "data": {"text": "a"}, "annotations": []}]')
