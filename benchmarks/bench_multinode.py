"""Scale across nodes (issue 18), on the multi-node test cluster
(``scripts/setup-multinode.sh``; drivers run on its head node).

    python benchmarks/bench_multinode.py [--members N] [--ops K] [--only steps,batch,store]

Cases, each a ratio of the same work spread over every node against one node
(the machine has 2 cores shared by every node: the ratios say what spreading
costs simctl, not what more hardware would give):

  steps  N members running ``true`` as srun steps of one allocation
         (``salloc -N<nodes>`` against ``-N1``, 4 CPUs a node), started and
         watched with ``exp.start(ens, block=True)``; the nodes used are counted.
  batch  the same N members as ONE batch job of ``nodes=<nodes>`` against ``nodes=1``.
  store  a 3-shard store, one shard on each of the first 3 nodes; one member per
         node (every node) each doing K ``put_tensor`` + ``get_tensor`` of a
         1 KiB tensor, against the same members all on the first node (steps
         with ``--overlap``: all at once in both cases). Ops/s: every member's
         operations over the time from the first member's start to the last
         one's end.

Each case runs ``--reps`` times (default 3); the ratios are given as min-max.
With ``SIMCTL_MN_NODES=12`` the cluster of 12 nodes is measured (a size
change restarts it; ``setup-multinode.sh --stop`` tears it down).

Ratio = spread / one node (for time: above 1 is slower spread; for ops/s:
above 1 is faster spread).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "scripts" / "setup-multinode.sh"
PY = str(REPO / ".venv" / "bin" / "python")

ENSEMBLE = """
import json, os, sys, time
from simctl import Experiment
root, n, nodes, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "batch"
exp = Experiment("bench", exp_path=root, launcher="slurm")
rs = exp.create_run_settings(exe="true")
bs = exp.create_batch_settings(nodes=nodes, time="00:30:00") if batch else None
ens = exp.create_ensemble("m", replicas=n, run_settings=rs, batch_settings=bs)
exp.generate(ens)
began = time.perf_counter()
exp.start(ens, block=True)
took = time.perf_counter() - began
print("RESULT " + json.dumps({"seconds": took, "completed": sum(str(s) == "Completed" for s in exp.get_status(ens))}))
"""

MEMBER = """
import json, os, socket, sys, time
import numpy as np
from simctl import Client
k = int(sys.argv[1])
c = Client()
data = np.zeros(256, dtype=np.float32)
me = os.path.basename(os.getcwd())
began = time.time()
for i in range(k):
    c.put_tensor(f"{me}.t{i}", data)
    c.get_tensor(f"{me}.t{i}")
print(json.dumps({"host": socket.gethostname(), "ops": 2 * k, "began": began, "ended": time.time()}))
"""

STORE = """
import json, os, sys
from simctl import Experiment
root, member, k, port, iface = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
nodes = sys.argv[6].split(",")
exp = Experiment("bench", exp_path=root, launcher="slurm")
db = exp.create_database(port=port, db_nodes=3, interface=iface, hosts=nodes[:3])
exp.generate(db)
exp.start(db)
out = {}
for case, where in (("spread", nodes), ("one", [nodes[0]] * len(nodes))):
    ens = exp.create_ensemble(case, replicas=len(nodes), run_settings=exp.create_run_settings(
        exe=sys.executable, exe_args=[member, k], run_args={"overlap": None}))
    for m, node in zip(ens, where):
        m.run_settings.set_hostlist([node])
    exp.generate(ens)
    exp.start(ens, block=True)
    seen = [json.loads(open(os.path.join(m.path, m.name + ".out")).read()) for m in ens]
    window = max(s["ended"] for s in seen) - min(s["began"] for s in seen)
    out[case] = {"hosts": sorted(set(s["host"] for s in seen)), "ops_per_s": sum(s["ops"] for s in seen) / window}
exp.stop(db)
print("RESULT " + json.dumps(out))
"""


def drive(code: str, *args: str, salloc: list[str] | None = None) -> dict:
    env = dict(line.split("=", 1) for line in subprocess.run(
        ["bash", str(SETUP), "--env"], capture_output=True, text=True, check=True).stdout.splitlines())
    where = Path(env["SIMCTL_MN_DIR"]) / "shared" / "bench" / uuid.uuid4().hex[:8]
    where.mkdir(parents=True)
    (where / "driver.py").write_text(textwrap.dedent(code))
    (where / "member.py").write_text(MEMBER)
    argv = [a.replace("@", str(where)) for a in args]
    cmd = [*(["salloc", "-Q", *salloc] if salloc else []), PY, str(where / "driver.py"), *argv]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSDB", "SSKEY"))}
    proc = subprocess.run(["bash", str(SETUP), "--exec", "sm-head", "--", *cmd], cwd=where, env=clean,
                          capture_output=True, text=True)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"the driver failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--members", type=int, default=1000)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--only", default="steps,batch,store")
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    subprocess.run(["bash", str(SETUP), "--start"], check=True, capture_output=True)
    env = dict(line.split("=", 1) for line in subprocess.run(
        ["bash", str(SETUP), "--env"], capture_output=True, text=True, check=True).stdout.splitlines())
    nodes = env["SIMCTL_MN_NODES"].strip('"').split()
    only = set(a.only.split(","))
    out: dict[str, dict] = {}
    for case in ("steps", "batch"):
        if case not in only:
            continue
        runs = []
        for _ in range(a.reps):
            got = {}
            for label, n_nodes in (("spread", len(nodes)), ("one", 1)):
                salloc = [f"-N{n_nodes}", "--ntasks-per-node=4", "-t", "00:30:00"] if case == "steps" else None
                got[label] = drive(ENSEMBLE, "@/exp", str(a.members), str(n_nodes), case, salloc=salloc)
            got["ratio"] = got["spread"]["seconds"] / got["one"]["seconds"]
            runs.append(got)
            print(f"{case}: {a.members} members, {len(nodes)} nodes {got['spread']['seconds']:.1f} s "
                  f"({got['spread']['completed']} completed), 1 node {got['one']['seconds']:.1f} s "
                  f"({got['one']['completed']} completed): ratio {got['ratio']:.2f}", flush=True)
        out[case] = {"runs": runs, "ratio": [min(r["ratio"] for r in runs), max(r["ratio"] for r in runs)]}
    if "store" in only:
        sys.path.insert(0, str(REPO / "tests"))
        from _store_helpers import free_ports  # the tests' port picker: start-up cost only here

        runs = []
        for _ in range(a.reps):
            got = drive(STORE, "@/exp", "@/member.py", str(a.ops), str(free_ports(3, cluster=True)),
                        env["SIMCTL_MN_IFACE"], ",".join(nodes),
                        salloc=[f"-N{len(nodes)}", "--ntasks-per-node=4", "-t", "00:30:00"])
            got["ratio"] = got["spread"]["ops_per_s"] / got["one"]["ops_per_s"]
            runs.append(got)
            print(f"store: {len(nodes)} members on {len(got['spread']['hosts'])} node(s) "
                  f"{got['spread']['ops_per_s']:.0f} ops/s, on {got['one']['hosts']} {got['one']['ops_per_s']:.0f} "
                  f"ops/s: ratio {got['ratio']:.2f}", flush=True)
        out["store"] = {"runs": runs, "ratio": [min(r["ratio"] for r in runs), max(r["ratio"] for r in runs)]}
    print(json.dumps({k: v["ratio"] for k, v in out.items()}))


if __name__ == "__main__":
    main()
