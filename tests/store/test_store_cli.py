"""Ways into a running feature store (issue 9): ``db.client()`` in the driver,
and ``simctl store ls`` / ``simctl store get`` from the shell, using what the
orchestrator recorded. Against real stores started through an Experiment on
the local launcher (one server and a 3-shard cluster): the session's shared
ones (each test on an emptied store) where the test only reads and writes
data, a private one where it starts, stops, kills or tampers with it."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _lifecycle_helpers import PY, SIMCTL, gone, make_exp, wait_until, write_script
from _store_helpers import free_ports

import simctl
from simctl import Client, Dataset, Status
from simctl.store import StoreConnectionError


def store(cmd: str, exp_path: Any, *args: str) -> subprocess.CompletedProcess[str]:
    """``simctl store CMD EXP_PATH ARGS...`` (the installed console script, this tree's sources)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSDB", "SSKEY"))}
    return subprocess.run([SIMCTL, "store", cmd, str(exp_path), *args], capture_output=True, text=True, env=env)


def ls_json(exp_path: Any, *args: str) -> list[dict[str, Any]]:
    proc = store("ls", exp_path, "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(params=[1, 3], ids=["one-server", "cluster"])
def running(request, stores):
    """(experiment, a running store of 1 or 3 shards, its client) with tensors, a dataset and a list in it,
    and nothing else: the session's store (tests/conftest.py ``stores``), emptied for the test."""
    shared = stores.orchestrator(request.param).emptied()
    exp, db = shared.exp, shared.db
    client = db.client()
    client.put_tensor("sim.temperature", np.arange(12, dtype=">f4").reshape(3, 4))
    client.put_tensor("scalar", np.array(7, dtype=np.int16))
    client.put_tensor("big", np.ones((256, 1024)))  # 2 MiB
    ds = Dataset("run0")
    ds.add_tensor("u", np.linspace(0, 1, 5))
    ds.add_tensor("v", np.zeros((2, 2), dtype=np.complex64))
    ds.add_meta_scalar("step", 3)
    client.put_dataset(ds)
    client.append_to_list("runs", ds)
    yield exp, db, client
    client.close()


# -- db.client() -----------------------------------------------------------------------------------


def test_db_client_is_a_ready_client_shared_with_the_models_the_store_serves(tmp_path):
    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    with pytest.raises(simctl.SimctlError, match="has not been started"):
        db.client()
    exp.start(db)
    client = db.client()
    assert isinstance(client, Client) and not client.is_cluster and client.addresses == db.get_address()
    client.put_tensor("x", np.arange(4.0))
    prog = write_script(tmp_path / "double.py", """
        from simctl import Client
        c = Client()
        c.put_tensor("y", 2 * c.get_tensor("x"))
    """)
    model = exp.create_model("double", exp.create_run_settings(exe=PY, exe_args=[str(prog)]), path=str(tmp_path))
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / "double.err").read_text()
    np.testing.assert_array_equal(client.get_tensor("y"), [0.0, 2.0, 4.0, 6.0])
    client.close()
    exp.stop(db)
    with pytest.raises(StoreConnectionError, match="no store answered"):
        db.client()


def test_db_client_of_a_cluster_reaches_every_shard(stores):
    db = stores.orchestrator(3).emptied().db  # the session's cluster
    with db.client(logger_name="driver") as client:
        assert client.is_cluster
        for i in range(30):  # keys spread over the three shards
            client.put_tensor(f"t{i}", np.full(3, i))
        assert [int(client.get_tensor(f"t{i}")[0]) for i in range(30)] == list(range(30))
        per_shard = [info["db0"]["keys"] for info in client.get_db_node_info()]
        assert len(per_shard) == 3 and sum(per_shard) == 30 and all(per_shard)


def test_orchestrator_attach_reads_what_a_ready_store_recorded(tmp_path):
    """What `simctl store` uses: the orchestrator of a running store, from its directory alone."""
    from simctl.store.orchestrator import Orchestrator, StoreFileUnreadable, StoreNotReady

    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    exp.start(db)
    attached = Orchestrator.attach(db.path)
    assert (attached.name, attached.get_address(), attached.password, attached.is_cluster) == \
        (db.name, db.get_address(), db.password, False)
    assert attached.hosts == db.hosts and len(db.hosts) == 1 and db.hosts[0]  # the shards' hosts, as recorded
    assert attached.is_active()
    older = tmp_path / "older"  # a store.json written before the hosts were recorded: the addresses' hosts
    older.mkdir()
    recorded = json.loads((Path(db.path) / "store.json").read_text())
    del recorded["hosts"]
    (older / "store.json").write_text(json.dumps(recorded))
    assert Orchestrator.attach(older).hosts == [a.rpartition(":")[0] for a in db.get_address()]
    with attached.client() as c:
        c.put_tensor("seen", np.arange(3))
    with attached.shards(3, 5) as shards:
        assert [s.exists("seen") for s in shards] == [1]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreNotReady, match="store.json does not exist") as err:
        Orchestrator.attach(empty)
    assert err.value.path == str(empty / "store.json")
    (empty / "store.json").write_text("{not json")
    with pytest.raises(StoreFileUnreadable, match="cannot read the store's address and password from"):
        Orchestrator.attach(empty)
    (empty / "store.json").write_text(json.dumps({"name": "x", "addresses": ["nohost"], "password": "p"}))
    with pytest.raises(simctl.SimctlError, match="does not hold a store's addresses"):
        Orchestrator.attach(empty)
    exp.stop(db)
    assert not attached.is_active()


