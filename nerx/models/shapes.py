"""Word shapes: the casing an uncased encoder never sees, as a handful of classes.

An uncased tokenizer (``all-MiniLM-L6-v2``, ``bert-base-uncased``) lowercases its input, so
"Apple" and "apple" reach the encoder as the same subwords, though capitals are the strongest
single cue for names in English text. Models that read word states add a learned embedding of
each word's shape to its subwords' input embeddings (``case_features``); shape 0 marks the
special and padding positions, and its vector stays zero.
"""

from __future__ import annotations

#: The shape classes, in id order (0 is the padding / special-token class).
WORD_SHAPES = (
    "none",
    "lower",  # letters, all lowercase: "said"
    "title",  # a capital, then no other capital: "Paris", "I"
    "upper",  # two or more letters, all capitals: "IBM", "U.S."
    "mixed",  # other casing: "iPhone", "McDonald"
    "alnum",  # letters and digits: "F16", "2nd"
    "digits",  # digits, no letter: "1996", "3-1"
    "punct",  # neither letters nor digits: ",", "--"
)
SHAPE_IDS = {name: i for i, name in enumerate(WORD_SHAPES)}


def word_shape(word: str) -> int:
    """The shape id of one word (see :data:`WORD_SHAPES`)."""
    letters = [c for c in word if c.isalpha()]
    has_digit = any(c.isdigit() for c in word)
    if not letters:
        return SHAPE_IDS["digits" if has_digit else "punct"]
    if has_digit:
        return SHAPE_IDS["alnum"]
    capitals = sum(1 for c in letters if c.isupper())
    if capitals == 0:
        return SHAPE_IDS["lower"]
    if capitals == len(letters) and len(letters) > 1:
        return SHAPE_IDS["upper"]
    if capitals == 1 and letters[0].isupper():
        return SHAPE_IDS["title"]
    return SHAPE_IDS["mixed"]


def lowercases(tokenizer) -> bool:
    """Whether the tokenizer folds case (its subwords for "Paris" and "paris" are the same)."""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    return ids("Paris London") == ids("paris london")
