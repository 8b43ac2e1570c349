#!/bin/bash
cd "$(dirname "$0")"; mkdir -p results; PY=/work/main/.venv/bin/python; N=${N:-10000}
for port in 17701 17702; do
  pid=$(cat $([ $port = 17701 ] && echo r.pid || echo v.pid))
  taskset -a -pc 0 $pid >/dev/null
  taskset -c 0 $PY round.py $port $N 3 | sed 's/^/pinned\t/' >> results/roundimit.tsv
  taskset -a -pc 0-1 $pid >/dev/null
  $PY round.py $port $N 3 | sed 's/^/free\t/' >> results/roundimit.tsv
done
