"""Defects found by trying the landed work as users and plugin authors would
(issue 8): one test per item that is not covered by the module of its own
subject (templates, generator, settings, expansion, Slurm...). Each failed on
the code before its fix. Real processes on the local launcher."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import psutil
import pytest
from _lifecycle_helpers import PY, SIMCTL, gone, make_exp, wait_until

import simctl
from simctl import ConfigError, Status
from simctl.core import manifest as mf

# 5 -------------------------------------------------------------------------------------------------------------


def test_a_moved_experiment_writes_its_manifest_where_it_is_now(tmp_path):
    exp = make_exp(tmp_path, "old")
    exp.start(exp.create_model("m", exp.create_run_settings("true"), path=str(tmp_path)))
    exp.close()
    shutil.move(str(tmp_path / "old"), str(tmp_path / "new"))
    again = make_exp(tmp_path, "new")
    assert again.controller.manifest.exp_path == str(tmp_path / "new")
    again.start(again.create_model("n", again.create_run_settings("true"), path=str(tmp_path)))
    assert not (tmp_path / "old").exists()
    assert {r.name for r in mf.load(str(tmp_path / "new")).jobs} == {"m", "n"}


# 8 (LSF stand-in: a batch script's preamble runs before `set -u`) --------------------------------------------


def test_the_preamble_runs_before_set_u(tmp_path):
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("e", replicas=1, run_settings=exp.create_run_settings("true"))
    launcher = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="slurm",
                                 plugins=simctl.make_plugins()).launcher
    bs = launcher.create_batch_settings(nodes=1)
    bs.add_preamble('if [ -z "$UNSET_BY_ANYONE" ]; then echo unset; fi')
    job = simctl.BatchJob(name="e", cwd=str(tmp_path), batch_settings=bs, members=[], job_dir=str(tmp_path / "j"))
    text = launcher.render_script(job)
    assert text.index("UNSET_BY_ANYONE") < text.index("set -u")
    out = subprocess.run(["bash", "-c", text.split("set -u")[0]], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout == "unset\n"
    assert ens  # the experiment was made on the local launcher: batch settings belong to the scheduler one


# 10, 11, 12 -----------------------------------------------------------------------------------------------------


def test_preview_shows_the_models_environment(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings("true", env_vars={"OMP_NUM_THREADS": "4", "DROP": None})
    text = exp.preview(exp.create_model("m", rs, path=str(tmp_path)), show=False)
    assert "OMP_NUM_THREADS=4" in text and "-u DROP" in text


class HalfStarts(simctl.ProcessLauncher):
    """Starts the first step, then fails as a whole system would."""

    name = "halfstarts"

    def start(self, launches):
        super().start(launches[:1])
        raise simctl.LaunchError("the scheduler went away after the first step")


def on_launcher(tmp_path: Path, cls: type[simctl.Launcher]) -> simctl.Experiment:
    """An experiment on ``cls``, registered in-process as a third party's launcher."""

    class Plugin:
        @simctl.hookimpl
        def simctl_register_launchers(self):
            return [cls]

    plugs = simctl.make_plugins()
    plugs.register(Plugin(), name=cls.name)
    return simctl.Experiment(cls.name, exp_path=str(tmp_path / cls.name), launcher=cls.name, plugins=plugs)


def test_a_launcher_that_fails_midway_loses_nothing(tmp_path):
    exp = on_launcher(tmp_path, HalfStarts)
    a = exp.create_model("a", exp.create_run_settings("sleep", exe_args="60"), path=str(tmp_path))
    b = exp.create_model("b", exp.create_run_settings("sleep", exe_args="60"), path=str(tmp_path))
    with pytest.raises(simctl.LaunchError, match="went away"):
        exp.start(a, b, block=False)
    assert exp.get_status(a) in ([Status.RUNNING], [Status.QUEUED])  # tracked, with its record
    assert exp.get_status(b) == [Status.FAILED]
    assert "not started: the launcher failed" in exp.controller.jobs["b"].status.reason
    pid = exp.controller.jobs["a"].record.handle["pid"]
    exp.stop(a)  # not "never started"
    assert exp.get_status(a) == [Status.CANCELLED] and gone(pid)
    exp.close()


class Flaky(simctl.ProcessLauncher):
    """Its status fails once, then works again."""

    name = "flaky"
    fail = threading.Event()

    def status(self, job_ids):
        if self.fail.is_set():
            self.fail.clear()
            raise simctl.LaunchError("status service hiccup")
        return super().status(job_ids)


