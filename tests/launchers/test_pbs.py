"""The ``pbs`` launcher: parsers on recorded real qstat/qsub output
(tests/data/pbs, see SOURCES.md there), settings and batch scripts, bad input,
and integration tests on Slurm's real Torque-compatible qsub/qstat/qdel
(Debian's slurm-wlm-torque) on the test Slurm cluster (``-m slurm``)."""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from _paths import DATA as TESTS_DATA

import simctl
from simctl import ConfigError, SchedulerError, Status
from simctl.plugins.launchers import pbs
from simctl.plugins.launchers.slurm import SbatchSettings

DATA = TESTS_DATA / "pbs"
PY = sys.executable


def sample(name: str) -> str:
    return (DATA / name).read_text()


def make(tmp_path: Path, name: str = "p", **options) -> simctl.Experiment:
    return simctl.Experiment(name, exp_path=str(tmp_path / name), launcher="pbs",
                             plugins=simctl.make_plugins(), launcher_options=options)


# -- parsers on recorded output -------------------------------------------------------------------------


def test_pbs_pro_json_finished_job_with_exit_status_zero():
    got = pbs.parse_qstat_json(sample("pbspro19_buildtest_qstat_x_f_F_json.json"))
    assert list(got) == ["40.pbs"]
    assert got["40.pbs"].status is Status.COMPLETED and got["40.pbs"].returncode == 0
    assert got["40.pbs"].raw == "F"


def test_pbs_pro_json_running_job():
    got = pbs.parse_qstat_json(sample("smartsim_qstat_f_F_json_running.json"))
    assert got["16705.sdb"].status is Status.RUNNING and got["16705.sdb"].returncode is None


def test_pbs_pro_json_queued_held_and_finished_without_exit_status():
    got = pbs.parse_qstat_json(sample("pbspro2022_aurora_qstat_x_f_F_json_excerpt.json"))
    srv = ".aurora-pbs-0001.hostmgmt.cm.aurora.alcf.anl.gov"
    q, f, h = got["4683812" + srv], got["4846771" + srv], got["4905429" + srv]
    assert (q.status, q.raw) == (Status.QUEUED, "Q") and "Insufficient amount of resource" in q.reason
    assert (h.status, h.raw) == (Status.QUEUED, "H") and h.reason.startswith("held: Job held by mmin")
    # F without Exit_status (it never ran): finished, but not a success we could claim
    assert (f.status, f.returncode, f.raw) == (Status.FAILED, None, "F")
    assert "no exit status" in f.reason and "Not enough free nodes available and terminated" in f.reason


def test_pbs_pro_classic_listing_with_wrapped_values():
    got = pbs.parse_qstat_full(sample("pbspro_gadi_pysqa_qstat_f.txt"))
    assert {k: v.status for k, v in got.items()} == {
        "80005196.gadi-pbs": Status.RUNNING, "80005197.gadi-pbs": Status.QUEUED, "80005198.gadi-pbs": Status.QUEUED}


def test_torque_wrapper_classic_listing_recorded_here():
    got = pbs.parse_qstat_full(sample("torque_wrapper_qstat_f.txt"))
    assert got["58"].status is Status.RUNNING
    assert got["59"].status is Status.QUEUED and got["59"].raw == "Q"
    # the wrapper prints no Exit_status: job 60 ran `exit 3` and shows only "C"
    assert (got["60"].status, got["60"].returncode, got["60"].raw) == (Status.FAILED, None, "C")
    assert "no exit status" in got["60"].reason
    cancelled = pbs.parse_qstat_full(sample("torque_wrapper_qstat_f_cancelled.txt"))
    assert {k: v.raw for k, v in cancelled.items()} == {"58": "C", "59": "C"}


def test_torque_wrapper_unknown_ids_print_nothing_and_json_is_rejected():
    assert pbs.parse_qstat_full(sample("torque_wrapper_qstat_unknown.stdout.txt")) == {}
    rejected = sample("torque_wrapper_qstat_json_rejected.stderr.txt")
    assert rejected.startswith("Unknown option: F") and pbs._OPTION_REJECTED.search(rejected)


@pytest.mark.parametrize("letter,status", [
    ("Q", Status.QUEUED), ("H", Status.QUEUED), ("W", Status.QUEUED), ("T", Status.QUEUED), ("M", Status.QUEUED),
    ("R", Status.RUNNING), ("E", Status.RUNNING), ("B", Status.RUNNING),
    ("S", Status.PAUSED), ("U", Status.PAUSED),
])
def test_every_unfinished_state_is_mapped(letter, status):
    st = pbs.map_state(letter, None)
    assert (st.status, st.raw, st.returncode) == (status, letter, None)


