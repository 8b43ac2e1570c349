"""Bounded waits (issue 15): every call of the client waits a documented,
bounded time; a frozen server (a real SIGSTOP of a real redis-server) and a
hung inference worker (a real SIGSTOP of a real worker) are errors within the
caller's timeout, on one server and on a 3-shard cluster; the supervisor
replaces a hung worker; a request is sent once.

Private servers and stores throughout (each test freezes or kills part of
its own). No test asserts an upper bound on elapsed time: a test checks that
a call raised the timeout error, and may check it did not return before its
timeout; pytest-timeout bounds the tests themselves, generously."""

from __future__ import annotations

import inspect
import json
import os
import re
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from _lifecycle_helpers import gone, wait_until
from _store_helpers import PASSWORD, Server, cluster_address, free_ports, make_client, start_cluster

import simctl
from simctl import ConfigError
from simctl.store import Client, StoreConnectionError, StoreError, StoreTimeoutError, protocol, wire
from simctl.store.address import parse_address
from simctl.store.direct import Direct
from simctl.store.hung import HungWatch

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def frozen() -> Iterator[Callable[[int], None]]:
    """``frozen(pid)`` stops a process (SIGSTOP); every one is continued at the end."""
    stopped: list[int] = []

    def freeze(pid: int) -> None:
        os.kill(pid, signal.SIGSTOP)
        stopped.append(pid)

    yield freeze
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def raises_after(seconds: float, error: type[BaseException], call: Callable[[], Any]) -> BaseException:
    """What ``call`` raised (an ``error``), having checked it did not give up before ``seconds``."""
    start = time.monotonic()
    with pytest.raises(error) as info:
        call()
    assert time.monotonic() - start >= seconds * 0.99, f"gave up before its timeout: {info.value}"
    return info.value


# -- the defaults --------------------------------------------------------------------------------


def test_every_wait_has_a_documented_default_of_at_most_30_s(server: Server) -> None:
    assert wire.TIMEOUT <= 30 and wire.CONNECT_TIMEOUT <= wire.TIMEOUT
    params = inspect.signature(Client).parameters
    assert params["timeout"].default == wire.TIMEOUT and params["connect_timeout"].default == wire.CONNECT_TIMEOUT
    doc = inspect.getdoc(Client) or ""
    assert "default 30 s" in doc and "default 5 s" in doc and "run_model" in doc
    run_doc = inspect.getdoc(Client.run_model) or ""
    assert "default: the client's ``timeout``, 30 s unless set" in run_doc
    for name in ("run_script", "run_model_multigpu", "run_script_multigpu"):
        assert "timeout" in inspect.signature(getattr(Client, name)).parameters, name
    with make_client(server.address) as c:
        assert (c._waits.timeout, c._waits.connect) == (wire.TIMEOUT, wire.CONNECT_TIMEOUT)
        for r in c._server.primaries().values():
            kwargs = r.connection_pool.connection_kwargs
            assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (30.0, 5.0)
    with make_client(server.address, timeout=2, connect_timeout=9) as c:
        assert (c._waits.timeout, c._waits.connect) == (2.0, 2.0)  # a connection waits no longer than a call
    with make_client(server.address, timeout=None, connect_timeout=None) as c:
        assert (c._waits.timeout, c._waits.connect) == (None, None)  # the user's choice: no limit


def test_bad_timeouts_are_refused_before_connecting() -> None:
    for bad in (0, -1, "5", True, float("inf"), float("nan")):
        with pytest.raises(ConfigError, match="Client: timeout must be a number of seconds > 0"):
            make_client("127.0.0.1:1", timeout=bad)
    with pytest.raises(ConfigError, match="Client: connect_timeout must be a number of seconds > 0"):
        make_client("127.0.0.1:1", connect_timeout=0)


def test_a_cluster_clients_node_connections_wait_the_clients_timeout(cluster: list[Server]) -> None:
    with make_client(cluster_address(cluster), timeout=7) as c:
        assert c.is_cluster
        for r in c._server.primaries().values():
            assert r.connection_pool.connection_kwargs["socket_timeout"] == 7.0


# -- a frozen server ------------------------------------------------------------------------------


