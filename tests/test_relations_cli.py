"""Predicted relations through the whole tool: ``nerx extract`` with a relation model writes
the same relations to JSONL, BRAT and DocBin, they read back, and spaCy sees them."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from nerx.cli import app
from nerx.io import read
from nerx.training import train
from tests.conftest import SAMPLES, overfit_settings

NEWS = SAMPLES / "news.jsonl"


@pytest.fixture(scope="module")
def relation_model(tiny_encoder, tmp_path_factory):
    """An ITER model that has overfit two sample documents, relations included."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    docs = {doc.id: doc for doc in read(NEWS)}
    docs = [docs["news-001"], docs["news-002"]]
    out = tmp_path_factory.mktemp("relation-model")
    settings = overfit_settings()
    train(docs, docs, kind="iter", encoder=tiny_encoder, output=out, settings=settings)
    torch.set_num_threads(before)
    return out


def said(doc) -> set[tuple[str, str, str]]:
    """Relations as (head text, label, tail text)."""
    text = lambda i: doc.text[doc.entities[i].start : doc.entities[i].end]  # noqa: E731
    return {(text(r.head), r.label, text(r.tail)) for r in doc.relations}


def extract_to(model, tmp_path, target: str, *options: str):
    out = tmp_path / target
    result = CliRunner().invoke(
        app, ["extract", str(NEWS), "--model", str(model), "-o", str(out), *options]
    )
    assert result.exit_code == 0, result.output
    return out, result


def test_relations_survive_brat_and_docbin(relation_model, tmp_path):
    jsonl, result = extract_to(relation_model, tmp_path, "pred.jsonl")
    reference = {doc.id: said(doc) for doc in read(jsonl)}
    assert reference["news-001"] >= {("Maria Lindqvist", "Work_For", "University of Oslo")}
    assert "relations" in result.stderr  # the summary counts them

    brat, _ = extract_to(relation_model, tmp_path, "brat", "--to", "brat")
    assert {doc.id: said(doc) for doc in read(brat, "brat")} == reference

    docbin, _ = extract_to(relation_model, tmp_path, "pred.spacy")
    assert {doc.id: said(doc) for doc in read(docbin)} == reference


def test_spacy_sees_the_predicted_relations(relation_model, tmp_path):
    import spacy
    from spacy.tokens import DocBin

    docbin, _ = extract_to(relation_model, tmp_path, "pred.spacy")
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(docbin).get_docs(nlp.vocab))
    first = docs[0]
    spans = first.spans["nerx"]
    found = {(spans[r["head"]].text, r["label"], spans[r["tail"]].text) for r in first._.relations}
    assert ("Maria Lindqvist", "Work_For", "University of Oslo") in found
