"""Training throughput on a CPU: one process against two DDP processes, and what mid-epoch
checkpoints cost.

For every (corpus, kind) it runs ``nerx train`` for one epoch in fresh processes:

* ``1x1``: one process, one torch thread;
* ``1x2``: one process, two threads;
* ``2x1``: two DDP processes under torchrun (gloo), one thread each, the same global batch;
* ``1x2+save``: as ``1x2``, with ``--save-every`` (200 by default) mid-epoch checkpoints.

Examples/s come from the step lines of ``metrics.jsonl`` (examples and seconds of every window
of ``--log-every`` steps; the first window, with the warm-up, is left out), so dev scoring and
calibration after the epoch are not counted. Goals: ``2x1`` at least 1.6x ``1x1``; ``1x2+save``
under 3% slower than ``1x2``. Measure on an otherwise idle machine.

    python benchmarks/train_throughput.py --out runs/train_throughput.json
    python benchmarks/train_throughput.py --tiny   # the script itself, on tiny inputs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_corpora"
CONFIGS = ("1x1", "1x2", "2x1", "1x2+save")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    python")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--data", default=str(REPO.parent / "shared" / "data"), help="the public corpora")
    add("--kinds", default="token,spandec,iter", help="comma-separated model kinds")
    add("--corpora", default="conll2003,conll04", help="comma-separated: conll2003, conll04")
    add("--encoder", default="minilm")
    add("--limit", type=int, help="training documents per run (default: 6400 sentences of "
        "CoNLL-2003, read one sentence per document, in one epoch: 400 steps; all 922 of "
        "CoNLL04 in 4 epochs: 232 steps)")  # fmt: skip
    add("--batch-size", type=int, default=16, help="the global batch")
    add("--log-every", type=int, default=20, help="steps per measured window")
    add("--save-every", type=int, default=200, help="checkpoint interval of 1x2+save")
    add("--configs", default=",".join(CONFIGS), help="comma-separated subset of the configs")
    add("--tiny", action="store_true", help="sample corpus and a random tiny encoder")
    add("--out", help="also write the results as JSON")
    return parser.parse_args(argv)


def corpora(args, work: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (training file, extra nerx train options). Each run has enough steps for a
    mid-epoch checkpoint at the default --save-every."""
    if args.tiny:
        return {"sample": (str(SAMPLES / "news.jsonl"), ["--limit", "5", "--epochs", "1"])}
    data = Path(args.data)
    conll2003 = ["--sentence-docs", "--epochs", "1", "--limit", str(args.limit or 6400)]
    conll04 = ["--from", "spert", "--epochs", "4"]
    if args.limit:
        conll04 += ["--limit", str(args.limit)]
    known = {
        "conll2003": (str(data / "conll2003" / "eng.train"), conll2003),
        "conll04": (str(data / "conll04" / "conll04_train.json"), conll04),
    }
    return {name: known[name] for name in args.corpora.split(",") if name}


def tiny_encoder(work: Path) -> str:
    sys.path.insert(0, str(REPO))
    from tests.tiny_encoder import build_tiny_encoder

    words = set(re.findall(r"\w+|[^\w\s]", (SAMPLES / "news.jsonl").read_text(encoding="utf-8")))
    return str(build_tiny_encoder(work / "tiny-encoder", words))


def command(config: str, train_file: str, options: list[str], kind: str, out: Path, args):
    launcher = [sys.executable]
    if config == "2x1":
        launcher += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    nerx = [*launcher, "-m", "nerx", "train", train_file, "--dev", args.dev_file, *options]
    nerx += ["--model", kind, "--encoder", args.encoder, "-o", str(out)]
    nerx += ["--batch-size", str(args.batch_size), "--patience", "100"]
    nerx += ["--log-every", str(args.log_every), "--device", "cpu"]
    if config.endswith("+save"):
        nerx += ["--save-every", str(args.save_every)]
    return nerx


def examples_per_second(metrics: Path) -> tuple[float | None, int]:
    """Examples/s over the step windows after the first, and the number of windows used."""
    lines = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines()]
    windows = [line for line in lines if "seconds" in line and "dev_f1" not in line][1:]
    seconds = sum(w["seconds"] for w in windows)
    if not windows or seconds <= 0:
        return None, 0
    return sum(w["examples"] for w in windows) / seconds, len(windows)


def run_one(config: str, corpus: tuple[str, list[str]], kind: str, work: Path, args) -> dict:
    out = work / f"{kind}-{config}"
    threads = "2" if config.startswith("1x2") else "1"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": threads,
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(REPO),
    }
    done = subprocess.run(
        command(config, *corpus, kind, out, args), env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        return {"config": config, "error": done.stderr.strip().splitlines()[-1:]}
    rate, windows = examples_per_second(out / "metrics.jsonl")
    row = {"config": config, "examples_per_second": rate, "windows": windows}
    if config.endswith("+save"):
        run = json.loads((out / "train_config.json").read_text(encoding="utf-8"))
        per_epoch, epochs = run["steps_per_epoch"], run["settings"]["epochs"]
        row["mid_epoch_checkpoints"] = sum(
            1
            for step in range(1, per_epoch * epochs + 1)
            if step % args.save_every == 0 and step % per_epoch != 0
        )
    return row


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs = [c for c in args.configs.split(",") if c]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nerx-train-throughput-") as tmp:
        work = Path(tmp)
        if args.tiny:
            args.encoder = tiny_encoder(work)
            args.batch_size, args.log_every, args.save_every = 1, 1, 2
        for name, corpus in corpora(args, work).items():
            args.dev_file = _small_dev(corpus, work / f"{name}-dev.jsonl")
            for kind in [k for k in args.kinds.split(",") if k]:
                for config in configs:
                    row = run_one(config, corpus, kind, work / name, args)
                    results.append({"corpus": name, "kind": kind, **row})
                    print(json.dumps(results[-1]), flush=True)
    print(table(results))
    if args.out:
        Path(args.out).write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0 if all("error" not in r for r in results) else 1


def _small_dev(corpus: tuple[str, list[str]], path: Path) -> str:
    """The first 20 training documents as dev: scoring is not what is measured."""
    from nerx.io import read, write

    options = corpus[1]
    fmt = options[options.index("--from") + 1] if "--from" in options else None
    docs = []
    for doc in read(corpus[0], fmt):
        docs.append(doc)
        if len(docs) == 20:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    write(docs, path, "jsonl")
    return str(path)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| corpus | kind | config | examples/s | vs 1x1 | vs 1x2 | mid-epoch checkpoints |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    base = {(r["corpus"], r["kind"], r["config"]): r.get("examples_per_second") for r in results}
    for r in results:
        rate = r.get("examples_per_second")
        one = base.get((r["corpus"], r["kind"], "1x1"))
        two = base.get((r["corpus"], r["kind"], "1x2"))
        cells = [
            r["corpus"],
            r["kind"],
            r["config"],
            f"{rate:.1f}" if rate else str(r.get("error", "-")),
            f"{rate / one:.2f}x" if rate and one else "-",
            f"{rate / two:.3f}x" if rate and two else "-",
            str(r.get("mid_epoch_checkpoints", "-")),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
