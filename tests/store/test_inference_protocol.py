"""The inference request protocol's versions (issue 20): version 2 carries
what the worker would read (inputs, the model's header, the outputs' kinds)
in the request, pushed by the SUBMIT script; version 3 packs the header and
the reply as NUL-separated fields instead of JSON; version-1 and version-2
requests (as an older client or another language's sends them) are still served,
and answered in their version.

Real stores (the session's one server and 3-shard cluster), real workers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from simctl.ml.torch import serialize_model
from simctl.store import Client, format as fmt, protocol


class Neg(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


@pytest.fixture(scope="module", params=[1, 3], ids=["standalone", "cluster"])
def store(request: pytest.FixtureRequest, stores: Any) -> object:
    return stores.orchestrator(request.param).db


@pytest.fixture
def client(store: object) -> Iterator[Client]:
    c = store.client()  # type: ignore[attr-defined]
    c.flush_db()
    yield c
    c.close()


def v1_request(rid: str, reply: str, key: str, inputs: list[str], outputs: list[str]) -> bytes:
    """A request as a version-1 client writes it, by hand."""
    return json.dumps({"v": 1, "id": rid, "reply": reply, "kind": "model", "key": key, "fn": "",
                       "in": inputs, "out": outputs}).encode()


def test_a_version_1_request_is_still_served(client: Client) -> None:
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    client.put_tensor("{a}x", x)
    tag = client._tag("{a}x")
    queue, reply = protocol.queue_key(tag, "CPU"), protocol.reply_key(tag, "v1-client")
    client._one(queue, "RPUSH", queue, v1_request("r1", reply, "neg", ["{a}x"], ["{a}y"]),
                v1_request("r2", reply, "nothing", ["{a}x"], ["{a}z"]))
    answers = {a["id"]: a for a in (json.loads(client._one(reply, "BLPOP", reply, 30)[1]) for _ in range(2))}
    assert answers["r1"] == {"id": "r1", "device": "CPU"}  # (taken in one round: their replies in any order)
    assert "no model 'nothing' in the store" in answers["r2"]["error"]
    np.testing.assert_array_equal(client.get_tensor("{a}y"), -x)
    assert not client.tensor_exists("{a}z")


def test_a_version_2_request_is_still_served_and_answered_in_json(one_server: Client) -> None:
    """A version-2 header (JSON) pushed by SUBMIT, as a version-2 client sends it: served, its reply JSON."""
    client = one_server
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("x", np.arange(3, dtype=np.float32))
    queue, reply = protocol.queue_key("w", "CPU"), protocol.reply_key("w", "v2-client")
    header = json.dumps({"v": 2, "id": "r2", "reply": reply, "kind": "model", "key": "neg", "fn": "",
                         "in": ["x"], "out": ["y"], "timeout": 30}).encode()
    client._one(queue, "EVAL", protocol.SUBMIT, 4, queue, "neg", "x", "y", header, protocol.CARRY, 1)
    assert json.loads(client._one(reply, "BLPOP", reply, 30)[1]) == {"id": "r2", "device": "CPU"}
    np.testing.assert_array_equal(client.get_tensor("y"), -np.arange(3, dtype=np.float32))


def test_names_a_version_3_header_cannot_hold_go_as_version_2(client: Client) -> None:
    """Version 3 separates its fields with NUL and ends its header with a newline: a request whose
    names hold either is sent as version 2 (JSON), and runs the same."""
    _, body = protocol.request("r", "model", "m", ["{a}x\n"], ["{a}y\x00"])
    assert protocol.parse(body)["v"] == 2 and protocol.parse_request(body).outputs == ["{a}y\x00"]
    _, body = protocol.request("r", "model", "m", ["{a}x"], ["{a}y"], "", 2.0)
    assert body.startswith(protocol.V3) and protocol.parse_request(body).timeout == 2.0
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    x = np.arange(4, dtype=np.float32)
    client.put_tensor("{a}x\n", x)
    client.run_model("neg", "{a}x\n", ["{a}y\x00"])
    np.testing.assert_array_equal(client.get_tensor("{a}y\x00"), -x)
    client.run_model("neg", "{a}x\n", "{a}y")
    np.testing.assert_array_equal(client.get_tensor("{a}y"), -x)


def test_version_3_replies_and_damaged_messages() -> None:
    assert protocol.parse(protocol.reply("r1", None, "GPU:1", 3)) == {"id": "r1", "device": "GPU:1"}
    assert protocol.parse(protocol.reply("r1", "no\x00model", "CPU", 3)) == {"id": "r1", "error": "no\x00model"}
    assert json.loads(protocol.reply("r1", "bad", "CPU", 2)) == {"id": "r1", "error": "bad"}
    for damaged in (b"3\x00id\x00x\x00model\x001\x00m\x00\x00r\x00x", b"3\x00id\x00\x00model\x002\x00m\x00\x00r\x00x",
                    b"R3\x00id", b"R3\x00id\x00gpu\x00error"):
        with pytest.raises(ValueError, match="not a simctl inference"):
            protocol.parse(damaged)


def test_inputs_too_large_to_carry_are_read_by_the_worker(client: Client) -> None:
    client.set_script("add", "def add(a, b):\n    return a + b\n")
    small = np.ones((2, 4), np.float32)
    big = np.arange(protocol.CARRY, dtype=np.float32).reshape(-1, 4)  # 4x CARRY bytes
    client.put_tensor("{a}small", small)
    client.put_tensor("{a}big", big[:2])
    client.run_script("add", "add", ["{a}small", "{a}big"], "{a}sum")
    np.testing.assert_array_equal(client.get_tensor("{a}sum"), small + big[:2])
    client.put_tensor("{a}big", big)
    client.put_tensor("{a}small", np.ones_like(big))
    client.run_script("add", "add", ["{a}big", "{a}small"], "{a}sum")
    np.testing.assert_array_equal(client.get_tensor("{a}sum"), big + 1)


def _one_server(stores: Any, module: bool) -> Iterator[Client]:
    c = stores.orchestrator(1, module=module).db.client()
    c.flush_db()
    assert c._server.module is module
    yield c
    c.close()


@pytest.fixture(params=["module", "lua"])
def one_server(stores: Any, request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client of a one-server store (a cluster's requests carry nothing: their keys live in other
    slots than the queue), whose server pushes the request by the module's SIMCTL.SUBMIT or, without
    the module, by the SUBMIT script."""
    yield from _one_server(stores, request.param == "module")


