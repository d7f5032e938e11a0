"""PaDeLLM-NER (``padellm``) on tiny random causal LMs: the training reformulation, batched
count / mention decoding against one-at-a-time greedy decoding with plain model calls, the
shared prefix, de-duplication, span mapping, and the contract (overfit two documents, save ->
load identical)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import nerx.models.padellm  # noqa: F401  (registers the kind)
from nerx.doc import Document, TextPreparer
from nerx.io import read
from nerx.models import ModelConfig, load_model, model_class, save_model
from nerx.models.base import SpanPrediction
from nerx.models.padellm import Generation, dedupe, place_mentions
from nerx.pipeline import predict_documents
from nerx.scoring import evaluate
from nerx.training import train
from tests.conftest import overfit_settings
from tests.tiny_causal_lm import build_tiny_causal_lm

SAMPLES = Path(__file__).resolve().parents[1] / "sample_corpora"
LABELS = ["LOC", "MISC", "ORG", "PER"]
HAND_WORDS = ["Ruiz", "thanked", "Ana", "Ruiz", "in", "Lyon", "."]


pytestmark = pytest.mark.usefixtures("one_thread")


def news() -> dict[str, Document]:
    docs = {doc.id: doc for doc in read(SAMPLES / "news.jsonl")}
    TextPreparer()(list(docs.values()))
    return docs


def build_lm(arch: str, factory, **shape) -> str:
    """A random 2-layer causal LM knowing every word of the sample corpus and the labels."""
    texts = [doc.text for doc in news().values()] + [" ".join(HAND_WORDS)]
    path = factory.mktemp(f"tiny-{arch}")
    return str(build_tiny_causal_lm(path, texts, arch=arch, extra=LABELS, **shape))


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny_lm(request, tmp_path_factory) -> str:
    """Rotary (Llama) and learned (GPT-2) positions: both must see padding as absent."""
    return build_lm(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory) -> str:
    # Wide enough to learn both decoding modes of the sample documents on the same weights.
    return build_lm("llama", tmp_path_factory, hidden=64)


def new_model(encoder: str, **hyper):
    config = ModelConfig(kind="padellm", labels=LABELS, encoder=encoder, hyper=hyper)
    return model_class("padellm").create(config).eval()


def ids(model, tokens: list[str]) -> list[int]:
    found = model.tokenizer.convert_tokens_to_ids(tokens)
    assert model.tokenizer.unk_token_id not in found, tokens
    return found


def tokens(model, token_ids: list[int]) -> list[str]:
    return model.tokenizer.convert_ids_to_tokens(token_ids)


# --------------------------------------------------------------------------- reformulation
def hand_document() -> Document:
    return Document.from_words(
        "hand",
        HAND_WORDS,
        sentence_lengths=[len(HAND_WORDS)],
        token_entities=[(0, 1, "PER"), (2, 4, "PER"), (5, 6, "LOC")],
    )


PROMPT = ["<s>", *HAND_WORDS]
#: (label, the sequence's tokens, what each position after the prompt's label part predicts).
EXPECTED_PARALLEL = [
    (
        "LOC",
        ["<type>", "LOC", "<num>", "1", "<mention_1>", "Lyon"],
        ["1", "<mention_1>", "Lyon", "<end>"],
    ),
    ("MISC", ["<type>", "MISC", "<num>", "0"], ["0", "<end>"]),
    ("ORG", ["<type>", "ORG", "<num>", "0"], ["0", "<end>"]),
    (
        "PER",
        ["<type>", "PER", "<num>", "2", "<mention_1>", "Ruiz", "<mention_2>", "Ana", "Ruiz"],
        ["2", "<mention_1>", "Ruiz", "<mention_2>", "Ana", "Ruiz", "<end>"],
    ),
]
EXPECTED_STRUCTURED = ["<all>", "<type>", "PER", "<mention>", "Ruiz", "<type>", "PER", "<mention>"]
EXPECTED_STRUCTURED += ["Ana", "Ruiz", "<type>", "LOC", "<mention>", "Lyon"]


def test_reformulation_writes_one_sequence_per_label_and_a_structured_one(tiny_lm):
    model = new_model(tiny_lm)
    (example,) = model.prepare(hand_document(), gold=True)
    sequences = model.training_sequences(example)
    assert len(sequences) == len(LABELS) + 1

    for seq, (_, tail, targets) in zip(sequences, EXPECTED_PARALLEL, strict=False):
        assert tokens(model, seq.ids) == PROMPT + tail
        # No loss on the text, the type or <num>: the count is the first target.
        assert seq.targets[: len(PROMPT) + 2] == [-100] * (len(PROMPT) + 2)
        assert tokens(model, seq.targets[len(PROMPT) + 2 :]) == targets
    per = sequences[LABELS.index("PER")]
    shared = len(PROMPT) + 4  # text, <type> PER <num> 2
    # Both mention blocks start right after the count; block 2 is not block 1's continuation.
    assert per.positions == list(range(shared)) + [shared, shared + 1] + [
        shared,
        shared + 1,
        shared + 2,
    ]
    assert per.blocks == [0] * shared + [1, 1] + [2, 2, 2]

    structured = sequences[-1]
    assert tokens(model, structured.ids) == PROMPT + EXPECTED_STRUCTURED
    assert structured.targets[: len(PROMPT)] == [-100] * len(PROMPT)
    assert tokens(model, structured.targets[len(PROMPT) :]) == EXPECTED_STRUCTURED[1:] + ["<end>"]


def test_one_sequence_per_label_trains_exactly_the_separate_branches(tiny_lm):
    """The packed loss (block mask, shared positions) equals the cross-entropy of every branch
    run on its own with plain model calls: count and mention 1 after the prompt; mention 2
    after the prompt and the count only; the structured sequence as it is."""
    model = new_model(tiny_lm)
    (example,) = model.prepare(hand_document(), gold=True)
    branches = []  # (tokens, index of the first position with a target, target tokens)
    for _, tail, targets in EXPECTED_PARALLEL[:3]:
        branches.append((PROMPT + tail, len(PROMPT) + 2, targets))
    per_shared = ["<type>", "PER", "<num>", "2"]
    branches.append(
        (
            PROMPT + per_shared + ["<mention_1>", "Ruiz"],
            len(PROMPT) + 2,
            ["2", "<mention_1>", "Ruiz", "<mention_2>"],
        )
    )
    branches.append(
        (
            PROMPT + per_shared + ["<mention_2>", "Ana", "Ruiz"],
            len(PROMPT) + 4,
            ["Ana", "Ruiz", "<end>"],
        )
    )
    branches.append(
        (PROMPT + EXPECTED_STRUCTURED, len(PROMPT), EXPECTED_STRUCTURED[1:] + ["<end>"])
    )
    losses = []
    with torch.no_grad():
        for branch, first, targets in branches:
            logits = model.encoder(input_ids=torch.tensor([ids(model, branch)])).logits[0]
            picked = logits[first : first + len(targets)]
            losses.append(
                F.cross_entropy(picked, torch.tensor(ids(model, targets)), reduction="none")
            )
        expected = torch.cat(losses).mean()
        got = model(model.collate([example])).loss
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_a_label_the_tokenizer_cannot_write_gets_its_own_token_and_survives_save_load(
    tiny_llama, tmp_path
):
    config = ModelConfig(kind="padellm", labels=["LOC", "Xyzzy"], encoder=tiny_llama)
    model = model_class("padellm").create(config)
    assert tokens(model, model.label_ids[0]) == ["LOC"]
    assert tokens(model, model.label_ids[1]) == ["<label Xyzzy>"]
    rows = model.encoder.get_input_embeddings().num_embeddings
    assert rows == len(model.tokenizer)  # the new tokens have embedding rows
    reloaded = load_model(save_model(model, tmp_path / "saved"))
    assert reloaded.label_ids == model.label_ids
    assert reloaded.encoder.get_input_embeddings().num_embeddings == rows
    state, loaded = model.state_dict(), reloaded.state_dict()
    assert all(torch.equal(state[k], loaded[k]) for k in state)


# --------------------------------------------------------------------------- batched decoding
def greedy_alone(model, prompt: list[int], stops: set[int], max_new: int) -> tuple[list[int], bool]:
    """Greedy decoding of one sequence with plain full-sequence model calls (no cache)."""
    sequence, out = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new):
            token = int(model.encoder(input_ids=torch.tensor([sequence])).logits[0, -1].argmax())
            if token in stops:
                return out, True
            out.append(token)
            sequence.append(token)
    return out, False


def stop_ids(model) -> set[int]:
    names = ["<end>", "<type>", "<all>", "<mention>"] + [f"<mention_{n}>" for n in range(1, 33)]
    return set(ids(model, names)) | {model.tokenizer.eos_token_id}


def head(model, label: str) -> list[int]:
    return ids(model, ["<type>", label, "<num>"])


def read_count(model, count_ids: list[int], stopped: bool) -> int:
    text = model.tokenizer.decode(count_ids, skip_special_tokens=True).replace(" ", "")
    return int(text) if stopped and text.isdigit() else 0


def alone_reference(model, example, counts: dict[str, list[int]] | None = None):
    """Per label: (count ids, [mention ids...]) decoded one sequence at a time; ``counts``
    forces the count tokens instead of decoding them."""
    stops, budget = stop_ids(model), int(model.config.hyper.get("max_mention_tokens", 16))
    found = {}
    for label in LABELS:
        prompt = example.input_ids + head(model, label)
        if counts is None:
            count, stopped = greedy_alone(model, prompt, stops, 4)
        else:
            count, stopped = counts[label], True
        mention_tokens = [f"<mention_{n}>" for n in range(1, read_count(model, count, stopped) + 1)]
        mentions = [
            greedy_alone(model, prompt + count + ids(model, [m]), stops, budget)
            for m in mention_tokens
        ]
        found[label] = (count, mentions)
    return found


def batched(model, examples, counts: dict[str, list[int]] | None = None):
    """The same through the model's batched step 1 and step 2."""
    prefix = (
        model.encode_prompts(examples) if model.config.hyper.get("shared_prefix", True) else None
    )
    if counts is None:
        steps = model.count_step(examples, prefix)
    else:
        steps = [[Generation(counts[label], [0.0], True) for label in LABELS] for _ in examples]
    mentions = model.mention_step(examples, steps, prefix)
    return [
        {
            label: (steps[row][k].ids, [(g.ids, g.stopped) for g in mentions[row].get(k, [])])
            for k, label in enumerate(LABELS)
        }
        for row in range(len(examples))
    ]


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_batched_steps_equal_one_at_a_time_on_random_weights(tiny_lm, shared_prefix):
    # Random weights write no readable count, so step 2 gets counts by hand (2 PER, 1 LOC...).
    model = new_model(tiny_lm, shared_prefix=shared_prefix, max_mention_tokens=6)
    counts = {label: ids(model, [str(n)]) for label, n in zip(LABELS, [1, 0, 3, 2], strict=True)}
    docs = news()
    examples = [ex for doc in docs.values() for ex in model.prepare(doc)]
    assert len({len(ex.input_ids) for ex in examples}) > 1, "rows of different lengths pad"
    with torch.inference_mode():
        got = batched(model, examples, counts)
    for row, example in enumerate(examples):
        assert got[row] == alone_reference(model, example, counts)
    # Step 1 alone, on the same random weights.
    with torch.inference_mode():
        steps = model.count_step(
            examples, model.encode_prompts(examples) if shared_prefix else None
        )
    stops = stop_ids(model)
    for row, example in enumerate(examples):
        for k, label in enumerate(LABELS):
            expected = greedy_alone(model, example.input_ids + head(model, label), stops, 4)
            assert (steps[row][k].ids, steps[row][k].stopped) == expected


