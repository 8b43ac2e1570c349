"""An inference worker: ``python -m simctl.store.worker``.

Started by a shard's supervisor (:mod:`simctl.store.supervisor`), one per
device, beside the store server; it serves the requests of
:mod:`simctl.store.protocol` on that server's queues. It logs in as the
store's worker user (:mod:`simctl.store.roles`): the supervisor gives it the
user, its password and a TLS store's certificate authority in ``$SSDB_USER``,
``$SSDB_PASSWORD`` and ``$SSDB_TLS_CA``. A ``GPU:n`` worker is started with the device's visibility
variables set to ``n`` (see :data:`simctl.store.supervisor.VISIBILITY`), so that inside it the GPU is
number 0.

Its backends come from the installed entry points plus the plugins the
experiment that started the store was given (``--plugin name=module[:attr]``,
passed on by the supervisor; see ``Plugins.worker_args``), never from a
process-wide registry. A plugin that fails to load here is named in the
error of a request for a backend the worker does not know.

Models and scripts are loaded by their backend plugin the first time a request
names them, kept loaded, and dropped when their key is published on
:data:`protocol.CHANGED`. Requests for one model are run as one batch when the
model was stored with a ``batch_size``: up to ``batch_size`` rows (the first
dimension of the inputs), waiting at most ``min_batch_timeout`` ms
(:data:`DEFAULT_MIN_BATCH_WAIT_MS` when only ``min_batch_size`` is given) for
``min_batch_size`` rows, and never more than half the shortest ``timeout`` of
the requests waiting (so that no caller gives up, and the supervisor does
not take the worker for hung, while it waits). An error (a model never stored, a wrong shape, a
function the script lacks) is the reply to that request; the worker goes on.

The common round (a lone version-3 request whose inputs and model header are
carried, its model loaded and current, on a single server) takes the fast path
of :mod:`.fastround`: the same answers with a fraction of the Python and one
script; everything else takes the general path below.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import redis

from ..core.errors import ConfigError
from ..core.plugins import Plugins, worker_plugins
from . import contract, fastround, format as fmt, keyspace, protocol as pr, wire
from .address import parse_address

#: how long a model with ``min_batch_size`` and no ``min_batch_timeout`` waits for a batch to fill
DEFAULT_MIN_BATCH_WAIT_MS = 10


def device_name(device: str) -> str:
    """The worker that runs ``device``: ``"GPU"`` is ``"GPU:0"``."""
    return "GPU:0" if device == "GPU" else device


class Loaded(NamedTuple):
    """A model or script ready to run."""

    backend: Any
    handle: Any
    device: str
    batch_size: int = 0
    min_batch_size: int = 0
    min_batch_timeout: int = 0
    #: the stored value's header (its ``id`` included): the copy loaded is current while the store's matches it
    stamp: bytes = b""


class Request:
    """A request taken, decoded (either version of the protocol)."""

    __slots__ = ("raw", "version", "id", "reply", "kind", "key", "fn", "inputs", "outputs", "timeout", "carried",
                 "args")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        #: the caller's wait (``timeout``), in seconds (None: no limit)
        (self.version, self.id, self.reply, self.kind, self.key, self.fn, self.inputs, self.outputs,
         self.timeout) = pr.parse_request(raw)
        #: what the request carries (protocol version 2 on): per input, the model's header, per output; or None
        self.carried = pr.carried(raw, len(self.inputs) + 1 + len(self.outputs)) if self.version > 1 else None
        #: its inputs, read (an array each, or why it cannot be read): see Worker._read
        self.args: list[np.ndarray | str] = []

    def rows(self) -> int:
        """The rows of its first input (1 when that is missing or a scalar)."""
        first = self.args[0] if self.args else None
        return first.shape[0] if isinstance(first, np.ndarray) and first.ndim else 1


class RunError(Exception):
    """A request that cannot run: the message is the caller's error."""


