"""Span models, one self-contained file each, all behind :class:`nerx.models.base.SpanModel`.

Importing this package registers every model kind (``--model KIND``).
"""

from nerx.models import spandec, token  # noqa: F401  (registration side effect)
from nerx.models.base import MODELS, ModelConfig, SpanModel, load_model, model_class, save_model

__all__ = ["MODELS", "ModelConfig", "SpanModel", "load_model", "model_class", "save_model"]