def test_the_state_table_covers_pbs_pro_and_torque():
    assert set(pbs.STATES) == set("QRHSWXBTMUEF") | {"C"}


@pytest.mark.parametrize("letter", ["F", "X", "C"])
def test_finished_states_follow_the_exit_status(letter):
    assert pbs.map_state(letter, 0).status is Status.COMPLETED
    failed = pbs.map_state(letter, 3)
    assert (failed.status, failed.returncode, failed.reason) == (Status.FAILED, 3, "exited with code 3")


def test_exit_status_above_256_is_a_signal_and_negative_is_pbs_itself():
    killed = pbs.map_state("F", 271)
    assert (killed.status, killed.returncode) == (Status.FAILED, -15)
    assert "signal 15 (SIGTERM)" in killed.reason and "256 + 15" in killed.reason
    retry = pbs.map_state("F", -3, "job held, too many failed attempts to run")
    assert retry.returncode == -3 and "JOB_EXEC_RETRY" in retry.reason and "too many failed" in retry.reason
    assert "PBS exit status -99" in pbs.map_state("F", -99).reason


def test_an_unknown_state_is_reported_not_guessed():
    st = pbs.map_state("Z", None)
    assert (st.status, st.raw) == (Status.UNKNOWN, "Z") and "'Z'" in st.reason


@pytest.mark.parametrize("text", ["not json at all", "[1, 2]", '{"Jobs": [1]}', '{"Jobs": {"1.x": {"foo": 1}}}'])
def test_malformed_json_listing_is_an_error(text):
    with pytest.raises(ValueError):
        pbs.parse_qstat_json(text)


@pytest.mark.parametrize("text", ["garbage", "Job Id: 1\nno indent = x", "    job_state = R"])
def test_malformed_classic_listing_is_an_error(text):
    with pytest.raises(ValueError):
        pbs.parse_qstat_full(text)


def test_a_listing_without_jobs_means_none_is_known():
    assert pbs.parse_qstat_json('{"timestamp":1,"pbs_version":"2022.1","pbs_server":"s"}') == {}


def test_qsub_output_and_ids():
    assert pbs.parse_qsub("1234.pbsserver\n") == "1234.pbsserver"
    assert pbs.parse_qsub("1234[].pbsserver\n") == "1234[].pbsserver"
    assert pbs.parse_qsub("58\n") == "58"
    with pytest.raises(ValueError):
        pbs.parse_qsub("There was an error running the Slurm sbatch command.\n")


def test_records_are_matched_to_the_ids_qsub_printed():
    parsed = pbs.parse_qstat_full("Job Id: 12.srv.example.org\n    job_state = R\n"
                                  "Job Id: 13[2].srv.example.org\n    job_state = X\n    Exit_status = 4\n")
    got = pbs.align_ids(parsed, ["12.srv", "13[].srv"])
    assert got["12.srv"].status is Status.RUNNING
    launcher = pbs.PbsLauncher()
    sub = got[launcher.array_task_id("13[].srv", 2)]
    assert (sub.status, sub.returncode) == (Status.FAILED, 4)
    assert launcher.array_task_id("13[].srv", 2) == "13[2].srv" and launcher.array_task_id("58", 1) == "58[1]"


def test_job_names_are_safe_for_every_pbs():
    for raw in ["1st run", "a b/c$d", "ensemble-of-many-members-0", ""]:
        name = pbs.pbs_job_name(raw)
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]{0,14}", name), name
    assert pbs.pbs_job_name("sweep") == "sweep"


# -- settings, scripts and bad input --------------------------------------------------------------------


def test_walltime_is_written_as_hh_mm_ss(tmp_path):
    exp = make(tmp_path)
    for given, want in [(90, "01:30:00"), ("1-02:00:00", "26:00:00"), (dt.timedelta(seconds=61), "00:01:01"),
                        ("10:30", "00:10:30")]:
        bs = exp.create_batch_settings(time=given)
        assert f"-l walltime={want}" in exp.launcher.directives(_group(tmp_path, bs))


