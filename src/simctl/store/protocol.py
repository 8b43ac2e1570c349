"""The request protocol between clients and the inference workers (version 3; versions 1 and 2 still served).

Every store shard (and every colocated store) runs one inference worker per
device (``CPU``, ``GPU:0``...) beside its server, under the shard's
supervisor. Clients and workers talk through the server itself, with keys that
all carry the shard's *worker tag* ``{T}`` (a Redis hash tag: every key of a
shard's workers lives on that shard; ``T`` is ``w`` on a single server, and on
a cluster the first of ``w0``, ``w1``... whose slot the shard owns):

``simctl.ml{T}.q.<DEVICE>``
    the device's request queue (a list). A client ``RPUSH``es one request.
``simctl.ml{T}.f.<DEVICE>``
    the requests the device's worker has taken and not yet answered (a list).
    The worker moves requests from the queue into it atomically (``BLMOVE``,
    or a Lua script taking up to a batch at once), and deletes it with its
    replies. A worker that starts finds its predecessor's requests there and
    answers each with an error: a worker killed in the middle of a request
    costs its callers an error, not a hang.
``simctl.ml{T}.r.<CLIENT>``
    a client's reply list (``CLIENT``: a random id per Client object). The
    worker ``RPUSH``es the reply and gives the list a 60-second expiry.

These keys start with ``simctl.``, the prefix of simctl's own keys, which a
user's name may not take (:data:`simctl.store.format.RESERVED`): no tensor
put by simctl's client lands on a queue. A worker that finds something else
than a list under its queue or taken key (written by another client) deletes
it and goes on.

A worker's connections are named ``simctl-ml-<DEVICE>-<pid>`` (``CLIENT
SETNAME``): a worker of a device lives on a shard while ``CLIENT LIST`` shows
one. The keys exist only while requests are in flight: at rest, the store
holds none of them.

A request starts with its *header*: in version 3, UTF-8 fields separated by
NUL bytes (``\x00``): ``3``, ``id``, ``timeout``, ``kind``, the number of
inputs, ``key``, ``fn``, ``reply``, then the input keys and the output keys
(:func:`request` writes it, :func:`parse_request` reads it); in versions 1
and 2, a JSON object with the same fields: ``{"v": 2, "id": str, "reply": key,
"kind": "model" | "script", "key": the model's or script's key, "fn":
function name (scripts), "in": [input tensor keys], "out": [output tensor
keys], "timeout": seconds}``. A client sends version 2 when a name holds a
NUL or a newline (which a version-3 header cannot hold). ``timeout`` (a
number > 0; empty or absent: no limit) is how long the caller waits for the reply; a worker that holds
the request in its taken list longer than that plus :data:`HUNG_GRACE`
seconds is hung (see "Deadlines" below). ``id`` is unique per request (a
random hex string). A request is sent once, never again: when the connection
breaks after it was sent, the client looks for it on the shard (in a queue
or a taken list, or its reply in the reply list) and waits on if it is
there, else raises an error (it was lost, or it ran and its reply was lost
with the connection); so a request runs at most once. A reply is in the
version of its request: in version 3, ``R3``, ``id`` and the device that ran
it (which the client remembers as the queue to use next time), separated by
NUL, on success, or ``R3``, ``id``, an empty field and the error; in
versions 1 and 2, ``{"id": str, "device": str}`` or ``{"id": str, "error":
str}``. Inputs are read and outputs written in the tensor format of
:mod:`simctl.store.format`; the outputs exist when the reply arrives (the
worker writes them and pushes the reply in one write, outputs first: a reader
that has the reply finds them). An output key that holds another kind than a
tensor (a model, a script, a list) is not written: the reply is an error naming both kinds
(the worker looks at the outputs' kinds when it reads the inputs, and writes
each output with the checking scripts of :mod:`simctl.store.keyspace`). The
worker compares the header of a model or script it holds loaded with the
stored one (``GETRANGE``, in the same exchange) on every request, and loads
it again when it differs: the change messages below only let it drop a copy
early.

Version 2 (and 3) lets the header be followed by what the worker would otherwise
read itself, carried in the request: a newline (``\n``, which neither a
JSON header nor a version-3 one holds), then one *section* per input (in the order of
``"in"``), one for the model or script, and one per output (in the order of
``"out"``), back to back. A section is ``-`` (nothing carried: the worker
reads the key itself, as in version 1) or ``<n>:`` followed by ``n`` bytes:
an input's value (at most :data:`CARRY` bytes; larger ones are read by the
worker), the model's or script's header (its value up to the first byte of
the model: the worker compares it with the copy it holds loaded), or the kind
an output key holds when it holds another kind than a tensor (the worker
answers with an error naming it and writes nothing). A request may end after
its header (nothing carried: a cluster's, whose keys live in other slots).
The client does not build the sections: it sends the header to the script
:data:`SUBMIT`, which reads the keys and pushes the request, atomically, on
the server: what is carried is what the store held when the request was
queued (a worker of version 1 read it when it took the request; a caller
cannot tell the two apart, since its call has not returned meanwhile). A
client finds its request in the lists (withdrawing it, looking for it) by
its header, with the script :data:`LOCATE`: an element is the request when
it is the header, or starts with the header and a newline.

A request lands on the queue of the shard that holds its first input (so a
cluster runs it where its inputs are) and of the device the model was stored
for. A worker that takes a request for another device's model passes it on to
that device's queue. When a model or script is stored or deleted, the client
publishes ``<key> <nonce>`` (a random nonce per change) on the channel
:data:`CHANGED` and every worker drops its loaded copy. On a cluster the
client publishes on every shard (a shard passes a message on to the others
only later, and the next request must find its worker told), so a worker may
hear of one change several times: it acts on each nonce once.

A client waits for its reply in slices of at most :data:`WAIT_SLICE` seconds; when a
slice passes with no reply and no worker of that device connected, and none comes
back within :data:`NO_WORKER_GRACE` seconds, it withdraws its request and
raises an error. When a slice passes with no reply while the workers live, it
checks, in one transaction on the shard, that its request is still in a queue
or a taken list there or its reply is waiting; when neither holds twice in a
row (the store was flushed while it waited, say), it raises an error.

Deadlines
=========

A client waits for its reply at most the request's ``timeout``. When that
passes, it withdraws the request from the queues (``LREM``: a request no
worker took never runs) and raises an error saying where the request was:
still queued (the device's worker is busy with other requests, or hung), or
taken and unanswered (the worker is hung, or the run takes longer than the
timeout). The shard's supervisor watches the taken lists: a request that
stays in one more than its ``timeout`` plus :data:`HUNG_GRACE` seconds (from
when the supervisor first saw it there) means its worker is hung; the
supervisor kills that worker (SIGKILL) and starts another, whose first act is
to answer every request left in the taken list with an error saying the
worker was killed as hung. A worker that holds no request sends a blocking
take every :data:`IDLE` seconds; one whose connections have all been silent
(``idle`` in ``CLIENT LIST``) for :data:`HUNG_IDLE` seconds while it holds
nothing is hung too (stopped while idle), and is replaced the same way. A long run therefore holds its device at most
its caller's timeout (plus the grace); the requests queued behind it wait,
each at most its own caller's timeout. A request without ``timeout`` sets no
limit: the worker may hold it for ever.

Versions
========

``v`` is the protocol's version (:data:`VERSION`). A new optional field
(``timeout`` is one) keeps the version: readers ignore fields they do not
know, so an older worker serves a newer client's requests (without their
deadline) and a newer worker serves an older client's (without a limit). A
change an older reader would misread (a field's meaning, a key's layout)
takes a new version. Version 2 added the sections after the header, which a
version-1 worker would take for part of its JSON; version 3 replaced the
JSON of the header and of the reply by NUL-separated fields (about 20 us of
the worker's and the client's Python a round: no JSON to write or read, no
dict per request). A worker serves every version (:data:`VERSIONS`) and
answers each in its own: a version-1 request is a header alone, and the
worker reads its inputs, model header and output kinds itself. A version-1
client's withdrawal (``LREM`` and ``LPOS`` of its request, whole) still
finds its requests, which are pushed as they were sent.

Transport
=========

The client sends a request (its ``SUBMIT``, by ``EVALSHA``) and the ``BLPOP``
of its reply in one write over its direct connection to the shard
(:mod:`.direct`; ``NOSCRIPT`` ends the exchange there, and the script itself
is sent); the worker answers a round of requests, clears its taken list,
takes (or waits for) the next request (``BLMOVE``) and asks how many more
are queued (``LLEN``, served after the ``BLMOVE``) in one write over a direct
connection of its own, named as its other connection (:func:`worker_name`);
only when more are queued does it take them, with :data:`TAKE_SCRIPT`. On a
single server the common round (one request, inputs carried, its model
loaded and current) takes the worker's fast path (:mod:`.fastround`): the
round's write is ``EVALSHA`` of its ``FINISH`` script (the outputs, unless one
holds another kind, the reply, its expiry and the ``DEL`` of the taken list,
atomically), then ``BLMOVE`` and ``LLEN``. The worker reads the change channel
every 0.1 s while fast rounds run back to back, before every other round and
when idle, when ``poll`` on that subscription's socket finds a message
(:func:`simctl.store.wire.quiet`): the carried header, compared on every
request, is what keeps a stale copy from running.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable
from typing import Any, NamedTuple

from redis.crc import key_slot as key_slot  # re-exported: the worker finds its slot with it

from ..core.backend import parse_device
from ..core.errors import ConfigError
from .format import KIND_LUA

VERSION = 3
#: the versions a worker serves
VERSIONS = (1, 2, 3)
#: the first bytes of a version-3 request and of a version-3 reply
V3, V3_REPLY = b"3\x00", b"R3\x00"
#: the largest input value (bytes) a request carries; a larger one the worker reads itself
CARRY = 16384
#: the pub/sub channel on which a stored or deleted model or script key is published
CHANGED = "simctl.ml.changed"
#: seconds a client blocks for its reply before checking that a worker lives
WAIT_SLICE = 1.0
#: seconds without any live worker for the device after which a client gives up
NO_WORKER_GRACE = 5.0
#: seconds a worker blocks on its queue before looking at its change channel
IDLE = 1.0
#: seconds a reply list lives after the last reply (a client that went away)
REPLY_TTL = 60
#: requests a worker takes from its queue at once
TAKE = 64
#: seconds past a request's timeout after which the worker holding it is hung (killed and restarted)
HUNG_GRACE = 2.0
#: seconds between the supervisor's looks at its workers' taken lists
HUNG_CHECK = 0.5
#: seconds without a command from a worker that holds no request after which it is hung (it asks every IDLE s)
HUNG_IDLE = 5

#: move up to ARGV[1] requests from the queue KEYS[1] to the taken list KEYS[2], atomically
TAKE_SCRIPT = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  redis.call('RPUSH', KEYS[2], unpack(items))
end
return items
"""

