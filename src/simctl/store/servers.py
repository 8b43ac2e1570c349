"""The servers behind a :class:`~simctl.store.Client`: one interface,
:class:`Server`, and its two implementations, :class:`Standalone` (one
server) and :class:`Cluster` (a Redis Cluster), as SmartRedis splits its
``RedisServer`` into ``Redis`` and ``RedisCluster``. The client is written
once against the interface; what differs between one server and a cluster
(where a key lives, which keys can share a command, what "every server"
means) is answered here. :func:`open_servers` asks the store which it is.
"""

from __future__ import annotations

import abc
import functools
import time
from collections.abc import Callable
from typing import Any, ClassVar

import redis

from ..core.errors import ConfigError
from . import contract, protocol as pr, wire
from .address import Address
from .direct import Direct
from .format import StoreConnectionError, StoreError, StoreTimeoutError
from .servermodule import has_module


class Server(abc.ABC):
    """The store's server(s), as the client uses them. Methods raise
    redis-py's errors; the client turns them into its own (:func:`store_error`)."""

    is_cluster: ClassVar[bool]
    #: the one direct connection every key takes (None: the keys live on several servers)
    only: Direct | None = None

    def __init__(self, client: Any) -> None:
        #: the redis-py client (``redis.Redis`` or ``redis.cluster.RedisCluster``)
        self.redis = client

    @functools.cached_property
    def module(self) -> bool:
        """Whether the store's servers hold simctl's server module (:mod:`.servermodule`),
        whose commands the client sends instead of the Lua scripts they match; asked
        once (a node that turns out not to hold it sets this False: :func:`lacks_module`)."""
        return all(has_module(r) for r in self.primaries().values())

    def execute(self, key: str, *args: Any, array: bool = False) -> Any:
        """Run the command ``args`` on the server holding ``key`` (:meth:`send`)."""
        return self.send(key, [args], array=array)

    @abc.abstractmethod
    def send(self, key: str, cmds: list[tuple[Any, ...]], *, array: bool = False) -> Any:
        """Send ``cmds`` (on ``key``'s slot) in one write to the server holding
        ``key``, over its direct connection (:mod:`.direct`); the last reply,
        the first error reply raised. ``array``: a large bulk reply is a
        ``numpy`` uint8 array of its own."""

    @abc.abstractmethod
    def direct_of(self, key: str) -> Direct:
        """The direct connection to the server holding ``key`` (opened on first
        use); ``redis.exceptions.RedisClusterException`` when no node of a
        cluster holds it. Inference requests take it as they are (no redirection)."""

    @abc.abstractmethod
    def same_slot(self, a: str, b: str) -> bool:
        """Whether the keys ``a`` and ``b`` may take part in one command (COPY, RENAME)."""

    @abc.abstractmethod
    def primaries(self) -> dict[str, redis.Redis]:
        """``host:port`` (or the socket's address) -> ``redis.Redis`` of every server that holds data."""

    @abc.abstractmethod
    def node_of(self, key: str) -> redis.Redis | None:
        """The ``redis.Redis`` of the server holding ``key`` (None when redis-py has to find it)."""

    @abc.abstractmethod
    def tag_of(self, key: str) -> str:
        """The inference workers' tag of the server holding ``key`` (see :mod:`.protocol`)."""

    def pipeline(self) -> Any:
        """A pipeline (no transaction) of commands that may go to several servers."""
        return self.redis.pipeline(transaction=False)

    def close(self) -> None:
        self.redis.close()


def lacks_module(exc: object) -> bool:
    """Whether ``exc`` (an error, or any reply) is a server's answer to a command of simctl's module it
    does not hold."""
    return isinstance(exc, redis.ResponseError) and str(exc).lower().startswith("unknown command")


#: the worker tag of a single server
_ONE_TAG = pr.tag_for(None)