def test_a_status_reason_that_no_longer_applies_is_cleared(tmp_path):
    exp = on_launcher(tmp_path, Flaky)
    m = exp.create_model("m", exp.create_run_settings("sleep", exe_args="60"), path=str(tmp_path))
    exp.start(m, block=False)
    Flaky.fail.set()
    exp.controller.wakeup.set()
    wait_until(lambda: "status unknown" in exp.controller.jobs["m"].record.reason, "the hiccup to be recorded")
    exp.controller.wakeup.set()
    wait_until(lambda: exp.controller.jobs["m"].record.reason == "", "the stale reason to go")
    exp.close()


# 13, 15 ---------------------------------------------------------------------------------------------------------


def test_overwrite_is_refused_while_the_model_runs(tmp_path):
    exp = make_exp(tmp_path)
    m = exp.create_model("m", exp.create_run_settings("sleep", exe_args="60"))
    exp.generate(m)
    exp.start(m, block=False)
    with pytest.raises(ConfigError, match="would delete the directories of running jobs: m"):
        exp.generate(m, overwrite=True)
    assert Path(m.path).is_dir()
    exp.stop(m)
    exp.generate(m, overwrite=True)  # fine once it ended


def test_two_experiments_on_one_path_keep_each_others_records(tmp_path):
    one, two = make_exp(tmp_path, "same"), make_exp(tmp_path, "same")
    one.start(one.create_model("a", one.create_run_settings("true"), path=str(tmp_path)))
    two.start(two.create_model("b", two.create_run_settings("true"), path=str(tmp_path)))
    one.start(one.create_model("c", one.create_run_settings("true"), path=str(tmp_path)))
    assert sorted(r.name for r in mf.load(str(tmp_path / "same")).jobs) == ["a", "b", "c"]


# 20, 21 -----------------------------------------------------------------------------------------------------------


