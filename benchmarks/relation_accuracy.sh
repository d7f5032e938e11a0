#!/usr/bin/env bash
# Train the relation models on CoNLL04 and SciERC with MiniLM-L6 and score the test sets with
# `nerx eval`: NER F1, Rel and Rel+ (SciERC's symmetric Compare and Conjunction counted once,
# then twice).
#
# CoNLL04: iter; plmarker with its own entities; a spandec NER model; and plmarker's relation
# step on the entities of iter and of spandec (`--resume --set ner_model=DIR` on a copy of the
# finished plmarker run calibrates the relation step on those entities).
# SciERC, one sentence per document: plmarker (iter's SciERC run reads the DyGIE abstracts:
# nerx train DATA/scierc/train.json --dev DATA/scierc/dev.json --kind iter --epochs 10
# --batch-size 4 --lr 2e-4 --patience 4 --symmetric COMPARE --symmetric CONJUNCTION).
#
# Usage: benchmarks/relation_accuracy.sh [DATA_DIR] [OUT_DIR] [PART...]
#   PART: conll04 (default both), scierc
# On a 2-core CPU: iter about 40 minutes, plmarker about 50 on CoNLL04 and 60 on SciERC.
set -euo pipefail
data=${1:-../shared/data}
out=${2:-runs/relations}
shift $(( $# < 2 ? $# : 2 ))
parts=${*:-conll04 scierc}

score() {  # MODEL_DIR TEST_FILE [eval options...]: extract the test set and score it
  local model=$1 test=$2
  shift 2
  nerx extract "$test" --model "$model" -o "$model/test_pred.jsonl" --quiet
  nerx eval "$test" "$model/test_pred.jsonl" "$@"
}

for part in $parts; do
  case "$part" in
  conll04)
    dir=$out/conll04
    mkdir -p "$dir"
    nerx convert "$data/conll04/conll04_test.json" "$dir/test.jsonl" --from spert
    common=("$data/conll04/conll04_train.json" --from spert
      --dev "$data/conll04/conll04_dev.json" --encoder minilm --batch-size 8 --lr 2e-4 --seed 13)
    nerx train "${common[@]}" --kind iter --output "$dir/iter" --epochs 25 --patience 25
    score "$dir/iter" "$dir/test.jsonl"
    plmarker=("${common[@]}" --kind plmarker --epochs 6 --patience 6)
    nerx train "${plmarker[@]}" --output "$dir/plmarker"
    score "$dir/plmarker" "$dir/test.jsonl"
    nerx train "${common[@]}" --kind spandec --output "$dir/spandec" --epochs 20 --patience 5
    score "$dir/spandec" "$dir/test.jsonl"
    for ner in iter spandec; do
      rm -rf "$dir/plmarker+$ner"
      cp -r "$dir/plmarker" "$dir/plmarker+$ner"
      nerx train "${plmarker[@]}" --output "$dir/plmarker+$ner" --resume \
        --set ner_model="$dir/$ner"
      score "$dir/plmarker+$ner" "$dir/test.jsonl"
    done
    ;;
  scierc)
    dir=$out/scierc
    sentences=$data/scierc/sentence_level
    mkdir -p "$dir"
    nerx convert "$sentences/scierc_test.json" "$dir/test.jsonl" --from spert
    symmetric=(--symmetric Compare --symmetric Conjunction)
    nerx train "$sentences/scierc_train.json" --from spert --dev "$sentences/scierc_dev.json" \
      --kind plmarker --encoder minilm --output "$dir/plmarker" --epochs 5 --batch-size 8 \
      --lr 2e-4 --patience 5 --seed 13 "${symmetric[@]}" --set train_spans=128
    score "$dir/plmarker" "$dir/test.jsonl" "${symmetric[@]}"
    nerx eval "$dir/test.jsonl" "$dir/plmarker/test_pred.jsonl" "${symmetric[@]}" --symmetric-twice
    ;;
  *)
    echo "PART must be conll04 or scierc, not '$part'" >&2
    exit 2
    ;;
  esac
done
