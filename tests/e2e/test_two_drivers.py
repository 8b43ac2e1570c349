"""Two drivers on one experiment (issue 16): one writer, and nothing another
driver's running jobs use is deleted or overwritten; after a driver is
killed, ``simctl status`` and ``simctl stop`` know every run it left, not
only the latest of each job. Real driver processes, a real store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest
from _lifecycle_helpers import SIMCTL, gone, run_driver, wait_until

from simctl.core import driver as drv, manifest as mf

DRIVER_A = """
import os, sys, time
from simctl import Experiment
exp = Experiment("d", exp_path="exp", launcher="local")
db = exp.create_database()
m = exp.create_model("m", exp.create_run_settings(exe="sleep", exe_args="300"))
exp.generate(db, m)
exp.start(db, m, block=False)
print("started", flush=True)
time.sleep(300)
"""


def _start_a(tmp_path: Path) -> subprocess.Popen[str]:
    proc = run_driver(tmp_path, DRIVER_A, wait=False)
    assert isinstance(proc, subprocess.Popen)
    line = proc.stdout.readline().strip()  # type: ignore[union-attr]
    if line != "started":
        proc.kill()
        raise AssertionError(f"driver A did not start: {line!r} {proc.communicate()[1]}")
    return proc


def _driver_b(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "b").mkdir(exist_ok=True)
    code = ("import os, sys, time\nfrom simctl import Experiment, ConfigError\n"
            "exp = Experiment('d', exp_path='exp', launcher='local')\n" + body)
    res = run_driver(tmp_path, code)
    assert isinstance(res, subprocess.CompletedProcess)
    return res


def test_a_second_driver_cannot_overwrite_what_the_first_ones_jobs_use(tmp_path):
    a = _start_a(tmp_path)
    try:
        lock = json.loads((tmp_path / "exp" / ".simctl" / drv.LOCKNAME).read_text())
        assert lock["pid"] == a.pid  # A is the writer
        sentinel = tmp_path / "exp" / "m" / "keep.txt"
        sentinel.write_text("A's")
        res = _driver_b(tmp_path, """
m = exp.create_model("m", exp.create_run_settings(exe="true"))
db = exp.create_database()
for ent in (m, db):
    try:
        exp.generate(ent, overwrite=True)
        print("ACCEPTED", ent.name)
    except ConfigError as e:
        print("REFUSED", e)
try:
    exp.start(exp.create_model("m", exp.create_run_settings(exe="true"), path=os.path.join("exp", "m")))
    print("ACCEPTED start")
except ConfigError as e:
    print("REFUSED", e)
own = exp.create_model("own", exp.create_run_settings(exe="true"))
exp.generate(own)
exp.start(own)
print("OWN", exp.get_status(own)[0].value)
""")
        assert res.returncode == 0, res.stderr
        out = res.stdout.splitlines()
        assert "ACCEPTED" not in res.stdout, res.stdout
        refused = [line for line in out if line.startswith("REFUSED")]
        assert len(refused) == 3, res.stdout
        assert "model m" in refused[0] and f"driver pid {a.pid}" in refused[0]
        assert "holds the experiment's writer lock" in refused[0]
        assert "orchestrator" in refused[1].lower() and f"driver pid {a.pid}" in refused[1]
        assert "already running under" in refused[2] and f"driver pid {a.pid}" in refused[2]
        assert "OWN Completed" in out  # a guest starts entities of its own
        assert sentinel.read_text() == "A's"  # nothing of A's was replaced
        statuses = {r.key: r.status.value for r in mf.load(str(tmp_path / "exp")).jobs if r.driver.get("pid") == a.pid}
        assert statuses == {"orchestrator/shard-0": "Running", "m": "Running"}, statuses
        shown = subprocess.run([SIMCTL, "status", "exp"], cwd=tmp_path, capture_output=True, text=True)
        assert f"writer: driver pid {a.pid} on host" in shown.stdout, shown.stdout + shown.stderr
    finally:
        a.terminate()
        a.communicate(timeout=60)
    assert a.returncode == 143
    assert not (tmp_path / "exp" / ".simctl" / drv.LOCKNAME).exists()  # released as A exited
    # once A's jobs are stopped, B may overwrite
    res = _driver_b(tmp_path, """
