"""Faults across the nodes of the multi-node test cluster (issue 18): a node
cut off from the others (its link taken down) and brought back, a node's
slurmd killed, a shard's node lost (every process in it killed). Each test
asserts what the members, the driver, the store and ``simctl status`` do;
the README's "Faults across nodes" says the same in words.

The drivers and the test meet through files in the shared directory (which
every node sees even while a node's link is down: it is this machine's file
system, not a network one): the driver writes ``<name>`` when it is ready
for a fault, the test does it and writes its answer."""

from __future__ import annotations

import json
import subprocess

#: the drivers' common part: meeting the test, the CLI's status, reading every key
COMMON = """
import json, os, subprocess, sys, time
import numpy as np
import redis
from simctl import Experiment

def say(name, value=None):
    with open(os.path.join(where, name + ".tmp"), "w") as fh:
        json.dump(value, fh)
    os.replace(os.path.join(where, name + ".tmp"), os.path.join(where, name))

def wait(name):
    while not os.path.exists(os.path.join(where, name)):
        time.sleep(0.1)

def cli_status(root):
    simctl = os.path.join(os.path.dirname(sys.executable), "simctl")
    proc = subprocess.run([simctl, "status", root], capture_output=True, text=True)
    return proc.stdout + proc.stderr

def read_keys(db, n=30):
    ok, errors = [], {}
    with db.client(timeout=2, connect_timeout=2) as c:
        for i in range(n):
            try:
                if int(c.get_tensor(f"k{i}")[0]) == i:
                    ok.append(i)
            except Exception as exc:
                errors[i] = f"{type(exc).__name__}: {exc}"[:300]
    return ok, errors

def cluster_view(db, shard):
    host, _, port = db.get_address()[shard].rpartition(":")
    r = redis.Redis(host=host, port=int(port), username=db.username, password=db.password, socket_timeout=5)
    try:
        info = r.cluster("info")
        nodes = r.cluster("nodes")
        flags = sorted(" ".join(sorted(v["flags"].split(","))) for v in nodes.values())
        return {"state": info.get("cluster_state"), "flags": flags}
    finally:
        r.close()

where = os.getcwd()
"""

#: a member: says it started, waits for the driver's "go", then puts where it ran into the store
MEMBER = """
    import json, os, socket, sys, time
    barrier, go = sys.argv[1], sys.argv[2]
    open(os.path.join(barrier, os.path.basename(os.getcwd())), "w").close()
    while not os.path.exists(go):
        time.sleep(0.1)
    out = {"host": socket.gethostname()}
    if "SSDB" in os.environ:
        import numpy as np
        from simctl import Client
        Client().put_tensor("where", np.frombuffer(out["host"].encode(), dtype=np.uint8))
    print(json.dumps(out))
"""

CUT = COMMON + """
root, port, iface, member, nodes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5].split(",")
exp = Experiment("cut", exp_path=root, launcher="slurm")
db = exp.create_database(port=port, db_nodes=3, interface=iface, hosts=nodes)
exp.generate(db)
exp.start(db)
with db.client() as c:
    for i in range(30):
        c.put_tensor(f"k{i}", np.full(4, i))
barrier, go = os.path.join(where, "barrier"), os.path.join(where, "go")
os.makedirs(barrier)
rs = exp.create_run_settings(exe=sys.executable, exe_args=[member, barrier, go])
ens = exp.create_ensemble("m", replicas=3, run_settings=rs)
ens.enable_key_prefixing()
for m, node in zip(ens, nodes):
    m.run_settings.set_hostlist([node])
exp.generate(ens)
exp.start(ens, block=False)
while len(os.listdir(barrier)) < 3:
    time.sleep(0.1)
out = {"before": cluster_view(db, 0)}
say("cut-me")
wait("cut")
time.sleep(4)  # past the shards' cluster-node-timeout (2 s): the others have marked it failed
out["cut_view"] = cluster_view(db, 0)
out["cut_ok"], out["cut_errors"] = read_keys(db)
out["cut_members"] = [str(s) for s in exp.get_status(ens)]
out["cut_db"] = [str(s) for s in exp.get_status(db)]
out["cut_cli"] = cli_status(root)
say("restore-me")
wait("restored")
tries = 0
while True:  # the store heals by itself: every key readable again, no shard flagged failed
    tries += 1
    ok, errors = read_keys(db)
    view = cluster_view(db, 0)
    if len(ok) == 30 and not any("fail" in f for f in view["flags"]):
        break
    time.sleep(0.5)
out["healed_view"], out["healed_tries"] = view, tries
open(go, "w").close()
exp.poll(verbose=False)
out["members"] = [str(s) for s in exp.get_status(ens)]
out["seen"] = [json.loads(open(os.path.join(m.path, m.name + ".out")).read() or "{}") for m in ens]
out["err"] = [open(os.path.join(m.path, m.name + ".err")).read()[-2000:] for m in ens]
with db.client() as c:
    out["where"] = {m.name: bytes(c.get_tensor(f"{m.name}.where").tolist()).decode() for m in ens}
out["after_db"] = [str(s) for s in exp.get_status(db)]
exp.stop(db)
out["stopped"] = [str(s) for s in exp.get_status(db)]
print("RESULT " + json.dumps(out))
"""


