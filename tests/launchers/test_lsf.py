"""The ``lsf`` launcher: parsers on recorded real LSF output (tests/data/lsf,
see SOURCES.md there), settings and batch scripts, bad input, and end-to-end
runs against the documented LSF stand-in in tests/lsf_standin/ (LSF itself
cannot run here)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from _paths import DATA as TESTS_DATA

import simctl
from simctl import ConfigError, SchedulerError, Status
from simctl.plugins.launchers import lsf
from simctl.plugins.launchers.slurm import SbatchSettings

DATA = TESTS_DATA / "lsf"
PY = sys.executable


def sample(name: str) -> str:
    return (DATA / name).read_text()


def tsv(name: str) -> list[tuple[int, str, str]]:
    rows = [line.split("\t") for line in sample(name).splitlines()[1:]]
    return [(int(code), stream, text) for code, stream, text in rows]


def make(tmp_path: Path, name: str = "l", **options) -> simctl.Experiment:
    return simctl.Experiment(name, exp_path=str(tmp_path / name), launcher="lsf",
                             plugins=simctl.make_plugins(), launcher_options=options)


def wait_for(cond, what: str, hang: float = 60.0) -> None:
    """Poll until ``cond()``; fail (naming ``what``) only if something hangs."""
    end = time.monotonic() + hang
    while not cond():
        assert time.monotonic() < end, f"gave up waiting for: {what}"
        time.sleep(0.02)


# -- parsers on recorded output -------------------------------------------------------------------------


def test_bsub_confirmation_recorded_on_a_real_cluster():
    assert lsf.parse_bsub(sample("scarf_bsub.stdout.txt")) == "1223"
    assert lsf.parse_bsub("Job <4242> is submitted to default queue <normal>.\n") == "4242"


@pytest.mark.parametrize("code,stream,text", tsv("ert_bsub_rejections.tsv"))
def test_bsub_rejections_carry_no_job_id(code, stream, text):
    assert (code, stream) == (255, "stderr")
    with pytest.raises(ValueError):
        lsf.parse_bsub(text)


def test_bjobs_not_found_lines_are_recognised():
    assert lsf._NOT_FOUND.match(sample("ibm_bjobs_111_123.stderr.txt").strip())
    assert not lsf._NOT_FOUND.match("LSF is processing your request. Please wait ...")


@pytest.mark.parametrize("code,stream,text", tsv("ert_bkill_outputs.tsv"))
def test_bkill_outputs_that_mean_done(code, stream, text):
    assert lsf._BKILL_OK.match(text)
    assert not lsf._BKILL_OK.match("Job <11>: User permission denied")


def test_standin_default_listing_has_the_recorded_columns(lsf_env):
    """The stand-in's plain ``bjobs`` uses the real listing's header and column
    layout (IBM's documented output, tests/data/lsf)."""
    header, row = sample("ibm_bjobs_111_123.stdout.txt").splitlines()
    subprocess.run(["bsub", "-J", "myjob", "sleep", "30"], check=True, capture_output=True, text=True)
    out = subprocess.run(["bjobs"], capture_output=True, text=True)
    assert out.returncode == 0
    got_header, got_row = out.stdout.splitlines()
    assert got_header == header
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    assert [got_row[s - 1] if s else " " for s in starts] == [" "] * len(starts)  # columns line up
    fields = got_row.split()
    assert fields[0] == "1001" and fields[2] in ("PEND", "RUN") and "myjob" in fields
    assert pysqa_header_matches(sample("pysqa_bjobs_default.txt").splitlines()[0], header)
    subprocess.run(["bkill", "1001"], capture_output=True)


def pysqa_header_matches(a: str, b: str) -> bool:
    return a.split() == b.split()  # the same columns in the same order


def test_bjobs_format_lines_every_state():
    text = "\n".join([
        "1|a|PEND|-|-", "2|b|RUN|-|-", "3|c|DONE|-|-", "4|d|EXIT|2|-", "5|e|EXIT|130|TERM_OWNER: job killed by owner",
        "6|f|PSUSP|-|-", "7|g|USUSP|-|-", "8|h|SSUSP|-|-", "9|i|ZOMBI|-|-", "10|j|UNKWN|-|-", "11|k|WAIT|-|-",
        "12|l|PROV|-|-", "13|m|PDONE|-|-", "14|n|PERR|1|-", "15|o|BOGUS|-|-"])
    got = lsf.parse_bjobs(text)
    want = {"1": Status.QUEUED, "2": Status.RUNNING, "3": Status.COMPLETED, "4": Status.FAILED, "5": Status.FAILED,
            "6": Status.PAUSED, "7": Status.PAUSED, "8": Status.PAUSED, "9": Status.FAILED, "10": Status.UNKNOWN,
            "11": Status.QUEUED, "12": Status.QUEUED, "13": Status.COMPLETED, "14": Status.FAILED,
            "15": Status.UNKNOWN}
    assert {k: v.status for k, v in got.items()} == want
    assert got["3"].returncode == 0 and got["4"].returncode == 2 and got["4"].reason == "exited with code 2"
    assert got["5"].reason.startswith("TERM_OWNER: job killed by owner; exited with code 130")
    assert "signal 2" in got["5"].reason
    assert (got["15"].raw, got["15"].reason) == ("BOGUS", "unknown LSF job state 'BOGUS'")
    assert got["10"].reason == "LSF lost contact with the job's execution host" and not got["10"].done


def test_the_state_table_covers_every_lsf_state():
    assert set(lsf.STATES) >= {"PEND", "RUN", "DONE", "EXIT", "PSUSP", "USUSP", "SSUSP", "ZOMBI", "UNKWN",
                               "WAIT", "PROV"}


def test_array_elements_and_their_summary():
    got = lsf.parse_bjobs("7|arr[1]|DONE|-|-\n7|arr[2]|RUN|-|-\n7|arr[3]|EXIT|4|-\n")
    assert got["7[1]"].status is Status.COMPLETED and got["7[3]"].returncode == 4
    assert got["7"].status is Status.RUNNING and "1 of 3" in got["7"].reason
    done = lsf.parse_bjobs("7|arr[1]|DONE|-|-\n7|arr[2]|EXIT|4|-\n")
    assert done["7"].status is Status.FAILED
    enh = lsf.parse_bjobs("8[2]|x[2]|RUN|-|-\n")  # LSB_BJOBS_DISPLAY_ENH=Y style ids
    assert enh["8[2]"].status is Status.RUNNING and enh["8"].status is Status.RUNNING


@pytest.mark.parametrize("line", ["garbage", "1|a|RUN", "x|a|RUN|-|-", "1|a|EXIT|abc|-"])
def test_malformed_bjobs_output_is_an_error(line):
    with pytest.raises(ValueError):
        lsf.parse_bjobs(line)


# -- settings, scripts and bad input --------------------------------------------------------------------


@pytest.mark.parametrize("given,want", [("00:00:30", "1"), ("01:30:01", "1:31"), (45, "45"), ("00:59:59", "1:00"),
                                        (dt.timedelta(hours=2), "2:00"), ("1-00:00:00", "24:00")])
def test_walltime_is_whole_minutes_rounded_up(given, want, tmp_path):
    exp = make(tmp_path)
    bs = exp.create_batch_settings(time=given)
    job = simctl.BatchJob(name="g", cwd=str(tmp_path), batch_settings=bs, members=[], out="o", err="e")
    assert f"-W {want}" in exp.launcher.directives(job)


@pytest.mark.parametrize("bad", ["1:99", "soon", -1, dt.timedelta(seconds=-3)])
def test_malformed_walltime_is_rejected(tmp_path, bad):
    with pytest.raises(ConfigError, match="walltime"):
        make(tmp_path).create_batch_settings(time=bad)


def test_job_names_are_safe_for_lsf():
    assert lsf.lsf_job_name("my job[1] $x") == "my_job_1___x"
    assert lsf.lsf_job_name("") == "simctl"


def test_unsupported_run_command_lists_the_supported_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        make(tmp_path).create_run_settings(exe="true", run_command="srun")
    assert "'srun'" in str(err.value) and "'jsrun', 'mpiexec', 'mpirun', 'orterun'" in str(err.value)


def test_batch_settings_of_another_launcher_are_rejected(tmp_path):
    exp = make(tmp_path)
    rs = exp.create_run_settings(exe="true")
    ens = exp.create_ensemble("e", replicas=2, run_settings=rs, batch_settings=SbatchSettings(time="00:01:00"))
    with pytest.raises(ConfigError, match="SbatchSettings.*'lsf'.*LsfBatchSettings"):
        exp.start(ens)


def test_jsrun_and_mpirun_flags(tmp_path):
    exp = make(tmp_path)
    rs = exp.create_run_settings(exe="a.out", run_command="jsrun", run_args={"bind": "rs"})
    rs.set_nodes(2)
    rs.set_tasks_per_node(4)
    rs.set_cpus_per_task(7)
    rs.set_gpus_per_rs(1)
    assert rs.format_run_args() == ["--rs_per_host=4", "--tasks_per_rs=1", "--nrs=8", "--cpu_per_rs=7",
                                    "--bind=rs", "--gpu_per_rs=1"]
    rs.set_hostlist(["h1"])
    with pytest.raises(ConfigError, match="jsrun has no host list"):
        rs.format_run_args()
    mpi = exp.create_run_settings(exe="a.out", run_command="mpirun")
    mpi.set_tasks(3)
    mpi.set_hostlist("h1,h2")
    assert mpi.format_run_args() == ["-n", "3", "--host", "h1,h2"]


from _lifecycle_helpers import wait_until  # noqa: E402
from _script_helpers import STOP_LOOP  # noqa: E402  (the same script tail on every scheduler)


def _jobdir(text: str) -> str:
    m = re.search(r"(/\S+/\.simctl-batch/[^/\s]+)/", text)
    assert m, text
    return m.group(1)


def test_preview_shows_the_exact_batch_script(tmp_path):
    exp = make(tmp_path)
    rs = exp.create_run_settings(exe="/bin/echo", exe_args="hi")
    bs = exp.create_batch_settings(nodes=2, time="00:30:30", queue="batch", account="CSC123",
                                   batch_args={"alloc_flags": "smt4"})
    bs.set_tasks(8)
    bs.set_hostlist(["h1", "h2"])
    ens = exp.create_ensemble("ens", params={"x": ["$HOME", "a b"]}, params_as_args=["x"], run_settings=rs,
                              batch_settings=bs)
    exp.generate(ens)
    text = exp.preview(ens, show=False)
    d, e = _jobdir(text), str(tmp_path / "l" / "ens")
    assert text == f"""Experiment 'l' at {tmp_path / 'l'} on launcher 'lsf'
# Ensemble ens
# submitted with: bsub < {d}/job.sh
# 0.env: SSKEYOUT=ens_0
# 1.env: SSKEYOUT=ens_1
#!/bin/bash
#BSUB -J ens
#BSUB -o {e}/ens.batch.out
#BSUB -e {e}/ens.batch.err
#BSUB -W 31
#BSUB -nnodes 2
#BSUB -n 8
#BSUB -q batch
#BSUB -P CSC123
#BSUB -m "h1 h2"
#BSUB -alloc_flags smt4
# simctl batch job ens: 2 member(s)
set -u
( ( cd {e}/ens_0 && . {d}/0.env && exec /bin/echo hi -x '$HOME' ) > {e}/ens_0/ens_0.out 2> {e}/ens_0/ens_0.err & echo $! > {d}/0.pid; wait $!; echo $? > {d}/0.rc ) &
( ( cd {e}/ens_1 && . {d}/1.env && exec /bin/echo hi -x 'a b' ) > {e}/ens_1/ens_1.out 2> {e}/ens_1/ens_1.err & echo $! > {d}/1.pid; wait $!; echo $? > {d}/1.rc ) &
{STOP_LOOP.format(d=d)}"""  # noqa: E501 (the script's lines, verbatim)


def test_preview_of_a_model_and_of_an_array(tmp_path):
    exp = make(tmp_path)
    rs = exp.create_run_settings(exe="true")
    model = exp.create_model("solo", rs, path=str(tmp_path))
    text = exp.preview(model, show=False)
    assert "# submitted with: bsub < " in text and "#BSUB -J solo" in text and "( cd " in text
    ens = exp.create_ensemble("arr", replicas=2, run_settings=rs,
                              batch_settings=exp.create_batch_settings(array=True))
    exp.generate(ens)
    text = exp.preview(ens, show=False)
    assert '#BSUB -J "arr[1-2]"' in text.splitlines()
    assert 'case "${LSB_JOBINDEX}" in' in text and re.search(r"^  2\) \( cd .*/arr_1 ", text, re.M)


# -- end to end with the stand-in -------------------------------------------------------------------------


def prog(exp: simctl.Experiment, code: str, **kw) -> simctl.RunSettings:
    return exp.create_run_settings(exe=PY, exe_args=["-c", code], **kw)


def bjobs_record(state: Path, job_id: str) -> dict:
    return json.loads((state / "jobs" / f"{job_id}.json").read_text())


def test_ensemble_as_one_batch_job_with_a_failing_member(lsf_env, tmp_path):
    exp = make(tmp_path)
    rs = prog(exp, "import sys; print(sys.argv[1:]); sys.exit(4 if sys.argv[-1] == 'bad' else 0)")
    ens = exp.create_ensemble("ens", params={"x": ["it's $HOME", "bad", "a  b"]}, params_as_args=["x"],
                              run_settings=rs, batch_settings=exp.create_batch_settings(time="00:05:00"))
    exp.generate(ens)
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED, Status.FAILED, Status.COMPLETED]
    jobs = [exp.controller.jobs[m.key] for m in ens]
    assert [j.status.returncode for j in jobs] == [0, 4, 0] and jobs[1].status.reason == "exited with code 4"
    assert len({j.record.job_id.split(":")[0] for j in jobs}) == 1  # one bsub
    assert [(Path(m.path) / f"{m.name}.out").read_text() for m in ens] == [
        "['-x', \"it's $HOME\"]\n", "['-x', 'bad']\n", "['-x', 'a  b']\n"]
    job_id = jobs[0].record.job_id.split(":")[0]
    # members are seen done from their exit-status files, before the stand-in finishes the job
    wait_until(lambda: bjobs_record(lsf_env, job_id)["elements"]["0"]["stat"] == "DONE", "the job to finish")
    assert bjobs_record(lsf_env, job_id)["name"] == "ens"  # the #BSUB lines were read


