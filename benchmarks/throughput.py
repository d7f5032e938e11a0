"""Extraction speed of nerx models next to two yardsticks, on the same sentences, in one run.

Systems, each timed over the same documents with the same batch size:

* every ``--model NAME=DIR``: ``nerx.pipeline.predict_documents`` end to end (windows, subword
  ids, forward pass, decoding, character offsets). Any saved model kind works, relation
  models included;
* ``ceiling``: the forward pass alone of the full pretrained encoder (``--encoder``) over the
  very length-sorted batches the models build: no tokenising, no head, no decoding. A model
  on that encoder only beats it by doing less encoder work (SpanDec drops the last layer);
* ``peer``: a Hugging Face ``token-classification`` pipeline on the same encoder with a fresh,
  untrained 9-label head, fed the sentences as space-joined strings: speed only;
* ``spacy`` (``--peer-spacy PIPELINE``): a trained spaCy pipeline's NER (its tok2vec and ner
  components only) on the same pre-split words, through ``nlp.pipe`` with the pipeline's own
  batch size.

A model exported with ``nerx export`` (ONNX Runtime, fp32 or int8) is one more
``--model NAME=DIR``; its kind shows the backend. With gold entities in the data, each
model's entity F1 (strict, micro) is reported beside its speed.

By default every system runs in a fresh copy of this script (hidden ``--only SYSTEM``), so its
peak memory is its own and one system's caches do not warm the next.

    python benchmarks/throughput.py --model token=runs/conll2003/token \\
        --model spandec=runs/conll2003/spandec --model sf-spandec=runs/conll2003/sf-spandec \\
        --out runs/conll2003/throughput.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "conll2003" / "eng.testb"
CEILING, PEER, SPACY = "ceiling", "peer", "spacy"
#: The peer's head has CoNLL-2003's BIO tags; only its size matters for speed.
PEER_TAGS = ["O"] + [f"{p}-{label}" for label in ("PER", "ORG", "LOC", "MISC") for p in "BI"]
OUT_SUFFIXES = (".json", ".csv")

DESCRIPTION = __doc__.split("\n\n    python")[0].replace("``", "")
EPILOG = """\
examples:
  # CoNLL-2003 test, first 1000 sentences, the three NER models
  python benchmarks/throughput.py --model token=runs/conll2003/token \\
      --model spandec=runs/conll2003/spandec --model sf-spandec=runs/conll2003/sf-spandec
  # an exported int8 model beside its PyTorch self and spaCy's small English pipeline
  python benchmarks/throughput.py --model news-ner=nerx/bundled/news-ner \\
      --model news-ner-int8=runs/news-ner-int8 --peer-spacy en_core_web_sm --threads 2
  # CoNLL04 test (SpERT JSON, one sentence per document) with a relation model, on a GPU
  python benchmarks/throughput.py --data ../shared/data/conll04/conll04_test.json \\
      --from spert --limit 0 --model itr=runs/conll04/iter --device cuda --out conll04.csv

