"""The wire: every use simctl makes of redis-py below its public API, in one
module, and the one function that opens a connection to a store server.

redis-py's client layer costs tens of microseconds a command in Python, and
its connections copy a large value several times on the way in and out. The
speed-ups below reach under that layer:

* :class:`Parts` arguments are sent as the buffers they are made of (a
  tensor's header and a view of the array), without being joined
  (``AbstractConnection._construct_command_packer``);
* large bulk replies are received straight into a ``bytearray`` of their own
  (``redis._parsers._RESP2Parser`` and ``redis._parsers.socket.SocketBuffer``);
* a cluster command goes straight to the node holding its slot
  (:func:`node_client`: ``nodes_manager.get_node_from_slot``, ``slots_cache``);
* a timeout is final: neither a connection nor a cluster client tries a
  command again after one (``RedisCluster.ERRORS_ALLOW_RETRY``), so a call
  waits at most its timeout for a server that stopped answering.

How long a client waits is :class:`Waits` (its options to redis-py in one
place): :data:`TIMEOUT` seconds by default for a connection's handshake and
for each answer, :data:`CONNECT_TIMEOUT` for a server to accept a connection.

The client's own commands no longer go through redis-py at all: they take
the direct path (:mod:`.direct`: one connection per server kept open, RESP
packed and read in a few lines, large replies into uninitialised buffers),
which uses only redis-py's exception classes and its table of error replies
(``_RESP2Parser.parse_error``). What stays here serves the rest: the
client's servers' administration and pipelines, a cluster's slot map, and
the inference worker's administrative connection and subscription (its
requests and replies take a direct connection too).

These are redis-py internals: ``pyproject.toml`` pins redis-py to the majors
they were checked against (:data:`REDIS_MAJORS`), and ``tests/test_store_wire.py``
checks each against the installed redis-py. Without the parser internals the
client still works, with one more copy of large replies.
"""

from __future__ import annotations

import math
import select
import socket
from collections.abc import Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, NodesManager, RedisCluster
from redis.retry import Retry

from ..core.errors import ConfigError
from .address import Address, parse_address

#: the redis-py majors this module was checked against (pyproject pins ``redis>=5.0,<9``)
REDIS_MAJORS = (5, 6, 7, 8)
#: bytes a connection asks the socket for at a time (redis-py's default, 64 KiB, makes large gets slow)
READ_SIZE = 1 << 20
#: replies at least this large are received straight into a buffer of their own (see _Buffer)
BIG_REPLY = 128 * 1024
#: seconds a client waits by default for the store: for each answer, for a connection's handshake,
#: and for the reply to a run_model or run_script
TIMEOUT = 30.0
#: seconds a client waits by default for a server to accept a connection (never more than its timeout)
CONNECT_TIMEOUT = 5.0

try:  # redis-py's pure-Python reply parser (redis >= 5); without it, large replies are copied once more
    from redis._parsers import _RESP2Parser
    from redis._parsers.socket import SocketBuffer
    _FAST_REPLIES = True
except ImportError:  # pragma: no cover - another redis-py layout
    _FAST_REPLIES = False


# -- sending large values without copying them --------------------------------------------


class Parts:
    """One command argument sent as the concatenation of several buffers."""

    __slots__ = ("buffers", "size")

    def __init__(self, buffers: list[bytes | memoryview]) -> None:
        self.buffers = buffers
        self.size = sum(len(b) for b in buffers)


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")


