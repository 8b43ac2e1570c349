"""simctl across the nodes of the multi-node test cluster (issue 18; the
cluster and how drivers run on it: conftest.py): an ensemble spread over 3
nodes as srun steps and as one batch job, a 3-shard store with one shard per
node reached from members on every node, and the guides' batch store beside
a batch ensemble (issue 21) on nodes they share."""

from __future__ import annotations

#: a member: waits until all N members started (so they all hold CPUs at once), then reports
#: where it ran; with a store, it puts a tensor and reaches every shard over TCP
MEMBER = """
    import json, os, socket, sys, time
    n, barrier = int(sys.argv[1]), sys.argv[2]
    me = os.path.basename(os.getcwd())
    open(os.path.join(barrier, me), "w").close()
    while len(os.listdir(barrier)) < n:
        time.sleep(0.1)
    out = {"host": socket.gethostname(), "node": os.environ.get("SLURMD_NODENAME"),
           "job": os.environ.get("SLURM_JOB_ID"), "step": os.environ.get("SLURM_STEP_ID")}
    if "SSDB" in os.environ:
        import numpy as np
        from simctl import Client
        Client().put_tensor("where", np.frombuffer(out["host"].encode(), dtype=np.uint8))
        reached = []
        for address in os.environ["SSDB"].split(","):
            host, _, port = address.rpartition(":")
            with socket.create_connection((host, int(port)), timeout=30):
                reached.append(address)
        out["reached"] = reached
    print(json.dumps(out))
"""

ENSEMBLE = """
import json, os, sys
from simctl import Experiment
root, member, n, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "batch"
exp = Experiment("ens", exp_path=root, launcher="slurm")
barrier = os.path.join(root, "barrier")
os.makedirs(barrier)
rs = exp.create_run_settings(exe=sys.executable, exe_args=[member, str(n), barrier])
bs = exp.create_batch_settings(nodes=3, time="00:10:00") if batch else None
ens = exp.create_ensemble("m", replicas=n, run_settings=rs, batch_settings=bs)
exp.generate(ens)
preview = exp.preview(ens, show=False)
exp.start(ens, block=True)
print("RESULT " + json.dumps({
    "status": [str(s) for s in exp.get_status(ens)], "preview": preview,
    "seen": [json.loads(open(os.path.join(m.path, m.name + ".out")).read() or "{}") for m in ens],
    "err": [open(os.path.join(m.path, m.name + ".err")).read() for m in ens]}))
"""


def test_an_ensemble_of_srun_steps_spreads_over_the_three_nodes(cluster):
    where = cluster.workdir("steps")
    member = cluster.write(where, "member.py", MEMBER)
    # two CPUs on each node: six members at once fill them, two per node
    got = cluster.drive(where, ENSEMBLE, str(where / "exp"), member, "6", "steps",
                        salloc=["-N3", "--ntasks-per-node=2", "-t", "00:10:00"])
    assert got["status"] == ["Completed"] * 6, got
    hosts = [s["host"] for s in got["seen"]]
    assert sorted(hosts) == sorted(cluster.nodes * 2)
    assert all(s["host"] == s["node"] for s in got["seen"])  # each ran on the node Slurm says
    assert len({s["job"] for s in got["seen"]}) == 1 and len({s["step"] for s in got["seen"]}) == 6
    # single-task steps ask for one node: no "can't run 1 processes on 3 nodes" in any member's stderr
    assert got["err"] == [""] * 6, got["err"]


def test_a_batch_ensemble_sized_by_nodes_spreads_over_the_three_nodes(cluster):
    where = cluster.workdir("batch")
    member = cluster.write(where, "member.py", MEMBER)
    got = cluster.drive(where, ENSEMBLE, str(where / "exp"), member, "6", "batch")
    assert "#SBATCH --nodes=3" in got["preview"] and "#SBATCH --ntasks=6" in got["preview"]
    assert "--exclusive" not in got["preview"]
    assert got["status"] == ["Completed"] * 6, got
    assert {s["host"] for s in got["seen"]} == set(cluster.nodes)  # six CPUs over three nodes: all used at once
    assert len({s["job"] for s in got["seen"]}) == 1  # one batch job
    assert got["err"] == [""] * 6, got["err"]