def test_a_model_alone_is_a_batch_job_of_one(lsf_env, tmp_path):
    exp = make(tmp_path)
    model = exp.create_model("solo", prog(exp, "print('solo ran')"))
    exp.generate(model)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    assert (Path(model.path) / "solo.out").read_text() == "solo ran\n"


def test_ensemble_as_job_array(lsf_env, tmp_path):
    exp = make(tmp_path)
    rs = prog(exp, "import os, sys; print(os.environ['LSB_JOBINDEX'], sys.argv[-1]); "
                   "sys.exit(int(sys.argv[-1]))")
    ens = exp.create_ensemble("arr", params={"c": ["0", "6", "0"]}, params_as_args=["c"], run_settings=rs,
                              batch_settings=exp.create_batch_settings(array=True))
    exp.generate(ens)
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED, Status.FAILED, Status.COMPLETED]
    assert exp.controller.jobs["arr/arr_1"].status.returncode == 6
    assert [(Path(m.path) / f"{m.name}.out").read_text() for m in ens] == ["1 0\n", "2 6\n", "3 0\n"]
    job_id = exp.controller.jobs["arr/arr_0"].record.job_id.split(":")[0]
    assert sorted(bjobs_record(lsf_env, job_id)["elements"]) == ["1", "2", "3"]  # a real array of 3


