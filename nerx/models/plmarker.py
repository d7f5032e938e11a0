"""``plmarker``: PL-Marker, packed levitated markers for entities and relations.

After "Packed Levitated Marker for Entity and Relation Extraction" (Ye et al., ACL 2022).

NER, neighbourhood-oriented packing. Every span of at most ``max_span_length`` words in a focus
sentence gets a pair of *levitated* markers: two extra tokens after the text, the start marker
sharing the position id of the span's first subword, the end marker that of its last one.
Spans are sorted by (start, end) and cut into groups of ``group_size``; a group is one encoder
pass, so neighbouring spans share a pass. A directional attention mask keeps the text blind to
the markers (text tokens see only text) and lets a marker see the text, itself and its partner,
so the text's states do not depend on what is packed with it. A span is
``[h_start; h_end; h_first_subword; h_last_subword]`` (the paper's T-Concat), classified over
O + labels by an FFN (softmax, cross-entropy). Decoding keeps each span's best label when it is
not O; flat data (``nested`` False) keeps the most confident non-overlapping spans.

RE, subject-oriented packing. Each subject entity gets one pass (more when it has over
``re_group_size`` objects): the text with *solid* markers ``[S] ... [/S]`` inserted around the
subject as real tokens (the positions after them shift), plus a levitated pair ``[O] [/O]``
for each other entity of the focus sentences, under the same mask rule. A pair
``[h_[S]; h_[/S]; h_[O]; h_[/O]]`` is classified over no-relation, every relation ``r`` and
its inverse ``r^-1``: the pass of the object, as subject, is trained to predict ``r^-1``. At
inference the two passes of a pair are averaged into one distribution over no-relation,
``a -> b`` and ``b -> a`` for each label, and its best entry is emitted once; a symmetric
relation (``config.symmetric_relations``) is its own inverse and comes out once per pair, head
first in text order. An auxiliary classifier on ``[h_[O]; h_[/O]]`` predicts the object's
entity type; its loss is added to the RE loss. RE trains on gold entities and runs on the
predicted ones (or on those of ``ner_model``).

Marker embeddings are learned vectors fed through ``inputs_embeds``, started from word
embeddings: ``[`` and ``]`` for the levitated start / end markers, ``<`` and ``>`` for the
solid ``[S]`` / ``[/S]`` (a random vector for a word the tokenizer does not know). The encoder
must take ``position_ids`` and a 4D additive attention mask (BERT, RoBERTa, MiniLM do); this
is checked by a probe when the model is built, and any other encoder is a ModelError.

Differences from the paper, on purpose: NER and RE are trained together, their losses summed,
by :mod:`nerx.training` (the one training loop every kind shares), where the paper trains an NER
model, then an RE model on its saved predictions; ``ner_model`` restores that pipeline at
inference. Markers reuse text positions, so a pass (``window`` subwords + 2 x ``group_size``
markers) may be longer than the position table: only memory grows with it. The window is kept
two subwords short of the encoder's limit so the solid markers fit.

Hyperparameters (``config.hyper``):

* ``group_size`` (64): spans (marker pairs) per NER pass.
* ``re_group_size`` (32): objects per RE pass.
* ``encoder_batch`` (32): passes per encoder call; passes are sorted by length and each call
  is padded only to its longest pass.
* ``train_spans`` (256): NER candidates per training window: every gold span plus randomly
  sampled negatives (all of them in shorter windows). Bounds a batch's passes, which are all
  kept for the backward pass; inference always scores every candidate.
* ``dropout`` (0.1): in the classifier FFNs.
* ``shared_encoder`` (False): one encoder for NER and RE instead of two copies.
* ``type_loss_weight`` (1.0): weight of the auxiliary object-type loss.
* ``re_max_entities`` (64): at inference, RE runs on at most this many of a window's predicted
  entities, the most confident (an untrained NER head marks spans everywhere).
* ``ner_model`` (None): a saved nerx model directory whose entities RE runs on at inference
  (a relative path is read from the working directory). The pipeline composes the two:
  it runs that model first and gives its entities to the examples (``given_spans``).
* ``outside_bias`` / ``relation_bias`` (0): taken off the "no entity" / "no relation" logit
  before decoding. Chosen on dev after training (``calibrate``), the NER one first; with
  ``ner_model`` set, only the relation one.
* ``nested``: set by the training loop from the data; False keeps decoded entities flat.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nerx.errors import ModelError
from nerx.models.base import (
    OUTSIDE_BIASES,
    Batch,
    Example,
    ModelConfig,
    Output,
    Prediction,
    Settings,
    SpanModel,
    SpanPrediction,
    Statistic,
    register,
    setting,
)
from nerx.models.encoder import max_window
from nerx.models.spans import enumerate_spans, greedy_flat

#: Indices into a network's marker table.
START, END = 0, 1  # NER: levitated span markers
SUBJECT_START, SUBJECT_END, OBJECT_START, OBJECT_END = 0, 1, 2, 3  # RE
NER_MARKER_WORDS = ("[", "]")
RE_MARKER_WORDS = ("<", ">", "[", "]")
#: Hidden states read per item: four token indices of the same pass.
READS = 4
#: Tokens the solid subject markers add to an RE pass.
SOLID_MARKERS = 2
#: NER candidates per training window: every gold span, the rest sampled negatives.
TRAIN_SPANS = 256


# ---------------------------------------------------------------------- passes
@dataclass
class Pass:
    """One encoder input: text (solid markers included) then levitated marker pairs.

    Per token: ``pairs`` is -1 for text (seen by every token) or the index of the marker pair
    it belongs to; ``markers`` is -1 for a word's own embedding or the row of the marker table
    to use instead. ``reads`` holds, per item (span or entity pair), the item's index in the
    batch and the tokens whose hidden states represent it.
    """

    ids: list[int]
    positions: list[int]
    pairs: list[int]
    markers: list[int]
    reads: list[tuple[int, list[int]]] = field(default_factory=list)


def marker_pass(
    text_ids: Sequence[int],
    anchors: Sequence[tuple[int, int]],
    kinds: tuple[int, int],
    text_markers: Sequence[int] | None = None,
) -> Pass:
    """The text followed by one levitated pair per ``(first, last)`` text token: the start
    marker (table row ``kinds[0]``) takes the position id of ``first``, the end marker that
    of ``last``. Pair ``k`` sits at ``len(text_ids) + 2k`` and ``+ 1``."""
    n = len(text_ids)
    return Pass(
        ids=list(text_ids) + [0] * (2 * len(anchors)),
        positions=list(range(n)) + [p for anchor in anchors for p in anchor],
        pairs=[-1] * n + [k for k in range(len(anchors)) for _ in range(2)],
        markers=list(text_markers or [-1] * n) + list(kinds) * len(anchors),
    )


def pack_passes(
    passes: Sequence[Pass], per_call: int, pad_id: int
) -> list[dict[str, torch.Tensor]]:
    """Length-sorted chunks of at most ``per_call`` passes, each padded to its longest pass.
    ``read_rows`` / ``read_tokens`` (n, READS) / ``read_items`` say where each item is read."""
    order = sorted(range(len(passes)), key=lambda k: len(passes[k].ids))
    chunks = []
    for first in range(0, len(order), per_call):
        group = [passes[k] for k in order[first : first + per_call]]
        shape = (len(group), max(len(p.ids) for p in group))
        chunk = {
            "input_ids": torch.full(shape, pad_id, dtype=torch.long),
            "positions": torch.zeros(shape, dtype=torch.long),
            "pairs": torch.full(shape, -1, dtype=torch.long),
            "markers": torch.full(shape, -1, dtype=torch.long),
            "valid": torch.zeros(shape, dtype=torch.bool),
        }
        rows, tokens, items = [], [], []
        for row, p in enumerate(group):
            n = len(p.ids)
            for name, values in (
                ("input_ids", p.ids),
                ("positions", p.positions),
                ("pairs", p.pairs),
                ("markers", p.markers),
            ):
                chunk[name][row, :n] = torch.tensor(values, dtype=torch.long)
            chunk["valid"][row, :n] = True
            for item, read in p.reads:
                rows.append(row)
                tokens.append(read)
                items.append(item)
        chunk["read_rows"] = torch.tensor(rows, dtype=torch.long)
        chunk["read_tokens"] = torch.tensor(tokens, dtype=torch.long).view(-1, READS)
        chunk["read_items"] = torch.tensor(items, dtype=torch.long)
        chunks.append(chunk)
    return chunks


def directional_mask(pairs: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(P, L, L) True where query i may attend to key j: keys are real tokens, and either
    text or a marker of the query's own pair. Padding queries look like text (no empty row)."""
    keys, queries = pairs.unsqueeze(1), pairs.unsqueeze(2)
    return valid.unsqueeze(1) & ((keys == -1) | (keys == queries))


