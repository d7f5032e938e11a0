"""How long ``nerx extract`` takes on a few short documents, from the shell prompt back to it.

For each ``--model`` (a bundled name or a model directory, PyTorch or exported ONNX), the
command ``python -m nerx extract DATA --model M -q -o OUT`` runs ``--repeats`` times in a
fresh process; the table gives the best and the median wall time. ``--phases`` also times,
in one fresh process per model, where that time goes: importing torch, spaCy and nerx,
loading the model (and whether that imported transformers), preparing the text, predicting
and writing.

    python benchmarks/quick_start.py --model news-ner --model runs/news-ner-int8 --phases
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / "sample_corpora" / "news_raw.jsonl"

#: Run in a fresh interpreter: each phase of one extraction, timed on its own.
PHASES = r"""
import json, sys, time
marks, last = [], time.perf_counter()
def mark(name):
    global last
    now = time.perf_counter()
    marks.append((name, now - last))
    last = now
import torch; mark("import torch")
import spacy; mark("import spacy")
import nerx.cli, nerx.io, nerx.models, nerx.pipeline; mark("import nerx (cli, io, models)")
from nerx.loading import load
model = load(sys.argv[1]); mark("load the model")
loaded_transformers = "transformers.modeling_utils" in sys.modules
docs = list(nerx.io.read(sys.argv[2]))
from nerx.doc import TextPreparer
TextPreparer()(docs); mark("prepare the text (spaCy blank pipeline)")
from nerx.pipeline import predict_documents
predicted = predict_documents(model, docs); mark("predict")
nerx.io.write(predicted, sys.argv[3], "jsonl"); mark("write")
print(json.dumps({"phases": marks, "transformers": loaded_transformers}))
"""


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="benchmarks/quick_start.py",
        description=__doc__.split("\n\n    python")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", dest="models", action="append", required=True,
                        help="a bundled model name or a model directory (repeatable)")  # fmt: skip
    parser.add_argument("--data", default=str(DEFAULT_DATA),
                        help="documents to extract (default: the 5 raw sample texts)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="runs per model (default: 5)")
    parser.add_argument("--threads", type=int, help="--threads for nerx extract")
    parser.add_argument("--phases", action="store_true", help="also time each phase")
    return parser.parse_args(argv)


def wall_times(model: str, args, out: Path) -> list[float]:
    command = [sys.executable, "-m", "nerx", "extract", args.data, "-m", model, "-q"]
    command += ["-o", str(out)] + (["--threads", str(args.threads)] if args.threads else [])
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode:
            raise SystemExit(f"error: {' '.join(command)} failed:\n{done.stderr}")
    return times


def phases(model: str, args, out: Path) -> dict:
    command = [sys.executable, "-c", PHASES, model, args.data, str(out)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"error: timing the phases of {model} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.jsonl"
        print(f"{'model':40} {'best s':>8} {'median s':>9}")
        for model in args.models:
            times = wall_times(model, args, out)
            print(f"{model:40} {min(times):8.2f} {statistics.median(times):9.2f}")
        if args.phases:
            for model in args.models:
                found = phases(model, args, out)
                print(f"\n{model} (transformers imported: {found['transformers']})")
                for name, seconds in found["phases"]:
                    print(f"  {seconds:6.2f} s  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
