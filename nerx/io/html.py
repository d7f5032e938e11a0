"""HTML (``.html``), write-only: one self-contained page to look at, drawn with displaCy.

Each document is a section with its id, its text with the entities marked, and a table of
its relations::

    <section class="nerx-doc"><h2>news-001</h2>
      ...Maria Keller PER works for Nordlicht Energy ORG...
      <table> Maria Keller (PER) | Work_For | Nordlicht Energy (ORG) | 0.97 </table>

Flat entities use displaCy's entity style; a document with nested or overlapping entities
uses its span style, which stacks them. Both show the document's own text with its own
spacing ("Lindqvist, a chemist", not "Lindqvist , a chemist"). The page needs no network:
styles are inline.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from collections.abc import Iterable, Iterator
from itertools import pairwise

from spacy import displacy
from spacy.displacy import templates
from spacy.vocab import Vocab

from nerx.doc import Document, Entity, maximal_non_overlapping
from nerx.errors import UnknownFormatError
from nerx.io.base import Report, atomic_file
from nerx.spacy_ext import to_spacy

NAME = "html"
SUFFIXES: tuple[str, ...] = (".html", ".htm")

__all__ = ["NAME", "SUFFIXES", "sniff", "read", "write"]

# Light colours that keep black text readable; a label always gets the same one.
PALETTE = (
    "#7aecec", "#bfeeb7", "#feca74", "#ff9561", "#aa9cfc", "#c887fb", "#9cc9cc", "#ffeb80",
    "#ff8197", "#f0d0ff", "#bfe1d9", "#e4e7d2", "#c7d2fe", "#fde68a", "#a7f3d0", "#fbcfe8",
)  # fmt: skip

PAGE_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em;
       color: #222; max-width: 70em; }}
section.nerx-doc {{ border-top: 1px solid #ddd; padding: 0.5em 0 1.5em; }}
h2 {{ font-size: 1.05em; color: #555; margin: 0.6em 0; }}
table {{ border-collapse: collapse; margin-top: 0.8em; font-size: 0.95em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
th {{ background: #f4f4f4; }}
.label {{ font-size: 0.75em; font-weight: bold; color: #555; }}
.none {{ color: #888; font-style: italic; }}
</style></head><body>
<h1>{title}</h1>
"""
_BREAK_AROUND_MARK = re.compile(r"\n(?=<mark)|(?<=</mark>)\n")
_WHITESPACE = re.compile(r"(\s+)")


def _tight(template: str) -> str:
    """A displaCy template without the line breaks and indents around its tags, which a
    browser would show as spaces between the words."""
    return "".join(line.strip() for line in template.splitlines())


# displaCy's span style: its templates and sizes (px), so the page looks like displaCy's.
SPAN_BOX, SPAN_SLICE, SPAN_START = map(
    _tight, (templates.TPL_SPAN, templates.TPL_SPAN_SLICE, templates.TPL_SPAN_START)
)
SPANS_BLOCK = _tight(templates.TPL_SPANS)
TOP_OFFSET, LABEL_OFFSET, SLOT_STEP = 40, 20, 17
PAGE_FOOT = "</body></html>\n"


def sniff(head: str) -> bool:
    """HTML is an output for people; nerx never reads it back."""
    return False


def read(source, report: Report | None = None, **options) -> Iterator[Document]:
    raise UnknownFormatError(
        "html is an output format; nerx cannot read it",
        hint="read the JSONL, CoNLL, DocBin or BRAT file it was made from",
    )


def write(
    docs: Iterable[Document],
    target: str | os.PathLike,
    report: Report | None = None,
    *,
    title: str = "nerx",
    **options,
) -> None:
    """Write one HTML page with every document; streams, holding one document at a time."""
    report = report if report is not None else Report()
    vocab = Vocab()
    with atomic_file(target) as out:
        out.write(PAGE_HEAD.format(title=html.escape(title)))
        for doc in docs:
            out.write(render_document(doc, vocab))
            report.count_written(len(doc.entities), len(doc.relations))
        out.write(PAGE_FOOT)