figures:
  docs/s, words/s  documents (sentences) and words per second, best of --repeats timed runs,
                   each after one untimed warm-up batch
  x ceiling        speed relative to the bare encoder forward pass (1.0 = as fast)
  x peer           speed relative to the Hugging Face pipeline (above 1.0 = faster)
  x spacy          speed relative to the spaCy pipeline of --peer-spacy (above 1.0 = faster)
  F1               strict entity F1 (micro, %) against the data's gold entities, models only
  kept             spans kept by a model's filter / candidate spans (sf-spandec)
  peak RSS         highest resident memory of the process that measured the system, from
                   loading it on (Linux VmHWM, reset through /proc/self/clear_refs; elsewhere
                   getrusage's ru_maxrss since the process started). With the default
                   isolation that is runtime + data + that system; with --in-process it also
                   counts whatever earlier systems left resident
  peak GPU         torch.cuda.max_memory_allocated while measuring the system (--device cuda)
"""


# ---------------------------------------------------------------------- options
def model_spec(text: str) -> tuple[str, str]:
    """``NAME=DIR``, or a bare ``DIR`` named after its last component."""
    name, sep, path = text.partition("=")
    if not sep:
        name, path = Path(text).name, text
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=DIR, got {text!r}")
    if name in (CEILING, PEER, SPACY):
        raise argparse.ArgumentTypeError(f"{name!r} names a yardstick; call the model otherwise")
    if not (Path(path) / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{path} is not a nerx model directory (no config.json)")
    return name, path


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/throughput.py",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--model", dest="models", action="append", default=[], type=model_spec,
        metavar="NAME=DIR", help="a saved nerx model directory to time, under NAME in the "
        "table (repeatable; a bare DIR is named after its last component)")  # fmt: skip
    add("--data", default=str(DEFAULT_DATA),
        help="corpus to extract (default: CoNLL-2003 eng.testb in ../shared/data, relative "
        "to the repository root); CoNLL files are read one sentence per document")  # fmt: skip
    add("--from", dest="from_format", metavar="FORMAT",
        help="format of --data: conll, jsonl, docbin, brat, or a JSONL dialect such as spert "
        "(CoNLL04) or dygie (default: detected from the suffix, then the content)")  # fmt: skip
    add("--limit", type=int, default=1000, metavar="N",
        help="time the first N documents only; 0 for all (default: 1000)")  # fmt: skip
    add("--batch-size", type=positive_int, default=32,
        help="windows (sentences) per forward pass, for every system (default: 32)")  # fmt: skip
    add("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    add("--threads", type=positive_int, metavar="N",
        help="torch intra-op threads in every measuring process (default: torch's own "
        "choice; the fast tokenizers keep their own thread pool)")  # fmt: skip
    add("--encoder", default="minilm",
        help="pretrained encoder of the ceiling and the peer: a Hugging Face directory or "
        "the minilm alias (default: minilm); should be the one the models were trained on")  # fmt: skip
    add("--repeats", type=positive_int, default=3,
        help="timed runs per system; the best is reported (default: 3)")  # fmt: skip
    add("--no-ceiling", action="store_true", help="skip the bare encoder")
    add("--no-peer", action="store_true", help="skip the Hugging Face pipeline")
    add("--peer-aggregation", default="simple",
        choices=["none", "simple", "first", "average", "max"],
        help="the pipeline's aggregation_strategy; simple groups tags into entities, as nerx "
        "returns entities (default: simple)")  # fmt: skip
    add("--peer-spacy", metavar="PIPELINE",
        help="also time this installed spaCy pipeline's NER (tok2vec + ner) on the same "
        "words, e.g. en_core_web_sm")  # fmt: skip
    add("--peer-sorted", action="store_true",
        help="feed the pipeline its sentences sorted by subword length, as nerx sorts its "
        "windows internally (default: input order, which is what a pipeline user gets)")  # fmt: skip
    add("--in-process", action="store_true",
        help="measure every system in this process instead of a fresh one each: starts "
        "faster, but peak RSS then also counts what earlier systems left resident")  # fmt: skip
    add("--out", metavar="FILE",
        help="also write the table and the settings to FILE (.json or .csv)")  # fmt: skip
    # Internal: a parent run re-invokes the script once per system with these.
    add("--only", help=argparse.SUPPRESS)
    add("--result", help=argparse.SUPPRESS)
    add("--batches", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    names = [name for name, _ in args.models]
    if len(set(names)) != len(names):
        parser.error(f"model names must differ, got {', '.join(names)}")
    if args.limit < 0:
        parser.error("--limit must be 0 (all) or positive")
    if args.out and Path(args.out).suffix.lower() not in OUT_SUFFIXES:
        parser.error(f"--out must end in {' or '.join(OUT_SUFFIXES)}")
    if not (args.models or args.peer_spacy or not args.no_ceiling or not args.no_peer):
        parser.error("nothing to measure: give --model, or drop --no-ceiling / --no-peer")
    if args.only and args.only not in [*names, CEILING, PEER, SPACY]:
        parser.error(f"--only {args.only}: no such system")
    args.argv = list(argv)
    return args


def systems(args: argparse.Namespace) -> list[str]:
    names = [name for name, _ in args.models]
    peers = ([] if args.no_peer else [PEER]) + ([SPACY] if args.peer_spacy else [])
    return names + ([] if args.no_ceiling else [CEILING]) + peers


# ---------------------------------------------------------------------- results
@dataclass
class Result:
    system: str
    kind: str
    trained: bool | None  # None for the ceiling, which has no head
    documents: int
    words: int
    runs: list[float]  # seconds of each timed run
    threads: int
    baseline_rss_mib: float  # the process before the system was loaded
    peak_rss_mib: float
    peak_rss_since: str  # "system start" where the mark could be reset, else "process start"
    peak_gpu_mib: float | None = None
    entities: int | None = None
    relations: int | None = None
    #: Model counters summed over one run (e.g. candidate spans and spans kept by a filter).
    model_stats: dict[str, float] = field(default_factory=dict)
    #: Strict entity F1 (%) against the data's gold entities (models only, when it has some).
    f1: float | None = None

    @property
    def seconds(self) -> float:
        return min(self.runs)

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds

    @property
    def words_per_s(self) -> float:
        return self.words / self.seconds

    @property
    def kept_fraction(self) -> float | None:
        spans = self.model_stats.get("spans")
        if not spans or "spans_kept" not in self.model_stats:
            return None
        return self.model_stats["spans_kept"] / spans

    def ratio(self, other: Result | None) -> float | None:
        return other.seconds / self.seconds if other else None


# ---------------------------------------------------------------------- measuring
def load_documents(args: argparse.Namespace) -> list:
    from nerx.doc import TextPreparer
    from nerx.errors import ConfigError
    from nerx.io import detect_format, read

    name = args.from_format or detect_format(args.data)
    # A CoNLL file's -DOCSTART- documents are a whole article each; sentences are the unit.
    options = {"sentence_docs": True} if name.lower() == "conll" else {}
    docs = read(args.data, name, **options)
    docs = list(islice(docs, args.limit) if args.limit else docs)
    if not docs:
        raise ConfigError(f"{args.data} holds no documents")
    TextPreparer()(docs)  # raw-text corpora get words and sentences here, outside the timing
    return docs


def timed(run: Callable[[], Any], repeats: int, device) -> tuple[list[float], Any]:
    """Seconds of each of ``repeats`` calls of ``run``, and the last call's value."""
    times, value = [], None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        value = run()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times, value


def synchronize(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_rss() -> bool:
    """Restart the peak-RSS mark at the current RSS (Linux); False where that is impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return peak_rss_from_proc() is not None


def peak_rss_mib() -> float:
    """Peak resident memory of this process, MiB.

    Linux: VmHWM, the high-water mark of the process's own memory image. getrusage's
    ru_maxrss is no good there: exec keeps the maximum of the image it replaces, so a child
    started by a parent holding a model would report the parent's size as its own peak.
    """
    from_proc = peak_rss_from_proc()
    if from_proc is not None:
        return from_proc
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB here


def peak_rss_from_proc() -> float | None:
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**10
    return None


def encoder_batches(model, docs: Sequence, batch_size: int) -> list[dict]:
    """input_ids / attention_mask of the batches ``predict_documents`` runs, in its order.

    Built with a loaded model's own ``prepare`` + ``collate`` rather than the encoder tokenizer
    on the words: only that reproduces the model's windows (its window size, long sentences
    cut in overlapping pieces) and padding, so the ceiling encodes exactly what models encode.
    """
    examples = [ex for i, doc in enumerate(docs) for ex in model.prepare(doc, i)]
    examples.sort(key=lambda ex: len(ex.input_ids))  # stable, like predict_documents' sort
    batches = []
    for first in range(0, len(examples), batch_size):
        batch = model.collate(examples[first : first + batch_size])
        batches.append({"input_ids": batch.input_ids, "attention_mask": batch.attention_mask})
    return batches


def save_batches(batches: list[dict], path: str) -> None:
    from safetensors.torch import save_file

    save_file({f"{k}.{i}": t for i, b in enumerate(batches) for k, t in b.items()}, path)


def load_batches(path: str) -> list[dict]:
    from safetensors.torch import load_file

    flat = load_file(path)
    count = len(flat) // 2
    return [{k: flat[f"{k}.{i}"] for k in ("input_ids", "attention_mask")} for i in range(count)]


def batches_for(args: argparse.Namespace, docs: Sequence) -> list[dict]:
    """The ceiling's batches, from the first model (or, without models, a fresh token model
    on --encoder, whose windows are then the encoder's full length)."""
    from nerx.models import ModelConfig, load_model, model_class
    from nerx.models.encoder import resolve_encoder_path

    if args.models:
        name, path = args.models[0]
        model = load_model(path)
        if resolve_encoder_path(model.config.encoder) != resolve_encoder_path(args.encoder):
            note(
                f"warning: {name} was trained on {model.config.encoder!r} but the ceiling and "
                f"the peer run {args.encoder!r}; pass --encoder {model.config.encoder}"
            )
    else:
        config = ModelConfig(kind="token", labels=["MISC"], encoder=args.encoder)
        model = model_class("token").create(config)
    return encoder_batches(model, docs, args.batch_size)


def measure_model(path: str, docs: Sequence, args, device) -> dict:
    from nerx.models import load_model
    from nerx.pipeline import ExtractionStats, predict_documents
    from nerx.scoring import evaluate

    model = load_model(path, device=device)

    def run() -> tuple[ExtractionStats, list]:
        stats = ExtractionStats()
        predicted = predict_documents(model, docs, batch_size=args.batch_size, stats=stats)
        return stats, predicted

    predict_documents(model, docs[: args.batch_size], batch_size=args.batch_size)  # warm-up
    runs, (stats, predicted) = timed(run, args.repeats, device)
    has_gold = any(doc.entities for doc in docs)
    precision = getattr(model, "precision", None)  # set on models exported to ONNX
    return {
        "kind": model.config.kind + (f" (onnx {precision})" if precision else ""),
        "f1": 100 * evaluate(docs, predicted).entities.f1 if has_gold else None,
        "trained": bool(model.config.training),  # nerx train records how; create() does not
        "runs": runs,
        "entities": stats.entities,
        "relations": stats.relations,
        "model_stats": dict(stats.model),
    }


def measure_ceiling(batches: list[dict], args, device) -> dict:
    import torch

    from nerx.models.encoder import load_encoder
    from nerx.runtime import autocast, move_batch

    encoder = load_encoder(args.encoder).to(device).eval()

    def forward(batch: dict) -> None:
        # Moved inside the timing, as predict_documents moves each of its batches.
        encoder(**move_batch(batch, device))

    def run() -> None:
        for batch in batches:
            forward(batch)

    # The models' own precision: bf16 autocast on GPU, fp32 on CPU.
    with torch.inference_mode(), autocast(device):
        forward(batches[0])  # warm-up
        runs, _ = timed(run, args.repeats, device)
    return {"kind": f"encoder {args.encoder}", "trained": None, "runs": runs}


def measure_peer(docs: Sequence, args, device) -> dict:
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline
    from transformers.utils import logging

    from nerx.models.encoder import resolve_encoder_path
    from nerx.runtime import autocast

    logging.set_verbosity_error()  # the "newly initialized head" warning is the point here
    logging.disable_progress_bar()
    path = resolve_encoder_path(args.encoder)
    tokenizer = AutoTokenizer.from_pretrained(path)
    head = AutoModelForTokenClassification.from_pretrained(
        path,
        num_labels=len(PEER_TAGS),
        id2label=dict(enumerate(PEER_TAGS)),
        label2id={tag: i for i, tag in enumerate(PEER_TAGS)},
    )
    pipe = pipeline(
        "token-classification",
        model=head,
        tokenizer=tokenizer,
        device=device,
        aggregation_strategy=args.peer_aggregation,
    )
    texts = [" ".join(doc.text[s:e] for s, e in doc.tokens) for doc in docs]
    if args.peer_sorted:
        lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
        texts = [texts[i] for i in sorted(range(len(texts)), key=lengths.__getitem__)]

    def run() -> list:
        with autocast(device):
            return pipe(texts, batch_size=args.batch_size)

    pipe(texts[: args.batch_size], batch_size=args.batch_size)  # warm-up
    runs, _ = timed(run, args.repeats, device)
    return {"kind": f"hf pipeline ({args.peer_aggregation})", "trained": False, "runs": runs}


def measure_spacy(docs: Sequence, args) -> dict:
    """A spaCy pipeline's NER on the same words: Docs built from the pre-split words (no
    tokenizer), run through its tok2vec and ner only, with its own batch size."""
    import spacy
    from spacy.tokens import Doc

    keep = {"tok2vec", "ner"}
    nlp = spacy.load(args.peer_spacy)
    if "ner" not in nlp.pipe_names:
        raise SystemExit(f"error: spaCy pipeline {args.peer_spacy} has no ner component")
    nlp.select_pipes(enable=[name for name in nlp.pipe_names if name in keep])
    words = [[doc.text[s:e] for s, e in doc.tokens] for doc in docs]

    def run() -> int:
        fresh = (Doc(nlp.vocab, words=w) for w in words)
        return sum(len(doc.ents) for doc in nlp.pipe(fresh))

    list(nlp.pipe(Doc(nlp.vocab, words=w) for w in words[: args.batch_size]))  # warm-up
    import torch

    runs, entities = timed(run, args.repeats, torch.device("cpu"))
    kind = f"spacy {args.peer_spacy} ({'+'.join(nlp.pipe_names)})"
    return {"kind": kind, "trained": True, "runs": runs, "entities": entities}


def measure(system: str, args, docs: Sequence, batches: list[dict] | None) -> Result:
    """Load and time one system in this process."""
    import torch

    from nerx.runtime import resolve_device

    device = resolve_device(args.device)
    since_start = reset_peak_rss()
    baseline = peak_rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if system == CEILING:
        figures = measure_ceiling(batches, args, device)
    elif system == PEER:
        figures = measure_peer(docs, args, device)
    elif system == SPACY:
        figures = measure_spacy(docs, args)
    else:
        figures = measure_model(dict(args.models)[system], docs, args, device)
    return Result(
        system=system,
        documents=len(docs),
        words=sum(len(doc.tokens) for doc in docs),
        threads=torch.get_num_threads(),
        baseline_rss_mib=baseline,
        peak_rss_mib=peak_rss_mib(),
        peak_rss_since="system start" if since_start else "process start",
        peak_gpu_mib=(
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        ),
        **figures,
    )


def measure_isolated(system: str, args, batches_file: str | None) -> Result:
    """Time one system in a fresh copy of this script, so its peak RSS is its own."""
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), *args.argv]
        command += ["--only", system, "--result", str(result_file)]
        if batches_file:
            command += ["--batches", batches_file]
        done = subprocess.run(command, check=False)
        if done.returncode or not result_file.is_file():
            raise SystemExit(f"error: measuring {system} failed (exit {done.returncode})")
        return Result(**json.loads(result_file.read_text(encoding="utf-8")))


