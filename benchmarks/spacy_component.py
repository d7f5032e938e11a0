"""The spaCy component next to ``nerx extract``, on the same raw texts, in one run.

Two systems, each given the same texts (by default the first 1,000 CoNLL-2003 test sentences,
as plain strings) and the same model:

* ``extract``: ``nerx.pipeline.extract`` on raw-text documents, the library path of
  ``nerx extract``: spaCy tokenising and sentence splitting, windows, length-sorted batches,
  forward passes, decoding, character offsets;
* ``spacy``: ``spacy.blank("en")`` with ``nlp.add_pipe("nerx")``, run as
  ``list(nlp.pipe(texts, batch_size=64))``: spaCy's tokenizer, the component, and the
  entities written back onto every Doc.

The two take turns for ``--repeats`` rounds after one untimed warm-up round each, so a busy
machine slows both alike; each figure is the best round. The run also checks that both found
the same entities.

    python benchmarks/spacy_component.py --threads 2 --out spacy_component.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "conll2003" / "eng.testb"
SYSTEMS = ("extract", "spacy")

EPILOG = """\
examples:
  # the default: 1,000 CoNLL-2003 test sentences, bundled news-ner, 2 threads
  python benchmarks/spacy_component.py
  # a quick check that it runs
  python benchmarks/spacy_component.py --limit 50 --repeats 1

figures:
  docs/s   texts per second, best of --repeats rounds (after one untimed round)
  ratio    spacy docs/s / extract docs/s (1.0 = the component is as fast as nerx extract)
  ratio by CPU time
           the same from the process's CPU seconds (all threads), best round each; other
           programs on the machine sway it less than the wall clock
"""


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    python")[0].replace("``", ""),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="a corpus nerx reads")
    parser.add_argument("--from", dest="from_format", help="its format (default: detected)")
    parser.add_argument("--limit", type=int, default=1000, help="texts to use (0: all)")
    parser.add_argument("--model", default="news-ner", help="a bundled name or model directory")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--batch-size", type=positive_int, default=32, help="windows per forward pass (both)"
    )
    parser.add_argument(
        "--pipe-batch-size", type=positive_int, default=64, help="nlp.pipe's batch_size"
    )
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed rounds")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def load_texts(args: argparse.Namespace) -> list[str]:
    from nerx.io import detect_format, read

    name = args.from_format or detect_format(args.data)
    # A CoNLL file's -DOCSTART- documents are whole articles; sentences are the unit here.
    options = {"sentence_docs": True} if name.lower() == "conll" else {}
    docs = read(args.data, name, **options)
    texts = [doc.text for doc in (islice(docs, args.limit) if args.limit else docs)]
    if not texts:
        raise SystemExit(f"{args.data} holds no documents")
    return texts


def entity_rows(found: list[list[tuple[int, int, str]]]) -> int:
    return sum(map(len, found))


def make_systems(args: argparse.Namespace) -> dict[str, Callable[[list[str]], list]]:
    """For each system, a function from texts to each text's (start, end, label) entities."""
    import spacy

    from nerx.doc import Document
    from nerx.loading import load
    from nerx.pipeline import extract
    from nerx.runtime import resolve_device

    model = load(args.model, device=resolve_device(args.device))
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "nerx", config={"model": args.model, "device": args.device, "batch_size": args.batch_size}
    )

    def run_extract(texts: list[str]) -> list:
        docs = (Document(str(i + 1), text) for i, text in enumerate(texts))
        return [
            [(e.start, e.end, e.label) for e in doc.entities]
            for doc in extract(docs, model, batch_size=args.batch_size)
        ]

    def run_spacy(texts: list[str]) -> list:
        return [
            [(s.start_char, s.end_char, s.label_) for s in doc.spans["nerx"]]
            for doc in nlp.pipe(texts, batch_size=args.pipe_batch_size)
        ]

    return {"extract": run_extract, "spacy": run_spacy}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    texts = load_texts(args)
    systems = make_systems(args)
    found: dict[str, list] = {}
    for run in systems.values():
        run(texts)  # warm-up: loads the model and meets every batch shape once
    times: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    cpu: dict[str, list[float]] = {name: [] for name in SYSTEMS}
    for _ in range(args.repeats):
        for name, run in systems.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            found[name] = run(texts)
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    best = {name: min(runs) for name, runs in times.items()}
    rates = {name: len(texts) / seconds for name, seconds in best.items()}
    return {
        "data": args.data,
        "texts": len(texts),
        "model": args.model,
        "threads": args.threads,
        "device": args.device,
        "batch_size": args.batch_size,
        "pipe_batch_size": args.pipe_batch_size,
        "repeats": args.repeats,
        "seconds": times,
        "cpu_seconds": cpu,
        "cpu_ratio": min(cpu["extract"]) / min(cpu["spacy"]),
        "docs_per_s": rates,
        "ratio": rates["spacy"] / rates["extract"],
        "entities": {name: entity_rows(rows) for name, rows in found.items()},
        "same_entities": found["extract"] == found["spacy"],
    }


def show(result: dict[str, Any]) -> None:
    print(
        f"{result['texts']} texts from {result['data']}, model {result['model']}, "
        f"{result['threads']} threads, {result['device']}, best of {result['repeats']}"
    )
    labels = {
        "extract": "nerx extract (nerx.pipeline.extract)",
        "spacy": f"spaCy nlp.pipe(batch_size={result['pipe_batch_size']})",
    }
    for name in SYSTEMS:
        print(
            f"  {labels[name]:<40} {result['docs_per_s'][name]:8.1f} docs/s  "
            f"{result['entities'][name]:6d} entities"
        )
    print(f"  ratio spacy / extract: {result['ratio']:.2f}")
    print(f"  ratio by CPU time (steadier on a busy machine): {result['cpu_ratio']:.2f}")
    print(f"  same entities: {'yes' if result['same_entities'] else 'NO'}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = measure(args)
    show(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if result["same_entities"] else 1


if __name__ == "__main__":
    sys.exit(main())