def test_bkill_cancels_the_job_and_its_processes(lsf_env, tmp_path):
    exp = make(tmp_path)
    marker = f"{120 + os.getpid() % 1000 / 1000:.3f}"
    ens = exp.create_ensemble("sl", replicas=2, run_settings=exp.create_run_settings(exe="sleep", exe_args=[marker]),
                              batch_settings=exp.create_batch_settings())
    exp.generate(ens)
    exp.start(ens, block=False)

    def sleeping() -> list[psutil.Process]:
        return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] == ["sleep", marker]]

    wait_for(lambda: len(sleeping()) == 2, "both members sleeping")
    exp.stop(ens)
    assert exp.get_status(ens) == [Status.CANCELLED, Status.CANCELLED]
    job_id = exp.controller.jobs["sl/sl_0"].record.job_id.split(":")[0]
    out = subprocess.run(["bjobs", "-a", "-noheader", "-o", lsf.BJOBS_FORMAT, job_id], capture_output=True,
                         text=True).stdout
    assert out.startswith(f"{job_id}|sl|EXIT|") and "TERM_OWNER: job killed by owner" in out
    wait_for(lambda: not sleeping(), "the members' processes to end")
    again = subprocess.run(["bkill", job_id], capture_output=True, text=True)
    assert again.returncode == 255 and again.stderr == f"Job <{job_id}>: Job has already finished\n"
    exp.stop(ens)  # stopping again is harmless


