"""``Client``: tensors, datasets, aggregation lists and ML models and scripts
(stored, not run) in a Redis server or Redis Cluster, with the key prefixing and logging of the reference documents.

The layout in Redis is described (and versioned) in :mod:`simctl.store.format`.
Every put and every get of a tensor is one command, one network round trip;
large tensors are sent straight from the array's memory without a copy.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from enum import IntEnum
from typing import Any, TypeVar

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from ..core.backend import parse_device
from ..core.errors import ConfigError
from ..core.plugins import default_plugins
from . import format as fmt
from . import protocol as pr
from .dataset import Dataset, check_name
from .format import FormatError, StoreConnectionError, StoreError, StoreKeyError

__all__ = ["Client", "LLDebug", "LLDeveloper", "LLInfo", "LLQuiet", "LogLevel", "log_data"]

_T = TypeVar("_T")

#: seconds to wait for a server to accept a connection before giving up
CONNECT_TIMEOUT = 5.0
#: seconds a command may wait for its answer before the client gives up
COMMAND_TIMEOUT = 300.0
#: bytes the client asks the socket for at a time (redis-py's default, 64 KiB, makes large gets slow)
READ_SIZE = 1 << 20
#: replies at least this large are received straight into a buffer of their own (see _Buffer)
BIG_REPLY = 128 * 1024


# -- logging ----------------------------------------------------------------------------


class LogLevel(IntEnum):
    """How much ``log_data`` writes; ``SR_LOG_LEVEL`` (quiet, info, debug,
    developer) picks the threshold, info by default."""

    LLQuiet = 1
    LLInfo = 2
    LLDebug = 3
    LLDeveloper = 4


LLQuiet, LLInfo, LLDebug, LLDeveloper = LogLevel.LLQuiet, LogLevel.LLInfo, LogLevel.LLDebug, LogLevel.LLDeveloper


def _threshold() -> LogLevel:
    name = os.environ.get("SR_LOG_LEVEL", "info").strip().lower()
    return {"quiet": LLQuiet, "none": LLQuiet, "debug": LLDebug, "developer": LLDeveloper}.get(name, LLInfo)


def _write_log(context: str, level: Any, data: Any) -> None:
    try:
        lvl = LogLevel(level)
    except ValueError:
        raise ConfigError(f"log_data: level must be one of LLQuiet, LLInfo, LLDebug, LLDeveloper, got "
                          f"{level!r}") from None
    threshold = _threshold()
    if threshold == LLQuiet or lvl > threshold:
        return
    line = f"{context}@{time.strftime('%H-%M-%S')}:{data}\n"
    path = os.environ.get("SR_LOG_FILE")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line)
        return
    sys.stdout.write(line)
    sys.stdout.flush()


def log_data(*args: Any) -> None:
    """``log_data(level, data)`` or ``log_data(context, level, data)``: write
    ``<context>@HH-MM-SS:<data>`` to stdout (or the file ``SR_LOG_FILE``) when
    ``level`` is at or below the ``SR_LOG_LEVEL`` threshold. Context defaults to "Default"."""
    if len(args) == 2:
        _write_log("Default", *args)
    elif len(args) == 3:
        _write_log(str(args[0]), args[1], args[2])
    else:
        raise ConfigError(f"log_data takes (level, data) or (context, level, data), got {len(args)} arguments")


# -- connections that send large values without copying them --------------------------


class _Parts:
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
    """Packs commands like redis-py's packer, except that a :class:`_Parts`
    argument goes out as its buffers, without being joined into one."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def pack(self, *args: Any) -> list[bytes | memoryview]:
        if _Parts not in map(type, args):
            packed: list[bytes | memoryview] = self._inner.pack(*args)
            return packed
        out: list[bytes | memoryview] = [b"*%d\r\n" % len(args)]
        for a in args:
            if type(a) is _Parts:
                out.append(b"$%d\r\n" % a.size)
                out.extend(a.buffers)
                out.append(b"\r\n")
            else:
                b = _arg(a)
                out.append(b"$%d\r\n%s\r\n" % (len(b), b))
        return out


try:  # redis-py's pure-Python reply parser (redis >= 5); without it, large replies are copied once more
    from redis._parsers import _RESP2Parser
    from redis._parsers.socket import SocketBuffer
    _FAST_REPLIES = True
except ImportError:  # pragma: no cover - another redis-py layout
    _FAST_REPLIES = False

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
            # named, not super(): mypy's untyped_calls_exclude cannot see through super()
            _RESP2Parser.on_connect(self, connection)
            self._buffer = _Buffer(self._sock, self.socket_read_size, connection.socket_timeout)


class _PartsMixin:
    """Connections that send :class:`_Parts` without joining them and receive
    large replies without extra copies."""

    def __init__(self, **kwargs: Any) -> None:
        if _FAST_REPLIES and kwargs.get("protocol") in (2, "2"):
            kwargs["parser_class"] = _Parser
        super().__init__(**kwargs)

    def _construct_command_packer(self, packer: Any) -> _Packer:
        return _Packer(super()._construct_command_packer(packer))  # type: ignore[misc]


class _TCPConnection(_PartsMixin, redis.Connection):
    pass


class _UnixConnection(_PartsMixin, redis.UnixDomainSocketConnection):
    pass


# -- addresses ----------------------------------------------------------------------------


def parse_addresses(address: str | Iterable[str] | None) -> list[str]:
    """``host:port`` (or ``tcp://host:port``) and ``unix:///path`` entries from a
    comma-separated string or a list."""
    if address is None:
        return []
    items = address.split(",") if isinstance(address, str) else list(address)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"Client: address entries must be strings, got {item!r}")
        item = item.strip()
        item = item.removeprefix("tcp://")
        if not item:
            continue
        if not item.startswith("unix://"):
            host, _, port = item.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(f"Client: address {item!r} is not host:port or unix:///path/to.sock")
        out.append(item)
    return out


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# -- Lua scripts for datasets (see format.py); all their keys share one hash tag --------

_PUT_DATASET = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, ack = pcall(cjson.decode, old)
  if ok and type(ack) == 'table' and type(ack.tensors) == 'table' then
    for _, t in ipairs(ack.tensors) do redis.call('DEL', KEYS[1] .. '.tensor.' .. t) end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('HSET', KEYS[2], ARGV[1 + 2 * i], ARGV[2 + 2 * i]) end
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 2 * n]) end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

_GET_DATASET = """
local ack = redis.call('GET', KEYS[1])
if not ack then return false end
local out = {ack, redis.call('HGETALL', KEYS[2])}
local ok, d = pcall(cjson.decode, ack)
if ok and type(d) == 'table' and type(d.tensors) == 'table' then
  for _, t in ipairs(d.tensors) do out[#out + 1] = redis.call('GET', KEYS[1] .. '.tensor.' .. t) end
end
return out
"""

_DELETE_DATASET = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, ack = pcall(cjson.decode, old)
  if ok and type(ack) == 'table' and type(ack.tensors) == 'table' then
    for _, t in ipairs(ack.tensors) do redis.call('DEL', KEYS[1] .. '.tensor.' .. t) end
  end
