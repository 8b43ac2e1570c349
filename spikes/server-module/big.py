"""1 MiB and 16 MiB values: server time of SET vs SIMCTL.PUT vs EVALSHA PUT (Lua copies the value) vs the
client's large-value path (SET under a temporary key + EVALSHA MOVE_IN). usec_per_call from commandstats."""
import sys
import redis
from simctl.store import keyspace
port = int(sys.argv[1])
r = redis.Redis(port=port)
sha, msha = r.script_load(keyspace.PUT), r.script_load(keyspace.MOVE_IN)
for size in (1 << 20, 16 << 20):
    val = b"SMT1" + bytes(size - 4)
    n = 200 if size == 1 << 20 else 20
    out = []
    for name, f, stat in (("SET", lambda: r.set("big", val), ["set"]),
                          ("SIMCTL.PUT", lambda: r.execute_command("SIMCTL.PUT", "big", val, "SMT"), ["simctl.put"]),
                          ("EVALSHA PUT", lambda: r.evalsha(sha, 1, "big", val, "SMT"), ["evalsha"]),
                          ("SET tmp + MOVE_IN", lambda: (r.set("simctl.tmp{big}", val, px=60000),
                                                         r.evalsha(msha, 2, "simctl.tmp{big}", "big", "tensor")),
                           ["set", "evalsha"])):
        for _ in range(3):
            f()
        r.config_resetstat()
        for _ in range(n):
            f()
        cs = r.info("commandstats")
        us = sum(cs[f"cmdstat_{s}"]["usec"] for s in stat) / n
        out.append(f"{name} {us:.0f}")
    print(f"port {port} {size >> 20} MiB, server us per put: " + ", ".join(out))
