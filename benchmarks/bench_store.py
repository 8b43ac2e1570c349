"""Feature-store client benchmarks: simctl's Client against its floors, in the same run.

    python benchmarks/bench_store.py [--only CASES] [--rounds N] [--json PATH]

The floors, on the same redis-server in the same run:

* socket: a plain-socket client (:class:`SocketFloor`) sending the commands
  simctl sends for a put_tensor and a get_tensor (the kind-checking script
  with the value, or for a value over 2 KiB a SET under a temporary key and
  the script that renames it; GET) as RESP over one TCP socket, in as little
  Python as it takes, a large reply received into an uninitialised buffer;
* memcpy (1m, 64m): numpy copying the array into another (memory's speed);
* redis-py: raw redis-py (its defaults) doing SET / GET of the same bytes, an
  extra column (no guard against replacing another kind of key);
* socket SET (puts): the plain-socket client sending a plain SET of the same
  value, unguarded: what the guard against replacing another kind costs.

Servers are Debian's /usr/bin/redis-server (or $SIMCTL_BENCH_REDIS), started
here on free loopback ports with a password, no persistence and no io-threads,
with simctl's server module where it builds and loads (as a store's servers;
SIMCTL_SERVER_MODULE=0: without), and killed at the end.

Cases and targets (exit status 1 if one is missed, 2 if simctl is not importable);
the target applies to the median over 3 repetitions of simctl's time per
operation over the socket floor's:
  1k        put_tensor / get_tensor of a 1 KiB float32 tensor: <= 1.5x the socket floor
  1m        the same at 1 MiB: <= 1.2x
  64m       the same at 64 MiB: <= 1.1x (at the floor)
  cluster   aggregate throughput of 8 client processes (each puts and gets its
            own 1 MiB tensors, then 1 KiB ones) on a 3-shard Redis Cluster
            against the same on one server (informational: no target)

In a repetition, the columns take turns operation by operation (in a new
random order each turn) for --rounds loops, each loop giving each column's
median time per operation; a repetition's figure per column is the
median of its loops. Printed: the
min-max (and median) over the repetitions of simctl's ratio to each floor.
The machine may be shared: only ratios measured in the same run mean
anything. The --skip-peer / --peer-only / --peer-repeat flags are accepted
and unused.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, bench_arg_parser, fmt_ratio, run_cases  # noqa: E402

CASES = ["1k", "1m", "64m", "cluster"]
SIZES = {"1k": 1024, "1m": 1 << 20, "64m": 64 << 20}
#: operations per loop (one loop = one median) and default rounds, per size
OPS = {"1k": 1000, "1m": 100, "64m": 2}
ROUNDS = {"1k": 5, "1m": 5, "64m": 3}
#: the most simctl's time per operation may be, as a multiple of the plain-socket floor's (median of REPS)
TARGETS = {SIZES["1k"]: 1.5, SIZES["1m"]: 1.2, SIZES["64m"]: 1.1}
#: repetitions of each case (the ratios' min-max is over these)
REPS = 3
N_PROCS = 8
PASSWORD = secrets.token_hex(16)
REDIS = os.environ.get("SIMCTL_BENCH_REDIS") or shutil.which("redis-server") or "/usr/bin/redis-server"


# --------------------------------------------------------------------------- servers


class Server:
    """A redis-server on a free loopback port, password-protected, no persistence."""

    def __init__(self, root: str, cluster: bool = False) -> None:
        import redis

        self.port = _free_port(cluster)
        self.dir = os.path.join(root, f"redis-{self.port}")
        os.makedirs(self.dir)
        conf = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", 'save ""', "appendonly no",
                f"requirepass {PASSWORD}", f"masterauth {PASSWORD}", "io-threads 1"]
        if cluster:
            conf += ["cluster-enabled yes", "cluster-config-file nodes.conf"]
        from simctl.store.servermodule import module_for

        self.module = module_for(REDIS)  # as a store's servers: simctl's server module where it builds and loads
        if self.module:
            conf.append(f"loadmodule {self.module}")
        with open(os.path.join(self.dir, "redis.conf"), "w") as fh:
            fh.write("\n".join(conf) + "\n")
        with open(os.path.join(self.dir, "redis.log"), "wb") as out:
            self.proc = subprocess.Popen([REDIS, os.path.join(self.dir, "redis.conf")], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.address = f"127.0.0.1:{self.port}"
        self.raw = redis.Redis(port=self.port, password=PASSWORD)
        for _ in range(400):
            try:
                self.raw.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server did not start on {self.port}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _free_port(cluster: bool) -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not cluster:
            return port
        if port < 55000:
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port + 10000))
                    return port
                except OSError:
                    continue


def start_cluster(root: str, n: int = 3) -> list[Server]:
    nodes = [Server(root, cluster=True) for _ in range(n)]
    edges = [16384 * i // n for i in range(n + 1)]
    for node, lo, hi in zip(nodes, edges, edges[1:]):
        node.raw.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi - 1)
    for node in nodes[1:]:
        nodes[0].raw.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
    for _ in range(600):
        if all(b"cluster_state:ok" in x.raw.execute_command("CLUSTER", "INFO") for x in nodes):
            return nodes
        time.sleep(0.05)
    raise RuntimeError("the cluster did not reach cluster_state:ok")


# --------------------------------------------------------------------------- the floors


class SocketFloor:
    """The plain-socket floor: the commands simctl sends for a put_tensor and
    a get_tensor (the same bytes: the kind-checking put, ``SIMCTL.PUT`` where
    the server loaded simctl's module else the script, or the temporary key
    and its rename for a larger value; GET), as RESP over one TCP socket
    with TCP_NODELAY and the same timeout, in as little Python as it takes;
    a large reply received into an uninitialised buffer (``recv_into``), the
    array made on it without a copy."""

    def __init__(self, port: int, password: str, module: bool = False) -> None:
        from simctl.store import keyspace

        self.module = module

        self.keyspace = keyspace
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(_resp(["AUTH", "default", password]))
        assert self.sock.recv(100) == b"+OK\r\n"
        for script in (keyspace.PUT, keyspace.MOVE_IN):
            self.sock.sendall(_resp(["SCRIPT", "LOAD", script]))
            self.sock.recv(100)
        self.sha = {s: keyspace.by_sha(("EVAL", s))[1] for s in (keyspace.PUT, keyspace.MOVE_IN)}

    def put(self, key: str, header: bytes, data: Any) -> None:
        size = len(header) + data.nbytes
        if size > self.keyspace.MOVE_FROM:
            tmp = "simctl.put{" + key + "}.floor"
            head = b"*5\r\n" + _resp_tail(["SET", tmp]) + b"$%d\r\n" % size
            tail = b"\r\n" + _resp_tail(["PX", "60000"]) + _resp(["EVALSHA", self.sha[self.keyspace.MOVE_IN], "2",
                                                                 tmp, key, "tensor"])
            _sendmsg(self.sock, [head, header, data, tail])
            n = 2
        else:  # as the client: the server module's SIMCTL.PUT where the server has it, else the script
            self.sock.sendall(_resp(["SIMCTL.PUT", key, header + data.tobytes(), "SMT"] if self.module else
                                    ["EVALSHA", self.sha[self.keyspace.PUT], "1", key, header + data.tobytes(),
                                     "SMT"]))
            n = 1
        got = self.sock.recv(65536)
        while got.count(b"\r\n") < n:
            got += self.sock.recv(65536)

    def set(self, key: str, header: bytes, data: Any) -> None:
        """A plain SET of the same value: no guard against replacing another kind of key (what the guard costs)."""
        head = b"*3\r\n" + _resp_tail(["SET", key]) + b"$%d\r\n" % (len(header) + data.nbytes)
        _sendmsg(self.sock, [head, header, data, b"\r\n"])
        got = self.sock.recv(65536)
        while not got.endswith(b"\r\n"):
            got += self.sock.recv(65536)

    def get(self, key: str, dtype: Any, header_size: int) -> Any:
        import numpy as np

        self.sock.sendall(_resp(["GET", key]))
        got = self.sock.recv(65536)
        while b"\r\n" not in got:
            got += self.sock.recv(65536)
        line = got.index(b"\r\n")
        size = int(got[1:line])
        if size < 131072:
            while len(got) < line + size + 4:
                got += self.sock.recv(65536)
            return np.frombuffer(got, dtype, offset=line + 2 + header_size, count=(size - header_size) // 4)
        out = np.empty(size + 2, np.uint8)
        view = memoryview(out)
        have = len(got) - line - 2
        view[:have] = got[line + 2:]
        while have < size + 2:
            have += self.sock.recv_into(view[have:])
        return np.frombuffer(out, dtype, offset=header_size, count=(size - header_size) // 4)

    def close(self) -> None:
        self.sock.close()


def _resp(args: list[str | bytes]) -> bytes:
    return b"*%d\r\n" % len(args) + _resp_tail(args)


def _resp_tail(args: list[str | bytes]) -> bytes:
    out = []
    for a in args:
        b = a.encode() if isinstance(a, str) else a
        out.append(b"$%d\r\n%b\r\n" % (len(b), b))
    return b"".join(out)


def _sendmsg(sock: socket.socket, pieces: list[Any]) -> None:
    while pieces:
        sent = sock.sendmsg(pieces)
        while sent:
            size = memoryview(pieces[0]).nbytes
            if sent >= size:
                sent -= size
                pieces = pieces[1:]
            else:
                pieces[0] = memoryview(pieces[0]).cast("B")[sent:]
                sent = 0


# --------------------------------------------------------------------------- tensor cases


def _medians_per_op(ops: dict[str, Callable[[], Any]], n: int, seed: int) -> dict[str, float]:
    """Each column's median time per operation over ``n`` operations, the
    columns taking turns operation by operation, in a new random order each
    turn (a shared machine's load shifts, and an operation after another
    client's runs on colder caches: this way each column sees the same)."""
    times: dict[str, list[float]] = {k: [] for k in ops}
    order = list(ops.items())
    rng = random.Random(seed)
    clock = time.perf_counter
    for _ in range(n):
        rng.shuffle(order)
        for who, op in order:
            t0 = clock()
            op()
            times[who].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def case_tensor(rep: Report, args: Any, run_simctl: bool, size_name: str) -> None:
    if not run_simctl:
        rep.skip(size_name, "simctl not importable")
        return
    import numpy as np
    import redis

    from simctl.store import Client, format as fmt

    size = SIZES[size_name]
    n, rounds = OPS[size_name], args.rounds or ROUNDS[size_name]
    root = tempfile.mkdtemp(prefix="simctl-bench-store-")
    server = Server(root)
    try:
        raw = redis.Redis(port=server.port, password=PASSWORD)
        ours = Client(address=server.address, password=PASSWORD)
        floor = SocketFloor(server.port, PASSWORD, bool(server.module))
        array = np.random.default_rng(0).random(size // 4, dtype=np.float32)
        header = fmt.tensor_header(array.dtype, array.shape)
        flat = array.reshape(-1).view(np.uint8)
        data = array.tobytes()
        copy_to = np.empty_like(array)
        ops = {"put": {"simctl": lambda: ours.put_tensor("t", array),
                       "socket": lambda: floor.put("f", header, flat),
                       "socket SET": lambda: floor.set("s", header, flat),
                       "redis-py": lambda: raw.set("k", data)},
               "get": {"simctl": lambda: ours.get_tensor("t"),
                       "socket": lambda: floor.get("f", np.float32, len(header)),
                       "redis-py": lambda: raw.get("k")}}
        if size_name != "1k":
            ops["put"]["memcpy"] = ops["get"]["memcpy"] = lambda: np.copyto(copy_to, array)
        for case in ops.values():
            for op in case.values():
                op()  # warm up, and something to get
        assert np.array_equal(ours.get_tensor("t"), array) and np.array_equal(floor.get("f", np.float32,
                                                                                         len(header)), array)
        for name, case in ops.items():
            reps = []  # per repetition: median time per op of each
            for r in range(REPS):
                loops = [_medians_per_op(case, n, seed=r * rounds + i) for i in range(rounds)]
                reps.append({k: statistics.median(loop[k] for loop in loops) for k in case})
            report(rep, f"{name} {size_name} float32", size, reps, rounds, n)
        ours.close()
        floor.close()
        raw.close()
    except Exception as exc:  # noqa: BLE001
        rep.exception(size_name, exc)
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)


def report(rep: Report, label: str, size: int, reps: list[dict[str, float]], rounds: int, n: int) -> None:
    """The ratio of simctl to its floor (the target) and to the other columns, min-max over the repetitions."""
    def spread(who: str, floor: str) -> tuple[float, float, float]:
        ratios = sorted(r[who] / r[floor] for r in reps)
        return ratios[0], statistics.median(ratios), ratios[-1]

    lo, mid, hi = spread("simctl", "socket")
    target = TARGETS[size]
    ok = mid <= target
    mib = f", {size / statistics.median(r['simctl'] for r in reps) / 2**30:.2f} GiB/s" if size > 1024 else ""
    us = statistics.median(r["simctl"] for r in reps) * 1e6
    r = spread("simctl", "redis-py")
    extra = [f"simctl/redis-py {fmt_ratio(r[0])}-{fmt_ratio(r[2])}"]
    if "socket SET" in reps[0]:  # what the kind guard costs: the socket floor over a plain SET
        g = spread("socket", "socket SET")
        u = spread("simctl", "socket SET")
        extra.append(f"socket/unguarded SET {fmt_ratio(g[0])}-{fmt_ratio(g[2])}, simctl/unguarded SET "
                     f"{fmt_ratio(u[0])}-{fmt_ratio(u[2])}")
    if "memcpy" in reps[0]:
        m = spread("simctl", "memcpy")
        s = spread("socket", "memcpy")
        extra.append(f"simctl/memcpy {fmt_ratio(m[0])}-{fmt_ratio(m[2])}, socket/memcpy {fmt_ratio(s[0])}-"
                     f"{fmt_ratio(s[2])}")
    line = (f"{label}: simctl/socket floor {fmt_ratio(lo)}-{fmt_ratio(hi)} (median {fmt_ratio(mid)}, target <= "
            f"{target:g}x) {'OK' if ok else 'MISS'} | simctl {us:.0f} us{mib} | {'; '.join(extra)} | "
            f"{len(reps)} repetitions x {rounds} rounds x {n} ops")
    rep._add(label, "OK" if ok else "MISS", line, ratio_min=lo, ratio_median=mid, ratio_max=hi, target=target,
             repetitions=reps)


# --------------------------------------------------------------------------- cluster case


def _worker(address: str, password: str, index: int, size: int, n: int, barrier: Any, out: Any) -> None:
    import numpy as np

    from simctl.store import Client

    client = Client(address=address, password=password)
    array = np.ones(size // 4, np.float32)
    keys = [f"w{index}-{i}" for i in range(16)]  # spread over the slots
    barrier.wait()
    for i in range(n):
        client.put_tensor(keys[i % len(keys)], array)
    for i in range(n):
        client.get_tensor(keys[i % len(keys)])
    out.put(index)
    client.close()


def aggregate(address: str, size: int, n: int) -> float:
    """Bytes per second that N_PROCS processes move together (n puts then n gets each)."""
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(N_PROCS + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(address, PASSWORD, i, size, n, barrier, out)) for i in range(N_PROCS)]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    t0 = time.perf_counter()
    for _ in procs:
        out.get(timeout=600)
    seconds = time.perf_counter() - t0
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a client process exited {p.exitcode}")
    return 2 * N_PROCS * n * size / seconds


def case_cluster(rep: Report, args: Any, run_simctl: bool) -> None:
    if not run_simctl:
        rep.skip("cluster", "simctl not importable")
        return
    root = tempfile.mkdtemp(prefix="simctl-bench-store-")
    servers: list[Server] = []
    try:
        single = Server(root)
        servers.append(single)
        nodes = start_cluster(root)
        servers += nodes
        cluster = ",".join(x.address for x in nodes)
        for size, n, unit in ((1 << 20, 40, "MiB/s"), (1024, 2000, "ops/s")):
            pairs = []
            for r in range(args.rounds or 3):
                order = [(single.address, 0), (cluster, 1)][:: 1 if r % 2 == 0 else -1]
                got = {which: aggregate(addr, size, n) for addr, which in order}
                pairs.append((got[1], got[0]))
            per = 2**20 if unit == "MiB/s" else size
            def scale(v: float, per: float = per) -> float:
                return v / per
            c = statistics.median(p[0] for p in pairs)
            s = statistics.median(p[1] for p in pairs)
            ratios = sorted(p[0] / p[1] for p in pairs)
            rep.info(f"{N_PROCS} processes, {'1 MiB' if size > 1024 else '1 KiB'} put+get, 3 shards vs 1",
                     f"cluster {scale(c):.0f} {unit} | one server {scale(s):.0f} {unit} | ratio {fmt_ratio(c / s)} "
                     f"(per round {fmt_ratio(ratios[0])}-{fmt_ratio(ratios[-1])}, {len(pairs)} rounds)",
                     rounds=pairs)
    except Exception as exc:  # noqa: BLE001
        rep.exception("cluster", exc)
    finally:
        for x in servers:
            x.kill()
        shutil.rmtree(root, ignore_errors=True)


CASE_FUNCS = {"1k": lambda rep, a, s: case_tensor(rep, a, s, "1k"),
              "1m": lambda rep, a, s: case_tensor(rep, a, s, "1m"),
              "64m": lambda rep, a, s: case_tensor(rep, a, s, "64m"),
              "cluster": case_cluster}


def main() -> int:
    parser = bench_arg_parser(__doc__.splitlines()[0], CASES)
    parser.add_argument("--rounds", type=int, default=0, metavar="N",
                        help="rounds per case (default: 7 for 1k and 1m, 5 for 64m, 3 for cluster)")
    args = parser.parse_args()
    if not os.path.exists(REDIS):
        raise SystemExit(f"no redis-server at {REDIS}: apt-get install redis-server or set SIMCTL_BENCH_REDIS")
    print(f"server {REDIS} | raw baseline: redis-py {__import__('redis').__version__} defaults", flush=True)
    return run_cases("bench_store", args, CASES, CASE_FUNCS)


if __name__ == "__main__":
    sys.exit(main())
