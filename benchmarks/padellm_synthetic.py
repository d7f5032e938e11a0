"""A synthetic NER corpus and a tiny from-scratch causal LM to train ``padellm`` on offline.

Writes to OUT_DIR:

* ``train.jsonl``, ``dev.jsonl``, ``test.jsonl`` (80 / 10 / 10) in nerx's native format,
  ``{"id", "text", "entities": [{"start", "end", "label"}]}``: news-like documents of one to
  three sentences filled from the templates and name lists below (people, organisations,
  places; some templates repeat a mention, as news does);
* ``lm/``: a random Llama (4 layers, hidden 128) with a word-level tokenizer covering the
  corpus vocabulary, the numbers 0-99 and the labels, as a Hugging Face directory.

Then it prints the commands to train, extract and evaluate with nerx.

    python benchmarks/padellm_synthetic.py runs/synthetic --docs 600 --seed 13
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tiny-LM builder is shared with the tests


def _words(text: str) -> list[str]:
    return text.split()


FIRST = _words(
    """Maria Tomas Ana Daniel Priya Henri Lena Omar Sofia Jonas Keiko Pablo Ingrid Malik Elena
Victor Amara Lucas Nadia Felix Yuki Rosa Andre Hana Marco Clara Emil Zara Ivan Leila"""
)
LAST = _words(
    """Lindqvist Keller Ruiz Okafor Nair Blanc Novak Haddad Moreau Berg Tanaka Silva Larsen
Mensah Petrov Costa Weber Dubois Jensen Kowalski Santos Fischer Ito Rossi Varga Eriksen"""
)
ORGS = [
    "Northwind Logistics",
    "Blue Harbor Bank",
    "Crescent Media Group",
    "Alder Systems",
    "Silver Peak Airlines",
    "Redwood Analytics",
    "Granite Insurance",
    "Meridian Foods",
    "Orion Robotics",
    "Lakeside United",
    "Harbor Freight Lines",
    "Green Valley Energy",
    "Atlas Motors",
    "Nordic Science Council",
    "Summit Pharma",
    "Beacon Telecom",
    "Iron Bridge Capital",
    "Polar Shipping",
    "Sunrise Hotels",
    "Cobalt Mining",
    "Riverside Hospital",
    "Falcon Aerospace",
]
PLACES = _words(
    """Oslo Lyon Porto Krakow Nairobi Osaka Denver Tallinn Quito Perth Austin Bergen Seville
Leeds Hamburg Valencia Cork Turin Dakar Lima Hanoi Malmo Graz Zagreb Bilbao Adelaide
Calgary Busan Rotterdam Geneva"""
)
LABELS = {"P": "PER", "O": "ORG", "L": "LOC"}

#: {P1}, {O2}, {L1}...: a person, organisation or place; the same slot twice is the same
#: entity mentioned again.
TEMPLATES = [
    "{P1} joined {O1} in {L1} last year.",
    "{O1} opened a new office in {L1} on Monday.",
    "{P1} met {P2} in {L1} to discuss a merger with {O1}.",
    "{P1}, the chief executive of {O1}, said sales in {L1} rose sharply.",
    "Flights from {L1} to {L2} will resume in May, {O1} said.",
    "{P1} thanked {P2} after the match in {L1}. {P1} had played for {O1} for six years.",
    "{O1} moved its headquarters from {L1} to {L2}. Staff in {L1} were not told.",
    "Police in {L1} are looking for {P1}, who worked at {O1}.",
    "{P1} was born in {L1} and studied in {L2}.",
    "Shares of {O1} fell after {P1} left the company.",
    "{O1} and {O2} signed a deal in {L1} on Friday.",
    "{P1} will lead the team in {L1}, a spokesman for {O1} said. {O1} did not comment further.",
    "The mayor of {L1}, {P1}, visited {L2} with {P2}.",
    "{P1} sold the company to {O1} and moved to {L1}.",
]
SLOT = re.compile(r"\{([POL])(\d)\}")


def fill(template: str, rng: random.Random, offset: int) -> tuple[str, list[dict]]:
    """The template's text with each slot filled (a slot repeated keeps its name) and its
    entities, offset by ``offset`` characters."""
    chosen: dict[str, str] = {}
    text, entities, at = "", [], 0
    for match in SLOT.finditer(template):
        text += template[at : match.start()]
        slot = match.group(0)
        if slot not in chosen:
            used = set(chosen.values())
            chosen[slot] = _pick(match.group(1), rng, used)
        start = offset + len(text)
        text += chosen[slot]
        entities.append(
            {"start": start, "end": offset + len(text), "label": LABELS[match.group(1)]}
        )
        at = match.end()
    return text + template[at:], entities


def _pick(kind: str, rng: random.Random, used: set[str]) -> str:
    while True:
        if kind == "P":
            name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        else:
            name = rng.choice(ORGS if kind == "O" else PLACES)
        if name not in used:
            return name


def document(index: int, rng: random.Random) -> dict:
    text, entities = "", []
    for _ in range(rng.choice([1, 1, 2, 2, 3])):
        if text:
            text += " "
        sentence, found = fill(rng.choice(TEMPLATES), rng, len(text))
        text += sentence
        entities += found
    return {"id": f"synthetic-{index:05d}", "text": text, "entities": entities}


def write_corpus(out: Path, docs: list[dict]) -> dict[str, Path]:
    n = len(docs)
    cuts = {"train": docs[: int(0.8 * n)], "dev": docs[int(0.8 * n) : int(0.9 * n)]}
    cuts["test"] = docs[int(0.9 * n) :]
    paths = {}
    for name, part in cuts.items():
        paths[name] = out / f"{name}.jsonl"
        with open(paths[name], "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(doc, ensure_ascii=False) + "\n" for doc in part)
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n    python")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, metavar="OUT_DIR")
    parser.add_argument("--docs", type=int, default=600, help="documents in all (default 600)")
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args(argv)

    from tests.tiny_causal_lm import build_tiny_causal_lm

    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    docs = [document(i, rng) for i in range(args.docs)]
    paths = write_corpus(args.out, docs)
    lm = build_tiny_causal_lm(
        args.out / "lm",
        [doc["text"] for doc in docs],
        arch="llama",
        extra=sorted(LABELS.values()),
        hidden=128,
        layers=4,
        heads=4,
        max_positions=512,
        seed=args.seed,
    )
    out = args.out
    print(f"wrote {', '.join(f'{k} {v}' for k, v in paths.items())} and the language model {lm}")
    print("train, extract and evaluate:")
    print(
        f"  nerx train {out}/train.jsonl --dev {out}/dev.jsonl --kind padellm --encoder {lm} "
        f"-o {out}/model --epochs 24 --batch-size 8 --lr 1e-3 --head-lr-multiplier 3 "
        "--warmup 0.05 --patience 3 --device cpu"
    )
    print(f"  nerx extract {out}/test.jsonl --model {out}/model -o {out}/predicted.jsonl")
    print(f"  nerx eval {out}/test.jsonl {out}/predicted.jsonl")
    print(f"  python benchmarks/padellm_latency.py --model {out}/model --data {out}/test.jsonl")


if __name__ == "__main__":
    main()
