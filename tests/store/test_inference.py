"""Running models and scripts beside the store: the inference workers that
every shard's supervisor starts, and Client.run_model / run_script.

Real stores started by an experiment (the session's one server and 3-shard
Redis Cluster, each test on an emptied store), real worker processes, real
runtimes (torch, onnxruntime)."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from _store_helpers import free_ports

import simctl
from simctl.ml.torch import serialize_model
from simctl.store import Client, format as fmt, protocol
from simctl.store.format import KindError, StoreError, StoreTimeoutError


class Rows(torch.nn.Module):
    """Answers each row with the number of rows the model saw in its call: shows batching."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, float(x.shape[0]))


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2)).eval()


def onnx_bytes(net: torch.nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.zeros(1, 4),), buf, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n"}, "y": {0: "n"}}, dynamo=False)
    return buf.getvalue()


def expected(net: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(x)).numpy()


def start_store(tmp: Path, shards: int, **kwargs: object) -> tuple[simctl.Experiment, object]:
    exp = simctl.Experiment(f"inference{shards}", exp_path=str(tmp), launcher="local")
    db = exp.create_database(port=free_ports(shards), db_nodes=shards, **kwargs)
    exp.start(db)
    return exp, db


@pytest.fixture(scope="module", params=[1, 3], ids=["standalone", "cluster"])
def store(request: pytest.FixtureRequest, stores: Any) -> object:
    """The session's store of one server or of a 3-shard cluster, started by an experiment
    with its inference workers (the tests that need other workers start their own)."""
    return stores.orchestrator(request.param).db


@pytest.fixture
def client(store: object) -> Iterator[Client]:
    c = store.client()  # type: ignore[attr-defined]
    c.flush_db()
    yield c
    c.close()


def test_a_torchscript_model_runs_beside_the_store(client: Client) -> None:
    net = mlp()
    client.set_model("mlp", serialize_model(net), "TORCH")
    x = np.random.default_rng(1).random((5, 4), dtype=np.float32)
    client.put_tensor("x", x)
    client.run_model("mlp", inputs="x", outputs="y")
    np.testing.assert_allclose(client.get_tensor("y"), expected(net, x), rtol=1e-6, atol=1e-6)


def test_an_onnx_model_runs_beside_the_store(client: Client) -> None:
    net = mlp()
    client.set_model("mlp.onnx", onnx_bytes(net), "ONNX")
    x = np.random.default_rng(2).random((3, 4), dtype=np.float32)
    client.put_tensor("in", x)
    client.run_model("mlp.onnx", ["in"], ["out"])
    np.testing.assert_allclose(client.get_tensor("out"), expected(net, x), rtol=1e-5, atol=1e-6)


def timestwo(x: torch.Tensor) -> torch.Tensor:
    return 2 * x


def test_the_documents_script_and_function(client: Client) -> None:
    client.set_script("example_script", "def negate(x):\n\treturn torch.neg(x)\n")
    client.set_function("example_func", timestwo)
    x = np.arange(6, dtype=np.float64).reshape(2, 3)
    client.put_tensor("x", x)
    client.run_script("example_script", "negate", ["x"], ["nx"])
    client.run_script("example_func", "timestwo", "x", "x2")
    assert np.array_equal(client.get_tensor("nx"), -x)
    assert np.array_equal(client.get_tensor("x2"), 2 * x)


def test_errors_reach_the_caller_and_the_worker_goes_on(client: Client) -> None:
    client.set_model("mlp", serialize_model(mlp()), "TORCH")
    client.set_script("s", "def negate(x):\n    return torch.neg(x)\n")
    client.put_tensor("wrong", np.zeros((2, 5), np.float32))
    client.put_tensor("x", np.ones((1, 4), np.float32))
    with pytest.raises(StoreError, match=r"run_model\('never'\): no model 'never' in the store"):
        client.run_model("never", "x", "y")
    with pytest.raises(StoreError, match=r"float32\[2, 5\].*mat1 and mat2 shapes cannot be multiplied"):
        client.run_model("mlp", "wrong", "y")
    with pytest.raises(StoreError, match=r"no function 'absent'; it has \['negate'\]"):
        client.run_script("s", "absent", "x", "y")
    with pytest.raises(StoreError, match=r"no tensor 'missing' in the store"):
        client.run_model("mlp", "missing", "y")
    with pytest.raises(StoreError, match=r"gave 1 output\(s\); the request names 2"):
        client.run_model("mlp", "x", ["a", "b"])
    client.run_model("mlp", "x", "y")  # the worker still serves
    assert client.get_tensor("y").shape == (1, 2)


