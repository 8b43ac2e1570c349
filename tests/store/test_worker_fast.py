"""The inference worker's fast path (:mod:`simctl.store.fastround`, issue 20):
the common round (a lone version-3 request, inputs carried, its model loaded
and current) answered with less Python and one command (FINISH: the server module's SIMCTL.FINISH, or the Lua
script by EVALSHA on a server without the module; each test runs on both).

It gives the general path's answers, and its guarantees hold: a model
replaced between two rounds runs on the very next request, a stale copy never
runs (even when no change is published), an output holding another kind is
refused and left alone, and a server that lost the script still gets every
output and reply.

Which path ran is told by FINISH: after ``SCRIPT FLUSH`` and ``CONFIG
RESETSTAT``, a fast round loads the script again (its NOSCRIPT answered by the
EVAL of its text) or calls SIMCTL.FINISH; a general round does neither.
Real stores (the session's one-server orchestrators), real worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from simctl.ml.torch import serialize_model
from simctl.store import Client, Dataset, fastround, format as fmt, protocol
from simctl.store.format import KindError, StoreError


class Neg(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


class Double(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


class SumProduct(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x + y, x * y


def linear() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh()).eval()


def _admin(stores: Any, module: bool) -> Iterator[Client]:
    c = stores.orchestrator(1, module=module).db.client()  # the store's admin: SCRIPT FLUSH, CONFIG RESETSTAT
    c.flush_db()
    assert c._server.module is module
    yield c
    c.close()


@pytest.fixture(params=["module", "lua"])
def client(stores: Any, request: pytest.FixtureRequest) -> Iterator[Client]:
    """A client of a one-server store (the fast path serves a single server's requests), whose server
    runs simctl's module (FINISH is SIMCTL.FINISH) or not (FINISH is the Lua script)."""
    yield from _admin(stores, request.param == "module")


@pytest.fixture
def lua_client(stores: Any) -> Iterator[Client]:
    """A client of a one-server store without the module (the worker's FINISH by EVALSHA)."""
    yield from _admin(stores, False)


def flush_scripts(client: Client) -> None:
    """Forget the scripts and the command counts: :func:`fast_ran` says whether a fast round ran since."""
    client._one("x", "SCRIPT", "FLUSH")
    client._one("x", "CONFIG", "RESETSTAT")
    assert not fast_ran(client)


def finish_loaded(client: Client) -> bool:
    return client._one("x", "SCRIPT", "EXISTS", fastround.FINISH_SHA) == [1]


def fast_ran(client: Client) -> bool:
    """Whether a fast round ran since :func:`flush_scripts`: FINISH loaded again (its NOSCRIPT answered by
    its text), or the module's SIMCTL.FINISH called."""
    return finish_loaded(client) or b"cmdstat_simctl.finish:" in client._one("x", "INFO", "commandstats")


def run_general(client: Client, kind: str, key: str, inputs: list[str], outputs: list[str], fn: str = "") -> Any:
    """A version-2 request (JSON header, pushed by SUBMIT), which only the general path serves: its reply."""
    queue, reply = protocol.queue_key("w", "CPU"), protocol.reply_key("w", "general")
    header = json.dumps({"v": 2, "id": "g", "reply": reply, "kind": kind, "key": key, "fn": fn,
                         "in": inputs, "out": outputs, "timeout": 30}).encode()
    client._one(queue, "EVAL", protocol.SUBMIT, 2 + len(inputs) + len(outputs), queue, key, *inputs, *outputs,
                header, protocol.CARRY, len(inputs))
    return json.loads(client._one(reply, "BLPOP", reply, 30)[1])


def fast_then_general(client: Client, kind: str, key: str, inputs: list[str], outputs: list[str], fn: str = "",
                      fast: bool | None = True) -> tuple[Any, list[Any], Any, list[Any]]:
    """The request run by the client (FINISH used when ``fast``, not used when False, either way when
    None), then by the general path: (error or None, outputs) of each."""
    run = (lambda: client.run_script(key, fn, inputs, outputs)) if kind == "script" else (
        lambda: client.run_model(key, inputs, outputs))
    try:
        run()  # loads the model: the next round is a fast one
    except StoreError:
        pass
    drop(client, outputs)
    flush_scripts(client)
    error: Any = None
    try:
        run()
    except StoreError as exc:
        error = str(exc).split(": ", 1)[1]  # the caller's words first
    if fast is not None:
        assert fast_ran(client) is fast
    mine = [client.get_tensor(k) if client.tensor_exists(k) else None for k in outputs]
    drop(client, outputs)
    flush_scripts(client)
    answer = run_general(client, kind, key, inputs, outputs, fn)
    assert not fast_ran(client)
    theirs = [client.get_tensor(k) if client.tensor_exists(k) else None for k in outputs]
    return error, mine, answer.get("error"), theirs


def drop(client: Client, keys: list[str]) -> None:
    for k in keys:
        if client.tensor_exists(k):
            client.delete_tensor(k)


def same(a: list[Any], b: list[Any]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(x, y)


def test_the_fast_path_and_the_general_path_give_the_same_answers(client: Client) -> None:
    client.set_model("lin", serialize_model(linear()), "TORCH")
    client.set_model("sp", serialize_model(SumProduct()), "TORCH")
    client.set_script("s", "def f(x):\n    return x * 3 + 1\n")
    rng = np.random.default_rng(0)
    client.put_tensor("x", rng.standard_normal((5, 4)).astype(np.float32))
    client.put_tensor("a", np.arange(6, dtype=np.int64))
    client.put_tensor("b", np.arange(6, dtype=np.int64)[::-1].copy())
    client.put_tensor("v", rng.standard_normal(7))
    cases = [("model", "lin", ["x"], ["y"], ""), ("model", "sp", ["a", "b"], ["s1", "s2"], ""),
             ("script", "s", ["v"], ["w"], "f")]
    for kind, key, ins, outs, fn in cases:
        error, mine, their_error, theirs = fast_then_general(client, kind, key, ins, outs, fn)
        assert error is None and their_error is None
        same(mine, theirs)
        assert all(m is not None for m in mine)
    with torch.no_grad():
        expected = linear()(torch.from_numpy(client.get_tensor("x"))).numpy()
    np.testing.assert_allclose(client.get_tensor("y"), expected, rtol=1e-6)
    assert client.get_tensor("s2").tolist() == [0, 4, 6, 6, 4, 0]


def test_errors_after_the_run_are_the_general_paths(client: Client) -> None:
    """A runtime's error, outputs too large for the script, fewer outputs than named: the fast path
    ran the model, the general path answers (the same as it answers alone)."""
    client.set_model("lin", serialize_model(linear()), "TORCH")
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("x", np.ones((2, 4), np.float32))
    client.run_model("lin", "x", "y")
    client.put_tensor("bad", np.ones((2, 5), np.float32))  # the wrong width: torch's error
    error, mine, their_error, theirs = fast_then_general(client, "model", "lin", ["bad"], ["y"], fast=None)
    assert error is not None and error == their_error and "shapes cannot be multiplied" in error
    same(mine, theirs)
    client.put_tensor("big", np.arange(4 * fastround.keyspace.MOVE_FROM, dtype=np.float32))  # a large output
    error, mine, their_error, theirs = fast_then_general(client, "model", "neg", ["big"], ["y"], fast=None)
    assert error is None and their_error is None
    same(mine, theirs)
    assert mine[0].tolist() == (-np.arange(4 * fastround.keyspace.MOVE_FROM, dtype=np.float32)).tolist()
    error, mine, their_error, theirs = fast_then_general(client, "model", "neg", ["x"], ["y", "z"], fast=None)
    assert error == their_error and "gave 1 output(s); the request names 2" in error
    same(mine, theirs)


def test_inputs_of_any_shape_and_dtype_take_the_fast_path(client: Client) -> None:
    """Headers of 16 bytes (a scalar), 32 (up to 2 dimensions) and more (3 and 5 dimensions)."""
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    for i, x in enumerate([np.float64(2.5), np.arange(24, dtype=np.float32).reshape(2, 3, 4),
                           np.arange(32, dtype=np.int32).reshape(2, 2, 2, 2, 2), np.ones((3, 1), np.float16)]):
        client.put_tensor(f"x{i}", x)
        error, mine, their_error, theirs = fast_then_general(client, "model", "neg", [f"x{i}"], ["y"])
        assert error is None and their_error is None
        same(mine, theirs)
        np.testing.assert_array_equal(mine[0], -np.asarray(x))


def test_requests_the_fast_path_does_not_take_go_the_general_way(client: Client) -> None:
    """An empty input and an input too large to carry: the general path answers, correctly."""
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("empty", np.zeros((0, 3), np.float32))
    error, mine, their_error, theirs = fast_then_general(client, "model", "neg", ["empty"], ["y"], fast=False)
    assert error is None and their_error is None
    same(mine, theirs)
    assert mine[0].shape == (0, 3)
    large = np.ones(protocol.CARRY, np.float32)
    client.put_tensor("large", large)
    error, mine, _, theirs = fast_then_general(client, "model", "neg", ["large"], ["y"], fast=False)
    assert error is None
    np.testing.assert_array_equal(mine[0], -large)


def test_a_model_replaced_between_two_rounds_runs_on_the_very_next_request(client: Client) -> None:
    client.put_tensor("x", np.arange(3, dtype=np.float32))
    for i in range(6):
        model = Neg() if i % 2 == 0 else Double()
        client.set_model("m", serialize_model(model), "TORCH")
        for _ in range(3):  # the first round loads it, the others take the fast path
            client.run_model("m", "x", "y")
            assert client.get_tensor("y").tolist() == ([-0.0, -1.0, -2.0] if i % 2 == 0 else [0.0, 2.0, 4.0])


def test_a_stale_loaded_copy_never_runs_even_unannounced(client: Client) -> None:
    """The model's value replaced by a raw SET (no change published, so the worker keeps its copy until
    a request's carried header differs from the copy's): the next request runs the new model."""
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.set_model("double", serialize_model(Double()), "TORCH")
    values = {name: client._one(name, "GET", name) for name in ("neg", "double")}
    client.put_tensor("x", np.ones(2, np.float32))
    client.set_model("m", serialize_model(Neg()), "TORCH")
    for name in ("double", "neg", "double", "neg"):
        for _ in range(3):
            client.run_model("m", "x", "y")
        client._one("m", "SET", "m", values[name])  # no change published
        client.run_model("m", "x", "y")
        assert client.get_tensor("y").tolist() == ([2.0, 2.0] if name == "double" else [-1.0, -1.0])


def test_an_output_turned_into_another_kind_is_refused_and_left_alone(client: Client) -> None:
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("x", np.ones(2, np.float32))
    for _ in range(3):
        client.run_model("neg", "x", "y")
    client.delete_tensor("y")
    ds = Dataset("d")
    ds.add_tensor("t", np.zeros(1, np.float32))
    client.append_to_list("y", ds)  # the output key is now an aggregation list (of datasets)
    with pytest.raises(KindError, match="key 'y' holds an aggregation list, not a tensor"):
        client.run_model("neg", "x", "y")
    assert client.get_list_length("y") == 1
    client.run_model("neg", "x", "z")  # the worker goes on
    assert client.get_tensor("z").tolist() == [-1.0, -1.0]


def test_an_output_that_changed_kind_after_the_request_was_queued_is_refused(client: Client) -> None:
    """The request says its output held no other kind (as SUBMIT found it), but the key became a list
    before the worker wrote it: FINISH refuses, writes nothing, and the worker answers the refusal."""
    client.set_model("neg", serialize_model(Neg()), "TORCH")
    client.put_tensor("x", np.ones(2, np.float32))
    client.run_model("neg", "x", "y")
    client._one("out", "RPUSH", "out", "a")
    queue, reply = protocol.queue_key("w", "CPU"), protocol.reply_key("w", "by-hand")
    model = client._one("neg", "GET", "neg")
    stamp = model[:fmt.decode_model(model)[0].offset]
    x = client._one("x", "GET", "x")
    for i in range(2):
        rid, header = protocol.request(reply, "model", "neg", ["x"], ["out"], timeout=30)
        client._one(queue, "RPUSH", queue, header + b"\n%d:%b%d:%b-" % (len(x), x, len(stamp), stamp))
        answer = protocol.parse(client._one(reply, "BLPOP", reply, 30)[1])
        assert answer["id"] == rid and "key 'out' holds an aggregation list, not a tensor" in answer["error"]
        assert client._one("out", "LRANGE", "out", 0, -1) == [b"a"]
        if i == 0:
            flush_scripts(client)  # the second time, the server lost FINISH too
    assert client._one("q", "LLEN", protocol.taken_key("w", "CPU")) == 0
    client.run_model("neg", "x", "y")
    assert client.get_tensor("y").tolist() == [-1.0, -1.0]


def test_a_server_that_lost_the_finish_script_still_gets_every_output_and_reply(lua_client: Client) -> None:
    client = lua_client
    client.set_model("sp", serialize_model(SumProduct()), "TORCH")
    client.put_tensor("a", np.ones(2, np.float32))
    client.run_model("sp", ["a", "a"], ["s", "p"])
    for i in range(3):
        client.put_tensor("a", np.full(2, i, np.float32))
        flush_scripts(client)
        client.run_model("sp", ["a", "a"], ["s", "p"])
        assert finish_loaded(client)
        assert client.get_tensor("s").tolist() == [2.0 * i] * 2 and client.get_tensor("p").tolist() == [i * i] * 2
        client.run_model("sp", ["a", "a"], ["s", "p"])  # by its SHA again


def test_finish_given_the_request_removes_it_alone_from_the_taken_list(client: Client) -> None:
    """When the worker runs FINISH again by its text (NOSCRIPT), its BLMOVE may have taken the next
    request already: FINISH then removes the request it answers, not the list."""
    taken = "simctl.ml{w}.f.TEST"  # no worker serves it
    client._one(taken, "RPUSH", taken, b"answered", b"next")
    value = fmt.tensor_bytes(np.ones(2, np.float32))
    assert client._one("y", "EVAL", fastround.FINISH, 3, "y", "rk", taken, value, b"R3\x00id\x00CPU",
                       b"answered") == 1
    assert client._one(taken, "LRANGE", taken, 0, -1) == [b"next"]
    assert client._one("rk", "LRANGE", "rk", 0, -1) == [b"R3\x00id\x00CPU"] and client._one("rk", "TTL", "rk") > 0
    assert client.get_tensor("y").tolist() == [1.0, 1.0]
    assert client._one("y", "EVAL", fastround.FINISH, 3, "y", "rk", taken, value, b"R3\x00id2\x00CPU") == 1
    assert client._one(taken, "EXISTS", taken) == 0  # without it: the whole list


def test_a_batched_model_runs_a_lone_request_fast_unless_it_waits_for_a_batch(client: Client) -> None:
    """``batch_size`` alone: a lone request is a batch of one (the fast path); with ``min_batch_size``
    the worker waits for more rows first (the general path), and answers the same."""
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    client.put_tensor("x", x)
    client.set_model("b", serialize_model(Neg()), "TORCH", batch_size=4)
    error, mine, their_error, theirs = fast_then_general(client, "model", "b", ["x"], ["y"])
    assert error is None and their_error is None
    same(mine, theirs)
    np.testing.assert_array_equal(mine[0], -x)
    client.set_model("w", serialize_model(Neg()), "TORCH", batch_size=4, min_batch_size=4, min_batch_timeout=5)
    error, mine, their_error, theirs = fast_then_general(client, "model", "w", ["x"], ["y"], fast=False)
    assert error is None and their_error is None
    same(mine, theirs)
    np.testing.assert_array_equal(mine[0], -x)
