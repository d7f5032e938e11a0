"""Peak memory (RSS) of ``nerx`` on a large Parquet file against a small one: it should be flat.

Builds two Parquet files of varied English sentences (``--small`` and ``--large`` megabytes of
text, default 100 and 1000), then measures, each in a fresh process:

- ``nerx convert FILE out.parquet``: the whole file read and written, by row groups;
- ``nerx extract FILE`` until ``--docs`` documents have come out (default 2000), the model
  included; the output pipe is then closed, as ``| head`` would. Running the model over a
  whole gigabyte takes hours on a CPU; what grows with the file, if anything, is the reading,
  and it shows here as well. ``--full-extract`` runs every document instead.

Usage: python benchmarks/parquet_rss.py [--data ../shared/data] [--small 100] [--large 1000]
       [--docs 2000] [--model news-ner] [--work DIR] [--full-extract]
Needs pyarrow (pip install 'nerx[parquet]'). Sentences come from CoNLL-2003 eng.train.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
NERX = [sys.executable, "-m", "nerx"]


def sentences(data: Path) -> list[str]:
    import nerx

    docs = nerx.read(data / "conll2003" / "eng.train", sentence_docs=True)
    return [d.text for d in docs if len(d.text) > 20]


def build(path: Path, megabytes: float, pool: list[str], seed: int = 0) -> tuple[int, int, int]:
    """A Parquet file of about ``megabytes`` MB of text, documents of 3 to 12 sentences."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(seed)
    target, written, rows = megabytes * 1e6, 0, 0
    schema = pa.schema([("id", pa.string()), ("text", pa.string()), ("source", pa.string())])
    with pq.ParquetWriter(path, schema) as writer:
        while written < target:
            texts = [" ".join(rng.sample(pool, rng.randint(3, 12))) for _ in range(5_000)]
            ids = [f"doc-{rows + i}" for i in range(len(texts))]
            writer.write_table(
                pa.table({"id": ids, "text": texts, "source": ["conll"] * len(texts)}, schema)
            )
            written += sum(len(t) for t in texts)
            rows += len(texts)
    return rows, written, path.stat().st_size


def peak_rss_mb(command: list[str], *, lines: int | None = None) -> float:
    """Peak RSS of one child process in MB; with ``lines``, stop reading its stdout after
    that many lines and close the pipe."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE if lines else subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    if lines:
        for _ in range(lines):
            if not process.stdout.readline():
                break
        process.stdout.close()
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read().decode(errors="replace")
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, -13):  # -13: SIGPIPE, the pipe closed on purpose
        raise SystemExit(f"{' '.join(command)} failed ({code}):\n{stderr[-2000:]}")
    return usage.ru_maxrss / 1024  # kilobytes on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--small", type=float, default=100.0, help="MB of text, small file")
    parser.add_argument("--large", type=float, default=1000.0, help="MB of text, large file")
    parser.add_argument("--docs", type=int, default=2000, help="documents extracted per file")
    parser.add_argument("--model", default="news-ner")
    parser.add_argument("--work", type=Path, default=None, help="folder for the files")
    parser.add_argument("--full-extract", action="store_true", help="extract every document")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="nerx-rss-"))
    work.mkdir(parents=True, exist_ok=True)
    pool = sentences(args.data)
    header = f"{'file':<8} {'docs':>9} {'MB text':>8} {'MB file':>8} {'convert MB':>11} {'extract MB':>11}"
    print(header)
    print("-" * len(header))
    for name, size in (("small", args.small), ("large", args.large)):
        path = work / f"{name}.parquet"
        rows, text_bytes, file_bytes = build(path, size, pool)
        convert = peak_rss_mb([*NERX, "convert", str(path), str(work / "out.parquet"), "-q"])
        extract_cmd = [*NERX, "extract", str(path), "--model", args.model, "-q"]
        if args.full_extract:
            extract = peak_rss_mb([*extract_cmd, "-o", str(work / "found.parquet")])
        else:
            extract = peak_rss_mb(extract_cmd, lines=args.docs)
        print(
            f"{name:<8} {rows:>9} {text_bytes / 1e6:>8.0f} {file_bytes / 1e6:>8.0f} "
            f"{convert:>11.0f} {extract:>11.0f}"
        )


if __name__ == "__main__":
    main()