def test_an_unknown_backend_is_the_workers_error_naming_the_installed_ones(client: Client) -> None:
    """The client checks a backend's name by its form only; the worker, which has the
    backends, refuses one it does not know, and its words reach the caller."""
    client.set_model("jax", b"not a model for any backend here", "JAX")  # stored as named
    client.put_tensor("x", np.ones((1, 4), np.float32))
    with pytest.raises(StoreError, match=r"^run_model\('jax'\): model 'jax' cannot be loaded: unknown backend "
                                         r"'JAX'; installed: .*ONNX.*TORCH"):
        client.run_model("jax", "x", "y")
    assert not client.tensor_exists("y")
    client.set_model("mlp", serialize_model(mlp()), "TORCH")
    client.run_model("mlp", "x", "y")  # the worker still serves
    assert client.get_tensor("y").shape == (1, 2)


def test_bad_arguments_are_refused_before_sending(client: Client) -> None:
    with pytest.raises(simctl.ConfigError, match="give the outputs"):
        client.run_model("m", "x")
    with pytest.raises(simctl.ConfigError, match="give the inputs"):
        client.run_model("m", outputs="y")
    with pytest.raises(simctl.ConfigError, match="fn_name must be the name of a function"):
        client.run_script("s", "not a name", "x", "y")
    with pytest.raises(simctl.ConfigError, match="num_gpus must be an int >= 1"):
        client.run_model_multigpu("m", 0, 0, 0, "x", "y")
    with pytest.raises(simctl.ConfigError, match="offset must be an int >= 0"):
        client.run_model_multigpu("m", -1, 0, 2, "x", "y")


def test_a_replaced_model_is_reloaded(client: Client) -> None:
    client.put_tensor("x", np.ones((2, 3), np.float32))
    client.set_script("f", "def f(x):\n    return x + 1\n")
    client.run_script("f", "f", "x", "y")
    assert client.get_tensor("y").tolist() == [[2.0] * 3] * 2
    client.set_script("f", "def f(x):\n    return x + 10\n")
    client.run_script("f", "f", "x", "y")
    assert client.get_tensor("y").tolist() == [[11.0] * 3] * 2
    client.delete_script("f")
    with pytest.raises(StoreError, match="no script 'f'"):
        client.run_script("f", "f", "x", "y")