def _blocked(exp: simctl.Experiment, tmp_path: Path, name: str) -> tuple[simctl.Model, Path]:
    go = tmp_path / f"{name}.go"
    code = f"import os, time\nwhile not os.path.exists({str(go)!r}): time.sleep(0.01)\nprint('released')"
    model = exp.create_model(name, prog(exp, code), batch_settings=exp.create_batch_settings())
    exp.generate(model)
    return model, go


def test_a_job_that_vanished_is_reported_and_no_longer_watched(lsf_env, tmp_path):
    exp = make(tmp_path)
    model, go = _blocked(exp, tmp_path, "gone")
    exp.start(model, block=False)
    job = exp.controller.jobs["gone"]
    wait_for(lambda: job.status.status is Status.RUNNING, "the job to run")
    job_id = job.record.job_id.split(":")[0]
    pgid = bjobs_record(lsf_env, job_id)["elements"]["0"]["pgid"]
    (lsf_env / "jobs" / f"{job_id}.json").unlink()  # LSF forgot it
    assert exp.controller.wait([job], timeout=60)
    assert job.status.status is Status.UNKNOWN and job.done and "vanished" in job.status.reason
    os.killpg(pgid, signal.SIGKILL)


def test_unexpected_bjobs_output_is_a_clear_error_and_the_job_stays_tracked(lsf_env, tmp_path, monkeypatch):
    exp = make(tmp_path)
    model, go = _blocked(exp, tmp_path, "held")
    exp.start(model, block=False)
    job = exp.controller.jobs["held"]
    wait_for(lambda: job.status.status is Status.RUNNING, "the job to run")
    monkeypatch.setenv("SIMCTL_LSF_STANDIN_GARBAGE", "bjobs")
    with pytest.raises(SchedulerError) as err:
        exp.launcher.status([job.record.job_id])
    msg = str(err.value)
    assert "bjobs printed something unexpected" in msg and "`bjobs -a -noheader -o" in msg
    assert "LSF stand-in garbage" in msg
    assert exp.controller.poll_once([job]) is False
    assert not job.done and job.status.status is Status.RUNNING
    assert job.record.reason.startswith("status unknown: bjobs printed something unexpected")
    monkeypatch.delenv("SIMCTL_LSF_STANDIN_GARBAGE")
    go.write_text("")
    assert exp.controller.wait([job], timeout=60)
    assert job.status.status is Status.COMPLETED
    assert (Path(model.path) / "held.out").read_text() == "released\n"


