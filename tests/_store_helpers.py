"""The stores the tests start, for every layer: the one port picker, bare
redis-servers (a password-protected single server and a 3-shard Redis
Cluster, for the client's wire-level tests), and the session's store factory
(``stores`` in tests/conftest.py), which starts each kind of shared store once
per session and stops it at the end.

Shared stores are for tests that only read and write data: such a test gets
the store emptied for it (its fixture flushes it first). A test that kills,
stops, flushes as part of what it tests, or reconfigures a store starts a
private one."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import redis
from _lifecycle_helpers import SHARED_PROCESSES

import simctl
from simctl.store import Client, ports, servermodule
from simctl.store.ports import port_free  # noqa: F401  (the tests' name for it too)

REDIS_SERVER = "/usr/bin/redis-server"
#: the password of every bare redis-server the tests start
PASSWORD = "pw-" + secrets.token_hex(12)
#: the store variables of the environment (a client made by make_client sees only those it is given)
STORE_ENV = ("SSDB", "SSDB_USER", "SSDB_PASSWORD", "SSDB_TLS_CA", "SSDB_CLUSTER", "SSKEYIN", "SSKEYOUT", "SR_LOG_LEVEL",
             "SR_LOG_FILE")
#: a Redis Cluster node also listens on its cluster bus, at its port + 10000
BUS_OFFSET = 10000


# -- ports ------------------------------------------------------------------------------------------


def free_ports(n: int = 1, cluster: bool | None = None) -> int:
    """A base port such that it and the next n-1 are free, and for a cluster
    (``cluster``; by default n >= 3) each one's bus port (port + 10000) too:
    the product's own picker (:func:`simctl.store.ports.free_ports`: outside
    the kernel's ephemeral range, never the same twice in a process). The one
    port picker of the tests: every store, shard and cluster node they start
    takes its ports from here."""
    return ports.free_ports(n, n >= 3 if cluster is None else cluster)


# -- bare redis-servers -----------------------------------------------------------------------------


class Server:
    """One redis-server with a password, in a directory of its own."""

    def __init__(self, root: Path, cluster: bool = False, password: str = PASSWORD) -> None:
        self.port = free_ports(1, cluster=cluster)
        self.dir = root / f"redis-{self.port}"
        self.dir.mkdir(parents=True)
        self.socket = self.dir / "redis.sock"
        conf = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}", 'save ""', "appendonly no",
                f"requirepass {password}", f"masterauth {password}", "dbfilename dump.rdb",
                f"unixsocket {self.socket}", "unixsocketperm 700"]
        if cluster:
            conf += ["cluster-enabled yes", "cluster-config-file nodes.conf", "cluster-node-timeout 5000"]
        (self.dir / "redis.conf").write_text("\n".join(conf) + "\n")
        self.log = self.dir / "redis.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([REDIS_SERVER, str(self.dir / "redis.conf")], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        self.address = f"127.0.0.1:{self.port}"
        self.raw = redis.Redis(port=self.port, password=password, protocol=2)
        for _ in range(200):
            try:
                self.raw.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"redis-server on {self.port} did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.raw.close()


def form_cluster(nodes: list[Server]) -> None:
    """Give each node a third of the slots, introduce them, wait until the state is ok everywhere."""
    edges = np.linspace(0, 16384, len(nodes) + 1).astype(int)
    for node, lo, hi in zip(nodes, edges[:-1], edges[1:]):
        node.raw.execute_command("CLUSTER", "ADDSLOTSRANGE", int(lo), int(hi) - 1)
    for node in nodes[1:]:
        nodes[0].raw.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port)
    for _ in range(600):
        infos = [n.raw.execute_command("CLUSTER", "INFO").decode() for n in nodes]
        if all("cluster_state:ok" in i and f"cluster_known_nodes:{len(nodes)}" in i for i in infos):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the cluster did not form: {infos}")


def start_cluster(root: Path) -> list[Server]:
    """Three bare redis-servers formed into a Redis Cluster."""
    nodes: list[Server] = []
    try:
        for _ in range(3):
            nodes.append(Server(root, cluster=True))
        form_cluster(nodes)
    except BaseException:
        for n in nodes:
            n.kill()
        raise
    return nodes


def cluster_address(nodes: list[Server]) -> str:
    return ",".join(n.address for n in nodes)


def make_client(address: Any, password: str | None = PASSWORD, env: dict[str, str] | None = None,
                **kwargs: Any) -> Client:
    """A Client made with exactly ``env`` as the store variables of the environment."""
    with pytest.MonkeyPatch.context() as mp:
        for name in STORE_ENV:
            mp.delenv(name, raising=False)
        for name, value in (env or {}).items():
            mp.setenv(name, value)
        return Client(address=address, password=password, **kwargs)


def raw_keys(c: Client) -> set[str]:
    """Every key on every server of ``c``'s store."""
    servers = [c._r.get_redis_connection(n) for n in c._r.get_primaries()] if c.is_cluster else [c._r]
    return {k.decode() for r in servers for k in r.keys("*")}