def run_concurrently(store: object, n: int, name: str) -> list[np.ndarray]:
    """``n`` clients (threads with a client each) run ``name`` on one row each, at once
    (on a cluster, their inputs share a hash tag: one shard, one worker)."""
    results: list[np.ndarray] = [np.empty(0)] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        with store.client() as c:  # type: ignore[attr-defined]
            c.put_tensor(f"{{b}}in{i}", np.full((1, 3), i, np.float32))
            barrier.wait()
            c.run_model(name, f"{{b}}in{i}", f"{{b}}out{i}")
            results[i] = c.get_tensor(f"{{b}}out{i}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_requests_are_batched_up_to_batch_size(client: Client, store: object) -> None:
    client.set_model("rows", serialize_model(Rows()), "TORCH", batch_size=4, min_batch_size=4,
                     min_batch_timeout=10_000)
    results = run_concurrently(store, 4, "rows")
    # each request sees the 4 rows of the batch it was run in; its own row only comes back
    assert [r.shape for r in results] == [(1, 3)] * 4
    assert all(r[0, 0] == 4.0 for r in results), [r[0, 0] for r in results]


def test_a_batch_that_does_not_fill_runs_after_the_timeout(client: Client) -> None:
    # min_batch_size without a timeout: the documents' system waits forever; here it waits briefly
    client.set_model("rows", serialize_model(Rows()), "TORCH", batch_size=8, min_batch_size=8)
    client.put_tensor("x", np.zeros((1, 2), np.float32))
    client.run_model("rows", "x", "y")
    assert client.get_tensor("y").tolist() == [[1.0, 1.0]]
    client.set_model("rows", serialize_model(Rows()), "TORCH", batch_size=8, min_batch_size=8,
                     min_batch_timeout=50)
    client.run_model("rows", "x", "y")
    assert client.get_tensor("y").tolist() == [[1.0, 1.0]]


def test_without_batch_size_each_request_runs_alone(client: Client, store: object) -> None:
    client.set_model("rows", serialize_model(Rows()), "TORCH")
    assert all(r[0, 0] == 1.0 for r in run_concurrently(store, 4, "rows"))


def worker_pid(client: Client, key_of_shard: str, device: str = "CPU") -> int:
    """The pid of the worker of ``device`` connected to the shard holding ``key_of_shard``."""
    queue = protocol.queue_key(client._tag(key_of_shard), device)
    while not (pids := protocol.worker_pids(client._key_cmd("test", queue, "CLIENT", "LIST"), device)):
        time.sleep(0.05)  # (re)starting
    assert len(pids) == 1, pids
    return pids[0]


def in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[BaseException]]:
    """A thread (not started) making ``call``, and the list that will hold what it raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - the test reads it
            errors.append(exc)

    return threading.Thread(target=run), errors


SPIN = "def spin(x):\n    y = x\n    for i in range(200000000):\n        y = y + 1\n    return y\n"


def test_a_worker_killed_mid_request_fails_its_caller_and_comes_back(client: Client) -> None:
    client.set_script("spin", SPIN)
    client.put_tensor("x", np.zeros(1, np.float32))
    pid = worker_pid(client, "x")
    taken = protocol.taken_key(client._tag("x"), "CPU")
    caller, errors = in_thread(lambda: client.run_script("spin", "spin", "x", "y"))
    caller.start()
    while not client._key_cmd("test", taken, "LLEN", taken):  # the worker has taken it
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    caller.join()
    assert len(errors) == 1 and isinstance(errors[0], StoreError), errors
    assert "died while running this request (killed by signal 9)" in str(errors[0])
    client.set_script("negate", "def negate(x):\n    return -x\n")
    client.run_script("negate", "negate", "x", "y")  # a new worker serves
    assert worker_pid(client, "x") != pid


def test_a_model_for_a_device_without_a_worker(client: Client) -> None:
    client.set_model("gpu", serialize_model(mlp()), "TORCH", device="GPU:1")
    client.put_tensor("x", np.ones((1, 4), np.float32))
    with pytest.raises(StoreError, match=r"runs on GPU:1, and no inference worker serves GPU:1"):
        client.run_model("gpu", "x", "y")


def test_multigpu_names_and_routing(client: Client) -> None:
    client.set_model_multigpu("net", serialize_model(mlp()), "TORCH", first_gpu=2, num_gpus=2)
    assert client.model_exists("net.GPU:2") and client.model_exists("net.GPU:3")
    assert not client.model_exists("net.GPU:1") and not client.model_exists("net")
    client.put_tensor("x", np.ones((1, 4), np.float32))
    with pytest.raises(StoreError, match=r"model 'net.GPU:3' runs on GPU:3"):
        client.run_model_multigpu("net", 5, 2, 2, "x", "y")  # 2 + 5 % 2
    client.delete_model_multigpu("net", 2, 2)
    assert not client.model_exists("net.GPU:2")


def test_a_run_follows_its_input_to_the_shard_it_moved_to(tmp_path: Path) -> None:
    """A run repeated (its queue, reply and packed commands worked out once) goes to
    the shard now holding its input after the input's slot moved to another shard."""
    exp, db = start_store(tmp_path, 3)
    try:
        client = Client(address=",".join(db.get_address()), username=db.username, password=db.password)
        client.set_script("negate", "def negate(x):\n    return -x\n")
        client.put_tensor("moving", np.arange(3, dtype=np.float32))
        client.run_script("negate", "negate", "moving", "{moving}.out")
        nodes = client._r.get_primaries()
        slot = client._r.keyslot("moving")
        src = client._r.get_node_from_key("moving")
        dst = next(n for n in nodes if n.name != src.name)
        conns = {n.name: client._r.get_redis_connection(n) for n in nodes}
        dst_id = conns[dst.name].execute_command("CLUSTER", "MYID")
        conns[src.name].delete("moving", "{moving}.out")  # (a slot is given away empty)
        for name in [dst.name] + [n.name for n in nodes if n.name != dst.name]:
            conns[name].execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        conns[dst.name].execute_command("CLUSTER", "BUMPEPOCH")
        client.put_tensor("moving", np.arange(4, dtype=np.float32))  # follows MOVED: the slot map is new
        assert conns[dst.name].exists("moving") == 1

        def submits(name: str) -> int:
            return int(conns[name].info("commandstats").get("cmdstat_rpush", {}).get("calls", 0))

        before = submits(dst.name)
        client.run_script("negate", "negate", "moving", "{moving}.out")
        assert np.array_equal(client.get_tensor("{moving}.out"), -np.arange(4, dtype=np.float32))
        assert submits(dst.name) > before  # the request (and its reply) went to the shard holding the input
        client.close()
    finally:
        exp.stop(db)