STORE = """
import json, os, sys
from simctl import Experiment
root, member, port, iface, mode, hosts = sys.argv[1:7]
hosts = hosts.split(",")
exp = Experiment("store", exp_path=root, launcher="slurm")
batch = mode == "batch"
db = exp.create_database(port=int(port), db_nodes=3, interface=iface, hosts=hosts, batch=batch,
                         **({"time": "00:10:00"} if batch else {}))
exp.generate(db)
db_preview = exp.preview(db, show=False)
exp.start(db)
barrier = os.path.join(root, "barrier")
os.makedirs(barrier)
rs = exp.create_run_settings(exe=sys.executable, exe_args=[member, "3", barrier])
bs = exp.create_batch_settings(nodes=3, time="00:10:00") if batch else None
ens = exp.create_ensemble("m", replicas=3, run_settings=rs, batch_settings=bs)
ens.enable_key_prefixing()
exp.generate(ens)
preview = exp.preview(ens, show=False)
exp.start(ens, block=True)
infos = [json.load(open(os.path.join(db.path, f"shard-{i}.addr"))) for i in range(3)]
with db.client() as c:
    where = {m.name: bytes(c.get_tensor(f"{m.name}.where").tolist()).decode() for m in ens}
out = {"status": [str(s) for s in exp.get_status(ens)], "address": db.get_address(), "where": where,
       "infos": infos, "preview": preview, "db_preview": db_preview,
       "seen": [json.loads(open(os.path.join(m.path, m.name + ".out")).read() or "{}") for m in ens],
       "err": [open(os.path.join(m.path, m.name + ".err")).read() for m in ens]}
exp.stop(db)
out["stopped"] = [str(s) for s in exp.get_status(db)]
print("RESULT " + json.dumps(out))
"""


def check_store(cluster, got: dict, port: int) -> None:
    assert got["status"] == ["Completed"] * 3, got
    assert got["address"] == [f"{cluster.address(n)}:{port + i}" for i, n in enumerate(cluster.nodes)]
    assert [i["hostname"] for i in got["infos"]] == cluster.nodes  # each shard on its own node
    hosts = [s["host"] for s in got["seen"]]
    assert sorted(hosts) == sorted(cluster.nodes)  # a member on every node
    assert all(sorted(s["reached"]) == sorted(got["address"]) for s in got["seen"])  # every shard from every node
    assert sorted(got["where"].values()) == sorted(cluster.nodes)  # each member's tensor, read back by the driver
    assert got["stopped"] == ["Cancelled"] * 3


def test_a_three_shard_store_one_shard_per_node_reached_from_members_on_every_node(cluster):
    from _store_helpers import free_ports

    where = cluster.workdir("store")
    member = cluster.write(where, "member.py", MEMBER)
    port = free_ports(3, cluster=True)
    got = cluster.drive(where, STORE, str(where / "exp"), member, str(port), cluster.iface, "steps",
                        ",".join(cluster.nodes), salloc=["-N3", "--ntasks-per-node=2", "-t", "00:10:00"])
    check_store(cluster, got, port)
    assert got["err"] == [""] * 3, got["err"]


def test_the_guides_batch_store_and_batch_ensemble_share_the_three_nodes(cluster):
    """Issue 21 on many nodes: the store a batch job on the three nodes (hosts=),
    the members a batch ensemble of nodes=3: neither holds the nodes whole, so
    the members run beside the shards instead of waiting for them for ever."""
    from _store_helpers import free_ports

    where = cluster.workdir("batchstore")
    member = cluster.write(where, "member.py", MEMBER)
    port = free_ports(3, cluster=True)
    got = cluster.drive(where, STORE, str(where / "exp"), member, str(port), cluster.iface, "batch",
                        ",".join(cluster.nodes))
    assert "--exclusive" not in got["db_preview"] and "--exclusive" not in got["preview"]
    check_store(cluster, got, port)


SAVE = """
import json, os, sys
import numpy as np
from simctl import Experiment
root, port, iface, hosts = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
exp = Experiment("save", exp_path=root, launcher="slurm")
out = {}
for run in ("first", "again"):
    db = exp.create_database(port=port, db_nodes=3, interface=iface, hosts=hosts, persistence="snapshot")
    if run == "first":
        exp.generate(db)
    exp.start(db)
    with db.client() as c:
        if run == "first":
            for i in range(30):
                c.put_tensor(f"k{i}", np.full(4, i))
        out[run] = sorted(i for i in range(30) if c.tensor_exists(f"k{i}"))
    out[run + "_preview"] = exp.preview(db, show=False) if run == "first" else ""
    exp.stop(db)
    out[run + "_stopped"] = [str(s) for s in exp.get_status(db)]
    out[run + "_reasons"] = [exp.controller.jobs[k].status.reason for k in db.job_keys()]
    out[run + "_saved"] = sorted(p for p in os.listdir(db.path) if p.endswith(".rdb"))
print("RESULT " + json.dumps(out))
"""