class Standalone(Server):
    """One server: every key lives on it."""

    is_cluster = False

    def __init__(self, client: redis.Redis, address: str, direct: Direct) -> None:
        super().__init__(client)
        self.address = address
        #: the direct connection every key's commands take
        self.direct = self.only = direct

    def execute(self, key: str, *args: Any, array: bool = False) -> Any:
        return self.direct.one(args, array)

    def send(self, key: str, cmds: list[tuple[Any, ...]], *, array: bool = False) -> Any:
        return self.direct.last(cmds, array=array)

    def direct_of(self, key: str) -> Direct:
        return self.direct

    def close(self) -> None:
        self.direct.close()
        super().close()

    def same_slot(self, a: str, b: str) -> bool:
        return True

    def primaries(self) -> dict[str, redis.Redis]:
        return {self.address: self.redis}

    def node_of(self, key: str) -> redis.Redis | None:
        return self.redis  # type: ignore[no-any-return]

    def tag_of(self, key: str) -> str:
        return _ONE_TAG


class Cluster(Server):
    """A Redis Cluster. A command goes straight to the node that holds its
    key's slot in redis-py's slot map, over a direct connection to that node
    (redis-py's cluster dispatch costs about 25 us a command in Python);
    redis-py's cluster client takes over when the slot moved (MOVED, ASK,
    TRYAGAIN: it follows the redirection and refreshes its map) or the node
    does not answer (a failover)."""

    is_cluster = True

    def __init__(self, client: Any, connect: Callable[[Address], Direct]) -> None:
        super().__init__(client)
        self._tags: dict[str, str] = {}
        #: node name (``host:port``) -> its direct connection, opened on first use
        self._direct: dict[str, Direct] = {}
        self._connect = connect

    def send(self, key: str, cmds: list[tuple[Any, ...]], *, array: bool = False) -> Any:
        try:
            node = wire.node_of(self.redis, key)
        except redis.exceptions.RedisClusterException:
            node = None  # redis-py's own dispatch finds it
        if node is not None:
            try:
                return self._direct_to(node).last(cmds, array=array)
            except (redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.ConnectionError):
                pass  # MOVED is an AskError; a timeout is final: the node holding the key did not answer
        if len(cmds) == 1:
            return self.redis.execute_command(*cmds[0])
        pipe = self.pipeline()
        for cmd in cmds:
            pipe.execute_command(*cmd)
        return pipe.execute()[-1]

    def direct_of(self, key: str) -> Direct:
        return self._direct_to(wire.node_of(self.redis, key))

    def _direct_to(self, node: Any) -> Direct:
        direct = self._direct.get(node.name)
        if direct is None:
            direct = self._direct[node.name] = self._connect(Address(node.host, node.port))
        return direct

    def close(self) -> None:
        for direct in self._direct.values():
            direct.close()
        super().close()

    def same_slot(self, a: str, b: str) -> bool:
        return bool(self.redis.keyslot(a) == self.redis.keyslot(b))

    def primaries(self) -> dict[str, redis.Redis]:
        return wire.primaries(self.redis)

    def node_of(self, key: str) -> redis.Redis | None:
        return wire.node_client(self.redis, key)

    def tag_of(self, key: str) -> str:
        try:
            node = wire.node_of(self.redis, key)
        except redis.exceptions.RedisClusterException as exc:
            raise StoreConnectionError(f"no shard of the cluster holds {key!r}: {exc}") from None
        if node.name not in self._tags:
            self._tags[node.name] = pr.tag_for(wire.node_slots(self.redis, node.name))
        return self._tags[node.name]


