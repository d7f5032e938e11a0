"""``padellm``: PaDeLLM-NER, count-then-mention parallel decoding on a causal language model.

PaDeLLM-NER ("Parallel Decoding in Large Language Models for NER") fine-tunes an LLM so that
every mention is generated on its own instead of all of them in one long answer:

* step 1 asks, for every entity type at once, how many mentions the text holds: the prompt is
  the text, the type and a ``<num>`` slot, and the model writes the count;
* step 2 asks, for every (type, n) at once, for the n-th mention: the prompt goes on with the
  count and ``<mention n>``, and greedy decoding writes the mention;
* a text span predicted under several types is kept under the most probable one.

What we do, on any ``AutoModelForCausalLM`` (BERT-like networks are switched to decoders):

* **Training**: one sequence per (window, label):
  ``text <type> LABEL <num> COUNT <mention_1> m1 <mention_2> m2 <end>``; a label without mentions
  ends ``<num> 0 <end>``. Mentions are in text order; the loss covers what follows ``<num>``
  only. A block attention mask lets each ``<mention_n> mn`` block see the text and the count
  but not the other mentions, and every block starts at the position right after the count:
  one sequence trains exactly the branches step 2 runs (the paper's one-mention examples, with
  their shared part computed once). Mention n's last token learns to predict ``<mention_n+1>``
  (or ``<end>`` after the last one): the stop signal of step 2. A batch of B windows thus
  trains B x (labels + 1) sequences, as the paper's data has one example per label.
* **Inference**: step 1 runs the labels of every window of a batch as one batch; step 2 runs
  every (label, n) as one batch; greedy; a branch stops on its own at ``<end>`` or any
  ``<mention_k>`` and leaves the batch (its rows leave the KV cache).
* ``shared_prefix``: the text, identical for every label of a window, is encoded once per window
  and its KV cache copied to every branch; off, each branch re-encodes its whole prompt, as the
  paper does. Both give the same mentions.
* **Scores**: a mention's score is exp(mean log-probability) of its tokens and the stop token
  after it. A span found under two labels has the same text, hence the same number of tokens, so
  mean and sum rank the labels alike; the mean also gives a length-independent score in (0, 1].
* **Spans**: a mention goes back to the window's text: the n-th mention of a label takes the
  first occurrence (on word boundaries, whitespace and case ignored) that starts at or after the
  end of that label's previous mention, else the first one it has not used yet. A mention
  found nowhere is dropped and counted (``mentions_not_in_text``), never invented.
* **Autoregressive baseline** (``decoding="autoregressive"``): all pairs in one generated
  sequence, ``text <all> <type> PER <mention> Maria Lindqvist <type> LOC <mention> Bergen
  <end>`` (the paper's "PER: Maria Lindqvist; LOC: Bergen"). With ``train_both`` (default) each
  window trains both formats, so the two modes run on the same weights for speed comparisons.
* Windows: each window's prompt is its focus sentences only (no context), so every entity in
  a prompt is in its gold; the positions after the text are kept for the answer.

Hyperparameters (``config.hyper``):

* ``decoding`` (``"parallel"``): ``"parallel"`` or ``"autoregressive"``; read at every call.
* ``shared_prefix`` (True): encode each window's text once for all its branches.
* ``train_both`` (True): train the per-label sequences and the autoregressive one.
* ``max_mentions`` (32): ``<mention_1..M>`` tokens; counts are capped there. Fixed at creation.
* ``max_mention_tokens`` (16; set from the training data to twice the longest gold mention plus
  two): longest mention generated; a branch that does not stop by then is dropped.
* ``output_tokens`` (128, at most half the network's positions): positions kept after the text
  for the answer; also the autoregressive generation budget.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nerx.doc import Document
from nerx.errors import ConfigError, ModelError
from nerx.models.base import (
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
from nerx.models.encoder import Window, max_window, resolve_encoder_path

NUM, END, TYPE, ALL, MENTION = "<num>", "<end>", "<type>", "<all>", "<mention>"
DECODINGS = ("parallel", "autoregressive")
#: Tokens a count may take before its stop token (two digits, maybe a space piece).
COUNT_TOKENS = 4


def mention_token(n: int) -> str:
    """The marker of the n-th mention (1-based)."""
    return f"<mention_{n}>"


@dataclass
class PromptExample(Example):
    """A window whose prompt is its text, tokenised as one string (byte-level BPE tokenisers
    encode a word differently alone and after a space). Words therefore have no subword
    positions (``word_starts`` is empty); ``word_chars`` places them in ``text``."""

    text: str = ""
    word_chars: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class TrainingSequence:
    ids: list[int]
    targets: list[int]  # the token each position must predict; -100: no loss
    positions: list[int]
    blocks: list[int]  # 0: seen by every later token; k > 0: seen by block k only


@dataclass
class Generation:
    ids: list[int]  # generated tokens, the stop token excluded
    logprobs: list[float]  # one per generated token, the stop token's last when it stopped
    stopped: bool = False


@dataclass(frozen=True)
class PaDeLLMSettings(Settings):
    decoding: str = setting("parallel", "how mentions are generated", choices=DECODINGS)
    shared_prefix: bool = setting(True, "encode each window's text once for all its branches")
    train_both: bool = setting(True, "train the per-label and the autoregressive sequences")
    max_mentions: int = setting(32, "mention tokens; counts are capped there", at_least=1)
    max_mention_tokens: int = setting(16, "longest mention generated (learned)", at_least=1)
    output_tokens: int = setting(128, "positions kept after the text for the answer", at_least=1)
    dropout: float | None = setting(
        None, "dropout in the network (null: its own config's)", at_least=0.0, at_most=1.0
    )


@dataclass
class PaDeLLMBatch(Batch):
    # With gold: the training sequences, right-padded (``input_ids`` holds their tokens).
    targets: torch.Tensor | None = None  # (sequences, T) the token to predict; -100: none
    positions: torch.Tensor | None = None  # (sequences, T) position ids
    blocks: torch.Tensor | None = None  # (sequences, T) attention blocks; -1 on padding


@register("padellm")
class PaDeLLM(SpanModel):
    Settings = PaDeLLMSettings
    statistics = (
        Statistic("mentions_not_in_text", "{value:.0f} generated mentions not found in the text"),
        Statistic("mentions_unfinished", "{value:.0f} mentions cut off by max_mention_tokens"),
    )

    def __init__(self, config: ModelConfig, encoder: nn.Module, tokenizer) -> None:
        super().__init__(config, encoder, tokenizer)
        settings = self.settings
        self.max_mentions = settings.max_mentions
        self._decoding()  # a bad value fails here, not after training
        if settings.dropout is not None:
            for module in encoder.modules():
                if isinstance(module, nn.Dropout):
                    module.p = settings.dropout
        names = [NUM, END, TYPE, ALL, MENTION]
        names += [mention_token(n) for n in range(1, self.max_mentions + 1)]
        tokenizer.add_tokens(names, special_tokens=True)
        ids = dict(zip(names, tokenizer.convert_tokens_to_ids(names), strict=True))
        self.num_id, self.end_id, self.type_id = ids[NUM], ids[END], ids[TYPE]
        self.all_id, self.mention_id = ids[ALL], ids[MENTION]
        self.mention_ids = [ids[mention_token(n)] for n in range(1, self.max_mentions + 1)]
        self.label_ids: list[list[int]] = []
        for label in config.labels:
            self.label_ids.append(self._label_tokens(label))
        # Sized from the tokenizer alone, so a loaded model rebuilds the same shape from the
        # saved (pre-resize) encoder config and the saved tokenizer.
        if len(tokenizer) > encoder.get_input_embeddings().num_embeddings:
            _grow_vocabulary(encoder, len(tokenizer))
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.branch_stops = {*ids.values(), *eos} - {self.num_id}
        self.sequence_stops = {self.end_id, *eos}
        self.position_limit = max_window(tokenizer, encoder.config)
        self.output_tokens = min(settings.output_tokens, self.position_limit // 2)
        self.window_size = min(self.window_size, self.position_limit - self.output_tokens)

    @classmethod
    def load_backbone(cls, name_or_path: str, *, config_only: bool = False) -> nn.Module:
        """An ``AutoModelForCausalLM`` (pretrained, or fresh from its config)."""
        from transformers import AutoConfig, AutoModelForCausalLM

        path = resolve_encoder_path(name_or_path)
        try:
            config = AutoConfig.from_pretrained(path)
            if getattr(config, "is_decoder", True) is False:
                config.is_decoder = True  # BERT-like networks attend causally only as decoders
            if config_only:
                return AutoModelForCausalLM.from_config(config)
            return AutoModelForCausalLM.from_pretrained(path, config=config, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load a causal language model from {name_or_path!r}: {exc}",
                hint="padellm needs a network AutoModelForCausalLM loads (Llama, GPT-2, Qwen...)",
            ) from None

    def head_parameter_names(self) -> set[str]:
        """The input and output embeddings hold the new tokens' untrained rows (and the count,
        marker and stop predictions): they get the heads' larger learning rate. On the tiny
        random networks of the tests it cuts the epochs to overfit two documents by a third."""
        tables = {id(self.encoder.get_input_embeddings().weight)}
        output = self.encoder.get_output_embeddings()
        if output is not None:
            tables.add(id(output.weight))
        return {name for name, p in self.named_parameters() if id(p) in tables}

    def _label_tokens(self, label: str) -> list[int]:
        """The label's name as the tokenizer writes it; a name it cannot write (unknown
        pieces), or writes as it wrote an earlier label (a lower-casing tokenizer), gets a
        token of its own."""
        ids = self.tokenizer(label, add_special_tokens=False)["input_ids"]
        if not ids or self.tokenizer.unk_token_id in ids or ids in self.label_ids:
            token = f"<label {label}>"
            self.tokenizer.add_tokens([token], special_tokens=True)
            ids = [self.tokenizer.convert_tokens_to_ids(token)]
        return ids

    def _decoding(self) -> str:
        decoding = self.settings.decoding
        if decoding not in DECODINGS:
            raise ConfigError(
                f"unknown padellm decoding {decoding!r}", hint=f"use one of {', '.join(DECODINGS)}"
            )
        return decoding

    def learn_from_data(self, examples: Sequence[Example]) -> dict[str, Any]:
        longest = max(
            (len(m) for ex in examples for per_label in self.gold_mentions(ex) for m in per_label),
            default=0,
        )
        return {"max_mention_tokens": 2 * longest + 2} if longest else {}

    # ------------------------------------------------------------------ documents -> prompts
    def prepare(self, doc: Document, doc_index: int = 0, *, gold: bool = False) -> list[Example]:
        return [self._prompt(ex, doc) for ex in super().prepare(doc, doc_index, gold=gold)]

    def _prompt(self, ex: Example, doc: Document) -> PromptExample:
        """Cut the window to its focus sentences and tokenise their text as the prompt."""
        window = ex.window
        first, last = window.sentences[0][0], window.sentences[-1][1]
        shift = first - window.start
        chars = doc.tokens[first:last]
        base = chars[0][0]
        text = doc.text[base : chars[-1][1]]
        return PromptExample(
            doc_index=ex.doc_index,
            window=Window(
                first, last, window.focus_start, window.focus_end, window.sentences, window.piece
            ),
            input_ids=self._prefix + self.tokenizer(text, add_special_tokens=False)["input_ids"],
            word_starts=[],
            word_ends=[],
            sentences=[(s - shift, e - shift) for s, e in ex.sentences],
            focus=(ex.focus[0] - shift, ex.focus[1] - shift),
            gold_spans=[(s - shift, e - shift, k) for s, e, k in ex.gold_spans],
            gold_relations=ex.gold_relations,
            has_gold=ex.has_gold,
            text=text,
            word_chars=[(s - base, e - base) for s, e in chars],
        )

    def _text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def gold_mentions(self, ex: PromptExample) -> list[list[list[int]]]:
        """Token ids of each label's gold mentions, in text order, at most ``max_mentions``."""
        per_label: list[list[list[int]]] = [[] for _ in self.config.labels]
        for s, e, label_id in sorted(ex.gold_spans):
            mentions = per_label[label_id - 1]
            if len(mentions) < self.max_mentions:
                mentions.append(
                    self._text_ids(ex.text[ex.word_chars[s][0] : ex.word_chars[e - 1][1]])
                )
        return per_label

    # ------------------------------------------------------------------ training sequences
    def training_sequences(self, ex: PromptExample) -> list[TrainingSequence]:
        """The per-label sequences (when decoding in parallel or ``train_both``) and the
        autoregressive one (when decoding autoregressively or ``train_both``)."""
        both = self.settings.train_both
        decoding = self._decoding()
        per_label = self.gold_mentions(ex)
        sequences = []
        if both or decoding == "parallel":
            for label_index, mentions in enumerate(per_label):
                sequences.append(self._parallel_sequence(ex.input_ids, label_index, mentions))
        if both or decoding == "autoregressive":
            sequences.append(self._autoregressive_sequence(ex, per_label))
        return sequences

    def _label_head(self, label_index: int) -> list[int]:
        return [self.type_id, *self.label_ids[label_index], self.num_id]

    def _parallel_sequence(
        self, prompt: list[int], label_index: int, mentions: list[list[int]]
    ) -> TrainingSequence:
        head = self._label_head(label_index)
        count = self._text_ids(str(len(mentions)))
        blocks = [[self.mention_ids[n], *ids] for n, ids in enumerate(mentions)]
        # What follows the count, then each block: the next block's marker, or <end>.
        followers = [block[0] for block in blocks] + [self.end_id]
        shared = prompt + head + count
        seq = TrainingSequence(
            ids=list(shared),
            targets=[-100] * (len(prompt) + len(head) - 1) + count + [followers[0]],
            positions=list(range(len(shared))),
            blocks=[0] * len(shared),
        )
        for k, block in enumerate(blocks):
            seq.ids += block
            seq.targets += block[1:] + [followers[k + 1]]
            seq.positions += range(len(shared), len(shared) + len(block))
            seq.blocks += [k + 1] * len(block)
        return seq

    def _autoregressive_sequence(
        self, ex: PromptExample, per_label: list[list[list[int]]]
    ) -> TrainingSequence:
        body = [self.all_id]
        taken = [0] * len(per_label)
        for _, _, label_id in sorted(ex.gold_spans):
            k = label_id - 1
            if taken[k] < len(per_label[k]):
                body += [self.type_id, *self.label_ids[k], self.mention_id, *per_label[k][taken[k]]]
                taken[k] += 1
        ids = ex.input_ids + body
        targets = [-100] * len(ex.input_ids) + body[1:] + [self.end_id]
        n = min(len(ids), self.position_limit)  # what does not fit is not trained on
        return TrainingSequence(ids[:n], targets[:n], list(range(n)), [0] * n)

    # ------------------------------------------------------------------ the interface
    def collate(self, examples: Sequence[Example]) -> PaDeLLMBatch:
        has_gold = bool(examples) and all(ex.has_gold for ex in examples)
        if not has_gold:
            return PaDeLLMBatch(examples=list(examples))
        sequences = [s for ex in examples for s in self.training_sequences(ex)]
        return PaDeLLMBatch(examples=list(examples), has_gold=True, **_pack(sequences))

    def forward(self, batch: PaDeLLMBatch) -> Output:  # type: ignore[override]
        """The teacher-forced loss of a batch's gold sequences. Inference generates token by
        token, each step reading the last, so it is :meth:`predict`, not a forward pass
        whose tensors a decode reads."""
        if not batch.has_gold:
            raise ModelError(
                "padellm's forward pass scores gold sequences; it has none to score here",
                hint="call predict(batch) to generate the mentions",
            )
        return Output(loss=self._loss(batch))

    def predict(self, batch: PaDeLLMBatch, stats: Counter[str] | None = None) -> list[Prediction]:
        """Generate each label's mentions and place them in the text."""
        counters: dict[str, float] = {}
        examples = batch.examples
        if self._decoding() == "parallel":
            found = self.parallel_mentions(examples, counters)
        else:
            found = self.autoregressive_mentions(examples, counters)
        predictions = [
            self._predict_spans(ex, f, counters) for ex, f in zip(examples, found, strict=True)
        ]
        if stats is not None:
            stats.update(counters)
        return predictions

    def _loss(self, batch: PaDeLLMBatch) -> torch.Tensor:
        blocks = batch.blocks  # (sequences, T), -1 on padding
        length = blocks.size(1)
        causal = torch.ones(length, length, dtype=torch.bool, device=blocks.device).tril()
        visible = (blocks[:, :, None] == blocks[:, None, :]) | (blocks[:, None, :] == 0)
        allowed = causal & visible & (blocks >= 0)[:, None, :]  # (sequences, T, T)
        allowed |= torch.eye(length, dtype=torch.bool, device=blocks.device)
        keep = batch.targets != -100
        logits = self.encoder(
            input_ids=batch.input_ids,
            attention_mask=self._attention_mask(allowed),
            position_ids=batch.positions,
            use_cache=False,
            logits_to_keep=keep,  # only where there is a target: (targets, vocab)
        ).logits
        return F.cross_entropy(logits.float(), batch.targets[keep])

    # ------------------------------------------------------------------ generation
    def parallel_mentions(
        self, examples: Sequence[PromptExample], stats: dict[str, float] | None = None
    ) -> list[dict[int, list[Generation]]]:
        """Steps 1 and 2 for a batch: per example, label index -> its mentions (in n order)."""
        stats = stats if stats is not None else {}
        prefix = self.encode_prompts(examples) if self.settings.shared_prefix else None
        counts = self.count_step(examples, prefix, stats)
        return self.mention_step(examples, counts, prefix, stats)

    def count_step(
        self, examples: Sequence[PromptExample], prefix=None, stats: dict[str, float] | None = None
    ) -> list[list[Generation]]:
        """Step 1: every label of every example in one batch; per example, per label, the
        generated count tokens."""
        stats = stats if stats is not None else {}
        labels = range(len(self.config.labels))
        branches = [(row, self._label_head(k)) for row in range(len(examples)) for k in labels]
        counts = self._branches(examples, branches, prefix, COUNT_TOKENS, stats)
        _add(stats, "count_branches", len(branches))
        return [counts[row * len(labels) : (row + 1) * len(labels)] for row in range(len(examples))]

    def mention_step(
        self,
        examples: Sequence[PromptExample],
        counts: Sequence[Sequence[Generation]],
        prefix=None,
        stats: dict[str, float] | None = None,
    ) -> list[dict[int, list[Generation]]]:
        """Step 2: every (label, n) of every example in one batch, the prompt going on with
        the count tokens step 1 wrote."""
        stats = stats if stats is not None else {}
        branches, owners = [], []
        for row, per_label in enumerate(counts):
            for k, count in enumerate(per_label):
                for n in range(self.read_count(count, stats)):
                    branches.append((row, [*self._label_head(k), *count.ids, self.mention_ids[n]]))
                    owners.append((row, k))
        budget = self.settings.max_mention_tokens
        found: list[dict[int, list[Generation]]] = [{} for _ in examples]
        for (row, k), generation in zip(
            owners, self._branches(examples, branches, prefix, budget, stats), strict=True
        ):
            found[row].setdefault(k, []).append(generation)
        _add(stats, "mention_branches", len(branches))
        return found

    def read_count(self, count: Generation, stats: dict[str, float]) -> int:
        """The number step 1 wrote, at most ``max_mentions``; 0 (counted) if it is no number."""
        text = "".join(self.tokenizer.decode(count.ids, skip_special_tokens=True).split())
        if count.stopped and text.isascii() and text.isdigit():
            return min(int(text), self.max_mentions)
        _add(stats, "counts_unreadable", 1)
        return 0

    def autoregressive_mentions(
        self, examples: Sequence[PromptExample], stats: dict[str, float] | None = None
    ) -> list[dict[int, list[Generation]]]:
        """The baseline: one generated sequence per example, parsed into label -> mentions."""
        stats = stats if stats is not None else {}
        generations = self.generate(
            [ex.input_ids + [self.all_id] for ex in examples],
            stops=self.sequence_stops,
            max_new=self.output_tokens - 1,
            stats=stats,
        )
        return [self._parse_sequence(g, stats) for g in generations]

    def _parse_sequence(
        self, generation: Generation, stats: dict[str, float]
    ) -> dict[int, list[Generation]]:
        """``<type> LABEL <mention> TEXT`` pieces; a mention's log-probs include the token
        after it (``<type>`` or ``<end>``), as a parallel branch's include its stop token."""
        found: dict[int, list[Generation]] = {}
        ids, logprobs = generation.ids, generation.logprobs
        starts = [i for i, t in enumerate(ids) if t == self.type_id] + [len(ids)]
        for start, end in zip(starts, starts[1:], strict=False):
            piece = ids[start + 1 : end]
            if end == len(ids) and not generation.stopped:  # cut off by the budget
                _add(stats, "mentions_unfinished", 1)
                continue
            cut = piece.index(self.mention_id) if self.mention_id in piece else -1
            if cut < 0 or piece[:cut] not in self.label_ids:
                _add(stats, "mentions_malformed", 1)
                continue
            first = start + 1 + cut + 1
            found.setdefault(self.label_ids.index(piece[:cut]), []).append(
                Generation(ids[first:end], logprobs[first : end + 1], stopped=True)
            )
        return found

    def encode_prompts(self, examples: Sequence[PromptExample]):
        """The shared prefix: every example's prompt encoded once. (KV cache, key mask)."""
        _, cache, keys, _ = self._prefill([ex.input_ids for ex in examples], None, None)
        return cache, keys

    def _branches(self, examples, branches, prefix, max_new: int, stats) -> list[Generation]:
        """Greedy continuations of (example row, prompt tail) branches: from the example's
        cached prefix when there is one, else from its whole prompt."""
        if not branches:
            return []
        if prefix is None:
            prompts = [examples[row].input_ids + tail for row, tail in branches]
            return self.generate(prompts, stops=self.branch_stops, max_new=max_new, stats=stats)
        cache, keys = prefix
        rows = torch.tensor([row for row, _ in branches], device=keys.device)
        past = copy.deepcopy(cache)  # step 1 and step 2 both start from the prefix alone
        past.batch_select_indices(rows)  # rows repeat: one copy of the prefix per branch
        tails = [tail for _, tail in branches]
        return self.generate(
            tails, past, keys[rows], stops=self.branch_stops, max_new=max_new, stats=stats
        )

    def generate(
        self,
        prompts: Sequence[list[int]],
        past=None,
        past_keys: torch.Tensor | None = None,
        *,
        stops: Iterable[int],
        max_new: int,
        stats: dict[str, float] | None = None,
    ) -> list[Generation]:
        """Greedy decoding of a batch of prompts (continuing ``past``, a KV cache whose key
        mask is ``past_keys``, when given). A row leaves the batch when it writes a token of
        ``stops`` or ``max_new`` tokens; the rows left run on alone."""
        stats = stats if stats is not None else {}
        logits, cache, keys, positions = self._prefill(prompts, past, past_keys)
        results = [Generation([], []) for _ in prompts]
        active = torch.arange(len(prompts), device=keys.device)
        next_position = positions[:, -1]
        stop_ids = torch.tensor(sorted(stops), device=keys.device)
        max_new = min(max_new, self.position_limit - int(next_position.max()) - 1)
        for step in range(max(max_new, 0)):
            logprob, token = logits.float().log_softmax(-1).max(-1)  # (rows,)
            stopped = torch.isin(token, stop_ids)
            for row, t, lp, done in zip(
                active.tolist(), token.tolist(), logprob.tolist(), stopped.tolist(), strict=True
            ):
                results[row].logprobs.append(lp)
                if done:
                    results[row].stopped = True
                else:
                    results[row].ids.append(t)
            _add(stats, "generated_tokens", len(token))
            going = (~stopped).nonzero().squeeze(1)
            if step == max_new - 1 or len(going) == 0:
                break
            if len(going) < len(active):  # finished rows leave the batch and the cache
                cache.batch_select_indices(going)
                active, keys, next_position = active[going], keys[going], next_position[going]
            keys = torch.cat([keys, keys.new_ones((len(active), 1))], 1)
            next_position = next_position + 1
            out = self._lm(token[going][:, None], keys[:, None, :], next_position[:, None], cache)
            logits, cache = out.logits[:, -1], _cache_of(out)
        return results

    def _prefill(self, prompts, past, past_keys):
        """Run left-padded ``prompts`` after ``past``: (last logits, cache, key mask,
        positions). Padding, also between a cached prefix and its tail, is masked out, and
        positions count real tokens only, so every row reads as if it were alone."""
        device = self.device
        longest = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(prompts), longest), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), longest), dtype=torch.bool)
        for row, prompt in enumerate(prompts):
            ids[row, longest - len(prompt) :] = torch.tensor(prompt)
            mask[row, longest - len(prompt) :] = True
        ids, mask = ids.to(device), mask.to(device)
        keys = mask if past_keys is None else torch.cat([past_keys, mask], 1)  # (rows, K)
        positions = (keys.long().cumsum(1) - 1).clamp(min=0)[:, -longest:]  # (rows, S)
        offset = keys.size(1) - longest
        causal = torch.ones(longest, keys.size(1), dtype=torch.bool, device=device).tril(offset)
        allowed = causal & keys[:, None, :]  # (rows, S, K)
        # A padding query sees itself, so no attention row is empty (no NaN in the cache).
        allowed[:, torch.arange(longest), offset + torch.arange(longest)] = True
        out = self._lm(ids, allowed, positions, past)
        return out.logits[:, -1], _cache_of(out), keys, positions

    def _lm(self, ids, allowed, positions, past):
        # transformers 5 names the KV cache argument ``cache``; earlier releases ``past_key_values``.
        cache_argument = "cache" if _takes_cache(type(self.encoder)) else "past_key_values"
        return self.encoder(
            input_ids=ids,
            attention_mask=self._attention_mask(allowed),
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **{cache_argument: past},
        )

    def _attention_mask(self, allowed: torch.Tensor) -> torch.Tensor:
        """(rows, queries, keys) bool -> the 4D mask the network's attention takes: boolean
        for SDPA, additive for eager attention (which adds the mask to its scores)."""
        allowed = allowed[:, None]
        if getattr(self.encoder.config, "_attn_implementation", "sdpa") == "sdpa":
            return allowed
        dtype = self.encoder.dtype
        return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
            ~allowed, torch.finfo(dtype).min
        )

    # ------------------------------------------------------------------ mentions -> spans
    def _predict_spans(
        self, ex: PromptExample, found: dict[int, list[Generation]], stats: dict[str, float]
    ) -> Prediction:
        mentions: dict[str, list[tuple[str, float]]] = {}
        for k, generations in sorted(found.items()):
            for g in generations:
                if not g.stopped:  # cut off by the budget: an unfinished mention
                    _add(stats, "mentions_unfinished", 1)
                    continue
                text = self.tokenizer.decode(g.ids, skip_special_tokens=True)
                score = math.exp(sum(g.logprobs) / len(g.logprobs))
                mentions.setdefault(self.config.labels[k], []).append((text, score))
        _add(stats, "mentions", sum(len(m) for m in mentions.values()))
        placed, missing = place_mentions(ex.text, ex.word_chars, mentions)
        kept, duplicates = dedupe(placed)
        _add(stats, "mentions_not_in_text", missing)
        _add(stats, "mentions_duplicate", duplicates)
        return Prediction(spans=kept)


