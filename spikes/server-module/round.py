"""An imitation of the run_model round over plain sockets (no model): the client puts its input, pushes a
request and waits for the reply in one write, then gets the output; the worker takes the request, gets the
input, puts the output and pushes the reply in one write. The two puts are plain SET ("relay"), EVALSHA
keyspace.PUT ("lua") or SIMCTL.PUT ("module"); the variant rides in the request.
Usage: round.py PORT N REPS  (starts its worker itself; pin with taskset)."""
import socket, subprocess, sys, time
import redis
from simctl.store import keyspace


def pack(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            self.buf += self.s.recv(65536)
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        line = self._line()
        t = line[:1]
        if t == b"-":
            raise RuntimeError(line)
        if t in b"+:":
            return line[1:]
        if t == b"$":
            n = int(line[1:])
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self.buf += self.s.recv(65536)
            v, self.buf = self.buf[:n], self.buf[n + 2:]
            return v
        if t == b"*":
            n = int(line[1:])
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError(line)

    def send(self, *cmds):
        self.s.sendall(b"".join(cmds))


#: a FINISH-like script: keyspace.PUT's check on KEYS[1], then SET it and RPUSH ARGV[3] onto KEYS[2]
FINISH = keyspace.PUT.replace("redis.call('SET', KEYS[1], ARGV[1])",
                              "redis.call('SET', KEYS[1], ARGV[1])\nredis.call('RPUSH', KEYS[2], ARGV[3])")
assert FINISH != keyspace.PUT


def finish(variant, sha, fsha, key, val):
    """The worker's write: output then reply"""
    if variant == b"lua-finish":
        return pack(b"EVALSHA", fsha, 2, key, b"rp", val, b"SMT", b"done")
    if variant == b"module-finish":
        return pack(b"SIMCTL.PUTPUSH", key, val, b"SMT", b"rp", b"done")
    return put(variant, sha, key, val) + pack(b"RPUSH", b"rp", b"done")


def put(variant, sha, key, val):
    if variant == b"relay":
        return pack(b"SET", key, val)
    if variant.startswith(b"lua"):
        return pack(b"EVALSHA", sha, 1, key, val, b"SMT")
    return pack(b"SIMCTL.PUT", key, val, b"SMT")


port = int(sys.argv[1])
sha = redis.Redis(port=port).script_load(keyspace.PUT).encode()
fsha = redis.Redis(port=port).script_load(FINISH).encode()
val = b"SMT1" + bytes(1020)
if sys.argv[2] == "worker":
    c = Conn(port)
    while True:
        c.send(pack(b"BLPOP", b"rq", 0))
        _, req = c.reply()
        if req == b"stop":
            break
        c.send(pack(b"GET", b"in"))
        c.reply()
        c.send(finish(req, sha, fsha, b"out", val))
        c.reply()
        if not req.endswith(b"finish"):
            c.reply()
    sys.exit(0)

n, reps = int(sys.argv[2]), int(sys.argv[3])
adm = redis.Redis(port=port)
adm.delete("rq", "rp")
worker = subprocess.Popen([sys.executable, __file__, str(port), "worker"])
c = Conn(port)
VARIANTS = (b"relay", b"lua", b"module", b"lua-finish", b"module-finish")
BLOCK = 250  # variants alternate every BLOCK rounds, so that a load change on the shared machine hits them alike
for rep in range(reps):
    t = {v: [] for v in VARIANTS}
    for block in range(n // BLOCK):
        for variant in VARIANTS:
            for i in range(BLOCK + 20):
                t0 = time.perf_counter_ns()
                c.send(put(variant, sha, b"in", val)); c.reply()
                c.send(pack(b"RPUSH", b"rq", variant), pack(b"BLPOP", b"rp", 0)); c.reply(); c.reply()
                c.send(pack(b"GET", b"out")); c.reply()
                if i >= 20:
                    t[variant].append(time.perf_counter_ns() - t0)
    for variant, tv in t.items():
        tv.sort()
        print(f"{port}\trep{rep}\t{variant.decode()}\tp50_us={tv[len(tv)//2]/1e3:.1f}\tp90_us={tv[int(len(tv)*.9)]/1e3:.1f}",
              flush=True)
c.send(pack(b"RPUSH", b"rq", b"stop")); c.reply()
worker.wait()
