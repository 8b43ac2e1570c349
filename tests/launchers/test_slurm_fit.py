"""Batch jobs and what the nodes really hold (issue 8 item 2), on a partition
whose nodes advertise few CPUs (``TARGET.small``: the single-node test Slurm's
``real``, whose node advertises the machine's real CPU count; the multi-node
one's ``compute``, 4 CPUs a node): members beyond what fits wait their turn inside the allocation, and a
job pending for a reason that never clears is FAILED (and cancelled), not
waited on forever."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from slurm_helpers import (
    TARGET,
    outside_allocation,
    py_settings,
    require_slurm,
    scancel_quietly,
    script,
    slurm_exp,
    squeue_state,
    wait_until,
)

from simctl import Status
from simctl.plugins.launchers.slurm import map_state


def test_pending_reasons_that_never_clear_are_failures():
    for reason in ("PartitionConfig", "BadConstraints", "DependencyNeverSatisfied", "PartitionTimeLimit"):
        st = map_state("PENDING", None, reason)
        assert st.status is Status.FAILED and reason in st.reason and "can never start" in st.reason
    for reason in ("Resources", "Priority", "None", "ReqNodeNotAvail, UnavailableNodes:vm-real", "JobHeldUser"):
        assert map_state("PENDING", None, reason).status is Status.QUEUED


@pytest.fixture
def cluster(monkeypatch):
    require_slurm()
    outside_allocation(monkeypatch)


def real_cpus() -> int:
    return TARGET.small_cpus()


SPAN = """
    import sys, time
    start = time.time()
    time.sleep(1.5)
    print(start, time.time())
"""


@pytest.mark.slurm
def test_more_members_than_the_node_has_cpus_take_turns(cluster, tmp_path):
    cpus = real_cpus()
    exp = slurm_exp(tmp_path)
    ens = exp.create_ensemble("ens", replicas=cpus + 1, run_settings=py_settings(exp, script(tmp_path, SPAN)),
                              batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00", queue=TARGET.small))
    exp.generate(ens)
    text = exp.preview(ens, show=False)
    assert f"#SBATCH --ntasks={cpus}" in text  # as many as the node holds, not more (issue 21: not the whole
    assert "--exclusive" not in text           # node, which the experiment's own store may share)
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED] * (cpus + 1), exp.summary()
    spans = [tuple(map(float, (Path(m.path) / f"{m.name}.out").read_text().split())) for m in ens]
    # never more members at once than the node has CPUs
    most = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert most <= cpus


@pytest.mark.slurm
def test_a_job_that_can_never_start_is_failed_and_cancelled(cluster, tmp_path):
    exp = slurm_exp(tmp_path)
    model = exp.create_model("stuck", exp.create_run_settings(exe="true"),
                             batch_settings=exp.create_batch_settings(nodes=1, time="00:05:00", queue=TARGET.small,
                                                                      batch_args={"hold": None}))
    exp.generate(model)
    exp.start(model, block=False)
    job = exp.controller.jobs["stuck"].record.job_id.split(":")[0]
    try:
        wait_until(lambda: "JobHeldUser" in subprocess.run(["squeue", "-h", "-j", job, "-o", "%r"],
                                                           capture_output=True, text=True).stdout, "the hold")
        # a site that does not reject oversized jobs: the request now exceeds the partition for good
        subprocess.run(["scontrol", "update", f"jobid={job}", f"NumTasks={TARGET.small_total_cpus() + 1}"],
                       capture_output=True)
        subprocess.run(["scontrol", "release", job], capture_output=True)
        exp.poll(interval=1, verbose=False)  # returns: the job is not waited on forever
        st = exp.controller.jobs["stuck"].status
        assert st.status is Status.FAILED and "can never start" in st.reason, st
        wait_until(lambda: squeue_state(job) in ("CANCELLED", ""), "the stuck job to leave the queue")
    finally:
        scancel_quietly(job)
