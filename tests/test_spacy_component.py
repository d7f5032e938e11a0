"""The ``nerx`` spaCy component: found through the entry point, the same entities as
``nerx extract``, batching that changes nothing, and a pipeline that survives ``to_disk``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import spacy

from nerx.errors import ModelError
from nerx.io import read
from nerx.models import load_model
from nerx.pipeline import extract
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