def test_a_node_cut_off_and_brought_back(cluster):
    """sm2's link down for a few seconds, then up: the members keep running
    (the one on sm2 too), the other shards keep serving their keys and mark
    sm2's shard failed, its keys fail with a timeout (not a hang); once the
    link is back the store heals by itself, every key is read again, and the
    members finish and reach the store from every node."""
    from _store_helpers import free_ports

    where = cluster.workdir("cut")
    member = cluster.write(where, "member.py", MEMBER)
    port = free_ports(3, cluster=True)
    driver = cluster.spawn(where, CUT, str(where / "exp"), str(port), cluster.iface, member,
                           ",".join(cluster.nodes), salloc=["-N3", "--ntasks-per-node=2", "-t", "00:10:00"])
    victim = cluster.nodes[1]
    try:
        cluster.await_file(where / "cut-me", driver)
        cluster.node_run("ip", "-n", victim, "link", "set", cluster.iface, "down")
        (where / "cut").write_text("")
        cluster.await_file(where / "restore-me", driver)
    finally:
        cluster.node_run("ip", "-n", victim, "link", "set", cluster.iface, "up")
    (where / "restored").write_text("")
    got = cluster.result(driver)
    print(json.dumps(got, indent=1))
    assert got["before"]["state"] == "ok"
    # during the cut: sm2's shard flagged failed by the others, which still serve their own keys
    assert sum("fail" in f for f in got["cut_view"]["flags"]) == 1, got["cut_view"]
    assert got["cut_view"]["state"] == "ok"  # cluster-require-full-coverage no: the rest serve
    assert 0 < len(got["cut_ok"]) < 30 and len(got["cut_ok"]) + len(got["cut_errors"]) == 30, got
    assert all("Timeout" in e or "timed out" in e or "Connection" in e for e in got["cut_errors"].values()), got
    assert got["cut_members"] == ["Running"] * 3 and got["cut_db"] == ["Running"] * 3, got
    assert got["cut_cli"].count("Running") >= 6, got["cut_cli"]
    # after: healed by itself, members done on every node, their tensors in the store
    assert got["healed_view"]["state"] == "ok"
    assert got["members"] == ["Completed"] * 3, got["err"]
    assert sorted(s["host"] for s in got["seen"]) == sorted(cluster.nodes)
    assert sorted(got["where"].values()) == sorted(cluster.nodes)
    assert got["after_db"] == ["Running"] * 3
    assert got["stopped"] == ["Cancelled"] * 3