def open_servers(addresses: list[Address], password: str | None, waits: wire.Waits | None = None,
                 **options: Any) -> Server:
    """Connect to the store at ``addresses``: asks each in turn whether it is
    a Redis Cluster (one INFO), and returns the :class:`Standalone` or
    :class:`Cluster` that it is. ``waits`` (default :class:`wire.Waits`)
    bounds the whole: each address in turn may take an equal share of the
    time left (a stopped server accepts the connection and never answers;
    one address has the whole timeout), and a cluster is then found through
    the node that answered. ``options`` go to :func:`wire.connect`.
    StoreConnectionError when none answers or the password is refused;
    ConfigError when several addresses are given for one server."""
    waits = waits or wire.Waits()
    names = [str(a) for a in addresses]

    def direct(a: Address) -> Direct:
        return Direct(a, password, username=options.get("username"), tls_ca=options.get("tls_ca"),
                      timeout=waits.timeout, connect=waits.connect)

    problems = []
    timed_out = 0  # addresses that did not answer in time
    deadline = None if waits.timeout is None else time.monotonic() + waits.timeout
    for i, address in enumerate(addresses):
        limits = waits.options()
        if deadline is not None and len(addresses) > 1:  # a cluster's nodes: these connections are not kept
            share = (deadline - time.monotonic()) / (len(addresses) - i)
            if share <= 0:
                problems.append(f"{address}: not asked, the timeout ({waits.timeout:g} s) had passed")
                timed_out += 1
                continue
            limits = {k: share if v is None else min(v, share) for k, v in limits.items()}
        r = wire.connect(address, password, zero_copy=True, retry_once=True, keepalive=True, **limits, **options)
        try:
            enabled = bool(r.info("cluster").get("cluster_enabled"))
        except redis.AuthenticationError as exc:
            r.close()
            user = options.get("username") or "default"
            how = f"{'the password was refused' if password else 'no password was given'} (user {user!r})"
            raise StoreConnectionError(f"Client: the store at {address} refused the connection: {how} "
                                       f"(username= or {contract.USER}, password= or {contract.PASSWORD}): "
                                       f"{exc}") from None
        except redis.TimeoutError as exc:
            r.close()
            wait = limits["socket_timeout"] if "connecting" not in str(exc) else limits["socket_connect_timeout"]
            problems.append(f"{address}: no answer within {wait:.3g} s (a stopped or overloaded server?): {exc}")
            timed_out += 1
            continue
        except (redis.ConnectionError, OSError) as exc:
            r.close()
            problems.append(f"{address}: {exc}")
            continue
        except redis.ResponseError:  # INFO refused (renamed, ACL): not a cluster we could use anyway
            enabled = False
        if not enabled:
            if len(addresses) > 1:
                r.close()
                raise ConfigError(f"Client: {len(addresses)} addresses given ({', '.join(names)}) but "
                                  f"{address} is not a Redis Cluster; give one address for a single server")
            return Standalone(r, str(address), direct(address))
        r.close()
        if all(a.is_unix for a in addresses):
            raise ConfigError(f"Client: {address} is a Redis Cluster, which is reached over TCP, not a socket")
        try:  # found through the node that answered: it tells where the others are
            return Cluster(wire.connect_cluster([address], password, zero_copy=True, retry_once=True,
                                                socket_keepalive=True, **waits.options(), **options), direct)
        except redis.AuthenticationError as exc:
            raise StoreConnectionError(f"Client: the cluster at {address} refused the password: {exc}") from None
        except (redis.RedisError, OSError) as exc:
            raise StoreConnectionError(f"Client: the Redis Cluster at {', '.join(names)} is not usable "
                                       f"(is its state ok?): {exc}") from None
    if any("max number of clients reached" in p for p in problems):  # it runs, and refuses more clients
        raise StoreConnectionError("Client: the store is full: it refused this connection because it has as many "
                                   "clients as it accepts (maxclients; set_max_clients): " + "; ".join(problems))
    error = StoreTimeoutError if timed_out == len(addresses) else StoreConnectionError
    raise error("Client: no store answered at " + "; ".join(problems) +
                ". Is it running (exp.start(db) returns once it is), and is the address right?")


def store_error(what: str, exc: redis.RedisError, addresses: list[str], timeout: float | None = None) -> StoreError:
    """simctl's error for redis-py's ``exc`` raised by ``what`` (``timeout``: the client's, named when it passed)."""
    if isinstance(exc, redis.TimeoutError):
        within = f" within {timeout:g} s" if timeout is not None else ""
        return StoreTimeoutError(f"{what}: the store at {','.join(addresses)} did not answer{within} (stopped, "
                                    f"hung or overloaded? Client(timeout=...) sets the wait): {exc}")
    if isinstance(exc, (redis.ConnectionError, redis.exceptions.ClusterError,
                        redis.exceptions.RedisClusterException)):
        return StoreConnectionError(f"{what}: lost the store at {','.join(addresses)}: {type(exc).__name__}: {exc}")
    if isinstance(exc, redis.ResponseError):
        if str(exc).startswith("WRONGTYPE"):
            return StoreError(f"{what}: the key holds another kind of value: {exc}")
        return StoreError(f"{what}: the store answered: {exc}")
    return StoreError(f"{what}: {type(exc).__name__}: {exc}")
