"""``sener``: whole long documents in one pass, with memory linear in their length.

SeNER ("Small Language Model Makes an Effective Long Text Extractor", Chen et al., 2025)
encodes a long text at once with a small encoder and classifies spans without an L x L table:

* **Arrow attention.** The encoder's own layers (embeddings, q/k/v/output projections, layer
  norms, FFN: the pretrained weights) run with a different attention pattern: [CLS] attends
  to every token and every token attends to [CLS]; every other token attends to the tokens
  within ``attention_window // 2`` positions on each side of it (itself included), so
  ``attention_window`` is the *total* width of the band. On GPU this is FlexAttention with a
  block-sparse mask; on CPU each chunk of ``attention_window // 2`` queries attends to its band
  of keys plus [CLS], so no L x L tensor is ever built.
* **LogN scaling.** [CLS]'s attention logits are multiplied by ``max(1, log n / log b)``, n the
  input's length in subwords (padding excluded) and b ``logn_base`` (the encoder's pretrained
  length): its softmax over n keys then keeps about the entropy it had over b keys in
  pretraining, and inputs up to b long are untouched. Only [CLS]'s row is scaled: any other
  token sees at most ``attention_window + 2`` keys, whatever the length.
* **Positions.** The absolute position table is extended to ``max_length`` subwords by copying
  the learned rows, as Longformer did: position p >= b takes row ``1 + (p - 1) % (b - 1)``
  (row 0 belongs to [CLS] alone and is never repeated). The window planner then gets windows
  of ``max_length`` subwords, so a document up to that length is one window.
* **Span tensor and BiSPA.** Words (first subwords) get a biaffine span representation for
  spans of up to w' = ``max_span_width`` words only: an L x w' grid, row i holding spans
  ``(i, i + k)`` for k < w', inside one sentence. Stacked BiSPA blocks attend horizontally
  (the w' spans that share a start: a row) and vertically (the w' spans that share an end,
  gathered by :func:`vertical_index`); an MLP classifies each span over O + labels.
* **LoRA** (``lora_rank`` > 0): low-rank adapters on the attention projections (q, k, v, out),
  every encoder weight frozen (extended positions included).

Our choices where the paper leaves room: any BERT-like encoder with absolute positions works
(MiniLM ships). A BiSPA block computes both directions from the same normalised grid,
concatenates and projects them (each span sees a plus-shaped neighbourhood at once), then an
FFN, pre-norm with residuals. ``max_length`` defaults to 32768 subwords: CoNLL-2003 English
averages 1.25 MiniLM subwords a word, so a 16k-word document is one window with room left for
text that splits into more subwords, while the copied table costs 32768 x hidden floats (50 MB
on MiniLM). A document longer than that is cut into windows like any other kind's. Decoding:
softmax per span; a span whose best class is not O is an entity with that label; flat output
(most confident first, as spandec) unless ``nested`` is true.

Hyperparameters (``config.hyper``):

==================== ====================================================================
attention_window     128: total width of a token's band (``// 2`` on each side)
logn_scaling         true: scale [CLS]'s logits by ``max(1, log n / log logn_base)``
logn_base            the encoder's pretrained length (512 for MiniLM)
max_length           32768: subwords per window, specials included (position table size)
max_span_width       ``max_span_length`` of the config (8): w', longest span in words
span_hidden          64: size of the biaffine span representation
bispa_layers         2: stacked BiSPA blocks
bispa_heads          4: attention heads in each BiSPA direction
dropout              0.1
lora_rank            0: full fine-tuning; r > 0 trains rank-r adapters only
lora_alpha           2 * lora_rank: adapter scale ``alpha / r``
nested               false: flat output unless true (the training loop sets it from data)
==================== ====================================================================
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nerx.errors import ConfigError, ModelError
from nerx.models.base import (
    Batch,
    Example,
    ModelConfig,
    Output,
    Prediction,
    SpanModel,
    SpanPrediction,
    WordSettings,
    gather_words,
    register,
    setting,
)
from nerx.models.encoder import encoder_layers, encoder_position_embeddings
from nerx.models.lora import add_lora, is_lora_parameter
from nerx.models.spans import greedy_flat

DEFAULT_ATTENTION_WINDOW = 128
DEFAULT_MAX_LENGTH = 32768
#: The attention projections LoRA adapts in a BERT-like layer.
LORA_TARGETS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
)


# ---------------------------------------------------------------------- arrow attention
def logn_factor(lengths: torch.Tensor, base: int) -> torch.Tensor:
    """LogN scale of [CLS]'s logits per sequence: ``max(1, log n / log base)``, (batch,)."""
    return (lengths.float().clamp(min=1).log() / math.log(max(base, 2))).clamp(min=1.0)


