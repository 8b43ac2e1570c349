"""MPI's run commands on every launcher (``mpirun``, ``mpiexec``, ``orterun``),
Slurm's ``mpiexec`` wrapper refused as SmartSim refuses it, and the ``pals``
launcher (PBS with HPE's PALS ``mpiexec``): command lines by preview, an
``orterun`` step run for real with Open MPI on the LSF stand-in."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

import simctl
from simctl import ConfigError, Status
from simctl.plugins.launchers import pals, pbs

MPI = ("mpirun", "mpiexec", "orterun")


def make(tmp_path: Path, launcher: str) -> simctl.Experiment:
    return simctl.Experiment("rc", exp_path=str(tmp_path / launcher), launcher=launcher,
                             plugins=simctl.make_plugins())


@pytest.mark.parametrize("launcher", ["local", "slurm", "pbs", "lsf"])
@pytest.mark.parametrize("command", ["mpirun", "orterun"])
def test_every_launcher_takes_mpi_run_commands(tmp_path, launcher, command):
    exp = make(tmp_path, launcher)
    rs = exp.create_run_settings("a.out", exe_args=["x"], run_command=command)
    rs.set_tasks(4)
    rs.set_tasks_per_node(2)
    rs.set_hostlist(["h1", "h2"])
    assert rs.run_command == command
    text = exp.preview(exp.create_model("m", rs), show=False)
    assert f"{command} -n 4 -npernode 2 --host h1,h2 a.out x" in text
    assert set(MPI) <= set(exp.launcher.run_commands)


@pytest.mark.parametrize("launcher", ["pbs", "lsf"])
def test_mpiexec_on_pbs_and_lsf(tmp_path, launcher):
    exp = make(tmp_path, launcher)
    rs = exp.create_run_settings("a.out", run_command="mpiexec", run_args={"bind-to": "core"})
    rs.set_tasks(2)
    assert rs.format_run_args() == ["-n", "2", "--bind-to", "core"]


def _wrapper(tmp_path: Path, name: str, says: str) -> str:
    """A directory holding an executable ``name`` whose ``--help`` prints ``says``."""
    d = tmp_path / f"bin-{name}-{abs(hash(says))}"
    d.mkdir()
    exe = d / name
    exe.write_text(f"#!/bin/sh\necho '{says}'\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(d)


def test_slurms_mpiexec_wrapper_is_refused_with_what_to_use(tmp_path, monkeypatch):
    exp = make(tmp_path, "slurm")
    monkeypatch.setenv("PATH", _wrapper(tmp_path, "mpiexec", "Usage:\n    mpiexec.slurm args executable pgmargs"),
                       prepend=os.pathsep)
    with pytest.raises(ConfigError, match=r"Slurm's mpiexec wrapper.*run_command='srun'"):
        exp.create_run_settings("a.out", run_command="mpiexec")
    # an MPI library's mpiexec is taken
    monkeypatch.setenv("PATH", _wrapper(tmp_path, "mpiexec", "mpiexec (OpenRTE) 4.1.2"), prepend=os.pathsep)
    assert exp.create_run_settings("a.out", run_command="mpiexec").run_command == "mpiexec"
    # srun is untouched, and other launchers do not ask
    assert exp.create_run_settings("a.out").run_command == "srun"
    monkeypatch.setenv("PATH", _wrapper(tmp_path, "mpiexec", "mpiexec.slurm"), prepend=os.pathsep)
    assert make(tmp_path, "pbs").create_run_settings("a.out", run_command="mpiexec").run_command == "mpiexec"


def test_pals_launcher_is_pbs_with_pals_mpiexec(tmp_path):
    exp = make(tmp_path, "pals")
    assert exp.launcher.run_commands == ("mpiexec",)
    rs = exp.create_run_settings("a.out", exe_args=["x"])  # mpiexec by default
    assert isinstance(rs, pals.PalsRunSettings) and rs.run_command == "mpiexec"
    rs.set_nodes(2)
    rs.set_tasks_per_node(4)
    rs.set_cpus_per_task(8)
    rs.set_hostlist(["x1", "x2"])
    rs.set("cpu-bind", "depth")
    assert rs.format_run_args() == ["--np", "8", "--ppn", "4", "--depth", "8", "--hosts", "x1,x2",
                                    "--cpu-bind", "depth"]
    with pytest.raises(ConfigError, match="launcher 'pals' does not support run command 'aprun'; supported: "
                                          "'mpiexec'"):
        exp.create_run_settings("a.out", run_command="aprun")
    bs = exp.create_batch_settings(nodes=2, time="00:10:00", queue="debug", account="proj")
    assert isinstance(bs, pbs.PbsBatchSettings)
    model = exp.create_model("m", rs, batch_settings=bs)
    text = exp.preview(model, show=False)
    assert "on launcher 'pals'" in text and "#PBS -l select=2" in text and "#PBS -A proj" in text
    assert "exec mpiexec --np 8 --ppn 4 --depth 8 --hosts x1,x2 --cpu-bind depth a.out x" in text
    assert simctl.make_plugins().get("launcher", "pals").detect()[0] == 0  # chosen by name only


def test_pals_is_listed_as_a_launcher_plugin():
    from click.testing import CliRunner  # the CLI is imported only here, where it is the subject

    from simctl.cli import main
    out = CliRunner().invoke(main, ["plugins", "list", "--json"])
    assert out.exit_code == 0, out.output
    assert "pals" in simctl.make_plugins().names("launcher") and '"pals"' in out.output


def test_orterun_step_runs_for_real_on_the_lsf_standin(lsf_env, tmp_path):
    """Open MPI's ``orterun`` under LSF: a batch job of one model, 2 ranks."""
    exp = make(tmp_path, "lsf")
    code = "import os; print(os.environ['OMPI_COMM_WORLD_RANK'], os.environ['OMPI_COMM_WORLD_SIZE'])"
    rs = exp.create_run_settings(sys.executable, exe_args=["-c", code], run_command="orterun",
                                 env_vars={"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"},
                                 run_args={"oversubscribe": None})
    rs.set_tasks(2)
    model = exp.create_model("mpi", rs)
    exp.generate(model)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (Path(model.path) / "mpi.err").read_text()
    assert sorted((Path(model.path) / "mpi.out").read_text().split("\n")[:-1]) == ["0 2", "1 2"]
