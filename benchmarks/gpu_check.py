"""Everything a GPU run of nerx should confirm, in one command, with one JSON and one table.

Steps (each recorded as ok or failed; a failed step does not stop the others):

* ``tests``: the tests marked ``gpu`` (they skip without CUDA);
* ``throughput``: extraction speed of every NER and relation kind (untrained heads: speed does
  not depend on training) at batch 8 and 64 under the device's default precision (bf16 on a
  GPU), next to the bare encoder (ceiling) and a Hugging Face pipeline (peer), through
  ``benchmarks/throughput.py``;
* ``train``: one epoch of CoNLL-2003 training for ``token`` and ``spandec``, examples/s;
* ``sener_memory``: SeNER's peak memory and time on one long document, up to 32k words;
* ``padellm_latency``: PaDeLLM's per-document latency in its decoding modes, through
  ``benchmarks/padellm_latency.py`` (a tiny causal LM trained here on the sample corpus,
  unless ``--padellm-model`` names a trained one).

``--tiny`` runs the same steps on the sample corpus and random 2-layer networks, so the script
is checked on any machine in a minute or two (CI runs ``--device cpu --tiny``).

    benchmarks/gpu_check.sh                      # on a GPU machine, under 8 minutes
    benchmarks/gpu_check.sh --device cpu --tiny  # anywhere
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_corpora"
NER_KINDS = ("token", "spandec", "sf-spandec", "sener")
RE_KINDS = ("iter", "plmarker")
CONLL_LABELS = ["LOC", "MISC", "ORG", "PER"]
CONLL04_RELATIONS = ["Kill", "Live_In", "Located_In", "OrgBased_In", "Work_For"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    benchmarks")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    add("--tiny", action="store_true", help="sample corpus and random tiny networks")
    add("--data", default=str(REPO.parent / "shared" / "data"), help="the public corpora")
    add("--encoder", default="minilm", help="encoder of the full run (default: minilm)")
    add("--padellm-model", help="a trained padellm model directory for the latency step")
    add("--steps", default="tests,throughput,train,sener_memory,padellm_latency",
        help="comma-separated subset of the steps")  # fmt: skip
    add("--out", default="runs/gpu_check/gpu_check.json", help="the JSON report")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------- inputs
class Inputs:
    """Encoder, corpora and sizes of the run: the real ones, or tiny ones built here."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.tiny = args.tiny
        self.work = work
        data = Path(args.data)
        if args.tiny:
            sys.path.insert(0, str(REPO))
            from tests.tiny_encoder import build_tiny_encoder

            text = (SAMPLES / "news.jsonl").read_text(encoding="utf-8")
            words = set(re.findall(r"\w+|[^\w\s]", text))
            self.encoder = str(build_tiny_encoder(work / "tiny-encoder", words))
            self.ner_data = self.train_data = self.dev_data = str(SAMPLES / "news.conll")
            self.limit, self.repeats = 0, 1
            self.batch_sizes = (8, 64)
            self.sener_lengths = (50, 100, 200)
        else:
            self.encoder = args.encoder
            self.ner_data = str(data / "conll2003" / "eng.testb")
            self.train_data = str(data / "conll2003" / "eng.train")
            self.dev_data = str(data / "conll2003" / "eng.testa")
            self.limit, self.repeats = 2000, 3
            self.batch_sizes = (8, 64)
            self.sener_lengths = (1000, 2000, 4000, 8000, 16000, 32000)


# ---------------------------------------------------------------------- steps
def step_tests(args, inputs: Inputs) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", "tests"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    counts = {key: int(n) for n, key in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)}
    if done.returncode not in (0, 5):  # 5: nothing collected
        raise RuntimeError(f"gpu tests: {summary or done.stderr[-500:]}")
    return {"summary": summary, **counts}