@pytest.mark.parametrize("bad", ["1:99", "ten minutes", "-5", 0, dt.timedelta(0), True])
def test_malformed_walltime_is_rejected_before_anything_runs(tmp_path, bad):
    exp = make(tmp_path)
    with pytest.raises(ConfigError, match="walltime"):
        exp.create_batch_settings(time=bad)
    bs = exp.create_batch_settings()
    with pytest.raises(ConfigError, match="walltime"):
        bs.set_walltime(bad)


def test_unsupported_run_command_lists_the_supported_ones(tmp_path):
    exp = make(tmp_path)
    with pytest.raises(ConfigError) as err:
        exp.create_run_settings(exe="true", run_command="srun")
    msg = str(err.value)
    assert "'srun'" in msg and "'aprun', 'mpiexec', 'mpirun'" in msg
    assert exp.create_run_settings(exe="true").run_command is None  # "auto": run it directly


def test_batch_settings_of_another_launcher_are_rejected(tmp_path):
    exp = make(tmp_path)
    rs = exp.create_run_settings(exe="true")
    model = exp.create_model("m", rs, batch_settings=SbatchSettings(nodes=1))
    with pytest.raises(ConfigError, match="SbatchSettings.*'pbs'.*PbsBatchSettings"):
        exp.start(model)
    assert not (tmp_path / "p").exists() or not list((tmp_path / "p").rglob("job.sh"))


def test_aprun_and_mpirun_flags(tmp_path):
    exp = make(tmp_path)
    rs = exp.create_run_settings(exe="a.out", exe_args="x", run_command="aprun", run_args={"-j": 1})
    rs.set_tasks(8)
    rs.set_tasks_per_node(4)
    rs.set_cpus_per_task(2)
    rs.set_hostlist("nid001,nid002")
    rs.set_cpu_binding("depth")
    assert rs.format_run_args() == ["-n", "8", "-N", "4", "-d", "2", "-L", "nid001,nid002", "-j", "1", "-cc", "depth"]
    mpi = exp.create_run_settings(exe="a.out", run_command="mpirun", run_args={"bind-to": "core"})
    mpi.set_tasks(4)
    assert mpi.format_run_args() == ["-n", "4", "--bind-to", "core"]
    model = exp.create_model("m", rs, path=str(tmp_path))
    assert "aprun -n 8 -N 4 -d 2 -L nid001,nid002 -j 1 -cc depth a.out x" in exp.preview(model, show=False)


def _group(tmp_path: Path, bs: simctl.BatchSettings) -> simctl.BatchJob:
    return simctl.BatchJob(name="g", cwd=str(tmp_path), batch_settings=bs, members=[], out="o", err="e")


from _script_helpers import STOP_LOOP  # noqa: E402  (the same script tail on every scheduler)


def _jobdir(text: str) -> str:
    m = re.search(r"(/\S+/\.simctl-batch/[^/\s]+)/", text)
    assert m, text
    return m.group(1)


def test_preview_shows_the_exact_batch_script(tmp_path):
    exp = make(tmp_path)
    rs = exp.create_run_settings(exe="/bin/echo", exe_args=["it's", "$HOME"])
    bs = exp.create_batch_settings(nodes=2, time="00:10:00", queue="debug", account="proj",
                                   batch_args={"m": "abe"})
    bs.set_resource("mem", "4gb")
    bs.add_preamble("module load foo")
    ens = exp.create_ensemble("ens", params={"x": ["1", "a b"]}, params_as_args=["x"], run_settings=rs,
                              batch_settings=bs)
    exp.generate(ens)
    text = exp.preview(ens, show=False)
    d = _jobdir(text)
    e = str(tmp_path / "p" / "ens")
    assert text == f"""Experiment 'p' at {tmp_path / 'p'} on launcher 'pbs'
# Ensemble ens
# submitted with: qsub -o {e}/ens.batch.out -e {e}/ens.batch.err {d}/job.sh
# 0.env: SSKEYOUT=ens_0
# 1.env: SSKEYOUT=ens_1
#!/bin/bash
#PBS -N ens
#PBS -o {e}/ens.batch.out
#PBS -e {e}/ens.batch.err
#PBS -V
#PBS -l walltime=00:10:00
#PBS -l select=2
#PBS -l mem=4gb
#PBS -q debug
#PBS -A proj
#PBS -m abe
# simctl batch job ens: 2 member(s)
module load foo
set -u
( ( cd {e}/ens_0 && . {d}/0.env && exec /bin/echo 'it'"'"'s' '$HOME' -x 1 ) > {e}/ens_0/ens_0.out 2> {e}/ens_0/ens_0.err & echo $! > {d}/0.pid; wait $!; echo $? > {d}/0.rc ) &
( ( cd {e}/ens_1 && . {d}/1.env && exec /bin/echo 'it'"'"'s' '$HOME' -x 'a b' ) > {e}/ens_1/ens_1.out 2> {e}/ens_1/ens_1.err & echo $! > {d}/1.pid; wait $!; echo $? > {d}/1.rc ) &
{STOP_LOOP.format(d=d)}"""  # noqa: E501 (the script's lines, verbatim)


