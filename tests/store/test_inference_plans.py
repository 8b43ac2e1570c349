"""What a client keeps between runs of the same model on the same names (its run plans, issue 20):
a plan is looked up by the names as given, so what it was worked out from must not go stale
under it: the prefixes, the device the model last ran on; and a reply that is not the expected
success (an earlier request's, given up on) is skipped, not taken for this run's.

The bare single server of the session, with this test's thread as the inference worker (it takes
requests from the queues and answers them as a worker does), and a real store for the prefixes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import redis
import torch
from _store_helpers import PASSWORD, Server, make_client

from simctl.ml.torch import serialize_model
from simctl.store import Client, protocol
from simctl.store.format import StoreError

TAG = protocol.tag_for(None)  # a single server's worker tag


class Neg(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


@pytest.fixture
def bare(server: Server) -> Iterator[Client]:
    server.raw.flushall()
    c = make_client(server.address)
    yield c
    c.close()


def answering(server: Server, devices: list[str], answer: Callable[[str, protocol.Header], bytes]) -> tuple[
        threading.Thread, list[tuple[str, protocol.Header]]]:
    """A thread that takes one request from the queues of ``devices`` and pushes ``answer(queue, header)``
    to its reply key; the (queue, header) it took is appended to the list returned."""
    taken: list[tuple[str, protocol.Header]] = []
    r = redis.Redis(port=server.port, password=PASSWORD, protocol=2)

    def work() -> None:
        try:
            got = r.blpop([protocol.queue_key(TAG, d) for d in devices], timeout=60)
            assert got is not None, "no request came"
            queue, header = got[0].decode(), protocol.parse_request(got[1])
            taken.append((queue, header))
            r.rpush(header.reply, answer(queue, header))
        finally:
            r.close()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread, taken


def test_a_run_answered_from_another_device_sends_the_next_one_straight_there(bare: Client, server: Server) -> None:
    """A worker passes a request for another device's model on, and the reply names that device: the
    client's next run of that model (same names, so the same plan) goes to that device's queue."""
    bare.put_tensor("x", np.ones(2, np.float32))
    for expected in ("CPU", "GPU:0", "GPU:0"):
        thread, taken = answering(server, ["CPU", "GPU:0"],
                                  lambda q, h: protocol.reply(h.id, device="GPU:0"))
        bare.run_model("m", "x", "y")
        thread.join()
        assert [(q, h.key, h.inputs, h.outputs) for q, h in taken] == [
            (protocol.queue_key(TAG, expected), "m", ["x"], ["y"])]


def test_a_reply_to_an_earlier_request_is_skipped(bare: Client, server: Server) -> None:
    """The reply list holds a reply this client gave up on (another id, a success too): the run
    waits on for its own reply, and a worker's error in its own is raised."""
    bare.put_tensor("x", np.ones(2, np.float32))
    reply = protocol.reply_key(TAG, bare._id)
    for error in (None, "the model failed"):
        server.raw.rpush(reply, protocol.reply(protocol.request_id(), device="CPU"))
        thread, taken = answering(server, ["CPU"], lambda q, h, e=error: protocol.reply(h.id, error=e, device="CPU"))
        if error is None:
            bare.run_model("m", "x", "y")
        else:
            with pytest.raises(StoreError, match=r"run_model\('m'\): the model failed"):
                bare.run_model("m", "x", "y")
        thread.join()
        assert len(taken) == 1
        assert server.raw.llen(reply) == 0  # the earlier reply read and dropped, this one's taken


@pytest.mark.parametrize("change", ["use_tensor_ensemble_prefix", "set_data_source"])
def test_a_run_after_the_prefixes_change_takes_the_new_keys(stores: Any, change: str) -> None:
    """The same run (same names) before and after the prefixes change reads and writes the keys
    the prefixes now give, as a first run would."""
    db = stores.orchestrator(1).db
    admin = db.client()
    admin.flush_db()
    admin.set_model("neg", serialize_model(Neg()), "TORCH")
    admin.put_tensor("src.x", np.full(2, 5, np.float32))
    c = make_client(admin.addresses, db.password, env={"SSKEYOUT": "me", "SSKEYIN": "src"},
                    username=db.username)
    try:
        c.set_data_source("me")
        c.put_tensor("x", np.ones(2, np.float32))
        c.run_model("neg", "x", "y")
        assert admin.get_tensor("me.y").tolist() == [-1, -1]
        if change == "use_tensor_ensemble_prefix":
            c.use_tensor_ensemble_prefix(False)
            c.put_tensor("x", np.full(2, 2, np.float32))
            c.run_model("neg", "x", "y")  # reads x, writes y
            assert admin.get_tensor("y").tolist() == [-2, -2]
        else:
            c.set_data_source("src")
            c.run_model("neg", "x", "y")  # reads src.x, writes me.y
            assert admin.get_tensor("me.y").tolist() == [-5, -5]
    finally:
        c.close()
        admin.close()
