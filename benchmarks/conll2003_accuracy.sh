#!/usr/bin/env bash
# The accuracy table of the README in one command: every NER kind given (default: token and
# spandec) trained with its defaults on CoNLL-2003 (sentence documents) and BC5CDR, then
# sf-spandec with its defaults and token without case features on CoNLL-2003; each scored
# on test with `nerx eval` by benchmarks/accuracy.sh, one line each in OUT/summary.tsv.
#
# Usage: benchmarks/conll2003_accuracy.sh [OUT_DIR] [KINDS...]
# Then token on whole CoNLL-2003 articles at batch 4 for 3 and 6 epochs (the news-ner recipe),
# and sener (3 epochs, then its default 6) and spandec on whole articles at batch 2 (about 25,
# 56 and 30 minutes on 2 cores).
# e.g.    benchmarks/conll2003_accuracy.sh runs/accuracy token spandec sf-spandec
#
# Environment: DATA (../shared/data), NERX (nerx), CORPORA ("conll2003 bc5cdr"; add
#   conll2003-docs for whole articles), ABLATION=0 to skip the run without case features,
#   DOCS=0 to skip the whole-article runs.
set -euo pipefail
here=$(dirname "$0")
out=${1:-runs/accuracy}
shift $(( $# < 1 ? $# : 1 ))
kinds=${*:-token spandec}
for corpus in ${CORPORA:-conll2003 bc5cdr}; do
  for kind in $kinds; do
    "$here/accuracy.sh" "$corpus" "$out" "$kind" -q
  done
done
# SpanDec with its token filter, against spandec's line above (CoNLL-2003 sentences).
"$here/accuracy.sh" conll2003 "$out" sf-spandec -q
if [ "${ABLATION:-1}" = 1 ]; then
  "$here/accuracy.sh" conll2003 "$out" token --set case_features=false -q
fi
if [ "${DOCS:-1}" = 1 ]; then
  # An article is about one window: batch 4 gives 264 steps an epoch (66 at batch 16).
  "$here/accuracy.sh" conll2003-docs "$out" token --batch-size 4 -q
  "$here/accuracy.sh" conll2003-docs "$out" token --batch-size 4 --epochs 6 -q
  # sener reads an article whole; batch 2 keeps its span tensors in memory on a small machine.
  "$here/accuracy.sh" conll2003-docs "$out" sener --batch-size 2 --epochs 3 --seed 13 -q
  "$here/accuracy.sh" conll2003-docs "$out" sener --batch-size 2 --seed 13 -q  # its 6 epochs
  "$here/accuracy.sh" conll2003-docs "$out" spandec --batch-size 2 --seed 13 -q
fi
column -t -s $'\t' "$out/summary.tsv"
