"""Case features: the word shape an uncased encoder cannot see, as a learned embedding added
to each word's subwords. On by default when the tokenizer lowercases, off with
``case_features=false``, kept by save and load, absent from models saved before it existed."""

from __future__ import annotations

import json

import pytest
import torch

from nerx.doc import Document, tokenize
from nerx.errors import ConfigError
from nerx.models import ModelConfig, load_model, model_class, save_model
from nerx.models.shapes import WORD_SHAPES, lowercases, word_shape

pytestmark = pytest.mark.usefixtures("one_thread")

WORD_KINDS = ["token", "spandec", "sf-spandec", "iter", "sener"]


@pytest.mark.parametrize(
    ("word", "shape"),
    [
        ("said", "lower"),
        ("Paris", "title"),
        ("I", "title"),
        ("IBM", "upper"),
        ("U.S.", "upper"),
        ("iPhone", "mixed"),
        ("McDonald", "mixed"),
        ("F16", "alnum"),
        ("1996", "digits"),
        ("3-1", "digits"),
        (",", "punct"),
        ("Éric", "title"),
    ],
)
def test_word_shape(word, shape):
    assert WORD_SHAPES[word_shape(word)] == shape


def test_lowercases_tells_an_uncased_tokenizer_from_a_cased_one(tiny_encoder):
    from transformers import AutoTokenizer

    uncased = AutoTokenizer.from_pretrained(tiny_encoder)
    cased = AutoTokenizer.from_pretrained(tiny_encoder, do_lower_case=False)
    assert lowercases(uncased)
    assert not lowercases(cased)


def new_model(kind: str, encoder: str, **hyper):
    config = ModelConfig(kind=kind, labels=["PER", "LOC"], encoder=encoder, hyper=dict(hyper))
    return model_class(kind).create(config).eval()


def doc(text: str) -> Document:
    return Document(id="d", text=text, tokens=tokenize(text))


@pytest.mark.parametrize("kind", WORD_KINDS)
def test_on_by_default_for_an_uncased_tokenizer(kind, tiny_encoder):
    model = new_model(kind, tiny_encoder)
    assert model.config.hyper["case_features"] is True  # the choice is saved, not re-derived
    assert model.case_embedding is not None
    assert not model.case_embedding.weight.any()  # starts as the plain encoder
    assert "case_embedding.weight" in model.head_parameter_names()
    batch = model.collate(model.prepare(doc("Anna lives in Paris .")))
    assert batch.input_shapes.shape == batch.input_ids.shape


@pytest.mark.parametrize("kind", ["token", "spandec"])
def test_off_with_the_setting(kind, tiny_encoder):
    model = new_model(kind, tiny_encoder, case_features=False)
    assert model.case_embedding is None
    assert "case_embedding.weight" not in dict(model.named_parameters())
    assert model.collate(model.prepare(doc("Anna lives in Paris ."))).input_shapes is None


def test_a_bad_value_is_a_config_error(tiny_encoder):
    with pytest.raises(ConfigError, match="case_features"):
        new_model("token", tiny_encoder, case_features="yes")


def encoded(model, text: str) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(model.collate(model.prepare(doc(text))))


@pytest.mark.parametrize("kind", WORD_KINDS)
def test_casing_reaches_the_encoder_only_with_case_features(kind, tiny_encoder):
    with_case = new_model(kind, tiny_encoder)
    with torch.no_grad():
        with_case.case_embedding.weight[1:].normal_()
    # The tokenizer folds case: the subwords are the same, the shapes are not.
    assert torch.equal(
        with_case.collate(with_case.prepare(doc("anna lives in paris ."))).input_ids,
        with_case.collate(with_case.prepare(doc("Anna lives in Paris ."))).input_ids,
    )
    assert not torch.allclose(
        encoded(with_case, "anna lives in paris ."), encoded(with_case, "Anna lives in Paris .")
    )
    without = new_model(kind, tiny_encoder, case_features=False)
    assert torch.allclose(
        encoded(without, "anna lives in paris ."), encoded(without, "Anna lives in Paris .")
    )


def test_save_and_load_keep_the_embedding(tiny_encoder, tmp_path):
    model = new_model("spandec", tiny_encoder)
    with torch.no_grad():
        model.case_embedding.weight[1:].normal_()
    loaded = load_model(save_model(model, tmp_path / "m"))
    assert loaded.config.hyper["case_features"] is True
    assert torch.equal(loaded.case_embedding.weight, model.case_embedding.weight)
    text = "Anna lives in Paris ."
    assert torch.allclose(encoded(loaded, text), encoded(model, text))


def test_a_model_saved_before_case_features_loads_without_them(tiny_encoder, tmp_path):
    model = new_model("token", tiny_encoder, case_features=False)
    root = save_model(model, tmp_path / "old")
    config = json.loads((root / "config.json").read_text())
    del config["hyper"]["case_features"]  # as an older nerx wrote it
    (root / "config.json").write_text(json.dumps(config))
    loaded = load_model(root)
    assert loaded.case_embedding is None and loaded.config.hyper["case_features"] is False
