"""Hung inference workers: what a shard's supervisor watches in its workers'
taken lists (see "Deadlines" in :mod:`simctl.store.protocol`).

A request carries its caller's ``timeout``. :class:`HungWatch` looks at the
taken list of each device every :data:`protocol.HUNG_CHECK` seconds, from a
thread of its own (so a server that stopped answering delays no restart),
and notes when it first saw each request there. A worker that still holds a
request :data:`protocol.HUNG_GRACE` seconds past that request's timeout is
hung: :meth:`HungWatch.hung` says so once, and the supervisor kills it and
starts another, which answers the requests left in the list with an error.
The requests held at that moment are never counted against the next worker.

A worker that holds no request asks for one every :data:`protocol.IDLE`
seconds (a blocking BLMOVE): one whose connections have all been silent for
:data:`protocol.HUNG_IDLE` seconds (``idle`` in ``CLIENT LIST``) while it holds
nothing and a request waits in its queue is hung too (stopped while idle,
say), and is replaced the same way. A silent worker nobody waits for is left
alone (it may be importing its runtime or loading a large model).
The watch finds the worker's connections by their names once, then asks only
about them (``CLIENT LIST ID``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import Any

import redis

from . import protocol as pr, wire

#: seconds the watch waits for the server to answer one look (a stopped server costs the watch, not the supervisor)
ANSWER = 1.0


class HungWatch:
    """Watches the taken lists of the inference workers of ``devices`` on the
    server at ``address`` (a Redis Cluster node when ``cluster``), logged in
    as ``username`` (the store's admin: the ``default`` user is disabled)
    over TLS when ``tls_ca`` is given."""

    def __init__(self, address: str, password: str | None, devices: Iterable[str], cluster: bool, *,
                 username: str | None = None, tls_ca: str | None = None) -> None:
        self.address, self.password, self.cluster = address, password, cluster
        self.username, self.tls_ca = username, tls_ca
        self.devices = list(dict.fromkeys(devices))
        #: device -> request id -> when this watch first saw it in the taken list (monotonic)
        self._seen: dict[str, dict[str, float]] = {d: {} for d in self.devices}
        #: device -> ids held by a worker already reported hung (never counted again)
        self._spent: dict[str, set[str]] = {d: set() for d in self.devices}
        #: device -> why its worker is hung, until :meth:`hung` hands it over
        self._hung: dict[str, str] = {}
        #: device -> the ids of its worker's connections; the pids of workers already reported idle and hung
        self._conns: dict[str, list[Any]] = {}
        self._spent_pids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._redis: redis.Redis | None = None
        self._thread = threading.Thread(target=self._run, name="simctl-hung-watch", daemon=True)

    def start(self) -> HungWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * ANSWER + pr.HUNG_CHECK)
        self._close()

    def hung(self) -> dict[str, str]:
        """device -> why its worker is hung, for each worker found hung since the last call."""
        with self._lock:
            out, self._hung = self._hung, {}
        return out

    # -- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(pr.HUNG_CHECK):
            try:
                self.look()
            except (redis.ResponseError, ValueError):
                pass  # a cluster not formed yet (CLUSTERDOWN), say: look again later
            except (redis.RedisError, OSError):
                self._close()  # not answering, or restarting: look again later, on a new connection

    def _close(self) -> None:
        r, self._redis = self._redis, None
        if r is not None:
            r.close()

    def _connection(self) -> redis.Redis:
        if self._redis is None:
            self._redis = wire.connect(self.address, self.password, username=self.username, tls_ca=self.tls_ca,
                                       protocol=2, socket_timeout=ANSWER, socket_connect_timeout=ANSWER,
                                       client_name=f"simctl-supervisor-{os.getpid()}")
        return self._redis

    def _tag(self, r: redis.Redis) -> str | None:
        """The workers' tag on this server (None: a cluster node that owns no slots yet)."""
        if not self.cluster:
            return pr.tag_for(None)
        nodes = r.execute_command("CLUSTER", "NODES")
        owned = pr.own_slots(nodes.decode() if isinstance(nodes, bytes) else str(nodes))
        return pr.tag_for(owned) if owned else None

    def look(self, now: float | None = None) -> None:
        """One look at the taken lists (the thread calls it; a test may too)."""
        r = self._connection()
        tag = self._tag(r)
        if tag is None:
            return
        pipe = r.pipeline(transaction=False)
        for device in self.devices:
            pipe.lrange(pr.taken_key(tag, device), 0, -1)
        held = pipe.execute()
        now = time.monotonic() if now is None else now
        for device, raws in zip(self.devices, held):
            reason = self._judge(device, raws, now) or ("" if raws else self._silent(r, tag, device))
            if reason:
                with self._lock:
                    self._hung[device] = reason

    def _judge(self, device: str, raws: list[Any], now: float) -> str:
        """Why the worker holding ``raws`` is hung ("" if it is not)."""
        seen, spent = self._seen[device], self._spent[device]
        ids: dict[str, float | None] = {}
        for raw in raws:
            try:
                msg = pr.parse(raw)
            except ValueError:
                continue
            ids[msg["id"]] = pr.timeout_of(msg)
        for rid in list(seen):
            if rid not in ids:
                del seen[rid]
        spent &= set(ids)
        reason = ""
        for rid, timeout in ids.items():
            first = seen.setdefault(rid, now)
            if rid in spent or timeout is None:
                continue
            held = now - first
            if held > timeout + pr.HUNG_GRACE and not reason:
                reason = (f"it held a request {held:.1f} s, past its caller's timeout of {timeout:g} s and "
                          f"{pr.HUNG_GRACE:g} s more: hung")
        if reason:
            spent.update(ids)
        return reason

    def _silent(self, r: redis.Redis, tag: str, device: str) -> str:
        """Why the worker of ``device``, holding no request while one waits in
        its queue, is hung ("" if it is not). A silent worker that nobody waits
        for is left alone: it may be loading a large model or importing its
        runtime, and a stopped one is replaced as soon as a request comes."""
        if not r.llen(pr.queue_key(tag, device)):
            return ""
        ids = self._conns.get(device)
        conns = r.client_list(client_id=ids) if ids else []
        if not conns:  # not known yet, or a new worker: find its connections by their names
            conns = [c for c in r.client_list() if pr.worker_pids([c], device)]
            self._conns[device] = [int(c["id"]) for c in conns]
        pids = {pid for c in conns for pid in pr.worker_pids([c], device)}
        if len(pids) != 1 or pids <= self._spent_pids:
            return ""
        idle = min(int(c.get("idle", 0)) for c in conns)
        if idle < pr.HUNG_IDLE:
            return ""
        self._spent_pids |= pids
        return (f"it held no request and sent no command for {idle} s while a request waited in its queue (an "
                f"idle worker asks for requests every {pr.IDLE:g} s): hung")
