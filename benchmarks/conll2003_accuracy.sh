#!/usr/bin/env bash
# Train token, spandec and sf-spandec on CoNLL-2003 with the same encoder, epochs, batch and
# schedule; extract the test set with each and score it with `nerx eval`.
#
# Usage: benchmarks/conll2003_accuracy.sh [DATA_DIR] [OUT_DIR] [EPOCHS] [KINDS...]
# Environment:
#   UNIT=sentences (default)  every sentence is its own document (--sentence-docs): more
#                             optimisation steps per epoch and the cheapest epoch on a CPU;
#                             the test set is cut the same way
#   UNIT=documents            whole articles, windowed with cross-sentence context
#   BATCH (16) and LR (3e-4)  the batch size and peak learning rate of every model
set -euo pipefail
data=${1:-../shared/data/conll2003}
out=${2:-runs/conll2003}
epochs=${3:-2}
shift $(( $# < 3 ? $# : 3 ))
kinds=${*:-token spandec sf-spandec}
unit=${UNIT:-sentences}
case "$unit" in
  sentences) split=(--sentence-docs) ;;
  documents) split=() ;;
  *) echo "UNIT must be sentences or documents, not '$unit'" >&2; exit 2 ;;
esac
mkdir -p "$out"
test_file="$out/test_$unit.jsonl"
nerx convert "$data/eng.testb" "$test_file" "${split[@]}"
for kind in $kinds; do
  nerx train "$data/eng.train" --dev "$data/eng.testa" "${split[@]}" --kind "$kind" \
    --encoder minilm --output "$out/$kind" --epochs "$epochs" --batch-size "${BATCH:-16}" \
    --lr "${LR:-3e-4}" --seed 13
  nerx extract "$test_file" --model "$out/$kind" -o "$out/$kind/test_pred.jsonl"
  nerx eval "$test_file" "$out/$kind/test_pred.jsonl" --json > "$out/$kind/test_scores.json"
  nerx eval "$test_file" "$out/$kind/test_pred.jsonl"
done