SLURMD = COMMON + """
root, member, nodes = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
exp = Experiment("slurmd", exp_path=root, launcher="slurm")

def ensemble(name, go):
    barrier = os.path.join(where, "barrier-" + name)
    os.makedirs(barrier)
    rs = exp.create_run_settings(exe=sys.executable, exe_args=[member, barrier, go])
    ens = exp.create_ensemble(name, replicas=3, run_settings=rs)
    for m, node in zip(ens, nodes):
        m.run_settings.set_hostlist([node])
    exp.generate(ens)
    return ens, barrier

def seen(ens):
    return [json.loads(open(os.path.join(m.path, m.name + ".out")).read() or "{}") for m in ens]

def reasons(ens):
    return [exp.controller.jobs[k].status.reason for k in ens.job_keys()]

out = {}
go = os.path.join(where, "go")
running, barrier = ensemble("running", go)
exp.start(running, block=False)
while len(os.listdir(barrier)) < 3:
    time.sleep(0.1)
say("kill-me")
wait("killed")
late, _ = ensemble("late", os.path.join(where, "started"))  # members that need no "go"
open(os.path.join(where, "started"), "w").close()
exp.start(late, block=False)  # the member on the node without slurmd cannot be launched
while not exp.finished(late):
    time.sleep(0.1)
out["late"] = [str(s) for s in exp.get_status(late)]
out["late_reasons"] = reasons(late)
out["late_err"] = [open(os.path.join(m.path, m.name + ".err")).read()[-2000:] for m in late]
out["late_seen"] = seen(late)
out["running_then"] = [str(s) for s in exp.get_status(running)]
out["cli"] = cli_status(root)
say("restart-me")  # slurmd back before slurmctld's SlurmdTimeout (60 s) calls sm3 down
wait("restarted")
open(go, "w").close()  # the members started before the kill finish
exp.poll(verbose=False)
out["running"] = [str(s) for s in exp.get_status(running)]
out["running_seen"] = seen(running)
again = late[2]
exp.start(again, block=True)  # slurmd back: the failed member runs again on its node
out["again"] = str(exp.get_status(again)[0])
out["again_seen"] = json.loads(open(os.path.join(again.path, again.name + ".out")).read() or "{}")
print("RESULT " + json.dumps(out))
"""


def test_a_nodes_slurmd_killed(cluster):
    """sm3's slurmd killed inside an allocation: the members already running
    there finish (their slurmstepd does not need slurmd); a member started
    there afterwards fails after srun's message timeout, with srun's
    "Task launch ... failed on node sm3" in its stderr and its exit code, the
    others complete; slurmd started again (setup-multinode.sh --start), the
    failed member runs again on sm3, and the members that ran through the
    kill complete. (Left longer than slurmctld's SlurmdTimeout, the node is
    set DOWN and the whole allocation is cancelled: NODE_FAIL.)"""
    where = cluster.workdir("slurmd")
    member = cluster.write(where, "member.py", MEMBER)
    driver = cluster.spawn(where, SLURMD, str(where / "exp"), member, ",".join(cluster.nodes),
                           salloc=["-N3", "--ntasks-per-node=2", "-t", "00:10:00"])
    victim = cluster.nodes[2]
    pidfile = cluster.shared.parent / "run" / f"slurmd-{victim}.pid"
    try:
        cluster.await_file(where / "kill-me", driver)
        cluster.node_run("kill", "-KILL", pidfile.read_text().strip())
        (where / "killed").write_text("")
        cluster.await_file(where / "restart-me", driver)
    finally:
        said = cluster.start()
    (where / "restarted").write_text("")
    got = cluster.result(driver)
    print(json.dumps(got, indent=1))
    assert f"starting slurmd on {victim}" in said
    assert got["late"] == ["Completed", "Completed", "Failed"], got
    assert [s.get("host") for s in got["late_seen"][:2]] == cluster.nodes[:2]
    assert "Task launch for StepId=" in got["late_err"][2] and f"failed on node {victim}" in got["late_err"][2]
    assert "233" in got["late_reasons"][2], got["late_reasons"]
    assert got["running_then"] == ["Running"] * 3
    assert got["cli"].count("Failed") == 1, got["cli"]
    assert got["running"] == ["Completed"] * 3, got
    assert [s["host"] for s in got["running_seen"]] == cluster.nodes  # sm3's member too
    assert got["again"] == "Completed" and got["again_seen"]["host"] == victim


LOST = COMMON + """
root, port, iface, nodes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
exp = Experiment("lost", exp_path=root, launcher="slurm")
db = exp.create_database(port=port, db_nodes=3, interface=iface, hosts=nodes, persistence="always")
exp.generate(db)
exp.start(db)
with db.client() as c:
    for i in range(30):
        c.put_tensor(f"k{i}", np.full(4, i))
out = {}
say("kill-me")
wait("killed")
views = 0
while True:  # the other shards notice (cluster-node-timeout 2 s)
    views += 1
    view = cluster_view(db, 0)
    if any("fail" in f for f in view["flags"]) or views > 100:
        break
    time.sleep(0.2)
out["lost_view"] = view
out["lost_ok"], out["lost_errors"] = read_keys(db)
polls = 0
while not exp.get_status(db)[2].is_terminal and polls < 25:  # what srun (on the head) makes of it: nothing
    polls += 1
    time.sleep(0.2)
out["lost_db"] = [str(s) for s in exp.get_status(db)]
out["lost_reasons"] = [exp.controller.jobs[k].status.reason for k in db.job_keys()]
out["lost_cli"] = cli_status(root)
exp.stop(db)  # the lost shard's srun never ends by itself: not waited for
out["stopped"] = [str(s) for s in exp.get_status(db)]
out["stopped_reasons"] = [exp.controller.jobs[k].status.reason for k in db.job_keys()]
say("restore-me")
wait("restored")
out["saved"] = sorted(p for p in os.listdir(db.path) if p.endswith(".aof") or p.startswith("appendonly"))
# the same store, from its saves, on the nodes left (in this allocation the lost node's CPU is
# held by the lost step for good: a step there would wait "Requested nodes are busy")
db = exp.create_database(port=port + 3, db_nodes=3, interface=iface, hosts=[nodes[0], nodes[1], nodes[0]],
                         persistence="always")
exp.start(db)
out["again_ok"], out["again_errors"] = read_keys(db)
exp.stop(db)
print("RESULT " + json.dumps(out))
"""


