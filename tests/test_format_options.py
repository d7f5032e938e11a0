"""Each format declares the read and write options it takes; the command line routes the
options by those declarations, and one that neither side takes is a clear exit 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from nerx.cli import app
from nerx.errors import ConfigError
from nerx.io import FORMATS, accepted_options, conversion_options, source_options
from tests.conftest import SAMPLES

NEWS = str(SAMPLES / "news.jsonl")


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_declarations_name_real_parameters_of_read_and_write():
    import inspect

    for name, module in FORMATS.items():
        for writing, function in ((False, module.read), (True, module.write)):
            parameters = inspect.signature(function).parameters
            for option in accepted_options(name, writing=writing):
                assert option in parameters, (name, option)


def test_options_go_to_the_side_that_takes_them():
    assert conversion_options("conll", "conll", scheme="bioes") == (
        {"scheme": "bioes"},
        {"scheme": "bioes"},
    )
    assert conversion_options("jsonl", "conll", scheme="bioes", sentence_docs=None) == (
        {},
        {"scheme": "bioes"},
    )
    assert conversion_options("conll", "jsonl", sentence_docs=True) == ({"sentence_docs": True}, {})
    with pytest.raises(ConfigError, match="--scheme does not apply to jsonl input or brat output"):
        conversion_options("jsonl", "brat", scheme="iob2")
    with pytest.raises(ConfigError, match="--sentence-docs does not apply to jsonl input"):
        source_options("jsonl", sentence_docs=True)


def test_convert_refuses_a_scheme_neither_format_takes(tmp_path):
    out = tmp_path / "out.jsonl"
    result = invoke("convert", NEWS, str(out), "--scheme", "bioes")
    assert result.exit_code == 2
    assert "--scheme does not apply to jsonl input or jsonl output" in result.output
    assert "conll output" in result.output  # where it would apply
    assert not out.exists()


def test_convert_writes_the_scheme_it_was_given(tmp_path):
    out = tmp_path / "out.conll"
    result = invoke("convert", NEWS, str(out), "--scheme", "bioes", "-q")
    assert result.exit_code == 0, result.output
    tags = {line.split()[-1][:2] for line in out.read_text().splitlines() if line.strip()}
    assert tags & {"S-", "E-"}  # iob2, the default, has neither


def test_train_refuses_sentence_docs_on_jsonl_before_writing_anything(tmp_path):
    out = tmp_path / "model"
    result = invoke("train", NEWS, "--sentence-docs", "-o", str(out), "--epochs", "1")
    assert result.exit_code == 2
    assert "--sentence-docs does not apply to jsonl input" in result.output
    assert not out.exists()


def test_strict_applies_to_every_format(tmp_path):
    result = invoke("convert", NEWS, str(tmp_path / "out.jsonl"), "--strict", "-q")
    assert result.exit_code == 0, result.output


def test_convert_cuts_a_conll_file_without_docstart_as_reading_does(tmp_path):
    """Without -DOCSTART- lines, reading makes each sentence a document (as `nerx train`
    reads it); `nerx convert` once forced the whole file into one document."""
    from nerx.io import read

    source = tmp_path / "bare.conll"
    source.write_text("Anna B-PER\nsmiled O\n\nOslo B-LOC\n\nIBM B-ORG\nwon O\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = invoke("convert", str(source), str(out), "-q")
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == len(list(read(source))) == 3
