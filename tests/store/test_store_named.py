"""One model, several stores (issue 19): a store and a model's colocated
store, or two stores, each handed to the model under its name too
(``SSDB_<name>``, ``SSDB_PASSWORD_<name>``...), so the application logs in to
each with that store's own credentials: ``Client(db_identifier=name)``, or
``Client(address=...)`` of one of them without a password. Real stores, a
real application."""

from __future__ import annotations

import json
import sys

import pytest
from _lifecycle_helpers import make_exp, write_script

import simctl
from simctl import Status

APP = """
    import json, os
    import numpy as np
    from simctl import Client

    names = sorted({names!r})
    seen = {{"plain": os.environ["SSDB"], "types": [os.environ["SR_DB_TYPE_" + n] for n in names],
             "secret_names": sorted(k for k in os.environ if k.startswith("SSDB_PASSWORD"))}}
    for i, name in enumerate(names):
        Client(db_identifier=name).put_tensor("t", np.full(3, i, dtype=np.int64))
    # an address given alone: the credentials of the store it belongs to
    seen["by_address"] = [int(Client(address=os.environ["SSDB_" + n], cluster=False).get_tensor("t")[0])
                          for n in names]
    seen["plain_reads"] = int(Client().get_tensor("t")[0])
    try:
        Client(db_identifier="nope")
    except Exception as exc:
        seen["unknown"] = str(exc)
    print(json.dumps(seen))
"""


def _run(exp: simctl.Experiment, model: simctl.Model) -> dict:
    exp.start(model, block=True)
    assert exp.get_status(model) == [Status.COMPLETED], (model.path and open(f"{model.path}/{model.name}.err").read())
    with open(f"{model.path}/{model.name}.out") as fh:
        return json.loads(fh.read().strip().splitlines()[-1])


@pytest.mark.parametrize("transport", ["tcp", "uds"])
def test_a_model_uses_a_store_and_its_colocated_store_each_with_its_credentials(tmp_path, transport):
    exp = make_exp(tmp_path)
    db = exp.create_database(interface="lo", db_identifier="reg")
    app = write_script(tmp_path / "app.py", APP.format(names=["reg", "colo"]))
    model = exp.create_model("m", exp.create_run_settings(sys.executable, exe_args=[str(app)]))
    getattr(model, f"colocate_db_{transport}")(db_identifier="colo")
    exp.start(db)
    try:
        seen = _run(exp, model)
        # the standard store holds what the model wrote to "reg" (colo = 1, reg = 0 in sorted order)
        assert int(db.client().get_tensor("t")[0]) == 1
    finally:
        exp.stop(db)
    assert seen["types"] == ["Standalone", "Standalone"]
    assert seen["secret_names"] == ["SSDB_PASSWORD", "SSDB_PASSWORD_colo", "SSDB_PASSWORD_reg"]
    assert seen["by_address"] == [0, 1]
    assert seen["plain_reads"] == 0  # the plain SSDB is the colocated store's (the one beside the model)
    assert seen["plain"] != db.get_address()[0]
    assert "no store named 'nope'" in seen["unknown"] and "'colo', 'reg'" in seen["unknown"]


def test_a_model_uses_two_stores_each_with_its_credentials(tmp_path):
    exp = make_exp(tmp_path)
    one, two = exp.create_database(interface="lo", db_identifier="one"), exp.create_database(
        interface="lo", db_identifier="two")
    app = write_script(tmp_path / "app.py", APP.format(names=["one", "two"]))
    model = exp.create_model("m", exp.create_run_settings(sys.executable, exe_args=[str(app)]))
    exp.start(one, two)
    try:
        assert one.password != two.password
        seen = _run(exp, model)
        assert [int(db.client().get_tensor("t")[0]) for db in (one, two)] == [0, 1]
    finally:
        exp.stop(one, two)
    assert seen["by_address"] == [0, 1]
    assert seen["plain"] == two.get_address()[0] and seen["plain_reads"] == 1  # the last handed over


def test_a_colocated_store_name_that_would_clash_is_refused(tmp_path):
    model = make_exp(tmp_path).create_model("m", simctl.RunSettings("true"))
    with pytest.raises(simctl.ConfigError, match="db_identifier 'PASSWORD' cannot name a store's variables"):
        model.colocate_db_tcp(db_identifier="PASSWORD")
    with pytest.raises(simctl.ConfigError, match="db_identifier"):
        model.colocate_db_uds(db_identifier="a/b")
