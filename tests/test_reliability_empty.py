"""One rule for empty input, whatever its shape: no documents read is a yellow warning in
the summary and exit 0; ``--strict`` makes it an error that leaves no output."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def empty_jsonl(tmp: Path) -> str:
    (tmp / "e.jsonl").write_bytes(b"")
    return str(tmp / "e.jsonl")


def blank_lines(tmp: Path) -> str:
    (tmp / "b.jsonl").write_text("\n  \n\n")
    return str(tmp / "b.jsonl")


def empty_conll(tmp: Path) -> str:
    (tmp / "e.conll").write_bytes(b"")
    return str(tmp / "e.conll")


def docstart_only(tmp: Path) -> str:
    (tmp / "d.conll").write_text("-DOCSTART- -X- O O\n\n")
    return str(tmp / "d.conll")


def empty_docbin(tmp: Path) -> str:
    (tmp / "e.spacy").write_bytes(b"")
    return str(tmp / "e.spacy")


def empty_brat(tmp: Path) -> str:
    (tmp / "brat").mkdir()
    return str(tmp / "brat")


def empty_stdin(tmp: Path) -> str:
    return "-"


EMPTY = {
    f.__name__: f
    for f in (
        empty_jsonl,
        blank_lines,
        empty_conll,
        docstart_only,
        empty_docbin,
        empty_brat,
        empty_stdin,
    )
}


def convert(*args):
    result = CliRunner().invoke(app, ["convert", *map(str, args)], input="")
    return result, ANSI.sub("", result.stderr)


@pytest.mark.parametrize("case", EMPTY)
def test_no_documents_is_a_warning(tmp_path, case):
    source = EMPTY[case](tmp_path)
    out = tmp_path / "out.jsonl"
    result, stderr = convert(source, out)
    assert result.exit_code == 0, stderr
    assert "warning: no documents in" in stderr
    assert out.read_text() == ""


@pytest.mark.parametrize("case", EMPTY)
def test_no_documents_under_strict_is_an_error_and_writes_nothing(tmp_path, case):
    source = EMPTY[case](tmp_path)
    out = tmp_path / "out.jsonl"
    result, stderr = convert(source, out, "--strict")
    assert result.exit_code == 2, stderr
    assert "no documents to read" in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_the_warning_shows_under_quiet(tmp_path):
    result, stderr = convert(empty_jsonl(tmp_path), tmp_path / "out.jsonl", "-q")
    assert result.exit_code == 0
    assert stderr.strip().startswith("warning: no documents in")


def test_extract_warns_on_an_input_without_documents(tiny_encoder, tmp_path):
    from nerx.models import ModelConfig, model_class, save_model

    model = model_class("token").create(ModelConfig("token", ["LOC"], encoder=tiny_encoder))
    saved = save_model(model, tmp_path / "model")
    source = blank_lines(tmp_path)
    result = CliRunner().invoke(app, ["extract", source, "-m", str(saved)])
    stderr = ANSI.sub("", result.stderr)
    assert result.exit_code == 0, stderr
    assert "0 documents" in stderr and "warning: the input holds no documents" in stderr
    assert result.stdout == ""
