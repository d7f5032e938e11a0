"""Per-document latency of ``padellm``: parallel decoding (with and without the shared prefix)
against autoregressive decoding, on the same weights and the same documents, in one run.

Every document goes through ``nerx.pipeline.predict_documents`` alone (batch size 1: windows,
prompt, generation, span mapping), once per mode, the modes taking turns document by document
so a change in machine load hits them alike. One untimed warm-up document per mode first.

* ``parallel+shared``: step 1 (all labels) and step 2 (all mentions) each one batch, the
  document's text encoded once and its KV cache copied to every branch;
* ``parallel``: the same, every branch re-encoding its whole prompt (as in the paper);
* ``autoregressive``: every mention in one generated sequence.

The model must know both formats (trained with ``train_both``, the default).

    python benchmarks/padellm_latency.py --model runs/synthetic/model \\
        --data runs/synthetic/test.jsonl --limit 100
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

MODES = {
    "parallel+shared": {"decoding": "parallel", "shared_prefix": True},
    "parallel": {"decoding": "parallel", "shared_prefix": False},
    "autoregressive": {"decoding": "autoregressive"},
}
BASELINE = "autoregressive"


def measure(model, docs, *, repeats: int = 1) -> dict[str, dict]:
    """Per mode: milliseconds per document, the predictions and the model's counters."""
    from nerx.pipeline import ExtractionStats, predict_documents

    results = {mode: {"ms": [], "predicted": [], "stats": Counter()} for mode in MODES}
    for hyper in MODES.values():  # warm-up: allocator, kernels, lazy imports
        model.config.hyper.update(hyper)
        predict_documents(model, docs[:1], batch_size=1)
    for doc in docs:
        for mode, hyper in MODES.items():
            model.config.hyper.update(hyper)
            stats = ExtractionStats()
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter()
                predicted = predict_documents(model, [doc], batch_size=1, stats=stats)
                best = min(best, time.perf_counter() - started)
            results[mode]["ms"].append(1000 * best)
            results[mode]["predicted"].extend(predicted)
            results[mode]["stats"].update(stats.model)
    return results


def table(results: dict[str, dict], gold) -> str:
    from nerx.scoring import evaluate

    base = results[BASELINE]["ms"]
    rows = [
        "| mode | mean ms/doc | median ms/doc | speed-up (mean) | speed-up (median) "
        "| generated tokens/doc | entity F1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, found in results.items():
        ms = found["ms"]
        f1 = evaluate(gold, found["predicted"]).entities.f1 * 100
        tokens = found["stats"]["generated_tokens"] / len(ms)
        rows.append(
            f"| {mode} | {statistics.mean(ms):.1f} | {statistics.median(ms):.1f} "
            f"| {statistics.mean(base) / statistics.mean(ms):.2f}x "
            f"| {statistics.median(base) / statistics.median(ms):.2f}x | {tokens:.1f} | {f1:.1f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    python")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="a padellm model directory")
    parser.add_argument("--data", required=True, help="documents with gold entities")
    parser.add_argument("--from", dest="from_format", help="format of --data if not detected")
    parser.add_argument("--limit", type=int, default=100, help="first N documents (0: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--repeats", type=int, default=1, help="best of N runs per document")
    args = parser.parse_args(argv)

    import torch

    import nerx.models.padellm  # noqa: F401  (registers the kind)
    from nerx.doc import TextPreparer
    from nerx.io import read
    from nerx.models import load_model

    torch.set_num_threads(args.threads)
    model = load_model(args.model, device=args.device)
    if model.kind != "padellm":
        parser.error(f"{args.model} is a {model.kind} model, not padellm")
    docs = list(read(args.data, args.from_format))
    docs = docs[: args.limit] if args.limit else docs
    TextPreparer()(docs)
    results = measure(model, docs, repeats=args.repeats)
    print(
        f"{len(docs)} documents of {args.data}, one at a time, {args.device}, "
        f"{args.threads} thread(s); speed-up = autoregressive time / mode time\n"
    )
    print(table(results, docs))


if __name__ == "__main__":
    main()