end
return redis.call('DEL', KEYS[1], KEYS[2])
"""

class Client:
    """A connection to the experiment's feature store (or any Redis).

    ``address``: ``host:port`` (several, comma-separated or a list, for a
    cluster) or ``unix:///path``; default: the ``SSDB`` environment variable the
    launcher sets (an address passed first, ``Client("host:port")``, is taken
    as the address). ``password``: default ``SSDB_PASSWORD``; none if that is
    unset. ``cluster`` is accepted for compatibility: the client asks the server
    whether it is a Redis Cluster (one INFO when it connects) and works either
    way, so a script written with ``Client(cluster=False)`` runs unchanged
    against a sharded store. ``logger_name`` is the
    context ``log_data`` writes. A store that cannot be reached is a
    :class:`StoreConnectionError` within ``connect_timeout`` seconds per address.

    Keys are prefixed as the launcher says (``SSKEYOUT``, ``SSKEYIN``; see
    :meth:`set_data_source` and the ``use_*_ensemble_prefix`` switches).
    """

    def __init__(self, cluster: bool | None = None, address: str | Iterable[str] | None = None,
                 password: str | None = None, *, logger_name: str = "Default",
                 connect_timeout: float = CONNECT_TIMEOUT, command_timeout: float | None = COMMAND_TIMEOUT) -> None:
        if isinstance(cluster, str) and address is None:  # the older Client(address, cluster) order
            cluster, address = None, cluster
        if cluster is not None and not isinstance(cluster, bool):
            raise ConfigError(f"Client: cluster must be True, False or None, got {cluster!r}")
        self._logger_name = str(logger_name)
        env_address = address is None
        addresses = parse_addresses(os.environ.get("SSDB") if env_address else address)
        if not addresses:
            raise ConfigError("Client: no store address: pass address='host:port' or start the model after "
                              "the experiment's store (SSDB is " +
                              ("not set)" if env_address else f"empty), got address={address!r}"))
        if password is None:
            password = os.environ.get("SSDB_PASSWORD") or None
        self._password = password or None
        self._kwargs: dict[str, Any] = dict(socket_connect_timeout=connect_timeout, socket_timeout=command_timeout,
                                            socket_read_size=READ_SIZE, protocol=2)
        self.addresses = addresses
        self._r: Any = None
        self._cluster = self._connect(addresses)
        # key prefixing (the reference documents' SSKEYIN / SSKEYOUT)
        self._put_prefix = os.environ.get("SSKEYOUT", "").strip()
        self._sources = [s.strip() for s in os.environ.get("SSKEYIN", "").split(",") if s.strip()]
        self._get_prefix = self._sources[0] if self._sources else ""
        self._use_prefix = {"tensor": True, "dataset": True, "list": True, "model": False}
        # inference (protocol.py): this client's id, worker tags by node, the device each model ran on
        self._id = pr.new_id()
        self._tags: dict[str, str] = {}
        self._devices: dict[tuple[str, str], str] = {}

    # -- connection ---------------------------------------------------------------------

    def _standalone(self, address: str) -> redis.Redis:
        if address.startswith("unix://"):
            pool = redis.ConnectionPool(connection_class=_UnixConnection, path=address[len("unix://"):],
                                        password=self._password, retry=Retry(NoBackoff(), 1), **self._kwargs)
        else:
            host, port = _host_port(address)
            pool = redis.ConnectionPool(connection_class=_TCPConnection, host=host, port=port, socket_keepalive=True,
                                        password=self._password, retry=Retry(NoBackoff(), 1), **self._kwargs)
        return redis.Redis(connection_pool=pool)

    def _connect(self, addresses: list[str]) -> bool:
        """Connect; True for a Redis Cluster. Asks each address in turn whether it is one."""
        problems = []
        for address in addresses:
            r = self._standalone(address)
            try:
                enabled = bool(r.info("cluster").get("cluster_enabled"))
            except redis.AuthenticationError as exc:
                r.close()
                how = "no password was given" if not self._password else "the password was refused"
                raise StoreConnectionError(f"Client: the store at {address} refused the connection: {how} "
                                           f"(password= or SSDB_PASSWORD): {exc}") from None
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                r.close()
                problems.append(f"{address}: {exc}")
                continue
            except redis.ResponseError:  # INFO refused (renamed, ACL): not a cluster we could use anyway
                enabled = False
            if not enabled:
                if len(addresses) > 1:
                    r.close()
                    raise ConfigError(f"Client: {len(addresses)} addresses given ({', '.join(addresses)}) but "
                                      f"{address} is not a Redis Cluster; give one address for a single server")
                self._r = r
                return False
            r.close()
            tcp = [_host_port(a) for a in addresses if not a.startswith("unix://")]
            if not tcp:
                raise ConfigError(f"Client: {address} is a Redis Cluster, which is reached over TCP, not a socket")
            host, port = tcp[0]
            try:  # a URL makes redis-py build each node's pool with our connection class
                self._r = RedisCluster(url=f"redis://{f'[{host}]' if ':' in host else host}:{port}",
                                       startup_nodes=[ClusterNode(h, p) for h, p in tcp[1:]],
                                       password=self._password, connection_class=_TCPConnection,
                                       retry=Retry(NoBackoff(), 1), socket_keepalive=True, **self._kwargs)
            except redis.AuthenticationError as exc:
                raise StoreConnectionError(f"Client: the cluster at {address} refused the password: {exc}") from None
            except (redis.RedisError, OSError) as exc:
                raise StoreConnectionError(f"Client: the Redis Cluster at {', '.join(addresses)} is not usable "
                                           f"(is its state ok?): {exc}") from None
            return True
        raise StoreConnectionError("Client: no store answered at " + "; ".join(problems) +
                                   ". Is it running (exp.start(db) returns once it is), and is the address right?")

    @property
    def is_cluster(self) -> bool:
        """True when connected to a Redis Cluster."""
        return self._cluster

    def close(self) -> None:
        """Close the connections."""
        if self._r is not None:
            self._r.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({','.join(self.addresses)!r}, cluster={self._cluster})"

    def _call(self, what: str, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` with redis-py's errors turned into simctl's, naming ``what``."""
        try:
            return func(*args)
        except redis.RedisError as exc:
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: redis.RedisError) -> StoreError:
        """simctl's error for redis-py's ``exc`` raised by ``what``."""
        if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterError,
                            redis.exceptions.RedisClusterException)):
            return StoreConnectionError(f"{what}: lost the store at {','.join(self.addresses)}: "
                                        f"{type(exc).__name__}: {exc}")
        if isinstance(exc, redis.ResponseError):
            if str(exc).startswith("WRONGTYPE"):
                return StoreError(f"{what}: the key holds another kind of value: {exc}")
            return StoreError(f"{what}: the store answered: {exc}")
        return StoreError(f"{what}: {type(exc).__name__}: {exc}")

    def _one(self, key: str, *args: Any) -> Any:
        """Run a command on ``key``'s server. On a cluster it goes straight to the
        node that holds the key's slot (redis-py's cluster dispatch costs about
        25 us a command in Python); redis-py's cluster client takes over when the
        slot map is stale or the node does not answer."""
        if not self._cluster:
            return self._r.execute_command(*args)
        try:
            node = self._r.nodes_manager.get_node_from_slot(self._r.keyslot(key))
        except redis.exceptions.RedisClusterException:  # no node for the slot: let redis-py find one
            node = None
        direct = getattr(node, "redis_connection", None)
        if direct is not None:
            try:
                return direct.execute_command(*args)
            except (redis.exceptions.AskError, redis.exceptions.TryAgainError, redis.ConnectionError,
                    redis.TimeoutError):  # MOVED is an AskError
                pass
        return self._r.execute_command(*args)

    def _key_cmd(self, what: str, key: str, *args: Any) -> Any:
        """:meth:`_one` with simctl's errors."""
        try:
            return self._one(key, *args)
        except redis.RedisError as exc:
            raise self._error(f"{what} {key!r}", exc) from None

    # -- keys and prefixes --------------------------------------------------------------

    def _key(self, kind: str, name: Any, read: bool, what: str) -> str:
        """The key of ``name`` with the read (data source) or write prefix of ``kind`` applied."""
        if type(name) is not str or not name:
            check_name(name, f"{what}: name")
        prefix = (self._get_prefix if read else self._put_prefix) if self._use_prefix[kind] else ""
        key = f"{prefix}.{name}" if prefix else name
        if len(key) > fmt.MAX_KEY_BYTES // 4:  # a longer key may take more than MAX_KEY_BYTES in UTF-8
            _check_length(key, what)
        return key

    def _missing(self, what: str, kind: str, key: str, name: str) -> StoreKeyError:
        how = f" (data source {self._get_prefix!r})" if key != name else ""
        return StoreKeyError(f"{what}: no {kind} {key!r} in the store{how}")

    def set_data_source(self, source_id: str) -> None:
        """Read with the prefix ``source_id``: one of the entities in ``SSKEYIN``
        (registered with ``register_incoming_entity``) or this entity's own ``SSKEYOUT``."""
        valid = self._sources + ([self._put_prefix] if self._put_prefix and self._put_prefix not in self._sources
                                 else [])
        if source_id not in valid:
            raise ConfigError(f"set_data_source: {source_id!r} is not a registered data source; registered: "
                              f"{', '.join(repr(v) for v in valid) or '(none: SSKEYIN and SSKEYOUT are unset)'}")
        self._get_prefix = source_id

    def use_tensor_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether tensor keys get the prefixes (default True)."""
        self._use_prefix["tensor"] = bool(use_prefix)

    def use_dataset_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether dataset keys get the prefixes (default True)."""
        self._use_prefix["dataset"] = bool(use_prefix)

    def use_list_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether aggregation-list keys get the prefixes (default True)."""
        self._use_prefix["list"] = bool(use_prefix)

    def use_model_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether ML-model and script keys get the prefixes (default False)."""
        self._use_prefix["model"] = bool(use_prefix)

    def log_data(self, level: Any, data: Any) -> None:
        """Write ``<logger_name>@HH-MM-SS:<data>`` if ``level`` passes ``SR_LOG_LEVEL``."""
        _write_log(self._logger_name, level, data)

    # -- tensors --------------------------------------------------------------------------

    def put_tensor(self, name: str, data: Any) -> None:
        """Store a numeric numpy array under ``name`` (one SET)."""
        key = self._key("tensor", name, False, "put_tensor")
        value = _value(data, f"put_tensor({name!r})")
        try:
            self._one(key, "SET", key, value)
        except redis.RedisError as exc:
            raise self._error(f"put_tensor {key!r}", exc) from None

    def get_tensor(self, name: str) -> np.ndarray:
        """The array stored under ``name`` (one GET), with its dtype and shape."""
        key = self._key("tensor", name, True, "get_tensor")
        try:
            value = self._one(key, "GET", key)
        except redis.RedisError as exc:
            raise self._error(f"get_tensor {key!r}", exc) from None
        if value is None:
            raise self._missing("get_tensor", "tensor", key, name)
        return _decode(value, f"get_tensor: {key!r}")

    def unpack_tensor(self, name: str, result: np.ndarray) -> None:
        """Fill ``result`` (same shape, same dtype up to byte order) with the tensor ``name``."""
        if not isinstance(result, np.ndarray) or not result.flags.writeable:
            raise ConfigError(f"unpack_tensor: result must be a writable numpy array, got {type(result).__name__}")
        key = self._key("tensor", name, True, "unpack_tensor")
        value = self._key_cmd("unpack_tensor", key, "GET", key)
        if value is None:
            raise self._missing("unpack_tensor", "tensor", key, name)
        stored = _decode(value, f"unpack_tensor: {key!r}", copy=False)
        if stored.shape != result.shape or not np.can_cast(stored.dtype, result.dtype, casting="equiv"):
            raise ConfigError(f"unpack_tensor: result is {result.dtype} of shape {result.shape}; tensor {key!r} "
                              f"is {stored.dtype} of shape {stored.shape}")
        np.copyto(result, stored, casting="equiv")

    def delete_tensor(self, name: str) -> None:
        """Delete the tensor ``name`` (nothing happens if there is none)."""
        key = self._key("tensor", name, True, "delete_tensor")
        self._key_cmd("delete_tensor", key, "DEL", key)

    def tensor_exists(self, name: str) -> bool:
        """Whether the tensor ``name`` exists."""
        key = self._key("tensor", name, True, "tensor_exists")
        return bool(self._key_cmd("tensor_exists", key, "EXISTS", key))

    def key_exists(self, key: str) -> bool:
        """Whether ``key`` exists, taken as is (no prefix)."""
        check_name(key, "key_exists: key")
        _check_length(key, "key_exists")
        return bool(self._key_cmd("key_exists", key, "EXISTS", key))

    def poll_key(self, key: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Check for ``key`` (no prefix) up to ``num_tries`` times, ``poll_frequency_ms``
        apart; True once it exists, False if it never did."""
        return _poll(lambda: self.key_exists(key), poll_frequency_ms, num_tries, "poll_key")

    def poll_tensor(self, name: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Like :meth:`poll_key` for the tensor ``name`` (prefixed)."""
        return _poll(lambda: self.tensor_exists(name), poll_frequency_ms, num_tries, "poll_tensor")

    def copy_tensor(self, src_name: str, dest_name: str) -> None:
        """Copy the tensor ``src_name`` (read prefix) to ``dest_name`` (write prefix)."""
        src = self._key("tensor", src_name, True, "copy_tensor")
        dest = self._key("tensor", dest_name, False, "copy_tensor")
        self._copy_key(src, dest, "copy_tensor", "tensor", src_name)

    def rename_tensor(self, old_name: str, new_name: str) -> None:
        """Move the tensor ``old_name`` (read prefix) to ``new_name`` (write prefix)."""
        src = self._key("tensor", old_name, True, "rename_tensor")
        dest = self._key("tensor", new_name, False, "rename_tensor")
        self._rename_key(src, dest, "rename_tensor", "tensor", old_name)

    def _same_slot(self, a: str, b: str) -> bool:
        return not self._cluster or self._r.keyslot(a) == self._r.keyslot(b)

    def _copy_key(self, src: str, dest: str, what: str, kind: str, name: str) -> None:
        if self._same_slot(src, dest):
            if not self._key_cmd(what, src, "COPY", src, dest, "REPLACE"):
                raise self._missing(what, kind, src, name)
            return
        dumped = self._key_cmd(what, src, "DUMP", src)
        if dumped is None:
            raise self._missing(what, kind, src, name)
        self._key_cmd(what, dest, "RESTORE", dest, 0, dumped, "REPLACE")

    def _rename_key(self, src: str, dest: str, what: str, kind: str, name: str) -> None:
        if src == dest:
            if not self._key_cmd(what, src, "EXISTS", src):
                raise self._missing(what, kind, src, name)
        elif self._same_slot(src, dest):
            try:
                self._key_cmd(what, src, "RENAME", src, dest)
            except StoreError as exc:
                if "no such key" in str(exc):
                    raise self._missing(what, kind, src, name) from None
                raise
        else:
            self._copy_key(src, dest, what, kind, name)
            self._key_cmd(what, src, "DEL", src)

    # -- ML models and scripts (stored; see format.py) ----------------------------------------

    def set_model(self, name: str, model: bytes | bytearray | memoryview, backend: str, device: str = "CPU",
                  batch_size: int = 0, min_batch_size: int = 0, min_batch_timeout: int = 0, tag: str = "",
                  inputs: str | list[str] | None = None, outputs: str | list[str] | None = None) -> None:
        """Store the serialized model ``model`` (bytes) under ``name`` for the
        ``backend`` plugin (``"ONNX"``, ``"TORCH"``...), replacing any model of
        that name; one SET. Every argument is checked before anything is sent."""
        what = f"set_model({name!r})"
        key = self._key("model", name, False, "set_model")
        if not isinstance(model, (bytes, bytearray, memoryview)):
            raise ConfigError(f"{what}: model must be bytes (a serialized model), got {type(model).__name__}; "
                              f"use set_model_from_file for a file, simctl.ml.* serialize_model for an object")
        view = memoryview(model)
        if not view.contiguous:
            raise ConfigError(f"{what}: model must be a contiguous buffer")
        view = view.cast("B") if view.format != "B" or view.ndim != 1 else view
        self._store_model(key, view, view.nbytes, what, backend, device, batch_size, min_batch_size,
                          min_batch_timeout, tag, inputs, outputs)

    def set_model_from_file(self, name: str, model_file: str | os.PathLike[str], backend: str,
                            device: str = "CPU", batch_size: int = 0, min_batch_size: int = 0,
                            min_batch_timeout: int = 0, tag: str = "", inputs: str | list[str] | None = None,
                            outputs: str | list[str] | None = None) -> None:
        """Like :meth:`set_model` with the model read from the file ``model_file``."""
        what = f"set_model_from_file({name!r})"
        key = self._key("model", name, False, "set_model_from_file")
        if not isinstance(model_file, (str, os.PathLike)):
            raise ConfigError(f"{what}: model_file must be a path, got {type(model_file).__name__}")
        if not os.path.isfile(model_file):
            raise ConfigError(f"{what}: model_file {os.fspath(model_file)!r} is not a file"
                              f"{'' if os.path.exists(model_file) else ' (it does not exist)'}")
        size = os.path.getsize(model_file)
        self._store_model(key, None, size, what, backend, device, batch_size, min_batch_size, min_batch_timeout,
                          tag, inputs, outputs, path=os.fspath(model_file))

    def _store_model(self, key: str, model: memoryview | None, size: int, what: str, backend: Any, device: Any,
                     batch_size: Any, min_batch_size: Any, min_batch_timeout: Any, tag: Any, inputs: Any,
                     outputs: Any, path: str | None = None) -> None:
        """Check the arguments, then SET the model (read from ``path`` if no ``model``)."""
        _check_backend(backend, what)
        parse_device(device, f"{what}: device")
        for arg, v in (("batch_size", batch_size), ("min_batch_size", min_batch_size),
                       ("min_batch_timeout", min_batch_timeout)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{what}: {arg} must be an int >= 0 (0: none), got {v!r:.80}")
        if batch_size and min_batch_size > batch_size:
            raise ConfigError(f"{what}: min_batch_size ({min_batch_size}) is larger than batch_size "
                              f"({batch_size}); a batch never holds more than batch_size requests")
        if not isinstance(tag, str):
            raise ConfigError(f"{what}: tag must be a str, got {tag!r:.80}")
        in_names, out_names = _names(inputs, f"{what}: inputs"), _names(outputs, f"{what}: outputs")
        if not size:
            raise ConfigError(f"{what}: the model is empty (0 bytes)" + (f": {path!r}" if path else ""))
        header = fmt.model_header(backend, device, batch_size, min_batch_size, min_batch_timeout, tag, in_names,
                                  out_names, size, what)
        if model is None:
            try:
                with open(path, "rb") as fh:  # type: ignore[arg-type]
                    data = fh.read()
            except OSError as exc:
                raise ConfigError(f"{what}: cannot read model_file {path!r}: {exc}") from None
            if len(data) != size:
                raise ConfigError(f"{what}: model_file {path!r} changed size while it was read")
            model = memoryview(data)
        value = header + bytes(model) if size <= 65536 else _Parts([header, model])
        self._key_cmd(what, key, "SET", key, value)
        self._changed(what, key)

    def _changed(self, what: str, key: str) -> None:
        """Tell the inference workers that the model or script ``key`` changed.
        On a cluster, on every shard: a shard passes a message on to the others
        only later, and a request sent next must find its worker told."""
        message = pr.change(key)
        if not self._cluster:
            self._call(what, self._r.publish, pr.CHANGED, message)
            return
        for node in self._r.get_primaries():
            self._call(what, self._r.get_redis_connection(node).publish, pr.CHANGED, message)

    def _get_stored(self, op: str, kind: str, name: str, decode: Callable[[bytes], tuple[Any, _T]]) -> _T:
        """The payload of the model or script ``name`` (read prefix), decoded."""
        key = self._key("model", name, True, op)
        value = self._key_cmd(op, key, "GET", key)
        if value is None:
            raise self._missing(op, kind, key, name)
        try:
            return decode(value)[1]
        except FormatError as exc:
            raise FormatError(f"{op} {key!r}: {exc}") from None

    def _delete_stored(self, op: str, name: str) -> None:
        key = self._key("model", name, True, op)
        self._key_cmd(op, key, "DEL", key)
        self._changed(op, key)

    def get_model(self, name: str) -> bytes:
        """The serialized model stored under ``name`` (its metadata: :func:`format.parse_model_header`)."""
        return self._get_stored("get_model", "model", name, fmt.decode_model)

    def delete_model(self, name: str) -> None:
        """Delete the model ``name`` (nothing happens if there is none)."""
        self._delete_stored("delete_model", name)

    def model_exists(self, name: str) -> bool:
        """Whether a model is stored under ``name`` (a tensor or script there is not one)."""
        key = self._key("model", name, True, "model_exists")
        return bool(self._key_cmd("model_exists", key, "GETRANGE", key, 0, 3) == fmt.MODEL_MAGIC)

    def poll_model(self, name: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Like :meth:`poll_key` for the model ``name``."""
        return _poll(lambda: self.model_exists(name), poll_frequency_ms, num_tries, "poll_model")

    def set_script(self, name: str, script: str, device: str = "CPU") -> None:
        """Store ``script`` (TorchScript source text holding functions) under ``name``; one SET."""
        what = f"set_script({name!r})"
        key = self._key("model", name, False, "set_script")
        self._store_script(key, script, device, what, "script")

    def set_script_from_file(self, name: str, script_file: str | os.PathLike[str], device: str = "CPU") -> None:
        """Like :meth:`set_script` with the source read from ``script_file`` (UTF-8)."""
        what = f"set_script_from_file({name!r})"
        key = self._key("model", name, False, "set_script_from_file")
        if not isinstance(script_file, (str, os.PathLike)):
            raise ConfigError(f"{what}: script_file must be a path, got {type(script_file).__name__}")
        parse_device(device, f"{what}: device")  # before reading the file
        try:
            with open(script_file, encoding="utf-8") as fh:
                source = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{what}: cannot read script_file {os.fspath(script_file)!r}: {exc}") from None
        self._store_script(key, source, device, what, "script_file")

    def set_function(self, name: str, function: Callable[..., Any] | str, device: str = "CPU") -> None:
        """Store a TorchScript function under ``name``: a Python function (its
        TorchScript source, made with :func:`simctl.ml.torch.serialize_function`;
        needs torch) or that source as a str."""
        what = f"set_function({name!r})"
        key = self._key("model", name, False, "set_function")
        parse_device(device, f"{what}: device")
        if not isinstance(function, str):
            if not callable(function):
                raise ConfigError(f"{what}: function must be a Python function or its TorchScript source (str), "
                                  f"got {type(function).__name__}")
            # imports torch: only when a function is given
            from ..ml.torch import serialize_function
            function = serialize_function(function)
        self._store_script(key, function, device, what, "function")

    def _store_script(self, key: str, source: Any, device: Any, what: str, arg: str) -> None:
        parse_device(device, f"{what}: device")
        if not isinstance(source, str) or not source.strip():
            got = f"{type(source).__name__}" if not isinstance(source, str) else "an empty str"
            raise ConfigError(f"{what}: {arg} must be non-empty TorchScript source text (str), got {got}")
        data = source.encode("utf-8")
        self._key_cmd(what, key, "SET", key, fmt.script_header(device, len(data), what) + data)
        self._changed(what, key)

    def get_script(self, name: str) -> str:
        """The source of the script (or function) stored under ``name``."""
        return self._get_stored("get_script", "script", name, fmt.decode_script)

    def delete_script(self, name: str) -> None:
        """Delete the script ``name`` (nothing happens if there is none)."""
        self._delete_stored("delete_script", name)

    # -- several GPUs: one copy per GPU, named <name>.GPU:<n> ----------------------------------

    def set_model_multigpu(self, name: str, model: bytes | bytearray | memoryview, backend: str, first_gpu: int,
                           num_gpus: int, batch_size: int = 0, min_batch_size: int = 0, min_batch_timeout: int = 0,
                           tag: str = "", inputs: str | list[str] | None = None,
                           outputs: str | list[str] | None = None) -> None:
        """Store ``model`` once per GPU ``first_gpu`` .. ``first_gpu + num_gpus - 1``,
        as ``<name>.GPU:<n>`` for device ``GPU:<n>`` (see :meth:`run_model_multigpu`)."""
        for gpu in _gpus("set_model_multigpu", first_gpu, num_gpus):
            self.set_model(f"{name}.GPU:{gpu}", model, backend, f"GPU:{gpu}", batch_size, min_batch_size,
                           min_batch_timeout, tag, inputs, outputs)

    def set_script_multigpu(self, name: str, script: str, first_gpu: int, num_gpus: int) -> None:
        """Store ``script`` once per GPU, as ``<name>.GPU:<n>``."""
        for gpu in _gpus("set_script_multigpu", first_gpu, num_gpus):
            self.set_script(f"{name}.GPU:{gpu}", script, f"GPU:{gpu}")

    def set_function_multigpu(self, name: str, function: Callable[..., Any] | str, first_gpu: int,
                              num_gpus: int) -> None:
        """Store ``function`` once per GPU, as ``<name>.GPU:<n>``."""
        for gpu in _gpus("set_function_multigpu", first_gpu, num_gpus):
            self.set_function(f"{name}.GPU:{gpu}", function, f"GPU:{gpu}")

    def delete_model_multigpu(self, name: str, first_gpu: int, num_gpus: int) -> None:
        """Delete every copy stored by :meth:`set_model_multigpu`."""
        for gpu in _gpus("delete_model_multigpu", first_gpu, num_gpus):
            self.delete_model(f"{name}.GPU:{gpu}")

    def delete_script_multigpu(self, name: str, first_gpu: int, num_gpus: int) -> None:
        """Delete every copy stored by :meth:`set_script_multigpu`."""
        for gpu in _gpus("delete_script_multigpu", first_gpu, num_gpus):
            self.delete_script(f"{name}.GPU:{gpu}")

    def run_model_multigpu(self, name: str, offset: int, first_gpu: int, num_gpus: int,
                           inputs: str | list[str] | None = None, outputs: str | list[str] | None = None) -> None:
        """Run the copy of ``name`` on GPU ``first_gpu + offset % num_gpus``
        (``offset``: an MPI rank, say, to spread callers over the GPUs)."""
        gpus = _gpus("run_model_multigpu", first_gpu, num_gpus)
        self.run_model(f"{name}.GPU:{gpus[_offset('run_model_multigpu', offset) % num_gpus]}", inputs, outputs)

    def run_script_multigpu(self, name: str, fn_name: str, inputs: str | list[str], outputs: str | list[str],
                            offset: int, first_gpu: int, num_gpus: int) -> None:
        """Like :meth:`run_model_multigpu` for a script's function."""
        gpus = _gpus("run_script_multigpu", first_gpu, num_gpus)
        self.run_script(f"{name}.GPU:{gpus[_offset('run_script_multigpu', offset) % num_gpus]}", fn_name,
                        inputs, outputs)

    # -- running models and scripts (the inference workers; see protocol.py) -------------------

    def run_model(self, name: str, inputs: str | list[str] | None = None,
                  outputs: str | list[str] | None = None) -> None:
        """Run the model ``name`` on the tensors ``inputs`` and store its results
        as the tensors ``outputs``, beside the store: by the inference worker of
        the shard that holds the first input, on the model's device. Returns once
        the outputs are stored; a failure (no such model, a wrong shape...) is a
        StoreError with the backend's words. Inputs are read with the data
        source's prefix when one is set (``SSKEYIN``, :meth:`set_data_source`),
        else with this entity's own; outputs are written with its own."""
        what = f"run_model({name!r})"
        key = self._key("model", name, True, "run_model")
        self._run("model", key, "", inputs, outputs, what)

    def run_script(self, name: str, fn_name: str, inputs: str | list[str], outputs: str | list[str]) -> None:
        """Run the function ``fn_name`` of the script (or function) stored as
        ``name``, like :meth:`run_model`."""
        what = f"run_script({name!r}, {fn_name!r})"
        key = self._key("model", name, True, "run_script")
        if not isinstance(fn_name, str) or not fn_name.isidentifier():
            raise ConfigError(f"{what}: fn_name must be the name of a function in the script, got {fn_name!r:.80}")
        self._run("script", key, fn_name, inputs, outputs, what)

    def _tensor_in(self, name: str, what: str) -> str:
        return self._key("tensor", name, bool(self._get_prefix), what)

    def _run(self, kind: str, key: str, fn: str, inputs: Any, outputs: Any, what: str) -> None:
        ins = [self._tensor_in(n, what) for n in _names(inputs, f"{what}: inputs") or []]
        outs = [self._key("tensor", n, False, what) for n in _names(outputs, f"{what}: outputs") or []]
        if not ins or not outs:
            raise ConfigError(f"{what}: give the {'inputs' if not ins else 'outputs'} (a tensor name or a list "
                              "of them)")
        tag = self._tag(ins[0])
        device = self._devices.get((kind, key), "CPU")
        reply = pr.reply_key(tag, self._id)
        rid, body = pr.request(reply, kind, key, ins, outs, fn)
        queue = pr.queue_key(tag, device)
        answer = self._wait_reply(what, tag, device, queue, reply, rid, body)
        if answer.get("error") is not None:
            raise StoreError(f"{what}: {answer['error']}")
        self._devices[(kind, key)] = str(answer.get("device") or device)

    def _wait_reply(self, what: str, tag: str, device: str, queue: str, reply: str, rid: str,
                    body: bytes) -> dict[str, Any]:
        """The reply to request ``rid``; StoreError when no worker of ``device``
        lives for :data:`protocol.NO_WORKER_GRACE` seconds (the request withdrawn),
        or when the request is gone from the store with no reply, twice in a row."""
        gone_since: float | None = None
        lost = 0
        got = self._send_and_wait(what, queue, body, reply)
        while True:
            if got is None:
                got = self._key_cmd(what, reply, "BLPOP", reply, pr.WAIT_SLICE)
            if got is not None:
                raw, got = got[1], None
                try:
                    answer = pr.parse(raw)
                except ValueError:
                    continue
                if answer["id"] == rid:
                    return answer
                continue  # the reply to an earlier request this client gave up on
            clients = self._key_cmd(what, queue, "CLIENT", "LIST")
            if pr.has_worker(clients, device):
                gone_since = None
                lost = lost + 1 if self._lost(queue, tag, pr.worker_devices(clients), body, reply) else 0
                if lost >= 2:
                    raise StoreError(f"{what}: the request is no longer in the store and no reply came (was the "
                                     "store flushed, or its keys deleted, while it waited?); run it again")
                continue
            now = time.monotonic()
            gone_since = gone_since or now
            if now - gone_since >= pr.NO_WORKER_GRACE and self._key_cmd(what, queue, "LREM", queue, 1, body):
                raise StoreError(f"{what}: no inference worker for {device} answered on the store shard holding "
                                 f"{queue!r} for {pr.NO_WORKER_GRACE:g} s (is the store running, with ml_devices "
                                 f"including {device!r}?); the request was withdrawn")

    def _lost(self, queue: str, tag: str, devices: set[str], body: bytes, reply: str) -> bool:
        """Whether the request ``body`` is in no queue and no taken list of the
        shard's workers, with no reply waiting (one transaction on the shard)."""
        node = self._node_of(queue)
        if node is None:
            return False
        pipe = node.pipeline(transaction=True)
        for device in devices:
            pipe.execute_command("LPOS", pr.queue_key(tag, device), body)
            pipe.execute_command("LPOS", pr.taken_key(tag, device), body)
        pipe.execute_command("LLEN", reply)
        try:
            found = pipe.execute()
        except redis.RedisError:
            return False  # not known: go on waiting
        return all(f is None for f in found[:-1]) and not found[-1]

    def _node_of(self, key: str) -> Any:
        """The ``redis.Redis`` of the server holding ``key`` (None when redis-py has to find it)."""
        if not self._cluster:
            return self._r
        node = self._r.nodes_manager.get_node_from_slot(self._r.keyslot(key))
        return getattr(node, "redis_connection", None)

    def _send_and_wait(self, what: str, queue: str, body: bytes, reply: str) -> Any:
        """RPUSH the request and BLPOP its reply (one slice) in one round trip,
        on a connection of the pool used directly: redis-py's pipeline costs
        about 100 us of Python, more than the round trip. Like redis-py, the
        exchange is tried once more after a connection error."""
        r = self._node_of(queue)
        if r is None:  # let redis-py find the node; two round trips
            self._key_cmd(what, queue, "RPUSH", queue, body)
            return None
        pool = r.connection_pool
        for attempt in (0, 1):
            conn = None
            try:
                try:
                    conn = pool.get_connection()
                except TypeError:  # redis-py 5.0 wants a command name
                    conn = pool.get_connection("BLPOP")
                conn.send_packed_command(conn.pack_commands([("RPUSH", queue, body), ("BLPOP", reply, pr.WAIT_SLICE)]))
                conn.read_response()  # RPUSH's
                return conn.read_response()
            except BaseException as exc:
                if conn is not None:
                    conn.disconnect()  # a reply may be left unread
                if not isinstance(exc, redis.RedisError):
                    raise
                if attempt or not isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
                    raise self._error(f"{what} {queue!r}", exc) from None
            finally:
                if conn is not None:
                    pool.release(conn)
        return None  # not reached: the second attempt returns or raises

    def _tag(self, key: str) -> str:
        """The worker tag of the shard holding ``key``."""
        if not self._cluster:
            return pr.tag_for(None)
        try:
            node = self._r.nodes_manager.get_node_from_slot(self._r.keyslot(key))
        except redis.exceptions.RedisClusterException as exc:
            raise StoreConnectionError(f"no shard of the cluster holds {key!r}: {exc}") from None
        if node.name not in self._tags:
            owned = [s for s, nodes in self._r.nodes_manager.slots_cache.items()
                     if nodes and nodes[0].name == node.name]
            self._tags[node.name] = pr.tag_for(owned)
        return self._tags[node.name]

    # -- datasets ---------------------------------------------------------------------------

    def _dataset_name(self, name: str, read: bool, what: str) -> str:
        full = self._key("dataset", name, read, what)
        _check_length(fmt.dataset_keys(full)[2], what)
        return full

    def put_dataset(self, dataset: Dataset) -> None:
        """Store ``dataset`` (its tensors and metadata) atomically, replacing any
        dataset of that name; one round trip."""
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"put_dataset: dataset must be a Dataset, got {type(dataset).__name__}")
        self._put_dataset_as(self._dataset_name(dataset.name, False, "put_dataset"), dataset, "put_dataset")

    def _put_dataset_as(self, full: str, dataset: Dataset, what: str) -> None:
        ack, meta, stem = fmt.dataset_keys(full)
        names = dataset.get_tensor_names()
        keys = [stem + t for t in names]
        for k in keys:
            _check_length(k, what)
        values = [_value(dataset.get_tensor(t), f"{what}({dataset.name!r}): tensor {t!r}") for t in names]
        pairs = dataset._meta_items()
        args = [fmt.dataset_ack(names), len(pairs), *[x for p in pairs for x in p], *values]
        self._key_cmd(what, ack, "EVAL", _PUT_DATASET, 2 + len(keys), ack, meta, *keys, *args)

    def get_dataset(self, name: str) -> Dataset:
        """The dataset ``name`` (one round trip)."""
        full = self._dataset_name(name, True, "get_dataset")
        reply = self._key_cmd("get_dataset", "{" + full + "}", "EVAL", _GET_DATASET, 2, *fmt.dataset_keys(full)[:2])
        if reply is None:
            raise self._missing("get_dataset", "dataset", full, name)
        return _decode_dataset(name, full, reply)

    def delete_dataset(self, name: str) -> None:
        """Delete the dataset ``name`` with its tensors and metadata (nothing happens if there is none)."""
        full = self._dataset_name(name, True, "delete_dataset")
        self._key_cmd("delete_dataset", "{" + full + "}", "EVAL", _DELETE_DATASET, 2, *fmt.dataset_keys(full)[:2])

    def dataset_exists(self, name: str) -> bool:
        """Whether the dataset ``name`` exists."""
        full = self._dataset_name(name, True, "dataset_exists")
        return bool(self._key_cmd("dataset_exists", "{" + full + "}", "EXISTS", "{" + full + "}"))

    def poll_dataset(self, name: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Like :meth:`poll_key` for the dataset ``name``."""
        return _poll(lambda: self.dataset_exists(name), poll_frequency_ms, num_tries, "poll_dataset")

    def copy_dataset(self, src_name: str, dest_name: str) -> None:
        """Copy the dataset ``src_name`` (read prefix) to ``dest_name`` (write prefix)."""
        dataset = self.get_dataset(src_name)
        self._put_dataset_as(self._dataset_name(dest_name, False, "copy_dataset"), dataset, "copy_dataset")

    def rename_dataset(self, old_name: str, new_name: str) -> None:
        """Move the dataset ``old_name`` (read prefix) to ``new_name`` (write prefix)."""
        src = self._dataset_name(old_name, True, "rename_dataset")
        dest = self._dataset_name(new_name, False, "rename_dataset")
        if src == dest:
            if not self.dataset_exists(old_name):
                raise self._missing("rename_dataset", "dataset", src, old_name)
            return
        self._put_dataset_as(dest, self.get_dataset(old_name), "rename_dataset")
        self._key_cmd("rename_dataset", "{" + src + "}", "EVAL", _DELETE_DATASET, 2, *fmt.dataset_keys(src)[:2])

    # -- aggregation lists --------------------------------------------------------------------

    def append_to_list(self, list_name: str, dataset: Dataset) -> None:
        """Append ``dataset`` (already put, with this client's write prefix) to the list ``list_name``."""
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"append_to_list: dataset must be a Dataset, got {type(dataset).__name__}")
        key = self._key("list", list_name, False, "append_to_list")
        full = self._dataset_name(dataset.name, False, "append_to_list")
        self._key_cmd("append_to_list", key, "RPUSH", key, full)

    def delete_list(self, list_name: str) -> None:
        """Delete the list ``list_name`` (its datasets stay)."""
        key = self._key("list", list_name, True, "delete_list")
        self._key_cmd("delete_list", key, "DEL", key)

    def copy_list(self, src_name: str, dest_name: str) -> None:
        """Copy the list ``src_name`` (read prefix) to ``dest_name`` (write prefix); the datasets are shared."""
        src = self._key("list", src_name, True, "copy_list")
        dest = self._key("list", dest_name, False, "copy_list")
        self._copy_key(src, dest, "copy_list", "list", src_name)

    def rename_list(self, src_name: str, dest_name: str) -> None:
        """Move the list ``src_name`` (read prefix) to ``dest_name`` (write prefix)."""
        src = self._key("list", src_name, True, "rename_list")
        dest = self._key("list", dest_name, False, "rename_list")
        self._rename_key(src, dest, "rename_list", "list", src_name)

    def get_list_length(self, list_name: str) -> int:
        """Number of datasets in the list (0 if there is no such list)."""
        key = self._key("list", list_name, True, "get_list_length")
        return int(self._key_cmd("get_list_length", key, "LLEN", key))

    def poll_list_length(self, name: str, list_length: int, poll_frequency_ms: float, num_tries: int) -> bool:
        """Poll until the list has exactly ``list_length`` datasets; False if it never did."""
        return self._poll_length(name, list_length, poll_frequency_ms, num_tries, "poll_list_length", int.__eq__)

    def poll_list_length_gte(self, name: str, list_length: int, poll_frequency_ms: float, num_tries: int) -> bool:
        """Poll until the list has at least ``list_length`` datasets; False if it never did."""
        return self._poll_length(name, list_length, poll_frequency_ms, num_tries, "poll_list_length_gte",
                                 int.__ge__)

    def poll_list_length_lte(self, name: str, list_length: int, poll_frequency_ms: float, num_tries: int) -> bool:
        """Poll until the list has at most ``list_length`` datasets; False if it never did."""
        return self._poll_length(name, list_length, poll_frequency_ms, num_tries, "poll_list_length_lte",
                                 int.__le__)

    def _poll_length(self, name: str, n: int, freq: float, tries: int, what: str,
                     test: Callable[[int, int], bool]) -> bool:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{what}: list_length must be an int >= 0, got {n!r}")
        return _poll(lambda: test(self.get_list_length(name), n), freq, tries, what)

    def get_datasets_from_list(self, list_name: str) -> list[Dataset]:
        """Every dataset in the list, in order."""
        return self._list_range(list_name, 0, -1, "get_datasets_from_list")

    def get_dataset_list_range(self, list_name: str, start_index: int, end_index: int) -> list[Dataset]:
        """The datasets at positions ``start_index`` to ``end_index`` (inclusive; negative
        counts from the end, as in Redis' LRANGE)."""
        for arg, v in (("start_index", start_index), ("end_index", end_index)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"get_dataset_list_range: {arg} must be an int, got {v!r}")
        return self._list_range(list_name, start_index, end_index, "get_dataset_list_range")

    def _list_range(self, list_name: str, start: int, end: int, what: str) -> list[Dataset]:
        key = self._key("list", list_name, True, what)
        names = [n.decode("utf-8") for n in self._key_cmd(what, key, "LRANGE", key, start, end)]
        if not names:
            return []

        def fetch() -> list[Any]:
            pipe = self._r.pipeline(transaction=False)
            for full in names:
                pipe.execute_command("EVAL", _GET_DATASET, 2, *fmt.dataset_keys(full)[:2])
            replies: list[Any] = pipe.execute()
            return replies

        out = []
        for full, reply in zip(names, self._call(f"{what} {key!r}", fetch)):
            if reply is None:
                raise StoreKeyError(f"{what}: list {key!r} names dataset {full!r}, which is not in the store")
            out.append(_decode_dataset(full, full, reply))
        return out

    # -- for the driver: the servers themselves -----------------------------------------------

    def _nodes(self, addresses: str | Iterable[str] | None, what: str) -> list[tuple[str, Any]]:
        """(address, redis client) of the given servers (default: every primary)."""
        if self._cluster:
            known = {f"{n.host}:{n.port}": n for n in self._r.get_primaries()}
        else:
            known = {self.addresses[0]: None}
        wanted = list(known) if addresses is None else parse_addresses(addresses)
        out = []
        for a in wanted:
            name = a if a in known else _resolve(a, known)
            if name is None:
                raise ConfigError(f"{what}: {a!r} is not a server of this store; its servers are "
                                  f"{', '.join(sorted(known))}")
            out.append((name, self._r.get_redis_connection(known[name]) if self._cluster else self._r))
        return out

    def flush_db(self, addresses: str | Iterable[str] | None = None) -> None:
        """Delete every key on the given servers (default: all of them)."""
        for name, r in self._nodes(addresses, "flush_db"):
            self._call(f"flush_db {name}", r.flushdb)

    def get_db_node_info(self, addresses: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Redis' INFO of each given server (default: all of them), as dicts."""
        return [self._call(f"get_db_node_info {name}", r.info)
                for name, r in self._nodes(addresses, "get_db_node_info")]

    def config_get(self, expression: str, address: str | None = None) -> dict[str, str]:
        """CONFIG GET ``expression`` (a glob) on one server (default: the first)."""
        check_name(expression, "config_get: expression")
        name, r = self._nodes(address, "config_get")[0]
        config: dict[str, str] = self._call(f"config_get {name}", r.config_get, expression)
        return config

    def config_set(self, config_param: str, value: Any, address: str | None = None) -> None:
        """CONFIG SET ``config_param`` ``value`` on one server (default: every server)."""
        check_name(config_param, "config_set: config_param")
        for name, r in self._nodes(address, "config_set"):
            self._call(f"config_set {config_param} on {name}", r.config_set, config_param, value)

    def save(self, addresses: str | Iterable[str] | None = None) -> None:
        """Make each given server (default: all) write its data to disk now (SAVE)."""
        for name, r in self._nodes(addresses, "save"):
            self._call(f"save {name}", r.save)


# -- helpers ------------------------------------------------------------------------------


def _gpus(what: str, first_gpu: Any, num_gpus: Any) -> list[int]:
    """The GPU numbers ``first_gpu`` .. ``first_gpu + num_gpus - 1``, checked."""
    for arg, v, low in (("first_gpu", first_gpu, 0), ("num_gpus", num_gpus, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{what}: {arg} must be an int >= {low}, got {v!r:.80}")
    return list(range(first_gpu, first_gpu + num_gpus))


def _offset(what: str, offset: Any) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"{what}: offset must be an int >= 0 (an MPI rank, say), got {offset!r:.80}")
    return offset


def _check_length(key: str, what: str) -> None:
    n = len(key.encode("utf-8"))
    if n > fmt.MAX_KEY_BYTES:
        raise ConfigError(f"{what}: key {key[:60]!r}... is {n} bytes long; keys may be at most "
                          f"{fmt.MAX_KEY_BYTES} bytes (prefix and dataset decoration included)")


def _check_backend(backend: Any, what: str) -> None:
    """ConfigError unless ``backend`` names an installed backend whose runtime imports here."""
    try:
        cls = default_plugins().get("backend", backend)
    except ConfigError as exc:
        raise ConfigError(f"{what}: backend: {exc}") from None
    reason = cls.unavailable_reason()
    if reason:
        raise ConfigError(f"{what}: backend {backend!r} cannot be used here: {reason}")


def _names(value: Any, what: str) -> list[str] | None:
    """None, or the non-empty names in ``value`` (a str or a list of them)."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(n, str) and n for n in items):
        raise ConfigError(f"{what} must be None, a name or a list of names (non-empty str), got {value!r:.80}")
    return list(items)


def _value(data: Any, what: str) -> bytes | memoryview | _Parts:
    """The stored value of an array: bytes, or parts sent without copying."""
    buffers = fmt.encode_tensor(data, what)
    return buffers[0] if len(buffers) == 1 else _Parts(buffers)


def _decode(value: bytes | bytearray, what: str, copy: bool = True) -> np.ndarray:
    """The array in ``value``; a copy only if asked and ``value`` is not a buffer of its own."""
    try:
        return fmt.decode_tensor(value, copy and type(value) is not bytearray)
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None


def _decode_dataset(name: str, full: str, reply: list[Any]) -> Dataset:
    what = f"get_dataset {full!r}"
    try:
        names = fmt.parse_dataset_ack(reply[0])
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    values = reply[2:]
    if len(values) != len(names) or any(v is None for v in values):
        missing = [t for t, v in zip(names, values) if v is None]
        raise FormatError(f"{what}: damaged: tensors {missing or names} are listed but not stored")
    meta = {bytes(k): v for k, v in zip(reply[1][::2], reply[1][1::2])}
    tensors = {t: _decode(v, f"{what} tensor {t!r}") for t, v in zip(names, values)}
    return Dataset._from_stored(name, tensors, meta)


def _poll(check: Callable[[], bool], poll_frequency_ms: float, num_tries: int, what: str) -> bool:
    if isinstance(num_tries, bool) or not isinstance(num_tries, int) or num_tries < 1:
        raise ConfigError(f"{what}: num_tries must be an int >= 1, got {num_tries!r}")
    if isinstance(poll_frequency_ms, bool) or not isinstance(poll_frequency_ms, (int, float)) or poll_frequency_ms < 0:
        raise ConfigError(f"{what}: poll_frequency_ms must be a number >= 0, got {poll_frequency_ms!r}")
    for i in range(num_tries):
        if check():
            return True
        if i + 1 < num_tries:
            time.sleep(poll_frequency_ms / 1000)
    return False


def _resolve(address: str, known: dict[str, Any]) -> str | None:
    """The known address that ``address`` names through another spelling of its host."""
    if address.startswith("unix://"):
        return None
    host, port = _host_port(address)
    try:
        ip = socket.gethostbyname(host)
    except OSError:
        return None
    for k in known:
        if not k.startswith("unix://"):
            khost, kport = _host_port(k)
            try:
                if kport == port and socket.gethostbyname(khost) == ip:
                    return k
            except OSError:
                continue
    return None
