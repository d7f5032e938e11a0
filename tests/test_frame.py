"""Data frames and Ray Data: the same predictions as nerx.extract, as columns."""

from __future__ import annotations

import importlib
import os

import pytest

import nerx
from nerx.doc import Document
from nerx.errors import ConfigError, FormatError
from nerx.models import ModelConfig, model_class, save_model

TEXTS = [
    "Maria Lindqvist works at the University of Oslo.",
    "Harbor Freight Lines moved from Rotterdam to Hamburg.",
    "Ana Ruiz grew up in Seville.",
]


def needs(module: str):
    """Import an optional dependency; CI must provide it, so there a missing one fails."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


@pytest.fixture(scope="module")
def relation_model(tiny_encoder):
    config = ModelConfig(
        kind="iter",
        labels=["LOC", "ORG", "PER"],
        relation_labels=["Located_In", "Work_For"],
        encoder=tiny_encoder,
        hyper={"dropout": 0.0},
    )
    return model_class("iter").create(config).eval()


@pytest.fixture(scope="module")
def eager_model(tiny_encoder):
    """Untrained, but biased against "no entity", so that it finds entities to compare."""
    config = ModelConfig(
        kind="spandec", labels=["LOC", "PER"], encoder=tiny_encoder, hyper={"outside_bias": 20.0}
    )
    return model_class("spandec").create(config).eval()


def expected(model, texts):
    docs = [Document(str(i), t) for i, t in enumerate(texts)]
    return list(nerx.extract(docs, model))


def cells(doc):
    entities = [
        {
            "start": e.start,
            "end": e.end,
            "label": e.label,
            "score": e.score,
            "text": doc.text[e.start : e.end],
        }
        for e in doc.entities
    ]
    relations = [
        {"head": r.head, "tail": r.tail, "label": r.label, "score": r.score} for r in doc.relations
    ]
    return entities, relations


def test_extract_frame_adds_the_pipelines_predictions_row_by_row(eager_model):
    pd = needs("pandas")
    # A shuffled index and an extra column: rows must stay with their own predictions.
    df = pd.DataFrame({"body": TEXTS, "n": [1, 2, 3]}, index=[30, 10, 20])
    out = nerx.extract_frame(df, eager_model, text_column="body", batch_size=2)
    # No relation labels, so no relations column.
    assert list(out.columns) == ["body", "n", "entities"]
    assert list(out.index) == [30, 10, 20] and "entities" not in df.columns
    want = [cells(doc)[0] for doc in expected(eager_model, TEXTS)]
    assert list(out["entities"]) == want
    assert all(want) and len({len(w) for w in want}) > 1


def test_extract_frame_adds_relations_when_the_model_predicts_them(relation_model):
    pd = needs("pandas")
    out = nerx.extract_frame(pd.DataFrame({"text": TEXTS}), relation_model)
    assert list(out.columns) == ["text", "entities", "relations"]
    want = [cells(doc) for doc in expected(relation_model, TEXTS)]
    assert [[e, r] for e, r in zip(out["entities"], out["relations"], strict=True)] == [
        list(w) for w in want
    ]


def test_extract_frame_names_a_missing_column_and_a_missing_text(relation_model):
    pd = needs("pandas")
    with pytest.raises(ConfigError, match=r"no column 'text' \(columns: body\)"):
        nerx.extract_frame(pd.DataFrame({"body": TEXTS}), relation_model)
    with pytest.raises(FormatError, match="row 1"):
        nerx.extract_frame(pd.DataFrame({"text": ["Ada.", None]}), relation_model)


def test_ray_extractor_on_pandas_and_arrow_batches_without_a_cluster(eager_model, tmp_path):
    pa = needs("pyarrow")
    pd = needs("pandas")
    from nerx.integrations.ray import Extractor

    model_dir = save_model(eager_model, tmp_path / "m")
    extractor = Extractor(str(model_dir), device="cpu")
    want = [cells(doc) for doc in expected(eager_model, TEXTS)]
    table = extractor(pa.table({"text": TEXTS, "k": ["a", "b", "c"]}))
    assert table.column_names == ["text", "k", "entities"]
    assert table.column("entities").to_pylist() == [w[0] for w in want]
    assert all(w[0] for w in want)
    frame = extractor(pd.DataFrame({"text": TEXTS}))
    assert list(frame["entities"]) == [w[0] for w in want]
    numpy_batch = extractor({"text": __import__("numpy").array(TEXTS, dtype=object)})
    assert numpy_batch.column("entities").to_pylist() == [w[0] for w in want]


@pytest.mark.slow
def test_ray_data_map_batches_on_a_local_two_cpu_ray(eager_model, tmp_path):
    ray = needs("ray")
    needs("pyarrow")
    from nerx.integrations.ray import Extractor

    model_dir = save_model(eager_model, tmp_path / "m")
    want = [cells(doc) for doc in expected(eager_model, TEXTS)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ds = ray.data.from_items([{"text": t, "row": i} for i, t in enumerate(TEXTS)])
        ds = ds.map_batches(
            Extractor,
            fn_constructor_kwargs={"model": str(model_dir), "device": "cpu"},
            batch_size=2,
            concurrency=1,
            batch_format="pyarrow",
        )
        ds.write_parquet(str(tmp_path / "found"))
        rows = sorted(
            ray.data.read_parquet(str(tmp_path / "found")).take_all(), key=lambda r: r["row"]
        )
    finally:
        ray.shutdown()
    assert [r["text"] for r in rows] == TEXTS
    assert [list(r["entities"]) for r in rows] == [w[0] for w in want]
