"""Batch jobs sized by ``nodes`` beside the experiment's own store (issue 21),
on a REAL test Slurm (single-node or multi-node: slurm_helpers.TARGET), each
test's jobs pinned to one node (on several nodes Slurm would otherwise just
use another):

* the guides' batch example (the store a batch job, the producers a batch
  ensemble with ``create_batch_settings(nodes=1, ...)``) completes: the
  ensemble's job shares the store's node instead of asking for it whole;
* a job that waits for CPUs the experiment's own jobs hold says so (which
  job, which nodes, what to change) in its status, ``summary()``, ``simctl
  status`` and the log, and starts once they are freed;
* a job that can never start while the experiment's store runs (a node of
  ``TARGET.small``, few CPUs, one of them the store's) is FAILED with
  that message and cancelled, not waited on in silence.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from _lifecycle_helpers import BIN
from _store_helpers import free_ports
from slurm_helpers import HANG, PY, TARGET, scancel_quietly, script, slurm_exp, squeue_field, squeue_state, wait_until

from simctl import Status

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]

PRODUCER = """
    import os
    import numpy as np
    from simctl import Client
    Client(cluster=False).put_tensor("tensor", np.array([1, 2, 3, 4]))
    print(os.environ["SLURM_JOB_ID"], os.environ.get("SLURMD_NODENAME"))
"""

#: a model that runs until the file given as its argument exists
WAIT_FOR = """
    import os, sys, time
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.2)
"""


def real_cpus() -> int:
    return TARGET.small_cpus()


#: the node of TARGET.small every job of a test is pinned to
SMALL = TARGET.small_nodes[0]


def status_reason(exp_path: str, name: str) -> str:
    """The reason ``simctl status --json`` gives for the latest run of job ``name``."""
    proc = subprocess.run([f"{BIN}/simctl", "status", exp_path, "--json"], capture_output=True, text=True)
    assert proc.returncode in (0, 1), proc.stderr
    return next(j["reason"] for j in json.loads(proc.stdout)["jobs"] if j["name"] == name)


def row(table: str, name: str) -> str:
    """The line of ``table`` (a summary, simctl status) for the job ``name``."""
    return next((ln for ln in table.splitlines() if ln.startswith(name + " ")), "")


def job_of(exp, key: str) -> str:
    return exp.controller.jobs[key].record.job_id.rpartition(":")[0]


def test_the_guides_batch_ensemble_shares_the_node_of_the_batch_store(tmp_path):
    """The deadlock of issue 21: on today's main the producers' job asked for
    the node whole (--exclusive), which the store's job holds for ever."""
    exp = slurm_exp(tmp_path)
    node = TARGET.nodes[0]
    db = exp.create_database(port=free_ports(1), db_nodes=1, batch=True, interface=TARGET.interface,
                             time="00:10:00", hosts=[node])
    exp.generate(db)
    exp.start(db)
    try:
        bs = exp.create_batch_settings(nodes=1, time="00:05:00")
        bs.set_hostlist([node])
        ens = exp.create_ensemble("producer", replicas=2,
                                  run_settings=exp.create_run_settings(exe=PY, exe_args=script(tmp_path, PRODUCER)),
                                  batch_settings=bs)
        ens.enable_key_prefixing()
        exp.generate(ens)
        preview = exp.preview(ens, show=False)
        assert "--exclusive" not in preview and "#SBATCH --nodes=1" in preview
        assert "#SBATCH --ntasks=2" in preview  # both producers at once, beside the store
        exp.start(ens, block=False)
        wait_until(lambda: exp.finished(ens), "the producers (pending behind the store's node?)", timeout=HANG)
        assert exp.get_status(ens) == [Status.COMPLETED] * 2, exp.summary()
        store_node = squeue_field(job_of(exp, db.job_keys()[0]), "NodeList")
        nodes = {(Path(m.path) / f"{m.name}.out").read_text().split()[1] for m in ens}
        assert nodes == {store_node}  # on the store's own node
        with db.client() as c:
            assert c.key_exists("producer_0.tensor") and c.key_exists("producer_1.tensor")
    finally:
        exp.stop(db)


