"""The client's inference commands: ``run_model``, ``run_script`` and their
multi-GPU forms. A run is a request to the inference worker beside the shard
that holds its first input (the protocol is :mod:`.protocol`): pushed and
waited for in one round trip, answered with the outputs stored or the
worker's error (a model never stored, a wrong shape, a backend the worker
does not have).

Every run waits at most its ``timeout`` (default: the client's): then the
request is withdrawn if no worker took it, and the caller gets a
:class:`StoreTimeoutError` saying whether the request was still queued or
taken by a worker that did not answer (hung, or a run longer than the
timeout; the shard's supervisor restarts such a worker). A request is sent
once and runs at most once (see :mod:`.protocol`)."""

from __future__ import annotations

import time
from typing import Any

import redis

from ..core.errors import ConfigError
from . import keyspace, protocol as pr, wire
from .base import ClientBase, gpus
from .direct import Direct, bulk, pack
from .format import KindError, StoreConnectionError, StoreError, StoreTimeoutError
from .servers import lacks_module
from .spec import names

#: ``timeout`` not given: the client's
_CLIENTS: Any = object()
#: seconds a BLPOP's slice ends before a run's deadline, for its answer to come back by then (a server
#: ends a blocking command up to 1/hz s late: 100 ms at the default hz 10); closer to the deadline than a
#: slice of _MIN_SLICE would allow, the reply list is polled every _POLL seconds (LPOP)
_MARGIN = 0.2
_MIN_SLICE = 0.01
_POLL = 0.02
#: seconds the withdrawal of a request at its deadline may wait for each answer of the store
_GIVE_UP = 2.0