def test_rejected_submission_reaches_the_user(lsf_env, tmp_path):
    exp = make(tmp_path)
    model = exp.create_model("m", exp.create_run_settings(exe="true"),
                             batch_settings=exp.create_batch_settings(queue="nosuch"))
    exp.generate(model)
    with pytest.raises(SchedulerError) as err:
        exp.start(model)
    assert "`bsub` exited 255" in str(err.value) and "No such queue. Job not submitted" in str(err.value)


def test_missing_bsub_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    exp = make(tmp_path)
    model = exp.create_model("m", exp.create_run_settings(exe="true"),
                             batch_settings=exp.create_batch_settings())
    exp.generate(model)
    with pytest.raises(SchedulerError, match="bsub not found on PATH"):
        exp.start(model)


def test_one_bjobs_per_poll_for_all_jobs(lsf_env, tmp_path):
    exp = make(tmp_path)
    blocked = [_blocked(exp, tmp_path, f"m{i}") for i in range(5)]
    exp.start(*[m for m, _ in blocked], block=False)
    jobs = [exp.controller.jobs[m.key] for m, _ in blocked]
    wait_for(lambda: all(j.status.status is Status.RUNNING for j in jobs), "all five to run")
    # a launcher of its own (the experiment's monitor polls the other one meanwhile), finding the jobs
    # from what the manifest recorded
    launcher = lsf.LsfLauncher()
    assert all(launcher.adopt(j.record.job_id, j.record.handle) for j in jobs)
    statuses = launcher.status([j.record.job_id for j in jobs])
    assert launcher.commands_run == 1  # one bjobs for five jobs
    assert {st.status for st in statuses.values()} == {Status.RUNNING}
    for _, go in blocked:
        go.write_text("")
    assert exp.controller.wait(jobs, timeout=60)
    assert [j.status.status for j in jobs] == [Status.COMPLETED] * 5