def test_stopping_shards_run_as_srun_steps_lets_their_final_save_finish(cluster):
    """srun turns a SIGTERM of its own into a kill of its tasks (exit 137, before
    or during the final save): the shards' tasks are signalled instead
    (scancel --signal=TERM of their named steps) and waited for. With snapshot
    persistence nothing is on disk before that save, so every key back after a
    restart proves each shard saved."""
    from _store_helpers import free_ports

    where = cluster.workdir("save")
    port = free_ports(3, cluster=True)
    got = cluster.drive(where, SAVE, str(where / "exp"), str(port), cluster.iface, ",".join(cluster.nodes),
                        salloc=["-N3", "--ntasks-per-node=1", "-t", "00:10:00"])
    assert got["first"] == list(range(30))
    assert got["first_saved"] == ["shard-0.rdb", "shard-1.rdb", "shard-2.rdb"], got
    assert got["first_stopped"] == ["Cancelled"] * 3, got["first_reasons"]
    assert got["again"] == list(range(30)), got  # every key back, from every shard's save
    assert got["first_preview"].count("--job-name=simctl-") == 3  # each shard's step has a name to signal it by


REHOST = """
import json, os, sys
import numpy as np
from simctl import Experiment
root, port, iface, member = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
nodes = sys.argv[5].split(",")
exp = Experiment("rehost", exp_path=root, launcher="slurm")
out = {}
for run, hosts, base in (("first", nodes, port), ("moved", nodes[1:] + nodes[:1], port + 3)):
    db = exp.create_database(port=base, db_nodes=3, interface=iface, hosts=hosts)
    if run == "first":
        exp.generate(db)
    exp.start(db)
    infos = [json.load(open(os.path.join(db.path, f"shard-{i}.addr"))) for i in range(3)]
    with db.client() as c:
        if run == "first":
            for i in range(30):
                c.put_tensor(f"k{i}", np.full(4, i))
        out[run] = sorted(i for i in range(30) if c.tensor_exists(f"k{i}"))
        out[run + "_nodes"] = [sorted(line.split()[1].split("@")[0] for line in
                                      c.get_db_node_info([a])[0].get("cluster_nodes", "").splitlines())
                               for a in db.get_address()] if False else []
    out[run + "_address"] = db.get_address()
    out[run + "_hosts"] = [i["hostname"] for i in infos]
    if run == "moved":  # members on every node read every key through the moved cluster
        barrier = os.path.join(root, "barrier")
        os.makedirs(barrier)
        rs = exp.create_run_settings(exe=sys.executable, exe_args=[member, "3", barrier])
        ens = exp.create_ensemble("m", replicas=3, run_settings=rs)
        exp.generate(ens)
        exp.start(ens, block=True)
        out["members"] = [str(s) for s in exp.get_status(ens)]
        out["seen"] = [json.loads(open(os.path.join(m.path, m.name + ".out")).read() or "{}") for m in ens]
        out["err"] = [open(os.path.join(m.path, m.name + ".err")).read()[-2000:] for m in ens]
    exp.stop(db)
print("RESULT " + json.dumps(out))
"""

#: a member that reads every key of the moved store
READER = """
    import json, os, socket, sys, time
    n, barrier = int(sys.argv[1]), sys.argv[2]
    open(os.path.join(barrier, os.path.basename(os.getcwd())), "w").close()
    while len(os.listdir(barrier)) < n:
        time.sleep(0.1)
    from simctl import Client
    c = Client()
    found = [i for i in range(30) if c.tensor_exists(f"k{i}") and int(c.get_tensor(f"k{i}")[0]) == i]
    print(json.dumps({"host": socket.gethostname(), "found": found}))
"""


def test_a_saved_store_started_again_on_other_nodes_and_ports_forms_a_correct_cluster(cluster):
    """The shards' saved cluster configuration names their old addresses: the
    store started again elsewhere must not be ready with that stale map."""
    from _store_helpers import free_ports

    where = cluster.workdir("rehost")
    member = cluster.write(where, "member.py", READER)
    port = free_ports(6, cluster=True)
    got = cluster.drive(where, REHOST, str(where / "exp"), str(port), cluster.iface, member,
                        ",".join(cluster.nodes), salloc=["-N3", "--ntasks-per-node=2", "-t", "00:10:00"])
    assert got["first"] == list(range(30))
    assert got["moved_hosts"] == cluster.nodes[1:] + cluster.nodes[:1]
    assert got["moved"] == list(range(30)), got  # every key back, read by the driver
    assert got["members"] == ["Completed"] * 3, got["err"]
    assert sorted(s["host"] for s in got["seen"]) == sorted(cluster.nodes)
    assert all(s["found"] == list(range(30)) for s in got["seen"]), got["seen"]


