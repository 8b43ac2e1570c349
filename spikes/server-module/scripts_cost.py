"""Server time of the round's real scripts (protocol.SUBMIT, i20-worker's FINISH) on this machine, against the
plain commands the relay uses, 1 KiB input and output, 1 input, 1 output. commandstats, N calls."""
import sys
import redis
from simctl.store import protocol, format as fmt

port, n = int(sys.argv[1]), 5000
r = redis.Redis(port=port)
src = __import__("subprocess").run(["git", "-C", "/work/main", "show", "i20-worker:src/simctl/store/fastround.py"], capture_output=True, text=True, check=True).stdout
import types
ns = {"fmt": fmt, "pr": types.SimpleNamespace(REPLY_TTL=60)}
exec(src[src.index("FINISH = fmt.KIND_LUA"):src.index("FINISH_SHA")], ns)  # i20-worker's FINISH, as text
finish = ns["FINISH"]
sub, fin = r.script_load(protocol.SUBMIT), r.script_load(finish)
val = b"SMT1" + bytes(1020)
r.set("in", val); r.set("model", b"SMM1" + bytes([16, 0, 0, 0]) + b"h" * 16 + bytes(2000))
for _ in range(200):
    r.evalsha(sub, 4, "q", "model", "in", "out", "hdr", 4096, 1); r.lpop("q")
    r.evalsha(fin, 3, "out", "rp", "taken", val, "reply"); r.lpop("rp")
r.config_resetstat()
for _ in range(n):
    r.evalsha(sub, 4, "q", "model", "in", "out", "hdr", 4096, 1); r.lpop("q")
a = r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
r.config_resetstat()
for _ in range(n):
    r.evalsha(fin, 3, "out", "rp", "taken", val, "reply"); r.lpop("rp")
b = r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
from simctl.store import keyspace
psha = r.script_load(keyspace.PUT)
r.config_resetstat()
for _ in range(n):
    r.evalsha(psha, 1, "out", val, "SMT")
c = r.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
r.config_resetstat()
for _ in range(n):
    r.execute_command("SIMCTL.PUTPUSH", "out", val, "SMT", "rp", "reply"); r.lpop("rp")
d = r.info("commandstats")["cmdstat_simctl.putpush"]["usec_per_call"]
r.config_resetstat()
for _ in range(n):
    r.execute_command("SIMCTL.PUT", "out", val, "SMT")
e = r.info("commandstats")["cmdstat_simctl.put"]["usec_per_call"]
r.config_resetstat()
for _ in range(n):
    r.set("out", val); r.rpush("rp", "reply"); r.lpop("rp")
cs = r.info("commandstats")
print(f"port {port}: SUBMIT {a:.2f} us/call, FINISH {b:.2f}, PUT {c:.2f}, SIMCTL.PUT {e:.2f}, SIMCTL.PUTPUSH {d:.2f}, relay's SET {cs['cmdstat_set']['usec_per_call']:.2f} "
      f"RPUSH {cs['cmdstat_rpush']['usec_per_call']:.2f}")