# --------------------------------------------------------------------------- span mapping
def test_repeated_mentions_take_the_next_unused_occurrence_and_missing_ones_are_dropped():
    text = "Ruiz met Ana Ruiz and Ruiz in Portland, Oregon."
    words = ["Ruiz", "met", "Ana", "Ruiz", "and", "Ruiz", "in", "Portland", ",", "Oregon", "."]
    word_chars, at = [], 0
    for word in words:
        at = text.index(word, at)
        word_chars.append((at, at + len(word)))
        at += len(word)
    mentions = {
        # 1st "Ruiz" at word 0; "Ana Ruiz"; the 3rd "Ruiz" after it, not the one inside it;
        # a 4th only has the nested one left; a 5th has none; "Smith" is not in the text.
        "PER": [
            ("Ruiz", 0.9),
            ("Ana Ruiz", 0.8),
            ("Ruiz", 0.7),
            ("Ruiz", 0.6),
            ("Ruiz", 0.5),
            ("Smith", 0.4),
        ],
        # Decoded spacing and case differ from the text; "Port" is no whole word.
        "LOC": [("portland , oregon", 0.3), ("Port", 0.2)],
    }
    placed, dropped = place_mentions(text, word_chars, mentions)
    assert [(s.start, s.end, s.label, s.score) for s in placed] == [
        (0, 1, "PER", 0.9),
        (2, 4, "PER", 0.8),
        (5, 6, "PER", 0.7),
        (3, 4, "PER", 0.6),
        (7, 10, "LOC", 0.3),
    ]
    assert dropped == 3