exp.generate(exp.create_model("m", exp.create_run_settings(exe="true")), overwrite=True)
print("OVERWROTE")
""")
    assert res.returncode == 0 and "OVERWROTE" in res.stdout, res.stderr


def test_after_driver_a_is_killed_and_b_exits_stop_ends_everything_a_left(tmp_path):
    a = _start_a(tmp_path)
    tree = psutil.Process(a.pid).children(recursive=True)  # the store's supervisor, server, worker; the model
    assert len(tree) >= 3, tree
    a.kill()
    a.wait()
    a.communicate()
    # B runs the same names again and exits normally: the latest record of each key is now B's
    res = _driver_b(tmp_path, """
os.makedirs(os.path.join("exp", "b"))
exp.start(exp.create_model("m", exp.create_run_settings(exe="true"), path=os.path.join("exp", "b")))
print("B", exp.get_status(*[exp.create_model("m", exp.create_run_settings(exe="true"))])[0].value)
""")
    assert res.returncode == 0, res.stderr
    assert all(not gone(p.pid) for p in tree)  # B left A's jobs alone

    res = subprocess.run([SIMCTL, "status", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    shown = [(j["key"], j["status"], j["driver"].get("pid")) for j in json.loads(res.stdout)["jobs"]]
    assert ("orchestrator/shard-0", "Running", a.pid) in shown, shown
    assert ("m", "Running", a.pid) in shown, shown  # not hidden by B's later run of m
    assert any(k == "m" and s == "Completed" and p != a.pid for k, s, p in shown), shown

    res = subprocess.run([SIMCTL, "stop", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    stopped = {j["key"]: j["status"] for j in json.loads(res.stdout)["jobs"]}
    assert stopped == {"orchestrator/shard-0": "Cancelled", "m": "Cancelled"}, stopped
    for p in tree:
        wait_until(lambda p=p: gone(p.pid), f"{p.pid} to be stopped")
    man = mf.load(str(tmp_path / "exp"))
    assert not [r for r in man.jobs if not r.status.is_terminal]  # nothing says Running forever
    res = subprocess.run([SIMCTL, "stop", "exp"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0 and "nothing to stop" in res.stdout, res.stdout + res.stderr


SLEEPER = """
import os, time
from simctl import Experiment
exp = Experiment("d", exp_path="exp", launcher="local")
os.makedirs(os.path.join("exp", "{name}"), exist_ok=True)
exp.start(exp.create_model("{name}", exp.create_run_settings(exe="sleep", exe_args="300"),
                           path=os.path.join("exp", "{name}")), block=False)
print("started", flush=True)
time.sleep(300)
"""


def test_two_killed_drivers_whose_jobs_have_the_same_local_job_id_are_both_stopped(tmp_path):
    pids = []
    for name in ("a", "b"):
        proc = run_driver(tmp_path, SLEEPER.format(name=name), wait=False)
        assert proc.stdout.readline().strip() == "started"
        pids += [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.kill()
        proc.wait()
        proc.communicate()
    man = mf.load(str(tmp_path / "exp"))
    assert [r.job_id for r in man.jobs] == ["1", "1"]  # each driver's local launcher counts from 1
    res = subprocess.run([SIMCTL, "stop", "exp", "--json"], cwd=tmp_path, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert {j["key"]: j["status"] for j in json.loads(res.stdout)["jobs"]} == {"a": "Cancelled", "b": "Cancelled"}
    for pid in pids:
        wait_until(lambda pid=pid: gone(pid), f"{pid} to be stopped")


def test_another_experiment_in_the_same_process_cannot_overwrite_a_running_jobs_directory(tmp_path):
    import simctl

    one = simctl.Experiment("d", exp_path=str(tmp_path / "exp"), launcher="local", plugins=simctl.make_plugins())
    two = simctl.Experiment("d", exp_path=str(tmp_path / "exp"), launcher="local", plugins=simctl.make_plugins())
    try:
        m = one.create_model("m", one.create_run_settings(exe="sleep", exe_args="300"))
        one.generate(m)
        one.start(m, block=False)
        with pytest.raises(simctl.ConfigError, match=r"model m of driver pid \d+ .*\(this process: another "
                                                     r"Experiment on this exp_path\)"):
            two.generate(two.create_model("m", two.create_run_settings(exe="true")), overwrite=True)
        one.stop(m)
        two.generate(two.create_model("m", two.create_run_settings(exe="true")), overwrite=True)  # now it may
    finally:
        one.close()
        two.close()