@pytest.fixture
def lua_server(stores: Any) -> Iterator[Client]:
    """A client of a one-server store without the server module (SUBMIT by EVALSHA)."""
    yield from _one_server(stores, False)


def test_submit_carries_inputs_the_models_header_and_the_outputs_kinds(one_server: Client) -> None:
    client = one_server
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("small", np.ones(3, np.float32))
    client.put_tensor("big", np.zeros(protocol.CARRY, np.float32))
    client._one("listed", "RPUSH", "listed", "a")  # a plain list: another kind
    queue = protocol.queue_key("w", "TEST")  # no worker serves it: the request stays there
    rid, header = protocol.request("r", "model", "neg", ["small", "big", "absent"], ["out", "listed", "small"])
    assert client._one(queue, "EVAL", protocol.SUBMIT, 8, queue, "neg", "small", "big", "absent", "out",
                       "listed", "small", header, protocol.CARRY, 3) == 1
    raw = client._one(queue, "LINDEX", queue, 0)
    assert protocol.parse(raw) == {"v": 3, "id": rid, "reply": "r", "kind": "model", "key": "neg", "fn": "",
                                   "in": ["small", "big", "absent"], "out": ["out", "listed", "small"]}
    model = client._one("neg", "GET", "neg")
    stamp = model[:fmt.decode_model(model)[0].offset]
    assert protocol.carried(raw, 7) == [client._one("small", "GET", "small"), None, None, stamp,
                                        None, b"list", None]
    # found by its header, withdrawn, the replies read, in one script
    assert client._one(queue, "EVAL", protocol.LOCATE, 2, queue, "r", header, 0) == [1, []]
    assert client._one(queue, "EVAL", protocol.LOCATE, 2, queue, "r", header, 1) == [1, []]
    assert client._one(queue, "LLEN", queue) == 0
    assert client._one(queue, "EVAL", protocol.LOCATE, 2, queue, "r", header, 1) == [0, []]


