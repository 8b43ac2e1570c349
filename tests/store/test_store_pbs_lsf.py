"""The store on the other schedulers: PBS (the Torque-compatible qsub/qstat/
qdel of the real test Slurm) and LSF (the stand-in of tests/lsf_standin): the
shards as one batch job, a producer model as another, the producer's tensor
read back in the driver."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from _store_helpers import free_ports
from slurm_helpers import outside_allocation, require_slurm

import simctl
from simctl import Status

PY = sys.executable
PRODUCER = "from simctl import Client; import numpy as np; Client().put_tensor('from-producer', np.arange(4.0))"


def _run(exp: simctl.Experiment, batch_settings) -> None:
    db = exp.create_database(port=free_ports(), batch=True, time="00:05:00")
    prod = exp.create_model("producer", exp.create_run_settings(exe=PY, exe_args=["-c", PRODUCER]),
                            batch_settings=batch_settings)
    exp.generate(db, prod)
    exp.start(db)
    try:
        exp.start(prod)
        assert exp.get_status(prod) == [Status.COMPLETED], exp.summary()
        np.testing.assert_array_equal(db.client().get_tensor("from-producer"), np.arange(4.0))
    finally:
        exp.stop(db)
    assert exp.get_status(db) == [Status.CANCELLED]


@pytest.mark.slurm
def test_a_store_as_a_pbs_batch_job(tmp_path, monkeypatch):
    require_slurm()
    outside_allocation(monkeypatch)
    exp = simctl.Experiment("p", exp_path=str(tmp_path / "p"), launcher="pbs", plugins=simctl.make_plugins())
    _run(exp, exp.create_batch_settings(time="00:02:00"))


def test_a_store_as_an_lsf_batch_job(tmp_path, lsf_env):
    exp = simctl.Experiment("l", exp_path=str(tmp_path / "l"), launcher="lsf", plugins=simctl.make_plugins())
    _run(exp, exp.create_batch_settings(time="00:02:00"))
