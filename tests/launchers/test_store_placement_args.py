"""The flags a store's launch sets itself, per launcher and run command
(``placement_run_args`` / ``placement_batch_args`` of the launchers' settings):
``Orchestrator.set_run_arg`` / ``set_batch_arg`` refuse them with what to do
instead, before anything is launched; the others reach the shards' command."""

from __future__ import annotations

from pathlib import Path

import pytest

import simctl
from simctl import ConfigError


def store(tmp_path: Path, launcher: str, run_command: str, batch: bool = False) -> simctl.Orchestrator:
    exp = simctl.Experiment("s", exp_path=str(tmp_path / launcher), launcher=launcher, plugins=simctl.make_plugins())
    return exp.create_database(port=6780, db_nodes=3, interface="lo", batch=batch, run_command=run_command)


@pytest.mark.parametrize(("launcher", "command", "owned", "free"), [
    ("slurm", "srun", ["ntasks", "--nodes", "w", "chdir", "output"], ("distribution", "block")),
    ("pbs", "aprun", ["pes-per-numa-node", "n", "N", "L"], ("cc", "depth")),
    ("pbs", "mpirun", ["np", "host", "wdir"], ("bind-to", "core")),
    ("pals", "mpiexec", ["ppn", "hosts", "depth"], ("cpu-bind", "depth")),
    ("lsf", "jsrun", ["l", "nrs", "rs_per_host", "tasks_per_rs", "stdio_stdout"], ("smpiargs", "-gpu")),
    ("lsf", "orterun", ["n", "npernode"], ("bind-to", "core")),
])
def test_set_run_arg_refuses_the_flags_the_store_sets_itself(tmp_path, launcher, command, owned, free):
    db = store(tmp_path, launcher, command)
    for flag in owned:
        with pytest.raises(ConfigError, match=rf"run argument {flag!r} is set by the store's launch itself.*"
                                              rf"leave {flag!r} out"):
            db.set_run_arg(flag, "5")
        assert flag.lstrip("-") not in db.run_settings.run_args
    assert set(db.placement_args()) >= {f.lstrip("-") for f in owned}
    db.set_run_arg(*free)
    assert db.run_settings.run_args[free[0]] == free[1]


@pytest.mark.parametrize(("launcher", "owned", "free"), [
    ("slurm", ["job-name", "o", "nodelist", "chdir"], ("ntasks-per-node", "2")),  # the job's size is the user's
    ("pbs", ["N", "o", "e"], ("l", "mem=4gb")),
    ("lsf", ["J", "m", "o"], ("D", "102400000")),
])
def test_set_batch_arg_refuses_the_batch_jobs_own_flags(tmp_path, launcher, owned, free):
    db = store(tmp_path, launcher, "auto" if launcher != "lsf" else "jsrun", batch=True)
    for flag in owned:
        with pytest.raises(ConfigError, match=rf"batch argument {flag!r} is set by the store's launch itself"):
            db.set_batch_arg(flag, "x")
    db.set_batch_arg(*free)
    assert db.batch_settings.batch_args[free[0]] == free[1]
    with pytest.raises(ConfigError, match="not launched as a batch job"):
        store(tmp_path / "nb", launcher, "auto" if launcher != "lsf" else "jsrun").set_batch_arg(*free)


def test_an_accepted_flag_reaches_every_shards_command(tmp_path):
    db = store(tmp_path, "pbs", "aprun", batch=True)
    db.set_run_arg("-cc", "depth")  # aprun's one-dash flag
    text = simctl.Experiment("s", exp_path=str(tmp_path / "pbs"), launcher="pbs").preview(db, show=False)
    assert text.count("exec aprun -cc depth ") == 3


def test_set_run_arg_is_refused_where_no_run_command_would_carry_it(tmp_path):
    # local runs the shards directly: a run argument would be dropped silently; refused at the call, with the
    # launcher, its run commands and what would work named (the same check as a model's run_args)
    db = store(tmp_path, "local", "auto")
    assert db.run_settings.run_command is None
    with pytest.raises(ConfigError, match=r"run_args \{'n': 3\} are flags of a run command \(this launcher's: "
                                          r"mpirun, mpiexec, orterun\), but launcher 'local' runs orchestrator "
                                          r"'orchestrator''s shards directly, so they would be ignored; leave "
                                          r"set_run_arg out, or start the shards under a run command"):
        db.set_run_arg("n", 3)
    assert db.run_settings.run_args == {}
    assert "-n" not in simctl.Experiment("s", exp_path=str(tmp_path / "local"), launcher="local").preview(
        db, show=False).split()
    # under a run command the flag is carried, on local too
    mpi = store(tmp_path / "mpi", "local", "mpirun")
    mpi.set_run_arg("bind-to", "core")
    assert mpi.run_settings.run_args == {"bind-to": "core"}