def arrow_mask(key_valid: torch.Tensor, half: int) -> torch.Tensor:
    """(batch, L, L) True where query i may attend to key j. L x L: for tests only."""
    n = key_valid.size(1)
    query = torch.arange(n, device=key_valid.device).unsqueeze(1)
    key = torch.arange(n, device=key_valid.device).unsqueeze(0)
    pattern = ((query - key).abs() <= half) | (query == 0) | (key == 0)
    return pattern.unsqueeze(0) & key_valid.unsqueeze(1)


def dense_arrow_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_valid: torch.Tensor,
    half: int,
    cls_scale: torch.Tensor,
) -> torch.Tensor:
    """The arrow pattern with a full L x L mask: the reference the fast paths are tested
    against, never used by the model. q, k, v (B, heads, L, d); key_valid (B, L) bool;
    cls_scale (B,). Returns (B, heads, L, d)."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.size(-1))  # (B, heads, L, L)
    row_scale = torch.ones(scores.shape[0], 1, scores.shape[2], 1, device=q.device)
    row_scale[:, 0, 0, 0] = cls_scale
    scores = (scores * row_scale).masked_fill(~arrow_mask(key_valid, half)[:, None], -math.inf)
    return scores.softmax(-1) @ v


def banded_arrow_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_valid: torch.Tensor,
    half: int,
    cls_scale: torch.Tensor,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Arrow attention in O(L * half) memory: chunks of ``half`` queries attend to their band
    of ``3 * half`` keys plus [CLS] as an extra column; [CLS]'s own row is a (1 x L) softmax.
    Same inputs and output as :func:`dense_arrow_attention`."""
    b, h, n, d = q.shape
    scale = 1.0 / math.sqrt(d)
    half = min(half, n - 1)  # a band wider than the input is no different, only costlier
    chunk = max(half, 1)
    blocks = -(-n // chunk)
    padded = blocks * chunk
    width = chunk + 2 * half  # keys seen by one chunk of queries
    # Keys are padded by `half` on the left, so block t's band starts at key t * chunk - half.
    pad_keys = (half, padded - n + half)

    def bands(x: torch.Tensor) -> torch.Tensor:  # (B, heads, L, d) -> (B, heads, blocks, width, d)
        return F.pad(x, (0, 0, *pad_keys)).unfold(2, width, chunk).transpose(-1, -2)

    # [CLS] is its own column, so it must not be counted again inside the first band.
    band_valid = key_valid.clone()
    band_valid[:, 0] = False
    band_valid = F.pad(band_valid, pad_keys).unfold(1, width, chunk)  # (B, blocks, width)
    offset = (
        torch.arange(width, device=q.device) - half - torch.arange(chunk, device=q.device)[:, None]
    )
    allowed = (offset.abs() <= half) & band_valid.unsqueeze(2)  # (B, blocks, chunk, width)

    queries = F.pad(q, (0, 0, 0, padded - n)).view(b, h, blocks, chunk, d)
    local = torch.einsum("bhtcd,bhtwd->bhtcw", queries, bands(k)) * scale
    local = local.masked_fill(~allowed.unsqueeze(1), -math.inf)
    to_cls = torch.einsum("bhtcd,bhd->bhtc", queries, k[:, :, 0]) * scale
    probs = torch.cat([local, to_cls.unsqueeze(-1)], -1).softmax(-1)
    probs = F.dropout(probs, dropout, training=dropout > 0)  # (B, heads, blocks, chunk, width+1)
    out = torch.einsum("bhtcw,bhtwd->bhtcd", probs[..., :-1], bands(v))
    out = out + probs[..., -1:] * v[:, :, 0, None, None, :]
    out = out.reshape(b, h, padded, d)[:, :, :n]

    # [CLS] sees everything; its logits carry the LogN scale.
    cls_scores = torch.einsum("bhd,bhnd->bhn", q[:, :, 0], k) * scale * cls_scale[:, None, None]
    cls_probs = cls_scores.masked_fill(~key_valid[:, None, :], -math.inf).softmax(-1)
    cls_probs = F.dropout(cls_probs, dropout, training=dropout > 0)
    cls_out = torch.einsum("bhn,bhnd->bhd", cls_probs, v)
    return torch.cat([cls_out.unsqueeze(2), out[:, :, 1:]], 2)


@functools.cache
def _compiled_flex_attention():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention)


