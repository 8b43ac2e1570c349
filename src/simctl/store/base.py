"""What every part of the :class:`~simctl.store.Client` stands on: the
servers behind it (:class:`~simctl.store.servers.Server`), its key prefixes,
one command on a key, and redis-py's errors turned into simctl's. The client's
commands are written in parts on this base, as redis-py writes its commands
in mixins over ``execute_command``: tensors and the servers in
:mod:`.client`, datasets and aggregation lists in :mod:`.datasets`, ML
models and scripts in :mod:`.models`, running them in :mod:`.inference`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

from ..core.errors import ConfigError
from . import format as fmt, keyspace
from .dataset import check_name
from .direct import bulk
from .format import FormatError, StoreError, StoreKeyError
from .servers import Server, lacks_module, store_error
from .wire import Parts, Waits

#: the commands :meth:`ClientBase._key_cmd` sends that only read (a refusal of theirs says no more than the kinds)
_READS = frozenset({"GET", "LLEN", "LRANGE", "GETRANGE", "EXISTS"})


#: the heads of the server module's SIMCTL.PUT and of an EVALSHA of keyspace.PUT, and the last argument per
#: kind, packed (see ClientBase._put_value)
_MODULE_PUT = b"*4\r\n" + bulk("SIMCTL.PUT")
_PUT = b"*6\r\n" + bulk("EVALSHA") + bulk(keyspace.PUT_SHA) + bulk(1)
_STEMS = {kind: bulk(stem) for kind, stem in keyspace.STEMS.items()}
#: names whose keys a client remembers (:meth:`ClientBase._key`), at most
_KNOWN_MAX = 4096


class ClientBase:
    """The state and the helpers the client's parts share (see the module docstring)."""

    #: the servers (one, or a cluster's primaries)
    _server: Server
    #: the addresses the client was given, canonical (``host:port``, ``[v6]:port``, ``unix:///path``)
    addresses: list[str]
    _password: str | None
    #: the user it logged in as (None: the ``default`` user), and the certificate authority of a TLS store
    _username: str | None
    _tls_ca: str | None
    #: the write prefix (``SSKEYOUT``), the data sources (``SSKEYIN``) and the read prefix
    _put_prefix: str
    _sources: list[str]
    _get_prefix: str
    #: kind of key -> whether the prefixes apply
    _use_prefix: dict[str, bool]
    #: (kind, name, read, look) -> its key, with the prefixes as they are (see :meth:`_key`)
    _known: dict[tuple[str, str, bool, bool], str]
    #: how long calls wait for the store
    _waits: Waits
    #: this client's id (its inference reply key, its temporary keys)
    _id: str

    @property
    def _r(self) -> Any:
        """The redis-py client (``redis.Redis`` or ``RedisCluster``) under the client."""
        return self._server.redis

    # -- commands and errors ----------------------------------------------------------------

    def _call(self, what: str, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` with redis-py's errors turned into simctl's, naming ``what``."""
        try:
            return func(*args)
        except redis.RedisError as exc:
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: redis.RedisError) -> StoreError:
        """simctl's error for redis-py's ``exc`` raised by ``what``."""
        return store_error(what, exc, self.addresses, self._waits.timeout)

    def _one(self, key: str, *args: Any) -> Any:
        """Run a command on ``key``'s server (redis-py's errors)."""
        return self._server.execute(key, *args)

    def _key_cmd(self, what: str, key: str, *args: Any, kind: str = "", array: bool = False) -> Any:
        """:meth:`_one` with simctl's errors; ``kind``: the kind of value the
        command is about, named with the kind found when the key holds another
        (a Redis WRONGTYPE); ``array``: a large reply comes as an uninitialised
        ``numpy`` uint8 array of its own (a tensor's value, see :func:`decode_value`)."""
        try:
            return self._server.execute(key, *args, array=array)
        except redis.RedisError as exc:
            if kind and isinstance(exc, redis.ResponseError) and str(exc).startswith("WRONGTYPE"):
                raise keyspace.refused(what, key, self._kind_of(key), kind, write=args[0] not in _READS) from None
            raise self._error(f"{what} {key!r}", exc) from None

    def _kind_of(self, key: str) -> str:
        """The kind of value ``key`` holds (see :data:`format.KIND_LUA`; 'none' when absent)."""
        found = self._key_cmd("kind", key, "EVAL", keyspace.KIND, 1, key)
        return found.decode() if isinstance(found, bytes) else str(found)

    def _guarded(self, what: str, script: str, keys: list[str], args: list[Any], kind: str) -> Any:
        """Run one of :mod:`.keyspace`'s checking scripts on ``keys`` (one
        slot); its refusal is the KindError naming both kinds."""
        return self._scripts(what, [("EVAL", script, len(keys), *keys, *args)], keys, kind)

    def _scripts(self, what: str, cmds: list[tuple[Any, ...]], keys: list[str], kind: str) -> Any:
        """Send ``cmds`` (on ``keys``, one slot; the scripts as EVALSHA, sent
        again as EVAL when the server does not hold them) in one write; the
        last reply. A script's refusal is the KindError naming both kinds."""
        try:
            try:
                if len(cmds) == 1:
                    return self._server.execute(keys[-1], *keyspace.by_sha(cmds[0]))
                return self._send(keys[-1], [keyspace.by_sha(c) for c in cmds])
            except redis.exceptions.NoScriptError:
                return self._send(keys[-1], cmds)
        except redis.RedisError as exc:
            raise self._refusal(what, keys, kind, exc) from None

    def _refusal(self, what: str, keys: list[str], kind: str, exc: redis.RedisError) -> StoreError:
        """simctl's error for a checking script's error reply ``exc``: the KindError naming both kinds."""
        refused = keyspace.kind_error(what, keys, kind, exc) if isinstance(exc, redis.ResponseError) else None
        return refused or self._error(f"{what} {keys[-1]!r}", exc)

    def _send(self, key: str, cmds: list[tuple[Any, ...]]) -> Any:
        """``cmds`` (on ``key``'s slot) in one write to its server over the
        direct path (:meth:`Server.send`); the last reply (redis-py's errors)."""
        return self._server.send(key, cmds)

    def _put_value(self, what: str, key: str, value: bytes | Parts, kind: str) -> None:
        """SET ``value`` (a tensor, model or script of ``kind``) under ``key``
        unless the key holds another kind, in one round trip: a small value
        by the server module's ``SIMCTL.PUT`` where the store has it, else
        through :data:`keyspace.PUT` (packed here on one server, the common
        case); a large one SET under a temporary key and renamed by
        :data:`keyspace.MOVE_IN` (never copied into Lua)."""
        if type(value) is bytes and len(value) <= keyspace.MOVE_FROM:
            server = self._server
            only = server.only
            try:
                if server.module:
                    if only is not None:
                        only.one_packed([b"".join((_MODULE_PUT, bulk(key), bulk(value), _STEMS[kind]))])
                    else:
                        server.execute(key, "SIMCTL.PUT", key, value, keyspace.STEMS[kind])
                    return
                if only is not None:
                    only.one_packed([b"".join((_PUT, bulk(key), bulk(value), _STEMS[kind]))])
                    return
            except redis.exceptions.NoScriptError:
                pass  # the script, below
            except redis.RedisError as exc:
                if not lacks_module(exc):
                    raise self._refusal(what, [key], kind, exc) from None
                server.module = False  # a server started without it: the script, below
        size = value.size if isinstance(value, Parts) else len(value)
        tmp = keyspace.temporary_key(key, self._id) if size > keyspace.MOVE_FROM else None
        if tmp is None:
            self._scripts(what, [("EVAL", keyspace.PUT, 1, key, value, keyspace.STEMS[kind])], [key], kind)
        else:
            self._scripts(what, [("SET", tmp, value, "PX", keyspace.TMP_TTL_MS),
                                 ("EVAL", keyspace.MOVE_IN, 2, tmp, key, kind)], [tmp, key], kind)

    # -- keys and prefixes ------------------------------------------------------------------

    def _key(self, kind: str, name: Any, read: bool, what: str, look: bool = False) -> str:
        """The key of ``name`` with the read (data source) or write prefix of ``kind`` applied;
        one a user may not name (:func:`keyspace.check_key`) is refused unless the call only
        reads it (``look``: a get, an input; a dataset's tensor may be read as a tensor).
        Remembered per name until the prefixes change (:meth:`_prefixes_changed`)."""
        if type(name) is str:
            key = self._known.get((kind, name, read, look))
            if key is not None:
                return key
        if type(name) is not str or not name or not name.isascii():
            check_name(name, f"{what}: name")
        prefix = (self._get_prefix if read else self._put_prefix) if self._use_prefix[kind] else ""
        key = f"{prefix}.{name}" if prefix else name
        if len(key) > fmt.MAX_KEY_BYTES // 4:  # a longer key may take more than MAX_KEY_BYTES in UTF-8
            check_length(key, what)
        if kind == "dataset":
            keyspace.check_dataset(key, what)
        elif not look:
            keyspace.check_key(key, "model or script" if kind == "model" else kind, what)
        if len(self._known) >= _KNOWN_MAX:
            self._known.clear()
        self._known[(kind, name, read, look)] = key
        return key

    def _prefixes_changed(self) -> None:
        """Forget the keys worked out with the prefixes as they were."""
        self._known.clear()

    def _missing(self, what: str, kind: str, key: str, name: str) -> StoreKeyError:
        how = f" (data source {self._get_prefix!r})" if key != name else ""
        return StoreKeyError(f"{what}: no {kind} {key!r} in the store{how}")

    # -- copying and moving a key -------------------------------------------------------------

    def _copy_key(self, src: str, dest: str, what: str, kind: str, name: str, rename: bool = False) -> None:
        """Copy (``rename``: move) the ``kind`` at ``src`` to ``dest``, refused
        when either holds another kind: one script when they share a slot,
        else DUMP and RESTORE (and DEL) through scripts that check too."""
        if self._server.same_slot(src, dest):
            if not self._guarded(what, keyspace.TRANSFER, [src, dest], [kind, "rename" if rename else "copy"],
                                 kind):
                raise self._missing(what, kind, src, name)
            return
        dumped = self._guarded(what, keyspace.DUMP, [src], [kind], kind)
        if not dumped:
            raise self._missing(what, kind, src, name)
        self._guarded(what, keyspace.RESTORE, [dest], [kind, dumped[0]], kind)
        if rename:
            self._guarded(what, keyspace.DELETE, [src], [kind], kind)

    def _rename_key(self, src: str, dest: str, what: str, kind: str, name: str) -> None:
        self._copy_key(src, dest, what, kind, name, rename=True)


# -- helpers ------------------------------------------------------------------------------------


def gpus(what: str, first_gpu: Any, num_gpus: Any) -> list[int]:
    """The GPU numbers ``first_gpu`` .. ``first_gpu + num_gpus - 1``, checked."""
    for arg, v, low in (("first_gpu", first_gpu, 0), ("num_gpus", num_gpus, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ConfigError(f"{what}: {arg} must be an int >= {low}, got {v!r:.80}")
    return list(range(first_gpu, first_gpu + num_gpus))


def check_length(key: str, what: str) -> None:
    """ConfigError naming ``what`` if ``key`` is longer than a key may be."""
    n = len(key.encode("utf-8"))
    if n > fmt.MAX_KEY_BYTES:
        raise ConfigError(f"{what}: key {key[:60]!r}... is {n} bytes long; keys may be at most "
                          f"{fmt.MAX_KEY_BYTES} bytes (prefix and dataset decoration included)")


#: (dtype, shape) -> the header of a small tensor of them, once :func:`format.encode_tensor` took one
_headers: dict[tuple[np.dtype[Any], tuple[int, ...]], bytes] = {}


def encode_value(data: Any, what: str) -> bytes | Parts:
    """The stored value of an array: bytes, or parts sent without copying.
    A small plain array of a dtype and shape already stored is encoded here
    (:func:`format.encode_tensor` checked them), as it would be there."""
    if type(data) is np.ndarray and data.nbytes <= _SMALL:
        header = _headers.get((data.dtype, data.shape))
        if header is not None:
            return header + data.tobytes()
    buffers = fmt.encode_tensor(data, what)
    if len(buffers) == 1:
        if type(data) is np.ndarray and len(_headers) < 1024:
            _headers[(data.dtype, data.shape)] = fmt.tensor_header(data.dtype, data.shape)
        return bytes(buffers[0])
    return Parts(buffers)


#: the largest array :func:`format.encode_tensor` returns as one ``bytes``
_SMALL = 65536


def decode_value(value: bytes | bytearray | np.ndarray, what: str, copy: bool = True) -> np.ndarray:
    """The array in ``value``; a copy only if asked and ``value`` is not a buffer of its own (a
    ``bytearray`` or a ``numpy`` array: a large reply received into its final buffer)."""
    try:
        return fmt.decode_tensor(value, copy and type(value) not in (bytearray, np.ndarray))  # type: ignore[arg-type]
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None


def poll(check: Callable[[], bool], poll_frequency_ms: float, num_tries: int, what: str) -> bool:
    """Call ``check`` up to ``num_tries`` times, ``poll_frequency_ms`` apart, until it is true."""
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
