"""What the slurm launcher asks of Slurm, counted, and how it copes when Slurm
misbehaves. On the REAL test cluster.

* Counting: the recording wrappers of ``tests/cmd_recorder`` go first on PATH;
  they log each command's argv and exec the real one from /usr/bin (they only
  observe). Watching 20 jobs costs ONE squeue per poll cycle, naming them all.
* Faults: deliberate fault wrappers written by each test (a squeue that fails
  or prints garbage, an sbatch that is missing...), bad settings, a job that
  left the queue, a submission Slurm rejects.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from slurm_helpers import (
    fake_command,
    path_without,
    py_settings,
    scancel_quietly,
    script,
    slurm_exp,
    squeue_ids,
    squeue_state,
    use_recorder,
    wait_until,
)

import simctl
from simctl import ConfigError, SchedulerError, Status
from simctl.plugins.launchers.slurm import SlurmLauncher

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("slurm_cluster")]


#: runs until the file named by its argument exists
GATED = """
    import os, sys, time
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
"""


def record_of(exp, name):
    return exp.controller.jobs[name].record


def start_gated(exp, tmp_path, name="gated"):
    """A model alone (its own batch job) that runs until ``gate`` exists; started, RUNNING."""
    gate = tmp_path / f"{name}.gate"
    model = exp.create_model(name, py_settings(exp, script(tmp_path, GATED, "gated.py"), str(gate)))
    exp.generate(model)
    exp.start(model, block=False)
    wait_until(lambda: exp.get_status(model) == [Status.RUNNING], f"{name} to run")
    return model, gate


# -- counting ------------------------------------------------------------------------------------


def test_watching_20_jobs_costs_one_squeue_per_poll_cycle(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    exp = slurm_exp(tmp_path)
    prog = script(tmp_path, "import time; time.sleep(2)")
    models = [exp.create_model(f"m{i:02d}", py_settings(exp, prog)) for i in range(20)]
    exp.generate(*models)

    # observe every poll cycle: the launcher's status() call, and the commands it ran
    cycles: list[tuple[list[str], list[list[str]]]] = []
    real_status = exp.launcher.status

    def observed(job_ids):
        before = len(log.entries())
        try:
            return real_status(job_ids)
        finally:
            cycles.append((list(job_ids), [e for e in log.entries()[before:] if e[0] != "srun"]))

    monkeypatch.setattr(exp.launcher, "status", observed)
    exp.start(*models, block=True)

    assert exp.get_status(*models) == [Status.COMPLETED] * 20
    assert len(log.of("sbatch")) == 20  # each model alone is its own batch job
    jobs = {record_of(exp, m.key).job_id.rpartition(":")[0] for m in models}
    assert len(jobs) == 20
    assert cycles, "the monitor never polled"
    for _ids, commands in cycles:
        # at most ONE command per cycle, and it is squeue: no per-job status command
        assert [c[0] for c in commands] in ([], ["squeue"]), commands
    squeues = log.of("squeue")
    assert squeues, "squeue was never needed"
    assert len(squeues) <= len(cycles)
    # the first cycle asked about all 20 jobs in that one squeue
    assert squeue_ids(squeues[0]) == jobs
    assert all(squeue_ids(argv) <= jobs for argv in squeues)
    assert not log.of("sacct") and not log.of("scontrol") and not log.of("scancel")
    # nothing else ran: one sbatch each, plus the squeues shared by all 20 (their number is the poll
    # cycles the jobs lasted, which a loaded cluster stretches: bounded above by the cycles, not a constant)
    assert sum(1 for e in log.entries() if e[0] != "srun") == 20 + len(squeues)


def test_a_batch_ensemble_is_one_sbatch_and_its_squeue_names_one_job(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    exp = slurm_exp(tmp_path)
    ens = exp.create_ensemble("ens", replicas=6, run_settings=py_settings(exp, script(tmp_path, "pass")),
                              batch_settings=exp.create_batch_settings(time="00:05:00"))
    exp.generate(ens)
    exp.start(ens, block=True)
    assert exp.get_status(ens) == [Status.COMPLETED] * 6
    assert len(log.of("sbatch")) == 1
    job = record_of(exp, "ens/ens_0").job_id.rpartition(":")[0]
    assert all(squeue_ids(argv) == {job} for argv in log.of("squeue"))
    assert log.names().count("srun") == 6  # the members, inside the job


# -- bad input ------------------------------------------------------------------------------------


def test_a_run_command_slurm_does_not_support(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    exp = slurm_exp(tmp_path)
    with pytest.raises(ConfigError) as err:
        exp.create_run_settings(exe="a.out", run_command="aprun")
    msg = str(err.value)
    assert "'aprun'" in msg and "'mpiexec', 'mpirun', 'orterun', 'srun'" in msg
    # changed after creation: caught at start(), before anything is submitted
    rs = exp.create_run_settings(exe="true")
    rs.run_command = "jsrun"
    model = exp.create_model("m", rs)
    with pytest.raises(ConfigError, match="'jsrun'.*supported: 'mpiexec', 'mpirun', 'orterun', 'srun'"):
        exp.start(model)
    assert log.entries() == []
    assert exp.get_status(model) == [Status.NEW]


def test_batch_settings_of_another_launchers_type(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    exp = slurm_exp(tmp_path)
    pbs = simctl.make_plugins().get("launcher", "pbs")()
    foreign = [pbs.create_batch_settings(nodes=1, time="00:05:00"), simctl.BatchSettings(nodes=1)]
    rs = exp.create_run_settings(exe="true")
    for bs in foreign:
        model = exp.create_model("m", rs, batch_settings=bs)
        with pytest.raises(ConfigError) as err:
            exp.start(model)
        assert type(bs).__name__ in str(err.value) and "SbatchSettings" in str(err.value)
        ens = exp.create_ensemble("e", replicas=2, run_settings=rs, batch_settings=bs)
        with pytest.raises(ConfigError, match="SbatchSettings"):
            exp.start(ens)
    assert log.entries() == []


@pytest.mark.parametrize("bad", ["1:99:00", "abc", "10:00:61", "", "-5", -5, 0, "1-", True])
def test_a_malformed_walltime(tmp_path, bad):
    exp = slurm_exp(tmp_path)
    with pytest.raises(ConfigError, match="walltime"):
        exp.create_batch_settings(time=bad)
    bs = exp.create_batch_settings()
    with pytest.raises(ConfigError, match="walltime"):
        bs.set_walltime(bad)
    rs = exp.create_run_settings(exe="true")
    with pytest.raises(ConfigError, match="walltime"):
        rs.set_walltime(bad)


# -- scheduler commands that are missing, fail, or print garbage ---------------------------------------

SBATCH_FAULTS = {
    "missing": (None, "sbatch not found on PATH"),
    "failing": ('echo "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation" >&2\n'
                "exit 1\n", "Socket timed out on send/recv operation"),
    "garbage": ('echo "<html>502 Bad Gateway</html>"\n', "502 Bad Gateway"),
}


@pytest.mark.parametrize("fault", sorted(SBATCH_FAULTS))
def test_sbatch_missing_failing_or_printing_garbage(tmp_path, monkeypatch, fault):
    exp = slurm_exp(tmp_path)
    model = exp.create_model("m", exp.create_run_settings(exe="true"))
    exp.generate(model)
    body, expected = SBATCH_FAULTS[fault]
    bindir = path_without(tmp_path / "bin", "sbatch")
    if body is not None:
        fake_command(Path(bindir), "sbatch", body)
    monkeypatch.setenv("PATH", bindir)

    with pytest.raises(SchedulerError) as err:
        exp.start(model)
    msg = str(err.value)
    assert "sbatch" in msg and expected in msg
    assert err.value.command.startswith("sbatch --parsable ")
    if fault == "garbage":
        assert "printed no job id" in msg
    assert exp.get_status(model) == [Status.FAILED]  # recorded as not started, nothing tracked as if it ran
    assert "not started: the launcher failed" in exp.controller.jobs["m"].status.reason


SQUEUE_FAULTS = {
    "missing": (None, "squeue not found on PATH"),
    "failing": ('echo "slurm_load_jobs error: Unable to contact slurm controller (connect failure)" >&2\n'
                "exit 1\n", "Unable to contact slurm controller"),
    "garbage": ('echo "Warning: the queue is being restarted"\necho "%%%"\n', "the queue is being restarted"),
}


@pytest.mark.parametrize("fault", sorted(SQUEUE_FAULTS))
def test_squeue_missing_failing_or_printing_garbage_keeps_the_job_tracked(tmp_path, monkeypatch, fault):
    exp = slurm_exp(tmp_path)
    model, gate = start_gated(exp, tmp_path)
    job_id = record_of(exp, "gated").job_id
    good_path = os.environ["PATH"]
    body, expected = SQUEUE_FAULTS[fault]
    bindir = path_without(tmp_path / "bin", "squeue")
    if body is not None:
        fake_command(Path(bindir), "squeue", body)
    monkeypatch.setenv("PATH", bindir)

    # the launcher's own answer: an error naming the command and what it printed
    with pytest.raises(SchedulerError) as err:
        exp.launcher.status([job_id])
    msg = str(err.value)
    assert "squeue" in msg and expected in msg
    assert err.value.command.startswith("squeue ")
    # the experiment keeps watching: the job is not marked done, the error is on its record
    assert exp.controller.poll_once() is False
    wait_until(lambda: "status unknown" in record_of(exp, "gated").reason, "the error to reach the record")
    assert expected in record_of(exp, "gated").reason
    assert exp.get_status(model) == [Status.RUNNING]
    assert not exp.finished(model)

    # Slurm answers again: the job is followed to its end
    monkeypatch.setenv("PATH", good_path)
    gate.write_text("")
    exp.poll(interval=0.5, verbose=False)
    assert exp.get_status(model) == [Status.COMPLETED]


def test_scancel_failing_leaves_the_job_tracked_and_stoppable(tmp_path, monkeypatch):
    exp = slurm_exp(tmp_path)
    model, gate = start_gated(exp, tmp_path)
    good_path = os.environ["PATH"]
    bindir = path_without(tmp_path / "bin", "scancel")
    fake_command(Path(bindir), "scancel", 'echo "scancel: error: Kill job error: Access/permission denied" >&2\n'
                                          "exit 1\n")
    monkeypatch.setenv("PATH", bindir)
    with pytest.raises(SchedulerError, match="scancel.*Access/permission denied"):
        exp.stop(model)
    monkeypatch.setenv("PATH", good_path)
    assert not exp.finished(model)
    exp.stop(model)
    assert exp.get_status(model) == [Status.CANCELLED]
    assert squeue_state(record_of(exp, "gated").job_id.rpartition(":")[0]) in ("CANCELLED", "")


def test_sacct_is_consulted_when_accounting_is_on_and_its_failure_named(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    # the test cluster has accounting off; told otherwise, the launcher asks sacct about a job
    # that left the queue, and the real sacct's refusal reaches the caller
    launcher = SlurmLauncher(accounting=True)
    with pytest.raises(SchedulerError) as err:
        launcher.status(["987654:0"])
    assert "sacct" in str(err.value) and "Slurm accounting storage is disabled" in str(err.value)
    assert [e[0] for e in log.entries()] == ["squeue", "sacct"]
    # left to find out, it reads the configuration once and does not ask sacct
    launcher = SlurmLauncher()
    launcher.status(["987654:0"])
    launcher.status(["987654:0"])
    assert [e[0] for e in log.entries()][2:] == ["squeue", "scontrol", "squeue"]


# -- a job that left the queue, a rejected submission -----------------------------------------------------


def test_a_job_that_vanished_from_the_queue(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    launcher = SlurmLauncher()
    # one id alone: squeue fails with "Invalid job id specified"
    (st,) = launcher.status(["987654:0"]).values()
    assert st.status is Status.UNKNOWN and st.final and st.done
    assert "987654" in st.reason and "vanished" in st.reason
    # several: squeue lists nothing
    got = launcher.status(["987654:0", "987655:3"])
    assert all(s.status is Status.UNKNOWN and s.final for s in got.values())
    assert launcher.query(["987654"]) == {}
    assert set(log.names()) == {"squeue", "scontrol"}


def test_a_job_whose_member_left_no_exit_status(tmp_path):
    # the job ran and ended, but the member's exit-status file is gone: not taken as success
    exp = slurm_exp(tmp_path)
    model = exp.create_model("m", exp.create_run_settings(exe="true"))
    exp.generate(model)
    exp.start(model, block=True)
    job_id = record_of(exp, "m").job_id
    # the member's end is seen from its exit-status file, maybe before the job has left
    # RUNNING/COMPLETING: wait (bounded) for the queue to say the job ended
    parent = job_id.rpartition(":")[0]
    for _ in range(300):
        if exp.launcher.query([parent])[parent].status.is_terminal:
            break
        time.sleep(0.1)
    assert exp.launcher.query([parent])[parent].status.is_terminal
    for rc in Path(model.path).glob(".simctl-batch/m-*/0.rc"):
        rc.unlink()
    (st,) = exp.launcher.status([job_id]).values()
    assert st.status is Status.FAILED and "without this member's exit status" in st.reason


def test_a_rejected_submission_reaches_the_user(tmp_path, monkeypatch):
    log = use_recorder(monkeypatch, tmp_path / "cmds.log")
    exp = slurm_exp(tmp_path)
    bad = exp.create_model("bad", exp.create_run_settings(exe="true"),
                           batch_settings=exp.create_batch_settings(time="00:05:00",
                                                                    batch_args={"partition": "nope"}))
    exp.generate(bad)
    with pytest.raises(SchedulerError) as err:
        exp.start(bad)
    assert "invalid partition specified: nope" in str(err.value)
    assert err.value.returncode == 1
    assert exp.get_status(bad) == [Status.FAILED]
    assert "invalid partition specified: nope" in exp.controller.jobs["bad"].status.reason

    # submitted in one start() with a good one: the good one is withdrawn, not left running untracked
    good = exp.create_model("good", py_settings(exp, script(tmp_path, GATED), str(tmp_path / "never")))
    exp.generate(good)
    with pytest.raises(SchedulerError, match="nope"):
        exp.start(good, bad)
    sbatches = log.of("sbatch")
    cancels = log.of("scancel")
    assert len(cancels) == 1 and len(cancels[0]) == 1
    (withdrawn,) = cancels[0]
    try:
        assert squeue_state(withdrawn) in ("CANCELLED", "")
        assert len(sbatches) == 3  # bad; then good (withdrawn) and bad
        assert exp.get_status(good, bad) == [Status.FAILED, Status.FAILED]
        assert "withdrawn" in exp.controller.jobs["good"].status.reason
    finally:
        scancel_quietly(withdrawn)
