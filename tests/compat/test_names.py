"""The SmartSim names a driver uses most, over simctl: settings, direct
constructors, the ML objects' views, errors, and a driver run for real (local
launcher, a real store) with SmartSim's imports."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import smartredis
import smartsim
from smartsim.database import Orchestrator
from smartsim.entity import DBModel, DBScript, Ensemble, Model
from smartsim.error import SSConfigError, SSUnsupportedError
from smartsim.settings import (
    AprunSettings,
    BsubBatchSettings,
    JsrunSettings,
    MpiexecSettings,
    MpirunSettings,
    OrterunSettings,
    PalsMpiexecSettings,
    QsubBatchSettings,
    RunSettings,
    SbatchSettings,
    SgeQsubBatchSettings,
    SrunSettings,
    create_batch_settings,
    create_run_settings,
)
from smartsim.status import SmartSimStatus

import simctl


def test_run_settings_format_and_time_as_smartsim_does(tmp_path, monkeypatch):
    # SmartSim's MpiexecSettings refuse Slurm's mpiexec wrapper, which this machine's mpiexec may be
    ompi = tmp_path / "ompi-bin"
    ompi.mkdir()
    (ompi / "mpiexec").symlink_to(shutil.which("mpiexec.openmpi") or shutil.which("orterun") or "/missing")
    monkeypatch.setenv("PATH", str(ompi), prepend=os.pathsep)
    rs = RunSettings("python", exe_args=["x.py"], run_args={"-np": 2})
    assert rs.format_run_args() == ["-np", "2"]
    rs.set_time(1, 2, 3)  # SmartSim's base class only warns that it has no walltime
    assert rs.walltime is None and "time" not in rs.run_args
    assert rs.format_env_vars() == []
    for cls, command in ((MpirunSettings, "mpirun"), (MpiexecSettings, "mpiexec"), (OrterunSettings, "orterun")):
        mpi = cls("python", run_args={"np": 2, "oversubscribe": None, "wdir": "/x"})
        assert mpi.run_command == command and isinstance(mpi, cls) and isinstance(mpi, simctl.RunSettings)
        assert mpi.format_run_args() == ["--np", "2", "--oversubscribe"]
    assert not isinstance(rs, MpirunSettings)
    (ompi / "mpiexec").unlink()
    (ompi / "mpiexec").symlink_to("/usr/bin/mpiexec.slurm")
    with pytest.raises(SSUnsupportedError, match="Slurm's mpiexec wrapper"):
        MpiexecSettings("python")


def test_launcher_settings_are_the_launchers_own_and_a_missing_launcher_is_named():
    srun = SrunSettings("python", run_args={"nodes": 2})
    assert srun.run_command == "srun" and isinstance(srun, SrunSettings) and "--nodes=2" in srun.format_run_args()
    assert not isinstance(srun, JsrunSettings)
    srun.set_time(minutes=90)  # SmartSim's method, added to the launcher's own class by a subclass
    assert srun.run_args["time"] == "01:30:00" and type(srun).__mro__[1].__name__ == "_SmartSimMethods"
    srun.set_tasks(4)  # SmartSim's setters write srun's own flags, shown as SmartSim does; launched with simctl's
    assert srun.format_run_args() == ["--nodes=2", "--time=01:30:00", "--ntasks=4"]
    assert srun.launch_args() == ["--exact", "--nodes=2", "--time=01:30:00", "--ntasks=4"]
    assert JsrunSettings("python").run_command == "jsrun"
    assert AprunSettings("python").run_command == "aprun"
    assert PalsMpiexecSettings("python").run_command == "mpiexec"
    for cls, launcher in ((SbatchSettings, "slurm"), (QsubBatchSettings, "pbs"), (BsubBatchSettings, "lsf")):
        batch = cls(nodes=2, time="01:00:00")
        assert isinstance(batch, cls) and batch.nodes == 2 and batch.time == "01:00:00"
        assert type(batch).__mro__[2] is simctl.make_plugins().get("launcher", launcher).batch_settings_class
    with pytest.raises(simctl.ConfigError, match="SgeQsubBatchSettings needs simctl's 'sge' launcher.*installed"):
        SgeQsubBatchSettings(nodes=1)


def test_module_level_create_settings_take_the_launcher_first():
    local = create_run_settings("local", "python", exe_args=["a.py"], env_vars={"A": "1", "B": None})
    assert local.exe_args == ["a.py"] and local.format_env_vars() == ["A=1", "B="]
    assert create_run_settings("slurm", "python").run_command == "srun"
    assert create_batch_settings("slurm", nodes=3, time="10:00").nodes == 3
    with pytest.raises(SSConfigError, match="launcher 'local' has no batch system"):
        create_batch_settings("local", nodes=1)


def test_direct_constructors_build_simctls_entities(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    rs = RunSettings(sys.executable)
    model = Model("m", {"a": 1}, rs, str(tmp_path / "m"))
    assert isinstance(model, simctl.Model) and model.path == str(tmp_path / "m") and model.params == {"a": 1}
    model.colocate_db_tcp(custom_pinning=[])  # SmartSim's "no pinning"
    assert model.colocated and model.colocated_db.custom_pinning is None
    model.set_path("elsewhere")
    assert model.path == str(tmp_path / "elsewhere")
    ens = Ensemble("e", {"a": [1, 2], "b": [3, 4]}, run_settings=rs, perm_strat="step")
    assert isinstance(ens, simctl.Ensemble) and [m.params for m in ens.entities] == [{"a": 1, "b": 3},
                                                                                      {"a": 2, "b": 4}]
    replicas = Ensemble("r", {}, run_settings=rs, replicas=3)
    assert len(replicas.entities) == 3 and replicas.query_key_prefixing() and ens.query_key_prefixing()
    made = smartsim.Experiment("x", exp_path=str(tmp_path)).create_ensemble("c", {"a": [1]}, None, rs)
    assert made.entities[0].query_key_prefixing()  # members from params prefix their keys
    with pytest.raises(SSConfigError, match="unknown strategy|installed"):
        Ensemble("bad", {"a": [1]}, run_settings=rs, perm_strat="nope")
    db = Orchestrator(db_nodes=3, interface="lo")
    assert isinstance(db, simctl.Orchestrator) and db.is_cluster
    assert [n.name for n in db.entities] == ["orchestrator_0", "orchestrator_1", "orchestrator_2"]
    assert [n.ports[0] for n in db.entities] == db.ports == [db.port, db.port + 1, db.port + 2]
    assert db.telemetry.is_enabled and smartsim.Experiment("t", exp_path=str(tmp_path)).telemetry.is_enabled
    with pytest.warns(simctl.SimctlWarning, match="always records jobs in the experiment's manifest"):
        db.telemetry.disable()
    with pytest.raises(simctl.SimctlError, match="not been started"):
        db.entities[0].host  # noqa: B018 - the property raises
    assert db.entities[1] is db.entities[1]  # the same nodes on every read: what is set on one is kept
    db.entities[1].set_hosts(["host"])
    assert (db.entities[1].host, db.entities[1].hosts) == ("host", ["host"])
    db.entities[1].clear_hosts()
    with pytest.raises(simctl.SimctlError, match="not been started"):
        db.entities[1].host  # noqa: B018 - the property raises


def test_ml_objects_are_seen_as_dbmodel_and_dbscript():
    model = Model("m", {}, RunSettings("python"))
    model.add_ml_model("net", "TORCH", model=b"bytes", device="CPU", batch_size=4, inputs=["x"], outputs=["y"])
    model.add_script("s", script="def f(x):\n    return x\n")
    (dbm,), (dbs,) = model._db_models, model._db_scripts
    assert isinstance(dbm, DBModel) and (dbm.name, dbm.backend, dbm.model, dbm.batch_size) == ("net", "TORCH",
                                                                                                b"bytes", 4)
    assert (dbm.inputs, dbm.outputs, dbm.device) == (["x"], ["y"], "CPU")
    assert isinstance(dbs, DBScript) and dbs.name == "s" and "return x" in dbs.script


def test_smartredis_names_and_errors():
    assert smartredis.Dataset is simctl.Dataset and smartredis.log_data is simctl.log_data
    assert issubclass(smartredis.RedisKeyError, smartredis.RedisReplyError)
    opts = smartredis.ConfigOptions.create_from_environment("ALT")
    assert not opts.is_configured("SSDB")
    with pytest.raises(smartredis.RedisKeyError, match="SSDB_ALT"):
        opts.get_string_option("SSDB")
    opts.override_integer_option("SR_PORT", 7)
    assert opts.get_integer_option("SR_PORT") == 7
    assert smartsim.__version__ and SmartSimStatus.STATUS_COMPLETED is simctl.Status.COMPLETED


DRIVER = '''
import sys
import numpy as np
from smartredis import Client, ConfigOptions
from smartsim import Experiment
from smartsim.database import Orchestrator
from smartsim.entity import Ensemble, Model
from smartsim.settings import RunSettings
from smartsim.status import SmartSimStatus

exp = Experiment("exp", launcher="local")
db = Orchestrator(port=None, db_nodes=1, interface="lo")
exp.generate(db)
exp.start(db)
assert db.is_active()
db.set_max_memory("100mb")
print("nodes", [n.host for n in db.entities])
put = "from smartredis import Client; import numpy as np; Client(cluster=False).put_tensor('m', np.arange(3))"
rs = RunSettings(sys.executable, exe_args=["-c", put])
model = Model("m", {}, rs, "exp/m")
ens = Ensemble("ens", {}, run_settings=rs, replicas=2)
exp.generate(model, ens)
exp.start(model, ens, block=True)
print("status", exp.get_status(model)[0] == SmartSimStatus.STATUS_COMPLETED, len(exp.get_status(ens)))
client = Client(address=db.get_address()[0], cluster=False, username=db.username, password=db.password)
print("tensor", client.get_tensor("m").tolist())
again = Experiment("exp2", launcher="local").reconnect_orchestrator(db.checkpoint_file)
print("reconnected", again.get_address() == db.get_address(), again.is_active())
exp.stop(db)
print("active", db.is_active())
'''


def test_a_smartsim_driver_runs_with_a_real_store(tmp_path: Path):
    (tmp_path / "driver.py").write_text(textwrap.dedent(DRIVER))
    proc = subprocess.run([sys.executable, "driver.py"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert lines == {"nodes": "['127.0.0.1']", "status": "True 2", "tensor": "[0, 1, 2]", "reconnected": "True True",
                     "active": "False"}
