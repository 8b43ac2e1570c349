"""The controller: one monitor, one status call per launcher per poll cycle,
the manifest, bad input and faults, Ctrl-C during a blocking start."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from _lifecycle_helpers import (
    PY,
    code_settings,
    gone,
    kill_pids,
    load_manifest,
    make_exp,
    manifest_statuses,
    read_pids,
    recorder_of,
    run_driver,
    wait_until,
    write_script,
)

import simctl
from simctl import Status
from simctl.core import manifest as mf

# -- one monitor, one status call per cycle -------------------------------------------------------------


class StatusCallLog:
    """Wraps a launcher instance's ``status`` to observe each call (what it
    carried, which thread made it, what was active then); the real method runs."""

    def __init__(self, exp: simctl.Experiment) -> None:
        self.exp = exp
        self.real = exp.launcher.status
        self.calls: list[tuple[list[str], set[str], str, int]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        exp.launcher.status = self  # type: ignore[method-assign]

    def __call__(self, job_ids):
        c = self.exp.controller
        with c.lock:
            active = {j.record.job_id for j in c.jobs.values() if not j.done and j.record.job_id}
        monitors = sum(t.name == "simctl-monitor" for t in threading.enumerate())
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.calls.append((list(job_ids), active, threading.current_thread().name, monitors))
        try:
            return self.real(job_ids)
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.slow
def test_one_status_call_per_poll_cycle_carrying_every_active_job(tmp_path):
    exp = make_exp(tmp_path)
    log = StatusCallLog(exp)
    ens = exp.create_ensemble("ten")
    for i, t in enumerate([0.2, 0.4, 0.6, 0.8, 1.0, 0.3, 0.5, 0.7, 0.9, 1.1]):
        ens.add_model(exp.create_model(f"ten_{i}", exp.create_run_settings("sleep", exe_args=[str(t)]),
                                       path=str(tmp_path)))
    exp.start(ens, block=True)
    assert exp.get_status(ens) == [Status.COMPLETED] * 10
    assert log.calls, "the monitor never asked the launcher"
    # the first cycle asked about all ten jobs at once
    assert len(log.calls[0][0]) == 10
    for ids, active, thread, monitors in log.calls:
        assert set(ids) == active  # every call carried every active job, and only those
        assert len(ids) == len(set(ids))
        assert thread == "simctl-monitor"
        assert monitors == 1
    assert log.max_in_flight == 1
    # as jobs finish, later calls carry fewer ids: the set shrinks, never split per job
    sizes = [len(ids) for ids, *_ in log.calls]
    assert sizes == sorted(sizes, reverse=True)


@pytest.mark.slow
def test_one_monitor_for_several_starts(tmp_path):
    exp = make_exp(tmp_path)
    log = StatusCallLog(exp)
    a = exp.create_ensemble("a", replicas=3, run_settings=exp.create_run_settings("sleep", exe_args="0.5"),
                            path=str(tmp_path))
    b = exp.create_ensemble("b", replicas=3, run_settings=exp.create_run_settings("sleep", exe_args="0.7"),
                            path=str(tmp_path))
    exp.start(a, block=False)
    exp.start(b, block=False)
    exp.poll(interval=0.2, verbose=False)
    assert exp.get_status(a, b) == [Status.COMPLETED] * 6
    assert all(monitors == 1 for *_, monitors in log.calls)
    assert any(len(ids) == 6 for ids, *_ in log.calls)  # both starts watched in one call
    for ids, active, _, _ in log.calls:
        assert set(ids) == active


@pytest.mark.slow
def test_monitor_thread_ends_when_nothing_is_active(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("m", exp.create_run_settings("true"), path=str(tmp_path))
    exp.start(model)
    wait_until(lambda: not any(t.name == "simctl-monitor" and t.is_alive() and
                               t is exp.controller._thread for t in threading.enumerate()),
               "the monitor to stop")
    exp.start(model)  # and it comes back for the next start
    assert exp.get_status(model) == [Status.COMPLETED]


# -- the manifest ----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_manifest_is_written_and_loadable(tmp_path):
    exp = make_exp(tmp_path)
    ok = exp.create_model("ok", exp.create_run_settings("true"), path=str(tmp_path))
    bad = exp.create_model("bad", exp.create_run_settings("sh", exe_args=["-c", "exit 5"]), path=str(tmp_path))
    exp.start(ok, bad)
    path = tmp_path / "x" / ".simctl" / "manifest.json"
    assert path.exists()
    json.loads(path.read_text())  # valid JSON
    man = mf.load(exp.exp_path)
    assert man is not None
    assert man.experiment == "x" and man.launcher == "local" and man.exp_path == exp.exp_path
    assert [(j.name, j.status, j.returncode) for j in man.jobs] == [
        ("ok", Status.COMPLETED, 0), ("bad", Status.FAILED, 5)]
    assert all(j.finished_at is not None and j.launched_at is not None for j in man.jobs)
    assert man.latest()["bad"].reason
    # nothing but the manifest and, while the experiment is open, its writer lock is in .simctl
    # (temporary files were renamed)
    assert sorted(os.listdir(path.parent)) == ["driver.lock", "manifest.json", "manifest.lock"]
    exp.close()
    assert sorted(os.listdir(path.parent)) == ["manifest.json", "manifest.lock"]


@pytest.mark.slow
def test_manifest_shows_running_while_jobs_run(tmp_path):
    exp = make_exp(tmp_path)
    gate = tmp_path / "gate"
    rs = code_settings(exp, f"""
        import os, time
        while not os.path.exists({str(gate)!r}):
            time.sleep(0.02)
    """)
    model = exp.create_model("live", rs, path=str(tmp_path))
    exp.start(model, block=False)
    wait_until(lambda: manifest_statuses(tmp_path / "x").get("live") == "Running", "RUNNING on disk")
    gate.write_text("")
    exp.poll(interval=0.2, verbose=False)
    assert manifest_statuses(tmp_path / "x") == {"live": "Completed"}


@pytest.mark.slow
def test_manifest_keeps_earlier_runs_across_experiment_objects(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("m", exp.create_run_settings("true"), path=str(tmp_path))
    exp.start(model)
    again = make_exp(tmp_path)  # a new driver on the same exp_path
    model2 = again.create_model("m", again.create_run_settings("false"), path=str(tmp_path))
    again.start(model2)
    man = load_manifest(again)
    assert [(j.name, j.run, j.status) for j in man.jobs] == [("m", 1, Status.COMPLETED), ("m", 2, Status.FAILED)]


def test_corrupt_manifest_is_a_clear_error(tmp_path):
    d = tmp_path / "x" / ".simctl"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(simctl.ConfigError, match="not a simctl manifest"):
        mf.load(str(tmp_path / "x"))


# -- bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_starting_an_entity_twice_while_it_runs_is_an_error(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("twice", exp.create_run_settings("sleep", exe_args="30"), path=str(tmp_path))
    exp.start(model, block=False)
    try:
        with pytest.raises(simctl.ConfigError, match="already running: twice"):
            exp.start(model, block=False)
        ens = exp.create_ensemble("e", replicas=1, run_settings=exp.create_run_settings("true"), path=str(tmp_path))
        ens.add_model(exp.create_model("twice", exp.create_run_settings("sleep", exe_args="30")))
        exp.start(ens, block=False)  # its member "twice" is another job than the model "twice"
        assert exp.get_status(ens["twice"]) != [Status.NEW]
        with pytest.raises(simctl.ConfigError, match="already running: .*e/twice"):
            exp.start(ens)
    finally:
        exp.stop()
    assert exp.get_status(model) == [Status.CANCELLED]
    assert exp.get_status(ens["twice"]) == [Status.CANCELLED]
    assert len(exp.summary_data()) == 3


def test_same_model_twice_in_one_start_is_an_error(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("dup", exp.create_run_settings("true"), path=str(tmp_path))
    with pytest.raises(simctl.ConfigError, match="given twice"):
        exp.start(model, model)
    assert exp.summary_data() == []


def test_stopping_an_entity_never_started_is_an_error(tmp_path):
    exp = make_exp(tmp_path)
    model = exp.create_model("idle", exp.create_run_settings("true"), path=str(tmp_path))
    with pytest.raises(simctl.ConfigError, match="never started"):
        exp.stop(model)
    ens = exp.create_ensemble("idle_ens", replicas=2, run_settings=exp.create_run_settings("true"))
    with pytest.raises(simctl.ConfigError, match="never started"):
        exp.stop(ens)


def test_empty_ensemble_cannot_start(tmp_path):
    exp = make_exp(tmp_path)
    ens = exp.create_ensemble("empty")
    with pytest.raises(simctl.ConfigError, match="no members"):
        exp.start(ens)


def test_unwritable_experiment_path_is_an_error_before_anything_runs(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    plugs = simctl.make_plugins()
    exp = simctl.Experiment("x", exp_path=str(blocker / "exp"), launcher="local", plugins=plugs)
    marker = tmp_path / "ran"
    model = exp.create_model("m", exp.create_run_settings("touch", exe_args=[str(marker)]), path=str(tmp_path))
    with pytest.raises(simctl.ConfigError, match="manifest"):
        exp.start(model)
    time.sleep(0.2)
    assert not marker.exists()
    assert exp.get_status(model) == [Status.NEW]
    exp.launcher.close()


def test_launcher_options_are_checked(tmp_path):
    with pytest.raises(simctl.ConfigError, match="max_concurrent"):
        make_exp(tmp_path, launcher_options={"max_concurrent": 0})
    with pytest.raises(simctl.ConfigError, match="stop_grace"):
        make_exp(tmp_path, launcher_options={"stop_grace": -1})


# -- plugin hooks that raise --------------------------------------------------------------------------------------


class Raiser:
    def __init__(self, where: str) -> None:
        self.where = where

    @simctl.hookimpl
    def simctl_entity_before_launch(self, entity, step, experiment):
        if self.where == "before" and entity.name.endswith("_1"):
            raise RuntimeError("before_launch exploded")

    @simctl.hookimpl
    def simctl_entity_status_changed(self, entity, old, new, experiment):
        if self.where == "changed":
            raise RuntimeError("status_changed exploded")

    @simctl.hookimpl
    def simctl_entity_finished(self, entity, status, experiment):
        if self.where == "finished":
            raise RuntimeError("finished exploded")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["changed", "finished"])
def test_a_raising_lifecycle_hook_is_reported_and_bookkeeping_stays_right(tmp_path, where):
    exp = make_exp(tmp_path)
    exp.plugins.register(Raiser(where), name="raiser")
    ens = exp.create_ensemble("h", replicas=3, run_settings=exp.create_run_settings("true"), path=str(tmp_path))
    bad = exp.create_model("bad", exp.create_run_settings("false"), path=str(tmp_path))
    exp.start(ens, bad)
    assert exp.get_status(ens, bad) == [Status.COMPLETED] * 3 + [Status.FAILED]
    errors = exp.hook_errors
    assert errors and all("raiser" in e and f"{where} exploded" in e for e in errors)
    assert {j.name: j.status for j in load_manifest(exp).jobs} == {
        "h_0": Status.COMPLETED, "h_1": Status.COMPLETED, "h_2": Status.COMPLETED, "bad": Status.FAILED}
    # the other plugin still saw everything
    rec = recorder_of(exp)
    assert sorted(n for n, _ in rec.finished) == ["bad", "h_0", "h_1", "h_2"]


@pytest.mark.slow
def test_a_raising_before_launch_hook_fails_that_model_without_launching_it(tmp_path):
    exp = make_exp(tmp_path)
    exp.plugins.register(Raiser("before"), name="raiser")
    script = write_script(tmp_path / "mark.py", """
        import os, sys
        open(os.path.join(sys.argv[1], "ran-" + os.environ["MARK"]), "w").write("ran")
    """)
    rs = exp.create_run_settings(PY, exe_args=[str(script), str(tmp_path)])
    ens = exp.create_ensemble("b", replicas=3, run_settings=rs, path=str(tmp_path))
    for m in ens:
        m.run_settings = exp.create_run_settings(PY, exe_args=[str(script), str(tmp_path)], env_vars={"MARK": m.name})
    exp.start(ens)
    assert exp.get_status(ens) == [Status.COMPLETED, Status.FAILED, Status.COMPLETED]
    assert (tmp_path / "ran-b_0").exists() and (tmp_path / "ran-b_2").exists()
    assert not (tmp_path / "ran-b_1").exists()  # never ran
    assert not (tmp_path / "b_1").exists()  # its directory (<ensemble path>/<member>) was not even made
    rec = {r.name: r for r in exp.summary_data()}["b_1"]
    assert rec.job_id is None and "raiser" in rec.reason and "before_launch exploded" in rec.reason
    assert any("before_launch exploded" in e for e in exp.hook_errors)
    assert {j.name: j.status for j in load_manifest(exp).jobs}["b_1"] is Status.FAILED
    assert ("b_1", Status.FAILED) in [(n, s.status) for n, s in recorder_of(exp).finished]


@pytest.mark.slow
def test_a_raising_created_hook_does_not_stop_the_driver(tmp_path):
    class BadCreated:
        @simctl.hookimpl
        def simctl_entity_created(self, entity, experiment):
            raise RuntimeError("created exploded")

    exp = make_exp(tmp_path)
    exp.plugins.register(BadCreated(), name="badcreated")
    model = exp.create_model("c", exp.create_run_settings("true"), path=str(tmp_path))
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    assert any("created exploded" in e for e in exp.hook_errors)


# -- Ctrl-C during start(block=True) ---------------------------------------------------------------------------------

INTERRUPT_DRIVER = """
    import os, sys
    import simctl
    exp = simctl.Experiment("intr", exp_path="exp", launcher="local")
    # absolute paths: each member runs in its own directory, exp/held/held_<i>
    rs = exp.create_run_settings(sys.executable, exe_args=[os.path.abspath("child.py"), os.path.abspath("pids")])
    ens = exp.create_ensemble("held", replicas=3, run_settings=rs)
    print("starting", flush=True)
    {call}
    print("start returned", flush=True)
