#!/usr/bin/env bash
# Train one model kind on a public corpus, extract its test split, score it with `nerx eval`,
# and append one line to OUT/summary.tsv: corpus, kind, the options given, the best dev F1
# and its epoch, and the test F1. With no options after KIND it measures the kind's defaults.
#
# Usage: benchmarks/accuracy.sh CORPUS OUT KIND [nerx train options...]
#   CORPUS: conll2003 (sentence documents), conll2003-docs (whole articles) or bc5cdr
#   e.g.    benchmarks/accuracy.sh conll2003 runs/acc spandec
#           benchmarks/accuracy.sh bc5cdr runs/acc token --lr 5e-5
# Environment: DATA (../shared/data), NERX (nerx; e.g. "python -m nerx").
set -euo pipefail
corpus=${1:?CORPUS}
out=${2:?OUT}
kind=${3:?KIND}
shift 3
data=${DATA:-../shared/data}
nerx=${NERX:-nerx}
case "$corpus" in
  conll2003) train=$data/conll2003/eng.train dev=$data/conll2003/eng.testa
             test=$data/conll2003/eng.testb split=(--sentence-docs) ;;
  conll2003-docs) train=$data/conll2003/eng.train dev=$data/conll2003/eng.testa
             test=$data/conll2003/eng.testb split=() ;;
  bc5cdr) train=$data/bc5cdr/train.tsv dev=$data/bc5cdr/devel.tsv test=$data/bc5cdr/test.tsv
          split=() ;;
  *) echo "CORPUS must be conll2003, conll2003-docs or bc5cdr, not '$corpus'" >&2; exit 2 ;;
esac
given=$(printf '%s ' "$@" | sed 's/\(^\| \)\(-q\|--quiet\)\( \|$\)/ /g; s/^ *//; s/ *$//')
name=$kind${given:+_$(echo "$given" | tr -c 'A-Za-z0-9.=-' '_' | sed 's/_*$//')}
run=$out/$corpus/$name
mkdir -p "$out/$corpus"
gold=$out/$corpus/test.jsonl
[ -s "$gold" ] || $nerx convert "$test" "$gold" "${split[@]}" -q
start=$(date +%s)
$nerx train "$train" --dev "$dev" "${split[@]}" --kind "$kind" --output "$run" "$@"
minutes=$(( ($(date +%s) - start) / 60 ))
$nerx extract "$gold" --model "$run" -o "$run/test_pred.jsonl" -q
$nerx eval "$gold" "$run/test_pred.jsonl" --json > "$run/test_scores.json"
python3 - "$run" "$corpus" "$kind" "$given" "$minutes" >> "$out/summary.tsv" <<'PY'
import json, sys
run, corpus, kind, options, minutes = sys.argv[1:]
epochs = [json.loads(l) for l in open(f"{run}/metrics.jsonl") if '"dev_f1"' in l]
best = max(epochs, key=lambda r: r["dev_f1"])
curve = " ".join(f'{r["dev_f1"]:.2f}' for r in epochs)  # dev_f1 is in percent
test = json.load(open(f"{run}/test_scores.json"))
f1 = test["entities"]["f1"]
f1 = f1 * 100 if f1 <= 1 else f1
print(f"{corpus}\t{kind}\t{options or '(defaults)'}\tdev {best['dev_f1']:.2f} "
      f"(epoch {best['epoch']})\ttest {f1:.2f}\tdev curve {curve}\t{minutes} min")
PY
tail -1 "$out/summary.tsv"
