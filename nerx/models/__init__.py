"""Span models, one self-contained file each, all behind :class:`nerx.models.base.SpanModel`.

Importing this package registers every model kind (``nerx train --kind KIND``); other
packages add kinds through the ``nerx_models`` entry-point group (see :data:`registry`).
"""

# Registration side effect; ``iter`` is imported under another name so the builtin stays.
from nerx.models import iter as iter_model  # noqa: F401
from nerx.models import padellm, plmarker, sener, spandec, token  # noqa: F401
from nerx.models.base import (
    MODELS,
    ModelConfig,
    SpanModel,
    kinds,
    load_model,
    model_class,
    registry,
    save_model,
)

__all__ = [
    "MODELS",
    "ModelConfig",
    "SpanModel",
    "kinds",
    "load_model",
    "model_class",
    "registry",
    "save_model",
]
