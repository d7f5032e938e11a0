"""Training at scale on the tiny random encoder: gradient accumulation is the update of a larger
batch, two torchrun ranks reach the weights of one process, a run killed mid-epoch (or in the
middle of a checkpoint write) resumes to the weights of an uninterrupted run, and the output
directory, the resolved config and metrics.jsonl exist from the first step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import nerx.checkpoint
from nerx.checkpoint import STATE_NAME, read_checkpoint
from nerx.cli import app
from nerx.cli.train import PlainProgress
from nerx.doc import Document
from nerx.io import write
from nerx.models import SpanModel
from nerx.training import (
    CHECKPOINT_DIR,
    METRICS_NAME,
    RUN_CONFIG_NAME,
    Progress,
    TrainSettings,
    epoch_batches,
    shares,
    train,
)

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

#: Words of the sample corpus (so the tiny encoder knows them), cut into documents.
WORDS = [
    "Maria",
    "Lindqvist",
    "a",
    "chemist",
    "at",
    "the",
    "University",
    "of",
    "Oslo",
    "won",
    "the",
    "Nordic",
    "Science",
    "Prize",
    "on",
    "Tuesday",
    "She",
    "lives",
    "in",
    "Bergen",
    "Harbor",
    "Freight",
    "Lines",
    "said",
    "on",
    "Monday",
    "it",
    "will",
    "move",
    "its",
    "headquarters",
    "from",
    "Rotterdam",
    "to",
    "Hamburg",
    "Chief",
    "executive",
    "Tomas",
    "Keller",
    "announced",
    "the",
    "plan",
    "in",
    "Berlin",
]


def uniform_docs(n: int = 10) -> list[Document]:
    """``n`` documents of one six-word sentence with two entities each: every example has
    as many words and candidate spans as every other, so a model's mean loss over a batch
    is the mean of its pieces' losses, however the batch is cut."""
    docs = []
    for i in range(n):
        words = [WORDS[(5 * i + k) % len(WORDS)] for k in range(6)]
        first = i % 3
        entities = [(first, first + 2, "PER"), (4, 5, "LOC" if i % 2 else "ORG")]
        docs.append(
            Document.from_words(f"d{i}", words, sentence_lengths=[6], token_entities=entities)
        )
    return docs


def scale_settings(**changes) -> TrainSettings:
    values = {
        "epochs": 2,
        "batch_size": 4,  # 10 windows: batches of 4, 4 and 2
        "learning_rate": 1e-3,
        "head_lr_multiplier": 3,
        "warmup": 0.0,
        "patience": 100,
        "device": "cpu",
        "hyper": {"dropout": 0.0},
        "log_every": 0,
    }
    return TrainSettings(**{**values, **changes})


def checkpoint_weights(output: Path) -> dict[str, torch.Tensor]:
    return nerx.checkpoint.checkpoint_weights(output / CHECKPOINT_DIR)


def assert_same_weights(got: dict, expected: dict, atol: float) -> None:
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=atol, msg=name)


def run(tiny_encoder, output: Path, kind: str = "token", docs=None, **changes):
    docs = docs or uniform_docs()
    return train(
        docs, docs, kind=kind, encoder=tiny_encoder, output=output, **_split_kwargs(changes)
    )


def _split_kwargs(changes: dict) -> dict:
    call = {k: changes.pop(k) for k in ("resume", "on_step", "on_epoch") if k in changes}
    return {"settings": scale_settings(**changes), **call}


