"""SmartSim's forms the layer accepts as SmartSim does: ``RunSettings.set``
strips a flag's dashes and spaces and takes only str values; ``Model``'s
positional ``(name, params, path, run_settings)`` of SmartSim 0.6, run for real;
a store's shards (``DBNode``) carry its ``db_identifier``, and
``LaunchedShardData`` round-trips through its dict."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from smartsim import Experiment
from smartsim.database import Orchestrator
from smartsim.entity import Model
from smartsim.entity.dbnode import LaunchedShardData
from smartsim.error import SSDBIDConflictError
from smartsim.settings import JsrunSettings, RunSettings, create_batch_settings
from smartsim.status import SmartSimStatus


def test_set_strips_the_flags_dashes_and_spaces_and_takes_str_values_only():
    rs = RunSettings("python")
    rs.set("  --a-key ", "a-value")
    rs.set("-b")
    assert rs.run_args == {"a-key": "a-value", "b": None}
    with pytest.raises(TypeError, match="must be a str or None"):
        rs.set("n", 4)
    with pytest.raises(TypeError):
        rs.set(9)  # type: ignore[arg-type]
    assert rs.run_args == {"a-key": "a-value", "b": None}


def test_smartsims_stricter_types_are_type_errors():
    """exe_args of str only and update_env without None (simctl's 'unset'), as
    SmartSim; jsrun's set_cpus_per_task takes an int (a ValueError otherwise)."""
    for bad in ([1, 2, 3], ["1", "2", 3]):
        with pytest.raises(TypeError, match="exe_args must be a str or a list of str"):
            RunSettings("python", exe_args=bad)
        with pytest.raises(TypeError, match="exe_args must be a str or a list of str"):
            RunSettings("python").add_exe_args(bad)
    rs = RunSettings("python", exe_args="-c pass")
    rs.add_exe_args(["-v"])
    assert rs.exe_args == ["-c", "pass", "-v"]
    for env in ({"env1": None}, {"env1": {"abc"}}, {"env1": {"abc": "def"}}):
        with pytest.raises(TypeError, match="env1"):
            rs.update_env(env)
    rs.update_env({"A": 1})
    assert rs.env_vars == {"A": "1"}
    js = JsrunSettings("python")
    js.set_cpus_per_task(6)
    assert js.run_args["cpu_per_rs"] == 6
    with pytest.raises(ValueError):
        js.set_cpus_per_task("not an int")


def test_a_model_built_in_smartsim_06s_order_runs(tmp_path: Path):
    rs = RunSettings(sys.executable, exe_args=["-c", "import os; open('ran', 'w').write(os.getcwd())"])
    model = Model("old_order", {"h": 5}, str(tmp_path / "here"), rs)
    assert model.run_settings.exe == sys.executable
    assert model.path == str(tmp_path / "here")
    exp = Experiment("forms", exp_path=str(tmp_path), launcher="local")
    (tmp_path / "here").mkdir()
    exp.start(model, block=True)
    assert exp.get_status(model) == [SmartSimStatus.STATUS_COMPLETED]
    assert (tmp_path / "here" / "ran").read_text() == str(tmp_path / "here")


def test_a_stores_shards_carry_its_identifier_and_shard_data_round_trips(tmp_path: Path):
    orc = Orchestrator(db_identifier="test_db", path=str(tmp_path))
    assert [(n.name, n.db_identifier, n.num_shards) for n in orc.entities] == [("test_db_0", "test_db", 1)]
    three = Orchestrator(db_nodes=3, path=str(tmp_path))
    assert three.num_shards == sum(n.num_shards for n in three.entities) == 3
    shard = LaunchedShardData(name="test_db_0", hostname="node1", port=6780, cluster=False)
    again = LaunchedShardData(**json.loads(json.dumps(shard.to_dict())))
    assert again == shard and again is not shard


MEMBER = """
import os, sys
import numpy as np
from smartredis import Client, ConfigOptions
assert os.environ["SR_DB_TYPE_mine"] == os.environ["SR_DB_TYPE_reg"] == "Standalone"
seen = []
for i, name in enumerate(["mine", "reg"]):
    client = Client(ConfigOptions.create_from_environment(name), logger_name="SmartSim")
    client.put_tensor("t", np.arange(3) * (i + 1))
    seen.append(os.environ["SSDB_" + name] + " " + str(client.get_tensor("t").sum()))
open("seen", "w").write(",".join(seen))
"""


def test_a_model_reaches_a_store_and_its_colocated_store_by_their_identifiers(tmp_path: Path):
    """SmartSim's multi-store form (its test_multidb's script): each store by
    ``ConfigOptions.create_from_environment(db_identifier)``, each logged in to
    with its own credentials."""
    exp = Experiment("ident", exp_path=str(tmp_path), launcher="local")
    db = exp.create_database(interface="lo", db_identifier="reg")
    model = exp.create_model("m", exp.create_run_settings(sys.executable, exe_args=["-c", MEMBER]))
    model.colocate_db_uds(db_identifier="mine")  # no socket given: named now, as SmartSim shows it
    address = "unix://" + model.colocated_db.unix_socket
    exp.generate(model)
    exp.start(db)
    try:
        exp.start(model, block=True)
        assert exp.get_status(model) == [SmartSimStatus.STATUS_COMPLETED]
        assert (Path(model.path) / "seen").read_text() == f"{address} 3,{db.get_address()[0]} 6"
    finally:
        exp.stop(db)


def test_a_name_a_running_store_has_is_refused_for_another_store_or_a_colocated_one(tmp_path: Path):
    exp = Experiment("names", exp_path=str(tmp_path), launcher="local")
    db = exp.create_database(db_identifier="mine")
    again = exp.create_database(db_identifier="mine")
    colo = [exp.create_model(f"m{i}", exp.create_run_settings("true")) for i in range(2)]
    for model in colo:
        model.colocate_db_uds(db_identifier="mine")
    exp.start(db)
    try:
        for entity in (again, colo[0]):
            with pytest.raises(SSDBIDConflictError, match="'mine' has already been used"):
                exp.start(entity)
        assert exp.get_status(*colo) == [SmartSimStatus.STATUS_NEW] * 2  # nothing launched
        assert exp.get_status(db) == [SmartSimStatus.STATUS_RUNNING]
    finally:
        exp.stop(db)
    exp.start(*colo, block=True)  # two colocated stores of one name, each its model's own: allowed
    assert exp.get_status(*colo) == [SmartSimStatus.STATUS_COMPLETED] * 2


def test_batch_settings_print_as_smartsims_with_each_schedulers_command_and_node_count():
    bsub = create_batch_settings("lsf", nodes=2, time="01:00:00", batch_args={"core_isolation": None, "x": "y"})
    assert str(bsub) == ("Batch Command: bsub\nBatch arguments:\n\tcore_isolation = None\n\tx = y\n\tnnodes = 2\n"
                         "\ttime = 01:00:00")
    assert str(create_batch_settings("slurm", nodes=1)) == "Batch Command: sbatch\nBatch arguments:\n\tnodes = 1"
    assert str(create_batch_settings("pbs")) == "Batch Command: qsub"
