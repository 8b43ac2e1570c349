"""``Client``: tensors, datasets, aggregation lists and ML models and scripts
in a Redis server or Redis Cluster, with the key prefixing and logging of the
reference documents.

The client is a facade, split the way redis-py and SmartRedis split theirs:

* :mod:`.servers`: the servers behind it, one interface with a standalone and
  a cluster implementation (where a key lives, what "every server" means);
* :mod:`.direct`: the connection every command on a key takes, one per
  server kept open, under redis-py (large values sent and received without
  copies);
* :mod:`.wire`: every use of redis-py below its public API (the rest:
  administration, pipelines, the inference round trips), and the one connector;
* :mod:`.base`: keys, prefixes and errors; the commands in parts on it:
  tensors and the servers here, :mod:`.datasets`, :mod:`.models`,
  :mod:`.inference`; logging in :mod:`.logs`;
* :mod:`.address` reads addresses, :mod:`.contract` the environment.

The layout in Redis is described (and versioned) in :mod:`simctl.store.format`.
Every put and every get of a tensor is one command, one network round trip;
large tensors are sent straight from the array's memory without a copy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import redis

from ..core.errors import ConfigError, ConfigTypeError
from . import contract, format as fmt, keyspace, known, protocol as pr
from .address import parse_addresses, same_server
from .base import check_length, encode_value, poll
from .dataset import check_name
from .datasets import DatasetCommands
from .format import FormatError, StoreError
from .inference import InferenceCommands
from .logs import LLDebug, LLDeveloper, LLInfo, LLQuiet, LogLevel, log_data, write_log
from .models import ModelCommands
from .servers import open_servers
from .wire import CONNECT_TIMEOUT, READ_SIZE, TIMEOUT, Waits

__all__ = ["Client", "LLDebug", "LLDeveloper", "LLInfo", "LLQuiet", "LogLevel", "log_data"]

#: ``command_timeout`` not given (the older name of ``timeout``)
_OLD_NAME: Any = object()


def _store_env(db_identifier: str | None, address: Any) -> contract.StoreEnv:
    """What the environment says about the store ``db_identifier`` names
    (``SSDB_<name>``...), or about the plain one (``SSDB``...) for None."""
    if db_identifier is None:
        return contract.read()
    if not isinstance(db_identifier, str) or not db_identifier:
        raise ConfigTypeError(f"Client: db_identifier must be a store's name (a non-empty str) or None, got "
                              f"{db_identifier!r:.80}")
    env = contract.read(name=db_identifier)
    if env.address is None and address is None:
        raise ConfigError(f"Client: no store named {db_identifier!r} in this process's environment "
                          f"({contract.ADDRESS}_{db_identifier} is not set); stores named there: "
                          f"{', '.join(map(repr, contract.store_names())) or 'none'}")
    return env


class Client(DatasetCommands, ModelCommands, InferenceCommands):
    """A connection to the experiment's feature store (or any Redis).

    ``address``: ``host:port`` (several, comma-separated or a list, for a
    cluster; ``[v6]:port`` for an IPv6 host) or ``unix:///path``; default: the
    ``SSDB`` environment variable the launcher sets (an address passed first,
    ``Client("host:port")``, is taken as the address). ``username`` and
    ``password``: the store's user to log in as (a member of an experiment is
    ``simctl-member``, see :mod:`simctl.store.roles`) and its password;
    default ``SSDB_USER`` and ``SSDB_PASSWORD``, each read on its own (unset:
    the ``default`` user; no password). ``tls_ca``: the certificate authority
    (a PEM file) of a store that speaks TLS (``create_database(tls=True)``),
    trusted alone, the servers' host names checked; default ``SSDB_TLS_CA``;
    unset: plain TCP. ``cluster`` is accepted for
    compatibility: the client asks the server whether it is a Redis Cluster
    (one INFO when it connects) and works either way, so a script written with
    ``Client(cluster=False)`` runs unchanged against a sharded store.
    ``logger_name`` is the context ``log_data`` writes. ``db_identifier``: the
    store of that name, when the launcher gave this process several (its
    address and credentials from ``SSDB_<name>``, ``SSDB_PASSWORD_<name>``...,
    see :mod:`simctl.store.contract`); an ``address`` of one of them given
    without a password logs in with that store's credentials too.

    Every call waits a bounded time. ``timeout`` (default 30 s,
    :data:`~simctl.store.wire.TIMEOUT`) is the longest any call waits for an
    answer of the store, ``Client()`` included (connecting, AUTH, its first
    command), and the default limit of ``run_model``/``run_script`` (their
    ``timeout=`` sets it per call); ``connect_timeout`` (default 5 s, never
    more than ``timeout``) the longest a server may take to accept a
    connection. A store that does not answer in time (stopped, hung,
    overloaded) is a :class:`StoreTimeoutError` (a
    :class:`StoreConnectionError`) saying so: ``Client()`` raises it within
    ``timeout`` whatever the number of addresses; a call raises it once one
    answer is ``timeout`` late (a large tensor may take longer as long as its
    bytes keep flowing; :meth:`save` of a large store may need a longer
    ``timeout``). A broken connection is
    reconnected and the command sent once more, at once; a timeout never is.
    ``timeout=None`` waits without limit. ``command_timeout`` is the older
    name of ``timeout`` (given, it wins).

    Keys are prefixed as the launcher says (``SSKEYOUT``, ``SSKEYIN``; see
    :meth:`set_data_source` and the ``use_*_ensemble_prefix`` switches).
    """

    def __init__(self, cluster: bool | None = None, address: str | Iterable[str] | None = None,
                 password: str | None = None, *, username: str | None = None, tls_ca: str | None = None,
                 logger_name: str = "Default", timeout: float | None = TIMEOUT,
                 connect_timeout: float | None = CONNECT_TIMEOUT, command_timeout: Any = _OLD_NAME,
                 db_identifier: str | None = None) -> None:
        if isinstance(cluster, str) and address is None:  # the older Client(address, cluster) order
            cluster, address = None, cluster
        if cluster is not None and not isinstance(cluster, bool):
            raise ConfigError(f"Client: cluster must be True, False or None, got {cluster!r}")
        if not isinstance(logger_name, str):
            raise ConfigError(f"Client: logger_name must be a str, got {logger_name!r:.80}")
        if address is not None and not isinstance(address, str) and (
                not isinstance(address, (list, tuple)) or not all(isinstance(a, str) for a in address)):
            raise ConfigError(f"Client: address must be 'host:port' (or several, comma-separated or a list of "
                              f"str), '[v6]:port' or 'unix:///path'; got {type(address).__name__} {address!r:.80}")
        if password is not None and not isinstance(password, str):
            raise ConfigError(f"Client: password must be a str or None, got {type(password).__name__}")
        self._logger_name = logger_name
        env = _store_env(db_identifier, address)
        parsed = parse_addresses(env.address if address is None else address, "Client")
        if address is not None and db_identifier is None and password is None:
            named = contract.store_named(parsed)  # the address of a store the launcher named: its credentials
            if named is not None and env.address != contract.read(name=named).address:
                env = contract.read(name=named)
        if not parsed:
            raise ConfigError(f"Client: no store address: pass address='host:port' or start the model after "
                              f"the experiment's store ({contract.ADDRESS} is " +
                              ("not set)" if address is None else f"empty), got address={address!r}"))
        if password is None and not env.password:  # a store this process started: its credentials (known.py)
            username, password, tls_ca = known.lookup(parsed, username, tls_ca)
        self._password = (env.password if password is None else password) or None
        self._username = (env.user if username is None else username) or None
        self._tls_ca = (env.tls_ca if tls_ca is None else tls_ca) or None
        if self._tls_ca is not None and not os.path.isfile(self._tls_ca):
            raise ConfigError(f"Client: the store's certificate authority {self._tls_ca!r} (tls_ca= or "
                              f"{contract.TLS_CA}) is not a file")
        self.addresses = [str(a) for a in parsed]
        self._waits = Waits(timeout if command_timeout is _OLD_NAME else command_timeout, connect_timeout)
        self._server = open_servers(parsed, self._password, self._waits, username=self._username,
                                    tls_ca=self._tls_ca, socket_read_size=READ_SIZE, protocol=2)
        # key prefixing (the reference documents' SSKEYIN / SSKEYOUT)
        self._put_prefix = env.keyout
        self._sources = list(env.keyin)
        self._get_prefix = self._sources[0] if self._sources else ""
        self._use_prefix = {"tensor": True, "dataset": True, "list": True, "model": False}
        self._known = {}
        # inference (protocol.py): this client's id, the device each model ran on
        self._id = pr.new_id()
        self._devices = {}
        self._plans = {}

    # -- connection ---------------------------------------------------------------------

    @property
    def is_cluster(self) -> bool:
        """True when connected to a Redis Cluster."""
        return self._server.is_cluster

    def close(self) -> None:
        """Close the connections."""
        self._server.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({','.join(self.addresses)!r}, cluster={self.is_cluster})"

    # -- prefixes and logging -----------------------------------------------------------

    def set_data_source(self, source_id: str) -> None:
        """Read with the prefix ``source_id``: one of the entities in ``SSKEYIN``
        (registered with ``register_incoming_entity``) or this entity's own ``SSKEYOUT``."""
        valid = self._sources + ([self._put_prefix] if self._put_prefix and self._put_prefix not in self._sources
                                 else [])
        if source_id not in valid:
            unset = f"(none: {contract.KEYIN} and {contract.KEYOUT} are unset)"
            raise ConfigError(f"set_data_source: {source_id!r} is not a registered data source; registered: "
                              f"{', '.join(repr(v) for v in valid) or unset}")
        self._get_prefix = source_id
        self._prefixes_changed()

    def use_tensor_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether tensor keys get the prefixes (default True)."""
        self._set_prefixing("tensor", use_prefix, "use_tensor_ensemble_prefix")

    def use_dataset_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether dataset keys get the prefixes (default True)."""
        self._set_prefixing("dataset", use_prefix, "use_dataset_ensemble_prefix")

    def use_list_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether aggregation-list keys get the prefixes (default True)."""
        self._set_prefixing("list", use_prefix, "use_list_ensemble_prefix")

    def use_model_ensemble_prefix(self, use_prefix: bool) -> None:
        """Whether ML-model and script keys get the prefixes (default False)."""
        self._set_prefixing("model", use_prefix, "use_model_ensemble_prefix")

    def _set_prefixing(self, kind: str, use_prefix: Any, what: str) -> None:
        if not isinstance(use_prefix, (bool, np.bool_)):
            raise ConfigError(f"{what}: use_prefix must be True or False, got {type(use_prefix).__name__} "
                              f"{use_prefix!r:.80}")
        self._use_prefix[kind] = bool(use_prefix)
        self._prefixes_changed()

    def log_data(self, level: Any, data: Any) -> None:
        """Write ``<logger_name>@HH-MM-SS:<data>`` if ``level`` passes ``SR_LOG_LEVEL``."""
        write_log(self._logger_name, level, data)

    # -- tensors --------------------------------------------------------------------------

    def put_tensor(self, name: str, data: Any) -> None:
        """Store a numeric numpy array under ``name``, replacing the tensor
        there (one round trip). A key that holds another kind (a model, a
        script, a list) is not replaced: KindError (delete it first to
        replace it on purpose). A masked array is refused (its mask would be
        lost): store ``data.filled(...)`` and the mask as two tensors."""
        key = self._key("tensor", name, False, "put_tensor")
        self._put_value("put_tensor", key, encode_value(data, f"put_tensor({name!r})"), "tensor")

    def get_tensor(self, name: str) -> np.ndarray:
        """The array stored under ``name`` (one GET), with its dtype and shape."""
        key = self._key("tensor", name, True, "get_tensor", look=True)
        value = self._key_cmd("get_tensor", key, "GET", key, kind="tensor", array=True)
        if value is None:
            raise self._missing("get_tensor", "tensor", key, name)
        return self._tensor_value(value, key, "get_tensor")

    def _tensor_value(self, value: bytes | bytearray | np.ndarray, key: str, what: str,
                      copy: bool = True) -> np.ndarray:
        try:
            return fmt.decode_tensor(value, copy and type(value) is bytes)  # type: ignore[arg-type]
            # (a bytearray or a numpy array is the reply's own buffer: the array is made on it)
        except FormatError as exc:
            if bytes(value[:3]) != fmt.TENSOR_MAGIC_STEM:
                found = fmt.kind_of_value(bytes(value[:10]))  # not a tensor: another kind's value is refused as such
                if found in ("model", "script", "dataset"):
                    raise keyspace.refused(what, key, found, "tensor", write=False) from None
            raise FormatError(f"{what}: {key!r}: {exc}") from None

    def unpack_tensor(self, name: str, result: np.ndarray) -> None:
        """Fill ``result`` (same shape, same dtype up to byte order) with the tensor ``name``."""
        if not isinstance(result, np.ndarray) or not result.flags.writeable:
            raise ConfigError(f"unpack_tensor: result must be a writable numpy array, got {type(result).__name__}")
        key = self._key("tensor", name, True, "unpack_tensor", look=True)
        value = self._key_cmd("unpack_tensor", key, "GET", key, kind="tensor", array=True)
        if value is None:
            raise self._missing("unpack_tensor", "tensor", key, name)
        stored = self._tensor_value(value, key, "unpack_tensor", copy=False)
        if stored.shape != result.shape or not np.can_cast(stored.dtype, result.dtype, casting="equiv"):
            raise ConfigError(f"unpack_tensor: result is {result.dtype} of shape {result.shape}; tensor {key!r} "
                              f"is {stored.dtype} of shape {stored.shape}")
        np.copyto(result, stored, casting="equiv")

    def delete_tensor(self, name: str) -> None:
        """Delete the tensor ``name`` (nothing happens if there is none); a key
        that holds another kind is not deleted: KindError."""
        key = self._key("tensor", name, True, "delete_tensor")
        self._guarded("delete_tensor", keyspace.DELETE, [key], ["tensor"], "tensor")

    def tensor_exists(self, name: str) -> bool:
        """Whether the tensor ``name`` exists (a key holding another kind is no tensor)."""
        key = self._key("tensor", name, True, "tensor_exists", look=True)
        try:
            head = self._server.execute(key, "GETRANGE", key, 0, 2)
        except redis.ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                return False
            raise self._error(f"tensor_exists {key!r}", exc) from None
        except redis.RedisError as exc:
            raise self._error(f"tensor_exists {key!r}", exc) from None
        return bool(head == fmt.TENSOR_MAGIC_STEM)

    def key_exists(self, key: str) -> bool:
        """Whether ``key`` exists, taken as is (no prefix)."""
        check_name(key, "key_exists: key")
        check_length(key, "key_exists")
        return bool(self._key_cmd("key_exists", key, "EXISTS", key))

    def poll_key(self, key: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Check for ``key`` (no prefix) up to ``num_tries`` times, ``poll_frequency_ms``
        apart; True once it exists, False if it never did."""
        return poll(lambda: self.key_exists(key), poll_frequency_ms, num_tries, "poll_key")

    def poll_tensor(self, name: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Like :meth:`poll_key` for the tensor ``name`` (prefixed)."""
        return poll(lambda: self.tensor_exists(name), poll_frequency_ms, num_tries, "poll_tensor")

    def copy_tensor(self, src_name: str, dest_name: str) -> None:
        """Copy the tensor ``src_name`` (read prefix) to ``dest_name`` (write prefix)."""
        src = self._key("tensor", src_name, True, "copy_tensor", look=True)
        dest = self._key("tensor", dest_name, False, "copy_tensor")
        self._copy_key(src, dest, "copy_tensor", "tensor", src_name)

    def rename_tensor(self, old_name: str, new_name: str) -> None:
        """Move the tensor ``old_name`` (read prefix) to ``new_name`` (write prefix)."""
        src = self._key("tensor", old_name, True, "rename_tensor")
        dest = self._key("tensor", new_name, False, "rename_tensor")
        self._rename_key(src, dest, "rename_tensor", "tensor", old_name)

    # -- for the driver: the servers themselves -----------------------------------------------

    def _nodes(self, addresses: str | Iterable[str] | None, what: str) -> list[tuple[str, Any]]:
        """(address, redis client) of the given servers (default: every primary)."""
        known = self._server.primaries()
        if addresses is None:
            return list(known.items())
        if not isinstance(addresses, str) and (not isinstance(addresses, (list, tuple))
                                               or not all(isinstance(a, str) for a in addresses)):
            raise ConfigError(f"{what}: addresses must be None (every server), 'host:port' or a list of them; "
                              f"got {type(addresses).__name__} {addresses!r:.80}; its servers are "
                              f"{', '.join(sorted(known))}")
        out = []
        for a in parse_addresses(addresses, what):
            name = next((k for k in known if k == str(a)), None) or next(
                (k for k in known if same_server(a, parse_addresses(k)[0])), None)
            if name is None:
                raise ConfigError(f"{what}: {str(a)!r} is not a server of this store; its servers are "
                                  f"{', '.join(sorted(known))}")
            out.append((name, known[name]))
        return out

    def _admin(self, what: str, func: Callable[..., Any], *args: Any) -> Any:
        """:meth:`_call` for a command of the store's admin user: a refusal
        (``NOPERM``) says who may run it."""
        try:
            return func(*args)
        except redis.exceptions.NoPermissionError as exc:
            raise StoreError(f"{what}: refused to this client's user {self._username or 'default'!r} ({exc}): "
                             f"{what.split()[0]} administers the store, which only its admin user may do: the "
                             "driver can, through db.client() (or db.set_db_conf for the configuration); a "
                             "member cannot") from None
        except redis.RedisError as exc:
            raise self._error(what, exc) from None

    def flush_db(self, addresses: str | Iterable[str] | None = None) -> None:
        """Delete every key on the given servers (default: all of them). The
        store's admin user's (the driver's ``db.client()``): a member's client
        gets a StoreError saying so."""
        for name, r in self._nodes(addresses, "flush_db"):
            self._admin(f"flush_db {name}", r.flushdb)

    def get_db_node_info(self, addresses: str | Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Redis' INFO of each given server (default: all of them), as dicts."""
        nodes = self._nodes(addresses, "get_db_node_info")
        return [self._call(f"get_db_node_info {name}", r.info) for name, r in nodes]

    def config_get(self, expression: str, address: str | None = None) -> dict[str, str]:
        """CONFIG GET ``expression`` (a glob) on one server (default: the
        first). The admin user's, like :meth:`flush_db`."""
        check_name(expression, "config_get: expression")
        name, r = self._nodes(address, "config_get")[0]
        return self._admin(f"config_get {name}", r.config_get, expression)  # type: ignore[no-any-return]

    def config_set(self, config_param: str, value: Any, address: str | None = None) -> None:
        """CONFIG SET ``config_param`` ``value`` on one server (default: every
        server). The admin user's, like :meth:`flush_db`."""
        check_name(config_param, "config_set: config_param")
        for name, r in self._nodes(address, "config_set"):
            self._admin(f"config_set {config_param} on {name}", r.config_set, config_param, value)

    def save(self, addresses: str | Iterable[str] | None = None) -> None:
        """Make each given server (default: all) write its data to disk now
        (SAVE; the client's ``timeout`` bounds each server's answer). The
        admin user's, like :meth:`flush_db`."""
        for name, r in self._nodes(addresses, "save"):
            self._admin(f"save {name}", r.save)
