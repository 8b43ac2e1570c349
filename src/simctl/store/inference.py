"""The client's inference commands: ``run_model``, ``run_script`` and their
multi-GPU forms. A run is a request to the inference worker beside the shard
that holds its first input (the protocol is :mod:`.protocol`): pushed and
waited for in one round trip, answered with the outputs stored or the
worker's error (a model never stored, a wrong shape, a backend the worker
does not have)."""

from __future__ import annotations

import time
from typing import Any

import redis

from ..core.errors import ConfigError
from . import protocol as pr, wire
from .base import ClientBase, gpus
from .format import StoreError
from .spec import names


def _offset(what: str, offset: Any) -> int:
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise ConfigError(f"{what}: offset must be an int >= 0 (an MPI rank, say), got {offset!r:.80}")
    return offset


class InferenceCommands(ClientBase):
    """Running stored models and scripts beside the store."""

    #: this client's id (its reply key), and the device each model last ran on
    _id: str
    _devices: dict[tuple[str, str], str]

    def run_model(self, name: str, inputs: str | list[str] | None = None,
                  outputs: str | list[str] | None = None) -> None:
        """Run the model ``name`` on the tensors ``inputs`` and store its results
        as the tensors ``outputs``, beside the store: by the inference worker of
        the shard that holds the first input, on the model's device. Returns once
        the outputs are stored; a failure (no such model, a wrong shape, a
        backend the worker does not have...) is a StoreError with the worker's
        words. Inputs are read with the data source's prefix when one is set
        (``SSKEYIN``, :meth:`set_data_source`), else with this entity's own;
        outputs are written with its own."""
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

    def run_model_multigpu(self, name: str, offset: int, first_gpu: int, num_gpus: int,
                           inputs: str | list[str] | None = None, outputs: str | list[str] | None = None) -> None:
        """Run the copy of ``name`` on GPU ``first_gpu + offset % num_gpus``
        (``offset``: an MPI rank, say, to spread callers over the GPUs)."""
        numbers = gpus("run_model_multigpu", first_gpu, num_gpus)
        self.run_model(f"{name}.GPU:{numbers[_offset('run_model_multigpu', offset) % num_gpus]}", inputs, outputs)

    def run_script_multigpu(self, name: str, fn_name: str, inputs: str | list[str], outputs: str | list[str],
                            offset: int, first_gpu: int, num_gpus: int) -> None:
        """Like :meth:`run_model_multigpu` for a script's function."""
        numbers = gpus("run_script_multigpu", first_gpu, num_gpus)
        self.run_script(f"{name}.GPU:{numbers[_offset('run_script_multigpu', offset) % num_gpus]}", fn_name,
                        inputs, outputs)

    # -- one request ---------------------------------------------------------------------------

    def _tag(self, key: str) -> str:
        """The worker tag of the shard holding ``key``."""
        return self._server.tag_of(key)

    def _tensor_in(self, name: str, what: str) -> str:
        return self._key("tensor", name, bool(self._get_prefix), what)

    def _run(self, kind: str, key: str, fn: str, inputs: Any, outputs: Any, what: str) -> None:
        ins = [self._tensor_in(n, what) for n in names(f"{what}: inputs", inputs) or []]
        outs = [self._key("tensor", n, False, what) for n in names(f"{what}: outputs", outputs) or []]
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
        node = self._server.node_of(queue)
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

    def _send_and_wait(self, what: str, queue: str, body: bytes, reply: str) -> Any:
        """RPUSH the request and BLPOP its reply (one slice) in one round trip
        (:func:`wire.send_and_wait`); None when the reply is still to come."""
        r = self._server.node_of(queue)
        if r is None:  # let redis-py find the node; two round trips
            self._key_cmd(what, queue, "RPUSH", queue, body)
            return None
        try:
            return wire.send_and_wait(r, [("RPUSH", queue, body), ("BLPOP", reply, pr.WAIT_SLICE)])
        except redis.RedisError as exc:
            raise self._error(f"{what} {queue!r}", exc) from None