def measure_all(args) -> tuple[dict[str, Any], list[Result]]:
    import torch

    from nerx.runtime import resolve_device

    docs = load_documents(args)
    wanted = systems(args)
    batches = batches_for(args, docs) if CEILING in wanted else None
    settings = {
        "data": str(Path(args.data).resolve()),
        "documents": len(docs),
        "words": sum(len(doc.tokens) for doc in docs),
        "batch_size": args.batch_size,
        "device": str(resolve_device(args.device)),
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "encoder": args.encoder,
        "isolated": not args.in_process,
        "load_average": list(os.getloadavg()),
        "torch": torch.__version__,
    }
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        batches_file = None
        if batches is not None and not args.in_process:
            batches_file = str(Path(tmp) / "batches.safetensors")
            save_batches(batches, batches_file)
        for system in wanted:
            note(f"measuring {system} ...")
            if args.in_process:
                results.append(measure(system, args, docs, batches))
            else:
                results.append(measure_isolated(system, args, batches_file))
    return settings, results


# ---------------------------------------------------------------------- reporting
def rows(results: list[Result]) -> list[dict[str, Any]]:
    by_name = {r.system: r for r in results}
    ceiling, peer, spacy = by_name.get(CEILING), by_name.get(PEER), by_name.get(SPACY)
    return [
        {
            **{k: v for k, v in asdict(r).items() if k != "model_stats"},
            "seconds": r.seconds,
            "docs_per_s": r.docs_per_s,
            "words_per_s": r.words_per_s,
            "vs_ceiling": r.ratio(ceiling),
            "vs_peer": r.ratio(peer),
            "vs_spacy": r.ratio(spacy),
            "kept_fraction": r.kept_fraction,
            "model_stats": r.model_stats,
        }
        for r in results
    ]