def test_a_cluster_runs_each_request_on_the_shard_holding_its_input(store: object, client: Client) -> None:
    if not client.is_cluster:
        return  # the standalone parametrization has one shard: nothing to route
    nodes = client._r.get_primaries()
    listener = client._r.get_redis_connection(nodes[0]).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(protocol.CHANGED)
    client.set_script("negate", "def negate(x):\n    return -x\n")
    while (heard := listener.get_message(timeout=5)) is None:
        pass
    listener.close()

    def calls(command: str) -> list[int]:  # per shard
        return [client._r.get_redis_connection(n).info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)
                for n in nodes]

    holder = {}
    for i in range(30):
        holder.setdefault(client._r.get_node_from_key(f"t{i}").name, f"t{i}")
    assert len(holder) == 3
    for name in holder.values():  # each worker loads the script (from the shard holding it) once
        client.put_tensor(name, np.ones(2, np.float32))
        client.run_script("negate", "negate", name, f"{{{name}}}.out")
    # the change was published on every shard, and each passes it on to the others: a worker hears of it up
    # to three times, under load after it loaded the script. It must not load it again for a late copy.
    for node in nodes:
        client._r.get_redis_connection(node).publish(protocol.CHANGED, heard["data"])
    for node in nodes:
        name = holder[node.name]
        pushes, gets = calls("rpush"), calls("get")
        client.run_script("negate", "negate", name, f"{{{name}}}.out")
        # the request and its reply were pushed on the input's shard only, and only that shard was read
        assert [i for i, (a, b) in enumerate(zip(pushes, calls("rpush"))) if b > a] == [nodes.index(node)]
        assert [i for i, (a, b) in enumerate(zip(gets, calls("get"))) if b > a] == [nodes.index(node)]
        assert client.get_tensor(f"{{{name}}}.out").tolist() == [-1.0, -1.0]


@pytest.mark.parametrize("shards", [1, 3])
def test_a_store_is_ready_once_its_inference_workers_are_connected(tmp_path: Path, shards: int) -> None:
    """Ready means served: every device's worker is connected when start() returns (a client gives
    up on a device no worker serves after a few seconds, and a worker starts slower than that on a
    loaded node)."""
    exp, db = start_store(tmp_path, shards, ml_devices=["CPU", "GPU:0", "GPU:1"])
    try:
        with db.shards() as nodes:
            assert [protocol.worker_devices(n.client_list()) for n in nodes] == [{"CPU", "GPU:0", "GPU:1"}] * shards
    finally:
        exp.stop(db)