def test_the_local_launcher_enforces_walltime(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings("sleep", exe_args="30")
    rs.set_walltime("00:00:01")
    m = exp.create_model("m", rs, path=str(tmp_path))
    exp.start(m)
    st = exp.controller.jobs["m"].status
    assert st.status is Status.FAILED and "walltime 00:00:01 exceeded" in st.reason


@pytest.mark.parametrize("interval", [0, -1, float("nan"), "1", True])
def test_poll_refuses_an_interval_that_would_busy_loop(tmp_path, interval):
    with pytest.raises(ConfigError, match="interval"):
        make_exp(tmp_path).poll(interval=interval)


# 22 ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["two\nlines", "tab\there", "x" * 201, "é" * 101])
def test_names_that_cannot_be_a_row_or_a_directory_are_refused(tmp_path, name):
    exp = make_exp(tmp_path)
    with pytest.raises(ConfigError, match="control characters|at most 200 bytes"):
        exp.create_model(name, exp.create_run_settings("true"))


def test_a_200_byte_name_generates_and_runs(tmp_path):
    exp = make_exp(tmp_path)
    m = exp.create_model("n" * 200, exp.create_run_settings("true"))
    exp.generate(m)
    exp.start(m)
    assert exp.get_status(m) == [Status.COMPLETED]


def test_a_tilde_in_exp_path_means_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    exp = simctl.Experiment("t", exp_path="~/study", plugins=simctl.make_plugins())
    assert exp.exp_path == str(tmp_path / "home" / "study")


def test_a_manifest_of_a_future_version_is_refused(tmp_path):
    path = tmp_path / ".simctl"
    path.mkdir()
    (path / "manifest.json").write_text(json.dumps({"experiment": "x", "exp_path": str(tmp_path), "launcher": "local",
                                                     "version": 99, "jobs": []}))
    with pytest.raises(ConfigError, match="version 99, which this simctl does not know"):
        mf.load(str(tmp_path))
    res = subprocess.run([SIMCTL, "status", str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 1 and "version 99" in res.stderr


# 23, 24 -------------------------------------------------------------------------------------------------------------


def test_finished_experiments_hold_no_descriptors_or_threads(tmp_path):
    me = psutil.Process()

    def run_one(i: int) -> None:
        exp = make_exp(tmp_path, f"e{i}")
        exp.start(exp.create_model("m", exp.create_run_settings("true"), path=str(tmp_path)))

    run_one(0)  # first use of everything
    wait_until(lambda: not any(t.name == "simctl-process-reaper" for t in threading.enumerate()), "reaper to quit")
    fds, threads = me.num_fds(), threading.active_count()
    for i in range(1, 30):
        run_one(i)
    wait_until(lambda: not any(t.name == "simctl-process-reaper" for t in threading.enumerate()), "reapers to quit")
    assert me.num_fds() <= fds + 2 and threading.active_count() <= threads + 1


def test_the_file_watcher_forgets_cancelled_jobs(tmp_path):
    watcher = simctl.FileWatcher(interval=0.01)
    (tmp_path / "j").mkdir()
    watcher.watch("123", str(tmp_path / "j"), ".rc", 2)
    assert watcher.watching() == ["123"]
    watcher.unwatch("123")  # what the scheduler base does when it cancels job 123
    assert watcher.watching() == []
    wait_until(lambda: watcher._thread is None, "the watcher thread to end")


# 29, 31, 32, 34 -----------------------------------------------------------------------------------------------------


def test_a_run_command_the_launcher_lacks_says_which_it_has(tmp_path):
    # the local launcher runs MPI's launchers (issue 19), not a scheduler's
    with pytest.raises(ConfigError, match="does not support run command 'srun'; supported: 'mpiexec', 'mpirun', "
                                          "'orterun'"):
        make_exp(tmp_path).create_run_settings("true", run_command="srun")


@pytest.mark.parametrize("call,match", [
    (lambda p: simctl.Experiment("x", exp_path=123, plugins=p), "exp_path must be a path"),
    (lambda p: simctl.Experiment("x", launcher_options="max=1", plugins=p), "launcher_options must be a dict"),
    (lambda p: simctl.Experiment("x", launcher=5, plugins=p), "launcher must be a launcher's name"),
])
def test_wrong_types_at_the_boundary(tmp_path, monkeypatch, call, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=match):
        call(simctl.make_plugins())


def test_more_wrong_arguments_name_themselves(tmp_path):
    exp = make_exp(tmp_path)
    rs = exp.create_run_settings("true")
    with pytest.raises(ConfigError, match="params must be a dict"):
        exp.create_model("m", rs, params=[1, 2])
    with pytest.raises(ConfigError, match="params names must be non-empty strings"):
        exp.create_model("m", rs, params={1: 2})
    ens = exp.create_ensemble("e", params={"steps": [1, 2]}, params_as_args="steps", run_settings=rs)
    assert ens.params_as_args == ["steps"]  # one name, not five letters
    with pytest.raises(ConfigError, match=r"cannot be called as f\(names, values, n_models\)"):
        exp.create_ensemble("e2", params={"a": [1]}, run_settings=rs, perm_strategy=lambda names: [])
    blocker = tmp_path / "file"
    blocker.write_text("")
    bad = simctl.Experiment("x", exp_path=str(blocker / "exp"), plugins=simctl.make_plugins())
    with pytest.raises(ConfigError, match="is not a directory"):
        bad.generate(bad.create_model("m", rs))


def test_a_relative_exe_is_the_drivers(tmp_path, monkeypatch):
    (tmp_path / "sim.sh").write_text("#!/bin/sh\necho ran\n")
    (tmp_path / "sim.sh").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    exp = make_exp(tmp_path)
    m = exp.create_model("m", exp.create_run_settings("./sim.sh"))
    exp.generate(m)
    exp.start(m)
    assert exp.get_status(m) == [Status.COMPLETED] and (Path(m.path) / "m.out").read_text() == "ran\n"


def test_settings_of_another_launchers_type_are_refused(tmp_path):
    lsf_rs = simctl.Experiment("l", exp_path=str(tmp_path / "l"), launcher="lsf",
                               plugins=simctl.make_plugins()).launcher.create_run_settings("true", run_command=None)
    slurm = simctl.Experiment("s", exp_path=str(tmp_path / "s"), launcher="slurm", plugins=simctl.make_plugins())
    with pytest.raises(ConfigError, match="LsfRunSettings cannot be used with launcher 'slurm'"):
        slurm.preview(slurm.create_model("m", lsf_rs), show=False)


def test_pbs_resources_conflicting_or_empty_are_refused(tmp_path):
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="pbs", plugins=simctl.make_plugins())
    bs = exp.create_batch_settings(nodes=2)
    with pytest.raises(TypeError, match="'foo' needs a value"):  # a ConfigTypeError: also a ConfigError
        bs.set_resource("foo", None)
    with pytest.raises(ConfigError, match="'foo' needs a value") as empty:
        bs.set_resource("foo", "")
    assert not isinstance(empty.value, TypeError)
    conflict = r"resources\['select'\] and nodes each say how many nodes"
    with pytest.raises(ConfigError, match=conflict):  # refused when set, as SmartSim does (issue 19)
        bs.set_resource("select", "2:ncpus=4")
    assert bs.resources == {} and bs.nodes == 2  # nothing was changed
    bs.resources["select"] = "2:ncpus=4"  # changed in place, past the setters: refused before launch
    with pytest.raises(ConfigError, match=conflict):
        exp.preview(exp.create_model("m", exp.create_run_settings("true"), batch_settings=bs), show=False)


@pytest.mark.parametrize("make", [
    lambda exp: exp.create_batch_settings(nodes=10, resources={"select": 10}),
    lambda exp: exp.create_batch_settings(resources={"nodes": 10, "select": 20}),
    lambda exp: exp.create_batch_settings(hostlist=["a", "b"], resources={"nodes": 2}),
    lambda exp: exp.create_batch_settings(resources={"select": 10}).set_nodes(10),
    lambda exp: setattr(exp.create_batch_settings(nodes=10), "resources", {"select": 10}),
], ids=["init", "select-and-nodes", "hostlist", "set_nodes", "assign"])
def test_pbs_conflicting_node_counts_are_refused_when_made(tmp_path, make):
    """Issue 19: two node counts (nodes=10 with resources={'select': 10}...) are
    an error as soon as the settings say so, naming both."""
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="pbs", plugins=simctl.make_plugins())
    with pytest.raises(ConfigError, match=r"each say how many nodes .*give the count once"):
        make(exp)
    ok = exp.create_batch_settings(resources={"select": "2:ncpus=4", "mem": "4gb"})
    ok.set_resource("place", "scatter")
    assert ok.resources == {"select": "2:ncpus=4", "mem": "4gb", "place": "scatter"}


# 17 -----------------------------------------------------------------------------------------------------------------


def test_a_second_ctrl_c_during_the_stop_does_not_orphan_the_models(tmp_path):
    """Two Ctrl-Cs from outside, each after a handshake: the first once the
    model runs; the second once the stop is under way: the driver said so on
    stderr ("Interrupted: stopping ...") and the model, which ignores SIGTERM,
    recorded the stop's SIGTERM (sent where Ctrl-C is ignored), so the second
    lands during the stop's grace period, before the SIGKILL."""
    code = """
import os, sys
from simctl import Experiment
exp = Experiment("c", exp_path="exp", launcher="local", launcher_options={"stop_grace": 1.5})
prog = ("import signal, time; signal.signal(signal.SIGTERM, lambda *a: open('term', 'w').close()); "
        "open('pid', 'w').write(str(__import__('os').getpid())); time.sleep(300)")
m = exp.create_model("stubborn", exp.create_run_settings(exe=sys.executable, exe_args=["-c", prog]), path=os.getcwd())
try:
    exp.start(m)
except KeyboardInterrupt:
    print("status", exp.get_status(m)[0].value, flush=True)
"""
    (tmp_path / "d.py").write_text(code)
    proc = subprocess.Popen([PY, "d.py"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (tmp_path / "pid").exists(), "the model to run")
        proc.send_signal(signal.SIGINT)
        said = []
        for line in proc.stderr:  # until the driver says it is stopping (or ends, failing below)
            said.append(line)
            if "Interrupted: stopping" in line:
                break
        assert said and "Interrupted: stopping" in said[-1], "".join(said)
        wait_until(lambda: (tmp_path / "term").exists(), "the stop to send the model SIGTERM")
        proc.send_signal(signal.SIGINT)  # during the stop's grace period
        out, err = proc.communicate(timeout=120)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    assert "status Cancelled" in out, "".join(said) + err
    assert gone(int((tmp_path / "pid").read_text()))


# 18 -------------------------------------------------------------------------------------------------------------


def test_values_in_params_and_inline_in_a_file_are_refused(tmp_path):
    conf = tmp_path / "in.txt"
    conf.write_text("THERMO = ;[10,11,12];\n")
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("e", params={"THERMO": [1, 2]}, run_settings=exp.create_run_settings("true"))
    with pytest.raises(ConfigError, match=r"\['THERMO'\] have values in params and also inline"):
        ens.attach_generator_files(to_configure=[str(conf)])
    names_only = exp.create_ensemble("f", params={"THERMO"}, run_settings=exp.create_run_settings("true"))
    names_only.attach_generator_files(to_configure=[str(conf)])
    assert len(names_only) == 3


class Vanishing(simctl.ProcessLauncher):
    """Loses track of every job: the launcher gives up on it (final), status UNKNOWN."""

    name = "vanishing"

    def status(self, job_ids):
        return {j: simctl.JobStatus(Status.UNKNOWN, None, "vanished from the queue", final=True) for j in job_ids}


def test_a_job_given_up_on_is_finished(tmp_path):
    finished = []

    class Watch:
        @simctl.hookimpl
        def simctl_entity_finished(self, entity, status, experiment):
            finished.append((entity.name, status.status))

    exp = on_launcher(tmp_path, Vanishing)
    exp.plugins.register(Watch(), name="watch")
    m = exp.create_model("m", exp.create_run_settings("sleep", exe_args="60"), path=str(tmp_path))
    exp.start(m)  # returns: a job given up on is not waited for
    assert exp.finished(m) and finished == [("m", Status.UNKNOWN)]
    assert exp.controller.jobs["m"].record.finished_at is not None
    exp.launcher.stop([exp.controller.jobs["m"].record.job_id])  # the process itself still ran
