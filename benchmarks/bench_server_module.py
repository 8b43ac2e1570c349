"""Server time (INFO commandstats, usec_per_call) of the server module's commands against the Lua scripts
they replace, on redis-server 7.0 and valkey-server 9.1, same run, 3 repetitions.

    .venv/bin/python benchmarks/bench_server_module.py [--calls N] [--reps R]

Each pair runs the same keys and arguments: PUT of a 1 KiB tensor; SUBMIT of one 1 KiB input, a model
with a 20-byte header and one output; FINISH of one 1 KiB output with a reply and the taken list's DEL.
Prints us/call of each and the ratio module/script (min-max over the repetitions)."""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import tempfile
import time
from typing import Any

import redis

from simctl.store import fastround, keyspace, protocol, server as srv, servermodule as sm

TENSOR = b"SMT1" + b"\0" * 1020
MODEL = b"SMM1" + struct.pack("<I", 20) + b"h" * 20 + b"m" * 4096
#: a tensor short enough that the server may keep it embstr-encoded: the module reads it with GET (slower)
SMALL = b"SMT1" + b"\0" * 20
HEADER = protocol.request("r", "model", "m", ["i"], ["o"])[1]
#: (name, script, numkeys+keys+args): the module's command is "SIMCTL.<name>" with the same arguments (PUT's
#: without the key count: SIMCTL.PUT key value stem)
CASES: list[tuple[str, str, str, tuple[Any, ...]]] = [
    ("PUT", "PUT", keyspace.PUT, (1, "k", TENSOR, "SMT")),
    ("SUBMIT", "SUBMIT", protocol.SUBMIT, (4, "q", "m", "i", "o", HEADER, protocol.CARRY, 1)),
    ("FINISH", "FINISH", fastround.FINISH, (3, "o", "rl", "t", TENSOR, b"R3\x00id\x00CPU")),
    ("PUT 24 B", "PUT", keyspace.PUT, (1, "s", SMALL, "SMT")),
]
BLOCK = 100


def stat(r: redis.Redis, name: str) -> float:
    return float(r.info("commandstats")[f"cmdstat_{name}"]["usec_per_call"])


def measure(r: redis.Redis, cmd: tuple[Any, ...], stat_name: str, calls: int) -> float:
    r.config_resetstat()
    for _ in range(calls // BLOCK):
        p = r.pipeline(transaction=False)
        for _ in range(BLOCK):
            p.execute_command(*cmd)
        p.execute()
        r.delete("q", "rl")  # (the pushed lists stay small)
    return stat(r, stat_name)


def run(binary: str, so: str, calls: int, reps: int) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _, _ in CASES}
    with tempfile.TemporaryDirectory(prefix="simctl-bench-mod-") as tmp:
        sock = os.path.join(tmp, "s.sock")
        proc = subprocess.Popen([binary, "--port", "0", "--unixsocket", sock, "--dir", tmp, "--save", "",
                                 "--appendonly", "no", "--loadmodule", so], stdout=subprocess.DEVNULL)
        try:
            while not os.path.exists(sock):
                time.sleep(0.01)
            r = redis.Redis(unix_socket_path=sock, protocol=2)
            r.set("i", TENSOR)
            r.set("m", MODEL)
            shas = {name: r.script_load(script) for _, name, script, _ in CASES}
            for _ in range(reps):
                for label, name, _, args in CASES:
                    lua = measure(r, ("EVALSHA", shas[name], *args), "evalsha", calls)
                    mod = measure(r, (f"SIMCTL.{name}", *(args[1:] if name == "PUT" else args)),
                                  f"simctl.{name.lower()}", calls)
                    out[label].append((lua, mod))
        finally:
            proc.kill()
            proc.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    servers = {"redis-server": srv.OTHER, "valkey-server": srv.bundled_valkey() or srv.DEFAULT}
    print(f"{'server':14s} {'command':9s} {'script us/call':>16s} {'module us/call':>16s} {'module/script':>14s}")
    for label, name in servers.items():
        binary = srv.find_server(name)
        so = sm.module_for(binary)
        if so is None:
            raise SystemExit(f"{binary} does not load the module (see the warning)")
        for cmd, pairs in run(binary, so, a.calls, a.reps).items():
            lua = [p[0] for p in pairs]
            mod = [p[1] for p in pairs]
            ratio = [m / lu for lu, m in pairs]
            print(f"{label:14s} {cmd:9s} {min(lua):7.2f}-{max(lua):<8.2f} {min(mod):7.2f}-{max(mod):<8.2f} "
                  f"{min(ratio):6.2f}-{max(ratio):.2f}x")


if __name__ == "__main__":
    main()
