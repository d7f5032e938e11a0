"""The inference contract every kind keeps: ``forward`` returns tensors (and a loss with
gold), ``predict`` decodes them; entities another model found reach a kind through the
pipeline; a model describes its own counters."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from nerx.doc import TextPreparer
from nerx.errors import ModelError
from nerx.io import read
from nerx.models import MODELS, ModelConfig, SpanModel, model_class
from nerx.models.base import SpanPrediction, Statistic
from nerx.pipeline import ExtractionStats, predict_documents, window_entities

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
#: padellm generates on a causal LM (tests/test_padellm.py); the others run on the encoder.
ENCODER_KINDS = sorted(set(MODELS) - {"padellm"})

pytestmark = pytest.mark.usefixtures("one_thread")


def sample_docs():
    docs = list(read(SAMPLES / "news.jsonl"))[:3]
    TextPreparer()(docs)
    return docs


def fresh(kind: str, encoder: str, **hyper) -> SpanModel:
    docs = sample_docs()
    labels = sorted({e.label for d in docs for e in d.entities})
    relations = sorted({r.label for d in docs for r in d.relations})
    config = ModelConfig(
        kind=kind, labels=labels, relation_labels=relations, encoder=encoder, hyper=hyper
    )
    torch.manual_seed(0)
    return model_class(kind).create(config).eval()


def unlabelled_batch(model: SpanModel):
    examples = [ex for i, doc in enumerate(sample_docs()) for ex in model.prepare(doc, i)]
    return examples, model.collate(examples)


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_forward_at_inference_returns_tensors_and_predict_decodes_them(kind, tiny_encoder):
    model = fresh(kind, tiny_encoder)
    examples, batch = unlabelled_batch(model)
    with torch.inference_mode():
        output = model(batch)
        predictions = model.predict(batch)
    assert output.loss is None
    assert output.tensors
    not_tensors = {k: type(v).__name__ for k, v in output.tensors.items() if not torch.is_tensor(v)}
    assert not_tensors == {}
    assert len(predictions) == len(examples)
    for ex, prediction in zip(examples, predictions, strict=True):
        assert all(0 <= s.start < s.end <= ex.n_words for s in prediction.spans)
        assert all(max(h, t) < len(prediction.spans) for h, t, _, _ in prediction.relations)


@pytest.mark.parametrize("kind", ["token", "spandec", "sf-spandec", "sener"])
def test_predict_is_decode_of_forward_for_single_step_kinds(kind, tiny_encoder):
    model = fresh(kind, tiny_encoder)
    _, batch = unlabelled_batch(model)
    with torch.inference_mode():
        by_hand = model.decode(model(batch), batch)
        counters: Counter[str] = Counter()
        predicted = model.predict(batch, stats=counters)
    assert predicted == by_hand
    assert counters == Counter(model(batch).stats)


def test_plmarker_takes_the_entities_given_with_its_examples(tiny_encoder):
    model = fresh("plmarker", tiny_encoder)
    examples, _ = unlabelled_batch(model)
    gold = [ex for i, doc in enumerate(sample_docs()) for ex in model.prepare(doc, i, gold=True)]
    for ex, labelled in zip(examples, gold, strict=True):
        ex.given_spans = [
            SpanPrediction(s, e, model.config.labels[k - 1], 0.9) for s, e, k in labelled.gold_spans
        ]
    batch = model.collate(examples)
    assert batch.ner_chunks is None  # no NER step to run: the entities are given
    with torch.inference_mode():
        predictions = model.predict(batch)
    assert [[(s.start, s.end, s.label) for s in p.spans] for p in predictions] == [
        sorted((s, e, model.config.labels[k - 1]) for s, e, k in ex.gold_spans) for ex in gold
    ]


def test_plmarker_with_ner_model_outside_the_pipeline_is_a_clear_error(tiny_encoder):
    model = fresh("plmarker", tiny_encoder, ner_model="elsewhere")
    assert model.entity_source() == "elsewhere"
    examples = model.prepare(sample_docs()[0])
    with pytest.raises(ModelError, match="pipeline"):
        model.collate(examples)


def test_window_entities_are_the_documents_entities_in_window_words(tiny_encoder):
    model = fresh("spandec", tiny_encoder, nested=True)
    for i, doc in enumerate(sample_docs()):
        for ex in model.prepare(doc, i, gold=True):
            got = [(s.start, s.end, s.label) for s in window_entities(doc, ex)]
            labels = model.config.labels
            assert got == sorted((s, e, labels[k - 1]) for s, e, k in ex.gold_spans)
            assert got  # the sample documents have entities in every window


def test_a_model_describes_its_counters():
    kept = Statistic("kept", "kept {fraction:.1%} of {total:.0f}", of="seen")
    count = Statistic("lost", "{value:.0f} lost")
    assert kept.describe({"kept": 3, "seen": 12}) == "kept 25.0% of 12"
    assert kept.describe({"kept": 0, "seen": 0}) is None
    assert count.describe({"lost": 2}) == "2 lost"
    assert count.describe({}) is None
    stats = ExtractionStats(model=Counter(kept=1, seen=4, lost=0), statistics=(kept, count))
    assert stats.model_summary() == ["kept 25.0% of 4"]
    total = ExtractionStats()
    total.add(stats)
    assert total.model_summary() == ["kept 25.0% of 4"]


def test_the_pipeline_reports_the_statistics_of_the_model_that_ran(tiny_encoder):
    model = fresh("sf-spandec", tiny_encoder)
    stats = ExtractionStats()
    predict_documents(model, sample_docs(), stats=stats)
    assert stats.statistics == type(model).statistics
    (line,) = stats.model_summary()
    assert line.startswith("token filter kept ")
    assert f"of {stats.model['spans']:.0f} candidate spans" in line
