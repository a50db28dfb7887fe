#!/bin/sh
# Full run: fresh schema, correctness check, then 3 repetitions with the driver order
# rotated each repetition (noisy 2-core box: compare within a repetition, report medians).
set -e
PY=${PYTHON:-python}
cd "$(dirname "$0")"
$PY setup.py
$PY check.py
rm -f results.jsonl
for rep in 1 2 3; do
  case $rep in
    1) order="psycopg asyncpg asyncpg-noreset";;
    2) order="asyncpg psycopg asyncpg-noreset";;
    3) order="asyncpg-noreset asyncpg psycopg";;
  esac
  for d in $order; do
    echo "== rep $rep $d"
    if [ $d = asyncpg-noreset ]; then g=write,read; else g=write,batch,read; fi
    $PY bench.py --driver $d --rep $rep --groups $g --duration 2.0 --out results.jsonl
  done
done
$PY report.py results.jsonl > results.md
$PY setup.py --drop
echo done