#: push a request with what the worker would read carried in it (see "Version 2" above), atomically.
#: KEYS[1] the queue, KEYS[2] the model or script, then ARGV[3] inputs, then the outputs; ARGV[1] the
#: header, ARGV[2] the largest input carried (bytes). Answers the queue's length (RPUSH's).
SUBMIT = KIND_LUA + """
local parts = {ARGV[1], '\\n'}
local limit, ins = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 3, 2 + ins do
  local v = redis.pcall('GETRANGE', KEYS[i], 0, limit)
  if type(v) == 'string' and #v > 0 and #v <= limit then
    parts[#parts + 1] = #v .. ':' .. v
  else
    parts[#parts + 1] = '-'
  end
end
local h = redis.pcall('GETRANGE', KEYS[2], 0, 511)
if type(h) == 'string' and #h >= 8 and string.sub(h, 1, 2) == 'SM' then
  local a, b, c, d = string.byte(h, 5, 8)
  local n = 8 + a + b * 256 + c * 65536 + d * 16777216
  if n > #h then h = redis.call('GETRANGE', KEYS[2], 0, n - 1) else h = string.sub(h, 1, n) end
  parts[#parts + 1] = #h .. ':' .. h
else
  parts[#parts + 1] = '-'
end
for i = 3 + ins, #KEYS do
  local m = redis.pcall('GETRANGE', KEYS[i], 0, 2)
  local found = (m == 'SMT') and 'tensor' or kind(KEYS[i])
  if found == 'none' or found == 'tensor' then parts[#parts + 1] = '-'
  else parts[#parts + 1] = #found .. ':' .. found end
end
return redis.call('RPUSH', KEYS[1], table.concat(parts))
"""

