"""Tables: Parquet (lists of structs), CSV and TSV (JSON cells), one row per document."""

from __future__ import annotations

import builtins
import importlib
import os

import pytest
from typer.testing import CliRunner

import nerx
from nerx.cli import app
from nerx.errors import ConfigError, FormatError
from nerx.io import detect_format, table


def needs(module: str):
    """Import an optional dependency; CI must provide it, so there a missing one fails."""
    if os.environ.get("CI") == "true":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def view(docs):
    return [
        (
            d.id,
            d.text,
            [(e.start, e.end, e.label, e.score) for e in d.entities],
            [(r.head, r.tail, r.label, r.score) for r in d.relations],
            d.meta,
        )
        for d in docs
    ]


def sample(samples):
    docs = list(nerx.read(samples / "news.jsonl"))
    for k, doc in enumerate(docs):
        doc.meta = {"source": f"wire-{k}", "rank": k}
        if doc.entities:
            doc.entities[0].score = 0.25 + k / 8
        if doc.relations:
            doc.relations[0].score = 0.5
    return docs


@pytest.mark.parametrize("name", ["t.parquet", "t.csv", "t.tsv"])
def test_round_trip_of_the_sample_corpus(samples, tmp_path, name):
    if name.endswith(".parquet"):
        needs("pyarrow")
    docs = sample(samples)
    fmt = {"parquet": "parquet", "csv": "csv", "tsv": "tsv"}[name.rsplit(".", 1)[1]]
    report = nerx.write(docs, tmp_path / name, fmt)
    assert detect_format(tmp_path / name) == fmt
    back = list(nerx.read(tmp_path / name))
    if fmt != "parquet":  # CSV and TSV cells are text
        for d in docs:
            d.meta = {k: str(v) for k, v in d.meta.items()}
    assert view(back) == view(docs)
    assert not report.lost


def test_parquet_holds_lists_of_structs_in_row_groups(samples, tmp_path):
    pq = needs("pyarrow.parquet")
    docs = sample(samples)
    nerx.write(docs, tmp_path / "t.parquet", row_group_size=2)
    file = pq.ParquetFile(tmp_path / "t.parquet")
    assert file.metadata.num_row_groups == 3  # 5 documents, 2 per group
    rows = file.read().to_pylist()
    assert [r["id"] for r in rows] == [d.id for d in docs]
    first = rows[0]["entities"][0]
    assert first["text"] == docs[0].text[first["start"] : first["end"]]
    assert set(rows[0]["relations"][0]) == {"head", "tail", "label", "score"}


