"""Which commands a store's clients and workers send, with simctl's server
module loaded and without it (:mod:`simctl.store.servermodule`, issue 20):
a put, a run and its outputs take the module's SIMCTL.PUT, SIMCTL.SUBMIT and
SIMCTL.FINISH where the servers hold it, the Lua scripts (EVALSHA) where
not, with the same answers and the same refusals; a client that believes a
server holds the module when it does not (a server started again without it)
goes on with the scripts. Real stores (the session's one-server orchestrators,
one with the module, one started with ``SIMCTL_SERVER_MODULE=0``), real worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from simctl.ml.torch import serialize_model
from simctl.store import Client, protocol
from simctl.store.format import KindError


class Neg(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def admin(stores: Any, module: bool) -> Iterator[Client]:
    c = stores.orchestrator(1, module=module).db.client()
    c.flush_db()
    c._one("x", "CONFIG", "RESETSTAT")
    yield c
    c.close()


@pytest.fixture
def with_module(stores: Any) -> Iterator[Client]:
    yield from admin(stores, True)


@pytest.fixture
def without_module(stores: Any) -> Iterator[Client]:
    yield from admin(stores, False)


def calls(client: Client) -> dict[str, int]:
    """command -> calls since the last CONFIG RESETSTAT."""
    out = {}
    for line in client._one("x", "INFO", "commandstats").decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            out[name] = int(rest.split(",")[0].split("=")[1])
    return out


def a_round(client: Client) -> np.ndarray:
    """Load a model by a first run, then count the commands of a put, two runs and a get."""
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("x", np.ones(4, dtype=np.float32))
    client.run_model("neg", "x", "y")  # loads the model: the next runs take the worker's fast path
    client._one("x", "CONFIG", "RESETSTAT")
    client.put_tensor("x", np.arange(4, dtype=np.float32))
    for _ in range(2):
        client.run_model("neg", "x", "y")
    return client.get_tensor("y")


def test_a_round_takes_the_modules_commands_where_the_server_holds_it(with_module: Client) -> None:
    assert with_module._server.module is True
    assert a_round(with_module).tolist() == [-0.0, -1.0, -2.0, -3.0]
    n = calls(with_module)
    assert (n.get("simctl.put"), n.get("simctl.submit"), n.get("simctl.finish")) == (1, 2, 2)
    assert n.get("evalsha", 0) + n.get("eval", 0) == 0


def test_a_round_takes_the_scripts_where_the_server_lacks_it(without_module: Client) -> None:
    assert without_module._server.module is False
    assert a_round(without_module).tolist() == [-0.0, -1.0, -2.0, -3.0]
    n = calls(without_module)
    assert not any(name.startswith("simctl.") for name in n)
    assert n.get("evalsha", 0) == 1 + 2 + 2  # the put, the submits, the finishes


@pytest.mark.parametrize("module", [True, False])
def test_a_refusal_is_the_same_kind_error_either_way(stores: Any, module: bool) -> None:
    for client in admin(stores, module):
        client.set_script("s", "def f(x):\n    return x\n")
        with pytest.raises(KindError) as refused:
            client.put_tensor("s", np.ones(2))
        assert str(refused.value) == (
            "put_tensor: key 's' holds a script (or function), not a tensor; a key holds one kind of value "
            "and an operation on one kind never changes another: to replace it on purpose, delete it first "
            "(delete_script() deletes it), or use another name")
        assert client.get_script("s") == "def f(x):\n    return x\n"  # left alone


def test_a_client_that_wrongly_believes_the_module_is_there_goes_on_with_the_scripts(
        without_module: Client) -> None:
    """As after a server restarted without the module: the first refusal of an unknown command turns the
    client to the scripts, and nothing is lost or sent twice."""
    client = without_module
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client._server.module = True
    client.put_tensor("x", np.arange(3, dtype=np.float32))  # SIMCTL.PUT refused: the script
    assert client._server.module is False
    client._server.module = True
    client._plans.clear()
    client.run_model("neg", "x", "y")  # SIMCTL.SUBMIT refused (nothing pushed): the script
    assert client._server.module is False
    assert client.get_tensor("y").tolist() == [-0.0, -1.0, -2.0]
    n = calls(client)
    assert n.get("simctl.put", 0) == 0 and n.get("simctl.submit", 0) == 0
    queue = protocol.queue_key(protocol.tag_for(None), "CPU")
    assert client._one(queue, "LLEN", queue) == 0  # nothing left queued


def test_a_clusters_puts_take_the_module_on_the_shard_holding_the_key(stores: Any) -> None:
    """On a cluster the put goes to the shard of its key's slot (SIMCTL.PUT declares its key), and a
    refusal there is the same KindError."""
    with stores.orchestrator(3).db.client() as client:
        client.flush_db()
        assert client._server.module is True
        shards = list(client._server.primaries().values())
        for r in shards:
            r.config_resetstat()
        names = [f"t{i}" for i in range(12)]  # keys in every shard's slots
        for name in names:
            client.put_tensor(name, np.full(3, len(name), np.float32))
        per_shard = [r.info("commandstats").get("cmdstat_simctl.put", {}).get("calls", 0) for r in shards]
        assert sum(per_shard) == len(names) and all(n > 0 for n in per_shard), per_shard
        assert all(client.get_tensor(n).tolist() == [len(n)] * 3 for n in names)
        client.set_script("s", "def f(x):\n    return x\n")
        with pytest.raises(KindError, match="put_tensor: key 's' holds a script"):
            client.put_tensor("s", np.ones(2))