LOOPBACK = """
import json, sys
from simctl import Experiment, LaunchError
root, port = sys.argv[1], int(sys.argv[2])
exp = Experiment("lo", exp_path=root, launcher="slurm")
db = exp.create_database(port=port, db_nodes=1, interface="lo", ready_timeout=20)
exp.generate(db)
try:
    exp.start(db)
    error = ""
except LaunchError as exc:
    error = str(exc)
print("RESULT " + json.dumps({"error": error, "status": [str(s) for s in exp.get_status(db)]}))
"""


def test_a_store_on_loopback_of_another_node_is_an_error_naming_the_interface(cluster):
    """The default interface="lo" with the driver on the head node: the shard
    listens on its compute node's loopback, which the driver cannot reach. The
    readiness error says so, and which interfaces the driver's host has."""
    from _store_helpers import free_ports

    where = cluster.workdir("loopback")
    got = cluster.drive(where, LOOPBACK, str(where / "exp"), str(free_ports(1)),
                        salloc=["-N1", "-t", "00:10:00"])
    error = got["error"]
    assert "was not ready after 20 s" in error
    for words in ("listens on 127.0.0.1", "(a loopback address: reachable only from that node)",
                  "which this driver on sm-head cannot reach (interface=['lo'])",
                  f"{cluster.iface} {cluster.net}.1"):
        assert words in error, error
    assert got["status"] == ["Cancelled"]


PLACED = """
import json, os, sys
from simctl import Experiment
root, port, iface = sys.argv[1], int(sys.argv[2]), sys.argv[3]
exp = Experiment("placed", exp_path=root, launcher="slurm")
db = exp.create_database(port=port, db_nodes=3, interface=iface)
exp.generate(db)
preview = exp.preview(db, show=False)
exp.start(db)
infos = [json.load(open(os.path.join(db.path, f"shard-{i}.addr"))) for i in range(3)]
exp.stop(db)
print("RESULT " + json.dumps({"hosts": [i["hostname"] for i in infos], "preview": preview,
                              "stopped": [str(s) for s in exp.get_status(db)]}))
"""


def test_a_store_without_hosts_goes_one_shard_per_node_of_the_allocation(cluster):
    """No hosts=: shard i runs on node i of the 3-node allocation (srun
    --relative=i), not packed onto its first node (which has CPUs for all)."""
    from _store_helpers import free_ports

    where = cluster.workdir("placed")
    port = free_ports(3, cluster=True)
    got = cluster.drive(where, PLACED, str(where / "exp"), str(port), cluster.iface,
                        salloc=["-N3", "--ntasks-per-node=3", "-t", "00:10:00"])
    assert got["hosts"] == cluster.nodes, got
    assert all(f"--relative={i}" in got["preview"] for i in range(3)), got["preview"]
    assert got["stopped"] == ["Cancelled"] * 3


PLACED_BATCH = """
import json, os, sys
from simctl import Experiment
root, port, iface = sys.argv[1], int(sys.argv[2]), sys.argv[3]
exp = Experiment("placed", exp_path=root, launcher="slurm")
db = exp.create_database(port=port, db_nodes=3, interface=iface, batch=True, time="00:10:00")
db.batch_settings.set_nodes(3)
db.set_batch_arg("ntasks-per-node", 2)  # room for two shards on a node: Slurm alone would pack them
exp.generate(db)
preview = exp.preview(db, show=False)
exp.start(db)
infos = [json.load(open(os.path.join(db.path, f"shard-{i}.addr"))) for i in range(3)]
with db.client() as c:
    c.put_tensor("k", __import__("numpy").arange(3))
    back = c.get_tensor("k").tolist()
exp.stop(db)
print("RESULT " + json.dumps({"hosts": [i["hostname"] for i in infos], "preview": preview, "back": back,
                              "stopped": [str(s) for s in exp.get_status(db)]}))
"""


def test_a_batch_store_without_hosts_on_a_multi_node_job_goes_one_shard_per_node(cluster):
    """No hosts=, a batch job of 3 nodes with room for 2 shards on each: shard
    i runs on node i of the job (its srun step --relative=i in the batch
    script), not two on the first node as Slurm would place them."""
    from _store_helpers import free_ports

    where = cluster.workdir("placed-batch")
    port = free_ports(3, cluster=True)
    got = cluster.drive(where, PLACED_BATCH, str(where / "exp"), str(port), cluster.iface)
    assert "#SBATCH --nodes=3" in got["preview"], got["preview"]
    assert all(f"--relative={i}" in got["preview"] for i in range(3)), got["preview"]
    assert got["hosts"] == cluster.nodes, got
    assert got["back"] == [0, 1, 2]
    assert got["stopped"] == ["Cancelled"] * 3