class _Deadline:
    """A run's limit: when it ends, and how long each exchange of its wait may take."""

    __slots__ = ("limit", "answer", "end")

    def __init__(self, limit: float | None, answer: float | None, start: float) -> None:
        #: the run's timeout (None: no limit), the client's wait for one answer, and when the run ends
        self.limit, self.answer = limit, answer
        self.end = None if limit is None else start + limit

    def left(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def passed(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def slice(self) -> float | None:
        """Seconds the next BLPOP blocks: at most a slice, well within one
        answer's wait, ending early enough before the deadline for its answer
        to come back by then; None when too little time is left for one."""
        s = pr.WAIT_SLICE
        if self.answer is not None:
            s = min(s, self.answer / 2)
        left = self.left()
        if left is not None:
            s = min(s, left - _MARGIN)
            if s < _MIN_SLICE:
                return None
        return s

    def exchange(self) -> float | None:
        """Seconds the next exchange may wait for its answer: no later than the deadline."""
        left = self.left()
        if left is None:
            return self.answer
        left = max(left, _MARGIN / 4)
        return left if self.answer is None else min(left, self.answer)

    def give_up(self) -> float:
        """Seconds each exchange of the withdrawal at the deadline may wait."""
        return _GIVE_UP if self.answer is None else min(_GIVE_UP, self.answer)


class _AtStart(_Deadline):
    """A run's limit as it stands when the run starts, its whole limit left: the waits of its first exchange."""

    __slots__ = ()

    def left(self) -> float | None:
        return self.limit


def _offset(what: str, offset: Any) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"{what}: offset must be an int >= 0 (an MPI rank, say), got {offset!r:.80}")
    return offset


class InferenceCommands(ClientBase):
    """Running stored models and scripts beside the store."""

    #: this client's id (its reply key), and the device each model last ran on
    _id: str
    _devices: dict[tuple[str, str], str]
    #: (kind, key, fn, timeout, device, inputs, outputs, prefixes...) -> what its requests share (see _run)
    _plans: dict[tuple[Any, ...], _Plan]

    def run_model(self, name: str, inputs: str | list[str] | None = None,
                  outputs: str | list[str] | None = None, *, timeout: Any = _CLIENTS) -> None:
        """Run the model ``name`` on the tensors ``inputs`` and store its results
        as the tensors ``outputs``, beside the store: by the inference worker of
        the shard that holds the first input, on the model's device. Returns once
        the outputs are stored; a failure (no such model, a wrong shape, a
        backend the worker does not have...) is a StoreError with the worker's
        words. Inputs are read with the data source's prefix when one is set
        (``SSKEYIN``, :meth:`set_data_source`), else with this entity's own;
        outputs are written with its own.

        ``timeout``: the longest this call waits for the reply, in seconds
        (default: the client's ``timeout``, 30 s unless set; None: no limit).
        When it passes, a :class:`StoreTimeoutError` names the model and the
        timeout and says where the request was: not yet taken by a worker
        (busy with earlier requests, or hung: the request is withdrawn and
        will not run), or taken and unanswered (the worker is hung, or the
        run takes longer: the shard's supervisor kills and restarts a worker
        that holds a request 2 s past its timeout, and its other requests are
        answered with an error). The request is sent once: it runs at most
        once."""
        self._run("model", name, "", inputs, outputs, timeout)

    def run_script(self, name: str, fn_name: str, inputs: str | list[str], outputs: str | list[str], *,
                   timeout: Any = _CLIENTS) -> None:
        """Run the function ``fn_name`` of the script (or function) stored as
        ``name``, like :meth:`run_model` (``timeout`` too)."""
        if not isinstance(fn_name, str) or not fn_name.isidentifier():
            self._key("model", name, True, "run_script", look=True)  # (a bad name is said first)
            raise ConfigError(f"{_what('script', name, fn_name)}: fn_name must be the name of a function in the "
                              f"script, got {fn_name!r:.80}")
        self._run("script", name, fn_name, inputs, outputs, timeout)

    def run_model_multigpu(self, name: str, offset: int, first_gpu: int, num_gpus: int,
                           inputs: str | list[str] | None = None, outputs: str | list[str] | None = None, *,
                           timeout: Any = _CLIENTS) -> None:
        """Run the copy of ``name`` on GPU ``first_gpu + offset % num_gpus``
        (``offset``: an MPI rank, say, to spread callers over the GPUs);
        ``timeout`` as :meth:`run_model`'s."""
        numbers = gpus("run_model_multigpu", first_gpu, num_gpus)
        self.run_model(f"{name}.GPU:{numbers[_offset('run_model_multigpu', offset) % num_gpus]}", inputs, outputs,
                       timeout=timeout)

    def run_script_multigpu(self, name: str, fn_name: str, inputs: str | list[str], outputs: str | list[str],
                            offset: int, first_gpu: int, num_gpus: int, *, timeout: Any = _CLIENTS) -> None:
        """Like :meth:`run_model_multigpu` for a script's function."""
        numbers = gpus("run_script_multigpu", first_gpu, num_gpus)
        self.run_script(f"{name}.GPU:{numbers[_offset('run_script_multigpu', offset) % num_gpus]}", fn_name,
                        inputs, outputs, timeout=timeout)

    # -- one request ---------------------------------------------------------------------------

    def _tag(self, key: str) -> str:
        """The worker tag of the shard holding ``key``."""
        return self._server.tag_of(key)

    def _tensor_in(self, name: str, what: str) -> str:
        return self._key("tensor", name, bool(self._get_prefix), what, look=True)

    def _tensor_keys(self, what: str, inputs: Any, outputs: Any) -> tuple[list[str], list[str]]:
        """The keys of the inputs and outputs named, checked (once per names and prefixes: a run's
        :class:`_Plan` keeps them)."""
        ins = [self._tensor_in(n, what) for n in names(f"{what}: inputs", inputs) or []]
        outs = [self._key("tensor", n, False, what) for n in names(f"{what}: outputs", outputs) or []]
        if not ins or not outs:
            raise ConfigError(f"{what}: give the {'inputs' if not ins else 'outputs'} (a tensor name or a list "
                              "of them)")
        return ins, outs

    def _run(self, kind: str, name: Any, fn: str, inputs: Any, outputs: Any, timeout: Any) -> None:
        """Run ``name`` (``kind``: 'model', or 'script' and its function ``fn``): push the request and
        wait for its reply in one round trip, as its plan says (:class:`_Plan`, looked up by the names as
        given); the rest of the wait, when the reply is not the success expected, is :meth:`_wait_reply`'s."""
        limit = (self._waits.timeout if timeout is _CLIENTS
                 else wire.seconds(timeout, f"{_what(kind, name, fn)}: timeout"))
        memo = (name, fn, limit, inputs if type(inputs) is str else _names(inputs),
                outputs if type(outputs) is str else _names(outputs))
        plan = self._plans.get(memo) if type(name) is str else None
        if plan is None or (plan.cluster and self._tag(plan.first) != plan.tag):  # (its first input's slot moved)
            plan = self._plan(kind, name, fn, inputs, outputs, limit, memo)
        rid = pr.request_id()
        body, ran = plan.request(rid)
        start = time.monotonic()
        got = self._send_and_wait(plan, body, rid, start)
        if got is not None and got[1] == ran:
            return  # (on the device it ran on last time)
        answer = self._wait_reply(plan, rid, body, _Deadline(limit, plan.answer, start), got)
        error = answer.get("error")
        if error is not None:  # (an output of another kind: the worker's refusal, a KindError as a put's)
            raise (KindError if keyspace.REFUSAL in error else StoreError)(f"{plan.what}: {error}")
        device = str(answer.get("device") or plan.device)
        if device != plan.device:
            self._devices[(kind, plan.key)] = device
            self._plans.clear()  # (a plan holds the device its model ran on)

    def _plan(self, kind: str, name: Any, fn: str, inputs: Any, outputs: Any, limit: float | None,
              memo: tuple[Any, ...]) -> _Plan:
        """The plan of a run (its names checked), kept under ``memo`` when the names given can be a key."""
        what = _what(kind, name, fn)
        key = self._key("model", name, True, f"run_{kind}", look=True)
        ins, outs = self._tensor_keys(what, inputs, outputs)
        plan = _Plan(what, self._id, self._tag(ins[0]), self._devices.get((kind, key), "CPU"), kind, key, fn, ins,
                     outs, limit, self._waits.timeout, self._server.is_cluster, self._server.module)
        if type(name) is str and memo[3] is not None and memo[4] is not None:
            if len(self._plans) >= _PLANS_MAX:
                self._plans.clear()
            self._plans[memo] = plan
        return plan

    def _prefixes_changed(self) -> None:
        super()._prefixes_changed()
        self._plans.clear()  # (kept by the names as given: their keys change with the prefixes)

    def _wait_reply(self, plan: _Plan, rid: str, body: bytes, deadline: _Deadline, got: Any) -> dict[str, Any]:
        """The reply to request ``rid``, after ``got`` (the BLPOP's reply of the push, None when it had
        none); StoreError when no worker of ``device``
        lives for :data:`protocol.NO_WORKER_GRACE` seconds (the request withdrawn),
        or when the request is gone from the store with no reply, twice in a row;
        StoreTimeoutError when the deadline passes first (:meth:`_give_up`)."""
        gone_since: float | None = None
        lost = 0
        what, tag, device, queue, reply = plan.what, plan.tag, plan.device, plan.queue, plan.reply
        while True:
            if got is None:
                blpop = deadline.slice()
                if blpop is not None:
                    got = self._exchange(what, queue, deadline, ("BLPOP", reply, _blpop_seconds(blpop)))
                elif deadline.passed():  # the withdrawal looks at the replies too
                    return self._give_up(what, tag, device, queue, reply, rid, body, deadline)
                else:  # the deadline is at hand: poll
                    time.sleep(min(_POLL, max(deadline.left() or 0, 0)))
                    raw = self._exchange(what, queue, deadline, ("LPOP", reply))
                    if raw is None:
                        continue
                    got = (reply, raw)
            if got is not None:
                answer = _answer(got[1], rid)
                got = None
                if answer is not None:
                    return answer
                continue  # the reply to an earlier request this client gave up on
            if deadline.slice() is None:
                continue  # to the withdrawal, above
            clients = self._exchange(what, queue, deadline, ("CLIENT", "LIST"))
            if pr.has_worker(clients, device):
                gone_since = None
                lost = lost + 1 if self._lost(what, queue, tag, pr.worker_devices(clients), body, reply,
                                              deadline) else 0
                if lost >= 2:
                    raise StoreError(f"{what}: the request is no longer in the store and no reply came (was the "
                                     "store flushed, or its keys deleted, while it waited?); run it again")
                continue
            now = time.monotonic()
            gone_since = gone_since or now
            if now - gone_since >= pr.NO_WORKER_GRACE and self._exchange(
                    what, queue, deadline, ("EVAL", pr.LOCATE, 2, queue, reply, body, 1))[0]:
                raise StoreError(f"{what}: no inference worker for {device} answered on the store shard holding "
                                 f"{queue!r} for {pr.NO_WORKER_GRACE:g} s (is the store running, with ml_devices "
                                 f"including {device!r}?); the request was withdrawn")

    def _give_up(self, what: str, tag: str, device: str, queue: str, reply: str, rid: str, body: bytes,
                 deadline: _Deadline) -> dict[str, Any]:
        """At the deadline: withdraw the request from every queue of its shard,
        in one transaction that also says where it was, and raise the
        StoreTimeoutError that says so (or return the reply, come meanwhile)."""
        limit = f"the timeout ({deadline.limit:g} s)"
        node = self._direct(what, queue)
        try:
            clients = _call(node, [("CLIENT", "LIST")], deadline.give_up())
            devices = sorted(pr.worker_devices(clients) | {device})
            lists = [pr.queue_key(tag, d) for d in devices] + [pr.taken_key(tag, d) for d in devices]
            found = _call(node, [("EVAL", pr.LOCATE, len(lists) + 1, *lists, reply, body, len(devices))],
                          deadline.give_up())
            if not isinstance(found, list) or len(found) != 2 * len(devices) + 1:
                raise redis.ResponseError(f"the withdrawal answered {found!r:.200}")
            for raw in found[-1]:
                answer = _answer(raw, rid)
                if answer is not None:  # it came in time, just
                    _call(node, [("LREM", reply, 1, raw)], deadline.give_up())
                    return answer
        except redis.TimeoutError:
            raise StoreTimeoutError(f"{what}: no reply within {limit}, and the store shard holding {queue!r} did "
                                    f"not answer the withdrawal within {deadline.give_up():g} s (stopped, hung or "
                                    "overloaded?): the request may still run") from None
        except redis.RedisError as exc:
            raise self._error(f"{what}: withdrawing the request after {limit}", exc) from None
        withdrawn = [d for d, n in zip(devices, found) if n]
        holders = [d for d, there in zip(devices, found[len(devices):-1]) if there]
        if withdrawn:
            if not pr.has_worker(clients, withdrawn[0]):
                why = f"no inference worker for {withdrawn[0]} is connected to the store shard holding {queue!r}"
            else:
                why = (f"the inference worker for {withdrawn[0]} did not take it: it is busy with earlier requests "
                       "(a long run holds its device until it ends, or until its own timeout), or hung")
            raise StoreTimeoutError(f"{what}: no reply within {limit}: {why}. The request was withdrawn and will "
                                    "not run; pass a longer timeout= to wait longer")
        if holders:
            raise StoreTimeoutError(f"{what}: no reply within {limit}: the inference worker for {holders[0]} took "
                                    "the request and has not answered: it is hung, or the run takes longer than "
                                    f"the timeout (pass a longer timeout=). A worker that holds a request "
                                    f"{pr.HUNG_GRACE:g} s past its timeout is killed and restarted by the shard's "
                                    "supervisor")
        raise StoreTimeoutError(f"{what}: no reply within {limit}, and the request is no longer in the store (was "
                                "the store flushed, or its keys deleted, while it waited?)")

    def _lost(self, what: str, queue: str, tag: str, devices: set[str], body: bytes, reply: str,
              deadline: _Deadline) -> bool:
        """Whether the request ``body`` is in no queue and no taken list of the
        shard's workers, with no reply waiting (one transaction on the shard)."""
        try:
            found = self._places(self._direct(what, queue), tag, devices, body, reply, deadline.exchange())
        except redis.TimeoutError:
            raise self._no_answer(what, queue, deadline) from None
        except redis.RedisError:
            return False  # not known: go on waiting
        return not any(found[:-1]) and not found[-1]

    @staticmethod
    def _places(node: Direct, tag: str, devices: set[str], body: bytes, reply: str,
                timeout: float | None) -> list[Any]:
        """Where the request ``body`` is on its shard, atomically (:data:`protocol.LOCATE`):
        whether it is (1) or not (0) in the queue, then the taken list, of each
        of ``devices``, and last the replies waiting in ``reply``."""
        lists = [k for d in sorted(devices) for k in (pr.queue_key(tag, d), pr.taken_key(tag, d))]
        found = _call(node, [("EVAL", pr.LOCATE, len(lists) + 1, *lists, reply, body, 0)], timeout)
        if not isinstance(found, list) or len(found) != len(lists) + 1:
            raise redis.ResponseError(f"the look-up answered {found!r:.200}")
        return found

    def _direct(self, what: str, key: str) -> Direct:
        """The direct connection to the server holding ``key`` (:mod:`.direct`)."""
        try:
            return self._server.direct_of(key)
        except redis.exceptions.RedisClusterException as exc:
            raise StoreConnectionError(f"{what}: no shard of the cluster holds {key!r}: {exc}") from None

    def _exchange(self, what: str, key: str, deadline: _Deadline, cmd: tuple[Any, ...]) -> Any:
        """``cmd`` on the server holding ``key``, waiting for its answer no
        later than the deadline (plus a round trip's slack)."""
        try:
            return _call(self._direct(what, key), [cmd], deadline.exchange())
        except redis.TimeoutError:
            raise self._no_answer(what, key, deadline) from None
        except redis.RedisError as exc:
            raise self._error(f"{what} {key!r}", exc) from None

    def _no_answer(self, what: str, key: str, deadline: _Deadline) -> StoreTimeoutError:
        waited = deadline.exchange() if deadline.limit is None else deadline.limit
        return StoreTimeoutError(f"{what}: the store shard holding {key!r} did not answer within "
                                 f"{waited if waited is not None else 0:g} s (stopped, hung or overloaded?); the "
                                 "request, if it arrived, may still run once it answers")

    def _send_and_wait(self, plan: _Plan, body: bytes, rid: str, start: float, script: bool = False) -> Any:
        """Push the request (its SUBMIT or RPUSH: ``plan``; ``script``: the SUBMIT sent as EVAL) and BLPOP
        its reply (one slice) in one round trip (over the direct connection); the BLPOP's reply, None
        when the reply is still to come. ``start``: when the run began (its deadline counts from then).
        The request is sent once: when the connection breaks after it went
        out, it is looked for on the shard; found, the wait goes on; not
        found, StoreConnectionError (it may have run; it is not sent again)."""
        what, queue = plan.what, plan.queue
        r = self._direct(what, queue)
        if script:
            deadline = _Deadline(plan.limit, plan.answer, start)
            packed, wait = plan.packed(body, deadline.slice() or 0.001, True), deadline.exchange()
        else:
            packed, wait = plan.packed(body), plan.wait
        try:  # a SUBMIT the server does not hold (NOSCRIPT): its BLPOP is not waited for
            out = r.call_packed(packed, 2, timeout=wait, retry=False, until_error=True)
            if isinstance(out[-1], redis.RedisError):
                raise out[-1]
            return out[-1]
        except redis.TimeoutError:
            raise self._no_answer(what, queue, _Deadline(plan.limit, plan.answer, start)) from None
        except redis.ConnectionError as exc:
            broke = exc
        except redis.RedisError as exc:
            if not script and isinstance(exc, redis.exceptions.NoScriptError):  # nothing pushed: the script
                return self._send_and_wait(plan, body, rid, start, script=True)
            if not script and lacks_module(exc):  # a server started without the module: the script from now on
                self._server.module = False
                self._plans.clear()
                return self._send_and_wait(plan, body, rid, start, script=True)
            raise self._error(f"{what} {queue!r}", exc) from None
        try:
            wait = _Deadline(plan.limit, plan.answer, start).give_up()
            clients = _call(r, [("CLIENT", "LIST")], wait)
            found = self._places(r, plan.tag, pr.worker_devices(clients) | {plan.device}, body, plan.reply, wait)
        except redis.RedisError:
            found = None
        if found is not None and (any(found[:-1])
                                  or any(_answer(raw, rid) is not None for raw in found[-1])):
            return None  # it arrived: wait for its reply
        raise StoreConnectionError(f"{what}: the connection to the store shard holding {queue!r} broke after the "
                                   f"request was sent ({broke}), and the shard holds no trace of it: it was lost on "
                                   "the way, or it ran and its reply was lost with the connection. It was not sent "
                                   "again (a request runs at most once): check its outputs, or run it again")


class _Plan:
    """What every request of one run repeated shares (model, inputs, outputs,
    timeout, device, shard), worked out and packed once: its queue and reply
    keys, the request after its id (:func:`protocol.request_tail`), the
    commands that push it and wait for its reply, in RESP but for the
    request itself (and the wait's length but for the first slice), the
    waits of its first exchange, and the reply of a success on its device."""

    __slots__ = ("what", "first", "tag", "device", "key", "queue", "reply", "cluster", "limit", "answer", "wait",
                 "tail", "_request", "_head", "_foot", "_first", "_done", "_script")

    def __init__(self, what: str, client_id: str, tag: str, device: str, kind: str, key: str, fn: str,
                 ins: list[str], outs: list[str], limit: float | None, answer: float | None, cluster: bool,
                 module: bool = False) -> None:
        #: how the run names itself in errors; its first input's key (its shard runs it), that shard's worker
        #: tag, and the model's key
        self.what, self.first, self.tag, self.device, self.key = what, ins[0], tag, device, key
        self.queue, self.reply, self.cluster = pr.queue_key(tag, device), pr.reply_key(tag, client_id), cluster
        #: the run's timeout and the client's wait for one answer (see _Deadline)
        self.limit, self.answer = limit, answer
        self._request = (self.reply, kind, key, ins, outs, fn, limit)
        self.tail = pr.request_tail(*self._request)
        # on a single server, the script carries the inputs, the model's header and the outputs' kinds in the
        # request (protocol version 2 on); a cluster's keys live in other slots than the queue: a header alone
        keys = (self.queue, key, *ins, *outs)
        self._script: tuple[Any, ...] | None = None
        if cluster:
            self._head, self._foot = b"*3\r\n" + bulk("RPUSH") + bulk(self.queue), b""
        else:  # the server module's SIMCTL.SUBMIT where the store has it (module), else the script
            words: tuple[str | int, ...] = (("SIMCTL.SUBMIT",) if module else ("EVALSHA", pr.SUBMIT_SHA)) + (
                len(keys), *keys)
            self._head = b"*%d\r\n" % (len(words) + 3) + b"".join(map(bulk, words))
            self._foot = bulk(pr.CARRY) + bulk(len(ins))
            self._script = ("EVAL", pr.SUBMIT, len(keys), *keys)
        # a run's first exchange starts with its whole limit left: its waits are the same every time
        at = _AtStart(limit, answer, 0.0)
        #: seconds the first exchange may wait for each answer
        self.wait = at.exchange()
        self._first = self._foot + self._blpop(at.slice() or 0.001)
        self._done = b"\x00" + device.encode()

    def request(self, rid: str) -> tuple[bytes, bytes | None]:
        """The request ``rid``, encoded, and the reply that says it ran on the plan's device (version 3's;
        None for a version-2 request, answered in JSON, which the caller parses)."""
        b = rid.encode()
        if self.tail is not None:
            return b"3\x00" + b + self.tail, b"R3\x00" + b + self._done
        return pr.request(*self._request, rid=rid)[1], None

    def packed(self, body: bytes, blpop: float | None = None, script: bool = False) -> list[bytes]:
        """The push of ``body`` and the BLPOP of its reply, packed: for the first slice of a run (``blpop``
        None), else for ``blpop`` seconds (``script``: the SUBMIT sent as EVAL, when the server did not
        hold it)."""
        if blpop is None:
            return [b"%b$%d\r\n%b\r\n%b" % (self._head, len(body), body, self._first)]
        if script and self._script is not None:
            head = b"*%d\r\n" % (len(self._script) + 3) + b"".join(map(bulk, self._script))
        else:
            head = self._head
        return [b"".join((head, bulk(body), self._foot, self._blpop(blpop)))]

    def _blpop(self, seconds: float) -> bytes:
        packed: bytes = pack((("BLPOP", self.reply, _blpop_seconds(seconds)),))[0]
        return packed


#: the plans a client keeps, at most (cleared when full)
_PLANS_MAX = 4096


def _what(kind: str, name: Any, fn: str) -> str:
    """How a run names itself in its errors: ``run_model('name')`` or ``run_script('name', 'fn')``."""
    return f"run_script({name!r}, {fn!r})" if kind == "script" else f"run_model({name!r})"


def _names(value: Any) -> tuple[str, ...] | str | None:
    """``value`` (a name or a list of names) as a memo key; None when it cannot be one."""
    if type(value) is str:
        return value
    if type(value) in (list, tuple) and all(type(n) is str for n in value):
        return tuple(value)
    return None


def _call(direct: Direct, cmds: list[tuple[Any, ...]], timeout: float | None, retry: bool = True) -> Any:
    """The last reply to ``cmds``, sent in one write over ``direct``, each
    answer waited for at most ``timeout`` seconds (None: no limit); the first
    error reply raised (the commands after it not waited for)."""
    out = direct.call(cmds, timeout=timeout, retry=retry, until_error=True)
    if isinstance(out[-1], redis.RedisError):
        raise out[-1]
    return out[-1]


def _blpop_seconds(seconds: float) -> str:
    """BLPOP's timeout argument (Redis 6 takes a decimal number of seconds)."""
    return f"{seconds:.3f}"


def _answer(raw: Any, rid: str) -> dict[str, Any] | None:
    """The reply ``raw`` if it answers request ``rid``."""
    n = 4 + len(rid)
    if raw[:n] == b"R3\x00%s\x00" % rid.encode() and raw[n:n + 1] not in (b"", b"\x00") and b"\x00" not in raw[n:]:
        return {"id": rid, "device": raw[n:].decode()}  # success, in version 3 (the common case: no parse)
    try:
        answer = pr.parse(raw)
    except ValueError:
        return None
    return answer if answer["id"] == rid else None
