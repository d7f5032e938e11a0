"""Peak memory and time of extracting one long document, against its length.

Three systems on the shipped MiniLM encoder, untrained (speed and memory do not depend on
training):

* ``sener``: the whole document in one window; arrow attention; an L x w' span grid.
* ``spandec``: the document cut into windows of 512 subwords, as every other kind does.
* ``full``: the whole document in one window with the same extended positions, but dense
  attention (the encoder's own eager attention, which builds every L x L score matrix) and a
  full L x L biaffine span tensor: the span-based design SeNER replaces.

Documents are real text: the sentences of a corpus (CoNLL-2003 test by default) concatenated,
and repeated if needed, until the document has the asked number of words. Every (system,
length) point runs in a fresh copy of this script, so its memory is its own: the figure is the
peak resident set size (Linux ``VmHWM``) while ``predict_documents`` runs, and ``extra`` is
that peak minus the resident size just before (model loaded, one short warm-up document
already extracted). A point whose resident size passes ``--cap-gb`` is stopped, and so is that
system's series. The untrained heads are biased towards O, so that decoding a flood of random
entities does not drown the timing (a trained model finds about one entity in six words).

    python benchmarks/long_documents.py --threads 2 --out long_documents.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "conll2003" / "eng.testb"
SYSTEMS = ("sener", "spandec", "full")
LABELS = ["LOC", "MISC", "ORG", "PER"]
LENGTHS = (512, 1024, 2048, 4096, 8192, 16384)
#: Logit added to O in the untrained heads (see the module docstring).
O_BIAS = 30.0


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    python")[0].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="corpus the words come from")
    parser.add_argument("--from", dest="fmt", default="conll", help="its nerx format name")
    parser.add_argument(
        "--lengths",
        default=",".join(map(str, LENGTHS)),
        help="document lengths in words, comma-separated",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="subset of: sener,spandec,full"
    )
    parser.add_argument("--encoder", default="minilm")
    parser.add_argument("--cap-gb", type=float, default=8.0, help="memory cap per point (GB)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8, help="windows per batch")
    parser.add_argument("--out", default="long_documents.csv", help="CSV; the PNG goes beside it")
    parser.add_argument("--point", nargs=2, metavar=("SYSTEM", "WORDS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x]
    args.systems = [x for x in args.systems.split(",") if x]
    unknown = set(args.systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    return args


# ---------------------------------------------------------------------- one point (child)
def long_document(path: str, fmt: str, words: int):
    """A document of exactly ``words`` words: the corpus's sentences in order, repeated."""
    from nerx.doc import Document
    from nerx.io import read

    sentences = [
        [doc.text[s:e] for s, e in doc.tokens[first:end]]
        for doc in read(path, fmt)
        for first, end in (doc.sentences or [(0, len(doc.tokens))])
    ]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise SystemExit(f"{path} has no words")
    taken: list[list[str]] = []
    count = 0
    while count < words:
        for sentence in sentences:
            piece = sentence[: words - count]
            taken.append(piece)
            count += len(piece)
            if count >= words:
                break
    flat = [w for s in taken for w in s]
    return Document.from_words(f"long-{words}", flat, sentence_lengths=[len(s) for s in taken])


def build_system(name: str, encoder: str):
    import torch

    from nerx.models import model_class

    if name == "full":
        model = _full_attention_class().create(_config("sener", encoder))
        model.encoder.set_attn_implementation("eager")
        head = model.classifier[-1]
    else:
        import nerx.models.sener  # noqa: F401  (registers the kind)

        model = model_class(name).create(_config(name, encoder))
        head = model.classifier if name == "spandec" else model.classifier[-1]
    with torch.no_grad():
        head.bias[0] += O_BIAS
    return model.eval()


def _config(kind: str, encoder: str):
    from nerx.models import ModelConfig

    return ModelConfig(kind=kind, labels=LABELS, encoder=encoder, hyper={"nested": True})


