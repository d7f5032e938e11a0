"""Fuzzing every reader: a valid file, mutated (cut short, bytes flipped, lines inserted,
dropped or repeated, columns shuffled, random Unicode put in), either reads as valid
documents or fails with a NerxError; never with any other exception.

``NERX_FUZZ_EXAMPLES`` sets the examples per reader (default 300; 10000 for a long run).
Runs are derandomized by default, so CI is repeatable; ``NERX_FUZZ_SEED`` picks another seed.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import nerx
from nerx.doc import Document
from nerx.errors import NerxError

EXAMPLES = int(os.environ.get("NERX_FUZZ_EXAMPLES", "300"))
SEED = int(os.environ.get("NERX_FUZZ_SEED", "0"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=not os.environ.get("NERX_FUZZ_SEED"),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TEXT = "Maria Lindqvist, a chemist at the University of Oslo, won the prize in Bergen."
NATIVE = (
    '{"id": "d1", "text": "Ada Lovelace met Babbage.", "entities": [{"start": 0, "end": 12, '
    '"label": "PER"}, {"start": 17, "end": 24, "label": "PER", "score": 0.9}], "relations": '
    '[{"head": 0, "tail": 1, "label": "Knows"}], "meta": {"source": "web"}}\n'
    '{"id": "d2", "text": "Nothing here.", "tokens": [[0, 7], [8, 12], [12, 13]], '
    '"sentences": [[0, 3]], "entities": []}\n'
    '{"text": "Oslo is in Norway."}\n'
)
SPERT = (
    '{"tokens": ["Ada", "met", "Babbage", "in", "London"], "entities": [{"type": "Peop", '
    '"start": 0, "end": 1}, {"type": "Peop", "start": 2, "end": 3}, {"type": "Loc", "start": '
    '4, "end": 5}], "relations": [{"type": "Live_In", "head": 1, "tail": 2}], "orig_id": 7}\n'
    '{"tokens": ["Nothing", "."], "entities": [], "relations": []}\n'
)
DYGIE = (
    '{"doc_key": "a1", "sentences": [["We", "use", "CRF", "."], ["It", "works", "."]], '
    '"ner": [[[2, 2, "Method"]], [[4, 4, "Generic"]]], "relations": [[], [[4, 4, 2, 2, '
    '"COREF"]]], "clusters": [[[2, 2], [4, 4]]]}\n'
)
PRODIGY = (
    '{"text": "Ada met Babbage.", "spans": [{"start": 0, "end": 3, "label": "PER"}, {"start":'
    ' 8, "end": 15, "label": "PER"}], "relations": [{"head": 0, "child": 2, "label": "Knows",'
    ' "head_span": {"start": 0, "end": 3, "token_start": 0, "token_end": 0, "label": "PER"},'
    ' "child_span": {"start": 8, "end": 15, "token_start": 2, "token_end": 2, "label": "PER"}'
    '}], "tokens": [{"text": "Ada", "start": 0, "end": 3, "id": 0}, {"text": "met", "start": '
    '4, "end": 7, "id": 1}, {"text": "Babbage", "start": 8, "end": 15, "id": 2}, {"text": ".",'
    ' "start": 15, "end": 16, "id": 3}]}\n'
)
GLINER = (
    '{"tokenized_text": ["Ada", "met", "Babbage", "in", "London"], "ner": [[0, 0, "person"], '
    '[2, 2, "person"], [4, 4, "city"]]}\n'
    '{"tokenized_text": ["Nothing"], "ner": []}\n'
)
GENIA = (
    '{"doc_id": 1, "sent_id": 0, "tokens": ["IL-2", "gene", "expression"], "entity_mentions":'
    ' [{"start": 0, "end": 2, "entity_type": "DNA"}, {"start": 0, "end": 1, "entity_type": '
    '"protein"}]}\n'
    '{"doc_id": 1, "sent_id": 1, "tokens": ["NF-kappa", "B", "binds"], "entity_mentions": '
    '[{"start": 0, "end": 2, "entity_type": "protein"}]}\n'
)
CONLL = (
    "-DOCSTART- -X- -X- O\n\n"
    "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\ncall NN I-NP O\n. . O O\n\n"
    "Peter NNP B-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"
    "-DOCSTART- -X- -X- O\n\nOslo NNP B-NP B-LOC\n\n"
)
ANN = (
    "T1\tPER 0 15\tMaria Lindqvist\n"
    "T2\tORG 34 52\tUniversity of Oslo\n"
    "T3\tLOC 48 52\tOslo\n"
    "T4\tALT 34 44;48 52\tUniversity Oslo\n"
    "R1\tWork_For Arg1:T1 Arg2:T2\n"
    "E1\tWin:T5 Winner:T1\n"
    "T5\tWin 54 57\twon\n"
    "A1\tNegated E1\n"
    "N1\tReference T2 Wikidata:Q486156\tUniversity of Oslo\n"
    "#1\tAnnotatorNotes T1\tchemist\n"
)

JSONL_SEEDS = {
    "jsonl": NATIVE,
    "spert": SPERT,
    "dygie": DYGIE,
    "prodigy": PRODIGY,
    "gliner": GLINER,
    "genia": GENIA,
}

NASTY = [
    '"', "{", "}", "[", "]", ",", ":", "\t", "\n", "\r", "\x00", "\ufeff", "\u2028", "-1",
    "1e309", "null", "true", "0", "999999999999999999999", "B-", "I-X", "-DOCSTART-", ";", " ",
    "\\u0000", "\\ud800", "é", "😀", "\u0301", "\x85",
]  # fmt: skip
EDITS = ("cut", "flip", "insert", "drop", "repeat", "shuffle", "unicode", "nasty", "swap")


def random_text(rng: random.Random) -> str:
    """1 to 12 random characters from anywhere in Unicode (no lone surrogates)."""
    chars = []
    while len(chars) < rng.randint(1, 12):
        code = rng.choice([rng.randint(32, 126), rng.randint(0, 0x2FFF), rng.randint(0, 0x10FFFF)])
        if not 0xD800 <= code <= 0xDFFF:
            chars.append(chr(code))
    return "".join(chars)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """``data`` with 1 to 4 random edits. Hypothesis draws the seed of ``rng``: mutating with
    a seeded generator is far cheaper than drawing each edit, so many more examples run."""
    for _ in range(rng.randint(1, 4)):
        data = _edit(data, rng, rng.choice(EDITS))
    return data


def _edit(data: bytes, rng: random.Random, kind: str) -> bytes:
    lines = data.split(b"\n")
    at = rng.randint(0, max(len(data) - 1, 0))
    row = rng.randint(0, len(lines) - 1)
    if kind == "cut":
        return data[:at]
    if kind == "flip" and data:
        return data[:at] + bytes([data[at] ^ rng.randint(1, 255)]) + data[at + 1 :]
    if kind == "insert":
        new = rng.choice([random_text(rng), rng.choice(NASTY)]).encode("utf-8")
        new = rng.choice([new, lines[rng.randint(0, len(lines) - 1)], lines[row] + new])
        return b"\n".join([*lines[:row], new, *lines[row:]])
    if kind == "drop":
        return b"\n".join(lines[:row] + lines[row + 1 :])
    if kind == "repeat":
        return b"\n".join([*lines[: row + 1], lines[row], *lines[row + 1 :]])
    if kind == "shuffle":
        sep = b"\t" if b"\t" in lines[row] else b" "
        cells = lines[row].split(sep)
        rng.shuffle(cells)
        lines[row] = sep.join(cells)
        return b"\n".join(lines)
    if kind == "swap":
        other = rng.randint(0, len(lines) - 1)
        lines[row], lines[other] = lines[other], lines[row]
        return b"\n".join(lines)
    piece = (random_text(rng) if kind == "unicode" else rng.choice(NASTY)).encode("utf-8")
    return data[:at] + piece + data[at + rng.randint(0, 3) :]


SEEDS = st.integers(0, 2**64 - 1)


def read_all(path: Path, format: str, **options) -> list[Document]:
    """The documents, or a NerxError; any other exception fails the test."""
    try:
        docs = list(nerx.read(path, format, **options))
    except NerxError:
        return []
    for doc in docs:
        doc.validate()
    return docs


@pytest.fixture(scope="module")
def scratch():
    folder = Path(tempfile.mkdtemp(prefix="nerx-fuzz-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("dialect", list(JSONL_SEEDS))
def test_fuzz_jsonl(dialect, scratch):
    base = JSONL_SEEDS[dialect].encode("utf-8")
    assert read_all(_write(scratch, "seed.jsonl", base), dialect)  # the seed itself reads

    @seed(SEED)
    @FUZZ
    @given(SEEDS)
    def check(n):
        data = mutate(base, random.Random(n))
        read_all(_write(scratch, f"{dialect}.jsonl", data), dialect)

    check()


def test_fuzz_conll(scratch):
    base = CONLL.encode("utf-8")
    assert read_all(_write(scratch, "seed.conll", base), "conll")

    @seed(SEED)
    @FUZZ
    @given(SEEDS, st.booleans())
    def check(n, sentence_docs):
        data = mutate(base, random.Random(n))
        read_all(_write(scratch, "f.conll", data), "conll", sentence_docs=sentence_docs)

    check()


def test_fuzz_brat(scratch):
    folder = scratch / "brat"
    base_ann, base_txt = ANN.encode("utf-8"), TEXT.encode("utf-8")
    folder.mkdir()
    _write(folder, "d1.txt", base_txt)
    _write(folder, "d1.ann", base_ann)
    assert read_all(folder, "brat")

    @seed(SEED)
    @FUZZ
    @given(SEEDS, st.booleans())
    def check(n, mutate_text):
        rng = random.Random(n)
        _write(folder, "d1.ann", mutate(base_ann, rng))
        _write(folder, "d1.txt", mutate(base_txt, rng) if mutate_text else base_txt)
        read_all(folder, "brat")

    check()


def test_fuzz_docbin(scratch):
    import srsly

    source = _write(scratch, "seed.jsonl", NATIVE.encode("utf-8"))
    nerx.convert(source, scratch / "seed.spacy")
    base = (scratch / "seed.spacy").read_bytes()
    inner = zlib.decompress(base)
    assert srsly.msgpack_loads(inner)  # what a DocBin holds, before compression
    assert read_all(scratch / "seed.spacy", "docbin")

    @seed(SEED)
    @FUZZ
    @given(SEEDS, st.booleans())
    def check(n, compressed):
        # Mutating the msgpack under the compression reaches the fields; the bytes as
        # stored mostly fail at zlib.
        rng = random.Random(n)
        blob = mutate(base, rng) if compressed else zlib.compress(mutate(inner, rng))
        read_all(_write(scratch, "f.spacy", blob), "docbin")

    check()


def test_mutations_change_the_data():
    """The mutations are not a no-op: nearly every one changes its seed file."""
    base = NATIVE.encode("utf-8")
    changed = sum(mutate(base, random.Random(n)) != base for n in range(200))
    assert changed >= 190