def test_a_frozen_server_is_a_timeout_error_for_every_call_and_for_client(tmp_path: Path, frozen: Any) -> None:
    s = Server(tmp_path)
    try:
        c = make_client(s.address, timeout=1.5)
        c.put_tensor("t", np.ones(4))
        frozen(s.proc.pid)
        for call in (lambda: c.get_tensor("t"), lambda: c.put_tensor("u", np.ones(1 << 20)),
                     lambda: c.tensor_exists("t"), lambda: c.poll_tensor("t", 10, 1000)):
            err = raises_after(1.5, StoreTimeoutError, call)
            assert isinstance(err, StoreConnectionError) and isinstance(err, TimeoutError)
            assert f"the store at {s.address} did not answer within 1.5 s" in str(err)
        # Client() itself: the frozen server accepts the connection (its backlog) and never answers AUTH
        err = raises_after(1.5, StoreTimeoutError, lambda: make_client(s.address, timeout=1.5))
        assert f"no store answered at {s.address}: no answer within 1.5 s" in str(err)
        # connect_timeout no longer hides the wait: the handshake waits timeout, never the old 300 s
        raises_after(1.0, StoreConnectionError, lambda: make_client(s.address, timeout=1.0, connect_timeout=0.2))
        os.kill(s.proc.pid, signal.SIGCONT)
        assert c.get_tensor("t").tolist() == [1.0] * 4  # the client goes on once the server does
        c.close()
    finally:
        s.kill()


def test_client_with_many_addresses_waits_one_timeout_in_all(tmp_path: Path, frozen: Any) -> None:
    """Client() asks the addresses in turn, each for an equal share of the
    time left: two frozen servers cost one timeout, not two."""
    a, b = Server(tmp_path / "a", cluster=True), Server(tmp_path / "b", cluster=True)
    try:
        frozen(a.proc.pid)
        frozen(b.proc.pid)
        err = raises_after(2.0, StoreTimeoutError, lambda: make_client(f"{a.address},{b.address}", timeout=2))
        assert f"{a.address}: no answer within 1 s" in str(err)
        assert f"{b.address}: no answer within" in str(err)
    finally:
        a.kill()
        b.kill()


def test_a_frozen_cluster_shard_times_out_its_keys_and_the_others_work(tmp_path: Path, frozen: Any) -> None:
    nodes = start_cluster(tmp_path)
    try:
        for n in nodes:  # the healthy shards keep serving their slots while one is down (issue 15's durability)
            n.raw.config_set("cluster-require-full-coverage", "no")
        c = make_client(cluster_address(nodes), timeout=1.5)
        keys = {}
        for i in range(60):
            keys.setdefault(c._r.get_node_from_key(f"k{i}").port, f"k{i}")
        assert len(keys) == 3
        for k in keys.values():
            c.put_tensor(k, np.full(2, len(k), np.float32))
        stuck, others = nodes[1], [nodes[0], nodes[2]]
        frozen(stuck.proc.pid)
        err = raises_after(1.5, StoreTimeoutError, lambda: c.get_tensor(keys[stuck.port]))
        assert f"get_tensor {keys[stuck.port]!r}: the store at" in str(err) and "within 1.5 s" in str(err)
        raises_after(1.5, StoreTimeoutError, lambda: c.put_tensor(keys[stuck.port], np.zeros(3)))
        for n in others:
            k = keys[n.port]
            assert c.get_tensor(k).tolist() == [len(k)] * 2
            c.put_tensor(k, np.arange(3.0))
            assert c.get_tensor(k).tolist() == [0.0, 1.0, 2.0]
        # a client made while the shard is frozen, the frozen one named first, reaches the others
        fresh = make_client(",".join(n.address for n in [stuck, *others]), timeout=1.5)
        assert fresh.is_cluster
        for n in others:
            assert fresh.get_tensor(keys[n.port]).tolist() == [0.0, 1.0, 2.0]
        raises_after(1.5, StoreTimeoutError, lambda: fresh.get_tensor(keys[stuck.port]))
        os.kill(stuck.proc.pid, signal.SIGCONT)
        assert c.get_tensor(keys[stuck.port]).tolist() == [len(keys[stuck.port])] * 2
        fresh.close()
        c.close()
    finally:
        for n in nodes:
            n.kill()


# -- the wire: a timeout is final, a request goes out once ---------------------------------------------


def kill_when_blocked(server: Server, name: str) -> None:
    """Kill (CLIENT KILL) the connection named ``name`` once it blocks in BLPOP."""
    def blocked() -> int | None:
        for c in server.raw.client_list():
            if c.get("name") == name and c.get("cmd") == "blpop":
                return int(c["id"])
        return None

    server.raw.client_kill_filter(_id=wait_until(blocked, f"{name} to block"))


