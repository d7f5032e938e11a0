"""Extraction at scale: chunks in a journal, ``--resume`` after an interruption or a SIGKILL,
refusals when what the run depends on changed, ``--on-error skip``, background preparation,
SIGTERM, and torchrun sharding over two CPU processes (gloo), on a tiny random model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from nerx.cli import app
from nerx.errors import ConfigError
from nerx.io import read
from nerx.journal import journal_path, rejected_path
from nerx.models import ModelConfig, load_model, model_class, save_model
from nerx.pipeline import ExtractionProgress, extract, extract_corpus

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_corpora"
PYTHON = sys.executable
TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
CHUNK = 3
FORMATS = {"jsonl": "out.jsonl", "conll": "out.conll", "docbin": "out.spacy", "brat": "out"}

# Runs the command line with each journal commit slowed down, and, when asked, one process
# dying after a number of chunks, so a test can stop a run in its middle on purpose.
SLOW_MAIN = """
import os, sys, time
import nerx.journal

commit = nerx.journal.Journal.commit

def slow_commit(self, *args, **kwargs):
    commit(self, *args, **kwargs)
    time.sleep(float(os.environ.get("TEST_PAUSE", "0.3")))
    die_after = int(os.environ.get("TEST_DIE_AFTER", "0"))
    if die_after and os.environ.get("RANK", "0") == os.environ.get("TEST_DIE_RANK", "0"):
        if len(list(self.path.glob("*.done.json"))) >= die_after:
            os._exit(1)

