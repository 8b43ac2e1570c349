"""SmartSim's ``Orchestrator.set_run_arg`` / ``set_batch_arg``: a flag the
store's launch sets itself is ignored with a warning (simctl itself refuses
it); the others are set."""

from __future__ import annotations

import logging

import pytest
from smartsim.database import Orchestrator
from smartsim.error import SmartSimError


def test_reserved_run_and_batch_args_are_ignored_with_a_warning(caplog):
    orc = Orchestrator(6780, db_nodes=3, batch=True, interface="lo", launcher="pbs", run_command="aprun")
    with caplog.at_level(logging.WARNING):
        orc.set_run_arg("pes-per-numa-node", "5")
        orc.set_batch_arg("N", "another_name")
    assert "pes-per-numa-node" not in orc.run_settings.run_args and "N" not in orc.batch_settings.batch_args
    assert "Can not set run argument pes-per-numa-node" in caplog.text
    assert "Can not set batch argument N" in caplog.text
    orc.set_run_arg("account", "ACCOUNT")
    assert all(db.run_settings.run_args["account"] == "ACCOUNT" for db in orc.entities)
    lsf = Orchestrator(6780, db_nodes=3, batch=True, hosts=["b", "h1", "h2"], launcher="lsf", run_command="jsrun")
    lsf.set_run_arg("l", "gpu-gpu")
    assert "l" not in lsf.run_settings.run_args
    with pytest.raises(SmartSimError):
        Orchestrator(6780, db_nodes=3, interface="lo", launcher="pbs", run_command="aprun").set_batch_arg("a", "b")