def _full_attention_class():
    """SeNER's encoder positions and window, with dense attention and an L x L span tensor."""
    import torch

    from nerx.models.base import Batch, Output, Prediction, SpanPrediction, gather_words
    from nerx.models.sener import SeNER

    class FullAttentionSpans(SeNER):
        def encode(self, batch: Batch) -> torch.Tensor:
            ids = batch.input_ids
            return self.encoder(
                input_ids=ids,
                attention_mask=batch.attention_mask,
                token_type_ids=torch.zeros_like(ids),
                position_ids=torch.arange(ids.size(1)).expand_as(ids),
            ).last_hidden_state

        def forward(self, batch: Batch) -> Output:
            words = gather_words(self.encode(batch), batch.word_starts)  # (B, L, H)
            grid = self.span_grid
            start, end = grid.start(words), grid.end(words)  # (B, L, size)
            left = torch.einsum("bwi,icj->bwcj", start, grid.bilinear)
            pairs = torch.einsum("bwcj,bvj->bwvc", left, end)  # (B, L, L, size)
            pairs = pairs + grid.start_linear(start)[:, :, None] + grid.end_linear(end)[:, None]
            return Output(tensors={"logits": self.classifier(pairs)})  # (B, L, L, 1 + labels)

        def decode(self, output: Output, batch: Batch) -> list[Prediction]:
            score, label = output.tensors["logits"].softmax(-1).max(-1)  # (B, L, L)
            predictions = []
            for row, ex in enumerate(batch.examples):
                spans = []
                for s, e in ex.sentences:
                    hits = (label[row, s:e, s:e] > 0).triu().nonzero().tolist()
                    spans += [
                        SpanPrediction(
                            s + i,
                            s + j + 1,
                            self.config.labels[label[row, s + i, s + j] - 1],
                            float(score[row, s + i, s + j]),
                        )
                        for i, j in hits
                    ]
                predictions.append(Prediction(spans=spans))
            return predictions

    return FullAttentionSpans


