"""Feature-store durability benchmark (issue 15): what persistence costs, how
long a shard holding 1 GiB takes to come back, what a paused cluster shard costs.

    python benchmarks/bench_store_durability.py [--only put,restart,pause] [--mib N] [--rounds R]
                                                [--json PATH]

Cases:

  put      ``Client.put_tensor`` of 1 MiB tensors (``--mib`` of them per round,
           new keys, the store emptied between rounds) into a one-shard store
           started by simctl with ``persistence="everysec"`` (the default),
           ``"always"`` and ``"snapshot"``, against ``"off"`` in the same run;
           stores alternate round by round so a noisy neighbour hits all
           alike. Reports MiB/s (median of the rounds), the ratio to
           ``off`` and the server's CPU time per MiB put (all its threads,
           from /proc: a figure a busy machine changes little). The goal for
           ``everysec``: at most 10 % slower. ``everysec-tmpfs`` keeps its
           append-only file in /dev/shm (memory): what the same store costs
           without any disk, to tell the disk's share from the server's.
  restart  a shard holding 1 GiB (1,024 values of 1 MiB, ``persistence="everysec"``)
           whose server is killed with SIGKILL: seconds from the kill until the
           supervisor's new server answers with every key -- against the bare
           baseline in the same run: ``redis-server`` started directly on a copy
           of the same append-only files, polled until it answers with every key.
           Also the graceful stop of that store (snapshot and everysec) and the
           start that loads it back.
  pause    a 3-shard cluster (simctl's settings: ``cluster-node-timeout 2000``,
           ``cluster-require-full-coverage no``) with one shard paused (SIGSTOP)
           for P seconds while a writer per shard writes: seconds after the
           pause began until the paused shard's writer succeeds again, and the
           errors of the healthy shards' writers (none expected).

Nothing here is a pass/fail target; the figures are recorded in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import import_simctl  # noqa: E402

MiB = 1 << 20


def free_base(n: int, cluster: bool) -> int:
    """Free ports for ``n`` servers (and their cluster bus ports): simctl's own picker."""
    from simctl.store.ports import free_ports

    return free_ports(n, cluster)


