"""Strict entity F1 overall and on entities longer than 4 words (gold and predicted alike).

python benchmarks/long_entity_f1.py runs/docs/test_docs.jsonl runs/docs/sener/test_pred.jsonl
"""

from __future__ import annotations

import sys

from nerx.doc import Document
from nerx.io import read
from nerx.scoring import evaluate

LONG = 4  # words


def long_entities_only(docs: list[Document]) -> list[Document]:
    kept = []
    for doc in docs:
        doc = doc.ensure_tokens()
        spans = doc.entity_token_spans()
        entities = [e for e, s in zip(doc.entities, spans, strict=True) if s and s[1] - s[0] > LONG]
        kept.append(
            Document(
                id=doc.id,
                text=doc.text,
                tokens=doc.tokens,
                sentences=doc.sentences,
                entities=entities,
            )
        )
    return kept


def main(gold_path: str, pred_path: str) -> None:
    gold, pred = list(read(gold_path)), list(read(pred_path))
    print(f"all entities: F1 {evaluate(gold, pred).entities.f1 * 100:.2f}")
    long = evaluate(long_entities_only(gold), long_entities_only(pred)).entities
    print(
        f"entities > {LONG} words: P {long.precision * 100:.2f} R {long.recall * 100:.2f} "
        f"F1 {long.f1 * 100:.2f} (gold {long.gold}, predicted {long.predicted})"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
