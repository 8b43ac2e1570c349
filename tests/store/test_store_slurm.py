"""The feature store on a REAL test Slurm (the single-node one of scripts/setup-slurm.sh
and the multi-node one of scripts/setup-multinode.sh: slurm_helpers.TARGET, whose
interface the stores bind and whose addresses the tests expect): an
orchestrator as srun steps inside an allocation (one server and a 3-shard
cluster), as one batch job with producers in a batch ensemble reading SSDB
from their environment (and its inference workers serving a script on each
shard), and a colocated store shared by the two ranks of an srun step on one
node.

Every test here is marked ``slurm`` and FAILS (never skips) without the cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import psutil
import pytest
from slurm_helpers import (
    PY,
    TARGET,
    no_allocation_env,
    script,
    slurm_exp,
    squeue_field,
    squeue_state,
    wait_until,
)

import simctl
from simctl import Status
from simctl.plugins.launchers.slurm_nodes import hostnames
from simctl.store import colocated
from simctl.store.orchestrator import make_orchestrator

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


from _store_helpers import free_ports  # noqa: E402

#: a producer: stores its member number under its own name, with redis-py, from SSDB in its environment
PRODUCER = """
    import json, os, sys
    import redis
    from redis.cluster import ClusterNode, RedisCluster
    addresses = os.environ["SSDB"].split(",")
    login = {"username": os.environ["SSDB_USER"], "password": os.environ["SSDB_PASSWORD"]}
    if os.environ["SSDB_CLUSTER"] == "1":
        r = RedisCluster(startup_nodes=[ClusterNode(a.rpartition(":")[0], int(a.rpartition(":")[2]))
                                        for a in addresses], **login)
    else:
        host, _, port = addresses[0].rpartition(":")
        r = redis.Redis(host=host, port=int(port), **login)
    name = os.path.basename(os.getcwd())
    r.set(f"{name}.result", sys.argv[-1])
    print(json.dumps({"SSDB": os.environ["SSDB"], "SLURM_JOB_ID": os.environ.get("SLURM_JOB_ID"),
                      "SLURM_STEP_ID": os.environ.get("SLURM_STEP_ID")}))
"""

DRIVER = """
import json, os, sys
import psutil, redis
from redis.cluster import RedisCluster
from simctl import Experiment
from simctl.store.orchestrator import make_orchestrator

root, producer, port, iface = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
exp = Experiment("alloc", exp_path=root, launcher="auto")
out = {"launcher": exp.launcher_name, "alloc": os.environ["SLURM_JOB_ID"]}
for n, base in ((1, port), (3, port + 1)):
    db = make_orchestrator(exp, port=base, db_nodes=n, db_identifier=f"db{n}", interface=iface)
    exp.start(db)
    ens = exp.create_ensemble(f"prod{n}", params={"x": [10, 20]}, params_as_args=["x"],
                              run_settings=exp.create_run_settings(exe=sys.executable, exe_args=[producer]))
    exp.generate(ens)
    exp.start(ens, block=True)
    host, _, p = db.get_address()[0].rpartition(":")
    r = (RedisCluster(host=host, port=int(p), username=db.username, password=db.password) if n == 3
         else redis.Redis(host=host, port=int(p), username=db.username, password=db.password))
    infos = [json.load(open(os.path.join(db.path, f"shard-{i}.addr"))) for i in range(n)]
    out[f"db{n}"] = {"status": [str(s) for s in exp.get_status(db)], "members": [str(s) for s in exp.get_status(ens)],
                     "values": [r.get(f"prod{n}_{i}.result").decode() for i in range(2)],
                     "job_ids": [exp.controller.jobs[k].record.job_id for k in db.job_keys()],
                     "seen": [json.loads(open(os.path.join(m.path, m.name + ".out")).read()) for m in ens],
                     "address": db.get_address(), "pids": [i["pid"] for i in infos] + [i["supervisor"] for i in infos]}
    r.close()
    exp.stop(db)
    out[f"db{n}"]["stopped"] = [str(s) for s in exp.get_status(db)]
    out[f"db{n}"]["active_after"] = db.is_active()
