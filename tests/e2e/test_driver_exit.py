"""When the driver exits, nothing it started is left unaccounted for (issue 7;
issue 8 items 16 and 17): a normal exit or SIGTERM stops what still runs and
records it; after SIGKILL, ``simctl status`` finds out the truth from the
manifest and ``simctl stop`` stops what is left."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from _lifecycle_helpers import SIMCTL, gone, manifest_statuses, run_driver, wait_until

from simctl.core import manifest as mf
from simctl.core.serialize import converter

DRIVER = """
import os, sys, time
from simctl import Experiment
exp = Experiment("d", exp_path="exp", launcher="local")
sleeper = exp.create_model("sleeper", exp.create_run_settings(exe="sleep", exe_args="120"), path=os.getcwd())
quick = exp.create_model("quick", exp.create_run_settings(exe="sleep", exe_args="1"), path=os.getcwd())
exp.start(sleeper, quick, block=False)
print("started", flush=True)
{after}
"""


def _records(tmp_path: Path) -> dict[str, dict]:
    man = mf.load(str(tmp_path / "exp"))
    return {r.name: converter.unstructure(r) for r in man.jobs}


def _pid_of(tmp_path: Path, name: str) -> int:
    return _records(tmp_path)[name]["handle"]["pid"]


def test_a_normal_exit_after_start_without_blocking_stops_and_records_everything(tmp_path):
    proc = run_driver(tmp_path, DRIVER.format(after="pass"))
    assert proc.returncode == 0, proc.stderr
    assert "the driver is exiting: stopping 2 job(s) still running" in proc.stderr
    recs = _records(tmp_path)
    assert {n: r["status"] for n, r in recs.items()} == {"sleeper": "Cancelled", "quick": "Cancelled"}
    assert all("the driver is exiting" in r["reason"] for r in recs.values())
    assert gone(recs["sleeper"]["handle"]["pid"])


def test_sigterm_to_the_driver_stops_its_jobs(tmp_path):
    proc = run_driver(tmp_path, DRIVER.format(after="exp.poll(interval=1, verbose=False)"), wait=False)
    assert proc.stdout.readline().strip() == "started"
    pid = _pid_of(tmp_path, "sleeper")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert gone(pid)
    assert manifest_statuses(tmp_path / "exp")["sleeper"] == "Cancelled"


def test_after_sigkill_status_tells_the_truth_and_stop_ends_what_is_left(tmp_path):
    proc = run_driver(tmp_path, DRIVER.format(after="time.sleep(300)"), wait=False)
    assert proc.stdout.readline().strip() == "started"
    sleeper, quick = _pid_of(tmp_path, "sleeper"), _pid_of(tmp_path, "quick")
    proc.kill()
    proc.wait()
    wait_until(lambda: gone(quick), "the quick model to end")
    assert manifest_statuses(tmp_path / "exp") == {"sleeper": "Queued", "quick": "Queued"} or \
        set(manifest_statuses(tmp_path / "exp").values()) <= {"Queued", "Running"}  # what the dead driver left

    res = subprocess.run([SIMCTL, "status", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    jobs = {j["name"]: j for j in json.loads(res.stdout)["jobs"]}
    assert jobs["sleeper"]["status"] == "Running"
    assert jobs["quick"]["status"] == "Unknown" and "no driver watched it" in jobs["quick"]["reason"]
    assert jobs["quick"]["finished_at"] is not None  # its time stops growing

    res = subprocess.run([SIMCTL, "stop", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert {j["name"]: j["status"] for j in json.loads(res.stdout)["jobs"]}["sleeper"] == "Cancelled"
    wait_until(lambda: gone(sleeper), "the sleeper to be stopped")
    assert manifest_statuses(tmp_path / "exp")["sleeper"] == "Cancelled"


def test_simctl_stop_refuses_while_the_driver_runs(tmp_path):
    proc = run_driver(tmp_path, DRIVER.format(after="time.sleep(300)"), wait=False)
    try:
        assert proc.stdout.readline().strip() == "started"
        res = subprocess.run([SIMCTL, "stop", "exp"], cwd=tmp_path, capture_output=True, text=True)
        assert res.returncode == 1 and "still runs" in res.stderr
        assert not gone(_pid_of(tmp_path, "sleeper"))
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert manifest_statuses(tmp_path / "exp")["sleeper"] == "Cancelled"


DAEMON_DRIVER = """
import os, sys, time
from simctl import Experiment
daemon = '''
import os, sys, time
if os.fork(): sys.exit(0)
os.setsid()
if os.fork(): sys.exit(0)
open("daemon.pid", "w").write(str(os.getpid()))
time.sleep(300)
'''
open("daemon.py", "w").write(daemon)
exp = Experiment("d", exp_path="exp", launcher="local")
m = exp.create_model("m", exp.create_run_settings(exe=sys.executable, exe_args=["-c",
    "import subprocess, sys, time; subprocess.run([sys.executable, 'daemon.py']); time.sleep({model_sleep})"]),
    path=os.getcwd())