# -- the session's shared stores --------------------------------------------------------------------


class SharedStore:
    """A store started by an experiment (local launcher) for the whole session:
    ``exp`` started ``db``, so the models a test starts with ``exp`` receive the
    store (``SSDB``...). Its experiment directory holds this one store."""

    def __init__(self, exp: simctl.Experiment, db: Any) -> None:
        self.exp = exp
        self.db = db

    def emptied(self) -> SharedStore:
        """The store with nothing in it, for the test about to use it."""
        with self.db.client() as c:
            c.flush_db()
        return self


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


class StoreFactory:
    """Starts each kind of shared store the first time a test asks for it, and
    stops them all when asked (``close``); asked again afterwards, it starts
    new ones.

    * ``redis(1)``: a bare password-protected redis-server (:class:`Server`);
      ``redis(3)``: three of them formed into a Redis Cluster (a list).
    * ``orchestrator(1)`` / ``orchestrator(3)``: a :class:`SharedStore`, a store
      of 1 or 3 shards (a Redis Cluster) with its inference workers, started by
      an experiment of its own on the local launcher, on the loopback interface.

    tests/conftest.py closes the stores after the last test of a run of
    consecutive test modules that use them, so no other test shares the
    process with them (some count the runner's threads). The processes each
    one starts (and those they start later, e.g. a supervisor restarting an
    inference worker) belong to the session, not to the test that happened to
    ask first: the process-leak guard leaves them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._redis: dict[int, Any] = {}
        self._orchestrators: dict[tuple[int, bool], SharedStore] = {}
        self._pids: set[int] = set()
        self._starts = 0

    def _started(self, start: Any) -> Any:
        before = _children()
        try:
            return start()
        finally:
            new = _children() - before
            self._pids |= new
            SHARED_PROCESSES.update(new)

    def _where(self, what: str) -> Path:
        self._starts += 1
        return self.root / f"{what}-{self._starts}"  # a new directory per start: nothing saved is loaded again

    def redis(self, shards: int) -> Any:
        assert shards in (1, 3), shards
        if shards not in self._redis:
            where = self._where(f"redis-{shards}")
            self._redis[shards] = self._started(lambda: Server(where) if shards == 1 else start_cluster(where))
        return self._redis[shards]

    def orchestrator(self, shards: int, module: bool = True) -> SharedStore:
        """``module=False``: a store whose servers run without simctl's server module (the Lua scripts)."""
        assert shards in (1, 3), shards
        which = (shards, module)
        if which not in self._orchestrators:
            name = f"orchestrator-{shards}" + ("" if module else "-lua")
            exp = simctl.Experiment(f"shared-store-{shards}", exp_path=str(self._where(name)), launcher="local")
            db = exp.create_database(port=free_ports(shards), db_nodes=shards, interface="lo")
            with pytest.MonkeyPatch.context() as mp:
                if not module:
                    mp.setenv(servermodule.ENV, "0")
                self._started(lambda: exp.start(db))
            self._orchestrators[which] = SharedStore(exp, db)
        return self._orchestrators[which]

    def close(self) -> None:
        """Stop every store this factory runs."""
        orchestrators, self._orchestrators = self._orchestrators, {}
        started, self._redis = self._redis, {}
        try:
            for shared in orchestrators.values():
                try:
                    shared.exp.stop(shared.db)
                finally:
                    shared.exp.launcher.close()
            for servers in started.values():
                for server in servers if isinstance(servers, list) else [servers]:
                    server.kill()
        finally:
            SHARED_PROCESSES.difference_update(self._pids)
            self._pids = set()


#: the session's factory while the ``stores`` fixture lives
_FACTORIES: list[StoreFactory] = []


def stores_for_session(root: Path) -> Iterator[StoreFactory]:
    """The body of the ``stores`` session fixture."""
    factory = StoreFactory(root)
    _FACTORIES.append(factory)
    try:
        yield factory
    finally:
        _FACTORIES.remove(factory)
        factory.close()


def stop_shared_stores() -> None:
    """Stop the shared stores now (the factory starts new ones if a later test asks)."""
    for factory in _FACTORIES:
        factory.close()