@pytest.mark.parametrize("retry", [False, True])
def test_an_exchange_whose_connection_breaks_is_sent_again_only_if_asked(server: Server, retry: bool) -> None:
    name = f"simctl-test-{retry}"
    d = Direct(parse_address(server.address), PASSWORD, timeout=60, name=name)
    server.raw.delete("{q}q", "{q}r")
    killer = threading.Thread(target=kill_when_blocked, args=(server, name))
    killer.start()
    try:
        if retry:  # sent again: pushed twice; then 2 s of BLPOP
            assert d.call([("RPUSH", "{q}q", "req"), ("BLPOP", "{q}r", 2)], retry=True)[-1] is None
            assert server.raw.llen("{q}q") == 2
        else:
            with pytest.raises(redis.ConnectionError):
                d.call([("RPUSH", "{q}q", "req"), ("BLPOP", "{q}r", 30)], retry=False)
            assert server.raw.llen("{q}q") == 1
    finally:
        killer.join()
        server.raw.delete("{q}q", "{q}r")
        d.close()


def kernel_wait(d: Direct) -> float:
    """The receive and send waits the kernel keeps on ``d``'s socket (seconds; they must agree)."""
    assert d._sock is not None
    waits = [struct.unpack("@ll", d._sock.getsockopt(socket.SOL_SOCKET, opt, struct.calcsize("@ll")))
             for opt in (socket.SO_RCVTIMEO, socket.SO_SNDTIMEO)]
    assert waits[0] == waits[1]
    return waits[0][0] + waits[0][1] / 1e6


def test_an_exchange_waits_its_own_timeout(tmp_path: Path, frozen: Any) -> None:
    server = Server(tmp_path)
    d = Direct(parse_address(server.address), PASSWORD, timeout=60)
    try:
        assert d.call([("BLPOP", "{q}none", "0.2")], timeout=5) == [None]
        frozen(server.proc.pid)
        raises_after(0.5, redis.TimeoutError, lambda: d.call([("PING",)], timeout=0.5))
        os.kill(server.proc.pid, signal.SIGCONT)
        assert d.call([("PING",)]) == [b"PONG"]
        assert kernel_wait(d) == 60  # the connection's own timeout is back
        assert d.call([("PING",)], timeout=5) == [b"PONG"] and kernel_wait(d) == 5
        assert d.call([("PING",)]) == [b"PONG"] and kernel_wait(d) == 60
        # a blocking socket whose waits the kernel keeps: no poll before each send and receive
        assert d._sock is not None and d._sock.gettimeout() is None
    finally:
        d.close()
        server.kill()


# -- the supervisor's watch of the taken lists -----------------------------------------------------


def held(rid: str, timeout: float | None) -> bytes:
    reply, kind, key = "r", "model", "m"
    body = protocol.request(reply, kind, key, ["x"], ["y"], "", timeout)[1]
    return body.replace(protocol.parse(body)["id"].encode(), rid.encode())


def test_the_watch_finds_a_worker_holding_a_request_past_its_timeout(server: Server) -> None:
    taken = protocol.taken_key("w", "CPU")
    server.raw.delete(taken)
    watch = HungWatch(server.address, PASSWORD, ["CPU", "GPU:0"], cluster=False)
    try:
        server.raw.rpush(taken, held("a", 3), held("b", None))
        watch.look(now=100.0)  # first seen
        watch.look(now=104.9)  # 4.9 s: within 3 s + the 2 s grace
        assert watch.hung() == {}
        watch.look(now=105.1)
        assert watch.hung() == {"CPU": "it held a request 5.1 s, past its caller's timeout of 3 s and 2 s more: hung"}
        watch.look(now=200.0)  # the same requests, still there while the next worker starts: not again
        assert watch.hung() == {}
        server.raw.rpush(taken, held("c", 1))  # a new request held by the next worker counts
        watch.look(now=201.0)
        watch.look(now=204.5)
        assert list(watch.hung()) == ["CPU"]
        server.raw.delete(taken)
        watch.look(now=300.0)  # answered: forgotten
        server.raw.rpush(taken, held("b", None))  # no timeout: no limit
        watch.look(now=301.0)
        watch.look(now=10_000.0)
        assert watch.hung() == {}
    finally:
        server.raw.delete(taken)
        watch.stop()


