"""The torch modules that ``nerx export`` traces: one set per exportable kind.

Each wraps a loaded :class:`~nerx.models.base.SpanModel` from the outside. Its ``forward``
takes the batch tensors the kind's ``collate`` builds and returns the tensors its ``decode``
reads, so the exported graph holds the encoder and the heads, and decoding (spans to
entities) stays in Python, shared with the PyTorch path. Shapes that depend on the data are
kept out of Python ints, so one graph serves every batch and sequence length.

A kind's :class:`Export` says which graphs it has (most have one, ``model``), what each takes
and returns, and :meth:`Export.infer` runs them in the order the kind's forward pass does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from nerx.models.base import Batch, ModelConfig, Output, SpanModel, gather_words

#: Runs one exported graph: (graph name, {input name: tensor}) -> {output name: tensor}.
Runner = Callable[[str, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


class Export:
    """How one kind is exported and run. Subclasses list their graphs' inputs and outputs
    (with the axes that vary) and build the modules to trace."""

    #: graph name -> (input names, output names).
    graphs: ClassVar[dict[str, tuple[tuple[str, ...], tuple[str, ...]]]]
    #: Which axes of each tensor vary from batch to batch.
    axes: ClassVar[dict[str, dict[int, str]]]

    @classmethod
    def signature(cls, model_config: ModelConfig) -> dict[str, tuple[tuple[str, ...], ...]]:
        """The graphs this model has (a kind may drop one its config does not need)."""
        return with_shapes(dict(cls.graphs), model_config)

    @classmethod
    def settings(cls, config: ModelConfig) -> dict[str, torch.Tensor]:
        """Scalar inputs read from the config at run time (thresholds), so a changed
        ``config.json`` takes effect as it does on the PyTorch path."""
        return {}

    @classmethod
    def modules(cls, model: SpanModel) -> dict[str, nn.Module]:
        raise NotImplementedError

    @classmethod
    def attach(cls, model: SpanModel) -> None:
        """Set what the kind's ``collate`` and ``decode`` read beyond the shared base (the
        ONNX model is built without the kind's own ``__init__``)."""

    @classmethod
    def trace_inputs(cls, model: SpanModel, batch: Batch) -> dict[str, dict]:
        """Example inputs of each graph for the tracer, from a collated batch."""
        inputs = {**batch.inputs(), **cls.settings(model.config)}
        return {name: inputs for name in cls.signature(model.config)}

    @classmethod
    def infer(cls, config: ModelConfig, run: Runner, batch: Batch) -> Output:
        """The kind's inference forward pass on the exported graphs."""
        outputs = run("model", {**batch.inputs(), **cls.settings(config)})
        return Output(tensors=cls.output_tensors(outputs, batch), stats=cls.stats(outputs, batch))

    @classmethod
    def output_tensors(cls, outputs: dict[str, Any], batch: Batch) -> dict[str, Any]:
        return dict(outputs)

    @classmethod
    def stats(cls, outputs: dict[str, Any], batch: Batch) -> dict[str, float]:
        return {}


def with_shapes(graphs: dict, config: ModelConfig) -> dict:
    """With case features on, the graphs that run the encoder take each subword's word shape
    (``input_shapes``) as their last input."""
    if not config.hyper.get("case_features"):
        return graphs
    return {
        name: ((*inputs, "input_shapes"), outputs) if "input_ids" in inputs else (inputs, outputs)
        for name, (inputs, outputs) in graphs.items()
    }


def encoder_batch(input_ids, attention_mask, input_shapes=None) -> Batch:
    """What :meth:`SpanModel.encode` reads, from a graph's inputs."""
    return Batch(input_ids=input_ids, attention_mask=attention_mask, input_shapes=input_shapes)


ENCODER_AXES = {
    "input_ids": {0: "batch", 1: "subwords"},
    "attention_mask": {0: "batch", 1: "subwords"},
    "input_shapes": {0: "batch", 1: "subwords"},
    "word_starts": {0: "batch", 1: "words"},
}


# ---------------------------------------------------------------------- token
class TokenGraph(nn.Module):
    """(input_ids, attention_mask, word_starts) -> logits (batch, words, tags)."""

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, word_starts, input_shapes=None):
        batch = encoder_batch(input_ids, attention_mask, input_shapes)
        words = gather_words(self.model.encode(batch), word_starts)  # (batch, words, hidden)
        return self.model.classifier(words)


class TokenExport(Export):
    graphs = {"model": (("input_ids", "attention_mask", "word_starts"), ("logits",))}
    axes = {**ENCODER_AXES, "logits": {0: "batch", 1: "words"}}

    @classmethod
    def modules(cls, model):
        return {"model": TokenGraph(model)}


