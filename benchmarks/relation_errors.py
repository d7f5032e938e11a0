"""Where relation errors come from: entity errors or the relation step.

Runs a relation model over a gold corpus and prints NER F1, Rel and Rel+, then splits the
missed and the spurious relations by whether both of their entities were predicted right.

    python benchmarks/relation_errors.py runs/conll04/iter \\
        ../shared/data/conll04/conll04_test.json spert
"""

from __future__ import annotations

import sys

from nerx.doc import TextPreparer
from nerx.io import read
from nerx.models import load_model
from nerx.pipeline import predict_documents
from nerx.scoring import evaluate


def entity_key(doc, index: int) -> tuple[int, int, str]:
    entity = doc.entities[index]
    return entity.start, entity.end, entity.label


def main(model_dir: str, gold_path: str, gold_format: str | None = None) -> None:
    gold = list(read(gold_path, gold_format))
    model = load_model(model_dir)
    TextPreparer()(gold)
    pred = predict_documents(model, gold)
    scores = evaluate(gold, pred)
    print(
        f"NER F1 {scores.entities.f1 * 100:.2f}  Rel {scores.relations.f1 * 100:.2f}  "
        f"Rel+ {scores.relations_strict.f1 * 100:.2f}"
    )
    missed = {"entity wrong": 0, "entities right": 0}
    spurious = {"entity wrong": 0, "entities right": 0}
    reachable = total = 0
    for g, p in zip(gold, pred, strict=True):
        gold_entities = {entity_key(g, i) for i in range(len(g.entities))}
        pred_entities = {entity_key(p, i) for i in range(len(p.entities))}
        gold_rel = {(entity_key(g, r.head), entity_key(g, r.tail), r.label) for r in g.relations}
        pred_rel = {(entity_key(p, r.head), entity_key(p, r.tail), r.label) for r in p.relations}
        for head, tail, _ in gold_rel - pred_rel:
            right = head in pred_entities and tail in pred_entities
            missed["entities right" if right else "entity wrong"] += 1
        for head, tail, _ in pred_rel - gold_rel:
            right = head in gold_entities and tail in gold_entities
            spurious["entities right" if right else "entity wrong"] += 1
        reachable += sum(1 for h, t, _ in gold_rel if h in pred_entities and t in pred_entities)
        total += len(gold_rel)
    print(f"missed relations: {missed}")
    print(f"spurious relations: {spurious}")
    print(f"gold relations with both entities predicted: {reachable}/{total}")


if __name__ == "__main__":
    main(*sys.argv[1:])