# -- simctl store ls ------------------------------------------------------------------------------


def test_store_ls_lists_every_key_with_its_kind_dtype_shape_and_size(running):
    exp, _, _ = running
    rows = {r["key"]: r for r in ls_json(exp.exp_path)}
    assert sorted(rows) == ["big", "runs", "scalar", "sim.temperature", "{run0}.meta", "{run0}.u", "{run0}.v"]
    t = rows["sim.temperature"]
    assert (t["kind"], t["dtype"], t["shape"]) == ("tensor", ">f4", [3, 4])  # big-endian stays so
    assert t["size"] == 32 + 12 * 4  # header (padded to 32 bytes) and the data
    assert (rows["scalar"]["dtype"], rows["scalar"]["shape"]) == ("int16", [])
    assert (rows["big"]["dtype"], rows["big"]["shape"], rows["big"]["size"]) == ("float64", [256, 1024],
                                                                                  32 + 256 * 1024 * 8)
    # a dataset (format 2, SmartRedis's layout): its metadata hash lists its tensors, each a key of its own
    assert (rows["{run0}.meta"]["kind"], rows["{run0}.meta"]["details"]) == ("dataset", "tensors: u, v")
    assert (rows["{run0}.v"]["dtype"], rows["{run0}.v"]["shape"]) == ("complex64", [2, 2])
    assert (rows["runs"]["kind"], rows["runs"]["details"], rows["runs"]["size"]) == ("list", "1 entry", None)


def test_store_ls_filters_with_a_pattern_and_prints_a_table_without_the_password(running):
    exp, db, _ = running
    assert [r["key"] for r in ls_json(exp.exp_path, "{run0}.[uv]")] == ["{run0}.u", "{run0}.v"]
    assert ls_json(exp.exp_path, "nothing*") == []
    proc = store("ls", exp.exp_path, "sim.*")
    assert proc.returncode == 0, proc.stderr
    assert "1 key(s) matching 'sim.*'" in " ".join(proc.stdout.split())  # the title, however the path wraps it
    (line,) = [ln for ln in proc.stdout.splitlines() if "sim.temperature" in ln]
    assert [c.strip() for c in line.strip("│ ").split("│")] == ["sim.temperature", "tensor", ">f4", "(3, 4)",
                                                               "80 B"]
    assert "big" not in proc.stdout
    full = store("ls", exp.exp_path)
    assert "2.0 MiB" in full.stdout and db.password not in full.stdout + full.stderr


def test_store_ls_reads_a_long_dataset_acknowledgement_whole(stores):
    """An acknowledgement longer than the header bytes ls reads first (1024) is still a dataset."""
    shared = stores.orchestrator(1).emptied()
    exp, db = shared.exp, shared.db
    names = [f"field_number_{i:03d}" for i in range(100)]
    ds = Dataset("wide")
    for n in names:
        ds.add_tensor(n, np.zeros(1))
    with db.client() as client:
        client.put_dataset(ds)
    (row,) = ls_json(exp.exp_path, "{wide}.meta")
    assert row["kind"] == "dataset" and row["details"] == "tensors: " + ", ".join(names)


# -- simctl store get ------------------------------------------------------------------------------