def _grow_vocabulary(encoder: nn.Module, size: int) -> None:
    """Embedding rows for the new tokens, drawn like the old rows (their mean and spread) from
    a fixed seed: deterministic, so the network a compact model directory is stored against
    is rebuilt exactly."""
    old = encoder.get_input_embeddings().num_embeddings
    encoder.resize_token_embeddings(size, mean_resizing=False)
    output = encoder.get_output_embeddings()
    weights = [encoder.get_input_embeddings().weight] + ([output.weight] if output else [])
    tables = {id(t): t for t in weights}  # tied tables once
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for table in tables.values():
            rows = table[:old]
            noise = torch.randn((size - old, table.size(1)), generator=generator)
            table[old:] = rows.mean(0) + rows.std(0) * noise.to(table.device, table.dtype)


def _add(stats: dict[str, float], key: str, value: float) -> None:
    stats[key] = stats.get(key, 0) + value


def _pack(sequences: list[TrainingSequence]) -> dict[str, torch.Tensor]:
    """Right-padded tensors of training sequences; blocks are -1 on padding."""
    longest = max(len(s.ids) for s in sequences)
    shape = (len(sequences), longest)
    tensors = {
        "input_ids": torch.zeros(shape, dtype=torch.long),
        "targets": torch.full(shape, -100, dtype=torch.long),
        "positions": torch.zeros(shape, dtype=torch.long),
        "blocks": torch.full(shape, -1, dtype=torch.long),
    }
    for row, seq in enumerate(sequences):
        n = len(seq.ids)
        tensors["input_ids"][row, :n] = torch.tensor(seq.ids)
        tensors["targets"][row, :n] = torch.tensor(seq.targets)
        tensors["positions"][row, :n] = torch.tensor(seq.positions)
        tensors["blocks"][row, :n] = torch.tensor(seq.blocks)
    return tensors


