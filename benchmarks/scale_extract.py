"""Extraction at scale on a CPU: processes, threads, a preparation worker, resuming, memory.

Every configuration runs ``nerx extract CORPUS -o OUT`` as its own command, on two corpora
written from the sample texts (``--short`` one-sentence documents and ``--long`` documents of
``--long-sentences`` sentences each):

* ``1p x 2t``: one process, two torch threads (the baseline of the ratios);
* ``2p x 1t``: ``torchrun --nproc-per-node 2``, one thread each (goal: at least 1.7x);
* ``1p x 1t + 1w``: one process, one thread, ``--workers 1`` preparing input beside it;
* ``resume``: the baseline killed (SIGKILL) once half the chunks are in the journal, then
  ``--resume``d; its total time against the uninterrupted baseline (goal: under 5% extra);
* peak RSS of every process (the largest is shown), for the baseline at ``--rss-sizes``
  documents: it must not grow with the corpus.

docs/s is documents over the command's wall time, start-up and model loading included (they
are the same for every configuration and small against a real corpus).

    python benchmarks/scale_extract.py --out runs/scale_extract.json
    python benchmarks/scale_extract.py --short 200 --long 10 --rss-sizes 100 200   # a check
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_corpora" / "news_raw.jsonl"

# Runs the command line and leaves the process's peak RSS (KiB) in $BENCH_RSS_DIR.
MEASURED_MAIN = """
import atexit, os, resource, sys

def report():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    path = os.path.join(os.environ["BENCH_RSS_DIR"], f"rss.{os.getpid()}")
    with open(path, "w") as out:
        out.write(str(peak))

atexit.register(report)
from nerx.cli import main
sys.argv[0] = "nerx"
main()
"""


def sentences() -> list[str]:
    import re

    texts = [json.loads(line)["text"] for line in SAMPLES.open(encoding="utf-8")]
    return [s for t in texts for s in re.split(r"(?<=\.) ", t) if s]


def write_corpus(path: Path, documents: int, sentences_per_doc: int) -> Path:
    pool = sentences()
    with path.open("w", encoding="utf-8") as out:
        for i in range(documents):
            text = " ".join(pool[(i + k) % len(pool)] for k in range(sentences_per_doc))
            out.write(json.dumps({"id": f"d{i}", "text": text}) + "\n")
    return path


def command(args, corpus: Path, output: Path, *, processes: int, workers: int, work: Path):
    script = work / "measured_main.py"
    script.write_text(MEASURED_MAIN, encoding="utf-8")
    if processes > 1:
        launcher = [
            str(Path(sys.executable).with_name("torchrun")),
            "--standalone",
            "--nproc-per-node",
            str(processes),
            str(script),
        ]
    else:
        launcher = [sys.executable, str(script)]
    return [
        *launcher,
        "extract",
        str(corpus),
        "--model",
        args.model,
        "-o",
        str(output),
        "--device",
        "cpu",
        "--chunk-size",
        str(args.chunk_size),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(workers),
        "--resume",
        "-q",
    ]


def environment(threads: int, rss_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["OMP_NUM_THREADS"] = str(threads)
    env["BENCH_RSS_DIR"] = str(rss_dir)
    return env


def run(args, corpus, *, processes, threads, workers, kill_at: float | None = None) -> dict:
    """One configuration; with ``kill_at``, killed when that share of chunks is done, then
    resumed, the two wall times summed."""
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        output = work / "out.jsonl"
        rss_dir = work / "rss"
        rss_dir.mkdir()
        cmd = command(args, corpus, output, processes=processes, workers=workers, work=work)
        env = environment(threads, rss_dir)
        started = time.perf_counter()
        if kill_at is not None:
            journal = Path(str(output) + ".nerx-run")
            documents = sum(1 for _ in corpus.open(encoding="utf-8"))
            chunks = -(-documents // args.chunk_size)
            process = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE)
            while len(list(journal.glob("*.done.json"))) < kill_at * chunks:
                if process.poll() is not None:
                    raise SystemExit(f"finished before it could be killed: {process.stderr.read()}")
                time.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stderr.close()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
        peaks = [int(p.read_text()) for p in rss_dir.iterdir()]
        documents = sum(1 for _ in output.open(encoding="utf-8"))
    return {
        "documents": documents,
        "seconds": round(seconds, 2),
        "docs_per_second": round(documents / seconds, 2),
        "peak_rss_mib": round(max(peaks) / 1024, 1) if peaks else None,
    }


CONFIGS = {
    "1p x 2t": {"processes": 1, "threads": 2, "workers": 0},
    "2p x 1t": {"processes": 2, "threads": 1, "workers": 0},
    "1p x 1t + 1w": {"processes": 1, "threads": 1, "workers": 1},
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    python")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="news-ner", help="bundled name or model directory")
    parser.add_argument("--short", type=int, default=20_000, help="one-sentence documents")
    parser.add_argument("--long", type=int, default=200, help="long documents")
    parser.add_argument("--long-sentences", type=int, default=60, help="sentences per long doc")
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[2_000, 20_000])
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--long-chunk-size", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    args.work = args.work or Path(tempfile.mkdtemp(prefix="nerx-scale-"))
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict = {"corpora": {}, "rss": {}}
    chunk_size = args.chunk_size
    corpora = {
        f"{args.short} short": (write_corpus(args.work / "short.jsonl", args.short, 1), chunk_size),
        f"{args.long} long": (
            write_corpus(args.work / "long.jsonl", args.long, args.long_sentences),
            args.long_chunk_size,
        ),
    }
    for name, (corpus, size) in corpora.items():
        args.chunk_size = size
        rows = {label: run(args, corpus, **config) for label, config in CONFIGS.items()}
        rows["resume"] = run(args, corpus, **CONFIGS["1p x 2t"], kill_at=0.5)
        base = rows["1p x 2t"]["docs_per_second"]
        for row in rows.values():
            row["ratio"] = round(row["docs_per_second"] / base, 2) if base else None
        rows["resume"]["extra_time"] = round(
            rows["resume"]["seconds"] / rows["1p x 2t"]["seconds"] - 1, 3
        )
        results["corpora"][name] = rows
    args.chunk_size = chunk_size
    for size in args.rss_sizes:
        corpus = write_corpus(args.work / f"rss-{size}.jsonl", size, 1)
        results["rss"][size] = run(args, corpus, **CONFIGS["1p x 2t"])["peak_rss_mib"]
    print_table(results)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2), encoding="utf-8")


def print_table(results: dict) -> None:
    print("| corpus | configuration | docs/s | x 1p x 2t | seconds | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for corpus, rows in results["corpora"].items():
        for label, row in rows.items():
            extra = f" (+{row['extra_time']:.1%})" if "extra_time" in row else ""
            print(
                f"| {corpus} | {label} | {row['docs_per_second']} | {row['ratio']} | "
                f"{row['seconds']}{extra} | {row['peak_rss_mib']} |"
            )
    print()
    print("| documents | peak RSS MiB (1p x 2t) |")
    print("|---:|---:|")
    for size, peak in results["rss"].items():
        print(f"| {size} | {peak} |")


if __name__ == "__main__":
    main()
