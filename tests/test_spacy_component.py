"""The ``nerx`` spaCy component: found through the entry point, the same entities as
``nerx extract``, batching that changes nothing, and a pipeline that survives ``to_disk``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import spacy
from spacy.pipeline import Sentencizer

from nerx.doc import Document
from nerx.errors import ConfigError, ModelError
from nerx.io import read
from nerx.models import load_model
from nerx.pipeline import extract
from nerx.spacy_ext import from_spacy, plain_document
from tests.conftest import SAMPLES

NEWS = SAMPLES / "news.jsonl"


def texts() -> list[str]:
    return [doc.text for doc in read(str(NEWS))]


def rows(doc) -> list[tuple[int, int, str]]:
    return [(s.start_char, s.end_char, s.label_) for s in doc.spans["nerx"]]


@pytest.fixture(scope="module")
def nlp(model_dir):
    pipeline = spacy.blank("en")
    pipeline.add_pipe("nerx", config={"model": str(model_dir), "device": "cpu"})
    return pipeline


def test_factory_is_found_without_importing_nerx(model_dir):
    script = (
        "import sys, spacy\n"
        "nlp = spacy.blank('en')\n"
        f"nlp.add_pipe('nerx', config={{'model': {str(model_dir)!r}, 'device': 'cpu'}})\n"
        "doc = nlp('Maria Keller works for Nordlicht Energy in Oslo.')\n"
        "print(len(doc.spans['nerx']), type(doc._.relations).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    found, relations_type = done.stdout.split()
    assert int(found) >= 0 and relations_type == "list"


def test_same_entities_as_nerx_extract(nlp, model_dir):
    model = load_model(model_dir)
    expected = [
        [(e.start, e.end, e.label) for e in doc.entities]
        for doc in extract((d for d in read(str(NEWS))), model)
    ]
    got = [rows(doc) for doc in nlp.pipe(texts())]
    assert got == expected
    assert sum(map(len, got)) > 0  # the trained tiny model finds entities in its own data


def test_doc_attributes(nlp):
    for doc in nlp.pipe(texts()):
        group = doc.spans["nerx"]
        scores = group.attrs["scores"]
        assert len(scores) == len(group) and all(0.0 <= s <= 1.0 for s in scores)
        ents = list(doc.ents)
        # doc.ents is a non-overlapping subset of everything found.
        assert {(e.start, e.end, e.label_) for e in ents} <= {
            (s.start, s.end, s.label_) for s in group
        }
        assert all(a.end <= b.start for a, b in zip(ents, ents[1:], strict=False))
        assert doc._.relations == []  # spandec predicts entities only


def test_batch_size_changes_nothing(nlp):
    one_by_one = [rows(nlp(text)) for text in texts()]
    batched = [rows(doc) for doc in nlp.pipe(texts(), batch_size=2)]
    assert batched == one_by_one


def test_sentences_from_an_earlier_component_are_used_and_docs_left_alone(model_dir):
    plain = spacy.blank("en")
    plain.add_pipe("nerx", config={"model": str(model_dir), "device": "cpu"})
    doc = plain("Maria Keller works for Nordlicht Energy. She lives in Oslo.")
    assert not doc.has_annotation("SENT_START")  # the component split a copy, not the doc

    sentenced = spacy.blank("en")
    sentenced.add_pipe("sentencizer")
    sentenced.add_pipe("nerx", config={"model": str(model_dir), "device": "cpu"})
    text = "Maria Keller works for Nordlicht Energy. She lives in Oslo."
    assert rows(sentenced(text)) == rows(plain(text))


def test_saved_pipeline_loads_without_the_original_model(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    nlp = spacy.blank("en")
    nlp.add_pipe("nerx", config={"model": str(copy), "device": "cpu"})
    before = [rows(doc) for doc in nlp.pipe(texts())]
    nlp.to_disk(tmp_path / "pipeline")
    shutil.rmtree(copy)
    again = spacy.load(tmp_path / "pipeline")
    assert [rows(doc) for doc in again.pipe(texts())] == before


def test_spacy_probing_the_component_loads_nothing(tmp_path):
    # Linking a pipeline, spaCy checks each component for attributes such as `model`; when it
    # loads a saved pipeline, that happens before from_disk says where the model lies.
    nlp = spacy.blank("en")
    component = nlp.add_pipe("nerx", config={"model": str(tmp_path / "missing")})
    for name in ("model", "listeners", "listener_map", "listening_components"):
        assert getattr(component, name, None) is None


def test_unknown_model_is_a_clear_error(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("nerx", config={"model": str(tmp_path / "missing"), "device": "cpu"})
    with pytest.raises(ModelError, match="missing"):
        nlp("Oslo.")


def test_default_component_runs_the_bundled_model_and_saves_it_compact(tmp_path):
    nlp_default = spacy.blank("en")
    nlp_default.add_pipe("nerx", config={"device": "cpu"})
    text = "Angela Brandt of Nordwind Energy spoke in Hamburg on Friday."
    doc = nlp_default(text)
    assert {(e.text, e.label_) for e in doc.ents} >= {("Angela Brandt", "PER"), ("Hamburg", "LOC")}

    nlp_default.to_disk(tmp_path / "pipeline")
    saved = sum(p.stat().st_size for p in (tmp_path / "pipeline").rglob("*") if p.is_file())
    assert saved < 20 * 1024 * 1024  # the compact weights, not the whole encoder (90 MB)
    again = spacy.load(tmp_path / "pipeline")(text)
    assert [(e.start_char, e.end_char, e.label_) for e in again.ents] == [
        (e.start_char, e.end_char, e.label_) for e in doc.ents
    ]


def recorded_batches(model, monkeypatch) -> list[tuple[int, ...]]:
    """Every batch ``model`` collates from now on, as the lengths of its windows."""
    seen: list[tuple[int, ...]] = []
    collate = model.collate

    def recording(examples):
        seen.append(tuple(len(example.input_ids) for example in examples))
        return collate(examples)

    monkeypatch.setattr(model, "collate", recording)
    return seen


def test_the_model_sees_the_batches_nerx_extract_builds(model_dir, monkeypatch):
    # Texts of very different lengths, two per nlp.pipe batch: sorted within each of those
    # batches, every forward pass would pad a short text to a long one.
    words = " ".join(texts()).split()
    varied = [" ".join(words[:n]) + "." for n in (3, 40, 5, 36, 2, 44, 7, 30, 4, 38)]
    nlp = spacy.blank("en")
    config = {"model": str(model_dir), "device": "cpu", "batch_size": 2}
    component = nlp.add_pipe("nerx", config=config)
    model = component.nerx_model
    seen = recorded_batches(model, monkeypatch)

    expected = [rows(doc) for doc in nlp.pipe(varied, batch_size=2)]
    through_spacy = list(seen)
    seen.clear()
    raw = (Document(str(i), text) for i, text in enumerate(varied))
    got = [
        [(e.start, e.end, e.label) for e in doc.entities]
        for doc in extract(raw, model, batch_size=2)
    ]

    assert through_spacy == seen
    assert len(seen) == len(varied) // 2 and all(len(batch) == 2 for batch in seen)
    assert [max(batch) for batch in seen] == sorted(max(batch) for batch in seen)
    assert got == expected


def test_sentences_are_the_sentencizers_without_touching_the_doc():
    nlp = spacy.blank("en")
    text = "Maria Keller works in Oslo.  She met Jon!\n\nThey left. Then"
    doc = nlp(text)
    flags = Sentencizer().predict([doc])[0]
    document = plain_document(doc, "1", sent_starts=flags)
    assert not doc.has_annotation("SENT_START")

    split = Sentencizer()(nlp(text))
    assert document.sentences == from_spacy(split, "1").sentences
    assert len(document.sentences) == 4
    assert document.tokens == from_spacy(split, "1").tokens
    assert (document.entities, document.relations, document.text) == ([], [], text)


@pytest.mark.parametrize("config", [{"batch_size": 0}, {"buffer_size": -1}])
def test_bad_batching_options_are_config_errors(config):
    with pytest.raises(ConfigError, match="batch_size"):
        spacy.blank("en").add_pipe("nerx", config=config)
