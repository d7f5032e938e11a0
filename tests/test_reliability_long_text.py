"""Raw text of any length is tokenised (in pieces cut at line breaks) and extracted."""

from __future__ import annotations

import pytest

from nerx.doc import Document, TextPreparer, text_pieces

pytestmark = pytest.mark.usefixtures("one_thread")

PARAGRAPH = "Maria Lindqvist, a chemist at the University of Oslo, won the prize on Tuesday.\n"


def test_pieces_cover_the_text_and_end_after_a_line_break():
    text = PARAGRAPH * 40
    pieces = text_pieces(text, 500)
    assert pieces[0][0] == 0 and pieces[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:], strict=False))
    assert all(e - s <= 500 for s, e in pieces)
    assert all(text[e - 1] == "\n" for _, e in pieces[:-1])


def test_pieces_without_line_breaks_cut_at_spaces_else_anywhere():
    spaced = "word " * 300
    assert all(spaced[e - 1] == " " for _, e in text_pieces(spaced, 100)[:-1])
    solid = "x" * 1050
    assert text_pieces(solid, 100)[-1] == (1000, 1050)


def test_tokens_in_pieces_are_those_of_the_whole_text():
    text = PARAGRAPH * 30
    whole, pieced = Document("a", text), Document("b", text)
    TextPreparer()([whole])
    TextPreparer(piece_chars=300)([pieced])
    assert pieced.tokens == whole.tokens
    assert pieced.sentences == whole.sentences
    pieced.validate()


def test_a_text_over_a_million_characters_is_extracted(tiny_encoder):
    from nerx.models import ModelConfig, model_class
    from nerx.pipeline import extract

    text = PARAGRAPH * (1_000_001 // len(PARAGRAPH) + 1)
    assert len(text) > 1_000_000
    model = model_class("token").create(ModelConfig("token", ["PER"], encoder=tiny_encoder))
    (doc,) = extract([Document("long", text)], model, batch_size=256)
    doc.validate()
    assert doc.tokens[-1] == (len(text) - 2, len(text) - 1)  # the last "." before "\n"
    assert len(doc.sentences) == text.count("\n")