def encode_passes(
    network: nn.Module, table: torch.Tensor, chunk: dict[str, torch.Tensor], offset: int = 0
) -> torch.Tensor:
    """Run one chunk of passes: (P, L, H). Markers enter through ``inputs_embeds``; the mask
    is 4D and additive (0 or the dtype's minimum), which BERT-style encoders take as is with
    both eager and SDPA attention; ``offset`` is added to position ids (RoBERTa's padding)."""
    embeds = network.get_input_embeddings()(chunk["input_ids"])  # (P, L, H)
    is_marker = (chunk["markers"] >= 0).unsqueeze(-1)
    marker_embeds = table[chunk["markers"].clamp(min=0)].to(embeds.dtype)
    embeds = torch.where(is_marker, marker_embeds, embeds)
    allowed = directional_mask(chunk["pairs"], chunk["valid"])  # (P, L, L)
    mask = torch.zeros(allowed.shape, dtype=embeds.dtype, device=embeds.device)
    mask = mask.masked_fill(~allowed, torch.finfo(embeds.dtype).min).unsqueeze(1)
    out = network(
        inputs_embeds=embeds, attention_mask=mask, position_ids=chunk["positions"] + offset
    )
    return out.last_hidden_state


def pack_spans(
    sentences: Sequence[tuple[int, int]],
    max_length: int,
    group_size: int,
    keep: Callable[[list[tuple[int, int]]], list[tuple[int, int]]] | None = None,
) -> list[list[tuple[int, int]]]:
    """Candidate spans sorted by (start, end), cut into groups of ``group_size``: the NER
    passes of one window, neighbouring spans together. ``keep`` may first pick a subset."""
    spans = sorted(tuple(span) for span in enumerate_spans(sentences, max_length).tolist())
    if keep is not None:
        spans = sorted(keep(spans))
    return [spans[i : i + group_size] for i in range(0, len(spans), group_size)]