def test_preview_is_the_script_that_is_submitted(lsf_env, tmp_path):
    exp = make(tmp_path)
    ens = exp.create_ensemble("ens", replicas=2, run_settings=prog(exp, "pass"),
                              batch_settings=exp.create_batch_settings(time=5))
    exp.generate(ens)
    text = exp.preview(ens, show=False)
    exp.start(ens)
    submitted = Path(_jobdir(text)) / "job.sh"
    assert text.endswith(submitted.read_text()) and text.count("#!/bin/bash") == 1
    spooled = lsf_env / "jobs" / (exp.controller.jobs["ens/ens_0"].record.job_id.split(":")[0] + ".sh")
    assert spooled.read_text() == submitted.read_text()  # what bsub read on stdin


def test_inside_an_allocation_models_are_local_steps(lsf_env, tmp_path, monkeypatch):
    monkeypatch.setenv("LSB_JOBID", "4242")
    exp = make(tmp_path)
    model = exp.create_model("step", prog(exp, "print('as a step')"))
    exp.generate(model)
    exp.start(model)
    job = exp.controller.jobs["step"]
    assert job.status.status is Status.COMPLETED and job.record.job_id.startswith("step:")
    assert exp.launcher.commands_run == 0 and not (lsf_env / "jobs").exists()
    assert lsf.LsfLauncher.detect()[0] == 100


def test_a_member_killed_with_its_job_reports_the_kill(tmp_path):
    launcher = lsf.LsfLauncher()
    assert launcher.adopt("9:0", {"job_dir": str(tmp_path), "members": 1})
    runlimit = lsf.parse_bjobs("9|j|EXIT|140|TERM_RUNLIMIT: job killed after reaching LSF run time limit\n")
    st = launcher._member_status("9:0", "9", 0, runlimit, 143)
    assert (st.status, st.returncode) == (Status.FAILED, 143) and "TERM_RUNLIMIT" in st.reason
    plain = launcher._member_status("9:0", "9", 0, lsf.parse_bjobs("9|j|EXIT|3|-\n"), 3)
    assert plain.reason == "exited with code 3"
