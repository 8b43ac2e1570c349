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


#: a per-node helper: logs its start (host and pid), becomes ready, logs when it is stopped
PER_NODE_HELPER = """
    import os, signal, socket, sys, time
    log = sys.argv[1]
    with open(log, "a") as fh:
        fh.write(f"start {socket.gethostname()} {os.getpid()}\\n")
    def bye(*_):
        with open(log, "a") as fh:
            fh.write("stopped\\n")
        sys.exit(0)
    signal.signal(signal.SIGTERM, bye)
    time.sleep(0.2)
    open(os.environ["SIMCTL_READY_FILE"], "w").close()
    while True:
        time.sleep(1)
"""
