"""``Experiment.telemetry`` and ``Orchestrator.telemetry``: SmartSim's switch,
always on in simctl, reading the manifest and the store's shards directly."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from smartredis import Client
from smartsim import Experiment

import simctl


def test_telemetry_reads_the_jobs_and_the_stores_memory_and_clients(tmp_path: Path) -> None:
    exp = Experiment("t", exp_path=str(tmp_path), launcher="local")
    assert exp.telemetry.is_enabled
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exp.telemetry.disable()
    assert "nothing was turned off" in str(caught[0].message) and exp.telemetry.is_enabled
    db = exp.create_database(interface="lo")
    model = exp.create_model("m", exp.create_run_settings("true"))
    exp.generate(model)
    exp.start(db)
    try:
        exp.start(model, block=True)
        jobs = {j["name"]: j for j in exp.telemetry.jobs()}
        assert jobs["m"]["status"] == "Completed" and jobs["m"]["returncode"] == 0 and jobs["m"]["type"] == "Model"
        assert jobs["m"]["finished_at"] >= jobs["m"]["launched_at"] > 0
        assert [j["status"] for n, j in jobs.items() if n != "m"] == ["Running"]  # the store's shard
        client = Client(address=db.get_address()[0], cluster=False)
        client.put_tensor("x", __import__("numpy").zeros(1 << 20))
        (mem,) = db.telemetry.memory()
        assert mem["used_memory"] > 8 << 20 and mem["used_memory_peak"] >= mem["used_memory"]
        assert mem["total_system_memory"] > mem["used_memory"]
        assert db.telemetry.clients()[0] >= 1
    finally:
        exp.stop(db)
    with pytest.raises(simctl.SimctlError):
        db.telemetry.memory()  # a stopped store has nothing to report