def store(root: str, name: str, shards: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    import simctl

    exp = simctl.Experiment(f"bench-{name}", exp_path=os.path.join(root, name), launcher="local")
    db = exp.create_database(port=free_base(shards, shards >= 3), db_nodes=shards, interface="lo", ml_devices=[],
                             **kwargs)
    exp.start(db)
    return exp, db


def info_of(db: Any, i: int = 0) -> dict[str, Any]:
    return json.loads((Path(db.path) / f"shard-{i}.addr").read_text())


def raw(db: Any, i: int = 0, **kwargs: Any) -> Any:
    import redis

    host, _, port = db.get_address()[i].rpartition(":")
    return redis.Redis(host=host, port=int(port), username=db.username, password=db.password, **kwargs)


def fill(r: Any, n: int) -> None:
    block = os.urandom(MiB)
    pipe = r.pipeline(transaction=False)
    for k in range(n):
        pipe.set(f"big{k}", block[k % 4096:] + block[:k % 4096])
        if k % 32 == 31:
            pipe.execute()
    pipe.execute()


def wait_keys(r: Any, n: int) -> None:
    import redis

    while True:
        try:
            if r.dbsize() == n:
                return
        except (redis.ConnectionError, redis.ResponseError, redis.TimeoutError):
            pass
        time.sleep(0.005)


# -- put --------------------------------------------------------------------------------------------


def server_cpu(pid: int) -> float:
    """CPU seconds the process ``pid`` has used (all its threads, user and system)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_put(root: str, mib: int, rounds: int) -> dict[str, Any]:
    import numpy as np

    modes = ["off", "everysec", "always", "snapshot", "everysec-tmpfs"]
    stores = {m: store(root, f"put-{m}", persistence=m.partition("-")[0],
                       **({"path": tempfile.mkdtemp(dir="/dev/shm")} if m.endswith("tmpfs") else {}))
              for m in modes}
    tensor = np.frombuffer(os.urandom(MiB), dtype=np.uint8)
    rates: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for r in range(rounds):
            for m in modes if r % 2 == 0 else reversed(modes):
                _, db = stores[m]
                pid = info_of(db)["pid"]
                with db.client() as c:
                    c.flush_db()
                    c0, t0 = server_cpu(pid), time.perf_counter()
                    for k in range(mib):
                        c.put_tensor(f"t{r}.{k}", tensor)
                    rates[m].append(mib / (time.perf_counter() - t0))
                    cpu[m].append((server_cpu(pid) - c0) / mib * 1000)
    finally:
        for exp, db in stores.values():
            exp.stop(db)
            if db.path.startswith("/dev/shm/"):
                shutil.rmtree(db.path, ignore_errors=True)
    out = {m: {"MiB/s": statistics.median(v), "best": max(v), "server ms/MiB": statistics.median(cpu[m])}
           for m, v in rates.items()}
    base = out["off"]["MiB/s"]
    print(f"\nput_tensor of 1 MiB tensors, {mib} per round, {rounds} rounds (median MiB/s; ratio to off; the "
          "server's CPU time per MiB put, all its threads):")
    for m in modes:
        print(f"  {m:15s} {out[m]['MiB/s']:8.0f} MiB/s   best {out[m]['best']:6.0f}   "
              f"ratio {out[m]['MiB/s'] / base:.3f}   server {out[m]['server ms/MiB']:.2f} ms/MiB")
    return out


# -- restart ----------------------------------------------------------------------------------------


def bare_load(aof_dir: str, rdb: str | None, workdir: str, keys: int) -> float:
    """A redis-server started directly on copies of the data files: seconds until it answers with every key."""
    import redis

    data = os.path.join(workdir, "bare")
    os.makedirs(data, exist_ok=True)
    conf = [f"port {free_base(1, False)}", "bind 127.0.0.1", "requirepass pw", f"dir {data}", 'save ""']
    if rdb:
        shutil.copy(rdb, os.path.join(data, "dump.rdb"))
        conf += ["appendonly no", "dbfilename dump.rdb"]
    else:
        shutil.copytree(aof_dir, os.path.join(data, "appendonlydir"))
        conf += ["appendonly yes", "appenddirname appendonlydir"]
    path = os.path.join(data, "bare.conf")
    Path(path).write_text("\n".join(conf) + "\n")
    port = int(conf[0].split()[1])
    t0 = time.perf_counter()
    proc = subprocess.Popen(["redis-server", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_keys(redis.Redis(port=port, password="pw"), keys)
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(data, ignore_errors=True)


def bench_restart(root: str, mib: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    exp, db = store(root, "restart", persistence="everysec")
    try:
        fill(raw(db), mib)
        r = raw(db)
        wait_keys(r, mib)
        time.sleep(1.5)  # everysec: on disk within a second
        pid = info_of(db)["pid"]
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            try:
                if info_of(db)["pid"] != pid:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.005)
        wait_keys(r, mib)
        out["kill -9 to back (everysec)"] = time.perf_counter() - t0
        aof = os.path.join(db.path, "shard-0.aof")
        snap = os.path.join(root, "aof-copy")
        shutil.copytree(aof, snap)
    finally:
        t0 = time.perf_counter()
        exp.stop(db)
        out["graceful stop (everysec)"] = time.perf_counter() - t0
    out["bare redis-server loading the same AOF"] = bare_load(snap, None, root, mib)
    t0 = time.perf_counter()
    exp2, db2 = store(root, "restart", persistence="everysec")
    wait_keys(raw(db2), mib)
    out["exp.start loading it (everysec)"] = time.perf_counter() - t0
    exp2.stop(db2)

    exp, db = store(root, "restart-snap", persistence="snapshot")
    fill(raw(db), mib)
    t0 = time.perf_counter()
    exp.stop(db)
    out["graceful stop (snapshot: the final save)"] = time.perf_counter() - t0
    out["bare redis-server loading the same RDB"] = bare_load("", os.path.join(db.path, "shard-0.rdb"), root, mib)
    t0 = time.perf_counter()
    exp2, db2 = store(root, "restart-snap", persistence="snapshot")
    wait_keys(raw(db2), mib)
    out["exp.start loading it (snapshot)"] = time.perf_counter() - t0
    exp2.stop(db2)
    print(f"\na shard holding {mib} MiB (seconds):")
    for k, v in out.items():
        print(f"  {k:45s} {v:6.2f}")
    ratio = out["kill -9 to back (everysec)"] / out["bare redis-server loading the same AOF"]
    print(f"  ratio kill -9 to back / bare AOF load: {ratio:.2f}")
    return out


# -- pause ------------------------------------------------------------------------------------------


def bench_pause(root: str, pauses: list[float]) -> dict[str, Any]:
    import psutil
    import redis

    from simctl.store.protocol import own_slots, tag_for

    out: dict[str, Any] = {}
    exp, db = store(root, "pause", shards=3)
    try:
        tags = ["{" + tag_for(own_slots(raw(db, i, decode_responses=True).execute_command("CLUSTER", "NODES"))) + "}"
                for i in range(3)]
        for pause in pauses:
            stop = threading.Event()
            log: dict[int, list[tuple[float, bool]]] = {i: [] for i in range(3)}

            def write(i: int, stop: threading.Event = stop, log: dict[int, list[tuple[float, bool]]] = log) -> None:
                r = raw(db, i, socket_timeout=30)
                n = 0
                while not stop.is_set():
                    try:
                        r.set(f"p{tags[i]}{n}", n)
                        log[i].append((time.monotonic(), True))
                    except redis.RedisError:
                        log[i].append((time.monotonic(), False))
                        time.sleep(0.01)
                    n += 1
            threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
            time.sleep(1.0)
            server = psutil.Process(info_of(db, 1)["pid"])
            began = time.monotonic()
            server.suspend()
            time.sleep(pause)
            server.resume()
            resumed = time.monotonic()
            while not any(ok and t > resumed for t, ok in log[1]):
                time.sleep(0.01)
            time.sleep(1.0)
            stop.set()
            for t in threads:
                t.join()
            first_ok = min(t for t, ok in log[1] if ok and t > resumed)
            healthy_errors = sum(not ok for i in (0, 2) for t, ok in log[i] if t >= began)
            out[f"{pause:g} s"] = {"back after": first_ok - began, "healthy errors": healthy_errors}
    finally:
        exp.stop(db)
    print("\none shard of a 3-shard cluster paused (SIGSTOP):")
    for k, v in out.items():
        print(f"  paused {k:6s}: its writes succeed again {v['back after']:.2f} s after the pause began "
              f"(cost / pause {v['back after'] / float(k.split()[0]):.2f}); healthy shards' errors: "
              f"{v['healthy errors']}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="put,restart,pause")
    p.add_argument("--mib", type=int, default=1024, help="MiB per round (put) and held by the shard (restart)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--pauses", default="2,5,20")
    p.add_argument("--json")
    a = p.parse_args()
    import_simctl()
    only = set(a.only.split(","))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="simctl-bench-durable-") as root:
        if "put" in only:
            results["put"] = bench_put(root, min(a.mib, 512), a.rounds)
        if "restart" in only:
            results["restart"] = bench_restart(root, a.mib)
        if "pause" in only:
            results["pause"] = bench_pause(root, [float(x) for x in a.pauses.split(",")])
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
