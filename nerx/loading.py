"""``nerx.load``: a model by bundled name or by directory.

Names are resolved here, above the models: :func:`nerx.models.load_model` reads a directory
and knows nothing of the models that ship with nerx (:mod:`nerx.bundled`).

>>> import nerx
>>> model = nerx.load("news-ner")            # bundled
>>> model = nerx.load("models/conll")        # written by nerx train or nerx export
"""

from __future__ import annotations

import os
from typing import Any


def load(model: str | os.PathLike, *, device: Any = "cpu"):
    """The model a bundled name (see ``nerx models``) or a model directory names, on
    ``device``. A directory wins over a name, so a local ``news-ner/`` is that directory."""
    from nerx.bundled import resolve
    from nerx.models import load_model

    return load_model(resolve(model), device=device)
