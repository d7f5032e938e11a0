"""HTML output (one self-contained displaCy page) and the committed shell completions."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nerx.cli.completions import COMPLETE_VAR, FILES, script
from nerx.errors import UnknownFormatError
from nerx.io import convert, detect_format, read
from tests.conftest import REPO, SAMPLES

NEWS = str(SAMPLES / "news.jsonl")


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("html") / "news.html"
    report = convert(NEWS, out)
    assert report.documents_written == 5 and not report.lost
    return out.read_text(encoding="utf-8")


def test_html_is_detected_by_suffix_and_cannot_be_read(tmp_path):
    assert detect_format(tmp_path / "x.html", for_writing=True) == "html"
    (tmp_path / "x.html").write_text("<html></html>", encoding="utf-8")
    with pytest.raises(UnknownFormatError, match="output format"):
        list(read(str(tmp_path / "x.html")))


def test_page_has_every_document_entity_and_relation(page):
    docs = list(read(NEWS))
    sections = page.split('<section class="nerx-doc">')[1:]
    assert len(sections) == len(docs)
    for doc, section in zip(docs, sections, strict=True):
        assert f"<h2>{doc.id}</h2>" in section
        # displaCy's span style draws each token on its own, so compare visible words.
        visible = " ".join(re.sub(r"<[^>]+>", " ", section).split())
        for ent in doc.entities:
            assert doc.text[ent.start : ent.end].split()[0] in visible
            assert visible.count(ent.label) >= 1
    rows = re.findall(r"<tr><td>", page)
    assert len(rows) == sum(len(d.relations) for d in docs)
    assert "Work_For" in page and "OrgBased_In" in page


def test_nested_document_uses_span_style_and_flat_ones_entity_marks(page):
    sections = page.split('<section class="nerx-doc">')[1:]
    nested = [s for s in sections if "<h2>news-001</h2>" in s][0]  # Oslo inside its university
    flat = [s for s in sections if "<h2>news-002</h2>" in s][0]
    assert "<mark" not in nested and "position: absolute" in nested  # displaCy span lines
    assert "<mark" in flat
    # No line break between a mark and the next text: it would show as "Portland , Oregon".
    assert "</mark>\n" not in page


def test_page_is_self_contained(page):
    assert not re.search(r"""(src|href)=["']?https?:""", page)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_page_has_no_half_written_file_on_error(tmp_path):
    from nerx.io import write

    def docs():
        yield from read(NEWS)
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write(docs(), tmp_path / "out.html")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shell", sorted(FILES))
def test_committed_completion_is_up_to_date(shell):
    committed = REPO / "completions" / FILES[shell]
    assert committed.is_file(), "run: python -m nerx.cli.completions completions/"
    assert committed.read_text(encoding="utf-8") == script(shell).rstrip("\n") + "\n", (
        "completions/ is out of date: python -m nerx.cli.completions completions/"
    )


def test_bash_completion_offers_commands_and_options():
    nerx = shutil.which("nerx") or str(Path(sys.executable).with_name("nerx"))

    def complete(words: str) -> list[str]:
        env = {
            **os.environ,
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
            COMPLETE_VAR: "complete_bash",
        }
        done = subprocess.run([nerx], env=env, capture_output=True, text=True, timeout=60)
        return done.stdout.split()

    assert {"train", "extract", "eval", "convert"} <= set(complete("nerx "))
    assert "--model" in complete("nerx extract --mo")


