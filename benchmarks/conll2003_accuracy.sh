#!/usr/bin/env bash
# Train token, spandec and sf-spandec on CoNLL-2003 with the same encoder, epochs, batch and
# schedule; extract the test set with each and score it with `nerx eval`.
# Usage: benchmarks/conll2003_accuracy.sh [DATA_DIR] [OUT_DIR] [EPOCHS]
set -euo pipefail
data=${1:-../shared/data/conll2003}
out=${2:-runs/conll2003}
epochs=${3:-1}
mkdir -p "$out"
for kind in token spandec sf-spandec; do
  nerx train "$data/eng.train" --dev "$data/eng.testa" --model "$kind" --encoder minilm \
    --output "$out/$kind" --epochs "$epochs" --batch-size 16 --lr 1e-4 --window 128 --seed 13
  nerx extract "$data/eng.testb" --model "$out/$kind" -o "$out/$kind/test_pred.jsonl" --quiet
  nerx eval "$data/eng.testb" "$out/$kind/test_pred.jsonl" --json > "$out/$kind/test_scores.json"
  nerx eval "$data/eng.testb" "$out/$kind/test_pred.jsonl"
done
