"""The test Slurm site itself (scripts/setup-slurm.sh, docs/test-slurm.md), driven
with sbatch/squeue/scontrol/scancel directly: no simctl launcher here.

House rule: when the test Slurm advertises more CPUs than the machine has (node of
partition ``debug``), also test work bigger than a node's real size. Partition
``real`` is a second node, with its own slurmd, that advertises the machine's real
CPU count. These tests pin down what the site does with work that does not fit
(the strings are recorded in docs/test-slurm.md, "Work bigger than a node").

Tests marked ``slurm`` FAIL (never skip) without the cluster; they clean up the
jobs they submit and ask for little, as the cluster is shared. The module is
single-node only (``single_node_slurm``): its subject is the single-node test
Slurm and setup-slurm.sh themselves (the ``real`` node advertising this
machine's CPU count beside the overcommitted ``debug``); the multi-node
cluster is checked by setup-multinode.sh and tests/multinode.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_helpers import PY as PY_SLEEP, REPO, outside_allocation, require_slurm, scancel_quietly, wait_until

REAL = "real"  # the partition whose node advertises the machine's real size
DEBUG = "debug"  # the default partition, overcommitted
SETUP = REPO / "scripts" / "setup-slurm.sh"
#: what sbatch says (exit 1) for more CPUs than the partition's nodes have
TOO_MANY = "sbatch: error: Batch job submission failed: More processors requested than permitted\n"

slurm = pytest.mark.slurm
pytestmark = pytest.mark.single_node_slurm


@pytest.fixture()
def cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    require_slurm()
    outside_allocation(monkeypatch)


@pytest.fixture()
def jobs() -> Iterator[list[str]]:
    """Job ids a test submitted: cancelled at the end, whatever happened."""
    ids: list[str] = []
    yield ids
    scancel_quietly(*ids)


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True)


def sinfo(partition: str, fmt: str) -> str:
    proc = run("sinfo", "-h", "-p", partition, "-o", fmt)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def node_cpus(partition: str) -> int:
    """CPUs the (only) node of ``partition`` advertises."""
    return int(sinfo(partition, "%c"))


def machine_cpus() -> int:
    cpus = os.cpu_count()
    assert cpus
    return cpus


def unique_name() -> str:
    return f"site-{uuid.uuid4().hex[:8]}"


def sbatch(*args: str) -> subprocess.CompletedProcess[str]:
    return run("sbatch", "--parsable", "--time=1", "-o", "/dev/null", *args)


def submit(jobs: list[str], *args: str) -> str:
    proc = sbatch(*args)
    assert proc.returncode == 0, proc.stderr
    job = proc.stdout.strip().split(";")[0]
    jobs.append(job)
    return job


def state_reason(job: str) -> tuple[str, str]:
    """(State, Reason) as ``squeue -t all`` prints them; ("", "") once purged."""
    proc = run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T|%r")
    if proc.returncode != 0 or not proc.stdout.strip():
        return "", ""
    state, _, reason = proc.stdout.strip().partition("|")
    return state, reason


def jobs_named(name: str) -> str:
    return run("squeue", "-h", "-t", "all", "-n", name, "-o", "%i %T %r").stdout.strip()


# -- what the site advertises ---------------------------------------------------------------------


@slurm
def test_partition_real_is_one_node_advertising_the_machines_real_cpu_count(cluster):
    assert sinfo(REAL, "%D") == "1"
    assert node_cpus(REAL) == machine_cpus()
    node = sinfo(REAL, "%N")
    assert f" CPUTot={machine_cpus()} " in run("scontrol", "show", "node", node).stdout
    # ... while the default partition keeps its overcommitted node, a different one
    assert sinfo(DEBUG, "%N") != node
    assert node_cpus(DEBUG) > machine_cpus()
    assert run("sinfo", "-h", "-o", "%P").stdout.split()[0] == f"{DEBUG}*"


@slurm
def test_a_job_as_big_as_the_real_node_runs_all_its_tasks_there(cluster, jobs, tmp_path):
    cpus = machine_cpus()
    out = tmp_path / "out"
    job = submit(jobs, "-p", REAL, "--nodes=1", f"--ntasks={cpus}", "-o", str(out),
                 "--wrap", "srun printenv SLURMD_NODENAME")
    wait_until(lambda: state_reason(job)[0] == "COMPLETED", f"job {job} COMPLETED")
    assert out.read_text().split() == [sinfo(REAL, "%N")] * cpus


# -- work bigger than a node -------------------------------------------------------------------------


@slurm
@pytest.mark.parametrize("partition", [REAL, DEBUG])
def test_more_tasks_than_the_node_has_are_rejected_at_submit_leaving_no_job(cluster, partition):
    """EnforcePartLimits=ALL: `sbatch --nodes=1 --ntasks=<node CPUs + 1>` (3 on real,
    33 on debug; 40 on debug too) exits 1 and no job record is left behind."""
    for ntasks in sorted({node_cpus(partition) + 1, 40 if partition == DEBUG else 3}):
        name = unique_name()
        proc = sbatch("-p", partition, "-J", name, "--nodes=1", f"--ntasks={ntasks}", "--wrap", "true")
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", TOO_MANY), ntasks
        assert jobs_named(name) == ""


@slurm
def test_srun_salloc_and_cpus_per_task_beyond_the_real_node_are_rejected_too(cluster):
    too_many = machine_cpus() + 1
    for argv, message in [
        (["srun", "-p", REAL, "-N1", f"-n{too_many}", "true"],
         "srun: error: Unable to allocate resources: More processors requested than permitted\n"),
        (["salloc", "-p", REAL, "-N1", f"-n{too_many}", "true"],
         "salloc: error: Job submit/allocate failed: More processors requested than permitted\n"),
        (["sbatch", "-p", REAL, f"--cpus-per-task={too_many}", "--wrap", "true"], TOO_MANY),
    ]:
        proc = run(*argv)
        assert (proc.returncode, proc.stdout, proc.stderr) == (1, "", message), argv


@slurm
def test_a_job_waiting_for_the_busy_real_node_pends_for_resources_then_runs(cluster, jobs, tmp_path):
    """The reason that clears on its own: the node is big enough, only busy."""
    cpus = machine_cpus()
    gate = tmp_path / "gate"
    first = submit(jobs, "-p", REAL, f"--ntasks={cpus}", "--wrap", f"until [ -e {gate} ]; do sleep 0.2; done")
    wait_until(lambda: state_reason(first)[0] == "RUNNING", f"job {first} RUNNING")
    second = submit(jobs, "-p", REAL, f"--ntasks={cpus}", "--wrap", "true")
    assert wait_until(lambda: state_reason(second)[1] in ("Resources", "Priority") and state_reason(second),
                      f"job {second} PENDING for Resources")[0] == "PENDING"
    gate.touch()
    wait_until(lambda: state_reason(second)[0] == "COMPLETED", f"job {second} COMPLETED")


@slurm
def test_a_job_grown_beyond_the_real_node_pends_with_badconstraints_while_others_run(cluster, jobs):
    """A never-clearing PENDING job on this site (which rejects oversized jobs at
    submit): hold one that fits, raise its task count with scontrol, release it."""
    job = submit(jobs, "--hold", "-p", REAL, "--nodes=1", f"--ntasks={machine_cpus()}", "--wrap", "true")
    update = run("scontrol", "update", f"jobid={job}", f"NumTasks={machine_cpus() + 1}")
    assert (update.returncode, update.stderr) == (0, "")
    assert run("scontrol", "release", job).returncode == 0
    wait_until(lambda: state_reason(job) == ("PENDING", "BadConstraints"), f"job {job} PENDING BadConstraints")
    later = submit(jobs, "-p", REAL, "--ntasks=1", "--wrap", "true")
    wait_until(lambda: state_reason(later)[0] == "COMPLETED", f"later job {later} COMPLETED")
    assert state_reason(job) == ("PENDING", "BadConstraints")


@slurm
def test_a_job_given_more_cpus_than_the_real_node_pends_with_partitionconfig_while_others_run(cluster, jobs):
    """scontrol reports an error (exit 1) for NumCPUs above the partition's, yet
    applies it: the released job is PENDING with PartitionConfig for good."""
    job = submit(jobs, "--hold", "-p", REAL, "--nodes=1", f"--ntasks={machine_cpus()}", "--wrap", "true")
    update = run("scontrol", "update", f"jobid={job}", f"NumCPUs={machine_cpus() + 1}")
    assert update.returncode == 1
    assert update.stderr == f"Requested partition configuration not available now for job {job}\n"
    run("scontrol", "release", job)  # also "fails" (exit 1), and releases it
    wait_until(lambda: state_reason(job) == ("PENDING", "PartitionConfig"), f"job {job} PENDING PartitionConfig")
    assert "Priority=0 " not in run("scontrol", "show", "job", job).stdout  # released, not held
    later = submit(jobs, "-p", REAL, "--ntasks=1", "--wrap", "true")
    wait_until(lambda: state_reason(later)[0] == "COMPLETED", f"later job {later} COMPLETED")
    assert state_reason(job) == ("PENDING", "PartitionConfig")


# -- scripts/setup-slurm.sh ----------------------------------------------------------------------


def clear_foreign_state(state_dir: Path) -> subprocess.CompletedProcess[str]:
    """Run the script's own clear_foreign_state on ``state_dir`` (sourcing the
    script defines its functions without running it)."""
    return run("bash", "-c", 'source "$1" && clear_foreign_state "$2"', "bash", str(SETUP), str(state_dir))


def test_setup_clears_state_left_by_a_cluster_with_another_name_and_says_so(tmp_path):
    """slurmctld exits with 'fatal: CLUSTER NAME MISMATCH' on such state, even with -c."""
    (tmp_path / "clustername").write_text("othercluster")
    (tmp_path / "job_state").write_bytes(b"\0state")
    (tmp_path / "hash.3").mkdir()
    proc = clear_foreign_state(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert list(tmp_path.iterdir()) == []
    assert f"{tmp_path} holds the state of cluster 'othercluster', not 'simctl'" in proc.stderr


@pytest.mark.parametrize("files", [{"clustername": "simctl", "job_state": "x"}, {"job_state": "x"}, {}])
def test_setup_keeps_the_state_of_its_own_cluster(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = clear_foreign_state(tmp_path)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == files


def test_setup_counts_as_its_own_only_the_daemons_of_its_host_and_cluster(tmp_path):
    """Issue 18: a slurmd of another cluster on this machine (a node of the
    multi-node test cluster, in its own network namespace; or one run with its
    own slurm.conf) is never found, restarted or stopped by setup-slurm.sh."""
    fake = tmp_path / "slurmd"  # a process called slurmd that is not this cluster's
    fake.symlink_to("/usr/bin/sleep")
    elsewhere = subprocess.Popen(["unshare", "--net", str(fake), "300"])
    other_conf = subprocess.Popen([PY_SLEEP, "-c", "import time; time.sleep(300)", "-f", "/other/slurm.conf"])
    mine = subprocess.Popen([str(fake), "300"])
    try:
        # unshare runs the program in its own process once the namespace is made
        wait_until(lambda: all(Path(f"/proc/{p.pid}/comm").read_text().strip() == "slurmd"
                               for p in (elsewhere, mine)), "the stand-ins to start")
        inner = elsewhere.pid

        def ours(pid: int) -> int:
            return run("bash", "-c", 'source "$1" && ours "$2"', "bash", str(SETUP), str(pid)).returncode

        assert ours(mine.pid) == 0
        assert ours(inner) == 1  # another network namespace: another host
        assert ours(other_conf.pid) == 1  # another cluster's slurm.conf
        found = run("bash", "-c", 'source "$1" && pids_of slurmd /nonexistent', "bash", str(SETUP)).stdout.split()
        assert str(inner) not in found and str(mine.pid) in found
    finally:
        for p in (elsewhere, other_conf, mine):
            p.kill()
            p.wait()
