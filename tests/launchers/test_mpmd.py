"""MPMD launches (``RunSettings.make_mpmd``): one run command starting several
programs, ``mpirun -n 2 a : -n 1 b``; run for real with Open MPI on the local
launcher and as a heterogeneous srun step on the test Slurm cluster.

Open MPI is run by its own name, ``orterun``: on these machines ``mpirun`` is
Slurm's wrapper (``mpiexec.slurm``, package slurm-wlm-torque), which the Slurm
tests use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from slurm_helpers import no_allocation_env

import simctl

#: Open MPI refuses to start as root unless told it may
ROOT_OK = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
#: each rank writes a file (ranks printing to one stdout may interleave): the program's name, its
#: MPI world rank and size, and a variable the second program's settings set
SAY = ("import os,sys; r=os.environ.get('{rank}'); open(f'rank-{{r}}.txt', 'w').write(' '.join("
       "[sys.argv[1], str(r), str(os.environ.get('{size}')), os.environ.get('MPMD_B', '-')]))")


def _lines(path: Path) -> list[str]:
    """What the ranks wrote in ``path`` (a run directory)."""
    return sorted(p.read_text() for p in path.glob("rank-*.txt"))


def test_mpirun_mpmd_runs_both_programs_in_one_world_on_the_local_launcher(tmp_path: Path) -> None:
    exp = simctl.Experiment("mpmd", exp_path=str(tmp_path), launcher="local")
    say = SAY.format(rank="OMPI_COMM_WORLD_RANK", size="OMPI_COMM_WORLD_SIZE")
    a = exp.create_run_settings(sys.executable, ["-c", say, "A"], run_command="orterun",
                                run_args={"n": 2, "oversubscribe": None}, env_vars=ROOT_OK)  # 3 ranks, 2 cores
    b = exp.create_run_settings(sys.executable, ["-c", say, "B"], run_command="orterun", run_args={"n": 1},
                                env_vars={"MPMD_B": "b-env"})
    a.make_mpmd(b)
    model = exp.create_model("m", a, path=str(tmp_path / "m"))
    os.makedirs(model.path)
    preview = exp.preview(model, show=False)
    one = f"orterun -n 2 --oversubscribe {sys.executable} -c"
    assert one in str(preview) and f" : -n 1 {sys.executable} -c" in str(preview)
    exp.start(model, block=True)
    assert exp.get_status(model)[0] is simctl.Status.COMPLETED, Path(model.path, "m.err").read_text()
    # one MPI world of 3 ranks: A on ranks 0 and 1, B on rank 2; B's variable set for the launch
    assert _lines(Path(model.path)) == ["A 0 3 b-env", "A 1 3 b-env", "B 2 3 b-env"]


def test_make_mpmd_refuses_what_cannot_be_one_launch(tmp_path: Path) -> None:
    exp = simctl.Experiment("mpmd", exp_path=str(tmp_path), launcher="local")
    plain = exp.create_run_settings("true")
    mpi = exp.create_run_settings("true", run_command="mpirun")
    with pytest.raises(simctl.ConfigError, match="needs a run command that starts several programs"):
        plain.make_mpmd(exp.create_run_settings("false"))
    with pytest.raises(simctl.ConfigError, match="joins programs of one run command"):
        mpi.make_mpmd(exp.create_run_settings("true", run_command="mpiexec"))
    with pytest.raises(simctl.ConfigError, match="must be new to this launch"):
        mpi.make_mpmd(mpi)
    clash = exp.create_run_settings("true", run_command="mpirun", env_vars={"X": "1"})
    with pytest.raises(simctl.ConfigError, match="variable 'X' is set to '1'"):
        clash.make_mpmd(exp.create_run_settings("true", run_command="mpirun", env_vars={"X": "2"}))
    with pytest.raises(simctl.ConfigError, match="takes run settings"):
        mpi.make_mpmd("true")  # type: ignore[arg-type]
    assert mpi.mpmd == []
    # aprun joins programs the same way (no Cray machine here: the command line only)
    aprun = simctl.RunSettings("a", ["x"], run_command="aprun", run_args={"n": 2})
    aprun.make_mpmd(simctl.RunSettings("b", run_command="aprun", run_args={"n": 1}))
    assert aprun.launch_line(["a", "x"]) == ["aprun", "-n", "2", "a", "x", ":", "-n", "1", "b"]
    jsrun = simctl.RunSettings("a", run_command="jsrun")
    with pytest.raises(simctl.ConfigError, match="needs a run command that starts several programs"):
        jsrun.make_mpmd(simctl.RunSettings("b", run_command="jsrun"))  # jsrun's MPMD is an ERF file


HET_DRIVER = """
import os, sys
import simctl
root, say = sys.argv[1:3]
exp = simctl.Experiment("mpmd", exp_path=root, launcher="slurm")
a = exp.create_run_settings(sys.executable, ["-c", say, "A"], run_args={"ntasks": 2})
b = exp.create_run_settings(sys.executable, ["-c", say, "B"], run_args={"ntasks": 1}, env_vars={"MPMD_B": "b-env"})
a.make_mpmd(b)
model = exp.create_model("m", a, path=os.path.join(root, "m"))
os.makedirs(model.path)
print("PREVIEW", exp.preview(model, show=False).replace(chr(10), " "))
exp.start(model, block=True)
print("STATUS", exp.get_status(model)[0])
"""


@pytest.mark.slurm
def test_srun_mpmd_is_one_heterogeneous_step_on_slurm(tmp_path: Path, slurm_cluster: object) -> None:
    """Slurm places a heterogeneous step's components on different nodes of the allocation (one node
    cannot hold two), so the driver runs in a two-component allocation, one per partition."""
    driver = tmp_path / "driver.py"
    driver.write_text(HET_DRIVER)
    say = SAY.format(rank="SLURM_PROCID", size="SLURM_NTASKS")
    proc = subprocess.run(["salloc", "-Q", "-t", "00:10:00", "-J", "simctl-test-mpmd", "-p", "debug", "-n2", ":",
                           "-p", "real", "-n1", sys.executable, str(driver), str(tmp_path / "x"), say],
                          capture_output=True, text=True, env=no_allocation_env(), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "x" / "m"
    assert "STATUS Completed" in proc.stdout, (proc.stdout, (out / "m.err").read_text())
    # the one command: srun, A's flags and program, then ':' and B's
    assert f"srun --exact --ntasks=2 {sys.executable} -c" in proc.stdout
    assert f" : --nodes=1 --exact --ntasks=1 {sys.executable} -c" in proc.stdout
    # one step of 3 tasks: ranks 0-1 run A, rank 2 runs B; B's variable set for the launch
    assert _lines(out) == ["A 0 3 b-env", "A 1 3 b-env", "B 2 3 b-env"]