def test_the_watch_finds_a_worker_silent_while_it_holds_nothing(server: Server) -> None:
    """A worker asks for requests every second (BLMOVE): connections of a
    worker (by their names) all silent for HUNG_IDLE s while it holds nothing
    mean it is hung; a busy one (here: one that keeps sending) is not."""
    server.raw.delete(protocol.taken_key("w", "CPU"), protocol.taken_key("w", "GPU:0"), protocol.queue_key("w", "CPU"))
    silent = wire.connect(server.address, PASSWORD, protocol=2, client_name="simctl-ml-CPU-999991")
    busy = wire.connect(server.address, PASSWORD, protocol=2, client_name="simctl-ml-GPU:0-999992")
    watch = HungWatch(server.address, PASSWORD, ["CPU", "GPU:0"], cluster=False)
    try:
        silent.ping()
        busy.ping()
        watch.look()
        assert watch.hung() == {}
        end = time.monotonic() + protocol.HUNG_IDLE + 1.5
        while time.monotonic() < end:  # the silent one says nothing meanwhile
            busy.ping()
            time.sleep(0.2)
        watch.look()
        assert watch.hung() == {}  # silent, but nobody waits for it (it may be loading a runtime)
        server.raw.rpush(protocol.queue_key("w", "CPU"), b"{}")  # now a request waits
        watch.look()
        hung = watch.hung()
        assert list(hung) == ["CPU"], hung
        idle = re.fullmatch(r"it held no request and sent no command for (\d+) s while a request waited in its "
                            r"queue \(an idle worker asks for requests every 1 s\): hung", hung["CPU"])
        assert idle and int(idle.group(1)) >= protocol.HUNG_IDLE, hung
        watch.look()
        assert watch.hung() == {}  # that worker is reported once
    finally:
        server.raw.delete(protocol.queue_key("w", "CPU"))
        watch.stop()
        silent.close()
        busy.close()


def test_a_request_carries_its_timeout_and_older_requests_have_none() -> None:
    _, body = protocol.request("r", "model", "m", ["x"], ["y"], "", 2.5)
    msg = protocol.parse(body)
    assert msg["v"] == protocol.VERSION == 3 and protocol.timeout_of(msg) == 2.5
    _, body = protocol.request("r", "model", "m", ["x"], ["y"])
    assert "timeout" not in protocol.parse(body) and protocol.timeout_of(protocol.parse(body)) is None
    for bad in (0, -1, "3", True, None):
        assert protocol.timeout_of({"id": "x", "timeout": bad}) is None


# -- hung inference workers -----------------------------------------------------------------------------

SPIN = "def spin(x):\n    y = x\n    for i in range(2000000000):\n        y = y + 1\n    return y\n"
NEG = "def neg(x):\n    return -x\n"
#: seconds a test gives a restarted worker to start and load torch (a limit for a hang, not a measure)
RESTART = 300


def start_store(tmp: Path, shards: int = 1) -> tuple[simctl.Experiment, Any]:
    exp = simctl.Experiment("waits", exp_path=str(tmp), launcher="local")
    db = exp.create_database(port=free_ports(shards), db_nodes=shards, interface="lo")
    exp.start(db)
    return exp, db


def worker_pid(client: Client, key: str, device: str = "CPU", other_than: int = 0, wait: float = 60) -> int:
    """The pid of the worker of ``device`` on the shard holding ``key`` (once it is not ``other_than``)."""
    queue = protocol.queue_key(client._tag(key), device)

    def pid() -> int:
        pids = [p for p in protocol.worker_pids(client._key_cmd("t", queue, "CLIENT", "LIST"), device)
                if p != other_than]
        return pids[0] if len(pids) == 1 else 0

    return int(wait_until(pid, f"the worker of {device}", timeout=wait))


def llen(client: Client, key: str) -> int:
    return int(client._key_cmd("test", key, "LLEN", key))


class Caller(threading.Thread):
    """A client of its own running ``call(client)`` in a thread; ``error`` what it raised, ``waited`` how long."""

    def __init__(self, db: Any, call: Callable[[Client], Any], **client: Any) -> None:
        super().__init__()
        self.client = db.client(**client)
        self.call = call
        self.error: BaseException | None = None
        self.waited = 0.0

    def run(self) -> None:
        start = time.monotonic()
        try:
            self.call(self.client)
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            self.error = exc
        self.waited = time.monotonic() - start


