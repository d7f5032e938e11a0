"""HTML (``.html``), write-only: one self-contained page to look at, drawn with displaCy.

Each document is a section with its id, its text with the entities marked, and a table of
its relations::

    <section class="nerx-doc"><h2>news-001</h2>
      ...Maria Keller PER works for Nordlicht Energy ORG...
      <table> Maria Keller (PER) | Work_For | Nordlicht Energy (ORG) | 0.97 </table>

Flat entities use displaCy's entity style; a document with nested or overlapping entities
uses its span style, which stacks them. The page needs no network: styles are inline.
"""

from __future__ import annotations

import hashlib
import html
import os
import re
from collections.abc import Iterable, Iterator

from spacy import displacy
from spacy.vocab import Vocab

from nerx.doc import Document, maximal_non_overlapping
from nerx.errors import UnknownFormatError
from nerx.io.base import Report, atomic_file
from nerx.spacy_ext import SPANS_KEY, to_spacy

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
    spacy_doc = to_spacy(doc, vocab or Vocab())
    colors = {e.label: label_color(e.label) for e in doc.entities}
    nested = len(maximal_non_overlapping(doc.entities)) < len(doc.entities)
    if nested:
        markup = displacy.render(
            spacy_doc, style="span", options={"spans_key": SPANS_KEY, "colors": colors}
        )
    else:
        markup = displacy.render(spacy_doc, style="ent", options={"colors": colors})
        # displaCy puts a line break around each mark; a browser shows it as a space, so
        # "Portland, Oregon" would read "Portland , Oregon".
        markup = _BREAK_AROUND_MARK.sub("", markup)
    return (
        f'<section class="nerx-doc"><h2>{html.escape(doc.id)}</h2>\n'
        f"{markup}\n{relation_table(doc)}</section>\n"
    )


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
