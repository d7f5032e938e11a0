#!/usr/bin/env bash
# Train token, spandec and sf-spandec on CoNLL-2003 with the same encoder, epochs, batch and
# schedule; extract the test set with each and score it with `nerx eval`.
# Every sentence is its own document (--sentence-docs): more optimisation steps per epoch and
# the cheapest epoch on a CPU; the test set is cut the same way.
# Usage: benchmarks/conll2003_accuracy.sh [DATA_DIR] [OUT_DIR] [EPOCHS] [KINDS...]
set -euo pipefail
data=${1:-../shared/data/conll2003}
out=${2:-runs/conll2003}
epochs=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
kinds=${*:-token spandec sf-spandec}
mkdir -p "$out"
nerx convert "$data/eng.testb" "$out/test_sentences.jsonl" --sentence-docs
for kind in $kinds; do
  nerx train "$data/eng.train" --dev "$data/eng.testa" --sentence-docs --model "$kind" \
    --encoder minilm --output "$out/$kind" --epochs "$epochs" --batch-size 16 --lr 3e-4 --seed 13
  nerx extract "$out/test_sentences.jsonl" --model "$out/$kind" -o "$out/$kind/test_pred.jsonl"
  nerx eval "$out/test_sentences.jsonl" "$out/$kind/test_pred.jsonl" --json > "$out/$kind/test_scores.json"
  nerx eval "$out/test_sentences.jsonl" "$out/$kind/test_pred.jsonl"
done
