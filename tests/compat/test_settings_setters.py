"""SmartSim's per-run-command setters and formats over simctl's settings, MPMD
by SmartSim's names run for real (Open MPI), and the container names."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from smartsim import Experiment
from smartsim.settings import (
    AprunSettings,
    JsrunSettings,
    MpirunSettings,
    OrterunSettings,
    PalsMpiexecSettings,
    RunSettings,
    SbatchSettings,
    SrunSettings,
)
from smartsim.settings.containers import Apptainer, Podman, Singularity

import simctl


def test_each_run_commands_setters_write_its_own_flags_as_smartsim_does():
    srun = SrunSettings("python")
    srun.set_nodes(5)
    srun.set_cpus_per_task(2)
    srun.set_tasks(100)
    srun.set_tasks_per_node(20)
    srun.set_hostlist(["n1", "n2"])
    srun.set_quiet_launch(True)
    srun.set_node_feature("P100")
    assert srun.format_run_args() == ["--nodes=5", "--cpus-per-task=2", "--ntasks=100", "--ntasks-per-node=20",
                                      "--nodelist=n1,n2", "--quiet", "-C", "P100"]
    # launched with simctl's own srun flags (a step runs side by side with --exact)
    assert srun.launch_args()[0] == "--exact" and "--ntasks=100" in srun.launch_args()
    with pytest.raises(TypeError):
        srun.set_hostlist([444])
    with pytest.raises(ValueError):
        srun.set_tasks("not an int")

    mpi = MpirunSettings("python")
    mpi.set_tasks(2)
    mpi.set_hostlist("node005")
    mpi.set_time(minutes=1, seconds=12)
    mpi.update_env({"A": "1"})
    assert mpi.format_run_args() == ["--n", "2", "--host", "node005", "--timeout", "72"]
    assert mpi.format_env_vars() == ["-x", "A=1"]

    aprun = AprunSettings("python")
    aprun.set_tasks(4)
    aprun.set_verbose_launch(True)
    assert aprun.format_run_args() == ["--pes=4", "--debug=7"]
    pals = PalsMpiexecSettings("python", env_vars={"A": "1", "B": None})
    pals.set_tasks(8)
    pals.set_tasks_per_node(4)
    assert pals.format_run_args() == ["--np", "8", "--ppn", "4"]
    assert pals.format_env_vars() == ["--env", "A=1", "--envlist", "B"]
    jsrun = JsrunSettings("python")
    jsrun.set_num_rs("ALL_HOSTS")
    jsrun.set_tasks_per_node(2)  # SmartSim's alias of set_tasks_per_rs
    assert jsrun.run_args == {"nrs": "ALL_HOSTS", "tasks_per_rs": 2}


def test_smartsims_base_class_warns_for_setters_it_does_not_implement(caplog):
    rs = RunSettings("python")
    with caplog.at_level(logging.WARNING):
        rs.set_tasks(4)
        rs.make_mpmd(RunSettings("python"))
    assert [r.getMessage() for r in caplog.records] == [
        "set_tasks not implemented for RunSettings: nothing was set",
        "make_mpmd not implemented for RunSettings: nothing was set"]
    assert rs.run_args == {} and rs.mpmd == []


def test_batch_arguments_formatted_as_smartsim_does():
    sbatch = SbatchSettings(nodes=1, time="10:00:00", account="A3123", batch_args={"exclusive": None})
    assert sbatch.format_batch_args() == ["--exclusive", "--nodes=1", "--time=10:00:00", "--account=A3123"]


def test_mpmd_by_smartsims_names_runs_one_open_mpi_world(tmp_path: Path):
    """SmartSim's ``OrterunSettings`` + ``make_mpmd`` on the local launcher, run for real
    (``orterun``: ``mpirun`` here is Slurm's wrapper)."""
    exp = Experiment("mpmd", exp_path=str(tmp_path), launcher="local")
    # each rank writes a file (ranks printing to one stdout may interleave)
    say = "import os,sys; r=os.environ['OMPI_COMM_WORLD_RANK']; open(f'rank-{r}.txt', 'w').write(sys.argv[1] + ' ' + r)"
    root = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    a = OrterunSettings(sys.executable, ["-c", say, "A"], run_args={"oversubscribe": None}, env_vars=root)
    a.set_tasks(2)
    b = OrterunSettings(sys.executable, ["-c", say, "B"])
    b.set_tasks(1)
    a.make_mpmd(b)
    assert a.mpmd == [b]
    model = exp.create_model("m", a)
    exp.generate(model)
    assert f"orterun --oversubscribe --n 2 {sys.executable} -c" in exp.preview(model, show=False)
    exp.start(model, block=True)
    assert exp.get_status(model)[0] is simctl.Status.COMPLETED, Path(model.path, "m.err").read_text()
    assert sorted(p.read_text() for p in Path(model.path).glob("rank-*.txt")) == ["A 0", "A 1", "B 2"]
    # refused as SmartSim refuses it: settings of a colocated store
    colo = MpirunSettings(sys.executable)
    colo.colocated_db_settings = {"port": 6379}
    with pytest.raises(simctl.ConfigError, match="Colocated models cannot be run as a mpmd workload"):
        colo.make_mpmd(MpirunSettings(sys.executable))


def test_container_names_are_simctls_and_wrap_the_program(tmp_path: Path):
    assert (Singularity, Apptainer, Podman) == (simctl.Singularity, simctl.Apptainer, simctl.Podman)
    exp = Experiment("c", exp_path=str(tmp_path), launcher="local")
    rs = exp.create_run_settings("python", ["x.py"], container=Singularity("img.sif", "--nv", mount="/lus"))
    model = exp.create_model("m", rs)
    exp.generate(model)
    assert f"singularity exec --pwd {model.path} --nv --bind {model.path},/lus img.sif python x.py" \
        in exp.preview(model, show=False)


def test_a_colocated_models_settings_show_smartsims_view_of_its_store(tmp_path: Path):
    exp = Experiment("c", exp_path=str(tmp_path), launcher="local")
    model = exp.create_model("m", exp.create_run_settings("true"))
    model.colocate_db_tcp(port=6123, db_cpus=2, custom_pinning=[0, 1], db_identifier="x")
    view = model.run_settings.colocated_db_settings
    assert (view["port"], view["ifname"], view["cpus"], view["custom_pinning"], view["db_identifier"]) == (
        6123, "lo", 2, "0,1", "x")
    assert model.colocated
    uds = exp.create_model("u", exp.create_run_settings("true"))
    uds.colocate_db_uds(custom_pinning=[])  # SmartSim's "no pinning"
    assert uds.run_settings.colocated_db_settings["custom_pinning"] is None
    assert uds.colocated_db.custom_pinning is None