def sample_negatives(
    spans: Sequence[tuple[int, int]], gold: Collection[tuple[int, int]], most: int
) -> list[tuple[int, int]]:
    """Every gold span plus negatives drawn at random (torch's RNG, so training seeds
    apply), ``most`` spans in all when there are more candidates than that."""
    if len(spans) <= most:
        return list(spans)
    positives = [span for span in spans if span in gold]
    negatives = [span for span in spans if span not in gold]
    room = max(most - len(positives), 0)
    picked = torch.randperm(len(negatives))[:room].tolist()
    return positives + [negatives[k] for k in picked]


# ---------------------------------------------------------------------- relation classes
def inverse_classes(labels: Sequence[str], symmetric: Collection[str]) -> list[int]:
    """The class of each relation's inverse. Class 0 is no-relation, ``1 + r`` is relation
    ``r``, and the inverses of the asymmetric relations follow in label order; a symmetric
    relation is its own inverse."""
    inverse, next_class = [], 1 + len(labels)
    for r, label in enumerate(labels):
        if label in symmetric:
            inverse.append(1 + r)
        else:
            inverse.append(next_class)
            next_class += 1
    return inverse


def pair_targets(
    relations: Sequence[tuple[int, int, int]], inverse: Sequence[int]
) -> dict[tuple[int, int], int]:
    """Class per ordered (subject, object) pair: ``r`` for a gold (head, tail, r), ``r^-1``
    for (tail, head). A pair has one class: a relation stated in its own direction wins."""
    targets: dict[tuple[int, int], int] = {}
    for head, tail, r in relations:
        if head != tail:
            targets.setdefault((head, tail), 1 + r)
    for head, tail, r in relations:
        if head != tail:
            targets.setdefault((tail, head), inverse[r])
    return targets


