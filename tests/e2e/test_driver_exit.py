"""When the driver exits, nothing it started is left unaccounted for (issue 7;
issue 8 items 16 and 17): a normal exit or SIGTERM stops what still runs and
records it; after SIGKILL, ``simctl status`` finds out the truth from the
manifest and ``simctl stop`` stops what is left."""

from __future__ import annotations

import json
import signal
import subprocess
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


def test_a_double_forked_daemon_is_stopped_with_its_model(tmp_path):
    code = """
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
    "import subprocess, sys, time; subprocess.run([sys.executable, 'daemon.py']); time.sleep(300)"]),
    path=os.getcwd())
exp.start(m, block=False)
while not os.path.exists("daemon.pid"):
    time.sleep(0.05)
time.sleep(0.2)
exp.stop(m)
print(exp.get_status(m)[0].value, flush=True)
"""
    proc = run_driver(tmp_path, code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "Cancelled"
    daemon = int((tmp_path / "daemon.pid").read_text())
    wait_until(lambda: gone(daemon), "the daemon to be gone")
    time.sleep(0)