def test_mentions_missing_from_the_text_are_counted_in_the_output_stats(tiny_llama):
    model = new_model(tiny_llama)
    (example,) = model.prepare(hand_document())
    found = {
        LABELS.index("PER"): [
            Generation(ids(model, ["Ana", "Ruiz"]), [-0.1, -0.1, -0.1], True),
            Generation(ids(model, ["Bergen"]), [-0.1, -0.1], True),  # not in this text
            Generation(ids(model, ["Ruiz", "Ruiz"]), [-0.1, -0.1], False),  # cut off: unfinished
        ]
    }
    stats: dict[str, float] = {}
    prediction = model._predict_spans(example, found, stats)
    assert [(s.start, s.end, s.label) for s in prediction.spans] == [(2, 4, "PER")]
    assert stats["mentions_not_in_text"] == 1
    assert stats["mentions_unfinished"] == 1


def test_the_structured_sequence_parses_into_mentions_per_label(tiny_llama):
    model = new_model(tiny_llama)
    written = ["<type>", "PER", "<mention>", "Ana", "Ruiz", "<type>", "Lyon", "<type>", "LOC"]
    written += ["<mention>", "Lyon", "<type>", "PER", "<mention>", "Ruiz"]
    logprobs = [-0.01 * (i + 1) for i in range(len(written) + 1)]  # the last: <end>'s
    stats: dict[str, float] = {}
    found = model._parse_sequence(Generation(ids(model, written), logprobs, True), stats)
    got = {LABELS[k]: [(tokens(model, g.ids), g.logprobs) for g in gs] for k, gs in found.items()}
    assert got == {
        # A mention's log-probs: its tokens and the token after it (<type>, or <end>).
        "PER": [(["Ana", "Ruiz"], logprobs[3:6]), (["Ruiz"], logprobs[14:16])],
        "LOC": [(["Lyon"], logprobs[10:12])],
    }
    assert stats == {"mentions_malformed": 1}  # "<type> Lyon" has no label and no <mention>
    cut_off = model._parse_sequence(Generation(ids(model, written), logprobs[:-1], False), stats)
    assert len(cut_off[LABELS.index("PER")]) == 1 and stats["mentions_unfinished"] == 1


