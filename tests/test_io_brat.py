"""BRAT standoff: reading .txt/.ann pairs, writing them back, and what cannot be held."""

from __future__ import annotations

from pathlib import Path

import pytest

import nerx.io
from nerx.doc import Document, Entity, Relation
from nerx.errors import FormatError
from nerx.io import brat
from nerx.io.base import Report


def _pair(folder: Path, stem: str, text: str, ann: str) -> Path:
    """Write X.txt (bytes as given, no newline translation) and X.ann; return X.ann."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.txt").write_bytes(text.encode("utf-8"))
    (folder / f"{stem}.ann").write_bytes(ann.encode("utf-8"))
    return folder / f"{stem}.ann"


def _core(doc: Document) -> tuple:
    """What BRAT holds: tokens and sentences aside, and meta without the BRAT bookkeeping."""
    meta = {k: v for k, v in doc.meta.items() if k != "brat"}
    return doc.id, doc.text, doc.entities, doc.relations, meta


def _read_one(path: Path, **options) -> tuple[Document, Report]:
    report = Report()
    docs = list(brat.read(path, report=report, **options))
    assert len(docs) == 1
    return docs[0], report


# ------------------------------------------------------------------------- round trips
def test_news_round_trip_through_a_directory(samples, tmp_path):
    docs = list(nerx.io.read(samples / "news.jsonl"))
    out = tmp_path / "news"
    report = nerx.io.write(docs, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"news-00{i}.{ext}" for i in range(1, 6) for ext in ("txt", "ann")
    )
    assert report.documents_written == 5
    assert report.entities_written == 25
    assert report.relations_written == 12
    assert not report.lost
    ann = (out / "news-001.ann").read_text(encoding="utf-8").splitlines()
    assert ann[1] == "T2\tORG 34 52\tUniversity of Oslo"
    assert ann[2] == "T3\tLOC 48 52\tOslo"
    assert ann[5] == "R1\tWork_For Arg1:T1 Arg2:T2"
    back = list(nerx.io.read(out))
    assert [_core(d) for d in back] == [_core(d) for d in docs]


def test_single_pair_read_via_its_ann_and_via_its_txt(tmp_path):
    text = "Ada Lovelace met Charles Babbage in London.\n"
    ann = "T1\tPER 0 12\tAda Lovelace\nT2\tPER 17 32\tCharles Babbage\nR1\tMet Arg1:T1 Arg2:T2\t\n"
    ann_path = _pair(tmp_path, "pair", text, ann)
    _pair(tmp_path, "other", "Not this one.", "")
    for path in (ann_path, tmp_path / "pair.txt"):
        docs = list(nerx.io.read(path))
        assert len(docs) == 1
        doc = docs[0]
        assert (doc.id, doc.text) == ("pair", text)
        assert doc.entities == [Entity(0, 12, "PER"), Entity(17, 32, "PER")]
        assert doc.relations == [Relation(0, 1, "Met")]


def test_directory_documents_sorted_and_unannotated_text_kept(tmp_path):
    _pair(tmp_path, "b", "Oslo.", "T1\tLOC 0 4\tOslo\n")
    (tmp_path / "a.txt").write_text("No annotations here.", encoding="utf-8")
    docs = list(nerx.io.read(tmp_path))
    assert [d.id for d in docs] == ["a", "b"]
    assert docs[0].entities == [] and docs[0].text == "No annotations here."
    assert docs[1].entities == [Entity(0, 4, "LOC")]


def test_ann_without_txt_is_an_error(tmp_path):
    (tmp_path / "lonely.ann").write_text("T1\tLOC 0 4\tOslo\n", encoding="utf-8")
    with pytest.raises(FormatError, match=r"lonely\.txt is missing"):
        list(brat.read(tmp_path))
    with pytest.raises(FormatError, match=r"lonely\.txt is missing"):
        list(brat.read(tmp_path / "lonely.ann"))


def test_crlf_text_keeps_offsets_after_the_line_breaks(tmp_path):
    text = "First line.\r\nOslo is here.\r\nBergen too.\r\n"
    ann = "T1\tLOC 13 17\tOslo\nT2\tLOC 28 34\tBergen\n"
    doc, _ = _read_one(_pair(tmp_path / "in", "crlf", text, ann))
    assert doc.text == text
    assert doc.entities == [Entity(13, 17, "LOC"), Entity(28, 34, "LOC")]
    brat.write([doc], tmp_path / "out")
    assert (tmp_path / "out" / "crlf.txt").read_bytes() == text.encode("utf-8")
    assert (tmp_path / "out" / "crlf.ann").read_text(encoding="utf-8") == ann


def test_non_bmp_character_counts_as_one_character(tmp_path):
    # The emoji is one code point (4 UTF-8 bytes, 2 UTF-16 units): Oslo starts at 2.
    text = "\U0001f389 Oslo"
    doc, _ = _read_one(_pair(tmp_path / "in", "emoji", text, "T1\tLOC 2 6\tOslo\n"))
    assert doc.entities == [Entity(2, 6, "LOC")]
    brat.write([doc], tmp_path / "out")
    assert (tmp_path / "out" / "emoji.ann").read_text(encoding="utf-8") == "T1\tLOC 2 6\tOslo\n"


# ------------------------------------------------------------------------ discontinuity
def test_discontinuous_entity_kept_as_covering_span_with_a_note(tmp_path):
    ann = _pair(tmp_path, "disc", "left and right lungs", "T1\tOrgan 0 4;15 20\tleft lungs\n")
    doc, report = _read_one(ann)
    assert doc.entities == [Entity(0, 20, "Organ")]
    assert report.notes[brat.NOTE_DISCONTINUOUS] == 1
    with pytest.raises(FormatError, match="discontinuous") as err:
        list(brat.read(ann, strict=True))
    assert err.value.where == f"{ann}:1"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("New\nYork is big", "T1\tLOC 0 3;4 8\tNew York"),
        ("New\r\nYork is big", "T1\tLOC 0 3;5 9\tNew York"),
        ("New\n\nYork is big", "T1\tLOC 0 3;5 9\tNew York"),
    ],
)
def test_entity_across_a_line_break_written_as_fragments_and_read_back(tmp_path, text, line):
    end = text.index("York") + 4
    doc = Document("ny", text, entities=[Entity(0, end, "LOC")])
    report = Report()
    brat.write([doc], tmp_path, report=report)
    assert (tmp_path / "ny.ann").read_text(encoding="utf-8") == line + "\n"
    assert report.notes["entities crossing a line break written as fragments that skip it"] == 1
    back, read_report = _read_one(tmp_path / "ny.ann", strict=True)
    assert back.entities == [Entity(0, end, "LOC")]
    assert not read_report.notes[brat.NOTE_DISCONTINUOUS]


def test_line_breaks_at_entity_edges_trimmed_or_lost_and_counted(tmp_path):
    text = "Oslo\nBergen"
    doc = Document(
        "edges",
        text,
        entities=[Entity(0, 5, "LOC"), Entity(4, 5, "BREAK"), Entity(5, 11, "LOC")],
        relations=[Relation(0, 2, "Near"), Relation(1, 2, "Odd")],
    )
    report = Report()
    brat.write([doc], tmp_path, report=report)
    assert (tmp_path / "edges.ann").read_text(encoding="utf-8") == (
        "T1\tLOC 0 4\tOslo\nT2\tLOC 5 11\tBergen\nR1\tNear Arg1:T1 Arg2:T2\n"
    )
    assert report.notes["entities trimmed of line breaks at their edges"] == 1
    assert report.lost["entities covering only line breaks"] == 1
    assert report.lost["relations to entities BRAT cannot hold"] == 1
    assert (report.entities_written, report.relations_written) == (2, 1)


# ------------------------------------------------------------------------- bad input
def test_offset_that_does_not_match_the_text_names_file_and_line(tmp_path):
    ann = _pair(tmp_path, "bad", "Oslo and Bergen", "T1\tLOC 0 4\tOslo\nT2\tLOC 9 15\tBergne\n")
    with pytest.raises(FormatError, match="does not match the text") as err:
        list(brat.read(ann))
    assert err.value.where == f"{ann}:2"
    assert "'Bergne'" in err.value.message and "'Bergen'" in err.value.message


@pytest.mark.parametrize(
    ("text", "ann", "issue"),
    [
        # BRAT's editor counts CRLF as one character: Bergen at 10, not 11.
        ("Oslo,\r\nand Bergen", "T1\tLOC 10 16\tBergen\n", "nlplab/brat#853"),
        # ... and an emoji as two UTF-16 units: Oslo at 3, not 2.
        ("\U0001f389 Oslo is big", "T1\tLOC 3 7\tOslo\n", "nlplab/brat#1115"),
    ],
)
def test_offsets_from_brats_editor_quirks_fail_with_a_hint(tmp_path, text, ann, issue):
    with pytest.raises(FormatError, match="does not match the text") as err:
        list(brat.read(_pair(tmp_path, "quirk", text, ann)))
    assert issue in err.value.hint


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("T1 LOC 0 4 Oslo", "TAB"),
        ("T1\tLOC 0 4", "three TAB-separated fields"),
        ("T1\tLOC 0 x\tOslo", "expected 'Label start end'"),
        ("T1\tLOC 4 0\tOslo", "start < end"),
        ("T1\tLOC 0 40\tOslo", "start < end <= 15"),
        ("X1\tLOC 0 4\tOslo", "unknown BRAT line kind"),
        ("R1\tNear Arg1:T1", "R1<TAB>Label Arg1:T1 Arg2:T2"),
        ("E1\t", "E1<TAB>Type:T1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path, line, message):
    ann = _pair(tmp_path, "bad", "Oslo and Bergen", f"T9\tLOC 9 15\tBergen\n\n{line}\n")
    with pytest.raises(FormatError, match=message) as err:
        list(brat.read(ann))
    assert err.value.where == f"{ann}:3"


def test_duplicate_id_is_an_error(tmp_path):
    ann = _pair(tmp_path, "dup", "Oslo Oslo", "T1\tLOC 0 4\tOslo\nT1\tLOC 5 9\tOslo\n")
    with pytest.raises(FormatError, match="duplicate annotation id 'T1'") as err:
        list(brat.read(ann))
    assert err.value.where == f"{ann}:2"


def test_unknown_relation_argument_is_an_error(tmp_path):
    ann = _pair(tmp_path, "rel", "Oslo and Bergen", "T1\tLOC 0 4\tOslo\nR1\tNear Arg1:T1 Arg2:T9\n")
    with pytest.raises(FormatError, match="'T9'") as err:
        list(brat.read(ann))
    assert err.value.where == f"{ann}:2"


def test_stdin_and_stdout_are_refused():
    with pytest.raises(FormatError, match="stdin"):
        list(brat.read("-"))
    with pytest.raises(FormatError, match="stdout"):
        brat.write([], "-")


# ------------------------------------------------------------ lines kept in meta
EVENT_ANN = (
    "T1\tOperation 0 5\tmixed\n"
    "E1\tOperation:T1 Participant:T2 \n"
    "T2\tMaterial 10 14\tNaCl\n"
    "A1\tNegated E1\n"
    "#1\tAnnotatorNotes T1\tchecked twice\n"
    "*\tEquiv T2 T3\n"
    "T3\tMaterial 20 24\tsalt\n"
    "R1\tUses Arg1:E1 Arg2:T3\t\n"
)
EXTRA = [
    "E1\tOperation:T1 Participant:T2 ",
    "A1\tNegated E1",
    "#1\tAnnotatorNotes T1\tchecked twice",
    "*\tEquiv T2 T3",
]


def test_event_attribute_note_equiv_lines_kept_and_written_back_identically(tmp_path):
    text = "mixed the NaCl, the salt"
    doc, report = _read_one(_pair(tmp_path / "in", "ev", text, EVENT_ANN))
    # The event trigger T1 is an entity; the relation from E1 goes from its trigger.
    assert doc.entities == [
        Entity(0, 5, "Operation"),
        Entity(10, 14, "Material"),
        Entity(20, 24, "Material"),
    ]
    assert doc.relations == [Relation(0, 2, "Uses")]
    assert doc.meta["brat"]["extra"] == EXTRA
    for kind in ("event (E)", "attribute (A)", "note (#)", "equivalence (*)"):
        assert report.notes[f"BRAT {kind} lines kept in meta"] == 1
    assert report.notes["BRAT event triggers (T lines of E lines) read as entities"] == 1
    assert (
        report.notes["BRAT relations between events read as relations between their triggers"] == 1
    )

    brat.write([doc], tmp_path / "out")
    written = (tmp_path / "out" / "ev.ann").read_text(encoding="utf-8")
    assert written == (
        "T1\tOperation 0 5\tmixed\nT2\tMaterial 10 14\tNaCl\nT3\tMaterial 20 24\tsalt\n"
        "R1\tUses Arg1:E1 Arg2:T3\t\n" + "".join(f"{x}\n" for x in EXTRA)
    )
    assert sorted(written.splitlines()) == sorted(EVENT_ANN.splitlines())


def test_kept_lines_dropped_and_counted_when_entities_changed(tmp_path):
    doc, _ = _read_one(_pair(tmp_path / "in", "ev", "mixed the NaCl, the salt", EVENT_ANN))
    doc.entities[1] = Entity(10, 13, "Material")
    report = Report()
    brat.write([doc], tmp_path / "out", report=report)
    written = (tmp_path / "out" / "ev.ann").read_text(encoding="utf-8")
    assert "E1" not in written and "T2\tMaterial 10 13\tNaC" in written
    assert "R1\tUses Arg1:T1 Arg2:T3\n" in written
    assert report.lost["BRAT E/A/M/N/#/* lines whose entities or relations changed"] == 4


# ------------------------------------------------------------------------- writing
def test_scores_and_unsafe_ids_and_labels(tmp_path):
    docs = [
        Document("a/b", "Oslo", entities=[Entity(0, 4, "LOC", 0.9)]),
        Document("a_b", "Oslo", entities=[Entity(0, 4, "big city")]),
        Document(".hidden", "Oslo Bergen", entities=[Entity(0, 4, "LOC"), Entity(5, 11, "LOC")],
                 relations=[Relation(0, 1, "Near", 0.5)]),
    ]  # fmt: skip
    report = nerx.io.write(docs, tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["_hidden.ann", "_hidden.txt", "a_b-2.ann", "a_b-2.txt", "a_b.ann", "a_b.txt"]
    assert (tmp_path / "out" / "a_b-2.ann").read_text(
        encoding="utf-8"
    ) == "T1\tbig_city 0 4\tOslo\n"
    assert report.lost["entity scores"] == 1
    assert report.lost["relation scores"] == 1
    assert report.notes["document ids changed into safe, unique file names"] == 3


def test_failure_in_the_middle_leaves_no_directory(tmp_path):
    def docs():
        yield Document("one", "Oslo", entities=[Entity(0, 4, "LOC")])
        yield Document("two", "Bergen", entities=[Entity(0, 6, "LOC")])
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        brat.write(docs(), tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- public corpus
def _count_lines(folder: Path, kind: str) -> int:
    return sum(
        line.startswith(kind)
        for ann in folder.glob("*.ann")
        for line in ann.read_text(encoding="utf-8").splitlines()
    )


def test_materials_syntheses_corpus_counts_and_round_trip(shared_data, tmp_path):
    folder = shared_data / "brat_materials_syntheses" / "data"
    report = Report()
    docs = list(nerx.io.read(folder, report=report))
    # The data README's 21,345 entities are all T lines, event triggers included.
    t_lines = _count_lines(folder, "T")
    assert t_lines == 21_345
    assert (report.documents_read, report.entities_read) == (230, t_lines)
    assert report.relations_read == 14_262 == _count_lines(folder, "R")
    assert report.notes["BRAT event (E) lines kept in meta"] == 3_788
    assert report.notes["BRAT event triggers (T lines of E lines) read as entities"] == 3_788

    out = tmp_path / "out"
    written = nerx.io.write(docs, out)
    assert not written.lost
    assert list(nerx.io.read(out)) == docs
    for ann in sorted(folder.glob("*.ann"))[:20]:
        original = ann.read_text(encoding="utf-8").splitlines()
        again = (out / ann.name).read_text(encoding="utf-8").splitlines()
        assert sorted(again) == sorted(line for line in original if line.strip())
