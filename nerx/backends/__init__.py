"""How a saved model runs: PyTorch (the default, :func:`nerx.models.load_model`) or ONNX
Runtime (a directory written by ``nerx export``, :mod:`nerx.backends.ort`).

``graphs`` holds the torch modules that are traced for each exportable kind, ``export`` the
export itself, ``ort`` the runtime side and ``tokenizer`` the tokenizer it reads without
transformers. A ``config.json`` with ``"backend": "onnx"`` is loaded by ``ort``; any other
by the PyTorch path.
"""
