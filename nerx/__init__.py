"""nerx: span-based named-entity recognition and relation extraction.

The public API is loaded lazily, so ``import nerx`` (and the CLI's startup) stays fast and
pulls in torch only when a model is used.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Document": ("nerx.doc", "Document"),
    "Entity": ("nerx.doc", "Entity"),
    "Relation": ("nerx.doc", "Relation"),
    "NerxError": ("nerx.errors", "NerxError"),
    "read": ("nerx.io", "read"),
    "write": ("nerx.io", "write"),
    "convert": ("nerx.io", "convert"),
    "Report": ("nerx.io", "Report"),
    "evaluate": ("nerx.scoring", "evaluate"),
    "load": ("nerx.loading", "load"),
    "extract": ("nerx.pipeline", "extract"),
    "extract_corpus": ("nerx.pipeline", "extract_corpus"),
    "extract_frame": ("nerx.frame", "extract_frame"),
    "train": ("nerx.training", "train"),
    "TrainSettings": ("nerx.train_settings", "TrainSettings"),
}

__all__ = [
    "Document",
    "Entity",
    "Relation",
    "NerxError",
    "read",
    "write",
    "convert",
    "Report",
    "evaluate",
    "load",
    "extract",
    "extract_corpus",
    "extract_frame",
    "train",
    "TrainSettings",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from nerx.doc import Document, Entity, Relation
    from nerx.errors import NerxError
    from nerx.frame import extract_frame
    from nerx.io import Report, convert, read, write
    from nerx.loading import load
    from nerx.pipeline import extract, extract_corpus
    from nerx.scoring import evaluate
    from nerx.train_settings import TrainSettings
    from nerx.training import train


def __getattr__(name: str):
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nerx' has no attribute {name!r}")


class _RegisterWithSpacy(importlib.abc.MetaPathFinder):
    """Registers ``Doc._.relations`` the moment ``spacy.tokens`` is imported, so relations in a
    DocBin read back as ``doc._.relations`` once nerx is imported, whichever comes first,
    without making ``import nerx`` (and the CLI's start) pay for importing spaCy."""

    def find_spec(self, name, path=None, target=None):
        if name != "spacy.tokens":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _register_spacy_extensions()

        spec.loader.exec_module = exec_module
        return spec


def _register_spacy_extensions() -> None:
    from nerx.spacy_ext import register_extensions

    register_extensions()


if "spacy.tokens" in sys.modules:
    _register_spacy_extensions()
elif not any(isinstance(f, _RegisterWithSpacy) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWithSpacy())
