"""The inference worker's fast path: the common round, in a few lines of Python.

Most rounds of a worker are alike: one request taken, of protocol version 3,
its inputs carried, for a model or script already loaded whose stored header
(carried in the request) is the one the loaded copy came from, on this
worker's device, not waiting for a batch to fill, every output's kind carried
as ``-`` (absent or a tensor when the request was queued), small outputs. For
that round :class:`FastRound` does what the general path of
:class:`~simctl.store.worker.Worker` does with less Python: the request is
split once; what depends only on its names (the model, the output and reply
keys, the commands' fixed parts) is a :class:`Plan` cached per request shape;
the carried inputs are decoded, and the outputs encoded, with cached headers;
and the round's commands are written from pre-packed bytes, in one write:

* the server module's ``SIMCTL.FINISH`` where the server holds it
  (:mod:`.servermodule`), else ``EVALSHA`` of :data:`FINISH` (the same: outputs,
  reply and the taken list's ``DEL`` in one command: the server neither hashes a
  script text nor parses five commands), then ``BLMOVE`` and ``LLEN``, as the
  general path's :meth:`~simctl.store.worker.Worker._next`.

:data:`FINISH` writes the outputs and pushes the reply only when no output
holds another kind than a tensor, all at once (outputs first, as the protocol
promises). When it does not run (``NOSCRIPT``: the server's scripts were
flushed), or refuses (an output turned into a dataset since the request was
queued), or fails (the store out of memory), it has changed nothing: the
worker reads its answer before the ``BLMOVE``'s (which may block until the
next request) and answers at once on its other connection (sending the
script's text when the server lost it, which caches it again).

Anything else goes through the general path unchanged: a request this
module does not take returns None before anything is run or sent; a run that
fails, or gives outputs of another count or too large for the script, is
answered by the general path's :meth:`~simctl.store.worker.Worker._write`.

A stale copy never runs: the fast path runs a loaded model only when the
header carried in the request (what the store held when the request was
queued, read by the ``SUBMIT`` script) equals the one the copy was loaded
from, which holds the model's random ``id``. The change channel therefore
only lets the worker drop copies early (memory); the fast path does not peek
at it every round (a ``poll`` a round), the worker reads it when idle and at
least every :data:`CHANGES_EVERY` seconds.

Only a single server's worker takes the fast path: on a cluster, the outputs
and the reply list lie in other slots, which one script cannot write.
"""

from __future__ import annotations

import hashlib
import sys
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import redis

from . import format as fmt, keyspace, protocol as pr
from .direct import Direct, pack
from .servermodule import has_module
from .servers import lacks_module

if TYPE_CHECKING:  # (the worker imports this module)
    from .worker import Worker

#: seconds between two looks at the change channel while the fast path serves requests back to back
CHANGES_EVERY = 0.1

#: KEYS: the outputs, the reply list, the taken list; ARGV: the outputs' values, the reply[, the request].
#: Unless an output holds another kind than a tensor (then ``SIMCTLKIND <i> <kind>``, nothing done): SET
#: every output, RPUSH the reply, give the reply list its expiry, and DEL the taken list (or, given the
#: request, remove it alone from the list: the worker may have taken the next one meanwhile)
FINISH = fmt.KIND_LUA + """
local n = #KEYS - 2
for i = 1, n do
  local m = redis.pcall('GETRANGE', KEYS[i], 0, 2)
  if m ~= '' and m ~= 'SMT' then
    local found = kind(KEYS[i])
    if found ~= 'none' and found ~= 'tensor' then
      return redis.error_reply('""" + fmt.KIND_ERROR + """ ' .. i .. ' ' .. found)
    end
  end
end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[i]) end
redis.call('RPUSH', KEYS[n + 1], ARGV[n + 1])
redis.call('EXPIRE', KEYS[n + 1], """ + str(pr.REPLY_TTL) + """)
if ARGV[n + 2] then redis.call('LREM', KEYS[n + 2], 1, ARGV[n + 2]) else redis.call('DEL', KEYS[n + 2]) end
return 1
"""
FINISH_SHA = hashlib.sha1(FINISH.encode()).hexdigest()
#: plans kept (one per request shape: model, function, reply, input and output keys)
PLANS = 1024


class Conn(Direct):
    """The worker's direct connection, with a pre-packed write and single
    reads (the worker is one thread: no lock). Any error closes it."""

    def send(self, data: bytes) -> None:
        """Send ``data`` (packed commands) in one write."""
        try:
            if self._sock is None:
                self._open()
            self._send([data])
        except BaseException:
            self.close()
            raise

    def read(self) -> Any:
        """The next reply (an error reply as redis-py's exception, not raised)."""
        try:
            return self._reply(False)
        except BaseException:
            self.close()
            raise