# --------------------------------------------------------------------------- de-duplication
def test_dedupe_keeps_the_most_probable_label_per_span():
    spans = [
        SpanPrediction(0, 2, "ORG", 0.6),
        SpanPrediction(0, 2, "PER", 0.9),
        SpanPrediction(3, 4, "PER", 0.55),
        SpanPrediction(5, 6, "LOC", 0.4),
        SpanPrediction(3, 4, "LOC", 0.7),
        SpanPrediction(3, 5, "ORG", 0.1),  # overlapping, not the same span: kept
    ]
    kept, dropped = dedupe(spans)
    assert [(s.start, s.end, s.label, s.score) for s in kept] == [
        (0, 2, "PER", 0.9),
        (3, 4, "LOC", 0.7),
        (3, 5, "ORG", 0.1),
        (5, 6, "LOC", 0.4),
    ]
    assert dropped == 2


def test_a_span_under_two_labels_keeps_the_higher_sequence_probability(tiny_llama):
    model = new_model(tiny_llama)
    (example,) = model.prepare(hand_document())
    lyon = ids(model, ["Lyon"])
    found = {  # mean log-probs: LOC -0.5, ORG -0.2 -> ORG wins, score exp(-0.2)
        LABELS.index("LOC"): [Generation(lyon, [-0.9, -0.1], True)],
        LABELS.index("ORG"): [Generation(lyon, [-0.3, -0.1], True)],
    }
    stats: dict[str, float] = {}
    prediction = model._predict_spans(example, found, stats)
    assert [(s.start, s.end, s.label) for s in prediction.spans] == [(5, 6, "ORG")]
    assert prediction.spans[0].score == pytest.approx(math.exp(-0.2))
    assert stats["mentions_duplicate"] == 1


