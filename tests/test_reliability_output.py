"""Outputs under OS failure: one red line naming the path the user gave, exit code 2, no
partial output; outputs keep their mode, their symlinks and read-only files; ``-o /dev/null``.

A full disk and a read-only mount are simulated by making the OS call fail (``os.write``
with ENOSPC, ``mkstemp``/``mkdir`` with EROFS), since mounting needs privileges; stdout to
``/dev/full`` is the real thing.
"""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nerx.cli import app

REPO = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
RECORD = '{"id": "d1", "text": "Maria lives in Oslo.", "entities": [{"start": 15, "end": 19, "label": "LOC"}]}\n'


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, ANSI.sub("", result.stderr)


@pytest.fixture
def corpus(tmp_path) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(RECORD * 50, encoding="utf-8")
    return path


def need_device(path: str) -> None:
    """Skip where the system lacks the device; under CI, which has it, fail instead."""
    if not Path(path).is_char_device():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must provide {path}")
        pytest.skip(f"this system has no {path}")


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and ".part" not in stderr
    return lines[0]


class FullDisk(io.RawIOBase):
    """A file on a full disk: every write fails with ENOSPC, with no file name (as the OS)."""

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("to", ["jsonl", "conll", "docbin", "brat"])
def test_a_full_disk_is_one_line_naming_the_output_and_leaves_nothing(
    corpus, tmp_path, monkeypatch, to
):
    out = tmp_path / "out" / ("pred" if to == "brat" else f"pred.{to}")
    out.parent.mkdir()

    def fdopen(fd, mode="r", *args, encoding=None, newline=None, **kwargs):
        os.close(fd)
        buffered = io.BufferedWriter(FullDisk())
        return buffered if "b" in mode else io.TextIOWrapper(buffered, encoding="utf-8")

    def write_bytes(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(os, "fdopen", fdopen)
    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    result, stderr = invoke("convert", corpus, out, "--to", to, "-q")
    assert result.exit_code == 2, stderr
    line = one_error_line(stderr)
    assert str(out) in line and "No space left on device" in line
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES], ids=["read-only", "no-access"])
@pytest.mark.parametrize("where", ["file", "new-subdir", "brat"])
def test_an_unwritable_place_is_one_line_naming_the_output(
    corpus, tmp_path, monkeypatch, where, code
):
    """As the OS does, the failing call names the temporary file or the new directory."""
    out = {
        "file": tmp_path / "pred.jsonl",
        "new-subdir": tmp_path / "new" / "pred.jsonl",
        "brat": tmp_path / "pred",
    }[where]
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if self.exists() and kwargs.get("exist_ok"):
            return real_mkdir(self, *args, **kwargs)
        raise OSError(code, os.strerror(code), str(self))

    def mktemp(*args, dir=None, prefix="", suffix="", **kwargs):
        raise OSError(code, os.strerror(code), f"{dir}/{prefix}abcd{suffix}")

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(tempfile, "mkstemp", mktemp)
    monkeypatch.setattr(tempfile, "mkdtemp", mktemp)
    result, stderr = invoke("convert", corpus, out, "-q")
    assert result.exit_code == 2, stderr
    line = one_error_line(stderr)
    assert str(out) in line and os.strerror(code) in line
    assert not out.exists()


def test_stdout_to_dev_full_is_one_line_and_exit_2(corpus):
    need_device("/dev/full")
    with open("/dev/full", "wb") as full:
        done = subprocess.run(
            [sys.executable, "-m", "nerx", "convert", str(corpus), "-"],
            stdout=full,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
            cwd=REPO,
            timeout=120,
        )
    stderr = ANSI.sub("", done.stderr.decode())
    assert done.returncode == 2, stderr
    line = one_error_line(stderr)
    assert "<stdout>" in line and "No space left on device" in line