# -------------------------------------------------------------------------- span mapping
def _squeeze(text: str) -> tuple[str, list[int]]:
    """``text`` without whitespace, lower-cased, and each kept character's index in ``text``:
    decoded mentions may differ from the text in spacing ("Portland , Oregon") and case."""
    chars, where = [], []
    for i, ch in enumerate(text):
        if not ch.isspace():
            for c in ch.lower():
                chars.append(c)
                where.append(i)
    return "".join(chars), where


def _occurrences(
    squeezed: str, where: list[int], mention: str, starts: dict[int, int], ends: dict[int, int]
) -> list[tuple[int, int]]:
    """Word spans (end exclusive) where ``mention`` occurs on word boundaries, in text order."""
    key, _ = _squeeze(mention)
    spans = []
    at = squeezed.find(key) if key else -1
    while at >= 0:
        start, end = where[at], where[at + len(key) - 1] + 1
        if start in starts and end in ends:
            spans.append((starts[start], ends[end]))
        at = squeezed.find(key, at + 1)
    return spans


def place_mentions(
    text: str,
    word_chars: Sequence[tuple[int, int]],
    mentions: dict[str, list[tuple[str, float]]],
) -> tuple[list[SpanPrediction], int]:
    """Map each label's mentions (text, score), in n order, to word spans of ``text``, whose
    words lie at ``word_chars``. The n-th mention takes the first occurrence starting at or
    after the end of the label's previous mention, else the first one the label has not
    taken (same-label nesting); with none, it is dropped. Returns (spans, dropped)."""
    starts = {s: i for i, (s, _) in enumerate(word_chars)}
    ends = {e: i + 1 for i, (_, e) in enumerate(word_chars)}
    squeezed, where = _squeeze(text)
    placed, dropped = [], 0
    for label, found in mentions.items():
        taken: set[tuple[int, int]] = set()
        after = 0
        for mention, score in found:
            free = [
                span
                for span in _occurrences(squeezed, where, mention, starts, ends)
                if span not in taken
            ]
            pick = next((span for span in free if span[0] >= after), free[0] if free else None)
            if pick is None:
                dropped += 1
                continue
            taken.add(pick)
            after = pick[1]
            placed.append(SpanPrediction(pick[0], pick[1], label, score))
    return placed, dropped


def dedupe(spans: Sequence[SpanPrediction]) -> tuple[list[SpanPrediction], int]:
    """One label per word span: the most probable. Returns (kept in text order, dropped)."""
    best: dict[tuple[int, int], SpanPrediction] = {}
    for span in spans:
        key = (span.start, span.end)
        if key not in best or span.score > best[key].score:
            best[key] = span
    kept = sorted(best.values(), key=lambda s: (s.start, s.end))
    return kept, len(spans) - len(kept)


@functools.cache
def _takes_cache(network_class: type) -> bool:
    """Does the network's ``forward`` take the KV cache as ``cache`` (transformers 5)?"""
    return "cache" in inspect.signature(network_class.forward).parameters


def _cache_of(output):
    """The KV cache of a forward pass, under its transformers 5 name or the older one."""
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values
