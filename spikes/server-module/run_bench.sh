#!/bin/bash
# runs every configuration; output in results/*.tsv
set -e
cd "$(dirname "$0")"; mkdir -p results
PY=/work/main/.venv/bin/python
N=${N:-20000}
for port in 17701 17702; do
  pid=$(cat $([ $port = 17701 ] && echo r.pid || echo v.pid))
  # pinned: server (all its threads) and client on CPU 0
  taskset -a -pc 0 $pid >/dev/null
  taskset -c 0 $PY bench.py $port single $N 3 pinned >> results/single.tsv
  taskset -c 0 $PY bench.py $port round $N 3 pinned >> results/round.tsv
  # two round loops at once, all on CPU 0 (the round's interleaving of processes on one CPU)
  taskset -c 0 $PY bench.py $port round $N 3 pinned2a >> results/round2.tsv &
  taskset -c 0 $PY bench.py $port round $N 3 pinned2b >> results/round2.tsv
  wait
  taskset -a -pc 0-1 $pid >/dev/null
  $PY bench.py $port single $N 3 free >> results/single.tsv
  $PY bench.py $port round $N 3 free >> results/round.tsv
done