# ---------------------------------------------------------------------- spandec
class SpanDecGraph(nn.Module):
    """(input_ids, attention_mask, word_starts, spans, span_mask[, filter_threshold]) ->
    logits (batch, spans, 1 + labels) and the mask of the spans that were decoded (the token
    filter's survivors, for sf-spandec).

    The PyTorch path decodes spans in chunks and repacks the filter's survivors; here every
    surviving span is decoded at once in place, which gives the same logits for the same spans
    without a Python int that depends on the data. Spans are at most ``max_span_length``
    words, so that is the width of the decoder's partner table.
    """

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.model = model
        self.uses_filter = bool(getattr(model, "uses_filter", False))

    def forward(self, input_ids, attention_mask, word_starts, spans, span_mask, *extra):
        model = self.model
        threshold = extra[:1] if self.uses_filter else ()  # then input_shapes, if any
        shapes = extra[len(threshold)] if len(extra) > len(threshold) else None
        text = model.encode(encoder_batch(input_ids, attention_mask, shapes))
        if self.uses_filter:
            words = gather_words(text, word_starts)  # (B, W, H)
            passing = model.token_filter(words).squeeze(-1).sigmoid() >= threshold[0]  # (B, W)
            # A span survives when no word in it fails: failures counted by a prefix sum.
            fails = torch.cat(
                [torch.zeros_like(passing[:, :1], dtype=torch.long), (~passing).long().cumsum(1)],
                1,
            )  # (B, W + 1)
            bad = fails.gather(1, spans[..., 1]) - fails.gather(1, spans[..., 0])
            span_mask = span_mask & (bad == 0)
        positions = model._positions(torch.arange(text.size(1), device=text.device))  # (T, H)
        rows, columns = span_mask.nonzero(as_tuple=True)
        chosen = spans[rows, columns]  # (N, 2) end exclusive
        base = (rows * word_starts.size(1)).unsqueeze(1)
        span_words = torch.stack([chosen[:, 0], chosen[:, 1] - 1], dim=-1) + base
        states = model.decoder.word_states(
            model.start_query,
            model.end_query,
            positions,
            word_starts,
            text,
            attention_mask.bool(),
            model.config.max_span_length,
        )
        decoded = model.decoder.decode_spans(states, span_words)  # (N, 2, H)
        packed = model.classifier(model.head_mlp(decoded).flatten(1))  # (N, C)
        logits = text.new_zeros((*spans.shape[:2], packed.size(-1)))
        logits = logits.index_put((rows, columns), packed)
        return logits, span_mask


class SpanDecExport(Export):
    inputs = ("input_ids", "attention_mask", "word_starts", "spans", "span_mask")
    graphs = {"model": (inputs, ("logits", "decoded"))}
    axes = {
        **ENCODER_AXES,
        "spans": {0: "batch", 1: "spans"},
        "span_mask": {0: "batch", 1: "spans"},
        "logits": {0: "batch", 1: "spans"},
        "decoded": {0: "batch", 1: "spans"},
    }

    @classmethod
    def modules(cls, model):
        return {"model": SpanDecGraph(model)}

    @classmethod
    def output_tensors(cls, outputs, batch):
        return {
            "logits": outputs["logits"],
            "spans": batch.spans,
            "span_mask": outputs["decoded"],
        }


class SFSpanDecExport(SpanDecExport):
    graphs = {"model": ((*SpanDecExport.inputs, "filter_threshold"), ("logits", "decoded"))}

    @classmethod
    def settings(cls, config):
        return {"filter_threshold": _scalar(config.hyper.get("filter_threshold", 0.5))}

    @classmethod
    def stats(cls, outputs, batch):
        return {
            "spans": float(batch.span_mask.sum()),
            "spans_kept": float(outputs["decoded"].sum()),
        }


# ---------------------------------------------------------------------- iter
class IterSpanGraph(nn.Module):
    """(input_ids, attention_mask, word_starts, sentence_start, left_threshold) -> the word
    vectors, left-bracket logits, span candidates and their logits (ITER's first step)."""

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, input_ids, attention_mask, word_starts, sentence_start, left_threshold, shapes=None
    ):
        model = self.model
        hidden = model.encode(encoder_batch(input_ids, attention_mask, shapes))
        words = gather_words(hidden, word_starts)  # (B, W, H)
        left_logits = model._left_logits(words)  # (B, W)
        lefts = left_logits.sigmoid() >= left_threshold
        candidates, mask = span_candidates(lefts, sentence_start, model.omega)
        return words, left_logits, candidates, mask, model._span_logits(words, candidates)


