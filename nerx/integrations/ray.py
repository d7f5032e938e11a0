"""Ray Data: a callable class for ``Dataset.map_batches``, so a cluster runs nerx.

    import ray
    from nerx.integrations.ray import Extractor

    ds = ray.data.read_parquet("s3://bucket/docs/")
    ds = ds.map_batches(
        Extractor,
        fn_constructor_kwargs={"model": "news-ner", "text_column": "text"},
        batch_size=256,
        concurrency=4,      # actors; each loads the model once
        num_gpus=1,         # per actor; the model then runs on the GPU Ray gives it
        batch_format="pyarrow",
    )
    ds.write_parquet("s3://bucket/found/")

The batch comes back with every column it had and an ``entities`` column (and ``relations``
when the model predicts them) as lists of structs, as :func:`nerx.extract_frame` gives.
Batches may be pyarrow tables, pandas frames or dicts of numpy arrays. nerx schedules
nothing here: Ray places the actors, nerx only runs the model inside each.
"""

from __future__ import annotations

from typing import Any

from nerx.defaults import DEFAULT_MODEL
from nerx.errors import ConfigError

__all__ = ["Extractor"]


class Extractor:
    """Run a nerx model over the text column of each batch; the model loads once per actor.

    ``device="auto"`` takes the GPU that Ray assigns when ``num_gpus`` is set, else the CPU.
    """

    def __init__(
        self,
        model: Any = DEFAULT_MODEL,
        *,
        text_column: str = "text",
        entities_column: str = "entities",
        relations_column: str | None = "relations",
        batch_size: int = 32,
        threshold: float = 0.0,
        lang: str = "en",
        device: str = "auto",
    ) -> None:
        from nerx.frame import resolve_model

        self.model = resolve_model(model, device)
        self.text_column = text_column
        self.entities_column = entities_column
        self.relations_column = relations_column if self.model.config.relation_labels else None
        self.options = {"batch_size": batch_size, "threshold": threshold, "lang": lang}

    def __call__(self, batch: Any) -> Any:
        if hasattr(batch, "schema") and hasattr(batch, "append_column"):
            return self._arrow(batch)
        if hasattr(batch, "columns") and hasattr(batch, "copy"):
            from nerx.frame import extract_frame

            return extract_frame(
                batch,
                self.model,
                text_column=self.text_column,
                entities_column=self.entities_column,
                relations_column=self.relations_column,
                **self.options,
            )
        if isinstance(batch, dict):
            import pyarrow as pa

            return self._arrow(pa.table({k: list(v) for k, v in batch.items()}))
        raise ConfigError(
            f"cannot read a batch of type {type(batch).__name__}",
            hint='use batch_format="pyarrow", "pandas" or "numpy" in map_batches',
        )

    def _arrow(self, table):
        import pyarrow as pa

        from nerx.frame import predict_texts
        from nerx.io.table import annotation_columns, arrow_annotation_types

        if self.text_column not in table.column_names:
            raise ConfigError(
                f"the batch has no column {self.text_column!r} "
                f"(columns: {', '.join(table.column_names)})",
                hint="name the column that holds the text with text_column=",
            )
        texts = table.column(self.text_column).to_pylist()
        found = predict_texts(self.model, texts, column=self.text_column, **self.options)
        cells = [annotation_columns(doc) for doc in found]
        entities, relations = arrow_annotation_types(pa)
        table = table.append_column(
            self.entities_column, pa.array([c["entities"] for c in cells], type=entities)
        )
        if self.relations_column is not None:
            table = table.append_column(
                self.relations_column, pa.array([c["relations"] for c in cells], type=relations)
            )
        return table