def notes_for(settings: dict[str, Any], results: list[Result]) -> list[str]:
    notes = [
        "models: predict_documents end to end (subword ids, forward, decoding, offsets).",
        "ceiling: forward pass of the full pretrained encoder over the models' own "
        "length-sorted batches; no tokenising, head or decoding.",
        "peer: Hugging Face token-classification pipeline, untrained head: speed only, its "
        "own tokenising and aggregation included.",
    ]
    if settings["device"].startswith("cuda"):
        notes.append("GPU: every system runs under bf16 autocast, as nerx extraction does.")
    untrained = [r.system for r in results if r.trained is False and r.system != PEER]
    if untrained:
        notes.append(
            f"untrained (no training record): {', '.join(untrained)}. Speeds that depend on "
            "predictions (a filter's kept spans, decoded entities) are not meaningful for them."
        )
    if any(r.system == SPACY for r in results):
        notes.append(
            "spacy: tok2vec + ner of the pipeline on Docs of the same words (no tokenizer), "
            "nlp.pipe with its own batch size; its labels differ, so it has no F1 here."
        )
    notes.append(memory_note(settings["isolated"], results))
    return notes


def memory_note(isolated: bool, results: list[Result]) -> str:
    where = "each system in a fresh process" if isolated else "all systems in one process"
    if all(r.peak_rss_since == "system start" for r in results):
        counted = "the runtime and data already resident (baseline_rss_mib in --out)"
        if not isolated:
            counted += " and whatever earlier systems left resident"
        return f"peak RSS: {where}; highest RSS from loading the system on, {counted}."
    scope = "" if isolated else " over this system and every one above it"
    return f"peak RSS: {where}; running maximum since the process started{scope}."


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def show(settings: dict[str, Any], table_rows: list[dict[str, Any]], notes: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    gpu = settings["device"].startswith("cuda")
    title = (
        f"{settings['documents']} documents, {settings['words']} words | batch "
        f"{settings['batch_size']} | {settings['device']}, {settings['threads']} torch threads "
        f"| best of {settings['repeats']} | load avg {settings['load_average'][0]:.2f}"
    )
    table = Table(title=title, title_justify="left")
    columns = ["system", "kind", "trained", "docs/s", "words/s", "x ceiling", "x peer"]
    columns += ["x spacy", "kept", "F1", "peak RSS"] + (["peak GPU"] if gpu else [])
    for name in columns:
        left = name in ("system", "kind", "trained")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    trained = {True: "yes", False: "no", None: "-"}
    for row in table_rows:
        cells = [
            row["system"],
            row["kind"],
            trained[row["trained"]],
            fmt(row["docs_per_s"], ".1f"),
            fmt(row["words_per_s"], ",.0f"),
            fmt(row["vs_ceiling"], ".2f"),
            fmt(row["vs_peer"], ".2f"),
            fmt(row["vs_spacy"], ".2f"),
            fmt(row["kept_fraction"], ".1%"),
            fmt(row["f1"], ".2f"),
            fmt(row["peak_rss_mib"], ",.0f", " MiB"),
        ]
        if gpu:
            cells.append(fmt(row["peak_gpu_mib"], ",.0f", " MiB"))
        table.add_row(*cells)
    # Logs and redirected output would otherwise wrap the table at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 132)
    console.print(table)
    for line in notes:
        console.print(f"[dim]- {line}[/]")


def write_out(path: str, settings, table_rows, notes) -> None:
    target = Path(path)
    if target.suffix.lower() == ".json":
        report = {"settings": settings, "notes": notes, "systems": table_rows}
        target.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return
    flat_settings = {k: v for k, v in settings.items() if k not in ("load_average",)}
    flat_settings["load_average"] = settings["load_average"][0]
    with target.open("w", newline="", encoding="utf-8") as handle:
        records = [
            {**row, "runs": " ".join(f"{t:.4f}" for t in row["runs"]),
             "model_stats": json.dumps(row["model_stats"]), **flat_settings}
            for row in table_rows
        ]  # fmt: skip
        writer = csv.DictWriter(handle, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from nerx.errors import NerxError

    try:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        if args.only:
            docs = load_documents(args)
            if args.batches:
                batches = load_batches(args.batches)
            else:
                batches = batches_for(args, docs) if args.only == CEILING else None
            result = measure(args.only, args, docs, batches)
            Path(args.result).write_text(json.dumps(asdict(result)), encoding="utf-8")
            return 0
        settings, results = measure_all(args)
    except NerxError as exc:
        note(f"error: {exc}")
        return 2
    table_rows = rows(results)
    notes = notes_for(settings, results)
    show(settings, table_rows, notes)
    if args.out:
        write_out(args.out, settings, table_rows, notes)
        note(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
