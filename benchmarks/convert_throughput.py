"""Throughput of ``nerx.convert`` on two public corpora: documents/s and input MB/s.

Each conversion runs ``--runs`` times into a fresh temporary directory; the best time counts,
as the least disturbed by other work on the machine.

Usage: python benchmarks/convert_throughput.py [--data ../shared/data] [--runs 3]
(the Parquet case needs pyarrow: pip install 'nerx[parquet]')
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import nerx

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class Case(NamedTuple):
    name: str
    source: str  # relative to the data folder
    read_as: str | None
    target: str  # a file or directory name inside the temporary directory
    write_as: str


CASES = (
    Case("CoNLL-2003 eng.train -> DocBin", "conll2003/eng.train", None, "train.spacy", "docbin"),
    Case("CoNLL04 train -> BRAT", "conll04/conll04_train.json", "spert", "brat", "brat"),
    Case(
        "CoNLL-2003 eng.train -> Label Studio", "conll2003/eng.train", None, "t.json", "labelstudio"
    ),
    Case("CoNLL-2003 eng.train -> Parquet", "conll2003/eng.train", None, "t.parquet", "parquet"),
)


class Result(NamedTuple):
    case: Case
    documents: int
    input_bytes: int
    seconds: float


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def measure(case: Case, data: Path, runs: int) -> Result:
    source = data / case.source
    best, documents = float("inf"), 0
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            report = nerx.convert(
                source, Path(tmp) / case.target, from_format=case.read_as, to_format=case.write_as
            )
            best = min(best, time.perf_counter() - start)
        documents = report.documents_written
    return Result(case, documents, size_of(source), best)


def table(results: list[Result]) -> str:
    header = f"{'conversion':<38} {'docs':>6} {'MB':>6} {'best s':>7} {'docs/s':>8} {'MB/s':>6}"
    lines = [header, "-" * len(header)]
    for r in results:
        mb = r.input_bytes / 1e6
        lines.append(
            f"{r.case.name:<38} {r.documents:>6} {mb:>6.2f} {r.seconds:>7.2f} "
            f"{r.documents / r.seconds:>8.0f} {mb / r.seconds:>6.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder")
    parser.add_argument("--runs", type=int, default=3, help="runs per conversion; the best counts")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    for case in CASES:
        if not (args.data / case.source).exists():
            parser.error(f"{args.data / case.source} not found (set --data)")
    print(table([measure(case, args.data, args.runs) for case in CASES]))


if __name__ == "__main__":
    main()