exp.start(m, block=False)
while not os.path.exists("daemon.pid"):
    time.sleep(0.05)
print("started", flush=True)
{after}
"""


def test_a_double_forked_daemon_is_stopped_with_its_model(tmp_path):
    after = "time.sleep(0.2)\nexp.stop(m)\nprint(exp.get_status(m)[0].value, flush=True)"
    proc = run_driver(tmp_path, DAEMON_DRIVER.format(model_sleep=300, after=after))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["started", "Cancelled"]
    daemon = int((tmp_path / "daemon.pid").read_text())
    wait_until(lambda: gone(daemon), "the daemon to be gone")
    time.sleep(0)


# -- what simctl changes in the host program, and the threads it owns -------------------------------------------

HOST = """
import atexit, json, os, signal, sys, threading

ours = []  # the exit handlers simctl registers
real_register = atexit.register


def spy(fn, *args, **kwargs):
    if (getattr(fn, "__module__", None) or "").startswith("simctl"):
        ours.append(fn.__qualname__)
    return real_register(fn, *args, **kwargs)


atexit.register = spy
default = signal.getsignal(signal.SIGTERM)
seen = {}
import simctl
from simctl.workflow import experiment as xp

def state():
    handler = signal.getsignal(signal.SIGTERM)
    return {"atexit": list(ours),
            "sigterm": "default" if handler is default else "simctl" if handler is xp._on_sigterm else "other"}

seen["import"] = state()
exp = simctl.Experiment("host", exp_path=os.path.abspath("exp"), launcher="local")
m = exp.create_model("m", exp.create_run_settings(exe="true"), path=os.getcwd())
exp.preview(m, show=False)
exp.get_status(m)
exp.summary()
seen["preview"] = state()
exp.start(m)
exp.start(m)
seen["start"] = state()
other = simctl.Experiment("other", exp_path=os.path.abspath("exp2"), launcher="local")
other.start(other.create_model("n", other.create_run_settings(exe="true"), path=os.getcwd()))
exp.close()
seen["one closed"] = state()  # the other experiment still has work
other.close()
seen["all closed"] = state()

def mine(signum, frame):
    pass

