"""Round-trip latency (plain socket client, pre-packed commands) and commandstats usec_per_call of
SET vs EVALSHA keyspace.PUT vs SIMCTL.PUT(V/CALL), 1 KiB values; modes:
  single: one command a round trip;  round: PUT then GET of the same key (two round trips) a round.
Usage: bench.py PORT MODE N REPS [tag]  -> one line per rep and variant."""
import socket
import statistics
import sys
import time

import redis
from simctl.store import keyspace


def pack(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


port, mode, n, reps = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tag = sys.argv[5] if len(sys.argv) > 5 else ""
adm = redis.Redis(port=port)
sha = adm.script_load(keyspace.PUT)
# the same PUT as a server-side function (FUNCTION LOAD / FCALL): is Lua's cost the EVALSHA path or Lua itself?
adm.execute_command("FUNCTION", "LOAD", "REPLACE", "#!lua name=simctlspike\nlocal function put(KEYS, ARGV)\n"
                    + keyspace.PUT + "\nend\nredis.register_function('simctl_put', put)\n")
key = f"bench:{tag}:{port}".encode()
val = b"SMT1" + bytes(1020)
VARIANTS = {
    "SET": (pack(b"SET", key, val), 5, "set"),
    "EVALSHA PUT": (pack(b"EVALSHA", sha, 1, key, val, b"SMT"), 4, "evalsha"),
    "FCALL PUT": (pack(b"FCALL", b"simctl_put", 1, key, val, b"SMT"), 4, "fcall"),
    "SIMCTL.PUT": (pack(b"SIMCTL.PUT", key, val, b"SMT"), 4, "simctl.put"),
    "SIMCTL.PUTV": (pack(b"SIMCTL.PUTV", key, val, b"SMT"), 4, "simctl.putv"),
    "SIMCTL.PUTCALL": (pack(b"SIMCTL.PUTCALL", key, val, b"SMT"), 4, "simctl.putcall"),
}
GET = pack(b"GET", key)
GETLEN = len(b"$1024\r\n") + 1024 + 2
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
buf = bytearray(65536)
mv = memoryview(buf)


def exchange(cmd, want):
    s.sendall(cmd)
    got = 0
    while got < want:
        got += s.recv_into(mv[got:])
    if buf[0] == 45:  # '-'
        raise SystemExit(bytes(buf[:got]))


for rep in range(reps):
    for name, (cmd, want, stat) in VARIANTS.items():
        for _ in range(2000):  # warm-up
            exchange(cmd, want)
        adm.config_resetstat()
        t = []
        pc = time.perf_counter_ns
        for _ in range(n):
            t0 = pc()
            exchange(cmd, want)
            if mode == "round":
                exchange(GET, GETLEN)
            t.append(pc() - t0)
        cs = adm.info("commandstats")
        usec = cs.get(f"cmdstat_{stat}", {}).get("usec_per_call", float("nan"))
        inner = {k[8:]: v["usec_per_call"] for k, v in cs.items() if k[8:] not in (stat, "get", "config", "info")}
        t.sort()
        print(f"{tag}\t{port}\t{mode}\trep{rep}\t{name}\tp50_us={t[len(t)//2]/1e3:.1f}\tmean_us={statistics.fmean(t)/1e3:.1f}"
              f"\tp90_us={t[int(len(t)*0.9)]/1e3:.1f}\tusec_per_call={usec:.2f}\tinner={inner}", flush=True)