def test_gpu_workers_are_pinned_by_the_visibility_variables(tmp_path: Path) -> None:
    exp, db = start_store(tmp_path, 1, ml_devices=["CPU", "GPU:1"])
    try:
        with db.client() as c:
            pid = worker_pid(c, "x", "GPU:1")
            env = dict(item.split("=", 1) for item in Path(f"/proc/{pid}/environ").read_text().split("\0") if item)
            assert {env[v] for v in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")} == {"1"}
            assert "CUDA_VISIBLE_DEVICES" not in dict(
                item.split("=", 1) for item in Path(f"/proc/{worker_pid(c, 'x')}/environ").read_text().split("\0")
                if item)
            c.set_model("gpu", serialize_model(mlp()), "TORCH", device="GPU:1")
            c.put_tensor("x", np.ones((1, 4), np.float32))
            # this machine's torch has no GPU: the GPU worker says so, to the caller
            with pytest.raises(StoreError, match=r"cannot be loaded on GPU:1.*torch sees 0 GPU"):
                c.run_model("gpu", "x", "y")
    finally:
        exp.stop(db)


def test_no_worker_at_all_is_an_error_within_a_bounded_time(tmp_path: Path) -> None:
    exp, db = start_store(tmp_path, 1, ml_devices=[])
    try:
        with db.client() as c:
            c.put_tensor("x", np.ones(1, np.float32))
            with pytest.raises(StoreError, match="no inference worker for CPU answered"):
                c.run_model("m", "x", "y")
            assert c._key_cmd("t", protocol.queue_key("w", "CPU"), "LLEN", protocol.queue_key("w", "CPU")) == 0
            # a timeout shorter than the grace: the caller's timeout decides, and says why
            with pytest.raises(StoreTimeoutError, match=r"run_model\('m'\): no reply within the timeout \(1 s\): no "
                                                        r"inference worker for CPU is connected .* withdrawn"):
                c.run_model("m", "x", "y", timeout=1)
            assert c._key_cmd("t", protocol.queue_key("w", "CPU"), "LLEN", protocol.queue_key("w", "CPU")) == 0
    finally:
        exp.stop(db)


def test_ml_devices_is_checked(tmp_path: Path) -> None:
    exp = simctl.Experiment("bad", exp_path=str(tmp_path), launcher="local")
    with pytest.raises(simctl.ConfigError, match=r"ml_devices item must be 'CPU', 'GPU'"):
        exp.create_database(port=free_ports(1), ml_devices=["TPU"])
    with pytest.raises(simctl.ConfigError, match="ml_devices must be a list of devices"):
        exp.create_database(port=free_ports(1), ml_devices=3)


def test_inputs_and_models_of_another_kind_are_the_callers_error(client: Client) -> None:
    client.set_script("neg", "def neg(x):\n    return -x\n")
    client._key_cmd("t", "{k}alist", "RPUSH", "{k}alist", "a")  # a Redis list, not a tensor
    client.put_tensor("{k}x", np.ones(2, np.float32))
    with pytest.raises(StoreError, match=r"run_script\('neg', 'neg'\): .*'\{k\}alist'"):
        client.run_script("neg", "neg", ["{k}x", "{k}alist"], ["{k}y"])
    with pytest.raises(StoreError, match=r"'\{k\}alist'.*(cannot be read|no model)"):
        client.run_model("{k}alist", "{k}x", "{k}y")
    client.run_script("neg", "neg", "{k}x", "{k}y")  # the worker still serves
    assert client.get_tensor("{k}y").tolist() == [-1.0, -1.0]


def test_min_batch_size_counts_rows(client: Client, store: object) -> None:
    # one request of 4 rows fills min_batch_size=4 by itself: it runs at once, so a request sent while it
    # is being run is not in its batch (counting requests, it would wait up to 10 s, and the second would join)
    client.set_model("rows", serialize_model(Rows()), "TORCH", batch_size=8, min_batch_size=4,
                     min_batch_timeout=10_000)
    first: list[np.ndarray] = []

    def four_rows() -> None:
        with store.client() as c:  # type: ignore[attr-defined]
            c.put_tensor("{b}four", np.zeros((4, 1), np.float32))
            c.run_model("rows", "{b}four", "{b}four.out")
            first.append(c.get_tensor("{b}four.out"))

    caller = threading.Thread(target=four_rows)
    caller.start()
    taken = protocol.taken_key(client._tag("{b}"), "CPU")
    while not first and not client._key_cmd("test", taken, "LLEN", taken):
        time.sleep(0.001)
    client.put_tensor("{b}one", np.zeros((1, 1), np.float32))
    client.run_model("rows", "{b}one", "{b}one.out")
    caller.join()
    assert first[0].ravel().tolist() == [4.0] * 4
    assert client.get_tensor("{b}one.out").ravel().tolist() == [1.0]


def test_a_request_flushed_away_is_an_error_not_a_wait(client: Client) -> None:
    client.set_script("neg", "def neg(x):\n    return -x\n")
    client.put_tensor("x", np.ones(1, np.float32))
    client.run_script("neg", "neg", "x", "y")
    pid = worker_pid(client, "x")
    os.kill(pid, signal.SIGSTOP)  # the worker lives (its connection is open) but runs nothing
    caller, errors = in_thread(lambda: client.run_script("neg", "neg", "x", "y"))
    try:
        with store_client(client) as other:
            # queued, or taken by the server for the stopped worker's blocked BLMOVE
            lists = [protocol.queue_key(other._tag("x"), "CPU"), protocol.taken_key(other._tag("x"), "CPU")]
            caller.start()
            while not any(other._key_cmd("t", k, "LLEN", k) for k in lists):
                time.sleep(0.01)
            other.flush_db()  # the request is gone with everything else
        caller.join()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert len(errors) == 1 and "the request is no longer in the store" in str(errors[0]), errors


def store_client(client: Client) -> Client:
    """Another client of the same store."""
    return Client(address=client.addresses, username=client._username, password=client._password)


# -- issue 16: nothing stale, nothing overwritten, no crash loop, no mixed rows ---------------------


def test_a_model_or_script_changed_behind_the_workers_back_is_never_run_stale(client: Client) -> None:
    """A writer in another language stores with plain SET and DEL (no change published): the worker
    compares the loaded copy's header (its id) with the stored one on every request."""
    client.set_script("f", "def f(x):\n    return -x\n")
    client.put_tensor("x", np.ones(2, np.float32))
    client.run_script("f", "f", "x", "y")
    assert client.get_tensor("y").tolist() == [-1.0, -1.0]
    source = b"def f(x):\n    return x * 10\n"
    client._one("f", "SET", "f", fmt.script_header("CPU", len(source)) + source)
    client.run_script("f", "f", "x", "y")
    assert client.get_tensor("y").tolist() == [10.0, 10.0]
    client._one("f", "DEL", "f")
    with pytest.raises(StoreError, match="no script 'f' in the store"):
        client.run_script("f", "f", "x", "y")


def test_an_output_holding_another_kind_is_the_callers_error(client: Client) -> None:
    """A KindError, as a put onto that key would raise, though the worker found it."""
    client.set_script("neg", "def neg(x):\n    return -x\n")
    client.set_model("net", serialize_model(Rows()), "TORCH")
    client.put_tensor("x", np.ones(2, np.float32))
    with pytest.raises(KindError, match=r"run_script\('neg', 'neg'\): .*key 'neg' holds a script \(or function\), "
                                        "not a tensor"):
        client.run_script("neg", "neg", "x", "neg")
    with pytest.raises(KindError, match="key 'net' holds an ML model, not a tensor"):
        client.run_script("neg", "neg", "x", "net")
    assert client.get_script("neg") == "def neg(x):\n    return -x\n"
    assert client.model_exists("net")
    client.run_script("neg", "neg", "x", "y")  # the worker goes on
    assert client.get_tensor("y").tolist() == [-1.0, -1.0]


def test_a_foreign_value_under_a_workers_queue_does_not_stop_it(client: Client) -> None:
    """Issue 16: a string SET (bypassing simctl's client, which refuses the name) under a queue key made
    the worker crash-loop on WRONGTYPE and every run on that shard fail."""
    client.set_script("neg", "def neg(x):\n    return -x\n")
    client.put_tensor("x", np.ones(1, np.float32))
    client.run_script("neg", "neg", "x", "y")
    pid = worker_pid(client, "x")
    queue = protocol.queue_key(client._tag("x"), "CPU")
    client._one(queue, "SET", queue, b"not a list")
    while client._one(queue, "EXISTS", queue):  # the worker deletes it at its next take (within IDLE s)
        time.sleep(0.01)
    client.run_script("neg", "neg", "x", "y")
    assert client.get_tensor("y").tolist() == [-1.0]
    assert worker_pid(client, "x") == pid  # the same worker: it did not die


class Total(torch.nn.Module):
    """Not row-independent: one row, the sum of the rows it saw."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(0, keepdim=True)


def test_a_batched_reply_without_one_row_per_input_row_fails_every_caller(client: Client, store: object) -> None:
    client.set_model("total", serialize_model(Total()), "TORCH", batch_size=4, min_batch_size=4,
                     min_batch_timeout=10_000)
    errors: list[BaseException | None] = [None] * 4
    barrier = threading.Barrier(4)

    def one(i: int) -> None:
        with store.client() as c:  # type: ignore[attr-defined]
            c.put_tensor(f"{{b}}in{i}", np.full((1, 3), i, np.float32))
            barrier.wait()
            try:
                c.run_model("total", f"{{b}}in{i}", f"{{b}}out{i}")
            except StoreError as exc:
                errors[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(e is not None and "a batched model must give one output row per input row" in str(e)
               for e in errors), errors
    assert not any(client.tensor_exists(f"{{b}}out{i}") for i in range(4))