def test_a_shards_node_lost(cluster):
    """Every process of sm3 (slurmd, slurmstepd, the shard's supervisor and
    server) killed, as when a node dies: the other shards flag it failed and
    serve their keys, its keys are refused at once; srun on the head never
    sees its step end (the shard stays Running); stopping the store signals
    the shards, sees Slurm call the node not responding and stops that srun
    instead of waiting for ever; the store started again from its saves (on
    the shared file system) on the nodes left has every key back."""
    from _store_helpers import free_ports

    where = cluster.workdir("lost")
    port = free_ports(6, cluster=True)
    driver = cluster.spawn(where, LOST, str(where / "exp"), str(port), cluster.iface, ",".join(cluster.nodes),
                           salloc=["-N3", "--ntasks-per-node=2", "--no-kill", "-t", "00:10:00"])
    victim = cluster.nodes[2]
    try:
        cluster.await_file(where / "kill-me", driver)
        pids = cluster.node_run("ip", "netns", "pids", victim).split()
        assert pids  # slurmd, slurmstepd, the supervisor, redis-server at least
        subprocess.run(["kill", "-KILL", *pids], check=False)
        (where / "killed").write_text("")
        cluster.await_file(where / "restore-me", driver)
    finally:
        said = cluster.start()
    (where / "restored").write_text("")
    got = cluster.result(driver)
    print(json.dumps(got, indent=1))
    assert f"starting slurmd on {victim}" in said
    assert sum("fail" in f for f in got["lost_view"]["flags"]) == 1, got["lost_view"]
    assert 0 < len(got["lost_ok"]) < 30, got
    assert all("Connection" in e for e in got["lost_errors"].values()), got["lost_errors"]
    assert got["lost_db"] == ["Running"] * 3, got  # not noticed: srun waits for the lost tasks
    assert got["stopped"] == ["Cancelled"] * 3, got["stopped_reasons"]
    assert all("its data is saved" in r for r in got["stopped_reasons"][:2]), got["stopped_reasons"]
    assert "may not have been" in got["stopped_reasons"][2], got["stopped_reasons"]
    assert got["again_ok"] == list(range(30)), got


BUSY = COMMON + """
root, port, iface, nodes = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",")
alloc = os.environ["SLURM_JOB_ID"]

def steps():
    return subprocess.run(["squeue", "-h", "-s", "-j", alloc, "-o", "%i %j"], capture_output=True,
                          text=True).stdout.split("\\n")

# the one CPU of the allocation on the last node held by a step: the store's shard there waits
# "Requested nodes are busy" for as long as it runs
hog = subprocess.Popen(["srun", "-w", nodes[2], "-N1", "-n1", "--exact", "--job-name=hog", "sleep", "600"])
while not any(" hog" in s for s in steps()):
    time.sleep(0.2)
exp = Experiment("busy", exp_path=root, launcher="slurm")
db = exp.create_database(port=port, db_nodes=3, interface=iface, hosts=nodes, ready_timeout=10)
exp.generate(db)
out = {}
try:
    exp.start(db)
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
out["hog_then"] = [s for s in steps() if s.strip()]  # the start returned while the hog still runs
out["status"] = [str(s) for s in exp.get_status(db)]
out["err2"] = open(os.path.join(db.path, db.name + "_2.err")).read()
exp.stop(db)
out["stopped"] = [str(s) for s in exp.get_status(db)]
out["sruns"] = subprocess.run(["pgrep", "-f", "job-name=simctl-"], capture_output=True, text=True).stdout.split()
hog.terminate()
hog.wait()
print("RESULT " + json.dumps(out))
"""


