"""``nerx convert`` end to end, its error handling, and every command's --help.

Click (>= 8.2) keeps stderr apart from stdout in ``CliRunner`` results: the summary and the
errors are checked on ``result.stderr``, the data on ``result.stdout``.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nerx
from nerx.cli import app

runner = CliRunner()
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def invoke(*args: str | Path, input: str | bytes | None = None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def plain(text: str) -> str:
    return ANSI.sub("", text)


def news_records(samples: Path) -> list[dict]:
    return [json.loads(line) for line in (samples / "news.jsonl").read_text("utf-8").splitlines()]


def nested_count(records: list[dict]) -> int:
    """Entities that another, larger entity of the same record contains."""
    count = 0
    for record in records:
        spans = [(e["start"], e["end"]) for e in record["entities"]]
        count += sum(any(o != s and o[0] <= s[0] and s[1] <= o[1] for o in spans) for s in spans)
    return count


def totals(records: list[dict]) -> tuple[int, int, int]:
    return (
        len(records),
        sum(len(r["entities"]) for r in records),
        sum(len(r["relations"]) for r in records),
    )


def summary_rows(stderr: str) -> dict[str, tuple[int, ...]]:
    """The numbers of the summary's ``read`` and ``written to ...`` rows."""
    rows = {}
    for line in plain(stderr).splitlines():
        label = line.strip().split("│")[0].strip()
        if label == "read" or label.startswith("written to"):
            rows[label.split()[0]] = tuple(int(n) for n in re.findall(r"│\s*(\d+)", line))
    return rows


def not_kept(stderr: str) -> dict[str, int]:
    found = re.findall(r"^not kept: (\d+) (.+)$", plain(stderr), flags=re.MULTILINE)
    return {reason: int(n) for n, reason in found}


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


# ----------------------------------------------------------------------------- conversions
def test_convert_to_conll_summarises_on_stderr(samples, tmp_path):
    records = news_records(samples)
    docs, entities, relations = totals(records)
    nested = nested_count(records)
    out = tmp_path / "out.conll"

    result = invoke("convert", samples / "news.jsonl", out)

    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert summary_rows(result.stderr) == {
        "read": (docs, entities, relations),
        "written": (docs, entities - nested, 0),
    }
    lost = not_kept(result.stderr)
    assert lost["nested or overlapping entities (CoNLL keeps the outermost)"] == nested
    assert lost["relations (CoNLL holds none)"] == relations
    assert lost["document ids (CoNLL holds none)"] == docs
    assert lost["documents' spacing (CoNLL joins words with single spaces)"] == docs
    assert len(lost) == 4
    assert sum(len(d.entities) for d in nerx.read(out)) == entities - nested


@pytest.mark.parametrize("name", ["out.spacy", "out_brat", "out.json"])
def test_convert_to_lossless_formats_keeps_every_count(samples, tmp_path, name):
    counts = totals(news_records(samples))
    result = invoke("convert", samples / "news.jsonl", tmp_path / name)
    assert result.exit_code == 0, result.output
    assert summary_rows(result.stderr) == {"read": counts, "written": counts}
    assert not_kept(result.stderr) == {}
    assert (tmp_path / name).exists()


def test_quiet_prints_nothing(samples, tmp_path):
    result = invoke("convert", samples / "news.jsonl", tmp_path / "out.spacy", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == result.stdout == ""


def test_from_and_to_override_the_suffixes(samples, tmp_path):
    source = tmp_path / "news.conll"  # a misleading suffix: the content is JSONL
    shutil.copy(samples / "news.jsonl", source)
    out = tmp_path / "out.jsonl"
    result = invoke("convert", source, out, "--from", "jsonl", "--to", "conll")
    assert result.exit_code == 0, result.output
    assert out.read_text("utf-8").startswith("-DOCSTART-")
    records = news_records(samples)
    docs = list(nerx.read(out, "conll"))
    assert len(docs) == len(records)
    assert sum(len(d.entities) for d in docs) == totals(records)[1] - nested_count(records)


def test_target_without_a_known_suffix_needs_to(samples, tmp_path):
    result = invoke("convert", samples / "news.jsonl", tmp_path / "out.data")
    assert result.exit_code == 2
    assert "out.data" in result.stderr and "--to" in result.stderr
    ok = invoke("convert", samples / "news.jsonl", tmp_path / "out.data", "-t", "conll")
    assert ok.exit_code == 0, ok.output


def test_stdin_to_stdout(samples):
    conll_text = "-DOCSTART- O\n\nAda B-PER\nLovelace I-PER\nmet O\nBabbage B-PER\n\n"
    result = invoke("convert", "-", "-", "--from", "conll", "--to", "jsonl", input=conll_text)
    assert result.exit_code == 0, result.output
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["text"] == "Ada Lovelace met Babbage"
    spans = [(e["start"], e["end"], e["label"]) for e in record["entities"]]
    assert spans == [(0, 12, "PER"), (17, 24, "PER")]
    assert summary_rows(result.stderr)["read"] == (1, 2, 0)
    assert "-DOCSTART-" not in result.stderr


def test_stdin_is_jsonl_and_stdout_gets_jsonl_by_default(samples, tmp_path):
    records = news_records(samples)
    data = (samples / "news.jsonl").read_bytes()
    out = tmp_path / "out.conll"
    assert invoke("convert", "-", out, input=data).exit_code == 0
    assert len(list(nerx.read(out))) == len(records)

    result = invoke("convert", samples / "news.jsonl", "-")
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.stdout.splitlines()] == records
    assert "written to stdout" in result.stderr
    assert summary_rows(result.stderr)["written"] == totals(records)