def render_document(doc: Document, vocab: Vocab | None = None) -> str:
    """One document's section: heading, marked-up text, relation table."""
    nested = len(maximal_non_overlapping(doc.entities)) < len(doc.entities)
    if nested:
        markup = span_markup(doc.validate())
    else:
        spacy_doc = to_spacy(doc, vocab or Vocab())
        colors = {e.label: label_color(e.label) for e in doc.entities}
        markup = displacy.render(spacy_doc, style="ent", options={"colors": colors})
        # displaCy puts a line break around each mark; a browser shows it as a space, so
        # "Portland, Oregon" would read "Portland , Oregon".
        markup = _BREAK_AROUND_MARK.sub("", markup)
    return (
        f'<section class="nerx-doc"><h2>{html.escape(doc.id)}</h2>\n'
        f"{markup}\n{relation_table(doc)}</section>\n"
    )


def span_markup(doc: Document) -> str:
    """displaCy's span style over the document's own text: stacked bars under each entity,
    its label on the first, and between the words the text's own whitespace. (displaCy's
    renderer puts one space after every token.)"""
    entities = sorted(doc.entities, key=lambda e: (e.start, -(e.end - e.start), e.label))
    slots = _slots(entities)
    cuts = sorted({0, len(doc.text)} | {b for e in entities for b in (e.start, e.end)})
    parts = []
    for a, b in pairwise(cuts):
        covering = [
            (e, slot) for e, slot in zip(entities, slots, strict=True) if e.start <= a < e.end
        ]
        if not covering:
            parts.append(_plain_text(doc.text[a:b]))
            continue
        started = {id(e) for e, _ in covering if e.start == a}  # labelled on their first word
        for run in _WHITESPACE.split(doc.text[a:b]):
            if run.isspace():
                parts.append(_plain_text(run))
            elif run:
                parts.append(_span_box(run, covering, started))
                started = set()
    return SPANS_BLOCK.format(content="".join(parts), dir="ltr")


def _slots(entities: list[Entity]) -> list[int]:
    """A bar row (1 = top) for each entity, the lowest that no overlapping earlier one holds."""
    slots: list[int] = []
    for i, e in enumerate(entities):
        taken = {slots[j] for j in range(i) if entities[j].end > e.start}
        slots.append(min(set(range(1, len(taken) + 2)) - taken))
    return slots


def _span_box(text: str, covering: list[tuple[Entity, int]], started: set[int]) -> str:
    bars, labels = [], []
    for entity, slot in sorted(covering, key=lambda c: c[1]):
        top = TOP_OFFSET + SLOT_STEP * (slot - 1)
        color = label_color(entity.label)
        bars.append(SPAN_SLICE.format(bg=color, top_offset=top))
        if id(entity) in started:
            labels.append(
                SPAN_START.format(
                    bg=color, top_offset=top, label=html.escape(entity.label), kb_link=""
                )
            )
    height = TOP_OFFSET + LABEL_OFFSET + SLOT_STEP * (max(slot for _, slot in covering) - 1)
    return SPAN_BOX.format(
        text=html.escape(text),
        span_slices="".join(bars),
        span_starts="".join(labels),
        total_height=height,
    )


def _plain_text(text: str) -> str:
    """Text between the boxes; a line break in it stays one, as in displaCy's entity style."""
    return "<br>".join(html.escape(line) for line in text.split("\n"))


def relation_table(doc: Document) -> str:
    if not doc.relations:
        return ""
    rows = []
    for r in doc.relations:
        score = "" if r.score is None else f"{r.score:.2f}"
        rows.append(
            f"<tr><td>{_mention(doc, r.head)}</td><td>{html.escape(r.label)}</td>"
            f"<td>{_mention(doc, r.tail)}</td><td>{score}</td></tr>"
        )
    return (
        "<table><tr><th>head</th><th>relation</th><th>tail</th><th>score</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n"
    )


def _mention(doc: Document, index: int) -> str:
    entity = doc.entities[index]
    text = html.escape(doc.text[entity.start : entity.end])
    return f'{text} <span class="label">{html.escape(entity.label)}</span>'


def label_color(label: str) -> str:
    digest = hashlib.blake2s(label.encode("utf-8"), digest_size=2).digest()
    return PALETTE[int.from_bytes(digest, "big") % len(PALETTE)]