def combine_directions(
    forward: torch.Tensor, backward: torch.Tensor, inverse: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the probabilities of the passes (a as subject, b as object) ``forward`` and
    (b, a) ``backward``, both (N, classes), into one score per pair for no-relation (entry 0),
    ``a -> b`` as relation r (1 + r) and ``b -> a`` as r (1 + R + r): each the mean of r on
    one pass and r^-1 on the other. For a symmetric r (its own inverse) both directions score
    the same and the first, ``a -> b``, wins: head first in text order. Returns the best entry
    and its score, (N,) each."""
    r_classes = torch.arange(1, 1 + len(inverse), device=forward.device)
    none = (forward[:, 0] + backward[:, 0]) / 2  # (N,)
    a_to_b = (forward[:, r_classes] + backward[:, inverse]) / 2  # (N, R)
    b_to_a = (backward[:, r_classes] + forward[:, inverse]) / 2
    score, choice = torch.cat([none.unsqueeze(1), a_to_b, b_to_a], dim=1).max(1)
    return choice, score


# ---------------------------------------------------------------------- the encoder probe
def encoder_name(encoder: nn.Module) -> str:
    path = getattr(getattr(encoder, "config", None), "_name_or_path", "") or ""
    return f"{type(encoder).__name__} ({path})" if path else type(encoder).__name__


def check_marker_support(encoder: nn.Module, offset: int = 0) -> None:
    """Raise ModelError unless the encoder honours custom position ids and a 4D attention
    mask: adding masked markers must leave the text's states unchanged, and moving a marker's
    position id must change its state."""
    name = encoder_name(encoder)
    hint = "use an encoder that takes position_ids and a 4D mask, such as BERT or RoBERTa"
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            table = encoder.get_input_embeddings().weight
            size = table.size(0)
            ids = [min(k, size - 1) for k in (1, 2, 3, 4, 5)]
            markers = table[ids[1:3]].detach()

            def run(anchors):
                chunk = pack_passes([marker_pass(ids, anchors, (START, END))], 1, 0)[0]
                chunk = {k: v.to(table.device) for k, v in chunk.items()}
                return encode_passes(encoder, markers, chunk, offset)[0].float()

            text, packed, moved = run([]), run([(1, 3)]), run([(2, 4)])
    except (TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise ModelError(
            f"encoder {name} cannot run levitated markers: {type(exc).__name__}: {exc}", hint=hint
        ) from None
    finally:
        encoder.train(was_training)
    if not torch.allclose(packed[: len(ids)], text, atol=1e-4, rtol=1e-3):
        raise ModelError(
            f"encoder {name} does not keep to a 4D attention mask: text states change when "
            "masked marker tokens are added",
            hint=hint,
        )
    if torch.allclose(packed[len(ids) :], moved[len(ids) :], atol=1e-6):
        raise ModelError(
            f"encoder {name} ignores position_ids: a marker's state does not depend on its "
            "position",
            hint=hint,
        )


def _marker_table(encoder: nn.Module, tokenizer, words: Sequence[str]) -> nn.Parameter:
    """Marker vectors started from the mean subword embedding of each word; a word the
    tokenizer does not know gets a random vector of the encoder's initial scale."""
    embeddings = encoder.get_input_embeddings().weight
    scale = getattr(encoder.config, "initializer_range", 0.02)
    rows = []
    for word in words:
        pieces = tokenizer(word, add_special_tokens=False)["input_ids"]
        ids = [i for i in pieces if i != tokenizer.unk_token_id]
        if ids:
            rows.append(embeddings[ids].detach().mean(0).clone())
        else:
            rows.append(torch.randn(embeddings.size(1)) * scale)
    return nn.Parameter(torch.stack(rows).float())


def _ffn(width: int, hidden: int, classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


# ---------------------------------------------------------------------- the model
@dataclass(frozen=True)
class PLMarkerSettings(Settings):
    group_size: int = setting(64, "spans (marker pairs) per NER pass", at_least=1)
    re_group_size: int = setting(32, "objects per RE pass", at_least=1)
    encoder_batch: int = setting(32, "passes per encoder call", at_least=1)
    train_spans: int = setting(TRAIN_SPANS, "NER candidates per training window", at_least=1)
    dropout: float = setting(0.1, "in the classifier FFNs", at_least=0.0, at_most=1.0)
    shared_encoder: bool = setting(False, "one encoder for NER and RE instead of two copies")
    type_loss_weight: float = setting(1.0, "weight of the object-type loss", at_least=0.0)
    re_max_entities: int = setting(64, "predicted entities RE runs on per window", at_least=1)
    ner_model: str | None = setting(None, "a saved model whose entities RE runs on")
    outside_bias: float = setting(0.0, "taken off the no-entity logit (chosen on dev)")
    relation_bias: float = setting(0.0, "taken off the no-relation logit (chosen on dev)")


@dataclass
class PLMarkerBatch(Batch):
    #: NER passes packed into encoder calls (moved to the device as each call runs).
    ner_chunks: list[dict[str, torch.Tensor]] | None = None
    ner_spans: torch.Tensor | None = None  # (spans, 3): row, start, end
    ner_labels: torch.Tensor | None = None  # (spans,)
    #: With gold: the RE passes on the gold entities, their pairs and targets.
    re_gold: dict[str, Any] | None = None


@register("plmarker")
class PLMarker(SpanModel):
    Settings = PLMarkerSettings
    predicts_relations = True
    statistics = (
        Statistic(
            "re_entities_left_out",
            "{value:.0f} predicted entities left out of the relation step (re_max_entities)",
        ),
    )

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__(config, encoder, tokenizer)
        settings = self.settings
        embeddings = getattr(encoder, "embeddings", None)
        padding_idx = getattr(embeddings, "padding_idx", None)
        self._position_offset = padding_idx + 1 if isinstance(padding_idx, int) else 0
        check_marker_support(encoder, self._position_offset)
        # The RE pass inserts [S] and [/S] into the text: keep room for them.
        limit = max_window(tokenizer, encoder.config)
        self.window_size = min(self.window_size, limit - SOLID_MARKERS)
        self.re_encoder = None if settings.shared_encoder else copy.deepcopy(encoder)
        hidden = encoder.config.hidden_size
        dropout = settings.dropout
        n_labels = 1 + len(config.labels)
        self.inverse = inverse_classes(config.relation_labels, config.symmetric_relations)
        self.ner_markers = _marker_table(encoder, tokenizer, NER_MARKER_WORDS)
        self.re_markers = _marker_table(encoder, tokenizer, RE_MARKER_WORDS)
        self.ner_head = _ffn(READS * hidden, hidden, n_labels, dropout)
        self.re_head = _ffn(READS * hidden, hidden, 1 + max(self.inverse, default=0), dropout)
        self.type_head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_labels))

    def entity_source(self) -> str | None:
        return self.settings.ner_model

    @property
    def re_network(self) -> nn.Module:
        return self.encoder if self.re_encoder is None else self.re_encoder

    def head_parameter_names(self) -> set[str]:
        # The RE encoder is pretrained too: it trains at the encoder's learning rate.
        return {n for n in super().head_parameter_names() if not n.startswith("re_encoder.")}

    # ------------------------------------------------------------------ batching
    def collate(self, examples: Sequence[Example]) -> PLMarkerBatch:
        """NER passes (every candidate span, grouped), and with gold the RE passes on the
        gold entities. Passes of all examples are flattened; items know their example."""
        has_gold = all(ex.has_gold for ex in examples)
        given = all(ex.given_spans is not None for ex in examples)
        if self.settings.ner_model and not (has_gold or given):
            raise ModelError(
                "ner_model's entities are given to the examples by the pipeline",
                hint="run the model through nerx.pipeline (extract, predict_documents)",
            )
        batch = PLMarkerBatch(examples=list(examples), has_gold=has_gold)
        if has_gold or not given:
            batch.ner_chunks, batch.ner_spans, batch.ner_labels = self._ner_inputs(examples)
        if has_gold:
            entities = [[(s, e) for s, e, _ in ex.gold_spans] for ex in examples]
            batch.re_gold = self._re_inputs(examples, entities, gold=True)
        return batch

    def _ner_inputs(
        self, examples: Sequence[Example]
    ) -> tuple[list[dict[str, torch.Tensor]], torch.Tensor, torch.Tensor]:
        """The NER passes packed into encoder calls; each span's (row, start, end); labels."""
        group_size = self.settings.group_size
        # Training sees every gold span but a bounded sample of the negatives: a long
        # sentence has hundreds of candidates, and every pass is kept for the backward pass.
        most = self.settings.train_spans
        passes, spans, labels = [], [], []
        for row, ex in enumerate(examples):
            gold = {(s, e): label for s, e, label in ex.gold_spans}
            n = len(ex.input_ids)
            keep = None
            if self.training and ex.has_gold:
                keep = partial(sample_negatives, gold=gold, most=most)
            for group in pack_spans(ex.sentences, self.config.max_span_length, group_size, keep):
                anchors = [(ex.word_starts[s], ex.word_ends[e - 1]) for s, e in group]
                p = marker_pass(ex.input_ids, anchors, (START, END))
                p.reads = [
                    (len(spans) + k, [n + 2 * k, n + 2 * k + 1, first, last])
                    for k, (first, last) in enumerate(anchors)
                ]
                passes.append(p)
                spans.extend((row, s, e) for s, e in group)
                labels.extend(gold.get((s, e), 0) for s, e in group)
        return (
            self._pack(passes),
            torch.tensor(spans, dtype=torch.long).view(-1, 3),  # (row, start, end)
            torch.tensor(labels, dtype=torch.long),
        )

    def _re_inputs(
        self,
        examples: Sequence[Example],
        entities: Sequence[Sequence[tuple[int, int]]],
        *,
        gold: bool = False,
    ) -> dict[str, Any]:
        """One pass per subject (per ``re_group_size`` objects) over each example's
        ``entities`` (word spans); ``pairs`` are (row, subject, object) entity indices."""
        group_size = self.settings.re_group_size
        passes: list[Pass] = []
        pairs: list[tuple[int, int, int]] = []
        if self.config.relation_labels:
            for row, (ex, spans) in enumerate(zip(examples, entities, strict=True)):
                for subject in range(len(spans)):
                    others = [j for j in range(len(spans)) if j != subject]
                    for first in range(0, len(others), group_size):
                        objects = others[first : first + group_size]
                        passes.append(self._subject_pass(ex, spans, subject, objects, len(pairs)))
                        pairs.extend((row, subject, j) for j in objects)
        inputs: dict[str, Any] = {"chunks": self._pack(passes), "pairs": pairs}
        if gold:
            targets = [pair_targets(ex.gold_relations, self.inverse) for ex in examples]
            inputs["targets"] = torch.tensor(
                [targets[row].get((s, o), 0) for row, s, o in pairs], dtype=torch.long
            )
            inputs["object_types"] = torch.tensor(
                [examples[row].gold_spans[o][2] for row, _, o in pairs], dtype=torch.long
            )
        return inputs

    def _subject_pass(
        self,
        ex: Example,
        spans: Sequence[tuple[int, int]],
        subject: int,
        objects: Sequence[int],
        first_item: int,
    ) -> Pass:
        s, e = spans[subject]
        a, b = ex.word_starts[s], ex.word_ends[e - 1]  # the subject's first / last subword
        ids = ex.input_ids
        text = [*ids[:a], 0, *ids[a : b + 1], 0, *ids[b + 1 :]]
        solid = [-1] * len(text)
        solid[a], solid[b + 2] = SUBJECT_START, SUBJECT_END

        def shifted(i: int) -> int:
            return i + (i >= a) + (i > b)

        anchors = [
            (shifted(ex.word_starts[spans[o][0]]), shifted(ex.word_ends[spans[o][1] - 1]))
            for o in objects
        ]
        p = marker_pass(text, anchors, (OBJECT_START, OBJECT_END), solid)
        n = len(text)
        p.reads = [
            (first_item + k, [a, b + 2, n + 2 * k, n + 2 * k + 1]) for k in range(len(objects))
        ]
        return p

    def _pack(self, passes: Sequence[Pass]) -> list[dict[str, torch.Tensor]]:
        per_call = self.settings.encoder_batch
        return pack_passes(passes, per_call, self.tokenizer.pad_token_id or 0)

    # ------------------------------------------------------------------ forward
    def _read(self, network: nn.Module, table: torch.Tensor, chunks) -> torch.Tensor:
        """Every item's READS hidden states, in item order: (items, READS, H)."""
        picked, items = [], []
        for chunk in chunks:
            chunk = {k: v.to(table.device) for k, v in chunk.items()}
            hidden = encode_passes(network, table, chunk, self._position_offset)  # (P, L, H)
            picked.append(hidden[chunk["read_rows"].unsqueeze(1), chunk["read_tokens"]])
            items.append(chunk["read_items"])
        if not picked:
            return table.new_zeros((0, READS, table.size(1)))
        return torch.cat(picked)[torch.argsort(torch.cat(items))]

    def _re_scores(self, inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Relation logits (pairs, classes) and object-type logits (pairs, 1 + labels)."""
        reps = self._read(self.re_network, self.re_markers, inputs["chunks"])  # (N, 4, H)
        return self.re_head(reps.flatten(1)), self.type_head(reps[:, 2:].flatten(1))

    def forward(self, batch: PLMarkerBatch) -> Output:
        """The NER step: span logits (and with gold the NER + RE loss). The RE step runs on
        the entities decoded from it, so it belongs to :meth:`predict`."""
        tensors: dict[str, Any] = {}
        loss = None
        if batch.ner_chunks is not None:
            reps = self._read(self.encoder, self.ner_markers, batch.ner_chunks)  # (N, 4, H)
            tensors["ner_logits"] = self.ner_head(reps.flatten(1))  # (N, 1 + labels)
            tensors["ner_spans"] = batch.ner_spans
        if batch.has_gold:
            loss = F.cross_entropy(tensors["ner_logits"], batch.ner_labels)
            gold = batch.re_gold
            if gold["pairs"]:
                relation_logits, type_logits = self._re_scores(gold)
                weight = self.settings.type_loss_weight
                loss = loss + F.cross_entropy(relation_logits, gold["targets"].to(loss.device))
                loss = loss + weight * F.cross_entropy(
                    type_logits, gold["object_types"].to(loss.device)
                )
        stats: dict[str, float] = {}
        if not self.training:
            stats["ner_passes"] = float(sum(len(c["input_ids"]) for c in batch.ner_chunks or []))
        return Output(loss=loss, tensors=tensors, stats=stats)

    def predict(self, batch: PLMarkerBatch, stats: Counter[str] | None = None) -> list[Prediction]:
        """NER (or the given entities), then RE passes on the entities decoded from it."""
        output = self(batch)
        entities = self._batch_entities(output, batch)
        tensors, counters = self._relate(batch.examples, entities)
        output.tensors.update(tensors)
        output.stats.update(counters)
        if stats is not None:
            stats.update(output.stats)
        return self.decode(output, batch)

    def _relate(
        self, examples: Sequence[Example], entities: Sequence[Sequence[SpanPrediction]]
    ) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """RE passes on the entities: their logits (pairs, classes) and the (row, subject,
        object) entity indices of each pair (pairs, 3). Only the ``re_max_entities`` most
        confident entities of an example take part: an NER head early in training marks
        spans everywhere, and the RE cost grows with the square of the entities."""
        cap = self.settings.re_max_entities
        kept = [
            sorted(sorted(range(len(spans)), key=lambda i: -spans[i].score)[:cap])
            for spans in entities
        ]
        inputs = self._re_inputs(
            examples,
            [
                [(spans[i].start, spans[i].end) for i in keep]
                for spans, keep in zip(entities, kept, strict=True)
            ],
        )
        logits, _ = self._re_scores(inputs)
        pairs = [(row, kept[row][s], kept[row][o]) for row, s, o in inputs["pairs"]]
        tensors = {
            "re_logits": logits,
            "re_pairs": torch.tensor(pairs, dtype=torch.long, device=logits.device).view(-1, 3),
        }
        return tensors, {
            "re_passes": float(sum(len(c["input_ids"]) for c in inputs["chunks"])),
            "re_entities_left_out": float(
                sum(len(e) - len(k) for e, k in zip(entities, kept, strict=True))
            ),
        }

    # ------------------------------------------------------------------ entities
    def _batch_entities(self, output: Output, batch: PLMarkerBatch) -> list[list[SpanPrediction]]:
        """The entities of each example: those given with it (another model's, set by the
        pipeline), else the NER step's."""
        examples = batch.examples
        if examples and all(ex.given_spans is not None for ex in examples):
            return [sorted(ex.given_spans, key=lambda sp: (sp.start, sp.end)) for ex in examples]
        return self._entities(output.tensors, len(examples))

    def _entities(self, tensors: dict[str, Any], n_rows: int) -> list[list[SpanPrediction]]:
        """Each span's best label when it is not O; flat data keeps the most confident
        non-overlapping spans. Per example, in (start, end) order."""
        score, label = self.outside_biased(tensors["ner_logits"].float()).softmax(-1).max(-1)
        found: list[list[SpanPrediction]] = [[] for _ in range(n_rows)]
        for (row, s, e), k, p in zip(
            tensors["ner_spans"].tolist(), label.tolist(), score.tolist(), strict=True
        ):
            if k > 0:
                found[row].append(SpanPrediction(s, e, self.config.labels[k - 1], p))
        if not self.settings.nested:
            found = [greedy_flat(spans) for spans in found]
        return [sorted(spans, key=lambda sp: (sp.start, sp.end)) for spans in found]

    # ------------------------------------------------------------------ decoding
    def calibrate(self, dev_score) -> dict[str, Any]:
        """Choose on dev the bias off the "no entity" logit (unless the entities come from
        ``ner_model``), then the one off the "no relation" logit."""
        chosen = {}
        if not self.settings.ner_model:
            chosen.update(self.calibrate_outside_bias(dev_score))
        if self.config.relation_labels:
            chosen.update(self.tune(dev_score, "relation_bias", OUTSIDE_BIASES))
        return chosen

    def decode(self, output: Output, batch: PLMarkerBatch) -> list[Prediction]:
        """Entities, and relations when the output holds the RE step's logits (after
        :meth:`predict`; a bare forward has the NER step's only)."""
        n_rows = len(batch.examples)
        tensors = output.tensors
        entities = self._batch_entities(output, batch)
        pairs = tensors.get("re_pairs")
        pairs = [] if pairs is None else [tuple(pair) for pair in pairs.tolist()]
        relations = self._relations(tensors.get("re_logits"), pairs, n_rows)
        return [
            Prediction(spans=list(spans), relations=rels)
            for spans, rels in zip(entities, relations, strict=True)
        ]

    def _relations(
        self, logits: torch.Tensor | None, pairs: Sequence[tuple[int, int, int]], n_rows: int
    ) -> list[list[tuple[int, int, str, float]]]:
        """(head, tail, label, score) per example, one per entity pair at most."""
        found: list[list[tuple[int, int, str, float]]] = [[] for _ in range(n_rows)]
        index = {pair: k for k, pair in enumerate(pairs)}
        keys = [(row, a, b) for row, a, b in pairs if a < b and (row, b, a) in index]
        if logits is None or not keys:
            return found
        probs = self.outside_biased(logits.float(), "relation_bias").softmax(-1)
        labels = self.config.relation_labels
        device = probs.device
        choice, score = combine_directions(
            probs[torch.tensor([index[key] for key in keys], device=device)],
            probs[torch.tensor([index[(row, b, a)] for row, a, b in keys], device=device)],
            torch.tensor(self.inverse, dtype=torch.long, device=device),
        )
        for (row, a, b), c, p in zip(keys, choice.tolist(), score.tolist(), strict=True):
            if c == 0:
                continue
            r, reverse = (c - 1) % len(labels), c > len(labels)
            found[row].append((b, a, labels[r], p) if reverse else (a, b, labels[r], p))
        return found
