"""Windows over long text: packing whole sentences under a budget, context on both sides,
overlapping pieces of a sentence too long for one window, and a long document that is
windowed end to end rather than truncated."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nerx.doc import Document
from nerx.errors import ModelError
from nerx.models import MODELS, load_model
from nerx.models.encoder import plan_windows
from nerx.pipeline import ExtractionStats, predict_documents
from nerx.training import TrainSettings, train


def cost(lengths, start, end) -> int:
    return sum(lengths[start:end])


def focus_ranges(plan) -> list[tuple[int, int]]:
    return [(w.focus_start, w.focus_end) for w in plan.windows]


# --------------------------------------------------------------------------- worked cases
def test_whole_sentences_are_packed_greedily_under_the_budget():
    lengths = [1, 2, 1, 1, 1, 3, 1, 2, 1, 1, 2, 1]
    sentences = [(0, 3), (3, 5), (5, 7), (7, 10), (10, 12)]  # costs 4, 2, 4, 4, 3
    plan = plan_windows(lengths, sentences, budget=8, context=False)
    assert [w.sentences for w in plan.windows] == [
        ((0, 3), (3, 5)),  # 4 + 2; adding 4 more would make 10
        ((5, 7), (7, 10)),  # 4 + 4 = 8 fits exactly
        ((10, 12),),
    ]
    assert [(w.start, w.end) for w in plan.windows] == [(0, 5), (5, 10), (10, 12)]
    assert focus_ranges(plan) == [(0, 5), (5, 10), (10, 12)]
    assert all(w.piece == 0 for w in plan.windows)
    assert plan.split_sentences == 0


def test_context_grows_on_both_sides():
    lengths = [1] * 20
    sentences = [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20)]
    plan = plan_windows(lengths, sentences, budget=7)
    # One 4-word sentence per window leaves 3 words of context: left, right, left.
    assert [(w.start, w.end) for w in plan.windows] == [
        (0, 7),  # nothing to the left: all context on the right
        (2, 9),
        (6, 13),
        (10, 17),
        (13, 20),  # nothing to the right: all context on the left
    ]
    assert focus_ranges(plan) == sentences
    assert all(w.end - w.start <= 7 for w in plan.windows)


def test_context_respects_subword_lengths():
    lengths = [5, 1, 1, 1, 1, 1, 1, 1]
    plan = plan_windows(lengths, [(0, 1), (1, 4), (4, 8)], budget=6)
    # The middle sentence costs 3; the 5-subword word on its left would make 8 > 6, so the
    # context grows on the right only, by as many words as fit.
    middle = plan.windows[1]
    assert (middle.focus_start, middle.focus_end) == (1, 4)
    assert (middle.start, middle.end) == (1, 7)
    assert cost(lengths, middle.start, middle.end) == 6


def test_a_long_sentence_is_split_into_overlapping_pieces():
    plan = plan_windows([1] * 30, [(0, 30)], budget=10, overlap=4)
    assert plan.split_sentences == 1
    assert [(w.start, w.end) for w in plan.windows] == [
        (0, 10),
        (6, 16),
        (12, 22),
        (18, 28),
        (24, 30),
    ]
    assert focus_ranges(plan) == [(0, 8), (8, 14), (14, 20), (20, 26), (26, 30)]
    assert [w.piece for w in plan.windows] == [1, 2, 3, 4, 5]
    assert all(w.sentences == ((w.start, w.end),) for w in plan.windows)


def test_a_long_sentence_between_short_ones_flushes_the_run():
    lengths = [1] * 16
    plan = plan_windows(lengths, [(0, 2), (2, 14), (14, 16)], budget=6, context=False)
    pieces = [w.piece for w in plan.windows]
    assert pieces[0] == 0 and pieces[-1] == 0
    assert pieces[1:-1] == list(range(1, len(pieces) - 1))
    assert plan.split_sentences == 1
    assert focus_ranges(plan)[0] == (0, 2) and focus_ranges(plan)[-1] == (14, 16)


def test_a_word_longer_than_the_budget_still_advances():
    plan = plan_windows([3, 50, 3], [(0, 3)], budget=10, overlap=2)
    starts = [r[0] for r in focus_ranges(plan)]
    assert starts == sorted(starts) and focus_ranges(plan)[-1][1] == 3
    assert any(w.start == 1 and w.end == 2 for w in plan.windows)


def test_a_long_word_never_leaves_words_without_an_owner():
    # Word 2 (two subwords) cannot join word 1 under budget 2: a piece (1, 2) would add no
    # new word and push the next focus boundary past its own piece.
    plan = plan_windows([1, 1, 2], [(0, 3)], budget=2, overlap=1)
    assert focus_ranges(plan) == [(0, 2), (2, 3)]
    assert [(w.start, w.end) for w in plan.windows] == [(0, 2), (2, 3)]
    assert all(w.start <= w.focus_start < w.focus_end <= w.end for w in plan.windows)


def test_empty_document_and_bad_budget():
    assert plan_windows([], [], budget=10).windows == []
    with pytest.raises(ModelError, match="budget"):
        plan_windows([1, 1], [(0, 2)], budget=0)


def test_no_sentences_means_one_sentence():
    plan = plan_windows([1] * 5, [], budget=10)
    assert focus_ranges(plan) == [(0, 5)]


# --------------------------------------------------------------------------- properties
@st.composite
def documents(draw):
    sentence_sizes = draw(st.lists(st.integers(1, 12), min_size=1, max_size=8))
    n = sum(sentence_sizes)
    lengths = draw(st.lists(st.integers(1, 4), min_size=n, max_size=n))
    sentences, first = [], 0
    for size in sentence_sizes:
        sentences.append((first, first + size))
        first += size
    return lengths, sentences


@settings(max_examples=300, deadline=None)
@given(
    documents(),
    st.integers(1, 24),
    st.booleans(),
    st.integers(0, 10),
)
def test_window_plan_properties(document, budget, context, overlap):
    lengths, sentences = document
    n = len(lengths)
    plan = plan_windows(lengths, sentences, budget, context=context, overlap=overlap)

    # Focus ranges partition the document in order: every span start has one owner.
    ranges = focus_ranges(plan)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    for w in plan.windows:
        assert 0 <= w.start <= w.focus_start < w.focus_end <= w.end <= n
        assert cost(lengths, w.start, w.end) <= budget or w.end - w.start == 1
        # Spans are enumerated in the focus sentences; a piece of a long sentence enumerates
        # its whole piece, so a span starting in its focus may end past it.
        inner = (w.focus_start, w.focus_end) if w.piece == 0 else (w.start, w.end)
        assert all(inner[0] <= s < e <= inner[1] for s, e in w.sentences)

    too_long = [(s, e) for s, e in sentences if cost(lengths, s, e) > budget]
    assert plan.split_sentences == len(too_long)
    assert sum(w.piece == 1 for w in plan.windows) == len(too_long)

    whole = [w for w in plan.windows if w.piece == 0]
    # Whole-sentence windows hold original sentences that exactly tile their focus.
    for w in whole:
        assert all(s in sentences for s in w.sentences)
        assert w.sentences[0][0] == w.focus_start and w.sentences[-1][1] == w.focus_end
        if not context:
            assert (w.start, w.end) == (w.focus_start, w.focus_end)
        else:  # as much context as fits: neither side can take one more word
            used = cost(lengths, w.start, w.end)
            assert w.start == 0 or used + lengths[w.start - 1] > budget
            assert w.end == n or used + lengths[w.end] > budget
    # Greedy packing: the next run's first sentence did not fit into the run before it.
    for a, b in zip(plan.windows, plan.windows[1:], strict=False):
        if a.piece == 0 and b.piece == 0:
            first = b.sentences[0]
            assert cost(lengths, a.focus_start, a.focus_end) + cost(lengths, *first) > budget

    # The pieces of one long sentence are numbered 1, 2, ... and cover it exactly.
    for s, e in too_long:
        pieces = [w for w in plan.windows if w.piece and w.sentences == ((w.start, w.end),)]
        pieces = [w for w in pieces if s <= w.start and w.end <= e]
        assert [w.piece for w in pieces] == list(range(1, len(pieces) + 1))
        assert pieces[0].focus_start == s and pieces[-1].focus_end == e
        assert pieces[0].start == s and pieces[-1].end == e


# --------------------------------------------------------------------------- end to end
TARGET = ["Chief", "executive", "Tomas", "Keller", "announced", "the", "plan", "in", "Berlin", "."]
TARGET_ENTITIES = [(2, 4, "PER"), (8, 9, "LOC")]
FILLER = ["The", "club", "said", "on", "Monday", "it", "will", "move", "."]


def _long_document() -> tuple[Document, list[tuple[int, int, str]]]:
    """Thirty filler sentences, one sentence too long for any window, then the target."""
    long_sentence = (FILLER[:-1] * 4) + ["."]
    sentences = [FILLER] * 15 + [long_sentence] + [FILLER] * 15 + [TARGET]
    words = [w for sentence in sentences for w in sentence]
    first = len(words) - len(TARGET)
    entities = [(first + s, first + e, label) for s, e, label in TARGET_ENTITIES]
    doc = Document.from_words(
        "long", words, sentence_lengths=[len(s) for s in sentences], token_entities=entities
    )
    expected = [(e.start, e.end, e.label) for e in doc.entities]
    doc.entities = []
    return doc, expected


#: sener reads a whole document in one window by design (its positions are extended); that a
#: long document is one window there, not cut, is tested in test_sener.py.
WINDOWED_KINDS = sorted(set(MODELS) - {"sener"})


@pytest.mark.parametrize("kind", WINDOWED_KINDS)
def test_a_long_document_is_windowed_not_truncated(kind, tiny_encoder, tmp_path):
    torch.set_num_threads(1)
    sentence = Document.from_words(
        "target", TARGET, sentence_lengths=[len(TARGET)], token_entities=TARGET_ENTITIES
    )
    # A window of exactly the target sentence plus [CLS] and [SEP]: wherever the sentence
    # stands, its window holds it alone, as in training.
    window = len(TARGET) + 2
    train(
        [sentence],
        [sentence],
        kind=kind,
        encoder=tiny_encoder,
        output=tmp_path,
        settings=TrainSettings(
            epochs=150,
            batch_size=1,
            learning_rate=3e-3,
            head_lr_multiplier=3,
            warmup=0.0,
            patience=40,
            device="cpu",
            window=window,
            hyper={"dropout": 0.0},
        ),
    )
    model = load_model(tmp_path)
    alone = predict_documents(model, [sentence])[0]
    assert [(e.start, e.end, e.label) for e in alone.entities] == [
        (e.start, e.end, e.label) for e in sentence.entities
    ]

    doc, expected = _long_document()
    subwords = sum(len(ids) for ids in model.tokenizer(doc.text.split())["input_ids"])
    assert model.window_size == window
    assert subwords > model.encoder.config.max_position_embeddings  # cannot go in one pass
    stats = ExtractionStats()
    predicted = predict_documents(model, [doc], stats=stats)[0]

    assert stats.windows > 30 and stats.split_sentences == 1
    target_start = doc.tokens[len(doc.tokens) - len(TARGET)][0]
    found = [(e.start, e.end, e.label) for e in predicted.entities if e.start >= target_start]
    assert found == expected
    assert [predicted.text[s:e] for s, e, _ in found] == ["Tomas Keller", "Berlin"]