def span_candidates(
    lefts: torch.Tensor, sentence_start: torch.Tensor, omega: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`nerx.models.iter.span_candidates` with ONNX operators: ONNX has no running
    maximum (cummax), so the latest bracket at or before each word is a masked maximum over
    the words before it (W x W per row, small beside the encoder)."""
    w = lefts.size(1)
    positions = torch.arange(w, device=lefts.device)
    before = positions[None, :] <= positions[:, None]  # (W, W): column n at or before row m
    marked = torch.where(lefts[:, None, :] & before, positions, -1)  # (B, W, W)
    latest = marked.max(dim=-1).values  # (B, W) bracket <= m
    columns, current = [], latest
    for _ in range(omega):
        columns.append(current)
        earlier = latest.gather(1, (current - 1).clamp(min=0))
        current = torch.where(current > 0, earlier, -1)
    candidates = torch.stack(columns, dim=-1)  # (B, W, omega)
    return candidates, candidates >= sentence_start.unsqueeze(-1)


class IterLinkGraph(nn.Module):
    """(words, entity_bounds) -> link logits (B, E, E, relations) for every ordered pair of
    the entities found (ITER's second step), all pairs at once."""

    def __init__(self, model: SpanModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, words, entity_bounds):
        link = self.model.is_link
        first = gather_words(words, entity_bounds[..., 0])  # (B, E, H)
        last = gather_words(words, entity_bounds[..., 1])
        head = link.project(first, 0) + link.project(last, 1)  # (B, E, 2F)
        tail = link.project(first, 2) + link.project(last, 3)
        return link.finish(head[:, :, None] + tail[:, None])


class IterExport(Export):
    span_outputs = ("words", "left_logits", "candidates", "candidate_mask", "span_logits")
    graphs = {
        "model": (
            ("input_ids", "attention_mask", "word_starts", "sentence_start", "left_threshold"),
            span_outputs,
        ),
        "links": (("words", "entity_bounds"), ("link_logits",)),
    }
    axes = {
        **ENCODER_AXES,
        "sentence_start": {0: "batch", 1: "words"},
        "words": {0: "batch", 1: "words"},
        "left_logits": {0: "batch", 1: "words"},
        "candidates": {0: "batch", 1: "words"},
        "candidate_mask": {0: "batch", 1: "words"},
        "span_logits": {0: "batch", 1: "words"},
        "entity_bounds": {0: "batch", 1: "entities"},
        "link_logits": {0: "batch", 1: "entities", 2: "entities"},
    }

    @classmethod
    def signature(cls, config):
        graphs = dict(cls.graphs)
        if not config.relation_labels:
            del graphs["links"]
        return with_shapes(graphs, config)

    @classmethod
    def settings(cls, config):
        return {"left_threshold": _scalar(config.hyper.get("left_threshold", 0.5))}

    @classmethod
    def attach(cls, model):
        known = set(model.config.symmetric_relations)
        symmetric = [label in known for label in model.config.relation_labels]
        model.register_buffer("symmetric", torch.tensor(symmetric, dtype=torch.bool), False)
        if model.config.relation_labels:
            # The link head of ITER's predict, on the exported graph.
            def link_logits(words, entity_bounds):
                feed = {"words": words, "entity_bounds": entity_bounds}
                return model._run("links", feed)["link_logits"]

            model._link_logits = link_logits

    @classmethod
    def modules(cls, model):
        found = {"model": IterSpanGraph(model)}
        if model.is_link is not None:
            found["links"] = IterLinkGraph(model)
        return found

    @classmethod
    def trace_inputs(cls, model, batch):
        inputs = super().trace_inputs(model, batch)
        if "links" in inputs:
            with torch.no_grad():
                names = cls.signature(model.config)["model"][0]
                words = IterSpanGraph(model)(*(inputs["model"][n] for n in names))[0]
            bounds = torch.tensor([[0, 0], [1, 2], [0, 2]]).expand(words.size(0), -1, -1)
            inputs["links"] = {"words": words, "entity_bounds": bounds.contiguous()}
        return inputs

    @classmethod
    def infer(cls, config, run, batch):
        """ITER's first step, as the PyTorch forward at inference: brackets, candidate spans
        and their logits. The link step runs in the kind's ``predict`` on the spans decoded
        from them, through the ``links`` graph (see :meth:`attach`)."""
        found = run("model", {**batch.inputs(), **cls.settings(config)})
        threshold = config.hyper.get("left_threshold", 0.5)
        stats = {
            "candidate_spans": float(found["candidate_mask"].sum()),
            "left_brackets": float((found["left_logits"].sigmoid() >= threshold).sum()),
        }
        return Output(tensors=found, stats=stats)


def _scalar(value: float) -> torch.Tensor:
    return torch.tensor(float(value), dtype=torch.float32)


#: Kinds that export, and how.
EXPORTS: dict[str, type[Export]] = {
    "token": TokenExport,
    "spandec": SpanDecExport,
    "sf-spandec": SFSpanDecExport,
    "iter": IterExport,
}