def flex_arrow_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_valid: torch.Tensor,
    half: int,
    cls_scale: torch.Tensor,
) -> torch.Tensor:
    """Arrow attention with FlexAttention and a block-sparse mask (GPU). FlexAttention has no
    attention dropout; the encoder's other dropouts still apply."""
    from torch.nn.attention.flex_attention import create_block_mask

    def pattern(batch, head, query, key):
        near = (query - key).abs() <= half
        return key_valid[batch, key] & (near | (query == 0) | (key == 0))

    def logn(score, batch, head, query, key):
        return torch.where(query == 0, score * cls_scale[batch], score)

    b, _, n, _ = q.shape
    mask = create_block_mask(pattern, b, None, n, n, device=q.device)
    return _compiled_flex_attention()(q, k, v, score_mod=logn, block_mask=mask)


def arrow_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_valid: torch.Tensor,
    half: int,
    cls_scale: torch.Tensor,
    dropout: float = 0.0,
) -> torch.Tensor:
    """FlexAttention on GPU, the banded CPU path elsewhere: (B, heads, L, d)."""
    if q.is_cuda:
        return flex_arrow_attention(q, k, v, key_valid, half, cls_scale)
    return banded_arrow_attention(q, k, v, key_valid, half, cls_scale, dropout)


# ---------------------------------------------------------------------- the encoder
def bert_like_layers(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's layers, checked to have BERT's parts (arrow attention reuses them)."""
    layers = encoder_layers(encoder)
    parts = ("attention.self.query", "attention.self.key", "attention.self.value")
    parts += ("attention.output", "intermediate", "output")
    for layer in layers:
        for part in parts:
            try:
                layer.get_submodule(part)
            except AttributeError:
                raise ModelError(
                    f"encoder {type(encoder).__name__} has no BERT-like {part} in its layers",
                    hint="sener runs BERT-like encoders (BERT, MiniLM, RoBERTa, ELECTRA)",
                ) from None
    if encoder_position_embeddings(encoder) is None:
        raise ModelError(
            f"encoder {type(encoder).__name__} has no absolute position table to extend",
            hint="sener runs BERT-like encoders with absolute positions",
        )
    return layers


def copied_position_index(base: int, length: int, first: int = 0) -> torch.Tensor:
    """Row of the pretrained table each of ``length`` positions starts from: itself below
    ``base``; beyond, the rows ``first + 1 .. base - 1`` over and over (``first`` is the
    [CLS] position, whose row is not repeated)."""
    position = torch.arange(length)
    cycle = base - first - 1
    repeated = first + 1 + (position - first - 1) % cycle
    return torch.where(position < base, position, repeated)


def extend_positions(encoder: nn.Module, length: int, first: int = 0) -> int:
    """Grow the encoder's absolute position table to ``length`` rows by copying learned
    rows (:func:`copied_position_index`); returns the table's size afterwards."""
    table = encoder_position_embeddings(encoder)
    base = table.num_embeddings
    if length <= base:
        return base
    grown = nn.Embedding(length, table.embedding_dim).to(table.weight.device, table.weight.dtype)
    with torch.no_grad():
        grown.weight.copy_(table.weight[copied_position_index(base, length, first)])
    embeddings = encoder.embeddings
    embeddings.position_embeddings = grown
    # The default ids the encoder's own forward uses, so it too accepts the longer inputs.
    ids = torch.arange(length, device=table.weight.device).expand(1, -1)
    for name, value in (("position_ids", ids), ("token_type_ids", torch.zeros_like(ids))):
        if hasattr(embeddings, name):
            setattr(embeddings, name, value)
    encoder.config.max_position_embeddings = length
    return length


def arrow_layer(
    layer: nn.Module,
    hidden: torch.Tensor,
    key_valid: torch.Tensor,
    half: int,
    cls_scale: torch.Tensor,
) -> torch.Tensor:
    """One BERT layer with arrow attention, on the layer's own weights: (B, L, H)."""
    attention = layer.attention.self
    b, n, _ = hidden.shape
    heads, size = attention.num_attention_heads, attention.attention_head_size

    def split(project: nn.Module) -> torch.Tensor:  # (B, L, H) -> (B, heads, L, d)
        return project(hidden).view(b, n, heads, size).transpose(1, 2)

    dropout = attention.dropout.p if layer.training else 0.0
    context = arrow_attention(
        split(attention.query),
        split(attention.key),
        split(attention.value),
        key_valid,
        half,
        cls_scale,
        dropout,
    )
    context = context.transpose(1, 2).reshape(b, n, heads * size)
    hidden = layer.attention.output(context, hidden)  # projection, dropout, residual + norm
    return layer.output(layer.intermediate(hidden), hidden)


# ---------------------------------------------------------------------- spans: L x w'
def shifted(x: torch.Tensor, width: int) -> torch.Tensor:
    """``out[b, i, k] = x[b, i + k]`` (zeros past the end): (B, L, ...) -> (B, L, width, ...)."""
    pad = [0, 0] * (x.dim() - 2) + [0, width - 1]
    moved = F.pad(x, pad).unfold(1, width, 1)  # (B, L, ..., width)
    return moved.movedim(-1, 2)


def vertical_index(n_words: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The spans that end at each word, as indices into the flattened L x w' grid (span
    ``(i, i + k)`` at ``i * width + k``): ``index[j, k]`` is span ``(j - k, j)``, real where
    ``valid[j, k]`` (``j - k >= 0``). Both (n_words, width)."""
    end = torch.arange(n_words).unsqueeze(1)
    k = torch.arange(width).unsqueeze(0)
    start = end - k
    return start.clamp(min=0) * width + k, start >= 0


def horizontal_index(n_words: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`vertical_index`: where span ``(i, i + k)`` sits in the grid of
    spans grouped by end (``(i + k) * width + k``), real where ``i + k < n_words``."""
    start = torch.arange(n_words).unsqueeze(1)
    k = torch.arange(width).unsqueeze(0)
    end = start + k
    return end.clamp(max=n_words - 1) * width + k, end < n_words


class SpanGrid(nn.Module):
    """Biaffine span representations for spans of 1..width words: (B, L, width, size)."""

    def __init__(self, hidden: int, size: int, width: int, dropout: float) -> None:
        super().__init__()
        self.width = width
        self.start = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, size), nn.GELU())
        self.end = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, size), nn.GELU())
        self.bilinear = nn.Parameter(torch.randn(size, size, size) / size)  # (start, out, end)
        self.start_linear = nn.Linear(size, size)
        self.end_linear = nn.Linear(size, size, bias=False)
        self.width_embedding = nn.Embedding(width, size)

    def forward(self, words: torch.Tensor) -> torch.Tensor:
        start, end = self.start(words), self.end(words)  # (B, L, size)
        end_at = shifted(end, self.width)  # (B, L, width, size): the span's last word
        # s U first, then against each of the w' ends: (B, L, size, size), never per span.
        left = torch.einsum("bwi,icj->bwcj", start, self.bilinear)
        pairs = torch.einsum("bwcj,bwkj->bwkc", left, end_at)  # (B, L, width, size)
        return (
            pairs
            + self.start_linear(start).unsqueeze(2)
            + self.end_linear(end_at)
            + self.width_embedding.weight
        )