nerx.journal.Journal.commit = slow_commit
from nerx.cli import main
sys.argv[0] = "nerx"
main()
"""


def subprocess_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"  # the same numerics in every process, and cores are shared
    env.pop("RANK", None)
    env.pop("WORLD_SIZE", None)
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def model_path(tiny_encoder, tmp_path_factory) -> Path:
    """A random spandec model (weights moved off their init, so it finds many entities)."""
    config = ModelConfig(kind="spandec", labels=["LOC", "MISC", "ORG", "PER"], encoder=tiny_encoder)
    torch.manual_seed(3)
    model = model_class("spandec").create(config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    return save_model(model, tmp_path_factory.mktemp("scale-model") / "model")


@pytest.fixture(scope="module")
def model(model_path):
    return load_model(model_path)


def write_corpus(path: Path, n: int) -> Path:
    """``n`` raw-text documents with ids, from the sample corpus."""
    texts = [json.loads(line)["text"] for line in (SAMPLES / "news_raw.jsonl").open()]
    with path.open("w", encoding="utf-8") as out:
        for i in range(n):
            out.write(json.dumps({"id": f"doc-{i:03d}", "text": texts[i % len(texts)]}) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path) -> Path:
    return write_corpus(tmp_path / "corpus.jsonl", 17)  # 6 chunks, the last one short


def output_of(path: Path):
    """What must be equal between two runs: bytes of a file, names and bytes of a BRAT
    directory, the documents of a DocBin."""
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    if path.suffix == ".spacy":
        return list(read(path))
    return path.read_bytes()


def uninterrupted(model, corpus: Path, target: Path, fmt: str):
    result = extract_corpus(corpus, target, model, to_format=fmt, chunk_size=CHUNK)
    assert result.merged and not journal_path(target).exists()
    return output_of(target)


class Interrupt(Exception):
    pass


def stop_after(k: int):
    seen = []

    def on_chunk(record) -> None:
        seen.append(record.chunk)
        if len(seen) == k:
            raise Interrupt

    return on_chunk


# ----------------------------------------------------------------------------- resume
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_run_interrupted_after_k_chunks_resumes_to_the_same_output(model, corpus, tmp_path, fmt):
    expected = uninterrupted(model, corpus, tmp_path / "whole" / FORMATS[fmt], fmt)
    target = tmp_path / "resumed" / FORMATS[fmt]
    with pytest.raises(Interrupt):
        extract_corpus(
            corpus, target, model, to_format=fmt, chunk_size=CHUNK, resume=True,
            on_chunk=stop_after(2),
        )  # fmt: skip
    assert not target.exists()
    assert len(list(journal_path(target).glob("*.done.json"))) == 2
    result = extract_corpus(corpus, target, model, to_format=fmt, chunk_size=CHUNK, resume=True)
    assert result.resumed_chunks == 2
    assert result.stats.documents == 17 - 2 * CHUNK  # only the unfinished chunks ran again
    assert result.documents == 17
    assert output_of(target) == expected
    assert not journal_path(target).exists()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_sigkilled_run_resumes_to_the_same_output(model, model_path, tmp_path, fmt):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 24)
    expected = uninterrupted(model, corpus, tmp_path / "whole" / FORMATS[fmt], fmt)
    target = tmp_path / "killed" / FORMATS[fmt]
    (tmp_path / "slow_main.py").write_text(SLOW_MAIN, encoding="utf-8")
    command = [
        PYTHON, str(tmp_path / "slow_main.py"), "extract", str(corpus), "-m", str(model_path),
        "-o", str(target), "--to", fmt, "--chunk-size", str(CHUNK), "--device", "cpu",
        "--resume",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=subprocess_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while len(list(journal_path(target).glob("*.done.json"))) < 2:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the run never finished two chunks"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not target.exists()
    done = len(list(journal_path(target).glob("*.done.json")))
    assert 2 <= done < 8
    result = extract_corpus(corpus, target, model, to_format=fmt, chunk_size=CHUNK, resume=True)
    assert result.resumed_chunks == done
    assert output_of(target) == expected


def test_resume_without_a_journal_starts_a_new_run(model, corpus, tmp_path):
    expected = uninterrupted(model, corpus, tmp_path / "a.jsonl", "jsonl")
    result = extract_corpus(corpus, tmp_path / "b.jsonl", model, chunk_size=CHUNK, resume=True)
    assert result.resumed_chunks == 0
    assert (tmp_path / "b.jsonl").read_bytes() == expected


def test_the_output_equals_streaming_with_the_same_chunks(model, corpus, tmp_path):
    target = tmp_path / "out.jsonl"
    extract_corpus(corpus, target, model, chunk_size=CHUNK)
    streamed = list(extract(read(corpus), model, chunk_size=CHUNK))
    assert [json.loads(line)["id"] for line in target.read_text().splitlines()] == [
        d.id for d in streamed
    ]
    from nerx.io import write

    write(streamed, tmp_path / "streamed.jsonl")
    assert target.read_bytes() == (tmp_path / "streamed.jsonl").read_bytes()


# ----------------------------------------------------------------------------- refusals
@pytest.fixture
def interrupted(model, corpus, tmp_path) -> Path:
    target = tmp_path / "out.jsonl"
    with pytest.raises(Interrupt):
        extract_corpus(corpus, target, model, chunk_size=CHUNK, resume=True, on_chunk=stop_after(1))
    return target


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def test_a_changed_input_refuses_to_resume(interrupted, corpus, model_path):
    with corpus.open("a", encoding="utf-8") as out:
        out.write(json.dumps({"text": "One more line."}) + "\n")
    result = invoke(
        "extract", corpus, "-m", model_path, "-o", interrupted, "--chunk-size", CHUNK, "--resume"
    )
    assert result.exit_code == 2
    assert "cannot resume: the input changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert journal_path(interrupted).exists()  # kept for a retry with the right input


def test_a_changed_model_refuses_to_resume(interrupted, corpus, model, tmp_path):
    other = load_model(save_model(model, tmp_path / "other"))
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    changed = save_model(other, tmp_path / "other")
    result = invoke(
        "extract", corpus, "-m", changed, "-o", interrupted, "--chunk-size", CHUNK, "--resume"
    )
    assert result.exit_code == 2
    assert "the model changed" in result.stderr


def test_a_changed_option_refuses_to_resume(interrupted, corpus, model_path):
    result = invoke(
        "extract", corpus, "-m", model_path, "-o", interrupted, "--chunk-size", CHUNK,
        "--threshold", "0.5", "--resume",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "option threshold changed: 0.0 then, 0.5 now" in result.stderr


def test_an_existing_journal_without_resume_is_an_error(interrupted, corpus, model_path):
    before = sorted(p.name for p in journal_path(interrupted).iterdir())
    result = invoke("extract", corpus, "-m", model_path, "-o", interrupted, "--chunk-size", CHUNK)
    assert result.exit_code == 2
    assert "add --resume" in result.stderr and "remove the directory" in result.stderr
    assert sorted(p.name for p in journal_path(interrupted).iterdir()) == before


def test_resume_to_stdout_is_an_error(corpus, model_path):
    result = invoke("extract", corpus, "-m", model_path, "--resume")
    assert result.exit_code == 2
    assert "--resume needs an output file" in result.stderr


@pytest.mark.parametrize("stdio", ["output", "input"])
def test_under_torchrun_stdio_is_an_error(corpus, model, tmp_path, monkeypatch, stdio):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    source, output = (corpus, "-") if stdio == "output" else ("-", tmp_path / "out.jsonl")
    with pytest.raises(ConfigError, match="under torchrun every process"):
        extract_corpus(source, output, model)


def test_a_failed_run_without_resume_leaves_no_journal(model, corpus, tmp_path):
    target = tmp_path / "out.jsonl"
    with pytest.raises(Interrupt):
        extract_corpus(corpus, target, model, chunk_size=CHUNK, on_chunk=stop_after(2))
    assert not journal_path(target).exists() and not target.exists()


def test_a_full_disk_is_one_line_and_exit_2(corpus, model_path, tmp_path, monkeypatch):
    import errno

    import nerx.journal

    def full(fd) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nerx.journal.os, "fsync", full)
    target = tmp_path / "out.jsonl"
    result = invoke("extract", corpus, "-m", model_path, "-o", target, "--chunk-size", CHUNK)
    assert result.exit_code == 2
    assert "cannot write the journal: No space left on device" in result.stderr
    assert "Traceback" not in result.stderr
    assert not target.exists() and not journal_path(target).exists()


# ----------------------------------------------------------------------------- bad documents
def test_skip_writes_the_good_documents_and_rejects_the_bad_with_their_lines(model_path, tmp_path):
    good = {"text": "Maria Lindqvist lives in Bergen."}
    lines = [
        '{"id": "bad-start", "text": ',  # line 1: cut short
        *[json.dumps({**good, "id": f"good-{i}"}) for i in range(4)],  # lines 2-5
        json.dumps({"id": "bad-middle", "text": "Oslo", "entities": [
            {"start": 0, "end": 40, "label": "LOC"}]}),  # line 6: offsets past the text
        *[json.dumps({**good, "id": f"good-{i}"}) for i in range(4, 8)],  # lines 7-10
        "[1, 2]",  # line 11: not a document
    ]  # fmt: skip
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    target = tmp_path / "out.jsonl"
    failed = invoke("extract", corpus, "-m", model_path, "-o", target)
    assert failed.exit_code == 2 and "bad.jsonl:1" in failed.stderr and not target.exists()
    result = invoke(
        "extract", corpus, "-m", model_path, "-o", target, "--on-error", "skip",
        "--chunk-size", CHUNK,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert [json.loads(x)["id"] for x in target.read_text().splitlines()] == [
        f"good-{i}" for i in range(8)
    ]
    rejected = [json.loads(x) for x in rejected_path(target).read_text().splitlines()]
    assert [(r["line"], r["ordinal"]) for r in rejected] == [(1, 1), (6, 6), (11, 11)]
    assert "invalid JSON" in rejected[0]["reason"]
    assert "expected a JSON object" in rejected[2]["reason"]
    assert "rejected: 3 documents" in result.stderr


@pytest.mark.parametrize("name", ["news.conll", "news.spacy", "news_brat"])
def test_skip_on_a_clean_corpus_of_another_format_changes_nothing(model, tmp_path, name):
    strict, lenient = tmp_path / "strict.conll", tmp_path / "lenient.conll"
    extract_corpus(SAMPLES / name, strict, model, chunk_size=2)
    result = extract_corpus(SAMPLES / name, lenient, model, chunk_size=2, on_error="skip")
    assert result.rejected == 0 and result.documents == 5
    assert lenient.read_bytes() == strict.read_bytes()
    assert not rejected_path(lenient).exists()


def test_skip_to_stdout_lists_the_rejected_documents(model_path, tmp_path):
    corpus = tmp_path / "bad.jsonl"
    corpus.write_text('{"text": "Bergen."}\nnot json\n', encoding="utf-8")
    result = invoke("extract", corpus, "-m", model_path, "--on-error", "skip")
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert "rejected: 1 documents" in result.stderr and "line 2:" in result.stderr


def test_skip_rejects_a_document_whose_prediction_fails(model, tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 7)
    expected = tmp_path / "expected.jsonl"
    extract_corpus(corpus, expected, model, chunk_size=1)
    prepare = type(model).prepare

    def fails_on_the_fourth(self, doc, *args, **kwargs):
        if doc.id == "doc-003":
            raise RuntimeError("the model cannot take this one")
        return prepare(self, doc, *args, **kwargs)

    monkeypatch.setattr(type(model), "prepare", fails_on_the_fourth)
    with pytest.raises(RuntimeError):
        extract_corpus(corpus, tmp_path / "raise.jsonl", model, chunk_size=1)
    target = tmp_path / "out.jsonl"
    result = extract_corpus(corpus, target, model, chunk_size=1, on_error="skip")
    assert result.rejected == 1 and result.documents == 6
    kept = expected.read_text().splitlines()
    assert target.read_text().splitlines() == kept[:3] + kept[4:]
    (rejection,) = [json.loads(x) for x in rejected_path(target).read_text().splitlines()]
    assert rejection["ordinal"] == 4 and rejection["line"] == 4 and rejection["id"] == "doc-003"
    assert "RuntimeError: the model cannot take this one" in rejection["reason"]


# ----------------------------------------------------------------------------- workers
def test_workers_keep_the_input_order_and_the_output(model, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 23)
    serial = tmp_path / "serial.jsonl"
    extract_corpus(corpus, serial, model, chunk_size=2, workers=0)
    for workers in (1, 3):
        parallel = tmp_path / f"workers-{workers}.jsonl"
        extract_corpus(corpus, parallel, model, chunk_size=2, workers=workers)
        assert parallel.read_bytes() == serial.read_bytes()
    ids = [json.loads(x)["id"] for x in serial.read_text().splitlines()]
    assert ids == [f"doc-{i:03d}" for i in range(23)]


def test_streaming_extract_takes_workers_and_chunks(model, tmp_path):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 11)
    serial = list(extract(read(corpus), model, chunk_size=4))
    parallel = list(extract(read(corpus), model, chunk_size=4, workers=2))
    assert [d.id for d in parallel] == [f"doc-{i:03d}" for i in range(11)]
    assert [d.entities for d in parallel] == [d.entities for d in serial]


# ----------------------------------------------------------------------------- signals
@pytest.mark.parametrize("resume", [True, False])
def test_sigterm_exits_143_keeping_the_journal_only_with_resume(model_path, tmp_path, resume):
    corpus = write_corpus(tmp_path / "corpus.jsonl", 30)
    target = tmp_path / "out.jsonl"
    (tmp_path / "slow_main.py").write_text(SLOW_MAIN, encoding="utf-8")
    command = [
        PYTHON, str(tmp_path / "slow_main.py"), "extract", str(corpus), "-m", str(model_path),
        "-o", str(target), "--chunk-size", "2", "--device", "cpu",
    ] + (["--resume"] if resume else [])  # fmt: skip
    process = subprocess.Popen(command, env=subprocess_env(), stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(journal_path(target).glob("*.done.json")):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr.decode()
    assert "terminated" in stderr.decode() and "Traceback" not in stderr.decode()
    assert not target.exists()
    assert journal_path(target).exists() == resume


# ----------------------------------------------------------------------------- progress
def test_progress_reads_bytes_against_the_file_size(model, corpus, tmp_path):
    seen: list[ExtractionProgress] = []
    extract_corpus(corpus, tmp_path / "out.jsonl", model, chunk_size=CHUNK, progress=seen.append)
    assert [p.documents for p in seen] == [3, 6, 9, 12, 15, 17]
    assert all(p.bytes_total == corpus.stat().st_size for p in seen)
    assert seen[-1].bytes_read == corpus.stat().st_size and seen[-1].fraction == 1.0


def test_a_log_gets_a_plain_progress_line(capsys):
    from nerx.cli.extract import _Progress, describe_progress

    state = ExtractionProgress(
        documents=120, started_with=20, seconds=10.0, bytes_read=250, bytes_total=1000
    )
    assert describe_progress(state) == "120 documents, 10.0 docs/s, 25% of the input, ETA 30s"
    _Progress(interactive=False, interval=0)(state)
    assert "nerx extract: 120 documents" in capsys.readouterr().err


# ----------------------------------------------------------------------------- torchrun
def torchrun(tmp_path: Path, *args, script: str | None = None, **env: str):
    program = [str(script)] if script else ["-m", "nerx"]
    command = [TORCHRUN, "--standalone", "--nproc-per-node", "2", *program, *map(str, args)]
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: loopback, whatever DNS says
    return subprocess.run(
        command, env=subprocess_env(**env), capture_output=True, text=True, timeout=300,
        cwd=tmp_path,
    )  # fmt: skip


def test_two_torchrun_processes_equal_one_and_one_process_finishes_their_run(
    model, model_path, tmp_path
):
    if not Path(TORCHRUN).exists():
        pytest.fail(f"torchrun is not beside {PYTHON}; it comes with torch")
    corpus = write_corpus(tmp_path / "corpus.jsonl", 20)
    single = tmp_path / "single.jsonl"
    one = subprocess.run(
        [PYTHON, "-m", "nerx", "extract", str(corpus), "-m", str(model_path), "-o", str(single),
         "--chunk-size", "2", "--device", "cpu", "-q"],
        env=subprocess_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    sharded = tmp_path / "sharded.jsonl"
    run = torchrun(tmp_path, "extract", corpus, "-m", model_path, "-o", sharded,
                   "--chunk-size", 2, "--device", "cpu")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert sharded.read_bytes() == single.read_bytes()
    assert "20 documents" in run.stderr  # process 0's summary counts both processes' chunks

    # Process 1 dies after the journal holds 3 chunks; torchrun stops process 0 too.
    (tmp_path / "slow_main.py").write_text(SLOW_MAIN, encoding="utf-8")
    partial = tmp_path / "partial.jsonl"
    broken = torchrun(
        tmp_path, "extract", corpus, "-m", model_path, "-o", partial, "--chunk-size", 2,
        "--device", "cpu", "--resume", script=tmp_path / "slow_main.py",
        TEST_DIE_AFTER="3", TEST_DIE_RANK="1",
    )  # fmt: skip
    assert broken.returncode != 0
    assert not partial.exists()
    done = len(list(journal_path(partial).glob("*.done.json")))
    assert 3 <= done < 10
    result = extract_corpus(corpus, partial, model, chunk_size=2, resume=True)
    assert result.resumed_chunks == done
    assert partial.read_bytes() == single.read_bytes()