"""
BLOCKING_START = "exp.start(ens, block=True, kill_on_interrupt={kill})"
START_THEN_POLL = "exp.start(ens, block=False); exp.poll(interval=0.2, verbose=False, kill_on_interrupt={kill})"

INTERRUPT_CHILD = """
    import os, sys, time
    with open(sys.argv[1], "a") as fh:
        fh.write(f"{os.getpid()} ")
    time.sleep(60)
"""


def _interrupted_driver(tmp_path, kill: bool, call: str = BLOCKING_START):
    write_script(tmp_path / "child.py", INTERRUPT_CHILD)
    proc = run_driver(tmp_path, INTERRUPT_DRIVER.format(call=call.format(kill=kill)), wait=False)
    try:
        pids = wait_until(lambda: len(read_pids(tmp_path / "pids")) == 3 and read_pids(tmp_path / "pids"),
                          "three children to run")
        wait_until(lambda: list(manifest_statuses(tmp_path / "exp").values()) == ["Running"] * 3,
                   "the manifest to show them RUNNING")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    except BaseException:
        proc.kill()
        proc.communicate()
        kill_pids(read_pids(tmp_path / "pids"))
        raise
    return proc, out, err, pids


@pytest.mark.slow
def test_ctrl_c_during_blocking_start_stops_what_it_launched(tmp_path):
    proc, out, err, pids = _interrupted_driver(tmp_path, kill=True)
    try:
        assert "starting" in out and "start returned" not in out
        assert proc.returncode != 0
        assert "Interrupted: stopping 3 job(s) start() was waiting for" in err
        # it ends with one line saying what was stopped, no traceback, and Python's exit status for Ctrl-C
        assert err.strip().splitlines()[-1].startswith("simctl: interrupted (Ctrl-C): stopped 3 job(s) start() "
                                                       "was waiting for: held/held_"), err
        assert "Traceback" not in err and proc.returncode == -signal.SIGINT
        assert all(gone(p) for p in pids)
        assert manifest_statuses(tmp_path / "exp") == {f"held_{i}": "Cancelled" for i in range(3)}
    finally:
        kill_pids(pids)


@pytest.mark.slow
def test_ctrl_c_with_kill_on_interrupt_false_leaves_them_running(tmp_path):
    proc, out, err, pids = _interrupted_driver(tmp_path, kill=False)
    try:
        assert "3 job(s) keep running (kill_on_interrupt=False" in err
        assert proc.returncode != 0
        time.sleep(0.3)
        assert all(not gone(p) for p in pids)
    finally:
        kill_pids(pids)
    wait_until(lambda: all(gone(p) for p in pids), "cleanup of the children")


@pytest.mark.slow
def test_ctrl_c_during_poll_stops_the_jobs_it_waited_for(tmp_path):
    proc, out, err, pids = _interrupted_driver(tmp_path, kill=True, call=START_THEN_POLL)
    try:
        assert proc.returncode != 0 and "start returned" not in out
        assert "Interrupted: stopping 3 job(s) poll() was waiting for" in err
        assert all(gone(p) for p in pids)
        assert manifest_statuses(tmp_path / "exp") == {f"held_{i}": "Cancelled" for i in range(3)}
    finally:
        kill_pids(pids)