@pytest.mark.parametrize("flavor,flag,nodes", [("pro", "#PBS -J 1-3", "#PBS -l select=1:ncpus=4"),
                                               ("torque", "#PBS -t 1-3", "#PBS -l nodes=1:ppn=4")])
def test_array_script_per_flavor(tmp_path, flavor, flag, nodes):
    exp = make(tmp_path, pbs_flavor=flavor)
    rs = exp.create_run_settings(exe="true")
    bs = exp.create_batch_settings(array=True)
    bs.set_ncpus(4)
    ens = exp.create_ensemble("arr", replicas=3, run_settings=rs, batch_settings=bs)
    exp.generate(ens)
    text = exp.preview(ens, show=False)
    assert flag in text.splitlines() and nodes in text.splitlines()
    assert 'case "${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-}}}" in' in text
    assert re.search(r"^  1\) \( cd .*/arr_0 .*;;$", text, re.M)
    assert re.search(r"^  3\) \( cd .*/arr_2 .*;;$", text, re.M)


def test_bad_launcher_options(tmp_path):
    with pytest.raises(ConfigError, match="pbs_flavor 'slurm'"):
        make(tmp_path, pbs_flavor="slurm")
    with pytest.raises(ConfigError, match="qstat_format 'xml'"):
        make(tmp_path, qstat_format="xml")