@pytest.mark.parametrize("shards", [1, 3], ids=["standalone", "cluster"])
def test_a_hung_worker_fails_its_callers_within_their_timeouts_and_is_replaced(tmp_path: Path, frozen: Any,
                                                                                shards: int) -> None:
    exp, db = start_store(tmp_path, shards)
    try:
        with db.client() as c:
            c.set_script("neg", NEG)
            c.set_script("spin", SPIN)
            c.put_tensor("x", np.ones(2, np.float32))
            c.run_script("neg", "neg", "x", "y")  # the worker has loaded torch
            pid = worker_pid(c, "x")
            tag = c._tag("x")
            taken, queue = protocol.taken_key(tag, "CPU"), protocol.queue_key(tag, "CPU")
            first = Caller(db, lambda k: k.run_script("spin", "spin", "x", "y1", timeout=3))
            first.start()
            wait_until(lambda: llen(c, taken) == 1, "the worker to take the first request")
            frozen(pid)  # the worker holds the first request, and takes no other
            assert protocol.timeout_of(protocol.parse(c._key_cmd("t", taken, "LINDEX", taken, 0))) == 3
            # the second caller's run waits its client's timeout (the default of run_model and run_script)
            second = Caller(db, lambda k: k.run_script("neg", "neg", "x", "y2"), timeout=3)
            second.start()
            first.join()
            second.join()
            for caller, script in ((first, "spin"), (second, "neg")):
                assert isinstance(caller.error, StoreTimeoutError), caller.error
                assert caller.waited >= 3 * 0.99
                assert str(caller.error).startswith(f"run_script({script!r}, {script!r}): no reply within the "
                                                    "timeout (3 s)")
            assert "the inference worker for CPU took the request and has not answered: it is hung" \
                in str(first.error)
            assert "the inference worker for CPU did not take it" in str(second.error)
            assert "The request was withdrawn and will not run" in str(second.error)
            assert llen(c, queue) == 0  # withdrawn
            # the supervisor kills the worker (it holds a request past 3 s + the grace) and starts another,
            # which answers what the hung one held with an error saying why
            new = worker_pid(c, "x", other_than=pid, wait=RESTART)
            assert gone(pid)
            reply = protocol.reply_key(tag, first.client._id)
            answer = wait_until(lambda: c._key_cmd("t", reply, "LRANGE", reply, 0, -1), "the held request's answer")
            error = protocol.parse(answer[0])["error"]
            assert "the inference worker for CPU died while running this request (killed by its supervisor: it " \
                   "held a request" in error and "past its caller's timeout of 3 s and 2 s more: hung)" in error
            c.run_script("neg", "neg", "x", "y3", timeout=RESTART)  # the new worker serves (loading torch first)
            assert c.get_tensor("y3").tolist() == [-1.0, -1.0] and worker_pid(c, "x") == new
            assert not c.tensor_exists("y2")  # the withdrawn request never ran
            for caller in (first, second):
                caller.client.close()
    finally:
        exp.stop(db)


def test_a_worker_stopped_while_idle_is_replaced(tmp_path: Path, frozen: Any) -> None:
    exp, db = start_store(tmp_path)
    try:
        with db.client() as c:
            c.set_script("neg", NEG)
            c.put_tensor("x", np.ones(1, np.float32))
            c.run_script("neg", "neg", "x", "y")
            pid = worker_pid(c, "x")
            frozen(pid)  # holding nothing: once its last BLMOVE ends, it asks for nothing
            time.sleep(protocol.HUNG_IDLE + 2 * protocol.HUNG_CHECK)
            assert worker_pid(c, "x") == pid  # silent, but no request waits for it: left alone
            c.run_script("neg", "neg", "x", "z", timeout=RESTART)  # waits in the queue: the worker is replaced
            assert c.get_tensor("z").tolist() == [-1.0] and gone(pid) and worker_pid(c, "x") != pid
    finally:
        exp.stop(db)