print("RESULT " + json.dumps(out))
"""


def test_a_store_runs_as_srun_steps_inside_an_allocation_one_server_and_a_cluster(tmp_path):
    driver = script(tmp_path, DRIVER, "driver.py")
    producer = script(tmp_path, PRODUCER, "producer.py")
    port = free_ports(4, cluster=True)
    env = no_allocation_env()
    node = TARGET.nodes[0]
    tasks = min(6, TARGET.node_cpus(node))  # 3 shards and 2 producers; with fewer CPUs, producers take turns
    proc = subprocess.run(["salloc", "-N1", "-w", node, f"-n{tasks}", "-t", "00:10:00", "-J", "simctl-test-store",
                           PY, driver, str(tmp_path / "alloc"), producer, str(port), TARGET.interface],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    assert result["launcher"] == "slurm"
    for n, base in ((1, port), (3, port + 1)):
        got = result[f"db{n}"]
        assert got["status"] == ["Running"] * n and got["members"] == ["Completed"] * 2
        assert all(j.startswith("step:") for j in got["job_ids"])  # srun steps of the allocation
        assert got["address"] == [f"{TARGET.address(node)}:{base + i}" for i in range(n)]
        assert got["values"] == ["10", "20"]  # -x 10 / -x 20: each producer's result is in the store
        assert {s["SLURM_JOB_ID"] for s in got["seen"]} == {result["alloc"]}
        assert all(s["SSDB"] == ",".join(got["address"]) for s in got["seen"])
        assert got["stopped"] == ["Cancelled"] * n and got["active_after"] is False
        wait_until(lambda pids=got["pids"]: not any(psutil.pid_exists(p) for p in pids),
                   "every shard's processes to end", timeout=60)


def test_a_store_as_one_batch_job_serves_producers_in_a_batch_ensemble(tmp_path):
    exp = slurm_exp(tmp_path)
    port = free_ports(3, cluster=True)
    db = make_orchestrator(exp, port=port, db_nodes=3, batch=True, time="00:10:00", interface=TARGET.interface)
    text = exp.preview(db, show=False)
    assert "#SBATCH --ntasks=3" in text and db.password not in text
    exp.start(db)  # submitted; ready once every shard reported its address and the cluster is ok
    job_ids = [exp.controller.jobs[k].record.job_id for k in db.job_keys()]
    assert len({j.rpartition(":")[0] for j in job_ids}) == 1  # one batch job holds the three shards
    job = job_ids[0].rpartition(":")[0]
    assert exp.get_status(db) == [Status.RUNNING] * 3
    assert db.is_active()
    hosts = {TARGET.address(n) for n in hostnames(squeue_field(job, "NodeList"))}  # where Slurm put the job
    assert [a.rpartition(":")[2] for a in db.get_address()] == [str(port + i) for i in range(3)]
    assert {a.rpartition(":")[0] for a in db.get_address()} <= hosts
    env_files = list(Path(db.path).glob(".simctl-batch/*/0.env"))
    assert env_files and (env_files[0].stat().st_mode & 0o777) == 0o600
    assert db.password not in next(Path(db.path).glob(".simctl-batch/*/job.sh")).read_text()

    producer = script(tmp_path, PRODUCER, "producer.py")
    ens = exp.create_ensemble("prod", params={"x": [1, 2, 3]}, params_as_args=["x"],
                              run_settings=exp.create_run_settings(exe=PY, exe_args=[producer]),
                              batch_settings=exp.create_batch_settings(time="00:05:00"))
    exp.generate(ens)
    exp.start(ens, block=True)
    assert exp.get_status(ens) == [Status.COMPLETED] * 3
    from redis.cluster import RedisCluster

    host, _, first = db.get_address()[0].rpartition(":")
    rc = RedisCluster(host=host, port=int(first), username=db.username, password=db.password,
                      decode_responses=True)
    assert [rc.get(f"prod_{i}.result") for i in range(3)] == ["1", "2", "3"]
    rc.close()
    seen = [json.loads((Path(m.path) / f"{m.name}.out").read_text()) for m in ens]
    assert {s["SSDB"] for s in seen} == {",".join(db.get_address())}
    assert {s["SLURM_JOB_ID"] for s in seen} != {job}  # the producers ran in their own batch job

    # each shard's inference worker runs in the batch job beside its server, and serves a script on its shard
    from simctl.store import protocol

    with db.client() as c:
        c.set_script("negate", "def negate(x):\n    return torch.neg(x)\n")
        workers = []
        for i in range(12):
            c.put_tensor(f"t{i}", np.full(2, i, np.float32))
            c.run_script("negate", "negate", f"t{i}", f"t{i}.neg")
            assert c.get_tensor(f"t{i}.neg").tolist() == [-i, -i]
            queue = protocol.queue_key(c._tag(f"t{i}"), "CPU")
            workers += protocol.worker_pids(c._key_cmd("t", queue, "CLIENT", "LIST"), "CPU")
    assert len(set(workers)) == 3  # one per shard, each found where its inputs were
    pids = [json.loads((Path(db.path) / f"shard-{i}.addr").read_text())["pid"] for i in range(3)] + workers
    exp.stop(db)
    assert exp.get_status(db) == [Status.CANCELLED] * 3
    assert squeue_state(job) in ("CANCELLED", "COMPLETING", "")
    wait_until(lambda: not any(psutil.pid_exists(p) for p in pids), "the shards to end", timeout=120)
    # saved in their append-only files (the default persistence)
    assert sorted(p.name for p in Path(db.path).glob("shard-*.aof")) == ["shard-0.aof", "shard-1.aof", "shard-2.aof"]


RANK = """
    import json, os
    import redis
    address = os.environ["SSDB"]
    r = redis.Redis(unix_socket_path=address[len("unix://"):], username=os.environ["SSDB_USER"],
                    password=os.environ["SSDB_PASSWORD"])
    r.incr("ranks")
    print(json.dumps({"server": r.info("server")["process_id"], "rank": os.environ.get("SLURM_PROCID")}))