signal.signal(signal.SIGTERM, mine)  # the host's own handler is kept, and kept after close()
exp.start(m)
seen["own handler"] = state()
exp.close()
seen["own handler closed"] = state()
signal.signal(signal.SIGTERM, signal.SIG_DFL)
exp.start(m)
signal.signal(signal.SIGTERM, mine)  # replaced while simctl's was installed: close() leaves it
exp.close()
seen["replaced meanwhile"] = state()
print(json.dumps(seen))
"""


def test_simctl_changes_signals_and_exit_hooks_only_when_work_starts_and_puts_sigterm_back_at_close(tmp_path):
    proc = run_driver(tmp_path, HOST)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[-1])
    handler = ["_stop_all_at_exit"]
    assert seen == {
        "import": {"atexit": [], "sigterm": "default"},
        "preview": {"atexit": [], "sigterm": "default"},
        "start": {"atexit": handler, "sigterm": "simctl"},  # registered once for two starts
        "one closed": {"atexit": handler, "sigterm": "simctl"},
        "all closed": {"atexit": handler, "sigterm": "default"},
        "own handler": {"atexit": handler, "sigterm": "other"},
        "own handler closed": {"atexit": handler, "sigterm": "other"},
        "replaced meanwhile": {"atexit": handler, "sigterm": "other"},
    }


def _simctl_threads() -> list[str]:
    import threading

    return sorted(t.name for t in threading.enumerate() if t.name.startswith("simctl-") and t.is_alive())


def test_close_ends_and_waits_for_every_thread_the_experiment_started_walltime_stops_too(tmp_path):
    from _lifecycle_helpers import make_exp, write_script

    from simctl import Status

    exp = make_exp(tmp_path, launcher_options={"stop_grace": 1})
    stubborn = write_script(tmp_path / "stubborn.py", """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the walltime stop waits out stop_grace, then kills
        open("stubborn.started", "w").close()
        time.sleep(120)
    """)
    rs = exp.create_run_settings(exe=sys.executable, exe_args=[str(stubborn)], walltime="00:00:01")
    late = exp.create_model("late", rs, path=str(tmp_path))
    watched = exp.create_model("watched", exp.create_run_settings(exe="sleep", exe_args="120"), path=str(tmp_path))
    exp.start(late, watched, block=False)
    wait_until(lambda: "simctl-walltime-stop" in _simctl_threads(), "the walltime stop to begin")
    assert {"simctl-monitor", "simctl-process-reaper"} <= set(_simctl_threads())
    exp.close()
    assert _simctl_threads() == []  # the walltime stop was joined, not left to finish after close()
    assert exp.get_status(late, watched) == [Status.FAILED, Status.CANCELLED]
    assert "walltime 00:00:01 exceeded" in exp.controller.statuses(["late"])["late"].reason


def test_a_daemon_left_by_a_model_that_ended_after_its_driver_was_killed_is_stopped_by_simctl_stop(tmp_path):
    code = DAEMON_DRIVER.format(model_sleep=2, after="time.sleep(300)")
    proc = run_driver(tmp_path, code, wait=False)
    assert proc.stdout.readline().strip() == "started"
    model = _pid_of(tmp_path, "m")
    proc.kill()
    proc.wait()
    proc.communicate()
    wait_until(lambda: gone(model), "the model to end")
    daemon = int((tmp_path / "daemon.pid").read_text())
    assert not gone(daemon)  # nobody watched it: the daemon outlived its model
    res = subprocess.run([SIMCTL, "stop", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    wait_until(lambda: gone(daemon), "the daemon to be stopped")
    rec = {j["name"]: j for j in json.loads(res.stdout)["jobs"]}["m"]
    assert rec["status"] == "Unknown" and "process(es) it left running were stopped" in rec["reason"], rec




def test_the_drivers_exit_ends_a_daemon_its_running_model_left(tmp_path):
    proc = run_driver(tmp_path, DAEMON_DRIVER.format(model_sleep=300, after="pass"))
    assert proc.returncode == 0, proc.stderr
    daemon = int((tmp_path / "daemon.pid").read_text())
    wait_until(lambda: gone(daemon), "the daemon to be gone")
    assert manifest_statuses(tmp_path / "exp")["m"] == "Cancelled"


def test_simctl_stop_ends_a_daemon_of_a_model_still_running_after_its_driver_was_killed(tmp_path):
    proc = run_driver(tmp_path, DAEMON_DRIVER.format(model_sleep=300, after="time.sleep(300)"), wait=False)
    assert proc.stdout.readline().strip() == "started"
    proc.kill()
    proc.wait()
    proc.communicate()
    daemon, model = int((tmp_path / "daemon.pid").read_text()), _pid_of(tmp_path, "m")
    assert not gone(daemon) and not gone(model)
    res = subprocess.run([SIMCTL, "stop", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert {j["name"]: j["status"] for j in json.loads(res.stdout)["jobs"]} == {"m": "Cancelled"}
    wait_until(lambda: gone(daemon) and gone(model), "the model and its daemon to be gone")
