"""HTML output (one self-contained displaCy page) and the committed shell completions."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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


def headless_browser() -> str:
    """The Chromium on PATH; CI installs it, so there a missing one fails the test."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("no Chromium on PATH; CI must install it (the Debian package chromium)")
    pytest.skip("Chromium is not installed")


def test_page_renders_in_headless_chromium(tmp_path):
    browser = headless_browser()
    out = tmp_path / "news.html"
    convert(NEWS, out)
    shot = tmp_path / "news.png"
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--window-size=1000,900", f"--screenshot={shot}", out.as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