"""


def test_a_colocated_store_is_shared_by_the_ranks_of_an_srun_step_on_one_node(tmp_path):
    exp = slurm_exp(tmp_path)

    class Colocate:
        @simctl.hookimpl
        def simctl_entity_before_launch(self, entity, step, experiment):
            if isinstance(entity, simctl.Model):
                colocated.apply(step, colocated.uds())

    exp.plugins.register(Colocate(), name="colocate")
    rs = exp.create_run_settings(exe=PY, exe_args=[script(tmp_path, RANK, "rank.py")])
    rs.set_tasks(2)
    model = exp.create_model("app", rs)
    exp.generate(model)
    exp.start(model, block=True)  # a batch job of one member: srun -n 2 under the per-node wrapper
    assert exp.get_status(model) == [Status.COMPLETED], exp.controller.jobs["app"].status
    lines = [json.loads(ln) for ln in (Path(model.path) / "app.out").read_text().splitlines()]
    assert sorted(ln["rank"] for ln in lines) == ["0", "1"]
    assert len({ln["server"] for ln in lines}) == 1  # one store per node, used by both ranks
    server = lines[0]["server"]
    wait_until(lambda: not psutil.pid_exists(server), "the colocated server to end", timeout=60)


COLOCATED_MEMBER = """
    import os, sys
    import numpy as np
    from simctl import Client
    c = Client()
    c.set_data_source(os.environ["SSKEYOUT"])  # a member from params prefixes its keys: read its own back
    c.put_tensor("mine", np.full(3, float(sys.argv[-1])))
    print(c.get_tensor("mine").tolist(), os.environ["SSDB"].startswith("unix://"))
"""


@pytest.mark.parametrize("array", [False, True], ids=["steps", "array"])
def test_colocated_members_of_a_batch_ensemble(tmp_path, array):
    """Model.colocate_db_uds on every member of a batch ensemble, as steps of one job and as a job array."""
    exp = slurm_exp(tmp_path)
    rs = exp.create_run_settings(exe=PY, exe_args=[script(tmp_path, COLOCATED_MEMBER, "member.py")])
    ens = exp.create_ensemble("ens", params={"v": [1, 2]}, params_as_args=["v"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(time="00:05:00", array=array))
    for m in ens:
        m.colocate_db_uds()
    exp.generate(ens)
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED] * 2, exp.summary()
    for m, v in zip(ens, (1.0, 2.0)):
        assert (Path(m.path) / f"{m.name}.out").read_text().split() == [f"[{v},", f"{v},", f"{v}]", "True"]


# -- the documents' examples with the store and the producers as batch jobs (issue 21) ------------

BATCH = 'batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00")'


def as_batch(text: str) -> str:
    """The guides' driver with the store as a batch job and the producers (and the
    consumer) as batch jobs sized by ``nodes``, as the guides write batch ensembles."""
    out = text.replace('interface="lo")', f'interface="{TARGET.interface}", batch=True)')
    out = out.replace("replicas=2)", f"replicas=2, {BATCH})")  # the Ensemble guide's producers
    for model in ("producer_settings_1)", "producer_settings_2)", "consumer_settings)", "model_settings)"):
        out = out.replace(model, f"{model[:-1]}, {BATCH})")
    assert out.count(BATCH) == (3 if "producer_2" in out else 2) and "batch=True" in out, out
    return out


@pytest.mark.parametrize("db_nodes", [1, 3], ids=["one-server", "cluster"])
@pytest.mark.parametrize("example", ["model", "ensemble"], ids=["model-guide", "ensemble-guide"])
def test_the_documents_examples_with_a_batch_store_and_batch_producers(tmp_path, example, db_nodes):
    """The store a batch job (``batch=True``), the producers and the consumer
    batch jobs of ``create_batch_settings(nodes=1, ...)``: on the one-node test
    Slurm they share the store's node (before issue 21 they waited for it for ever)."""
    from e2e.test_seeds_store import check_run, write_example

    port = free_ports(db_nodes)
    write_example(tmp_path, example, port=port, db_nodes=db_nodes, launcher="auto")
    driver = tmp_path / "experiment.py"
    driver.write_text(as_batch(driver.read_text()))
    env = no_allocation_env(drop=("SSDB", "SSKEY"))
    env["PATH"] = os.path.dirname(PY) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run([PY, "experiment.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"the driver failed:\n{proc.stdout}\n{proc.stderr}"
    jobs = check_run(tmp_path, example, proc, db_nodes=db_nodes, launcher="slurm")
    shards = {j["job_id"].rpartition(":")[0] for j in jobs if j["entity_type"] == "Orchestrator"}
    assert len(shards) == 1  # one batch job holds every shard
    scripts = [p.read_text() for p in tmp_path.glob("**/.simctl-batch/*/job.sh")]
    assert scripts and not any("--exclusive" in s for s in scripts)