def test_text_and_id_columns_and_other_columns_to_meta(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text(
        'review_id,stars,body\nr1,5,"Great, from Oslo."\nr2,1,"Bad\nin Bergen."\n', encoding="utf-8"
    )
    docs = list(nerx.read(path, text_column="body", id_column="review_id"))
    assert [(d.id, d.text, d.meta) for d in docs] == [
        ("r1", "Great, from Oslo.", {"stars": "5"}),
        ("r2", "Bad\nin Bergen.", {"stars": "1"}),
    ]
    no_ids = list(nerx.read(path, text_column="body"))
    assert [d.id for d in no_ids] == ["1", "2"]


def test_a_missing_text_column_lists_the_columns(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("review_id,body\nr1,Hi\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"no text column 'text' \(columns: review_id, body\)"):
        list(nerx.read(path))
    result = CliRunner().invoke(app, ["convert", str(path), str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2 and "--text-column" in result.output
    result = CliRunner().invoke(
        app, ["convert", str(path), str(tmp_path / "o.jsonl"), "--text-column", "body", "-q"]
    )
    assert result.exit_code == 0, result.output
    assert [d.text for d in nerx.read(tmp_path / "o.jsonl")] == ["Hi"]


def test_a_tsv_file_is_conll_or_a_table_by_its_content(tmp_path):
    (tmp_path / "tags.tsv").write_text("Ada\tB-PER\nmet\tO\n\n", encoding="utf-8")
    (tmp_path / "rows.tsv").write_text("id\ttext\nd1\tAda met Bob.\n", encoding="utf-8")
    assert detect_format(tmp_path / "tags.tsv") == "conll"
    assert detect_format(tmp_path / "rows.tsv") == "tsv"
    assert [(d.id, d.text) for d in nerx.read(tmp_path / "rows.tsv")] == [("d1", "Ada met Bob.")]


def test_a_malformed_entities_cell_names_the_row(tmp_path):
    path = tmp_path / "e.csv"
    path.write_text('text,entities\nAda,"[]"\nBob,"[{""start"": 0}]"\n', encoding="utf-8")
    with pytest.raises(FormatError, match=r"e.csv:3: the 'entities' column"):
        list(nerx.read(path))


def test_without_pyarrow_parquet_is_a_clear_error_naming_the_extra(samples, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(ConfigError, match=r"nerx\[parquet\]"):
        nerx.write(nerx.read(samples / "news.jsonl"), tmp_path / "o.parquet")
    result = CliRunner().invoke(
        app, ["convert", str(samples / "news.jsonl"), str(tmp_path / "o.parquet")]
    )
    assert result.exit_code == 2
    assert "pip install 'nerx[parquet]'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.parquet").exists()


def test_meta_of_a_type_that_changes_midway_names_the_documents(tmp_path):
    needs("pyarrow")
    docs = [nerx.Document(str(i), "x", meta={"n": i}) for i in range(3)]
    docs.append(nerx.Document("bad", "x", meta={"n": "three"}))
    with pytest.raises(FormatError, match="does not fit its column's type"):
        nerx.write(docs, tmp_path / "m.parquet", row_group_size=2)
    assert not (tmp_path / "m.parquet").exists()


def test_meta_fields_the_first_document_lacks_are_reported(tmp_path):
    docs = [nerx.Document("a", "x", meta={"k": 1}), nerx.Document("b", "y", meta={"k": 2, "z": 3})]
    report = nerx.write(docs, tmp_path / "m.csv")
    assert report.lost[table.LOST_COLUMNS] == 1


@pytest.fixture(scope="module")
def eager_model_dir(tiny_encoder, tmp_path_factory):
    """An untrained model biased against "no entity", so that it finds entities."""
    from nerx.models import ModelConfig, model_class, save_model

    config = ModelConfig(
        kind="spandec", labels=["LOC", "PER"], encoder=tiny_encoder, hyper={"outside_bias": 20.0}
    )
    model = model_class("spandec").create(config)
    return save_model(model, tmp_path_factory.mktemp("eager") / "m")


def test_nerx_extract_from_parquet_to_parquet_keeps_ids_and_columns(eager_model_dir, tmp_path):
    pq = needs("pyarrow.parquet")
    import pyarrow as pa

    rows = pa.table(
        {"review_id": ["r1", "r2"], "stars": [5, 1], "body": ["Ada met Bob.", "Oslo is cold."]}
    )
    pq.write_table(rows, tmp_path / "rows.parquet")
    result = CliRunner().invoke(
        app,
        ["extract", str(tmp_path / "rows.parquet"), "--model", str(eager_model_dir), "-q",
         "--text-column", "body", "--id-column", "review_id", "-o", str(tmp_path / "f.parquet")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = pq.read_table(tmp_path / "f.parquet").to_pylist()
    assert [(r["id"], r["text"], r["stars"]) for r in found] == [
        ("r1", "Ada met Bob.", 5),
        ("r2", "Oslo is cold.", 1),
    ]
    assert all(r["entities"] for r in found)
    for r in found:
        assert all(r["text"][e["start"] : e["end"]] == e["text"] for e in r["entities"])


def test_parquet_is_read_row_by_row_and_a_bad_cell_names_its_row(tmp_path):
    pq = needs("pyarrow.parquet")
    import pyarrow as pa

    cells = ["[]", "[]", '[{"start": 0, "end": 3, "label": "PER"}]', "[]", "not json"]
    rows = pa.table({"text": ["Ada met Bob."] * 5, "entities": cells})
    pq.write_table(rows, tmp_path / "r.parquet", row_group_size=2)
    docs = nerx.read(tmp_path / "r.parquet")
    first = [next(docs) for _ in range(3)]  # the bad fifth row is not reached yet
    assert [len(d.entities) for d in first] == [0, 0, 1]
    with pytest.raises(FormatError, match=r"r.parquet: row 5: the 'entities' column is not JSON"):
        list(docs)
