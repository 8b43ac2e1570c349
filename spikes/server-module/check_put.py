"""keyspace.PUT (EVALSHA) vs SIMCTL.PUT on every kind a key can hold, on one server: same reply, same state."""
import sys
import redis
from simctl.store import keyspace

port = int(sys.argv[1])
r = redis.Redis(port=port)
sha = r.script_load(keyspace.PUT)
big = b"SMT1" + b"x" * 1020
VALUES = {"tensor": b"SMT1" + b"\0" * 20, "tensor-big": big, "model": b"SMM1abc", "script": b"SMS1def"}
SETUP = {
    "absent": lambda k: None,
    "tensor": lambda k: r.set(k, b"SMT1" + b"\0" * 20),
    "tensor-raw": lambda k: r.set(k, big),
    "model": lambda k: r.set(k, b"SMM1model"),
    "script": lambda k: r.set(k, b"SMS1script"),
    "string": lambda k: r.set(k, b"hello"),
    "empty": lambda k: r.set(k, b""),
    "short-SM": lambda k: r.set(k, b"SM"),
    "int": lambda k: r.set(k, b"12345"),
    "tensor-ttl": lambda k: r.set(k, b"SMT1ttl", px=100000),
    "list": lambda k: r.rpush(k, b"a"),
    "hash": lambda k: r.hset(k, "f", "v"),
    "set": lambda k: r.sadd(k, "m"),
    "zset": lambda k: r.zadd(k, {"m": 1}),
    "stream": lambda k: r.xadd(k, {"f": "v"}),
}


def run(cmd, k, v, stem):
    try:
        out = ("ok", cmd(k, v, stem))
    except redis.ResponseError as e:
        out = ("err", str(e).split(" script:")[0])
    return out, r.type(k), r.get(k) if r.type(k) == b"string" else None, r.ttl(k)


bad = 0
n = 0
for case, setup in SETUP.items():
    for vname, v in VALUES.items():
        stem = v[:3].decode()
        res = []
        for name, cmd in (("lua", lambda k, v, s: r.evalsha(sha, 1, k, v, s)),
                          ("mod", lambda k, v, s: r.execute_command("SIMCTL.PUT", k, v, s)),
                          ("modv", lambda k, v, s: r.execute_command("SIMCTL.PUTV", k, v, s))):
            k = f"k:{case}:{vname}:{name}"
            r.delete(k)
            setup(k)
            res.append(run(cmd, k, v, stem))
        n += 1
        same = res[0] == res[1] == res[2]
        bad += not same
        print(f"{'same' if same else 'DIFF'} {case:11s} <- {vname:10s} lua={res[0][0]} mod={res[1][0]}"
              + ("" if same else f"\n   lua {res[0]}\n   mod {res[1]}\n   modv {res[2]}"))
print(f"port {port}: {n} cases, {bad} differ")