# ----------------------------------------------------------------------------- errors
def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def truncated_json(tmp: Path):
    good = (
        '{"id": "a", "text": "Ada met Bob.", "entities": [{"start": 0, "end": 3, "label": "X"}]}\n'
    )
    path = write(tmp / "bad.jsonl", good + good.replace('"a"', '"b"') + good[:40] + "\n")
    return [path, tmp / "out.conll"], f"{path}:3"


def wrong_columns(tmp: Path):
    path = write(tmp / "bad.conll", "EU B-ORG\nrejects O\n\nGerman JJ B-MISC\n")
    return [path, tmp / "out.jsonl"], f"{path}:4"


def i_after_o(scheme: str):
    def make(tmp: Path):
        path = write(tmp / "bad.conll", "The O\nEU I-ORG\nsaid O\n")
        return [path, tmp / "out.jsonl", "--scheme", scheme], f"{path}:2"

    return make


def brat_offset_mismatch(tmp: Path):
    write(tmp / "corpus" / "doc.txt", "Ada met Bob.\n")
    ann = write(tmp / "corpus" / "doc.ann", "T1\tPER 0 3\tAda\nT2\tPER 7 10\tBob\n")
    return [tmp / "corpus", tmp / "out.jsonl"], f"{ann}:2"


def invalid_utf8(tmp: Path):
    path = write(tmp / "bad.jsonl", b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    return [path, tmp / "out.conll"], f"{path}:2"


def empty_file_under_strict(tmp: Path):
    path = write(tmp / "empty.jsonl", b"")
    return [path, tmp / "out.conll", "--strict"], str(path)


def empty_file_without_suffix(tmp: Path):
    path = write(tmp / "empty", b"")
    return [path, tmp / "out.conll"], str(path)


def unknown_input_format(tmp: Path):
    path = write(tmp / "in.jsonl", '{"text": "a"}\n')
    return [path, tmp / "out.conll", "--from", "xml"], "'xml'"


def unknown_output_format(tmp: Path):
    path = write(tmp / "in.jsonl", '{"text": "a"}\n')
    return [path, tmp / "out.conll", "--to", "xml"], "'xml'"


def missing_input(tmp: Path):
    tmp.mkdir(exist_ok=True)
    return [tmp / "missing.jsonl", tmp / "out.conll"], str(tmp / "missing.jsonl")


def missing_input_without_a_known_suffix(tmp: Path):
    tmp.mkdir(exist_ok=True)
    return [tmp / "eng.trian", tmp / "out.spacy"], f"no such file or directory: {tmp / 'eng.trian'}"


ERRORS = {
    "truncated JSON line": truncated_json,
    "wrong number of CoNLL columns": wrong_columns,
    "I- after O under iob2": i_after_o("iob2"),
    "I- after O under bioes": i_after_o("bioes"),
    "BRAT offset that does not match the text": brat_offset_mismatch,
    "invalid UTF-8": invalid_utf8,
    "empty file under --strict": empty_file_under_strict,
    "empty file without suffix": empty_file_without_suffix,
    "unknown input format": unknown_input_format,
    "unknown output format": unknown_output_format,
    "nonexistent input": missing_input,
    "nonexistent input without a known suffix": missing_input_without_a_known_suffix,
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_are_one_line_exit_2_and_leave_no_output(tmp_path, case):
    folder = tmp_path / "work"
    args, named = ERRORS[case](folder)
    before = files_under(folder)

    result = invoke("convert", *args)

    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in plain(result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert named in lines[0]
    assert result.stdout == ""
    assert files_under(folder) == before  # no output, and no temporary file either


def test_i_after_o_is_valid_iob1(tmp_path):
    path = write(tmp_path / "in.conll", "The O\nEU I-ORG\nsaid O\n")
    out = tmp_path / "out.jsonl"
    result = invoke("convert", path, out, "--scheme", "iob1")
    assert result.exit_code == 0, result.output
    [doc] = nerx.read(out)
    assert [(doc.entity_text(e), e.label) for e in doc.entities] == [("EU", "ORG")]


def test_a_failed_conversion_keeps_an_existing_output(tmp_path):
    args, _ = truncated_json(tmp_path)
    args[1].write_text("previous\n", encoding="utf-8")
    assert invoke("convert", *args).exit_code == 2
    assert args[1].read_text(encoding="utf-8") == "previous\n"


# ----------------------------------------------------------------------------- help
def example_lines(text: str) -> list[str]:
    return [line.strip() for line in plain(text).splitlines() if line.strip().startswith("nerx ")]


@pytest.mark.parametrize("command", ["convert", "train", "extract", "eval"])
def test_command_help_has_an_example(command):
    for flag in ("--help", "-h"):
        result = invoke(command, flag)
        assert result.exit_code == 0, result.output
        assert any(line.startswith(f"nerx {command} ") for line in example_lines(result.stdout))


def test_root_help_lists_every_command():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    for command in ("convert", "train", "extract", "eval"):
        assert re.search(rf"^\W*{command}\s", plain(result.stdout), flags=re.MULTILINE)


def test_root_help_has_an_example():
    result = invoke("--help")
    assert result.exit_code == 0
    assert example_lines(result.stdout)