def test_store_get_writes_the_tensor_to_a_npy_file(running, tmp_path):
    exp, _, client = running
    out = tmp_path / "temperature.data"  # any name: written as given, not with .npy added
    proc = store("get", exp.exp_path, "sim.temperature", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "sim.temperature: >f4 (3, 4) -> " in proc.stdout
    got = np.load(out)
    assert got.dtype == np.dtype(">f4") and got.shape == (3, 4)
    np.testing.assert_array_equal(got, client.get_tensor("sim.temperature"))
    assert store("get", exp.exp_path, "{run0}.v", "-o", str(tmp_path / "v.npy")).returncode == 0
    assert np.load(tmp_path / "v.npy").dtype == np.complex64
    proc = subprocess.run([SIMCTL, "store", "get", exp.exp_path, "big", "-o", "-"], capture_output=True)
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_array_equal(np.load(io.BytesIO(proc.stdout)), np.ones((256, 1024)))


def test_store_get_of_what_is_not_a_tensor_says_what_it_is(running, tmp_path):
    exp, _, _ = running
    out = tmp_path / "x.npy"
    missing = store("get", exp.exp_path, "sim.pressure", "-o", str(out))
    assert missing.returncode == 1
    assert "store 'orchestrator' has no key 'sim.pressure'" in missing.stderr and "simctl store ls" in missing.stderr
    dataset = store("get", exp.exp_path, "{run0}.meta", "-o", str(out))
    assert dataset.returncode == 1
    assert "is a dataset (tensors: u, v); get one of its tensors, e.g. '{run0}.u'" in dataset.stderr
    lst = store("get", exp.exp_path, "runs", "-o", str(out))
    assert lst.returncode == 1 and "key 'runs' of store 'orchestrator' holds a Redis list, not a tensor" in lst.stderr
    assert not out.exists()  # nothing written


def test_store_get_of_a_string_that_is_not_a_tensor(tmp_path, stores):
    shared = stores.orchestrator(1).emptied()
    exp, db = shared.exp, shared.db
    import redis

    host, _, port = db.get_address()[0].rpartition(":")
    r = redis.Redis(host=host, port=int(port), username=db.username, password=db.password)
    r.set("note", b"written by someone else")
    r.close()
    proc = store("get", exp.exp_path, "note", "-o", str(tmp_path / "n.npy"))
    assert proc.returncode == 1 and "key 'note' of store 'orchestrator': not a simctl tensor" in proc.stderr
    (row,) = ls_json(exp.exp_path, "note")
    assert (row["kind"], row["dtype"], row["size"]) == ("string", None, len(b"written by someone else"))
    with db.client() as client:  # issue 16: a script was "not a simctl tensor"
        client.set_script("neg", "def neg(x):\n    return -x\n")
        client.set_model("net", b"MODEL", "ONNX")
    for key, what, call in (("neg", r"a script (or function)", "get_script"), ("net", "an ML model", "get_model")):
        proc = store("get", exp.exp_path, key, "-o", str(tmp_path / "n.npy"))
        assert proc.returncode == 1
        assert f"key {key!r} of store 'orchestrator' holds {what}, not a tensor (Client.{call} reads it)" in proc.stderr
        (row,) = ls_json(exp.exp_path, key)
        assert row["kind"] == key.replace("neg", "script").replace("net", "model")


# -- finding the store, and what is wrong when it cannot be found ------------------------------------


def test_no_experiment_no_store_recorded(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = store("ls", empty)
    assert proc.returncode == 2 and f"no simctl experiment at {empty}" in proc.stderr
    assert not (empty / ".simctl").exists()  # nothing written there

    exp = make_exp(tmp_path)
    model = exp.create_model("m", exp.create_run_settings(exe=PY, exe_args=["-c", "pass"]), path=str(tmp_path))
    exp.start(model)
    for cmd, args in (("ls", ()), ("get", ("k", "-o", str(tmp_path / "k.npy")))):
        proc = store(cmd, exp.exp_path, *args)
        assert proc.returncode == 1
        assert f"the experiment at {exp.exp_path} has no feature store: its manifest records no orchestrator" \
            in proc.stderr


def test_a_stopped_store_is_not_running(tmp_path):
    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    exp.start(db)
    assert store("ls", exp.exp_path).returncode == 0
    exp.stop(db)
    for cmd, args in (("ls", ()), ("get", ("k", "-o", str(tmp_path / "k.npy")))):
        proc = store(cmd, exp.exp_path, *args)
        assert proc.returncode == 1
        assert ("store 'orchestrator' of the experiment at" in proc.stderr
                and "is not running (its shards are recorded Cancelled)" in proc.stderr)


def test_a_store_whose_server_died_is_not_running(tmp_path):
    """Recorded running (its driver did not look yet), but nothing answers."""
    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    exp.start(db)
    info = json.loads((Path(db.path) / "shard-0.addr").read_text())
    os.kill(info["supervisor"], 9)  # the supervisor (which would restart a killed server); its server dies with it
    wait_until(lambda: gone(info["pid"]) and gone(info["supervisor"]), "the shard to end")
    proc = store("ls", exp.exp_path)
    assert proc.returncode == 1 and "store 'orchestrator'" in proc.stderr and "is not running" in proc.stderr
    exp.get_status(db)  # the driver notices


def test_a_store_not_ready_yet_has_no_address_file(tmp_path):
    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    exp.start(db)
    recorded = Path(db.path) / "store.json"
    assert stat.S_IMODE(recorded.stat().st_mode) == 0o600
    recorded.unlink()  # as before the store first answered
    proc = store("ls", exp.exp_path)
    assert proc.returncode == 1
    assert "store 'orchestrator' is not running or not ready yet (recorded Running)" in proc.stderr
    assert str(recorded) in proc.stderr
    exp.stop(db)


def test_an_experiment_with_two_stores_needs_db(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports(2)
    first = exp.create_database(port=port, db_identifier="first")
    second = exp.create_database(port=port + 1, db_identifier="second")
    exp.start(first, second)
    with first.client() as c1, second.client() as c2:
        c1.put_tensor("in_first", np.zeros(1))
        c2.put_tensor("in_second", np.zeros(2))
    proc = store("ls", exp.exp_path)
    assert proc.returncode == 1 and "has 2 stores (first, second); choose one with --db NAME" in proc.stderr
    assert [r["key"] for r in ls_json(exp.exp_path, "--db", "second")] == ["in_second"]
    proc = store("get", exp.exp_path, "in_first", "--db", "first", "-o", str(tmp_path / "f.npy"))
    assert proc.returncode == 0, proc.stderr
    proc = store("ls", exp.exp_path, "--db", "third")
    assert proc.returncode == 1 and "--db: the experiment at" in proc.stderr and "it has: first, second" in proc.stderr
    exp.stop(first, second)


def test_a_server_that_refuses_the_recorded_password_is_not_the_store(tmp_path):
    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    exp.start(db)
    recorded = Path(db.path) / "store.json"
    info = json.loads(recorded.read_text())
    recorded.write_text(json.dumps(dict(info, password="stale")))  # as if another server had taken the port
    proc = store("ls", exp.exp_path)
    assert proc.returncode == 1
    assert f"store 'orchestrator' is not running: {info['addresses'][0]} refused the password" in proc.stderr
    assert "stale" not in proc.stderr and db.password not in proc.stderr
    exp.stop(db)


def test_a_frozen_store_is_an_error_within_the_timeout_not_silence(tmp_path):
    """simctl store ls/get wait --timeout seconds (default 10) for any answer: a
    stopped server (SIGSTOP) is a clear error, not a silent wait."""
    help_text = subprocess.run([SIMCTL, "store", "ls", "--help"], capture_output=True, text=True).stdout
    assert "--timeout" in help_text and "[default: 10.0; x>0]" in " ".join(help_text.split())
    exp = make_exp(tmp_path)
    db = exp.create_database(port=free_ports())
    exp.start(db)
    try:
        server = json.loads((Path(db.path) / "shard-0.addr").read_text())["pid"]
        os.kill(server, signal.SIGSTOP)
        try:
            for cmd, args in (("ls", ()), ("get", ("k", "-o", str(tmp_path / "k.npy")))):
                start = time.monotonic()
                proc = store(cmd, exp.exp_path, *args, "--timeout", "1.5")
                assert time.monotonic() - start >= 1.5
                assert proc.returncode == 1, proc.stderr
                assert (f"store 'orchestrator' is not running: {db.get_address()[0]} did not answer within 1.5 s "
                        "(a stopped, hung or overloaded server; --timeout sets the wait)") in proc.stderr
        finally:
            os.kill(server, signal.SIGCONT)
        assert store("ls", exp.exp_path, "--timeout", "1.5").returncode == 0
    finally:
        exp.stop(db)
