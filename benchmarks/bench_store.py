"""Feature-store client benchmarks: simctl's Client against raw redis-py on the same server.

    python benchmarks/bench_store.py [--only CASES] [--rounds N] [--json PATH]

No peer: the baseline is raw redis-py (its defaults) doing SET / GET of the
same bytes (the array's ``tobytes()``, made before timing) on the same
redis-server, in the same run. Servers are Debian's /usr/bin/redis-server (or
$SIMCTL_BENCH_REDIS), started here on free loopback ports with a password,
no persistence and no io-threads, and killed at the end.

Cases and targets (exit status 1 if one is missed, 2 if simctl is not importable):
  1k        put_tensor / get_tensor of a 1 KiB float32 tensor: latency <= 1.2x
            raw SET / GET
  1m        the same at 1 MiB: throughput >= 0.9x raw (time <= 1/0.9 of raw)
  64m       the same at 64 MiB: throughput >= 0.9x raw
  cluster   aggregate throughput of 8 client processes (each puts and gets its
            own 1 MiB tensors, then 1 KiB ones) on a 3-shard Redis Cluster
            against the same on one server (informational: no target)

Each case runs --rounds rounds; in a round the raw and simctl loops alternate
(which goes first alternates too) and each gives its median time per
operation. Reported: the median over rounds of each, the ratio of those
medians, and the spread of the per-round ratios (the machine is shared). The
--skip-peer / --peer-only / --peer-repeat flags are accepted and unused.
"""

from __future__ import annotations

import multiprocessing
import os
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
OPS = {"1k": 2000, "1m": 40, "64m": 3}
ROUNDS = {"1k": 7, "1m": 7, "64m": 5}
TARGET_LATENCY_1K = 1.2
TARGET_THROUGHPUT = 0.9
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


# --------------------------------------------------------------------------- tensor cases


def _median_per_op(op: Callable[[], Any], n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        op()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def case_tensor(rep: Report, args: Any, run_simctl: bool, size_name: str) -> None:
    if not run_simctl:
        rep.skip(size_name, "simctl not importable")
        return
    import numpy as np
    import redis

    from simctl.store import Client

    size = SIZES[size_name]
    n, rounds = OPS[size_name], args.rounds or ROUNDS[size_name]
    root = tempfile.mkdtemp(prefix="simctl-bench-store-")
    server = Server(root)
    try:
        raw = redis.Redis(port=server.port, password=PASSWORD)
        ours = Client(address=server.address, password=PASSWORD)
        array = np.random.default_rng(0).random(size // 4, dtype=np.float32)
        data = array.tobytes()
        ops = {"put": (lambda: ours.put_tensor("t", array), lambda: raw.set("k", data)),
               "get": (lambda: ours.get_tensor("t"), lambda: raw.get("k"))}
        ops["put"][0](), ops["put"][1]()  # warm up, and something to get
        per_round: dict[str, list[tuple[float, float]]] = {"put": [], "get": []}
        for r in range(rounds):
            for name, (mine, base) in ops.items():
                if r % 2:
                    b, m = _median_per_op(base, n), _median_per_op(mine, n)
                else:
                    m, b = _median_per_op(mine, n), _median_per_op(base, n)
                per_round[name].append((m, b))
        assert np.array_equal(ours.get_tensor("t"), array)
        for name, pairs in per_round.items():
            m = statistics.median(p[0] for p in pairs)
            b = statistics.median(p[1] for p in pairs)
            ratios = sorted(p[1] / p[0] for p in pairs)  # raw time / our time: throughput ratio
            label = f"{name} {size_name} float32"
            spread = (f"{rounds} rounds x {n} ops; per-round raw/simctl {fmt_ratio(ratios[0])}-"
                      f"{fmt_ratio(ratios[-1])}; simctl {size / m / 2**20:.0f} MiB/s, raw {size / b / 2**20:.0f} MiB/s")
            if size_name == "1k":
                rep.slowdown(f"{label} latency", m, b, TARGET_LATENCY_1K, "raw", rounds=pairs)
            else:
                rep.speedup(f"{label} throughput", m, b, TARGET_THROUGHPUT, "raw", rounds=pairs)
            rep.info(f"{label} spread", spread)
        ours.close()
        raw.close()
    except Exception as exc:  # noqa: BLE001
        rep.exception(size_name, exc)
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)


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