def test_detect_defers_to_slurm_when_qsub_is_the_wrapper(monkeypatch, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for cmd in ("qsub",):
        (bin_dir / cmd).write_text("#!/bin/sh\n")
        (bin_dir / cmd).chmod(0o755)
    monkeypatch.delenv("PBS_JOBID", raising=False)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert pbs.PbsLauncher.detect()[0] == 10
    (bin_dir / "sbatch").write_text("#!/bin/sh\n")
    (bin_dir / "sbatch").chmod(0o755)
    score, why = pbs.PbsLauncher.detect()
    assert score == 5 and "Torque-compatible wrapper" in why
    monkeypatch.setenv("PBS_JOBID", "123.srv")
    assert pbs.PbsLauncher.detect()[0] == 100


# -- integration: Slurm's real Torque-compatible wrappers ------------------------------------------------


@pytest.fixture
def cluster():
    """The test Slurm with its Torque wrappers must be up: a missing cluster
    FAILS these tests (bring it up with scripts/setup-slurm.sh)."""
    for cmd in ("qsub", "qstat", "qdel", "sinfo"):
        assert shutil.which(cmd), f"{cmd} not on PATH: run scripts/setup-slurm.sh"
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip(), f"Slurm is not answering: {proc.stderr}"
    # "planned": idle, but the backfill scheduler has set it aside for a pending job (a previous test's).
    usable = ("idle", "mixed", "allocated", "completing", "planned")
    assert any(s.strip("*~#") in usable for s in proc.stdout.split()), f"no usable node: {proc.stdout}"


def wait_for(cond, what: str, hang: float = 120.0) -> None:
    """Poll until ``cond()``; fail (naming ``what``) only if something hangs."""
    end = time.monotonic() + hang
    while not cond():
        assert time.monotonic() < end, f"gave up waiting for: {what}"
        time.sleep(0.05)


def prog(exp: simctl.Experiment, code: str, **kw) -> simctl.RunSettings:
    return exp.create_run_settings(exe=PY, exe_args=["-c", code], **kw)


ECHO = "import sys, os; print('args', sys.argv[1:]); sys.exit(int(os.environ.get('CODE', '0')))"


@pytest.mark.slurm
def test_models_as_batch_jobs_complete_and_fail_with_codes(cluster, tmp_path):
    exp = make(tmp_path)
    ok = exp.create_model("ok", prog(exp, ECHO),
                          params={"p": "a b $HOME \"q\""}, params_as_args=["p"],
                          batch_settings=exp.create_batch_settings(time="00:02:00"))
    bad = exp.create_model("bad", prog(exp, ECHO, env_vars={"CODE": "3"}),
                           batch_settings=exp.create_batch_settings(time=2))
    exp.generate(ok, bad)
    exp.start(ok, bad)
    assert exp.get_status(ok, bad) == [Status.COMPLETED, Status.FAILED]
    jobs = exp.controller.jobs
    assert jobs["ok"].status.returncode == 0 and jobs["bad"].status.returncode == 3
    assert jobs["bad"].status.reason == "exited with code 3"
    assert (Path(ok.path) / "ok.out").read_text() == "args ['-p', 'a b $HOME \"q\"']\n"
    assert exp.launcher.qstat_format == "classic"  # the wrapper rejects -F json


@pytest.mark.slurm
@pytest.mark.parametrize("flavor", ["pro", "torque"])
def test_a_nodes_resource_takes_ncpus_in_one_line(cluster, tmp_path, flavor):
    """``resources={'nodes': N}`` with ``ncpus``: one line, ``-l nodes=N:ppn=C`` (SmartSim writes
    ``nodes=N:ncpus=C``, which this Torque wrapper refuses: "Invalid node name"), submitted for real;
    CPUs a chunk spec names already are refused."""
    line = "#PBS -l nodes=1:ppn=1"
    exp = make(tmp_path, pbs_flavor=flavor)
    bs = exp.create_batch_settings(time="00:02:00", resources={"nodes": 1}, ncpus=1)
    model = exp.create_model("chunk", prog(exp, "print('ran')"), batch_settings=bs)
    exp.generate(model)
    text = exp.preview(model, show=False)
    assert line in text.splitlines() and text.count("#PBS -l nodes=") == 1
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    assert (Path(model.path) / "chunk.out").read_text() == "ran\n"
    with pytest.raises(ConfigError, match=r"resources\['select'\] and ncpus each say"):
        exp.create_batch_settings(resources={"select": "2:ncpus=4"}, ncpus=3)


@pytest.mark.slurm
def test_ensemble_as_one_batch_job(cluster, tmp_path):
    exp = make(tmp_path)
    rs = prog(exp, "import sys; print('x=' + sys.argv[-1]); sys.exit(5 if sys.argv[-1] == 'fail' else 0)")
    ens = exp.create_ensemble("ens", params={"x": ["one", "fail", "three"]}, params_as_args=["x"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(nodes=1, time="00:02:00"))
    exp.generate(ens)
    preview = exp.preview(ens, show=False)
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED, Status.FAILED, Status.COMPLETED]
    assert preview.endswith((Path(_jobdir(preview)) / "job.sh").read_text())  # preview = what qsub got
    parents = {j.record.job_id.split(":")[0] for j in exp.controller.jobs.values()}
    assert len(parents) == 1  # one qsub for the whole ensemble
    assert [exp.controller.jobs[m.key].status.returncode for m in ens] == [0, 5, 0]
    assert [(Path(m.path) / f"{m.name}.out").read_text() for m in ens] == ["x=one\n", "x=fail\n", "x=three\n"]


@pytest.mark.slurm
@pytest.mark.parametrize("flavor", ["pro", "torque"])
def test_ensemble_as_job_array(cluster, tmp_path, flavor):
    """``-J 1-N`` (PBS Pro) and ``-t 1-N`` (Torque) both reach sbatch as an
    array through the wrapper. The last member sleeps a little: the wrapper's
    qstat shows only Slurm's record of the array's last element (see
    tests/data/pbs/SOURCES.md), so it should also be the last to finish."""
    exp = make(tmp_path, pbs_flavor=flavor)
    rs = prog(exp, "import os, sys, time; time.sleep(float(sys.argv[-1])); "
                   "print(os.environ.get('SLURM_ARRAY_TASK_ID'), sys.argv[-1])")
    ens = exp.create_ensemble("arr", params={"s": ["0", "0", "0.5"]}, params_as_args=["s"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(time=2, array=True))
    exp.generate(ens)
    script = exp.preview(ens, show=False)
    assert ("#PBS -t 1-3" if flavor == "torque" else "#PBS -J 1-3") in script
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED] * 3
    assert [(Path(m.path) / f"{m.name}.out").read_text() for m in ens] == ["1 0\n", "2 0\n", "3 0.5\n"]


@pytest.mark.slurm
def test_cancel_with_qdel(cluster, tmp_path):
    exp = make(tmp_path)
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    rs = exp.create_run_settings(exe="sleep", exe_args=[marker])
    ens = exp.create_ensemble("sl", replicas=2, run_settings=rs, batch_settings=exp.create_batch_settings())
    exp.generate(ens)
    exp.start(ens, block=False)
    job_id = exp.controller.jobs["sl/sl_0"].record.job_id.split(":")[0]

    def sleeping() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]

    wait_for(lambda: len(sleeping()) == 2, "both members sleeping inside the job")
    exp.stop(ens)
    assert exp.get_status(ens) == [Status.CANCELLED, Status.CANCELLED]
    assert exp.controller.jobs["sl/sl_0"].status.reason == "cancelled by the experiment"
    listing = subprocess.run(["qstat", "-f", job_id], capture_output=True, text=True).stdout
    assert "job_state = C" in listing
    wait_for(lambda: not sleeping(), "the members' processes to end")