def test_a_long_run_holds_its_device_only_until_its_timeout(tmp_path: Path) -> None:
    """A run longer than its caller's timeout: the caller gets an error at
    its timeout; the worker is killed once the run is past the timeout and
    the grace, and the request queued behind it is then served."""
    exp, db = start_store(tmp_path)
    try:
        with db.client() as c:
            c.set_script("spin", SPIN)
            c.set_script("neg", NEG)
            c.put_tensor("x", np.zeros(1, np.float32))
            pid = worker_pid(c, "x")
            taken = protocol.taken_key(c._tag("x"), "CPU")
            long = Caller(db, lambda k: k.run_script("spin", "spin", "x", "y", timeout=2))
            long.start()
            wait_until(lambda: llen(c, taken) == 1, "the worker to take the long run")
            behind = Caller(db, lambda k: k.run_script("neg", "neg", "x", "z", timeout=RESTART))
            behind.start()
            long.join()
            assert isinstance(long.error, StoreTimeoutError) and long.waited >= 2 * 0.99
            assert "run_script('spin', 'spin'): no reply within the timeout (2 s): the inference worker for CPU " \
                   "took the request and has not answered: it is hung, or the run takes longer" in str(long.error)
            behind.join()
            assert behind.error is None, behind.error
            assert c.get_tensor("z").tolist() == [-0.0] and not c.tensor_exists("y")
            assert worker_pid(c, "x") != pid
            for caller in (long, behind):
                caller.client.close()
    finally:
        exp.stop(db)


def test_a_run_waits_no_longer_than_its_timeout_on_a_frozen_server(tmp_path: Path, frozen: Any) -> None:
    exp, db = start_store(tmp_path)
    try:
        with db.client(timeout=20) as c:
            c.set_script("neg", NEG)
            c.put_tensor("x", np.ones(1, np.float32))
            c.run_script("neg", "neg", "x", "y")
            server = json.loads((Path(db.path) / "shard-0.addr").read_text())["pid"]
            frozen(server)
            err = raises_after(2, StoreTimeoutError, lambda: c.run_script("neg", "neg", "x", "y", timeout=2))
            assert "run_script('neg', 'neg'): the store shard holding" in str(err) and "within 2 s" in str(err)
            os.kill(server, signal.SIGCONT)
            c.run_script("neg", "neg", "x", "y")
    finally:
        exp.stop(db)


def test_bad_run_timeouts_and_no_limit(tmp_path: Path) -> None:
    exp, db = start_store(tmp_path)
    try:
        with db.client() as c:
            c.set_script("neg", NEG)
            c.put_tensor("x", np.ones(1, np.float32))
            for bad in (0, -2, "1", True):
                with pytest.raises(ConfigError, match=r"run_script\('neg', 'neg'\): timeout must be a number"):
                    c.run_script("neg", "neg", "x", "y", timeout=bad)
                with pytest.raises(ConfigError, match=r"run_model\('m.GPU:1'\): timeout must be a number"):
                    c.run_model_multigpu("m", 1, 0, 2, "x", "y", timeout=bad)
            c.run_script("neg", "neg", "x", "y", timeout=None)  # no limit
            assert c.get_tensor("y").tolist() == [-1.0]
            with pytest.raises(StoreError, match=r"no script 'neg.GPU:0'"):  # a reply, well within the timeout
                c.run_script_multigpu("neg", "neg", "x", "y", 0, 0, 1, timeout=60)
    finally:
        exp.stop(db)


def test_a_broken_connection_does_not_send_a_request_twice(tmp_path: Path, frozen: Any) -> None:
    """The caller's connection is killed while it waits: the request is found on
    the shard (not sent again) and its reply still comes, once."""
    exp, db = start_store(tmp_path)
    try:
        with db.client() as c:
            c.set_script("neg", NEG)
            c.put_tensor("x", np.ones(1, np.float32))
            c.run_script("neg", "neg", "x", "y")
            pid = worker_pid(c, "x")
            tag = c._tag("x")
            lists = [protocol.queue_key(tag, "CPU"), protocol.taken_key(tag, "CPU")]
            frozen(pid)
            caller = Caller(db, lambda k: k.run_script("neg", "neg", "x", "once", timeout=120))
            caller.start()
            wait_until(lambda: sum(llen(c, k) for k in lists) == 1, "the request on the shard")

            def waiting() -> int | None:  # the caller's connection, blocked in BLPOP (the worker's is in BLMOVE)
                ids = [int(i["id"]) for i in c._r.client_list() if i.get("cmd") == "blpop"]
                return ids[0] if len(ids) == 1 else None

            c._r.client_kill_filter(_id=wait_until(waiting, "the caller to wait"))
            assert sum(llen(c, k) for k in lists) == 1  # not sent again
            os.kill(pid, signal.SIGCONT)
            caller.join()
            assert caller.error is None, caller.error
            assert c.get_tensor("once").tolist() == [-1.0]
            assert sum(llen(c, k) for k in lists) == 0
            caller.client.close()
    finally:
        exp.stop(db)
