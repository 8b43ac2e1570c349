"""What every scheduler's batch script ends with (the rendering is shared)."""

#: the end of a batch script of steps: the loop stopping single members on request
STOP_LOOP = """while [ -n "$(jobs -rp)" ]; do
  for s in {d}/*.stop; do
    [ -e "$s" ] || continue; i=${{s##*/}}; i=${{i%.stop}}
    kill -TERM "$(cat {d}/$i.pid 2>/dev/null)" 2>/dev/null; mv -f "$s" "$s.done"
  done
  sleep 1
done
wait
"""