def test_a_shard_waiting_for_busy_nodes_is_cancelled_when_the_store_is_stopped(cluster):
    """The store's shard on a node whose CPUs a step holds waits "Requested
    nodes are busy": the store is not ready in time and is stopped; the waiting
    srun is cancelled at once (nothing of it started, nothing to save), not
    waited for until the other step ends; no srun of the store is left."""
    from _store_helpers import free_ports

    where = cluster.workdir("busy")
    port = free_ports(3, cluster=True)
    got = cluster.drive(where, BUSY, str(where / "exp"), str(port), cluster.iface, ",".join(cluster.nodes),
                        salloc=["-N3", "--ntasks-per-node=1", "-t", "00:10:00"])
    print(json.dumps(got, indent=1))
    assert "was not ready after 10 s" in got["error"] and "shard(s) 2 reported no address" in got["error"], got
    assert any(s.endswith(" hog") for s in got["hog_then"]), got  # returned while the step holding sm3 runs
    assert not any("simctl-" in s for s in got["hog_then"]), got  # no step of the store left
    assert "Requested nodes are busy" in got["err2"] and "Cancelled pending job step" in got["err2"], got["err2"]
    assert got["status"] == ["Cancelled"] * 3 and got["stopped"] == ["Cancelled"] * 3
    assert got["sruns"] == [], got


NODE_LOST = COMMON + """
member, nodes = sys.argv[1], sys.argv[2].split(",")
exp = Experiment("nodelost", exp_path=os.path.join(where, "exp"), launcher="slurm")
barrier, go = os.path.join(where, "barrier"), os.path.join(where, "go")
os.makedirs(barrier)
rs = exp.create_run_settings(exe=sys.executable, exe_args=[member, barrier, go])
ens = exp.create_ensemble("m", replicas=3, run_settings=rs)
for m, node in zip(ens, nodes):
    m.run_settings.set_hostlist([node])
exp.generate(ens)
exp.start(ens, block=False)
while len(os.listdir(barrier)) < 3:
    time.sleep(0.1)
say("kill-me")
wait("killed")
while not exp.get_status(ens)[2].is_terminal:  # past SlurmdTimeout (60 s): Slurm sets the node DOWN
    time.sleep(0.5)
out = {"lost": [str(s) for s in exp.get_status(ens)]}
out["reasons"] = [exp.controller.jobs[k].status.reason for k in ens.job_keys()]
out["err"] = open(os.path.join(ens[2].path, ens[2].name + ".err")).read()[-2000:]
out["cli"] = cli_status(exp.exp_path)
open(go, "w").close()
exp.poll(verbose=False)
out["end"] = [str(s) for s in exp.get_status(ens)]
print("RESULT " + json.dumps(out))
"""


def test_a_members_node_lost_past_slurmd_timeout_is_a_failure_not_a_success(cluster):
    """Every process of sm3 killed while a member runs there, and left down past
    slurmctld's SlurmdTimeout: Slurm sets sm3 DOWN and srun says "Node failure
    on sm3" but exits 0, as if the member had succeeded. The member is Failed
    (node failure, naming the node), in the driver and in simctl status; the
    members on the other nodes (--no-kill keeps the allocation) complete."""
    where = cluster.workdir("nodelost")
    member = cluster.write(where, "member.py", MEMBER)
    driver = cluster.spawn(where, NODE_LOST, member, ",".join(cluster.nodes),
                           salloc=["-N3", "--ntasks-per-node=1", "--no-kill", "-t", "00:10:00"])
    victim = cluster.nodes[2]
    try:
        cluster.await_file(where / "kill-me", driver)
        subprocess.run(["kill", "-KILL", *cluster.node_run("ip", "netns", "pids", victim).split()], check=False)
        (where / "killed").write_text("")
        got = cluster.result(driver)
    finally:
        said = cluster.start()  # slurmd back, sm3 resumed
    print(json.dumps(got, indent=1))
    assert f"starting slurmd on {victim}" in said
    assert f"Node failure on {victim}" in got["err"], got["err"]
    assert got["lost"] == ["Running", "Running", "Failed"], got
    assert "node failure" in got["reasons"][2] and victim in got["reasons"][2], got["reasons"]
    assert got["cli"].count("Failed") == 1 and "node failure" in got["cli"], got["cli"]
    assert got["end"] == ["Completed", "Completed", "Failed"], got
