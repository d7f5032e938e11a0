"""Extraction over data frames: a column of texts in, columns of entities and relations out.

>>> found = nerx.extract_frame(df, "news-ner", text_column="body")
>>> found[["body", "entities"]].head()

Each cell of ``entities`` is a list of ``{start, end, label, score, text}`` (character
offsets into the row's text, end exclusive); each cell of ``relations`` a list of
``{head, tail, label, score}`` whose head and tail index that row's entities. The rows run
through the same batched pipeline as ``nerx extract``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from nerx.defaults import DEFAULT_MODEL
from nerx.doc import Document
from nerx.errors import ConfigError, FormatError

__all__ = ["extract_frame", "predict_texts", "resolve_model"]


def resolve_model(model: Any, device: str = "auto"):
    """A loaded model as is; a bundled name or model directory loaded on ``device``."""
    if isinstance(model, str | os.PathLike):
        from nerx.loading import load
        from nerx.runtime import resolve_device

        return load(model, device=resolve_device(device))
    return model


def predict_texts(
    model,
    texts: Sequence[Any],
    *,
    ids: Sequence[Any] | None = None,
    batch_size: int = 32,
    threshold: float = 0.0,
    lang: str = "en",
    column: str = "text",
) -> list[Document]:
    """Predictions for ``texts`` in order, one Document each; a cell that is not text (a
    missing value) is an error naming its row."""
    from nerx.pipeline import extract

    docs = []
    for row, value in enumerate(texts):
        if not isinstance(value, str):
            raise FormatError(
                f"the {column!r} column holds {type(value).__name__} ({value!r}), not text",
                where=f"row {row}",
                hint="drop or fill missing texts first, e.g. df.dropna(subset=[column])",
            )
        doc_id = str(ids[row]) if ids is not None else str(row)
        docs.append(Document(doc_id, value))
    return list(extract(docs, model, batch_size=batch_size, threshold=threshold, lang=lang))


def extract_frame(
    df,
    model: Any = DEFAULT_MODEL,
    *,
    text_column: str = "text",
    entities_column: str = "entities",
    relations_column: str | None = "relations",
    batch_size: int = 32,
    threshold: float = 0.0,
    lang: str = "en",
    device: str = "auto",
):
    """A copy of the pandas frame ``df`` with an entities column (and a relations column when
    the model predicts relations; ``relations_column=None`` leaves it out).

    ``model`` is a loaded model, a bundled model name or a model directory.
    """
    from nerx.io.table import annotation_columns

    if text_column not in df.columns:
        raise ConfigError(
            f"the frame has no column {text_column!r} (columns: {', '.join(map(str, df.columns))})",
            hint="name the column that holds the text with text_column=",
        )
    model = resolve_model(model, device)
    found = predict_texts(
        model,
        df[text_column].tolist(),
        ids=[str(i) for i in df.index],
        batch_size=batch_size,
        threshold=threshold,
        lang=lang,
        column=text_column,
    )
    cells = [annotation_columns(doc) for doc in found]
    out = df.copy()
    out[entities_column] = [c["entities"] for c in cells]
    if relations_column is not None and model.config.relation_labels:
        out[relations_column] = [c["relations"] for c in cells]
    return out