# --------------------------------------------------------------------------- batches
def test_shares_are_contiguous_and_balanced():
    items = list(range(7))
    assert shares(items, 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert shares(items[:2], 4) == [[0], [1], [], []]
    assert shares(items, 1) == [items]


def test_the_order_of_batches_is_a_function_of_the_seed_and_the_epoch(tiny_encoder):
    from nerx.models import ModelConfig, model_class

    model = model_class("token").create(
        ModelConfig(kind="token", labels=["PER"], encoder=tiny_encoder)
    )
    examples = [ex for i, doc in enumerate(uniform_docs(40)) for ex in model.prepare(doc, i)]

    def order(seed: int, epoch: int) -> list[list[int]]:
        return [[ex.doc_index for ex in b] for b in epoch_batches(examples, 4, seed, epoch)]

    assert order(13, 2) == order(13, 2)
    assert order(13, 1) != order(13, 2)
    assert order(13, 1) != order(14, 1)
    assert sorted(i for batch in order(13, 3) for i in batch) == list(range(40))


# --------------------------------------------------------------------------- accumulation
@pytest.mark.parametrize("kind", ["token", "spandec"])
def test_gradient_accumulation_is_the_update_of_the_whole_batch(
    kind, tiny_encoder, tmp_path, monkeypatch
):
    run(tiny_encoder, tmp_path / "whole", kind)
    expected = checkpoint_weights(tmp_path / "whole")

    sizes: list[int] = []
    forward = torch.nn.Module.__call__

    def counting(self, batch):
        if self.training:
            sizes.append(len(batch.examples))
        return forward(self, batch)

    monkeypatch.setattr(SpanModel, "__call__", counting)
    # Batches of 4, 4 and 2 in 3 pieces: 2+1+1, 2+1+1, and 1+1 with one empty piece.
    run(tiny_encoder, tmp_path / "pieces", kind, grad_accum=3)
    # (in the epoch's order of batches; the empty piece runs one example at weight 0)
    assert Counter(sizes) == Counter([2, 1, 1, 2, 1, 1, 1, 1, 1] * 2)
    # The pieces' gradients are summed in another order. Adam divides by the gradient's own
    # size, so the rounding of a gradient that is zero in exact arithmetic (an attention key
    # bias) moves a weight by up to about 1e-6 after six steps: hence 1e-5.
    assert_same_weights(checkpoint_weights(tmp_path / "pieces"), expected, atol=1e-5)


# --------------------------------------------------------------------------- exact resume
@pytest.fixture(scope="module")
def uninterrupted(tiny_encoder, tmp_path_factory) -> dict[str, dict]:
    """Final checkpoint weights per kind of a run with dropout (so the random state counts)."""
    found = {}
    for kind in ("token", "plmarker"):
        out = tmp_path_factory.mktemp(f"whole-{kind}")
        run(tiny_encoder, out, kind, epochs=3, hyper={"dropout": 0.3}, save_every=2)
        found[kind] = (checkpoint_weights(out), _dev_lines(out))
    return found


def _dev_lines(output: Path) -> list[dict]:
    lines = (output / METRICS_NAME).read_text(encoding="utf-8").splitlines()
    return [
        {k: v for k, v in r.items() if k != "seconds"}
        for r in map(json.loads, lines)
        if "dev_f1" in r
    ]


class Killed(Exception):
    pass


def kill_at(global_step: int):
    def hook(progress: Progress) -> None:
        if progress.global_step == global_step:
            raise Killed

    return hook


@pytest.mark.parametrize("kind", ["token", "plmarker"])
def test_a_run_killed_mid_epoch_resumes_to_the_same_weights(
    kind, uninterrupted, tiny_encoder, tmp_path
):
    settings = {"epochs": 3, "hyper": {"dropout": 0.3}, "save_every": 2}
    # Steps 1-3 are epoch 1; the checkpoint at step 4 is mid-epoch 2, killed at step 5.
    with pytest.raises(Killed):
        run(tiny_encoder, tmp_path, kind, on_step=kill_at(5), **settings)
    state = read_checkpoint(tmp_path / CHECKPOINT_DIR)["state"]
    assert (state["epoch"], state["step"], state["global_step"]) == (1, 1, 4)

    steps: list[int] = []
    run(
        tiny_encoder,
        tmp_path,
        kind,
        resume=True,
        on_step=lambda p: steps.append(p.global_step),
        **settings,
    )
    assert steps == [5, 6, 7, 8, 9]
    weights, dev_lines = uninterrupted[kind]
    assert_same_weights(checkpoint_weights(tmp_path), weights, atol=1e-6)
    assert _dev_lines(tmp_path) == dev_lines


def test_a_kill_during_a_checkpoint_write_leaves_the_previous_one(
    uninterrupted, tiny_encoder, tmp_path, monkeypatch
):
    settings = {"epochs": 3, "hyper": {"dropout": 0.3}, "save_every": 2}
    real_write = nerx.checkpoint._write_tensors
    written: list[str] = []

    def dies_in_the_second_checkpoint(directory, name, tensors):
        written.append(name)
        if name == "optimizer" and written.count("model") == 2:
            raise Killed  # the new model file is on disk, the rest is not
        return real_write(directory, name, tensors)

    monkeypatch.setattr(nerx.checkpoint, "_write_tensors", dies_in_the_second_checkpoint)
    with pytest.raises(Killed):
        run(tiny_encoder, tmp_path, "token", **settings)
    monkeypatch.undo()

    path = tmp_path / CHECKPOINT_DIR
    meta = read_checkpoint(path)
    assert meta["state"]["global_step"] == 2  # the first checkpoint, whole
    named = set(meta["files"].values())
    assert all((path / name).is_file() for name in named)
    assert any(p.name.startswith("model-") and p.name not in named for p in path.iterdir())

    run(tiny_encoder, tmp_path, "token", resume=True, **settings)
    assert_same_weights(checkpoint_weights(tmp_path), uninterrupted["token"][0], atol=1e-6)
    leftovers = {p.name for p in path.iterdir()} - set(read_checkpoint(path)["files"].values())
    assert leftovers == {STATE_NAME}


# --------------------------------------------------------------------------- progress
def test_output_config_and_metrics_exist_from_the_first_step(tiny_encoder, tmp_path):
    seen: list[tuple] = []

    def look(progress: Progress) -> None:
        if progress.global_step == 1:
            config = json.loads((tmp_path / RUN_CONFIG_NAME).read_text(encoding="utf-8"))
            lines = (tmp_path / METRICS_NAME).read_text(encoding="utf-8").splitlines()
            seen.append((config, [json.loads(line) for line in lines]))

    run(tiny_encoder, tmp_path, "token", epochs=1, log_every=1, grad_accum=2, on_step=look)
    ((config, lines),) = seen
    assert config["kind"] == "token"
    assert config["settings"]["grad_accum"] == 2
    assert config["world_size"] == 1
    assert config["precision"] == "fp32"
    assert config["data"]["labels"] == ["LOC", "ORG", "PER"]
    assert [line["global_step"] for line in lines] == [1]
    assert lines[0]["loss"] > 0
    assert lines[0]["examples_per_second"] > 0
    assert lines[0]["learning_rate"] == pytest.approx(1e-3)


def test_plain_progress_writes_a_line_every_thirty_seconds():
    now = [100.0]
    lines: list[str] = []
    progress = PlainProgress(lines.append, clock=lambda: now[0])
    with progress:
        for step in range(1, 11):
            now[0] += 10.0  # ten seconds a step
            progress.step(
                Progress(
                    epoch=1,
                    step=step,
                    steps_per_epoch=10,
                    loss=1.0 / step,
                    examples_per_second=3.2,
                    global_step=step,
                    total_steps=40,
                )
            )
        progress.epoch({"epoch": 1, "metric": "entities", "dev_f1": 42.5, "best": True})
    # Steps 3, 6 and 9 come 30 s after the line before; the time left is measured from step 1.
    assert lines == [
        "epoch 1 step 3/10 loss 0.3333 3.2 ex/s ETA 0:06:10",
        "epoch 1 step 6/10 loss 0.1667 3.2 ex/s ETA 0:05:40",
        "epoch 1 step 9/10 loss 0.1111 3.2 ex/s ETA 0:05:10",
        "epoch 1: dev entities F1 42.50 (best)",
    ]


# --------------------------------------------------------------------------- the CLI
def _write_corpus(path: Path) -> Path:
    write(uniform_docs(), path, "jsonl")
    return path


def _cli_args(corpus: Path, tiny_encoder: str, output: Path) -> list[str]:
    return [
        "train",
        str(corpus),
        "--dev",
        str(corpus),
        "--kind",
        "token",
        "--encoder",
        tiny_encoder,
        "-o",
        str(output),
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--lr",
        "0.001",
        "--head-lr-multiplier",
        "3",
        "--warmup",
        "0",
        "--patience",
        "100",
        "--device",
        "cpu",
        "--set",
        "dropout=0",
        "--log-every",
        "1",
    ]


def test_an_unknown_precision_is_one_clear_line(tiny_encoder, tmp_path):
    corpus = _write_corpus(tmp_path / "data.jsonl")
    args = _cli_args(corpus, tiny_encoder, tmp_path / "out") + ["--precision", "fp16"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "unknown precision 'fp16'" in result.stderr
    assert "Traceback" not in result.stderr


def _torchrun() -> list[str]:
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "torch.distributed.run"]


def test_two_torchrun_ranks_reach_the_weights_of_one_process(tiny_encoder, tmp_path):
    corpus = _write_corpus(tmp_path / "data.jsonl")
    # Mid-epoch checkpoints too: every rank hands its random state to rank 0, which writes.
    extra = ["--save-every", "2"]
    single = CliRunner().invoke(app, _cli_args(corpus, tiny_encoder, tmp_path / "one") + extra)
    assert single.exit_code == 0, single.stderr

    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [*_torchrun(), "--standalone", "--nproc-per-node", "2", "-m", "nerx"]
    done = subprocess.run(
        [*command, *_cli_args(corpus, tiny_encoder, tmp_path / "two"), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("best dev F1") == 1  # rank 0 alone speaks

    config = json.loads((tmp_path / "two" / RUN_CONFIG_NAME).read_text(encoding="utf-8"))
    assert config["world_size"] == 2
    steps = [
        json.loads(line)["global_step"]
        for line in (tmp_path / "two" / METRICS_NAME).read_text(encoding="utf-8").splitlines()
        if "global_step" in json.loads(line)
    ]
    assert steps == list(range(1, 7))  # one line per step, written once
    files = read_checkpoint(tmp_path / "two" / CHECKPOINT_DIR)["files"]
    assert {"rng-0", "rng-1"} <= set(files)
    # Gradients summed in another order across processes: equal up to float rounding.
    assert_same_weights(
        checkpoint_weights(tmp_path / "two"), checkpoint_weights(tmp_path / "one"), atol=1e-5
    )


def test_a_checkpoint_of_the_epoch_only_layout_resumes_at_its_next_epoch(tiny_encoder, tmp_path):
    run(tiny_encoder, tmp_path, "token", epochs=2)
    path = tmp_path / CHECKPOINT_DIR
    meta = read_checkpoint(path)
    # The layout before mid-epoch checkpoints: fixed names, no random states.
    (path / meta["files"]["model"]).rename(path / "model.safetensors")
    (path / meta["files"]["optimizer"]).rename(path / "optimizer.safetensors")
    state = {k: v for k, v in meta["state"].items() if k not in ("step", "metrics_bytes")}
    old = {
        "state": state,
        "optimizer_groups": meta["optimizer"]["groups"],
        "optimizer_plain": meta["optimizer"]["plain"],
        "scheduler": meta["scheduler"],
    }
    (path / STATE_NAME).write_text(json.dumps(old), encoding="utf-8")

    epochs: list[int] = []
    run(
        tiny_encoder,
        tmp_path,
        "token",
        epochs=3,
        resume=True,
        on_epoch=lambda record: epochs.append(record["epoch"]),
    )
    assert epochs == [3]
    assert [line["epoch"] for line in _dev_lines(tmp_path)] == [1, 2, 3]
    assert "model.safetensors" not in {p.name for p in path.iterdir()}


def test_resuming_mid_epoch_with_another_batch_size_is_a_clear_error(tiny_encoder, tmp_path):
    from nerx.errors import ConfigError

    with pytest.raises(Killed):
        run(tiny_encoder, tmp_path, "token", save_every=2, on_step=kill_at(3))
    with pytest.raises(ConfigError, match="mid-epoch with --batch-size 4, not 2"):
        run(tiny_encoder, tmp_path, "token", save_every=2, batch_size=2, resume=True)


# --------------------------------------------------------------------------- heads first
def test_heads_first_holds_the_encoder_still_for_its_share_of_the_steps(tiny_encoder, tmp_path):
    from nerx.models import ModelConfig, model_class

    fresh = model_class("token").create(
        ModelConfig(kind="token", labels=["LOC", "PER"], encoder=tiny_encoder)
    )
    pretrained = {n: p.detach() for n, p in fresh.named_parameters() if n.startswith("encoder.")}

    def changed(output: Path) -> tuple[set[str], set[str]]:
        weights = checkpoint_weights(output)
        moved = {
            n for n in weights if n not in pretrained or not torch.equal(weights[n], pretrained[n])
        }
        return moved & pretrained.keys(), moved - pretrained.keys()

    run(tiny_encoder, tmp_path / "all", heads_first=1.0)  # every one of the 6 steps
    encoder_moved, heads_moved = changed(tmp_path / "all")
    assert encoder_moved == set()  # not even weight decay
    assert "classifier.weight" in heads_moved

    run(tiny_encoder, tmp_path / "half", heads_first=0.5)  # 3 steps alone, then 3 together
    encoder_moved, _ = changed(tmp_path / "half")
    assert "encoder.embeddings.word_embeddings.weight" in encoder_moved
