"""nerx: span-based named-entity recognition and relation extraction.

The public API is loaded lazily, so ``import nerx`` (and the CLI's startup) stays fast and
pulls in torch only when a model is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "Document": "nerx.doc",
    "Entity": "nerx.doc",
    "Relation": "nerx.doc",
    "NerxError": "nerx.errors",
    "read": "nerx.io",
    "write": "nerx.io",
    "convert": "nerx.io",
    "Report": "nerx.io",
    "evaluate": "nerx.evaluate",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from nerx.doc import Document, Entity, Relation
    from nerx.errors import NerxError
    from nerx.evaluate import evaluate
    from nerx.io import Report, convert, read, write


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'nerx' has no attribute {name!r}")
