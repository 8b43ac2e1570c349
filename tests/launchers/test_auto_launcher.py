"""``launcher="auto"``: which workload manager it picks, and that it says why.

Real detection on this machine (the test Slurm's commands are in /usr/bin):
inside an allocation (``SLURM_JOB_ID``) slurm scores highest; with sbatch on
PATH slurm wins over Slurm's own Torque-compatible qsub; with no scheduler
command on PATH it falls back to local. The run inside a real ``salloc`` is in
test_slurm.py.
"""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import pytest
from slurm_helpers import outside_allocation, path_without

import simctl
from simctl.plugins.launchers.slurm import SlurmLauncher


@pytest.fixture
def auto_log():
    """The simctl log records (simctl's logger does not propagate to the root)."""
    records: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("simctl")
    handler = _Keep(level=logging.INFO)
    old = logger.level
    logger.setLevel(logging.INFO)  # a library logs at the level its user sets
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old)


def picked(records: list[logging.LogRecord]) -> str:
    (msg,) = [r.getMessage() for r in records if "launcher='auto' picked" in r.getMessage()]
    return msg


def scores(plugs: simctl.Plugins) -> dict[str, tuple[int, str]]:
    return {n: plugs.get("launcher", n).detect() for n in plugs.names("launcher")}


def test_inside_a_slurm_allocation_slurm_scores_highest(tmp_path, monkeypatch, auto_log):
    outside_allocation(monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    plugs = simctl.make_plugins()
    got = scores(plugs)
    assert got["slurm"] == (100, "inside slurm allocation 4242 ($SLURM_JOB_ID)")
    assert all(score < 100 for name, (score, _) in got.items() if name != "slurm"), got
    exp = simctl.Experiment("a", exp_path=str(tmp_path / "a"), launcher="auto", plugins=plugs)
    assert exp.launcher_name == "slurm" and isinstance(exp.launcher, SlurmLauncher)
    assert exp.launcher.inside_allocation()
    assert picked(auto_log) == "launcher='auto' picked 'slurm': inside slurm allocation 4242 ($SLURM_JOB_ID)"


def test_inside_an_allocation_slurm_wins_even_over_another_systems_commands(tmp_path, monkeypatch, auto_log):
    outside_allocation(monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    # a PATH with PBS's qsub but no sbatch: the allocation decides, not the commands
    bindir = Path(path_without(tmp_path / "bin", "sbatch"))
    qsub = shutil.which("qsub", path="/usr/bin")
    assert qsub, "the test Slurm's Torque wrappers (qsub) are missing: run scripts/setup-slurm.sh"
    (bindir / "qsub").symlink_to(qsub)
    monkeypatch.setenv("PATH", str(bindir))
    exp = simctl.Experiment("a", exp_path=str(tmp_path / "a"), launcher="auto", plugins=simctl.make_plugins())
    assert exp.launcher_name == "slurm"
    assert "inside slurm allocation 77" in picked(auto_log)


def test_outside_an_allocation_the_slurm_commands_pick_slurm(tmp_path, monkeypatch, auto_log):
    outside_allocation(monkeypatch)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    plugs = simctl.make_plugins()
    got = scores(plugs)
    assert got["slurm"] == (10, "sbatch found at /usr/bin/sbatch")
    # Slurm's Torque-compatible qsub is here too: it must not make this look like PBS
    assert got["pbs"][0] < got["slurm"][0]
    exp = simctl.Experiment("a", exp_path=str(tmp_path / "a"), launcher="auto", plugins=plugs)
    assert exp.launcher_name == "slurm"
    assert not exp.launcher.inside_allocation()
    assert picked(auto_log) == "launcher='auto' picked 'slurm': sbatch found at /usr/bin/sbatch"


def test_without_sbatch_on_path_auto_is_local(tmp_path, monkeypatch, auto_log):
    outside_allocation(monkeypatch)
    monkeypatch.setenv("PATH", path_without(tmp_path / "bin", "sbatch"))
    plugs = simctl.make_plugins()
    got = scores(plugs)
    assert got["slurm"] == (0, "sbatch not on PATH")
    assert SlurmLauncher.unavailable_reason() == "sbatch not on PATH (this machine has no slurm)"
    exp = simctl.Experiment("a", exp_path=str(tmp_path / "a"), launcher="auto", plugins=plugs)
    assert exp.launcher_name == "local"
    assert picked(auto_log).startswith("launcher='auto' picked 'local': no workload manager found")
    # and the local launcher really runs things there
    rs = exp.create_run_settings(exe=sys.executable, exe_args=["-c", "print('ran')"])
    model = exp.create_model("m", rs, path=str(tmp_path / "m"))
    exp.generate(model)
    exp.start(model, block=True)
    assert exp.get_status(model) == [simctl.Status.COMPLETED]
    exp.launcher.close()


def test_an_empty_slurm_job_id_is_not_an_allocation(tmp_path, monkeypatch):
    outside_allocation(monkeypatch)
    monkeypatch.setenv("SLURM_JOB_ID", "")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert SlurmLauncher.detect()[0] == 10
    assert not SlurmLauncher().inside_allocation()


def test_a_tie_goes_to_the_built_in_launcher(tmp_path, monkeypatch):
    outside_allocation(monkeypatch)
    slurm = simctl.make_plugins().get("launcher", "slurm")

    class ZSlurm(slurm):  # a third party's launcher scoring exactly as the built-in one
        name = "zslurm"

    class Plugin:
        @simctl.hookimpl
        def simctl_register_launchers(self):
            return [ZSlurm]

    plugs = simctl.make_plugins()
    plugs.register(Plugin(), name="zslurm")
    assert ZSlurm.detect()[0] == slurm.detect()[0] > 0
    exp = simctl.Experiment("t", exp_path=str(tmp_path / "t"), launcher="auto", plugins=plugs)
    assert exp.launcher_name == "slurm"