def test_a_cluster_request_is_a_header_alone_and_carries_nothing() -> None:
    raw = protocol.request("r", "model", "m", ["x"], ["y"])[1]
    assert protocol.carried(raw, 3) is None and protocol.parse(raw)["v"] == protocol.VERSION == 3
    assert protocol.carried(raw + b"\n1:a-2:bc", 3) == [b"a", None, b"bc"]
    for damaged in (b"\n1:a", b"\n5:a--", b"\nx:a--", b"\n---tail"):
        with pytest.raises(ValueError, match="the request"):
            protocol.carried(raw + damaged, 3)


def test_a_damaged_request_is_dropped_and_the_worker_goes_on(client: Client) -> None:
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("{a}x", np.ones(2, np.float32))
    queue = protocol.queue_key(client._tag("{a}x"), "CPU")
    _, header = protocol.request("r", "model", "neg", ["{a}x"], ["{a}y"])
    client._one(queue, "RPUSH", queue, header + b"\n9:short")
    client.run_model("neg", "{a}x", "{a}y")
    assert client.get_tensor("{a}y").tolist() == [-1.0, -1.0]


def test_a_model_replaced_between_runs_is_reloaded_from_the_header_carried(client: Client) -> None:
    """The header carried in each request (version 2) tells the worker its loaded copy is stale."""
    client.set_script("f", "def f(x):\n    return -x\n")
    client.put_tensor("{a}x", np.ones(2, np.float32))
    for factor in (2, 3, 4):
        source = f"def f(x):\n    return x * {factor}\n".encode()
        client._one("f", "SET", "f", fmt.script_header("CPU", len(source)) + source)  # no change published
        client.run_script("f", "f", "{a}x", "{a}y")
        assert client.get_tensor("{a}y").tolist() == [factor, factor]


def test_a_server_that_lost_the_submit_script_gets_it_again(lua_server: Client) -> None:
    """The client sends SUBMIT by its SHA1; a server that does not hold it (restarted, SCRIPT FLUSH)
    answers NOSCRIPT and pushes nothing; the client then sends the script itself, once."""
    client = lua_server
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("x", np.ones(2, np.float32))
    client.run_model("neg", "x", "y")
    client._one("x", "SCRIPT", "FLUSH")  # db.client() is the store's admin
    assert client._one("x", "SCRIPT", "EXISTS", protocol.SUBMIT_SHA) == [0]
    client.put_tensor("x", np.full(2, 3, np.float32))
    client.run_model("neg", "x", "y")
    assert client.get_tensor("y").tolist() == [-3.0, -3.0]
    assert client._one("x", "SCRIPT", "EXISTS", protocol.SUBMIT_SHA) == [1]


def test_the_direct_packer_writes_what_redis_py_writes() -> None:
    import redis

    from simctl.store.direct import pack

    cmds = [("EVAL", protocol.TAKE_SCRIPT, 2, "q", "t", protocol.TAKE), ("SET", "k", b"\x00\r\n\xff", "PX", 60000),
            ("BLMOVE", "q", "t", "LEFT", "RIGHT", 1.0), ("GET", "clé"), ("BLMOVE", "q", "t", "LEFT", "RIGHT", 0.0125)]
    assert b"".join(pack(cmds)) == b"".join(redis.Connection().pack_commands(cmds))