# --------------------------------------------------------------------------- the contract
@pytest.fixture(scope="module")
def trained(tiny_llama, tmp_path_factory):
    """A padellm model overfit on news-001 and news-002 (with "Oslo" nested in "University of
    Oslo"), saved by the shared training loop."""
    docs = news()
    train_docs = [docs["news-001"], docs["news-002"]]
    out = tmp_path_factory.mktemp("padellm")
    result = train(
        train_docs,
        train_docs,
        kind="padellm",
        encoder=tiny_llama,
        output=out,
        settings=overfit_settings(),
    )
    return out, train_docs, result


def entity_f1(model, docs) -> float:
    return evaluate(docs, predict_documents(model, docs)).entities.f1


def rows(docs) -> list[list[tuple]]:
    return [[(e.start, e.end, e.label, e.score) for e in doc.entities] for doc in docs]


def test_overfits_two_documents_in_both_modes_on_the_same_weights(trained):
    out, docs, result = trained
    model = load_model(out)
    assert result.best_score == 100.0
    assert entity_f1(model, docs) == 1.0
    found = {
        (docs[0].text[e.start : e.end], e.label) for e in predict_documents(model, docs)[0].entities
    }
    assert {("University of Oslo", "ORG"), ("Oslo", "LOC")} <= found
    model.config.hyper["decoding"] = "autoregressive"
    assert entity_f1(model, docs) == 1.0
    assert all(0.0 < e.score <= 1.0 for doc in predict_documents(model, docs) for e in doc.entities)


def test_shared_prefix_on_and_off_find_the_same_mentions(trained):
    out, _, _ = trained
    model = load_model(out)
    docs = list(news().values())  # the unseen documents make the model write varied output
    with_prefix = rows(predict_documents(model, docs))
    model.config.hyper["shared_prefix"] = False
    without = rows(predict_documents(model, docs))
    assert any(with_prefix)
    assert [[r[:3] for r in doc] for doc in without] == [
        [r[:3] for r in doc] for doc in with_prefix
    ]
    assert [r[3] for doc in without for r in doc] == pytest.approx(
        [r[3] for doc in with_prefix for r in doc], abs=1e-4
    )


def test_batched_steps_equal_one_at_a_time_on_trained_weights(trained):
    out, _, _ = trained
    model = load_model(out)
    examples = [ex for doc in news().values() for ex in model.prepare(doc)]
    with torch.inference_mode():
        got = batched(model, examples)
    for row, example in enumerate(examples):
        assert got[row] == alone_reference(model, example)
    # Counts were read and branches stopped at different lengths: the drop-out path ran.
    lengths = {len(m) for found in got for _, mentions in found.values() for m, _ in mentions}
    assert len(lengths) > 1


def test_save_then_load_predicts_the_same(trained, tmp_path):
    out, docs, _ = trained
    model = load_model(out)
    before = rows(predict_documents(model, docs))
    reloaded = load_model(save_model(model, tmp_path / "copy"))
    assert reloaded.config == model.config
    assert len(reloaded.tokenizer) == len(model.tokenizer)
    after = rows(predict_documents(reloaded, docs))
    assert any(before)
    assert [[r[:3] for r in doc] for doc in after] == [[r[:3] for r in doc] for doc in before]
    assert [r[3] for doc in after for r in doc] == pytest.approx(
        [r[3] for doc in before for r in doc], abs=1e-6
    )
    state, loaded = model.state_dict(), reloaded.state_dict()
    assert state.keys() == loaded.keys() and all(torch.equal(state[k], loaded[k]) for k in state)