def _untrained_model(kind: str, inputs: Inputs) -> str:
    """A saved model directory of ``kind`` with fresh heads (speed does not need training)."""
    from nerx.models import ModelConfig, model_class, save_model

    relations = CONLL04_RELATIONS if kind in RE_KINDS else []
    config = ModelConfig(
        kind=kind,
        labels=CONLL_LABELS,
        relation_labels=relations,
        encoder=inputs.encoder,
        hyper={"nested": kind != "token"},
    )
    return str(save_model(model_class(kind).create(config), inputs.work / "models" / kind))


def step_throughput(args, inputs: Inputs) -> dict[str, Any]:
    models = [f"{kind}={_untrained_model(kind, inputs)}" for kind in NER_KINDS + RE_KINDS]
    tables = {}
    for batch_size in inputs.batch_sizes:
        out = inputs.work / f"throughput-{batch_size}.json"
        command = [sys.executable, str(REPO / "benchmarks" / "throughput.py")]
        for model in models:
            command += ["--model", model]
        command += ["--data", inputs.ner_data, "--limit", str(inputs.limit)]
        command += ["--batch-size", str(batch_size), "--device", args.device]
        command += ["--encoder", inputs.encoder, "--repeats", str(inputs.repeats)]
        command += ["--out", str(out)]
        if inputs.tiny:
            command += ["--in-process"]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"throughput.py at batch {batch_size}: {done.stderr[-800:]}")
        report = json.loads(out.read_text(encoding="utf-8"))
        tables[str(batch_size)] = [
            {k: row.get(k) for k in ("system", "kind", "docs_per_s", "words_per_s",
                                     "vs_ceiling", "vs_peer", "peak_gpu_mib")}
            for row in report["systems"]
        ]  # fmt: skip
    return {"batch_sizes": tables}


def step_train(args, inputs: Inputs) -> dict[str, Any]:
    from nerx.io import read
    from nerx.training import TrainSettings, train

    train_docs = list(read(inputs.train_data, "conll"))
    dev_docs = list(read(inputs.dev_data, "conll"))
    results = {}
    for kind in ("token", "spandec"):
        rates: list[float] = []
        started = time.perf_counter()
        result = train(
            train_docs,
            dev_docs,
            kind=kind,
            encoder=inputs.encoder,
            output=inputs.work / "train" / kind,
            settings=TrainSettings(epochs=1, device=args.device, batch_size=16, log_every=0),
            on_step=lambda p, rates=rates: rates.append(p.examples_per_second),
        )
        results[kind] = {
            "examples_per_second": round(rates[-1], 2) if rates else None,
            "steps": len(rates),
            "seconds_with_dev_and_calibration": round(time.perf_counter() - started, 2),
            "dev_f1": round(result.best_score, 2),
        }
    return results


def step_sener_memory(args, inputs: Inputs) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from long_documents import build_system, long_document

    from nerx.pipeline import predict_documents
    from nerx.runtime import resolve_device

    device = resolve_device(args.device)
    model = build_system("sener", inputs.encoder).to(device)
    points = []
    for words in inputs.sener_lengths:
        doc = long_document(inputs.ner_data, "conll", words)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        try:
            predict_documents(model, [doc], batch_size=1)
        except torch.OutOfMemoryError:
            points.append({"words": words, "error": "out of memory"})
            break
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) / 2**20
        else:  # the process's high-water mark: grows only, so an upper bound per point
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        points.append(
            {
                "words": words,
                "seconds": round(time.perf_counter() - started, 3),
                "peak_mib": round(peak, 1),
                "memory": "gpu allocated" if device.type == "cuda" else "process rss",
            }
        )
    return {"points": points}


def step_padellm_latency(args, inputs: Inputs) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from padellm_latency import measure

    from nerx.doc import TextPreparer
    from nerx.io import read
    from nerx.models import load_model

    docs = list(read(SAMPLES / "news.jsonl"))
    model_dir = args.padellm_model or _tiny_padellm(docs, inputs, args.device)
    model = load_model(model_dir, device=args.device)
    TextPreparer()(docs)
    results = measure(model, docs)
    return {
        "model": "given" if args.padellm_model else "tiny causal LM on the sample corpus",
        "ms_per_doc": {
            mode: round(sum(found["ms"]) / len(found["ms"]), 2) for mode, found in results.items()
        },
    }


