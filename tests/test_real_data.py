"""The public corpora: counts against the data README, and conversions that account for losses.

Every corpus is converted to every other format and back to native JSONL; what the target can
hold comes back (CoNLL: the outermost entities, no relations) and ``report.lost`` accounts for
exactly the rest. CoNLL-2003's sentence and token counts and the IOB1 -> IOB2 round trip of
eng.train are checked in test_io_conll.py. The smaller splits keep this file fast.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import pytest

import nerx
from nerx.io import Report, brat, conll, jsonl


class Corpus(NamedTuple):
    path: str  # relative to the shared data folder
    read_as: str | None  # a format or dialect name; None: detected
    format: str  # the registry format that reads it
    documents: int  # these three from the data README
    entities: int
    relations: int


CORPORA = {
    "conll2003-testa": Corpus("conll2003/eng.testa", None, "conll", 216, 5_942, 0),
    "conll04-train": Corpus("conll04/conll04_train.json", "spert", "jsonl", 922, 3_377, 1_283),
    "scierc-dev": Corpus("scierc/dev.json", "dygie", "jsonl", 50, 811, 455),
    "genia-dev": Corpus("genia/dev.jsonlines", "genia", "jsonl", 199, 4_714, 0),
    # No -DOCSTART- lines: each of the 4,581 sentences is a document.
    "bc5cdr-devel": Corpus("bc5cdr/devel.tsv", None, "conll", 4_581, 5_347 + 4_246, 0),
    "brat-materials": Corpus("brat_materials_syntheses/data", None, "brat", 230, 21_345, 14_262),
}
TARGETS = {"jsonl": "out.jsonl", "conll": "out.conll", "docbin": "out.spacy", "brat": "out"}

# What each reason in ``report.lost`` counts; the rest lose no entity or relation.
ENTITY_LOSSES = {
    "nested or overlapping entities (CoNLL keeps the outermost)",
    "entities that cover no word",
    brat.LOST_BREAK_ONLY,
}
RELATION_LOSSES = {"relations (CoNLL holds none)", brat.LOST_RELATIONS, jsonl.LOST_ARGUMENT}
OTHER_LOSSES = {
    "document ids (CoNLL holds none)",
    "CoNLL middle columns that do not fit the tokens or the file",
    "entity scores",
    "relation scores",
    "sentence boundaries (documents)",
    "token boundaries (documents)",
    "document meta fields",
    conll.SPACING_LOST,
    "document meta fields (CoNLL holds none)",
    "BRAT E/A/M/N/#/* lines (CoNLL holds none)",
}


class Summary(NamedTuple):
    documents: int
    entities: int
    relations: int
    labels: Counter
    outer_spans: int  # distinct spans that no other span contains: what CoNLL can tag
    crossing: int  # pairs of spans that overlap without one containing the other
    lost: Counter


def contains(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] <= b[0] and b[1] <= a[1]


@functools.cache
def summary(path: Path, read_as: str | None) -> Summary:
    report = Report()
    labels: Counter = Counter()
    outer = crossing = 0
    for doc in nerx.read(path, read_as, report=report):
        labels.update(e.label for e in doc.entities)
        spans = sorted({(e.start, e.end) for e in doc.entities})
        outer += sum(not any(o != s and contains(o, s) for o in spans) for s in spans)
        crossing += sum(
            a[0] < b[1] and b[0] < a[1] and not contains(a, b) and not contains(b, a)
            for a, b in itertools.combinations(spans, 2)
        )
    return Summary(
        report.documents_read,
        report.entities_read,
        report.relations_read,
        labels,
        outer,
        crossing,
        report.lost,
    )


@pytest.mark.parametrize("name", CORPORA)
def test_counts_match_the_data_readme(shared_data, name):
    corpus = CORPORA[name]
    found = summary(shared_data / corpus.path, corpus.read_as)
    assert (found.documents, found.entities, found.relations) == corpus[3:]
    assert not found.lost
    # With no crossing spans, "the outermost entities" is one well-defined set.
    assert found.crossing == 0


def test_bc5cdr_labels_match_the_data_readme(shared_data):
    found = summary(shared_data / "bc5cdr" / "devel.tsv", None)
    assert found.labels == Counter({"Chemical": 5_347, "Disease": 4_246})


@pytest.mark.parametrize(
    ("name", "to"),
    [(n, t) for n, c in CORPORA.items() for t in TARGETS if t != c.format],
)
def test_conversion_keeps_what_the_target_holds(shared_data, tmp_path, name, to):
    corpus = CORPORA[name]
    source = summary(shared_data / corpus.path, corpus.read_as)
    held_entities = source.outer_spans if to == "conll" else source.entities
    held_relations = 0 if to == "conll" else source.relations

    middle = tmp_path / TARGETS[to]
    report = nerx.convert(
        shared_data / corpus.path, middle, from_format=corpus.read_as, to_format=to
    )
    assert (report.documents_read, report.entities_read, report.relations_read) == corpus[3:]
    assert (report.documents_written, report.entities_written, report.relations_written) == (
        corpus.documents,
        held_entities,
        held_relations,
    )
    assert set(report.lost) <= ENTITY_LOSSES | RELATION_LOSSES | OTHER_LOSSES
    lost_entities = sum(n for reason, n in report.lost.items() if reason in ENTITY_LOSSES)
    lost_relations = sum(n for reason, n in report.lost.items() if reason in RELATION_LOSSES)
    assert lost_entities == report.entities_read - report.entities_written
    assert lost_relations == report.relations_read - report.relations_written

    back = nerx.convert(middle, tmp_path / "back.jsonl", from_format=to)
    assert (back.documents_read, back.entities_read, back.relations_read) == (
        corpus.documents,
        held_entities,
        held_relations,
    )
    assert not back.lost


def test_conll2003_train_through_docbin_keeps_iob2_tags(shared_data, tmp_path):
    """CoNLL-2003 train -> DocBin -> CoNLL gives the same IOB2 tag sequence, token for token."""
    source = shared_data / "conll2003" / "eng.train"
    nerx.convert(source, tmp_path / "train.spacy")
    nerx.convert(tmp_path / "train.spacy", tmp_path / "train.conll")
    nerx.convert(source, tmp_path / "direct.conll", to_format="conll")

    def word_tags(path):
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if parts and parts[0] != "-DOCSTART-":
                rows.append((parts[0], parts[-1]))
        return rows

    through_docbin = word_tags(tmp_path / "train.conll")
    assert len(through_docbin) == 203_621  # every token of the README's count
    assert through_docbin == word_tags(tmp_path / "direct.conll")
    assert all(tag == "O" or tag[:2] in ("B-", "I-") for _, tag in through_docbin)