#: SUBMIT's SHA1, for EVALSHA (NOSCRIPT, when the server does not hold it yet, pushes nothing: send the EVAL)
SUBMIT_SHA = hashlib.sha1(SUBMIT.encode()).hexdigest()

#: where a request is, and its withdrawal. KEYS: lists to look in, the last the caller's reply list;
#: ARGV[1] the request's header, ARGV[2] from how many of the first lists to remove it. Answers, per list
#: but the last, 1 if the request is (was) there else 0, then the replies waiting in the last.
LOCATE = """
local p, w = ARGV[1], tonumber(ARGV[2])
local q = p .. '\\n'
local out = {}
for i = 1, #KEYS - 1 do
  local found = 0
  local items = redis.pcall('LRANGE', KEYS[i], 0, -1)
  if type(items) == 'table' and not items.err then
    for _, e in ipairs(items) do
      if e == p or string.sub(e, 1, #q) == q then
        found = 1
        if i <= w then redis.call('LREM', KEYS[i], 1, e) end
        break
      end
    end
  end
  out[i] = found
end
local replies = redis.pcall('LRANGE', KEYS[#KEYS], 0, -1)
if type(replies) ~= 'table' or replies.err then replies = {} end
out[#KEYS] = replies
return out
"""


def check_devices(value: Any, arg: str = "ml_devices") -> tuple[str, ...]:
    """The inference devices asked for (``"CPU"``, ``"GPU:n"``; ``"GPU"`` is
    ``"GPU:0"``), each once, in order; ConfigError naming ``arg`` otherwise."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{arg} must be a list of devices such as ['CPU', 'GPU:0'] ([] for no inference "
                          f"workers); got {value!r:.80}")
    out = []
    for item in items:
        kind, index = parse_device(item, f"{arg} item")
        out.append("CPU" if kind == "CPU" else f"GPU:{index or 0}")
    return tuple(dict.fromkeys(out))


def tag_for(owned: Iterable[int] | None) -> str:
    """The worker tag of a shard owning the cluster slots ``owned`` (None: a
    single server, whose tag is ``w``)."""
    if owned is None:
        return "w"
    slots = set(owned)
    if not slots:
        raise ValueError("the shard owns no slots")
    i = 0
    while key_slot(f"w{i}".encode()) not in slots:
        i += 1
    return f"w{i}"


def queue_key(tag: str, device: str) -> str:
    return f"simctl.ml{{{tag}}}.q.{device}"


def taken_key(tag: str, device: str) -> str:
    return f"simctl.ml{{{tag}}}.f.{device}"


def worker_name(device: str) -> str:
    """The connection name of this process as the worker of ``device``."""
    return f"simctl-ml-{device}-{os.getpid()}"


def _names(clients: Any) -> list[str]:
    """The connection names in ``CLIENT LIST``'s reply (redis-py's parsed list, or its text)."""
    if isinstance(clients, (bytes, str)):
        text = clients.decode() if isinstance(clients, bytes) else clients
        return [f.split("=", 1)[1] for line in text.splitlines() for f in line.split() if f.startswith("name=")]
    return [str(c.get("name", "")) for c in clients]


def worker_pids(clients: Any, device: str) -> list[int]:
    """The pids of the workers of ``device`` among the connections ``clients`` (``CLIENT LIST``)."""
    stem = f"simctl-ml-{device}-"
    return sorted({int(n[len(stem):]) for n in _names(clients) if n.startswith(stem) and n[len(stem):].isdigit()})


def worker_devices(clients: Any) -> set[str]:
    """The devices whose workers are among the connections ``clients`` (``CLIENT LIST``)."""
    return {n[len("simctl-ml-"):].rpartition("-")[0] for n in _names(clients)
            if n.startswith("simctl-ml-") and n.rpartition("-")[2].isdigit()}


def has_worker(clients: Any, device: str) -> bool:
    """Whether a worker of ``device`` is connected (see :func:`worker_pids`)."""
    return bool(worker_pids(clients, device))


def reply_key(tag: str, client_id: str) -> str:
    return f"simctl.ml{{{tag}}}.r.{client_id}"


def change(key: str) -> str:
    """The message that announces a change of the model or script ``key``."""
    return f"{key} {new_id()}"


def parse_change(data: bytes) -> tuple[str, str]:
    """(key, nonce) of a change message (split at the last space: a key may hold spaces)."""
    key, _, nonce = data.decode("utf-8", "replace").rpartition(" ")
    return key, nonce


def new_id() -> str:
    """A random id (a client's): 32 hex digits."""
    return os.urandom(16).hex()


def _reseed() -> None:
    global _ID_STEM
    _ID_STEM = new_id()[:16]


#: request ids: a random stem per process (drawn again in a forked child) and a counter
_ID_STEM = ""
_reseed()
_ids = itertools.count()
os.register_at_fork(after_in_child=_reseed)


def request_id() -> str:
    """A request's id, unique like :func:`new_id`'s (32 hex digits), without a system call."""
    return f"{_ID_STEM}{next(_ids):016x}"


def request(reply: str, kind: str, key: str, inputs: list[str], outputs: list[str], fn: str = "",
            timeout: float | None = None, rid: str | None = None) -> tuple[str, bytes]:
    """(request id, encoded request): version 3, or version 2 when a name
    holds a NUL or a newline; ``timeout``: the caller's wait (None: no limit);
    ``rid``: the id (default: a new one)."""
    rid = rid or request_id()
    tail = request_tail(reply, kind, key, inputs, outputs, fn, timeout)
    if tail is not None:
        return rid, b"3\x00" + rid.encode() + tail
    body: dict[str, Any] = {"v": 2, "id": rid, "reply": reply, "kind": kind, "key": key, "fn": fn,
                            "in": inputs, "out": outputs}
    if timeout is not None:
        body["timeout"] = timeout
    return rid, json.dumps(body, separators=(",", ":")).encode()


def request_tail(reply: str, kind: str, key: str, inputs: list[str], outputs: list[str], fn: str = "",
                 timeout: float | None = None) -> bytes | None:
    """What follows ``3<NUL><id>`` in a version-3 request (the same for every
    request of a caller's repeated run: made once, see :func:`request`); None
    when a name holds a NUL or a newline (the request is then version 2's)."""
    names = "\x00".join((key, fn, reply, *inputs, *outputs))
    if names.count("\x00") != 2 + len(inputs) + len(outputs) or "\n" in names:
        return None
    return f"\x00{'' if timeout is None else repr(float(timeout))}\x00{kind}\x00{len(inputs)}\x00{names}".encode()


class Header(NamedTuple):
    """A request's header, decoded (any version)."""

    version: int
    id: str
    reply: str
    kind: str
    key: str
    fn: str
    inputs: list[str]
    outputs: list[str]
    #: the caller's wait, in seconds (None: no limit)
    timeout: float | None


def parse_request(raw: bytes) -> Header:
    """The header of the request ``raw`` (any version); ValueError if it is not one."""
    if raw[:2] == V3:
        f = raw.partition(b"\n")[0].decode().split("\x00")
        try:
            n = int(f[4])
            t = float(f[2]) if f[2] else None
        except (ValueError, IndexError):
            raise ValueError(f"not a simctl inference request: {raw[:200]!r}") from None
        if len(f) < 8 + n or n < 0:
            raise ValueError(f"not a simctl inference request: {raw[:200]!r}")
        return Header(3, f[1], f[7], f[3], f[5], f[6], f[8:8 + n], f[8 + n:], t if t is None or t > 0 else None)
    msg = parse(raw)
    h = Header(1 if msg.get("v") == 1 else 2, msg["id"], msg["reply"], msg["kind"], msg["key"], msg.get("fn", ""),
               list(msg["in"]), list(msg["out"]), timeout_of(msg))
    if not all(isinstance(k, str) for k in (h.reply, h.kind, h.key, h.fn, *h.inputs, *h.outputs)):
        raise ValueError(f"not a simctl inference request (keys must be strings): {raw[:200]!r}")
    return h


def timeout_of(msg: dict[str, Any]) -> float | None:
    """A decoded request's ``timeout`` (None when absent or not a number > 0)."""
    t = msg.get("timeout")
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 else None


def parse(raw: bytes | str) -> dict[str, Any]:
    """A decoded request (its header) or reply, of any version, as version 2
    spells it (JSON); ValueError if it is not one."""
    data = raw.encode() if isinstance(raw, str) else bytes(raw)
    if data[:2] == V3:
        h = parse_request(data)
        msg: dict[str, Any] = {"v": 3, "id": h.id, "reply": h.reply, "kind": h.kind, "key": h.key, "fn": h.fn,
                               "in": h.inputs, "out": h.outputs}
        if h.timeout is not None:
            msg["timeout"] = h.timeout
        return msg
    if data[:3] == V3_REPLY:
        f = data[3:].split(b"\x00", 2)
        if len(f) == 2:
            return {"id": f[0].decode(), "device": f[1].decode()}
        if len(f) == 3 and not f[1]:
            return {"id": f[0].decode(), "error": f[2].decode("utf-8", "replace")}
        raise ValueError(f"not a simctl inference reply: {raw[:200]!r}")
    msg = json.loads(data.partition(b"\n")[0])
    if not isinstance(msg, dict) or not isinstance(msg.get("id"), str):
        raise ValueError(f"not a simctl inference message: {raw[:200]!r}")
    return msg


def carried(raw: bytes, count: int) -> list[bytes | None] | None:
    """The ``count`` sections carried after a request's header (see "Version 2"
    above; None for each ``-``), or None when it carries none (a header alone);
    ValueError when they are damaged."""
    head, nl, rest = raw.partition(b"\n")
    if not nl:
        return None
    out: list[bytes | None] = []
    i = 0
    try:
        for _ in range(count):
            if rest[i:i + 1] == b"-":
                out.append(None)
                i += 1
                continue
            colon = rest.index(b":", i, i + 21)
            end = colon + 1 + int(rest[i:colon])
            if end > len(rest):
                raise ValueError
            out.append(rest[colon + 1:end])
            i = end
    except ValueError:
        raise ValueError(f"damaged sections after the request {head[:200]!r}") from None
    if i != len(rest):
        raise ValueError(f"{len(rest) - i} bytes more than the sections of the request {head[:200]!r}")
    return out


def reply(rid: str, error: str | None = None, device: str = "", version: int = VERSION) -> bytes:
    """An encoded reply: success (with the device that ran it) or ``error``,
    in the version of the request it answers (version 3's, else JSON)."""
    if version == 3:
        return (f"R3\x00{rid}\x00{device}" if error is None else f"R3\x00{rid}\x00\x00{error}").encode()
    body: dict[str, Any] = {"id": rid, "error": error} if error is not None else {"id": rid, "device": device}
    return json.dumps(body, separators=(",", ":")).encode()


def own_slots(nodes: Any) -> set[int]:
    """The slots the node answering ``CLUSTER NODES`` (the reply, as text) holds itself."""
    out: set[int] = set()
    lines = nodes.splitlines() if isinstance(nodes, str) else []
    for line in lines:
        parts = line.split()
        if len(parts) > 8 and "myself" in parts[2].split(","):
            for part in parts[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated
                lo, _, hi = part.partition("-")
                out.update(range(int(lo), int(hi or lo) + 1))
    return out
