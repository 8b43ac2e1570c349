"""``simctl status EXP_PATH`` reads the manifest a driver left behind, after
that driver exited; ``--json`` prints the same data."""

from __future__ import annotations

import json
import os
import subprocess

from _lifecycle_helpers import SIMCTL, run_driver

DRIVER = """
    import simctl
    exp = simctl.Experiment("statusdemo", exp_path="exp", launcher="local")
    ens = exp.create_ensemble("sweep", params={"x": [1, 2, 3]}, run_settings=exp.create_run_settings("true"))
    bad = exp.create_model("broken", exp.create_run_settings("sh", exe_args=["-c", "exit 4"]))
    exp.generate(ens, bad)
    exp.start(ens, bad, block=True)
    print("driver done")
"""


def _run_status(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([SIMCTL, "status", *args], capture_output=True, text=True, timeout=60, env=env)


def test_status_after_the_driver_exited(tmp_path):
    assert os.path.exists(SIMCTL), "the console script is installed next to the interpreter"
    res = run_driver(tmp_path, DRIVER)
    assert res.returncode == 0, res.stderr
    assert "driver done" in res.stdout

    out = _run_status(str(tmp_path / "exp"))
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "statusdemo" in text
    for name in ("sweep_0", "sweep_1", "sweep_2", "broken"):
        assert name in text
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 3}
    assert "Completed" in lines["sweep_0"] and "Completed" in lines["sweep_2"]
    assert "Failed" in lines["broken"] and " 4 " in lines["broken"]
    for header in ("Name", "Status", "Returncode"):
        assert header in text


def test_status_json(tmp_path):
    res = run_driver(tmp_path, DRIVER)
    assert res.returncode == 0, res.stderr
    out = _run_status(str(tmp_path / "exp"), "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["experiment"] == "statusdemo" and data["launcher"] == "local"
    jobs = {j["name"]: j for j in data["jobs"]}
    assert set(jobs) == {"sweep_0", "sweep_1", "sweep_2", "broken"}
    assert {jobs[n]["status"] for n in ("sweep_0", "sweep_1", "sweep_2")} == {"Completed"}
    assert jobs["broken"]["status"] == "Failed" and jobs["broken"]["returncode"] == 4
    assert jobs["sweep_1"]["ensemble"] == "sweep"
    assert jobs["sweep_1"]["path"] == str(tmp_path / "exp" / "sweep" / "sweep_1")


def test_status_of_a_directory_without_an_experiment(tmp_path):
    out = _run_status(str(tmp_path))
    assert out.returncode != 0
    assert "no simctl experiment" in out.stderr and str(tmp_path) in out.stderr


def test_status_of_a_corrupt_manifest_is_a_clear_error(tmp_path):
    (tmp_path / ".simctl").mkdir()
    (tmp_path / ".simctl" / "manifest.json").write_text("{not json")
    out = _run_status(str(tmp_path))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "manifest.json" in out.stderr and "not a simctl manifest" in out.stderr
