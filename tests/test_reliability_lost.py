"""Nothing is lost without a word: what a target cannot hold is counted under "not kept",
and what BRAT holds comes back from BRAT (also through a DocBin) as it was."""

from __future__ import annotations

from pathlib import Path

import nerx
from nerx.io import Report, brat, conll

TEXT = "Maria Lindqvist, a chemist at the University of Oslo, won on Tuesday.\n"
ANN = (
    "T1\tPER 0 15\tMaria Lindqvist\n"
    "T2\tORG 34 52\tUniversity of Oslo\n"
    "T3\tLOC 48 52\tOslo\n"
    "T4\tALT 34 44;48 52\tUniversity Oslo\n"
    "R1\tWork_For Arg1:T1 Arg2:T2\n"
    "A1\tNegated T1\n"
    "N1\tReference T2 Wikidata:Q486156\tUniversity of Oslo\n"
    "#1\tAnnotatorNotes T1\tchemist\n"
)


def brat_dir(tmp: Path) -> Path:
    folder = tmp / "in"
    folder.mkdir()
    (folder / "d1.txt").write_text(TEXT, encoding="utf-8")
    # T2 before T1 in the file, so a writer that sorts entities changes their order.
    lines = ANN.splitlines(keepends=True)
    (folder / "d1.ann").write_text("".join([lines[1], lines[0], *lines[2:]]), encoding="utf-8")
    return folder


def test_brat_to_conll_counts_the_extra_lines_as_not_kept(tmp_path):
    report = nerx.convert(brat_dir(tmp_path), tmp_path / "out.conll")
    assert report.lost["BRAT E/A/M/N/#/* lines (CoNLL holds none)"] == 3


def test_jsonl_meta_and_spacing_to_conll_are_counted(tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        '{"id": "1", "text": "Maria  lives\\nin Oslo", "meta": {"source": "web", "year": 2020}}\n'
        '{"id": "2", "text": "Plain text here", "sentences": [[0, 3]], "tokens": '
        "[[0, 5], [6, 10], [11, 15]]}\n",
        encoding="utf-8",
    )
    report = nerx.convert(source, tmp_path / "out.conll")
    assert report.lost["document meta fields (CoNLL holds none)"] == 2
    assert report.lost[conll.SPACING_LOST] == 1  # only the first: double space, line break
    assert report.notes["documents without sentence breaks written as one sentence"] == 1


def ann_lines(folder: Path) -> set[str]:
    return set((folder / "d1.ann").read_text(encoding="utf-8").splitlines())


def test_brat_to_brat_gives_every_line_back_with_its_fragments(tmp_path):
    report = nerx.convert(brat_dir(tmp_path), tmp_path / "out")
    assert ann_lines(tmp_path / "out") == set(ANN.splitlines())
    assert not report.lost


def test_brat_through_docbin_back_to_brat_loses_nothing(tmp_path):
    first = nerx.convert(brat_dir(tmp_path), tmp_path / "mid.spacy")
    second = nerx.convert(tmp_path / "mid.spacy", tmp_path / "out")
    assert not first.lost and not second.lost
    assert ann_lines(tmp_path / "out") == set(ANN.splitlines())


def test_changed_fragments_fall_back_to_the_covering_span(tmp_path):
    [doc] = nerx.read(brat_dir(tmp_path))
    doc.meta["brat"]["T"][3][4] = [[34, 40], [48, 60]]  # no longer inside the entity
    report = Report()
    brat.write([doc], tmp_path / "out", report=report)
    assert "T4\tALT 34 52\tUniversity of Oslo" in ann_lines(tmp_path / "out")