class _Packer:
    """Packs commands like redis-py's packer, except that a :class:`Parts`
    argument goes out as its buffers, without being joined into one."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def pack(self, *args: Any) -> list[bytes | memoryview]:
        if Parts not in map(type, args):
            return self._inner.pack(*args)  # type: ignore[no-any-return]
        out: list[bytes | memoryview] = [b"*%d\r\n" % len(args)]
        for a in args:
            if type(a) is Parts:
                out.append(b"$%d\r\n" % a.size)
                out.extend(a.buffers)
                out.append(b"\r\n")
            else:
                b = _arg(a)
                out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return out


# -- receiving large values without copying them --------------------------------------------

if _FAST_REPLIES:
    class _Buffer(SocketBuffer):
        """redis-py's socket buffer, except that a large bulk reply is received
        straight into a ``bytearray`` of its own: one copy (from the kernel) where
        redis-py makes three, and the caller may use it as writable memory."""

        def read(self, length: int, *args: Any, **kwargs: Any) -> Any:
            if length < BIG_REPLY:
                return SocketBuffer.read(self, length, *args, **kwargs)
            out = bytearray(length + 2)
            with memoryview(out) as view:
                got = self._buffer.readinto(view)
                try:
                    while got < length + 2:
                        n = self._sock.recv_into(view[got:])
                        if not n:
                            raise redis.ConnectionError("Connection closed by server.")
                        got += n
                except TimeoutError:
                    raise redis.TimeoutError("Timeout reading from socket") from None
                except OSError as exc:
                    raise redis.ConnectionError(f"Error while reading from socket: {exc}") from None
            if out[length:] != b"\r\n":
                raise redis.ConnectionError("Protocol error: a bulk reply without its terminator")
            del out[length:]
            return out

    class _Parser(_RESP2Parser):
        def on_connect(self, connection: Any) -> None:
            _RESP2Parser.on_connect(self, connection)
            self._buffer = _Buffer(self._sock, self.socket_read_size, connection.socket_timeout)


class _ZeroCopy:
    """Connections that send :class:`Parts` without joining them and receive
    large replies without extra copies (RESP2 only)."""

    def __init__(self, **kwargs: Any) -> None:
        if _FAST_REPLIES and kwargs.get("protocol") in (2, "2"):
            kwargs["parser_class"] = _Parser
        super().__init__(**kwargs)

    def _construct_command_packer(self, packer: Any) -> _Packer:
        return _Packer(super()._construct_command_packer(packer))  # type: ignore[misc]


class TCPConnection(_ZeroCopy, redis.Connection):
    pass


class UnixConnection(_ZeroCopy, redis.UnixDomainSocketConnection):
    pass


class TLSConnection(_ZeroCopy, redis.SSLConnection):
    """The zero-copy connection over TLS: the same sending and receiving, on
    the socket redis-py's ``SSLConnection`` wraps (``recv_into`` and
    ``sendall`` of an ``ssl.SSLSocket``)."""


# -- how long to wait ----------------------------------------------------------------------


def seconds(value: Any, what: str) -> float | None:
    """``value`` as a limit in seconds (None: no limit); ConfigError naming ``what`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or math.isinf(value):
        raise ConfigError(f"{what} must be a number of seconds > 0 (None: no limit), got {value!r:.80}")
    return float(value)


class Waits:
    """How long a client waits for the store, as redis-py's options.

    ``timeout``: the longest a call waits for any answer (and a connection
    for its handshake: AUTH, the first command), and the default limit of a
    run_model's wait for its reply; None waits without limit.
    ``connect``: the longest a server may take to accept a connection; never
    more than ``timeout``. A server that stopped (SIGSTOP, a hung host)
    still accepts connections into its backlog: the handshake's wait is
    ``timeout``'s."""

    __slots__ = ("connect", "timeout")

    def __init__(self, timeout: Any = TIMEOUT, connect: Any = CONNECT_TIMEOUT, what: str = "Client") -> None:
        self.timeout = seconds(timeout, f"{what}: timeout")
        connect = seconds(connect, f"{what}: connect_timeout")
        self.connect = connect if self.timeout is None or connect is None else min(connect, self.timeout)

    def options(self) -> dict[str, Any]:
        """redis-py's connection options for these waits."""
        return {"socket_timeout": self.timeout, "socket_connect_timeout": self.connect}

    def __repr__(self) -> str:
        return f"Waits(timeout={self.timeout}, connect={self.connect})"


def reconnect_once() -> Retry:
    """One more try after a broken connection (at once), none after a timeout."""
    return Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))


class Cluster(RedisCluster):
    """redis-py's cluster client, except that a timeout is final: a node that
    does not answer within the timeout is not asked again (redis-py retries
    after a refresh of the slot map, which costs another timeout)."""

    ERRORS_ALLOW_RETRY = tuple(  # type: ignore[assignment]
        e for e in RedisCluster.ERRORS_ALLOW_RETRY if e is not redis.TimeoutError)


# -- connecting ----------------------------------------------------------------------------


def _address(address: Address | str) -> Address:
    return address if isinstance(address, Address) else parse_address(address)


def tls_options(tls_ca: str) -> dict[str, Any]:
    """redis-py's options for a TLS connection that trusts the certificate
    authority in the file ``tls_ca`` alone and checks the server's host name."""
    return {"ssl_ca_certs": tls_ca, "ssl_cert_reqs": "required", "ssl_check_hostname": True}


def connect(address: Address | str, password: str | None, *, username: str | None = None,
            tls_ca: str | None = None, zero_copy: bool = False, retry_once: bool = False, keepalive: bool = False,
            **options: Any) -> redis.Redis:
    """A ``redis.Redis`` for the one server at ``address`` (an :class:`Address`
    or its text: ``host:port``, ``[v6]:port``, ``unix:///path``), logging in
    as ``username`` (None: the ``default`` user) with ``password``. Nothing is
    sent until it is used. ``tls_ca``: TCP over TLS, trusting the certificate
    authority in that file alone (a socket ignores it). ``zero_copy``:
    connections that send :class:`Parts` and receive large replies without
    copies (give ``protocol=2``), over TLS too; ``retry_once``: a command is
    tried once more, at once, after a broken connection, never after a
    timeout (:func:`reconnect_once`); ``keepalive``: TCP keep-alive (a socket has none). Other options go
    to redis-py's connection pool (``socket_timeout``,
    ``socket_connect_timeout``, ``client_name``, ``decode_responses``...)."""
    a = _address(address)
    if retry_once:
        options["retry"] = reconnect_once()
    if username:
        options["username"] = username
    cls: type[redis.Connection] | type[redis.UnixDomainSocketConnection]
    if a.is_unix:
        cls = UnixConnection if zero_copy else redis.UnixDomainSocketConnection
        pool = redis.ConnectionPool(connection_class=cls, path=a.path, password=password, **options)
    else:
        if tls_ca:
            cls = TLSConnection if zero_copy else redis.SSLConnection
            options.update(tls_options(tls_ca))
        else:
            cls = TCPConnection if zero_copy else redis.Connection
        if keepalive:
            options["socket_keepalive"] = True
        pool = redis.ConnectionPool(connection_class=cls, host=a.host, port=a.port, password=password, **options)
    r = redis.Redis(connection_pool=pool)
    r.auto_close_connection_pool = True  # the pool is its own: close() closes its connections
    return r


def connect_cluster(addresses: Sequence[Address | str], password: str | None, *, username: str | None = None,
                    tls_ca: str | None = None, zero_copy: bool = False, retry_once: bool = False,
                    **options: Any) -> RedisCluster:
    """A ``RedisCluster`` found through the TCP ``addresses`` (the first
    answers; the others are further startup nodes). Options as :func:`connect`.
    It connects (and reads the slot map) before returning: redis-py's errors
    (``redis.RedisError``, ``OSError``) say why it could not."""
    tcp = [a for a in map(_address, addresses) if not a.is_unix]
    if not tcp:
        raise ValueError("a Redis Cluster is reached over TCP, not a Unix socket")
    if retry_once:
        options["retry"] = reconnect_once()
    if username:
        options["username"] = username
    if tls_ca:
        # TLS by the connection class and its options, not a rediss:// URL (whose class would replace ours)
        options["connection_class"] = TLSConnection if zero_copy else redis.SSLConnection
        options.update(tls_options(tls_ca))
    elif zero_copy:
        options["connection_class"] = TCPConnection
    # a URL makes redis-py build each node's pool with the connection class given
    return Cluster(url=f"redis://{tcp[0]}", startup_nodes=[ClusterNode(a.host, a.port) for a in tcp[1:]],
                        password=password, **options)


# -- one round trip, under the client layer ------------------------------------------------


# -- a subscription's messages ------------------------------------------------------------

def quiet(pubsub: redis.client.PubSub) -> bool:
    """Whether the subscription ``pubsub`` has no message waiting, neither in
    redis-py's buffer nor on its socket (one ``poll`` of the socket, about
    1 us here: redis-py's ``get_message(timeout=0)`` costs two ``ioctl``
    calls and tens of us of Python when there is none). False when it cannot
    tell (then read it)."""
    conn = pubsub.connection
    sock = getattr(conn, "_sock", None)
    parser = getattr(conn, "_parser", None)
    buffered: Any = getattr(parser, "_buffer", None)
    if type(sock) is not socket.socket or not hasattr(buffered, "unread_bytes") or buffered.unread_bytes():
        return False  # (TLS: decrypted bytes may wait in the SSL object, which poll does not see)
    watched = getattr(pubsub, "_simctl_poll", None)
    if watched is None or watched[0] is not sock:  # (a reconnection makes a new socket)
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        watched = pubsub._simctl_poll = (sock, poller)  # type: ignore[attr-defined]
    try:
        return not watched[1].poll(0)
    except OSError:
        return False


# -- a cluster's slot map ------------------------------------------------------------------


def node_of(cluster: RedisCluster, key: str) -> Any:
    """The ``ClusterNode`` holding ``key``'s slot in redis-py's slot map;
    ``redis.exceptions.RedisClusterException`` when no node holds it."""
    return cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))


def node_client(cluster: RedisCluster, key: str) -> redis.Redis | None:
    """The ``redis.Redis`` of the node holding ``key``'s slot; None when
    redis-py has no connection for it (its own dispatch will find one)."""
    try:
        node = node_of(cluster, key)
    except redis.exceptions.RedisClusterException:
        return None
    return getattr(node, "redis_connection", None)


def node_slots(cluster: RedisCluster, name: str) -> list[int]:
    """The slots the node ``name`` (``host:port``) holds as primary, by redis-py's slot map."""
    return [s for s, nodes in cluster.nodes_manager.slots_cache.items() if nodes and nodes[0].name == name]


def primaries(cluster: RedisCluster) -> dict[str, redis.Redis]:
    """``host:port`` (canonical, see :class:`Address`) -> ``redis.Redis`` of every primary."""
    return {str(Address(n.host, n.port)): cluster.get_redis_connection(n) for n in cluster.get_primaries()}


def internals() -> dict[str, bool]:
    """Whether each redis-py internal this module uses is in the installed redis-py."""
    base = redis.connection.AbstractConnection
    return {
        "redis._parsers._RESP2Parser": _FAST_REPLIES,
        "redis._parsers.socket.SocketBuffer": _FAST_REPLIES,
        "SocketBuffer._buffer, _sock": _FAST_REPLIES and {"_buffer", "_sock"} <= set(
            vars(SocketBuffer(None, READ_SIZE, None))),  # type: ignore[arg-type]
        "_RESP2Parser.on_connect": _FAST_REPLIES and hasattr(_RESP2Parser, "on_connect"),
        "AbstractConnection._construct_command_packer": hasattr(base, "_construct_command_packer"),
        "AbstractConnection.pack_commands": hasattr(base, "pack_commands"),
        "AbstractConnection.send_packed_command": hasattr(base, "send_packed_command"),
        "AbstractConnection.read_response": hasattr(base, "read_response"),
        "Connection._connect, UnixDomainSocketConnection._connect": all(
            "_connect" in vars(c) for c in (redis.Connection, redis.UnixDomainSocketConnection)),
        "AbstractConnection._sock, socket_timeout": "_sock" in vars(redis.Connection())
        and redis.Connection(socket_timeout=1.5).socket_timeout == 1.5,
        "_RESP2Parser.parse_error (direct.py)": _FAST_REPLIES and isinstance(
            _RESP2Parser(READ_SIZE).parse_error("NOSCRIPT x"), redis.exceptions.NoScriptError),
        "RedisCluster.ERRORS_ALLOW_RETRY": redis.TimeoutError in getattr(RedisCluster, "ERRORS_ALLOW_RETRY", ()),
        "ConnectionPool.get_connection": hasattr(redis.ConnectionPool, "get_connection"),
        "NodesManager.get_node_from_slot": hasattr(NodesManager, "get_node_from_slot"),
        "NodesManager.slots_cache": "slots_cache" in NodesManager.__init__.__code__.co_names,
    }