def measure_point(system: str, words: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from nerx.pipeline import ExtractionStats, predict_documents

    torch.set_num_threads(args.threads)
    doc = long_document(args.data, args.fmt, words)
    model = build_system(system, args.encoder)
    with torch.inference_mode():
        predict_documents(model, [long_document(args.data, args.fmt, 64)], batch_size=1)
    examples = model.prepare(doc)
    before = _status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # restart the high-water mark here
    stats = ExtractionStats()
    started = time.perf_counter()
    predict_documents(model, [doc], batch_size=args.batch_size, stats=stats)
    seconds = time.perf_counter() - started
    peak = _status("VmHWM")
    return {
        "system": system,
        "words": words,
        "subwords": sum(len(ex.input_ids) for ex in examples),
        "windows": len(examples),
        "status": "ok",
        "seconds": round(seconds, 2),
        "peak_mib": round(peak),
        "before_mib": round(before),
        "extra_mib": round(peak - before),
    }


def _status(field: str, pid: int | str = "self") -> float:
    """A memory figure of /proc/PID/status in MiB (0 when the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_child(args: argparse.Namespace) -> None:
    system, words = args.point[0], int(args.point[1])
    # A backstop beside the parent's watchdog: an allocation far past the cap fails here
    # rather than pushing the machine into swap or its OOM killer.
    limit = int((args.cap_gb * 1.5 + 4) * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        result = measure_point(system, words, args)
    except (MemoryError, RuntimeError) as exc:
        if "alloc" not in str(exc).lower() and not isinstance(exc, MemoryError):
            raise
        result = {"system": system, "words": words, "status": "out of memory"}
    print(json.dumps(result), flush=True)


# ---------------------------------------------------------------------- the series (parent)
def run_point(system: str, words: int, args: argparse.Namespace) -> dict[str, Any]:
    """One point in a fresh process, stopped when its resident size passes the cap."""
    cap_mib = args.cap_gb * 1024
    command = [sys.executable, __file__, "--point", system, str(words)]
    command += ["--data", args.data, "--from", args.fmt, "--encoder", args.encoder]
    command += ["--cap-gb", str(args.cap_gb), "--threads", str(args.threads)]
    command += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen(command, stdout=out, env=env)
        highest = 0.0
        while child.poll() is None:
            highest = max(highest, _status("VmRSS", child.pid))
            if highest > cap_mib:
                child.kill()
                child.wait()
                return {"system": system, "words": words, "status": "over cap"}
            time.sleep(0.02)
        out.seek(0)
        lines = out.read().strip().splitlines()
    if child.returncode != 0 or not lines:
        return {"system": system, "words": words, "status": f"failed ({child.returncode})"}
    result = json.loads(lines[-1])
    if result.get("peak_mib", 0) > cap_mib:
        result["status"] = "over cap"
    return result


def run_series(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    for system in args.systems:
        for words in args.lengths:
            result = run_point(system, words, args)
            results.append(result)
            shown = {k: result[k] for k in ("status", "seconds", "peak_mib") if k in result}
            print(f"{system:8} {words:6} words: {shown}", file=sys.stderr, flush=True)
            if result["status"] != "ok":
                break  # longer documents only need more
    return results


def growth(results: list[dict[str, Any]], system: str, key: str) -> list[float]:
    """Ratio of ``key`` between consecutive lengths, per doubling of the length."""
    points = [r for r in results if r["system"] == system and r["status"] == "ok"]
    factors = []
    for a, b in zip(points, points[1:], strict=False):
        doublings = math.log2(b["words"] / a["words"])
        if a[key] > 0 and doublings > 0:
            factors.append((b[key] / a[key]) ** (1 / doublings))
    return factors


def markdown(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    systems = [s for s in args.systems if any(r["system"] == s for r in results)]
    header = "| words | " + " | ".join(f"{s} peak MiB (extra) | {s} s" for s in systems) + " |"
    lines = [header, "|" + "---:|" * (1 + 2 * len(systems))]
    by_key = {(r["system"], r["words"]): r for r in results}
    for words in args.lengths:
        cells = [str(words)]
        for system in systems:
            r = by_key.get((system, words))
            if r is None:
                cells += ["-", "-"]
            elif r["status"] != "ok":
                cells += [r["status"], "-"]
            else:
                cells += [f"{r['peak_mib']} ({r['extra_mib']})", f"{r['seconds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for system in systems:
        for key, what in (("peak_mib", "peak"), ("extra_mib", "extra")):
            factors = growth(results, system, key)
            shown = ", ".join(f"{f:.2f}x" for f in factors) or "-"
            lines.append(f"- {system}: {what} memory per doubling of length: {shown}")
        times = ", ".join(f"{f:.2f}x" for f in growth(results, system, "seconds")) or "-"
        lines.append(f"- {system}: time per doubling of length: {times}")
    return "\n".join(lines)


def goals(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    if "sener" not in args.systems:
        return []
    factors = growth(results, "sener", "extra_mib")
    worst = max(factors, default=float("nan"))
    longest = max((r for r in results if r["system"] == "sener"), key=lambda r: r["words"])
    return [
        f"sener extra memory per doubling < 2.5x: {'yes' if worst < 2.5 else 'NO'} "
        f"(worst {worst:.2f}x)",
        f"sener {longest['words']} words within {args.cap_gb:g} GB: "
        f"{'yes' if longest['status'] == 'ok' else 'NO'} ({longest.get('peak_mib', '-')} MiB)",
    ]


def write_csv(results: list[dict[str, Any]], path: Path) -> None:
    fields = ["system", "words", "subwords", "windows", "status", "seconds"]
    fields += ["peak_mib", "before_mib", "extra_mib"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(results)


def plot(results: list[dict[str, Any]], args: argparse.Namespace, path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: wrote the CSV only (pip install matplotlib)"
    figure, (memory, seconds) = plt.subplots(1, 2, figsize=(10, 4))
    for system in args.systems:
        points = [r for r in results if r["system"] == system and r["status"] == "ok"]
        if not points:
            continue
        words = [r["words"] for r in points]
        memory.plot(words, [r["peak_mib"] for r in points], marker="o", label=system)
        seconds.plot(words, [r["seconds"] for r in points], marker="o", label=system)
    for axis, label in ((memory, "peak RSS (MiB)"), (seconds, "extraction time (s)")):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("document length (words)")
        axis.set_ylabel(label)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return f"wrote {path}"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.point:
        run_child(args)
        return
    results = run_series(args)
    out = Path(args.out)
    write_csv(results, out)
    print(markdown(results, args))
    print()
    for line in goals(results, args):
        print(line)
    print(f"wrote {out}; {plot(results, args, out.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