def test_an_existing_directory_as_file_output_names_it(corpus, tmp_path):
    target = tmp_path / "existing.jsonl"
    target.mkdir()
    result, stderr = invoke("convert", corpus, target, "-q")
    assert result.exit_code == 2
    line = one_error_line(stderr)
    assert str(target) in line and "directory" in line
    assert list(tmp_path.glob(".*")) == []


def test_an_output_gets_the_mode_of_the_umask(corpus, tmp_path):
    before = os.umask(0o022)
    try:
        result, stderr = invoke("convert", corpus, tmp_path / "out.jsonl", "-q")
    finally:
        os.umask(before)
    assert result.exit_code == 0, stderr
    assert stat.S_IMODE((tmp_path / "out.jsonl").stat().st_mode) == 0o644


def test_a_replaced_output_keeps_its_mode(corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    out.chmod(0o640)
    assert invoke("convert", corpus, out, "-q")[0].exit_code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert out.read_text().count("\n") == 50


def test_a_read_only_output_file_is_not_replaced(corpus, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n")
    out.chmod(0o444)
    result, stderr = invoke("convert", corpus, out, "-q")
    assert result.exit_code == 2
    assert str(out) in one_error_line(stderr) and "read-only" in stderr
    assert out.read_text() == "keep me\n"


def test_a_symlinked_output_writes_its_target(corpus, tmp_path):
    real = tmp_path / "real.jsonl"
    real.write_text("old\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(real.name)
    assert invoke("convert", corpus, link, "-q")[0].exit_code == 0
    assert link.is_symlink() and os.readlink(link) == real.name
    assert real.read_text().count("\n") == 50


def test_dev_null_without_suffix_is_written_as_jsonl(corpus):
    need_device("/dev/null")
    result, stderr = invoke("convert", corpus, "/dev/null")
    assert result.exit_code == 0, stderr
    assert "jsonl -> jsonl" in stderr
    assert Path("/dev/null").is_char_device()


def test_an_existing_file_without_suffix_is_written_as_jsonl_in_place(corpus, tmp_path):
    out = tmp_path / "predictions"
    out.write_text("old\n")
    result, stderr = invoke("convert", corpus, out, "-q")
    assert result.exit_code == 0, stderr
    assert out.is_file()
    assert [line.startswith('{"id":"d1"') for line in out.read_text().splitlines()] == [True] * 50


def test_a_fifo_without_suffix_is_written_in_place(corpus, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    result, stderr = invoke("convert", corpus, fifo, "-q")
    data = reader.communicate(timeout=60)[0].decode()
    assert result.exit_code == 0, stderr
    assert data.count("\n") == 50
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "pipe"]


def test_a_new_path_without_suffix_is_still_brat(corpus, tmp_path):
    out = tmp_path / "brat_out"
    assert invoke("convert", corpus, out, "-q")[0].exit_code == 0
    assert out.is_dir() and (out / "d1.ann").is_file() and (out / "d1.txt").is_file()


@pytest.fixture(scope="module")
def tiny_model(tiny_encoder, tmp_path_factory) -> Path:
    from nerx.models import ModelConfig, model_class, save_model

    model = model_class("token").create(ModelConfig("token", ["LOC"], encoder=tiny_encoder))
    return save_model(model, tmp_path_factory.mktemp("tiny") / "model")


def test_extract_to_dev_null(corpus, tiny_model):
    need_device("/dev/null")
    result, stderr = invoke("extract", corpus, "-m", tiny_model, "-o", "/dev/null")
    assert result.exit_code == 0, stderr
    assert "50 documents" in stderr
    assert Path("/dev/null").is_char_device()


def test_extract_to_an_existing_file_without_suffix_writes_jsonl(corpus, tiny_model, tmp_path):
    out = tmp_path / "predictions"
    out.write_text("old\n")
    result, stderr = invoke("extract", corpus, "-m", tiny_model, "-o", out, "-q")
    assert result.exit_code == 0, stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 50 and all(line.startswith('{"id":"d1"') for line in lines)