class _VisibleText(HTMLParser):
    """The text of a section as it reads on the page: displaCy's span-style bars and labels
    (absolutely positioned) left out, an entity mark read as its text alone, <br> a break."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0  # depth inside a bar or label
        self._mark: list[str] | None = None  # text pieces of the mark being read

    def handle_starttag(self, tag, attrs):
        style = dict(attrs).get("style") or ""
        if self._hidden or "position: absolute" in style:
            self._hidden += 1
        elif tag == "mark":
            self._mark = []
        elif self._mark is not None:
            self._hidden += 1  # the label inside a mark
        elif tag == "br":
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if self._hidden:
            self._hidden -= 1
        elif tag == "mark" and self._mark is not None:
            self.parts.append(self._mark[0].strip() if self._mark else "")
            self._mark = None

    def handle_data(self, data):
        if self._hidden:
            return
        (self._mark if self._mark is not None else self.parts).append(data)


def visible_text(markup: str) -> str:
    parser = _VisibleText()
    parser.feed(markup)
    return " ".join("".join(parser.parts).split())


def sections_by_id(page: str) -> dict[str, str]:
    found = {}
    for section in page.split('<section class="nerx-doc">')[1:]:
        doc_id = re.search(r"<h2>(.*?)</h2>", section).group(1)
        found[doc_id] = section.split("</h2>", 1)[1].split("<table>")[0]
    return found


def test_both_styles_show_the_documents_own_text(page):
    sections = sections_by_id(page)
    docs = list(read(NEWS))
    nested = next(d for d in docs if d.id == "news-001")  # "Lindqvist, a chemist at ..."
    assert "position: absolute" in sections[nested.id] and "," in nested.text
    for doc in docs:
        assert visible_text(sections[doc.id]) == " ".join(doc.text.split()), doc.id


def test_span_style_keeps_line_breaks_and_stacks_every_entity_once():
    from nerx.doc import Document, Entity
    from nerx.io.html import render_document

    text = "Ada Lovelace, of the\nUniversity of London, wrote."
    doc = Document(
        "d1",
        text,
        entities=[
            Entity(0, 12, "PER"),
            Entity(21, 41, "ORG"),
            Entity(35, 42, "LOC"),  # "London," overlaps ORG
        ],
    )
    markup = sections_by_id(render_document(doc))["d1"]
    assert "<br>" in markup and visible_text(markup) == " ".join(text.split())
    boxes = markup.split("display: inline-block")[1:]  # one per word an entity covers
    assert [re.search(r">([^<]+)<", box).group(1) for box in boxes] == [
        "Ada", "Lovelace", "University", "of", "London", ",",
    ]  # fmt: skip
    assert [box.count("height: 4px; left") for box in boxes] == [1, 1, 1, 1, 2, 1]  # bars
    labels = re.findall(r"font-size: 0.6em[^>]*>([^<]+)<", markup)
    assert labels == ["PER", "ORG", "LOC"]  # each entity labelled once, on its first box


def browser() -> str:
    names = ("chromium", "chromium-browser", "google-chrome")
    found = next(filter(None, map(shutil.which, names)), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the browser test needs Chromium: apt-get install chromium")
        pytest.skip("Chromium is not installed")
    return found


#: Appended to a copy of the page: what the browser shows of each document's text, with
#: span-style bars and labels removed and each mark read as its text, as JSON in a <pre>.
PROBE = """<pre id="probe"></pre><script>
for (const el of [...document.querySelectorAll("section.nerx-doc *")]) {
  if (getComputedStyle(el).position === "absolute") el.remove();
}
for (const mark of [...document.querySelectorAll("mark")]) {
  mark.replaceWith(mark.firstChild.textContent.trim());
}
const shown = {};
for (const s of document.querySelectorAll("section.nerx-doc")) {
  shown[s.querySelector("h2").innerText] = s.querySelector(".entities, .spans").innerText;
}
document.getElementById("probe").textContent = JSON.stringify(shown);
</script>
"""


def test_page_renders_in_headless_chromium(tmp_path):
    chromium = browser()
    out = tmp_path / "news.html"
    convert(NEWS, out)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    shot = tmp_path / "news.png"
    subprocess.run(
        [chromium, *flags, "--window-size=1000,900", f"--screenshot={shot}", out.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    probe = tmp_path / "probe.html"
    probe.write_text(out.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    shown = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1)))
    docs = list(read(NEWS))
    assert "news-001" in shown  # nested entities ("Oslo" in its university) and punctuation
    assert {doc.id: " ".join(shown[doc.id].split()) for doc in docs} == {
        doc.id: " ".join(doc.text.split()) for doc in docs
    }