@pytest.mark.slurm
def test_classic_qstat_path_is_detected_once_and_one_qstat_per_poll(cluster, tmp_path, monkeypatch):
    """A recording qstat in front of the real one: the first query tries the
    JSON listing, sees the wrapper reject it, and every later poll issues
    exactly one classic ``qstat -f`` for all the jobs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "qstat.log"
    real = shutil.which("qstat")
    (bin_dir / "qstat").write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    (bin_dir / "qstat").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    exp = make(tmp_path)
    rs = prog(exp, "import time; time.sleep(1)")
    models = [exp.create_model(f"m{i}", rs, batch_settings=exp.create_batch_settings()) for i in range(3)]
    exp.generate(*models)
    exp.start(*models)
    assert exp.get_status(*models) == [Status.COMPLETED] * 3
    calls = log.read_text().splitlines()
    ids = sorted(exp.controller.jobs[m.key].record.job_id.split(":")[0] for m in models)
    assert calls[0].startswith("-f -F json -x ")
    assert calls[1] == "-f " + " ".join(ids)  # the same cycle, now classic, all three jobs
    assert sum(c.startswith("-f -F json") for c in calls) == 1  # detected once
    assert all(c.startswith("-f ") and "json" not in c for c in calls[1:])
    # every scheduler command went through the launcher: 3 qsub, the rest one qstat per poll cycle
    assert len(calls) == exp.launcher.commands_run - 3


@pytest.mark.slurm
def test_rejected_submission_reaches_the_user(cluster, tmp_path):
    exp = make(tmp_path)
    model = exp.create_model("m", exp.create_run_settings(exe="true"),
                             batch_settings=exp.create_batch_settings(queue="no_such_partition"))
    exp.generate(model)
    with pytest.raises(SchedulerError) as err:
        exp.start(model)
    msg = str(err.value)
    assert "`qsub -o" in msg and "no_such_partition" in msg and "partition" in msg.lower()


@pytest.mark.slurm
def test_a_job_unknown_to_qstat_is_reported_vanished(cluster, tmp_path):
    launcher = pbs.PbsLauncher()
    assert launcher.query(["999999"]) == {}  # real qstat: exit 153, nothing printed
    assert launcher.adopt("999999:0", {"job_dir": str(tmp_path), "members": 1})
    st = launcher.status(["999999:0"])["999999:0"]
    assert st.status is Status.UNKNOWN and st.done and "vanished" in st.reason
    (tmp_path / "0.rc").write_text("7\n")  # ...unless the member left its exit status
    assert launcher.status(["999999:0"])["999999:0"].returncode == 7


def test_a_member_killed_with_its_job_reports_the_kill(tmp_path):
    launcher = pbs.PbsLauncher()
    assert launcher.adopt("5.srv:0", {"job_dir": str(tmp_path), "members": 1})
    (tmp_path / "0.rc").write_text("143\n")
    walltime = {"5.srv": pbs.map_state("F", -29)}
    st = launcher._member_status("5.srv:0", "5.srv", 0, walltime, 143)
    assert (st.status, st.returncode) == (Status.FAILED, 143) and "JOB_EXEC_KILL_WALLTIME" in st.reason
    signalled = launcher._member_status("5.srv:0", "5.srv", 0, {"5.srv": pbs.map_state("F", 265)}, 137)
    assert "killed by signal 9 (SIGKILL)" in signalled.reason
    plain = launcher._member_status("5.srv:0", "5.srv", 0, {"5.srv": pbs.map_state("F", 1)}, 1)
    assert plain.reason == "exited with code 1"