class AxisAttention(nn.Module):
    """Multi-head self-attention among the w' spans of one row (or one column) of the grid."""

    def __init__(self, size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(size, 3 * size)
        self.out = nn.Linear(size, size)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        # x (N, width, size); keys (N, width) bool, never all False in a row
        n, width, size = x.shape
        q, k, v = self.qkv(x).view(n, width, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keys[:, None, None, :], dropout_p=self.dropout * self.training
        )  # (N, heads, width, d)
        return self.out(mixed.transpose(1, 2).reshape(n, width, size))


class BiSPABlock(nn.Module):
    """Plus-shaped attention on the L x w' grid: each span attends to the spans sharing its
    start (its row) and, in parallel, to those sharing its end (its column); then an FFN."""

    def __init__(self, size: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(size)
        self.horizontal = AxisAttention(size, heads, dropout)
        self.vertical = AxisAttention(size, heads, dropout)
        self.mix = nn.Linear(2 * size, size)
        self.ffn = nn.Sequential(
            nn.LayerNorm(size),
            nn.Linear(size, 2 * size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(2 * size, size),
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, grid: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        # grid (B, L, width, size); valid (B, L, width): real spans inside a focus sentence
        b, n, width, size = grid.shape
        normed = self.norm(grid)
        # A span (i, i) is real for every focus word; letting it be a key everywhere keeps
        # rows of padding from being all masked (NaN) and never exposes a fake span.
        row_keys = valid.clone()
        row_keys[..., 0] = True
        across = self.horizontal(normed.view(b * n, width, size), row_keys.view(b * n, width))

        index, in_range = vertical_index(n, width)
        index, in_range = index.to(grid.device).view(-1), in_range.to(grid.device)
        column = normed.view(b, n * width, size)[:, index]  # (B, L * width, size) by end
        column_keys = valid.view(b, n * width)[:, index].view(b, n, width) & in_range
        column_keys[..., 0] = True
        down = self.vertical(column.view(b * n, width, size), column_keys.view(b * n, width))
        back, _ = horizontal_index(n, width)
        down = down.view(b, n * width, size)[:, back.to(grid.device).view(-1)]

        both = torch.cat([across.view(b, n, width, size), down.view(b, n, width, size)], -1)
        grid = grid + self.dropout(self.mix(both))
        return grid + self.dropout(self.ffn(grid))


# ---------------------------------------------------------------------- the model
@dataclass(frozen=True)
class SeNERSettings(WordSettings):
    nested: bool = setting(False, "flat output unless true (training sets it from the data)")
    attention_window: int = setting(
        DEFAULT_ATTENTION_WINDOW, "total width of a token's attention band", at_least=0
    )
    logn_scaling: bool = setting(True, "scale [CLS]'s logits by max(1, log n / log logn_base)")
    logn_base: int | None = setting(
        None, "length the scaling counts from (null: the encoder's pretrained length)", at_least=2
    )
    max_length: int = setting(
        DEFAULT_MAX_LENGTH, "subwords per window (position table)", at_least=8
    )
    max_span_width: int | None = setting(
        None, "longest span in words (null: the config's max_span_length)", at_least=1
    )
    span_hidden: int = setting(64, "size of the biaffine span representation", at_least=1)
    bispa_layers: int = setting(2, "stacked BiSPA blocks", at_least=0)
    bispa_heads: int = setting(4, "attention heads in each BiSPA direction", at_least=1)
    dropout: float = setting(0.1, "dropout in the span layers", at_least=0.0, at_most=1.0)
    lora_rank: int = setting(0, "0: full fine-tuning; r > 0 trains rank-r adapters", at_least=0)
    lora_alpha: float | None = setting(None, "adapter scale alpha / r (null: 2 * lora_rank)")


@dataclass
class SenerBatch(Batch):
    span_valid: torch.Tensor | None = None  # (B, W, width) spans inside a focus sentence
    span_labels: torch.Tensor | None = None  # (B, W, width) gold label ids; -100: no gold


@register("sener")
class SeNER(SpanModel):
    Settings = SeNERSettings
    #: Its span layers are all new; trained together with the encoder from the first step,
    #: their random gradients disturb the encoder before the spans mean anything. The heads
    #: train alone for the first tenth of the steps, then with the encoder, at the rate the
    #: other kinds use (at 5e-5 a first epoch leaves it predicting nothing). Its new layers
    #: need more steps than the other kinds' heads: on whole CoNLL-2003 articles (batch 2)
    #: dev F1 is 83.85 after 3 epochs and 91.14 after 6, so it trains 6.
    training_defaults = {"learning_rate": 3e-4, "heads_first": 0.1, "epochs": 6}

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__(config, encoder, tokenizer)
        settings = self.settings
        self._layers = tuple(bert_like_layers(encoder))  # a tuple: not registered twice
        window = settings.attention_window
        self.width = settings.max_span_width or config.max_span_length
        size = settings.span_hidden
        heads = settings.bispa_heads
        _check_settings(window, self.width, size, heads)
        self.half_window = window // 2

        # [CLS]'s position: 0 in BERT, after the reserved padding rows in RoBERTa.
        padding_idx = getattr(encoder.embeddings, "padding_idx", None)
        self.first_position = 0 if padding_idx is None else padding_idx + 1
        base = encoder_position_embeddings(encoder).num_embeddings
        self.logn_base = settings.logn_base or base - self.first_position
        self.logn_scaling = settings.logn_scaling
        positions = extend_positions(encoder, settings.max_length, self.first_position)
        longest = min(positions, settings.max_length)
        self.window_size = min(config.window or longest, longest - self.first_position)

        rank = settings.lora_rank
        if rank:
            add_lora(encoder, LORA_TARGETS, rank, alpha=settings.lora_alpha)

        dropout = settings.dropout
        hidden = encoder.config.hidden_size
        self.span_grid = SpanGrid(hidden, size, self.width, dropout)
        self.bispa = nn.ModuleList(
            BiSPABlock(size, heads, dropout) for _ in range(settings.bispa_layers)
        )
        self.classifier = nn.Sequential(
            nn.LayerNorm(size),
            nn.Linear(size, size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(size, 1 + len(config.labels)),
        )

    def head_parameter_names(self) -> set[str]:
        """The new parameters: the span layers and, with LoRA, the adapters."""
        names = super().head_parameter_names()
        return names | {n for n, _ in self.named_parameters() if is_lora_parameter(n)}

    # ------------------------------------------------------------------ batching
    def collate(self, examples: Sequence[Example]) -> SenerBatch:
        batch = self.pad_inputs(examples, SenerBatch)
        valid = span_validity(examples, batch.word_mask.size(1), self.width)
        labels = torch.full(valid.shape, -100, dtype=torch.long)
        labels[valid] = 0
        for row, ex in enumerate(examples):
            for s, e, label in ex.gold_spans:
                if e - s <= self.width and valid[row, s, e - s - 1]:
                    labels[row, s, e - s - 1] = label
        batch.span_valid, batch.span_labels = valid, labels
        return batch

    # ------------------------------------------------------------------ forward
    def encode(self, batch: SenerBatch) -> torch.Tensor:
        """The encoder with arrow attention: (B, T, H)."""
        ids = batch.input_ids
        key_valid = batch.attention_mask.bool()
        positions = torch.arange(ids.size(1), device=ids.device) + self.first_position
        embeds = self.input_embeddings(batch)
        hidden = self.encoder.embeddings(
            input_ids=ids if embeds is None else None,
            inputs_embeds=embeds,
            token_type_ids=torch.zeros_like(ids),
            position_ids=positions.expand_as(ids),
        )
        lengths = key_valid.sum(1)
        cls_scale = (
            logn_factor(lengths, self.logn_base)
            if self.logn_scaling
            else torch.ones(len(ids), device=ids.device)
        )
        for layer in self._layers:
            hidden = arrow_layer(layer, hidden, key_valid, self.half_window, cls_scale)
        return hidden

    def forward(self, batch: SenerBatch) -> Output:
        words = gather_words(self.encode(batch), batch.word_starts)  # (B, L, H)
        valid = batch.span_valid  # (B, L, width)
        grid = self.span_grid(words)  # (B, L, width, size)
        for block in self.bispa:
            grid = block(grid, valid)
        logits = self.classifier(grid)  # (B, L, width, 1 + labels)
        loss = None
        if batch.has_gold:
            loss = F.cross_entropy(
                logits.flatten(0, 2), batch.span_labels.flatten(), ignore_index=-100
            )
        return Output(loss=loss, tensors={"logits": logits, "span_valid": valid})

    # ------------------------------------------------------------------ decoding
    def decode(self, output: Output, batch: SenerBatch) -> list[Prediction]:
        score, label = output.tensors["logits"].float().softmax(-1).max(-1)  # (B, L, width)
        found = (label > 0) & output.tensors["span_valid"]
        nested = self.settings.nested
        predictions = []
        for row in range(found.size(0)):
            starts, lengths = found[row].nonzero(as_tuple=True)
            spans = [
                SpanPrediction(s, s + k + 1, self.config.labels[c - 1], p)
                for s, k, c, p in zip(
                    starts.tolist(),
                    lengths.tolist(),
                    label[row][starts, lengths].tolist(),
                    score[row][starts, lengths].tolist(),
                    strict=True,
                )
            ]
            predictions.append(Prediction(spans=spans if nested else greedy_flat(spans)))
        return predictions


def span_validity(examples: Sequence[Example], n_words: int, width: int) -> torch.Tensor:
    """(B, L, width) True for span ``(i, i + k)`` when both ends lie in one focus sentence."""
    sentence = torch.full((len(examples), n_words), -1, dtype=torch.long)
    for row, ex in enumerate(examples):
        for number, (s, e) in enumerate(ex.sentences):
            sentence[row, s:e] = number
    # Shifted by one so that the zeros `shifted` pads with past the end read as "none" (-1).
    end_sentence = shifted(sentence + 1, width) - 1  # (B, L, width)
    # Contiguous: with fewer words than ``width`` the broadcast keeps ``shifted``'s strides.
    return ((sentence >= 0).unsqueeze(-1) & (end_sentence == sentence.unsqueeze(-1))).contiguous()


def _check_settings(window: int, width: int, size: int, heads: int) -> None:
    if window < 0:
        raise ConfigError(
            f"attention_window must be 0 or more, got {window}", hint="the default is 128"
        )
    if width < 1:
        raise ConfigError(f"max_span_width must be at least 1, got {width}", hint="try 8")
    if size % heads:
        raise ConfigError(
            f"span_hidden {size} is not divisible by bispa_heads {heads}",
            hint="use span_hidden 64 with bispa_heads 4",
        )
