"""The ``nerx`` spaCy pipeline component.

    nlp = spacy.blank("en")
    nlp.add_pipe("nerx", config={"model": "news-ner"})   # a bundled name or a model directory
    doc = nlp("Ada Lovelace worked in London.")
    doc.ents, doc.spans["nerx"], doc._.relations

spaCy finds the factory through the ``spacy_factories`` entry point, so nerx need not be
imported first. Every ``spacy.Language`` imports this module when it is created, so it stays
light: torch and the model load on first use, not on import.

The model runs on the Doc's own tokens (whitespace tokens left out), with the Doc's sentences
when a component before it set them and a sentencizer's otherwise (predicted, not written:
the Doc keeps the sentence state it had). It sets ``doc.ents`` (the largest non-overlapping
subset), ``doc.spans["nerx"]`` (every entity, scores in ``.attrs["scores"]``) and
``doc._.relations`` (``head``/``tail`` index ``doc.spans["nerx"]``).

Docs are run the way ``nerx extract`` runs documents: the component holds ``buffer_size``
Docs (default ``16 * batch_size``, at least 64, and at least ``nlp.pipe``'s ``batch_size``),
sorts their windows by length across the whole buffer and runs ``batch_size`` windows per
forward pass, so short and long texts do not share padded batches. Docs come out in input
order.
"""

# No ``from __future__ import annotations``: spaCy validates a factory's arguments from its
# annotations, and some spaCy 3.8 releases cannot resolve them when they are strings.
import json
import shutil
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from spacy.language import Language
from spacy.pipeline import Sentencizer
from spacy.tokens import Doc

from nerx.defaults import DEFAULT_MODEL
from nerx.doc import Document
from nerx.errors import ConfigError
from nerx.spacy_ext import annotate, plain_document, register_extensions

#: Written by ``to_disk``: where the model came from; the model itself goes in ``model/``.
SOURCE_NAME = "nerx_source.json"
MODEL_DIR = "model"


@Language.factory(
    "nerx",
    default_config={
        "model": DEFAULT_MODEL,
        "batch_size": 32,
        "buffer_size": 0,
        "threshold": 0.0,
        "device": "auto",
    },
)
def make_nerx(
    nlp: Language,
    name: str,
    model: str,
    batch_size: int,
    threshold: float,
    device: str,
    buffer_size: int = 0,  # a default, so pipelines saved before the option existed load
) -> "NerxComponent":
    return NerxComponent(
        name,
        model,
        batch_size=batch_size,
        buffer_size=buffer_size,
        threshold=threshold,
        device=device,
    )


class NerxComponent:
    """Runs a nerx model on spaCy Docs; see the module docstring for what it sets."""

    def __init__(
        self,
        name: str,
        model: str,
        *,
        batch_size: int = 32,
        buffer_size: int = 0,
        threshold: float = 0.0,
        device: str = "auto",
    ) -> None:
        if batch_size < 1 or buffer_size < 0:
            raise ConfigError(
                f"the nerx component got batch_size={batch_size}, buffer_size={buffer_size}",
                hint="batch_size is at least 1; buffer_size is 0 (the default) or more",
            )
        self.name = name
        self.source = model
        self.batch_size = batch_size  # windows per forward pass, as `nerx extract --batch-size`
        self.buffer_size = buffer_size or max(16 * batch_size, 64)  # as nerx.pipeline.extract
        self.threshold = threshold
        self.device = device
        self._model = None
        self._model_dir: Path | None = None  # set by from_disk: the copy saved with nlp
        self._sentencizer = Sentencizer()
        register_extensions()

    # ------------------------------------------------------------------ running
    @property
    def nerx_model(self):
        """The nerx model, loaded on first use. Not called ``model``: spaCy probes a
        component's ``model`` while it links a pipeline, before ``from_disk`` has said where
        a saved model lies, and the probe must not load anything."""
        if self._model is None:
            from nerx.loading import load
            from nerx.runtime import resolve_device

            where = str(self._model_dir) if self._model_dir else self.source
            self._model = load(where, device=resolve_device(self.device))
        return self._model

    def __call__(self, doc: Doc) -> Doc:
        return next(self.pipe([doc]))

    def pipe(self, stream: Iterable[Doc], *, batch_size: int | None = None) -> Iterator[Doc]:
        """Annotate ``stream`` in input order. ``batch_size`` is ``nlp.pipe``'s: the fewest
        Docs to hold at a time; the forward passes take the component's own ``batch_size``."""
        from nerx.pipeline import predict_documents

        size = max(batch_size or 0, self.buffer_size)
        stream = iter(stream)
        while chunk := list(islice(stream, size)):
            documents = self._as_documents(chunk)
            predicted = predict_documents(
                self.nerx_model, documents, batch_size=self.batch_size, threshold=self.threshold
            )
            for doc, document in zip(chunk, predicted, strict=True):
                annotate(doc, document)
                yield doc

    def _as_documents(self, docs: list[Doc]) -> list[Document]:
        # The sentencizer predicts without writing, so a Doc keeps the sentence state it had.
        unsplit = [doc for doc in docs if not doc.has_annotation("SENT_START")]
        guesses = dict(zip(map(id, unsplit), self._sentencizer.predict(unsplit), strict=True))
        return [
            plain_document(doc, str(i + 1), sent_starts=guesses.get(id(doc)))
            for i, doc in enumerate(docs)
        ]

    # ------------------------------------------------------------------ serialisation
    def to_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> None:
        """Save the model beside the pipeline, so ``spacy.load`` needs nothing else."""
        from nerx.models import save_model

        path = Path(path)
        if path.exists():
            shutil.rmtree(path)
        path.mkdir(parents=True)
        # A compact (bundled) model stays compact: a few MB instead of the whole encoder.
        model = self.nerx_model
        save_model(model, path / MODEL_DIR, rank=model.config.weights.get("rank"))
        (path / SOURCE_NAME).write_text(json.dumps({"model": self.source}), encoding="utf-8")

    def from_disk(self, path: str | Path, *, exclude: Iterable[str] = ()) -> "NerxComponent":
        path = Path(path)
        if (path / MODEL_DIR).is_dir():
            self._model_dir = path / MODEL_DIR
            self._model = None
        return self

    def __repr__(self) -> str:
        return f"NerxComponent(name={self.name!r}, model={self.source!r})"