class Worker:
    """Serves one device's queue on one store server."""

    def __init__(self, address: str, password: str | None, device: str, cluster: bool,
                 plugins: Plugins | None = None, on_connected: Callable[[], None] | None = None, *,
                 username: str | None = None, tls_ca: str | None = None) -> None:
        self.device = device
        self.password = password
        #: the user it logs in as, and a TLS store's certificate authority
        self.username, self.tls_ca = username, tls_ca
        self.address = address
        self.local = self._connect(address)
        self.local.ping()  # connected, under its name: clients now see this device served...
        if on_connected is not None:
            on_connected()  # ...before a cluster's worker waits for the cluster to form
        self.tag = pr.tag_for(self._wait_for_slots() if cluster else None)
        self.cluster: Any = None  # a cluster client, for keys held by other shards
        self.owned: set[int] | None = self._owned if cluster else None
        self.q, self.taken = pr.queue_key(self.tag, device), pr.taken_key(self.tag, device)
        self.take_cmd = ("EVAL", pr.TAKE_SCRIPT, 2, self.q, self.taken, pr.TAKE)
        #: sent after a round's replies: clear the taken list, take the requests queued meanwhile, or wait
        self.next_cmds = [("BLMOVE", self.q, self.taken, "LEFT", "RIGHT", pr.IDLE), ("LLEN", self.q)]
        self.cache: dict[tuple[str, str], Loaded] = {}
        #: output key -> why this round's requests may not write it (it holds another kind)
        self.refused: dict[str, str] = {}
        #: this worker's id in its temporary keys (see keyspace.temporary_key)
        self.id = pr.new_id()
        #: key -> the nonce of the last change heard of (see protocol.change)
        self.heard: dict[str, str] = {}
        # the request path talks over one direct connection of its own (:mod:`.direct`), without redis-py
        # (its pool, pipeline and reply parser cost tens of us a command); no read timeout, as self.local
        self.conn = fastround.Conn(parse_address(address), password, username=username, tls_ca=tls_ca,
                                   timeout=None, connect=10, name=pr.worker_name(device))
        self.pubsub = self.local.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(pr.CHANGED)
        self.stop = False
        #: the backends' plugins: entry points, plus the experiment's (``--plugin``)
        self.plugins = plugins if plugins is not None else worker_plugins()
        self.backends: dict[str, Any] = {}
        #: the common round's fast path (:mod:`.fastround`): a single server's worker only
        self.fast = None if cluster else fastround.FastRound(self)

    def _connect(self, address: str) -> redis.Redis:
        # no read timeout: the worker blocks on its queue (the supervisor stops it with the server)
        return wire.connect(address, self.password, username=self.username, tls_ca=self.tls_ca, protocol=2,
                            socket_timeout=None, socket_connect_timeout=10, client_name=pr.worker_name(self.device))

    def _wait_for_slots(self) -> set[int]:
        """This shard's slots, once the driver has formed the cluster."""
        while True:
            info = self.local.execute_command("CLUSTER", "INFO").decode()
            if "cluster_state:ok" in info:
                owned = pr.own_slots(self.local.execute_command("CLUSTER", "NODES").decode())
                if owned:
                    self._owned = owned
                    return owned
            time.sleep(0.05)

    # -- lifecycle ----------------------------------------------------------------------

    def fail_orphans(self, previous_exit: str) -> None:
        """Answer the requests a worker that died had taken, with an error."""
        self._clear_foreign()
        orphans = self.local.lrange(self.taken, 0, -1)
        if not orphans:
            return
        how = f" ({previous_exit})" if previous_exit else ""
        cmds: list[tuple[Any, ...]] = []
        for raw in orphans:
            try:
                req = pr.parse_request(raw if isinstance(raw, bytes) else raw.encode())
            except (ValueError, KeyError, TypeError):
                continue
            self._reply(cmds, req, f"the inference worker for {self.device} died while running this request{how}; "
                        "it was restarted: run it again")
        cmds.append(("DEL", self.taken))
        self._exchange(cmds)

    def serve(self) -> None:
        """Take and answer requests until stopped. The next request is waited
        for in the exchange that carries a round's replies (see :meth:`handle`).
        A lone request takes the fast path when it can (:mod:`.fastround`),
        which looks at the change channel only every
        :data:`fastround.CHANGES_EVERY` seconds (a stale copy never runs
        anyway: the header a request carries is compared with the copy's);
        the worker looks at it before every other round, and when idle."""
        raws = self._taken(self._exchange([self.take_cmd])[0])
        fast = self.fast
        looked = time.monotonic()
        while not self.stop:
            if not raws:
                raws = self._next([])[1]
            if fast is not None and len(raws) == 1:
                now = time.monotonic()
                if now - looked > fastround.CHANGES_EVERY:
                    self._drain_changes()
                    looked = now
                taken = fast.round(raws[0])
                if taken is not None:
                    raws = taken
                    continue
            self._drain_changes()
            looked = time.monotonic()
            if raws:
                raws = self.handle(raws)

    def _next(self, cmds: list[tuple[Any, ...]]) -> tuple[list[Any], list[bytes]]:
        """Send ``cmds`` and, in the same write, take the next request
        (``BLMOVE``, which blocks at most :data:`protocol.IDLE` seconds while
        none is queued) and ask how many more are queued (``LLEN``, run once
        the ``BLMOVE`` is served): when some are, they are taken too (the
        :data:`protocol.TAKE_SCRIPT`, one more exchange, only then). Returns
        the replies to ``cmds`` and the requests taken (none after an idle
        wait). A plain take costs the server no script: the one-at-a-time
        round of a lone caller runs no Lua here."""
        replies = self._exchange(cmds + self.next_cmds)
        raws = self._taken(replies[-2])
        if raws and isinstance(replies[-1], int) and replies[-1] > 0:
            raws += self._taken(self._exchange([self.take_cmd])[0])
        return replies[:-2], raws

    def _exchange(self, cmds: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``cmds`` in one write over the worker's direct connection and read their
        replies; an error reply (a key of another type, a store out of memory)
        is returned in its place as a ``redis.ResponseError``."""
        return self.conn.call(cmds, retry=False)

    def _taken(self, reply: Any) -> list[bytes]:
        """The requests a take (the TAKE script or BLMOVE) moved; its error ends
        the worker, except a store refusing writes because its disk fails
        (MISCONF): the worker waits for the disk rather than crash-loop."""
        if isinstance(reply, redis.ResponseError) and str(reply).startswith("MISCONF"):
            print(f"simctl inference worker ({self.device}): the store refuses writes, waiting: {reply}",
                  file=sys.stderr, flush=True)
            time.sleep(1.0)
            return []
        if isinstance(reply, redis.ResponseError) and str(reply).startswith("WRONGTYPE"):
            self._clear_foreign()
            return []
        if isinstance(reply, redis.ResponseError):
            raise reply
        return reply if isinstance(reply, list) else [] if reply is None else [reply]

    def _clear_foreign(self) -> None:
        """Delete what is not a list under this worker's queue and taken keys
        (simctl's own, under the reserved prefix: written there by a client
        that bypassed simctl's), rather than fail on it for ever."""
        for key in (self.q, self.taken):
            found = self.local.type(key)
            if found not in (b"list", b"none", "list", "none"):
                print(f"simctl inference worker ({self.device}): {key!r} (simctl's own key) held a {found!r}, "
                      "not a list: deleted", file=sys.stderr, flush=True)
                self.local.delete(key)

    def _drain_changes(self) -> None:
        """Forget the models and scripts whose keys were published as changed
        (nothing but one non-blocking peek at the subscription's socket when
        none was: :func:`wire.quiet`). On a single server a copy whose stored
        header is still the one it was loaded from is kept: the message came
        after the copy was loaded (a message may reach the worker later than
        the request that loaded the new value), and dropping it would only
        cost a load."""
        if wire.quiet(self.pubsub):
            return
        while True:
            msg = self.pubsub.get_message(timeout=0)
            if msg is None:
                return
            if msg.get("type") == "message":
                key, nonce = pr.parse_change(msg["data"])
                if self.heard.get(key) == nonce:
                    continue  # the same change again, passed on by another shard of a cluster
                self.heard[key] = nonce
                for which in (("model", key), ("script", key)):
                    held = self.cache.get(which)
                    if held is not None and not self._current(key, held):
                        del self.cache[which]

    def _current(self, key: str, held: Loaded) -> bool:
        """Whether ``key`` (on a single server) still holds the value the copy ``held`` was loaded from."""
        if self.owned is not None or not held.stamp:
            return False
        try:
            return bool(self.local.getrange(key, 0, len(held.stamp) - 1) == held.stamp)
        except redis.ResponseError:  # (another type now)
            return False

    # -- one round of requests ------------------------------------------------------------

    def handle(self, raws: list[bytes]) -> list[bytes]:
        """Answer the requests ``raws`` (taken into the taken list), clear that
        list, and take the next requests (returned), in one exchange that
        ends, when none was queued, when the next one comes (or after
        :data:`protocol.IDLE` seconds: then none is returned); see :meth:`_next`."""
        cmds: list[tuple[Any, ...]] = []
        self.refused = {}
        groups = self._fill_batches(self._intake(raws, cmds), cmds)
        for loaded, group in groups.values():
            if loaded is None:
                continue
            for chunk in self._chunks(loaded, group):
                self._run(loaded, chunk, cmds)
        return self._finish(cmds)

    def general(self, raw: bytes, outs: list[np.ndarray] | None, error: str | None) -> list[bytes]:
        """Finish by the general path a round the fast path ran (:mod:`.fastround`): the
        lone request ``raw`` answered with ``error``, or its outputs ``outs`` written."""
        cmds: list[tuple[Any, ...]] = []
        req = Request(raw)
        if outs is None:
            self._reply(cmds, req, error)
        else:
            self._write(req, outs, cmds)
        return self._finish(cmds)

    def _finish(self, cmds: list[tuple[Any, ...]]) -> list[bytes]:
        """Send a round's ``cmds`` with the clearing of the taken list and the
        take of the next requests (returned: see :meth:`_next`)."""
        cmds.append(("DEL", self.taken))
        replies, taken = self._next(cmds)
        for cmd, got in zip(cmds, replies):
            if isinstance(got, redis.ResponseError):  # a caller's output or reply not stored: say so in the log
                print(f"simctl inference worker: {cmd[0]} {cmd[1]!r} failed: {got}", file=sys.stderr, flush=True)
        return taken

    def _groups(self, reqs: list[Request], cmds: list[tuple[Any, ...]]
                ) -> dict[tuple[str, str], tuple[Loaded | None, list[Request]]]:
        """Requests by model or script, each with what runs it (None when it
        cannot run here: those got their reply, or were passed on)."""
        groups: dict[tuple[str, str], tuple[Loaded | None, list[Request]]] = {}
        for req in reqs:
            k = (req.kind, req.key)
            if k not in groups:
                try:
                    groups[k] = (self._loaded(req.kind, req.key), [])
                except RunError as exc:
                    groups[k] = (None, [])
                    self._reply(cmds, req, str(exc))
                    for other in reqs:
                        if (other.kind, other.key) == k and other is not req:
                            self._reply(cmds, other, str(exc))
                    continue
            loaded, group = groups[k]
            if loaded is None:
                continue
            if loaded.device != self.device:
                self._pass_on(loaded.device, req, cmds)
                continue
            group.append(req)
        return groups

    def _fill_batches(self, groups: dict[tuple[str, str], tuple[Loaded | None, list[Request]]],
                      cmds: list[tuple[Any, ...]]) -> dict[tuple[str, str], tuple[Loaded | None, list[Request]]]:
        """Wait (a bounded time) for more requests while a batched model has
        fewer than its ``min_batch_size`` rows."""
        start = time.monotonic()
        while True:
            deadline = None
            for loaded, group in groups.values():
                if loaded is None or not group or not loaded.batch_size or not loaded.min_batch_size:
                    continue
                if sum(r.rows() for r in group) >= loaded.min_batch_size:
                    continue
                wait = (loaded.min_batch_timeout or DEFAULT_MIN_BATCH_WAIT_MS) / 1000
                # never so long that a caller gives up, or its supervisor takes the worker for hung
                limits = [r.timeout for r in group if r.timeout is not None]
                if limits:
                    wait = min(wait, min(limits) / 2)
                deadline = start + wait if deadline is None else min(deadline, start + wait)
            left = None if deadline is None else deadline - time.monotonic()
            if left is None or left <= 0:
                return groups
            more = self._taken(self._exchange([self.take_cmd])[0])
            if not more:
                more = self._taken(self._exchange([("BLMOVE", self.q, self.taken, "LEFT", "RIGHT",
                                                    max(left, 0.001))])[0])
            if not more:
                continue
            new = self._intake(more, cmds)
            for key, (loaded, group) in new.items():
                if loaded is None:  # its requests are answered (an error) or passed on
                    groups.setdefault(key, (None, []))
                    continue
                if key in groups and groups[key][0] not in (None, loaded):
                    # the model changed while the batch filled: the new requests run the new one, apart
                    key = (key[0], f"{key[1]}\x00{id(loaded)}")
                if key in groups and groups[key][0] is loaded:
                    groups[key][1].extend(group)
                else:
                    groups[key] = (loaded, group)

    def _intake(self, raws: list[bytes], cmds: list[tuple[Any, ...]]
                ) -> dict[tuple[str, str], tuple[Loaded | None, list[Request]]]:
        """The requests ``raws`` decoded, their inputs read (:meth:`_read`, which
        also drops stale loaded copies first), and grouped (see :meth:`_groups`)."""
        reqs = self._parse(raws)
        self._read(reqs)
        return self._groups(reqs, cmds)

    def _parse(self, raws: list[bytes]) -> list[Request]:
        """The requests ``raws`` decoded (a malformed one is dropped, and said so)."""
        reqs = []
        for raw in raws:
            try:
                reqs.append(Request(raw))
            except (ValueError, KeyError, TypeError) as exc:
                print(f"simctl inference worker: dropped a malformed request: {exc}", file=sys.stderr)
        return reqs

    def _pass_on(self, device: str, req: Request, cmds: list[tuple[Any, ...]]) -> None:
        """Queue ``req`` for the worker of ``device`` on this shard, or answer it with an error."""
        if not pr.has_worker(self.local.client_list(), device):
            self._reply(cmds, req,
                        f"{req.kind} {req.key!r} runs on {device}, and no inference worker serves {device} on "
                        f"the store at {self.address} (start the store with ml_devices including {device!r})")
            return
        cmds.append(("RPUSH", pr.queue_key(self.tag, device), req.raw))

    # -- loading ---------------------------------------------------------------------------

    def _get(self, key: str) -> bytes | None:
        """The value of ``key``, wherever it lives."""
        try:
            if self.owned is None or pr.key_slot(key.encode()) in self.owned:
                value = self._exchange([("GET", key)])[0]
                if isinstance(value, redis.ResponseError):
                    raise value
                return value  # type: ignore[no-any-return]
            return self._cluster_client().get(key)  # type: ignore[no-any-return]
        except redis.ResponseError as exc:
            raise RunError(f"{key!r} cannot be read: {exc}") from None

    def _cluster_client(self) -> Any:
        if self.cluster is None:
            self.cluster = wire.connect_cluster([self.address], self.password, username=self.username,
                                                tls_ca=self.tls_ca, protocol=2, socket_timeout=60)
        return self.cluster

    def _backend(self, name: str) -> Any:
        if name not in self.backends:
            try:
                cls = self.plugins.get("backend", name)
            except ConfigError as exc:
                failed = [f"{r.name!r} ({r.error:.300})" for r in self.plugins.records if r.status == "broken"]
                also = f"; plugins that failed to load in the inference worker: {', '.join(failed)}" if failed else ""
                raise RunError(f"{exc}{also}") from None
            reason = cls.unavailable_reason()
            if reason:
                raise RunError(f"backend {name!r} cannot run on the store's node: {reason}")
            self.backends[name] = cls()
        return self.backends[name]

    def _loaded(self, kind: str, key: str) -> Loaded:
        """The model or script ``key``, loaded (once)."""
        hit = self.cache.get((kind, key))
        if hit is not None:
            return hit
        value = self._get(key)
        if value is None:
            raise RunError(f"no {kind} {key!r} in the store (set_{'model' if kind == 'model' else 'script'} "
                           "stores one)")
        try:
            if kind == "model":
                head, blob = fmt.decode_model(value)
                device = device_name(head.device)
                if device != self.device:
                    return Loaded(None, None, device)  # passed on, not cached
                backend = self._backend(head.backend)
                handle = backend.load(blob, self._local_device(), head.inputs, head.outputs)
                loaded = Loaded(backend, handle, device, head.batch_size, head.min_batch_size,
                                head.min_batch_timeout, bytes(value[:head.offset]))
            else:
                shead, source = fmt.decode_script(value)
                device = device_name(shead.device)
                if device != self.device:
                    return Loaded(None, None, device)
                backend = self._backend("TORCH")
                loaded = Loaded(backend, backend.load_script(source, self._local_device()), device,
                                stamp=bytes(value[:shead.offset]))
        except fmt.FormatError as exc:
            raise RunError(f"{key!r} is not a {kind}: {exc}") from None
        except (ConfigError, RunError) as exc:  # RunError: a backend this worker does not have
            where = "" if self.device == "CPU" else f" on {self.device} (which the worker sees as GPU 0)"
            raise RunError(f"{kind} {key!r} cannot be loaded{where}: {exc}") from None
        except Exception as exc:  # a runtime's own error while loading
            raise RunError(f"{kind} {key!r} cannot be loaded: {type(exc).__name__}: {exc}") from None
        self.cache[(kind, key)] = loaded
        return loaded

    def _local_device(self) -> str:
        """The device as this process sees it: a GPU worker sees only its GPU, as number 0."""
        return "CPU" if self.device == "CPU" else "GPU:0"

    # -- running ---------------------------------------------------------------------------

    def _local(self, key: str) -> bool:
        """Whether ``key`` lives on this worker's server."""
        return self.owned is None or pr.key_slot(key.encode()) in self.owned

    def _read(self, reqs: list[Request]) -> None:
        """Fill every request's :attr:`Request.args` (an array per input, or why
        it cannot be read), drop each loaded model or script whose stored header
        differs from the one it was loaded from (never run stale), and put the
        outputs that hold another kind than a tensor into :attr:`refused`.
        What a request carries (protocol version 2 on) is used as it is; the rest
        is read in one exchange (inputs, headers with ``GETRANGE``, kinds with
        the :data:`keyspace.KIND` script)."""
        cache = self.cache
        held = {m: cache[m] for m in ((r.kind, r.key) for r in reqs) if m in cache}
        kinds: dict[str, None] = {}
        keys: dict[str, None] = {}
        for r in reqs:
            c = r.carried
            if c is None:
                keys.update(dict.fromkeys(r.inputs))
                kinds.update(dict.fromkeys(r.outputs))
                continue
            for k, v in zip(r.inputs, c):
                if v is None:
                    keys[k] = None
            n = len(r.inputs)
            m = (r.kind, r.key)
            loaded = held.pop(m, None)
            if loaded is not None and c[n] != loaded.stamp:
                del cache[m]
            for k, v in zip(r.outputs, c[n + 1:]):
                if v is not None:
                    self.refused[k] = str(keyspace.refused("run", k, v.decode(errors="replace"), "tensor"))
        values = self._fetch(list(keys), list(held.items()), [k for k in kinds if k not in self.refused])
        decoded = {k: _decode(k, v) for k, v in values.items()}
        for r in reqs:
            if r.carried is None:
                r.args = [decoded[k] for k in r.inputs]
            else:
                r.args = [decoded[k] if c is None else _decode(k, c) for k, c in zip(r.inputs, r.carried)]

    def _fetch(self, keys: list[str], stamps: list[tuple[tuple[str, str], Loaded]], kinds: list[str]
               ) -> dict[str, Any]:
        """The values of ``keys`` (None: absent; a ``redis.ResponseError``: not
        a string), in one exchange (on a cluster, and for keys of other shards,
        more) that also drops the loaded copies of ``stamps`` whose stored header
        differs, and puts the outputs ``kinds`` holding another kind than a
        tensor into :attr:`refused`."""
        if not keys and not stamps and not kinds:
            return {}  # everything carried in the requests
        local = [k for k in keys if self._local(k)]
        cmds: list[tuple[Any, ...]] = []
        if local:  # on a cluster, keys of different slots cannot share an MGET
            cmds += [("MGET", *local)] if self.owned is None else [("GET", k) for k in local]
        mine = [(m, h) for m, h in stamps if self._local(m[1])]
        cmds += [("GETRANGE", m[1], 0, len(h.stamp) - 1) for m, h in mine]
        outs = [k for k in kinds if self._local(k)]
        cmds += [("EVAL", keyspace.KIND, 1, k) for k in outs]
        got = self._exchange(cmds) if cmds else []
        values: dict[str, Any] = {}
        if local:
            values.update(zip(local, got[0] if self.owned is None else got[:len(local)]))
            got = got[1:] if self.owned is None else got[len(local):]
        now = list(zip(mine, got))
        now += [((m, h), self._remote("GETRANGE", m[1], 0, len(h.stamp) - 1)) for m, h in stamps
                if not self._local(m[1])]
        for (which, h), stored in now:
            if stored != h.stamp:
                self.cache.pop(which, None)
        got = got[len(mine):]
        for k, found in [*zip(outs, got), *((k, self._remote("EVAL", keyspace.KIND, 1, k))
                                             for k in kinds if not self._local(k))]:
            kind = found.decode() if isinstance(found, bytes) else str(found)
            if kind not in ("none", "tensor"):
                self.refused[k] = str(keyspace.refused("run", k, kind, "tensor"))
        for k in keys:
            if k not in values:
                values[k] = self._remote("GET", k)
        return values

    def _remote(self, *cmd: Any) -> Any:
        """``cmd`` on the cluster node holding its key (the second word); redis-py's error in its place."""
        try:
            return self._cluster_client().execute_command(*cmd)
        except redis.ResponseError as exc:
            return exc

    def _chunks(self, loaded: Loaded, group: list[Request]) -> list[list[Request]]:
        """The requests run together: batches of up to ``batch_size`` rows for a
        batched model, else one request at a time."""
        if not loaded.batch_size or loaded.handle is None:
            return [[r] for r in group]
        chunks: list[list[Request]] = []
        rows = 0
        for r in group:
            first = r.args[0] if r.args else None
            n = first.shape[0] if isinstance(first, np.ndarray) and first.ndim else 0
            if not n:
                chunks.append([r])
                continue
            if chunks and len(chunks[-1]) and rows and rows + n <= loaded.batch_size:
                chunks[-1].append(r)
                rows += n
            else:
                chunks.append([r])
                rows = n
        return chunks

    def _run(self, loaded: Loaded, chunk: list[Request], cmds: list[tuple[Any, ...]]) -> None:
        """Run ``chunk`` (one request, or a batch), write outputs and replies."""
        ready: list[tuple[Request, list[np.ndarray]]] = []
        for r in chunk:
            missing = [a for a in r.args if isinstance(a, str)]
            missing += [self.refused[k] for k in r.outputs if k in self.refused]
            if missing:
                self._reply(cmds, r, str(missing[0]))
            else:
                ready.append((r, r.args))  # type: ignore[arg-type]  # no str among them
        if not ready:
            return
        if len(ready) > 1:
            results = self._run_batch(loaded, ready)
            if isinstance(results, str):  # the batch's outputs cannot be split into its requests' rows
                for r, _ in ready:
                    self._reply(cmds, r, results)
                return
            if results is None:  # not batchable after all (shapes differ): one at a time
                for r, arrays in ready:
                    self._answer(loaded, r, arrays, cmds)
                return
            for (r, _), outs in zip(ready, results):
                self._write(r, outs, cmds)
            return
        self._answer(loaded, *ready[0], cmds)

    def _call(self, loaded: Loaded, fn: str, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        outs: list[np.ndarray] = (loaded.backend.run_script(loaded.handle, fn, arrays) if fn
                                  else loaded.backend.run(loaded.handle, arrays))
        return outs

    def _answer(self, loaded: Loaded, r: Request, arrays: list[np.ndarray], cmds: list[tuple[Any, ...]]) -> None:
        try:
            outs = self._call(loaded, r.fn if r.kind == "script" else "", arrays)
        except Exception as exc:  # the backend's error (ConfigError) or a runtime's: the caller's to read
            self._reply(cmds, r, str(exc) or type(exc).__name__)
            return
        self._write(r, outs, cmds)

    def _run_batch(self, loaded: Loaded, ready: list[tuple[Request, list[np.ndarray]]]
                   ) -> list[list[np.ndarray]] | str | None:
        """Outputs per request of one batched run; None if they cannot be
        batched (then each runs alone); every caller's error when an output
        has not as many rows as the batch's inputs (its rows cannot be told
        apart: batching requires a model that treats rows independently)."""
        counts = {len(a) for _, a in ready}
        if len(counts) != 1:
            return None
        try:
            joined = [np.concatenate([a[i] for _, a in ready]) for i in range(counts.pop())]
        except ValueError:
            return None
        rows = [a[0].shape[0] for _, a in ready]
        try:
            outs = self._call(loaded, "", joined)
        except Exception:
            return None  # each request then gets its own error
        total = sum(rows)
        bad = next((o for o in outs if not isinstance(o, np.ndarray) or o.ndim == 0 or o.shape[0] != total), None)
        if bad is not None:
            shape = getattr(bad, "shape", type(bad).__name__)
            return (f"model {ready[0][0].key!r} is batched (batch_size {loaded.batch_size}) and its output for a "
                    f"batch of {len(ready)} requests, {total} rows, has shape {shape}: a batched model must give "
                    "one output row per input row, each computed from its own row only; store it without "
                    "batch_size if it does not")
        if len(outs) != len(ready[0][0].outputs):
            return None  # each request then gets its own error
        bounds = np.cumsum(rows)[:-1]
        split = [np.split(o, bounds) for o in outs]
        return [[s[i] for s in split] for i in range(len(ready))]

    def _write(self, r: Request, outs: list[np.ndarray], cmds: list[tuple[Any, ...]]) -> None:
        if len(outs) != len(r.outputs):
            self._reply(cmds, r, f"{r.kind} {r.key!r} gave {len(outs)} output(s); the request "
                                             f"names {len(r.outputs)}: {r.outputs!r}")
            return
        try:
            values = [(k, fmt.tensor_bytes(o, f"output {k!r}")) for k, o in zip(r.outputs, outs)]
        except Exception as exc:
            self._reply(cmds, r, f"{r.kind} {r.key!r}: an output cannot be stored: {exc}")
            return
        for k, v in values:  # an output that holds another kind (since _read looked) is not replaced: logged
            tmp = keyspace.temporary_key(k, self.id) if len(v) > keyspace.MOVE_FROM else None
            put: list[tuple[Any, ...]] = ([("SET", tmp, v, "PX", keyspace.TMP_TTL_MS),
                                           ("EVAL", keyspace.MOVE_IN, 2, tmp, k, "tensor")] if tmp is not None
                                          else [("EVAL", keyspace.PUT, 1, k, v, "SMT")])
            if self._local(k):
                cmds += put
            else:
                for cmd in put:
                    got = self._remote(*cmd)
                    if isinstance(got, redis.ResponseError):
                        self._reply(cmds, r, f"output {k!r} not stored: {got}")
                        return
        self._reply(cmds, r, None)

    def _reply(self, cmds: list[tuple[Any, ...]], req: Request | pr.Header, error: str | None) -> None:
        """Queue the reply to ``req`` (sent with the other commands of the round), in its version."""
        if req.reply:
            cmds += [("RPUSH", req.reply, pr.reply(req.id, error, self.device, req.version)),
                     ("EXPIRE", req.reply, pr.REPLY_TTL)]


def _decode(key: str, value: Any) -> np.ndarray | str:
    """The tensor stored as ``value`` under ``key`` (as GET answers it), or why it is not one."""
    if isinstance(value, redis.ResponseError):
        return f"{key!r} is not a tensor: {value}"
    if value is None:
        return f"no tensor {key!r} in the store"
    if fmt.kind_of_value(value) != "tensor":
        return f"input {key!r} holds {fmt.kind_name(fmt.kind_of_value(value))}, not a tensor"
    try:
        return fmt.decode_tensor(value, copy=False)
    except fmt.FormatError as exc:
        return f"{key!r} is not a tensor: {exc}"


def main(argv: Sequence[str] | None = None) -> int:
    """Serve one device's requests on one store server (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m simctl.store.worker", description=__doc__.splitlines()[0])
    p.add_argument("--address", required=True, help="host:port or unix:///path of the store server")
    p.add_argument("--device", default="CPU", help="CPU or GPU:n")
    p.add_argument("--cluster", action="store_true", help="the server is a Redis Cluster node")
    p.add_argument("--previous-exit", default="", help="how the previous worker of this device ended")
    p.add_argument("--plugin", action="append", default=[], metavar="NAME=MODULE[:ATTR[()]]",
                   help="a plugin of the experiment to load besides the entry points (repeatable)")
    p.add_argument("--plugin-path", action="append", default=[], metavar="DIR",
                   help="a directory to import those plugins from, after this interpreter's own path (repeatable)")
    p.add_argument("--disable-plugin", action="append", default=[], metavar="NAME",
                   help="an entry point not to load (repeatable)")
    p.add_argument("--ready-fd", type=int, default=None, metavar="FD",
                   help="a pipe to write one byte to once connected to the store (the supervisor waits for it)")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # nothing to flush
    try:
        plugins = worker_plugins(args.plugin, args.plugin_path, args.disable_plugin)
        env = contract.read()
        worker = Worker(args.address, env.password, device_name(args.device), args.cluster, plugins,
                        on_connected=None if args.ready_fd is None else lambda: _say_ready(args.ready_fd),
                        username=env.user, tls_ca=env.tls_ca)
        worker.fail_orphans(args.previous_exit)
        worker.serve()
    except redis.ConnectionError as exc:
        print(f"simctl inference worker ({args.device}): lost the store at {args.address}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def _say_ready(fd: int) -> None:
    """One byte on the supervisor's pipe: this worker is connected to the store."""
    os.write(fd, b"1")
    os.close(fd)


if __name__ == "__main__":
    sys.exit(main())