class Plan(NamedTuple):
    """What a request's round needs that depends only on its names."""

    #: the worker's cache key of the model or script
    which: tuple[str, str]
    fn: str
    reply: str
    inputs: int
    outputs: list[str]
    #: the bytes the sections end with: one ``-`` per output
    dashes: bytes
    #: ``EVALSHA`` of FINISH up to the outputs' values (its keys packed)
    head: bytes


#: no plan yet (None: a request shape the fast path does not take)
_NONE: Any = object()


def _bulk(b: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(b), b)


class FastRound:
    """The fast path of ``worker``'s rounds (see the module docstring)."""

    def __init__(self, worker: Worker) -> None:
        self.w = worker
        self.plans: dict[bytes, Plan | None] = {}
        #: a tensor value's header -> (dtype, shape, size)
        self.inputs: dict[bytes, tuple[np.dtype, tuple[int, ...], int]] = {}
        #: (dtype, shape) -> the header of an output
        self.outputs: dict[tuple[np.dtype, tuple[int, ...]], bytes] = {}
        self.ok = b"\x00" + worker.device.encode()
        self.tail = b"".join(pack(worker.next_cmds))
        self.taken = _bulk(worker.taken.encode())
        #: whether the server holds simctl's module: its SIMCTL.FINISH, not an EVALSHA of FINISH
        self.module = has_module(worker.local)
        try:
            worker.local.script_load(FINISH)
        except redis.ResponseError:  # (refused: then every round's NOSCRIPT sends it, see _mend)
            pass

    def round(self, raw: bytes) -> list[bytes] | None:
        """Answer the lone request ``raw`` (clearing the taken list) and take
        the next requests (returned, as :meth:`Worker._next`); None when it is
        not one for the fast path (nothing run nor sent: the general path's)."""
        head, nl, rest = raw.partition(b"\n")
        fields = head.split(b"\x00", 2)
        if not nl or len(fields) != 3 or fields[0] != b"3":
            return None
        plan = self.plans.get(fields[2], _NONE)
        if plan is _NONE:
            plan = self._plan(raw, fields[2])
        if plan is None:
            return None
        w = self.w
        loaded = w.cache.get(plan.which)
        if loaded is None or loaded.device != w.device or loaded.handle is None or loaded.min_batch_size:
            return None
        args = []
        i = 0
        heads = self.inputs
        try:
            for _ in range(plan.inputs):
                if rest[i:i + 1] == b"-":
                    return None  # not carried: the general path reads it
                colon = rest.index(b":", i, i + 21)
                start = colon + 1
                i = start + int(rest[i:colon])
                offset = rest[start + 6] | rest[start + 7] << 8  # (the header's length: see format)
                known = heads.get(rest[start:start + offset])
                if known is None:
                    known = self._input(rest[start:i])
                    if known is None:
                        return None
                dtype, shape, size = known
                if size != i - start:
                    return None
                args.append(np.ndarray(shape, dtype, rest, start + offset))  # (a read-only view of rest)
            colon = rest.index(b":", i, i + 21)
            stamp = loaded.stamp
            if int(rest[i:colon]) != len(stamp) or not rest.startswith(stamp, colon + 1):
                return None  # another model than the copy loaded: the general path loads it
            if rest[colon + 1 + len(stamp):] != plan.dashes:
                return None
        except (ValueError, IndexError):  # a section damaged
            return None
        try:
            # (as Worker._call, one call less)
            outs = (loaded.backend.run_script(loaded.handle, plan.fn, args) if plan.fn
                    else loaded.backend.run(loaded.handle, args))
        except Exception as exc:  # the backend's error or a runtime's: the caller's to read
            return w.general(raw, None, str(exc) or type(exc).__name__)
        values = self._values(outs, plan)
        if values is None:
            return w.general(raw, outs, None)
        fid = fields[1]
        conn = w.conn
        conn.send(b"".join((plan.head, *values, b"$%d\r\nR3\x00%b%b\r\n" % (len(fid) + len(self.ok) + 3, fid,
                                                                             self.ok), self.tail)))
        done = conn.read()
        if done != 1:
            self._mend(raw, plan, values, fid, done)
        got = w._taken(conn.read())
        more = conn.read()
        if got and type(more) is int and more > 0:
            got += w._taken(w._exchange([w.take_cmd])[0])
        return got

    def _plan(self, raw: bytes, shape: bytes) -> Plan | None:
        """The plan of requests shaped as ``raw`` (``shape``: its header past its id), cached;
        None for one the fast path does not take."""
        w = self.w
        try:
            h = pr.parse_request(raw)
        except (ValueError, KeyError, TypeError):
            return None  # (not cached: the general path drops it)
        plan = None
        if h.version == 3 and h.reply and h.outputs and w.owned is None:
            keys = [*(k.encode() for k in h.outputs), h.reply.encode()]
            count = _bulk(b"%d" % (len(keys) + 1))
            head = (b"*%d\r\n$13\r\nSIMCTL.FINISH\r\n%b" % (5 + 2 * len(h.outputs), count) if self.module else
                    b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%b\r\n%b" % (6 + 2 * len(h.outputs), FINISH_SHA.encode(),
                                                                         count))
            plan = Plan((h.kind, h.key), h.fn if h.kind == "script" else "", h.reply, len(h.inputs), h.outputs,
                        b"-" * len(h.outputs), head + b"".join(map(_bulk, keys)) + self.taken)
        if len(self.plans) >= PLANS:
            self.plans.clear()
        self.plans[shape] = plan
        return plan

    def _input(self, value: bytes) -> tuple[np.dtype, tuple[int, ...], int] | None:
        """(dtype, shape, size) of the tensor ``value``, cached by its
        header; None when it is no tensor or an empty one (the general path's)."""
        try:
            h = fmt.parse_header(value)
        except fmt.FormatError:
            return None
        count = int(np.prod(h.shape))
        if not count:
            return None
        known = (h.dtype, h.shape, h.offset + count * h.dtype.itemsize)
        if len(self.inputs) >= PLANS:
            self.inputs.clear()
        self.inputs[value[:h.offset]] = known
        return known

    def _values(self, outs: list[Any], plan: Plan) -> list[bytes] | None:
        """The outputs packed as the script's arguments; None unless each is
        an array small enough for the script (:data:`keyspace.MOVE_FROM`)."""
        if len(outs) != len(plan.outputs):
            return None
        values = []
        heads = self.outputs
        for o in outs:
            if type(o) is not np.ndarray:
                return None
            header = heads.get((o.dtype, o.shape))
            if header is None:
                try:
                    fmt.encode_tensor(o)
                except Exception:  # noqa: BLE001 - the general path says why
                    return None
                header = heads[(o.dtype, o.shape)] = fmt.tensor_header(o.dtype, o.shape)
            size = len(header) + o.nbytes
            if size > keyspace.MOVE_FROM:
                return None
            values.append(b"$%d\r\n%b%b\r\n" % (size, header, o.tobytes()))
        return values

    def _mend(self, raw: bytes, plan: Plan, values: list[bytes], rid: bytes, done: Any) -> None:
        """FINISH did nothing (``done``: its answer): run it again by its text
        when the server lost it, else answer why, on the worker's other connection."""
        w = self.w
        reply_key = plan.reply
        keys = [*plan.outputs, reply_key, w.taken]
        argv = [_unbulk(v) for v in values] + [b"R3\x00" + rid + self.ok, raw]
        lacks = lacks_module(done)
        if lacks:  # a server started without the module: the script from now on
            self.module = False
            self.plans.clear()
        if lacks or isinstance(done, redis.exceptions.NoScriptError):
            try:
                done = w.local.execute_command("EVAL", FINISH, len(keys), *keys, *argv)
            except redis.ResponseError as exc:
                done = exc
            if done == 1:
                return
        refusal = keyspace.kind_error("run", plan.outputs, "tensor", done)
        why = str(refusal) if refusal is not None else f"outputs not stored: {done}"
        if refusal is None:
            print(f"simctl inference worker: the outputs of {plan.which[0]} {plan.which[1]!r} not stored: {done}",
                  file=sys.stderr, flush=True)
        try:
            p = w.local.pipeline(transaction=False)
            p.rpush(reply_key, b"R3\x00%b\x00\x00%b" % (rid, why.encode()))  # (as protocol.reply: the id as sent)
            p.expire(reply_key, pr.REPLY_TTL)
            p.lrem(w.taken, 1, raw)  # type: ignore[arg-type]  # (redis-py takes bytes)
            p.execute()
        except redis.RedisError as exc:  # (the store out of memory, say): the caller's wait ends it
            print(f"simctl inference worker: a reply not stored: {exc}", file=sys.stderr, flush=True)


def _unbulk(packed: bytes) -> bytes:
    """A bulk string's bytes, from its packing."""
    return packed[packed.index(b"\r\n") + 2:-2]