def _tiny_padellm(docs, inputs: Inputs, device: str) -> str:
    sys.path.insert(0, str(REPO))
    from nerx.training import TrainSettings, train
    from tests.tiny_causal_lm import build_tiny_causal_lm

    labels = sorted({e.label for d in docs for e in d.entities})
    lm = build_tiny_causal_lm(inputs.work / "tiny-lm", [d.text for d in docs], extra=labels)
    out = inputs.work / "padellm"
    settings = TrainSettings(
        epochs=3 if inputs.tiny else 30,
        batch_size=4,
        learning_rate=3e-3,
        warmup=0.0,
        device=device,
        log_every=0,
    )
    train(docs, docs, kind="padellm", encoder=str(lm), output=out, settings=settings)
    return str(out)


STEPS = {
    "tests": step_tests,
    "throughput": step_throughput,
    "train": step_train,
    "sener_memory": step_sener_memory,
    "padellm_latency": step_padellm_latency,
}


# ---------------------------------------------------------------------- report
def table(report: dict[str, Any]) -> str:
    lines = [f"nerx GPU check on {report['device']} ({'tiny' if report['tiny'] else 'full'})"]
    for name, step in report["steps"].items():
        head = f"{name}: {step['status']} in {step['seconds']:.0f}s"
        lines.append(head if step["status"] == "ok" else f"{head}: {step.get('error', '')}")
        result = step.get("result", {})
        if name == "tests" and result:
            lines.append(f"  {result['summary']}")
        if name == "throughput":
            for batch, rows in result.get("batch_sizes", {}).items():
                lines.append(f"  batch {batch}: system, docs/s, x ceiling, x peer")
                for row in rows:
                    ceiling, peer = row["vs_ceiling"], row["vs_peer"]
                    lines.append(
                        f"    {row['system']:<11} {row['docs_per_s'] or 0:>9.1f}"
                        f" {'' if ceiling is None else f'{ceiling:.2f}':>6}"
                        f" {'' if peer is None else f'{peer:.2f}':>6}"
                    )
        if name == "train":
            for kind, row in result.items():
                lines.append(
                    f"  {kind}: {row['examples_per_second']} examples/s, dev F1 {row['dev_f1']}"
                )
        if name == "sener_memory":
            for point in result.get("points", []):
                lines.append(
                    f"  {point['words']:>6} words: "
                    + (point.get("error") or f"{point['peak_mib']} MiB, {point['seconds']} s")
                )
        if name == "padellm_latency":
            for mode, ms in result.get("ms_per_doc", {}).items():
                lines.append(f"  {mode}: {ms} ms/doc")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = [s for s in args.steps.split(",") if s]
    unknown = sorted(set(chosen) - set(STEPS))
    if unknown:
        raise SystemExit(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu (and --tiny to be quick)")
    report: dict[str, Any] = {
        "device": args.device,
        "gpu": torch.cuda.get_device_name(args.device) if args.device != "cpu" else None,
        "tiny": args.tiny,
        "torch": torch.__version__,
        "steps": {},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nerx-gpu-check-") as tmp:
        inputs = Inputs(args, Path(tmp))
        for name in chosen:
            started = time.perf_counter()
            entry: dict[str, Any]
            try:
                entry = {"status": "ok", "result": STEPS[name](args, inputs)}
            except Exception as exc:  # a failed step is reported; the others still run
                entry = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
            entry["seconds"] = round(time.perf_counter() - started, 1)
            report["steps"][name] = entry
            out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    shown = table(report)
    out.with_suffix(".txt").write_text(shown + "\n", encoding="utf-8")
    print(shown)
    return 0 if all(s["status"] == "ok" for s in report["steps"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