def test_a_job_waiting_for_cpus_the_experiment_holds_says_so_and_starts_once_they_are_free(tmp_path, caplog):
    cpus = real_cpus()
    exp = slurm_exp(tmp_path)
    db = exp.create_database(port=free_ports(1), db_nodes=1, batch=True, interface=TARGET.interface,
                             time="00:10:00", queue=TARGET.small, hosts=[SMALL])
    exp.generate(db)
    exp.start(db)  # one CPU of the node of partition real
    go = tmp_path / "go"
    rs = exp.create_run_settings(exe=PY, exe_args=[script(tmp_path, WAIT_FOR, "wait.py"), str(go)])
    rs.set_tasks(cpus - 1)
    holder = exp.create_model("holder", rs, batch_settings=exp.create_batch_settings(
        nodes=1, time="00:05:00", queue=TARGET.small, batch_args={"ntasks": cpus - 1, "nodelist": SMALL}))
    waiter = exp.create_model("waiter", exp.create_run_settings(exe="true"), batch_settings=exp.create_batch_settings(
        nodes=1, time="00:05:00", queue=TARGET.small, batch_args={"nodelist": SMALL}))
    exp.generate(holder, waiter)
    try:
        exp.start(holder, block=False)
        wait_until(lambda: exp.get_status(holder) == [Status.RUNNING], "the holder to run")
        caplog.set_level(logging.WARNING, logger="simctl")
        exp.start(waiter, block=False)
        store_job, holder_job = job_of(exp, db.job_keys()[0]), job_of(exp, "holder")
        wait_until(lambda: "this experiment's own running job(s) hold" in exp.controller.jobs["waiter"].status.reason,
                   "the waiter's status to say what it waits for")
        st = exp.controller.jobs["waiter"].status
        assert st.status is Status.QUEUED
        for word in (store_job, holder_job, "runs until stopped", "holder", "orchestrator", "it starts when"):
            assert word in st.reason, st.reason
        node = squeue_field(store_job, "NodeList")
        assert node in st.reason
        assert store_job in row(exp.summary(), "waiter") and "Queued" in row(exp.summary(), "waiter")
        wait_until(lambda: store_job in status_reason(exp.exp_path, "waiter"), "simctl status to say so")
        assert any("Slurm job" in r.getMessage() and store_job in r.getMessage() for r in caplog.records)
        go.write_text("")  # the holder ends: its CPUs are free, and the waiter runs
        wait_until(lambda: exp.finished(waiter), "the waiter to run once the holder ended")
        assert exp.get_status(holder, waiter) == [Status.COMPLETED, Status.COMPLETED], exp.summary()
    finally:
        go.write_text("")
        exp.stop(db)


def test_a_job_that_can_never_start_beside_the_experiments_store_is_failed_and_cancelled(tmp_path, caplog):
    cpus = real_cpus()
    exp = slurm_exp(tmp_path)
    db = exp.create_database(port=free_ports(1), db_nodes=1, batch=True, interface=TARGET.interface,
                             time="00:10:00", queue=TARGET.small, hosts=[SMALL])
    exp.generate(db)
    exp.start(db)  # one CPU of the one node of partition real, until stopped
    ens = exp.create_ensemble("producer", replicas=cpus,
                              run_settings=exp.create_run_settings(exe=PY, exe_args=script(tmp_path, PRODUCER)),
                              batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00", queue=TARGET.small,
                                                                       batch_args={"nodelist": SMALL}))
    exp.generate(ens)
    assert f"#SBATCH --ntasks={cpus}" in exp.preview(ens, show=False)  # every CPU of the node: one is the store's
    caplog.set_level(logging.WARNING, logger="simctl")
    try:
        exp.start(ens, block=True)  # returns: the job is not waited on for ever
        store_job, job = job_of(exp, db.job_keys()[0]), job_of(exp, "producer/producer_0")
        assert exp.get_status(ens) == [Status.FAILED] * cpus
        reason = exp.controller.jobs["producer/producer_0"].status.reason
        for word in ("can never start while they run", store_job, "orchestrator", "runs until stopped",
                     "it was cancelled", "stop them first"):
            assert word in reason, reason
        assert "can never start" in row(exp.summary(), "producer_0")
        assert store_job in row(exp.summary(), "producer_0")
        assert "can never start" in status_reason(exp.exp_path, "producer_0")
        assert any(r.levelno == logging.ERROR and job in r.getMessage() for r in caplog.records)
        wait_until(lambda: squeue_state(job) in ("CANCELLED", ""), "the job to be cancelled")
        assert exp.get_status(db) == [Status.RUNNING]  # the store is left alone
    finally:
        scancel_quietly(*(job_of(exp, k) for k in exp.controller.jobs if k.startswith("producer/")))
        exp.stop(db)
