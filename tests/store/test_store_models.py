"""ML models and scripts in the feature store (storage only: nothing is run), against real
redis-servers: the session's standalone one and 3-shard cluster (tests/store/conftest.py)."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _store_helpers import REDIS_SERVER, make_client, raw_keys

from simctl import ConfigError
from simctl.store import Client, FormatError, KindError, StoreKeyError, format as fmt

# a missing server FAILS these tests (scripts/setup.sh installs it), never skips them
assert os.path.exists(REDIS_SERVER), \
    f"{REDIS_SERVER} is missing: run bash scripts/setup.sh (apt-get install redis-server)"

OVER = fmt.MAX_VALUE_BYTES + 1 - 8  # with the 8 fixed header bytes alone, one byte too many


def random_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def raw_value(c: Client, key: str) -> bytes:
    value = c._one(key, "GET", key)
    assert value is not None, key
    return bytes(value)


# a TorchScript function for set_function: unannotated (x is a Tensor), no comments on its lines
def add_one(x):
    return x + 1


# -- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 1000, 70_000, 3_000_000])  # small values and ones sent in parts
def test_model_bytes_round_trip(client: Client, size: int) -> None:
    names = [f"m{i}" for i in range(6)]  # on a cluster they land on different shards
    models = {n: random_bytes(size, i) for i, n in enumerate(names)}
    for i, n in enumerate(names):
        given = (bytes, bytearray, memoryview)[i % 3](models[n])
        client.set_model(n, given, "ONNX")
    for n in names:
        got = client.get_model(n)
        assert type(got) is bytes and got == models[n]
        assert client.model_exists(n)
    client.set_model("m0", b"replaced", "TORCH")  # replaces
    assert client.get_model("m0") == b"replaced"
    client.delete_model("m0")
    client.delete_model("m0")  # nothing to delete: no error
    assert not client.model_exists("m0")
    with pytest.raises(StoreKeyError, match="get_model: no model 'm0' in the store"):
        client.get_model("m0")
    assert raw_keys(client) == set(names[1:])


def test_metadata_round_trips_through_the_format(client: Client) -> None:
    client.set_model("m", b"\x00model", "TORCH", device="GPU:1", batch_size=8, min_batch_size=2,
                     min_batch_timeout=50, tag="v2", inputs="x", outputs=["y", "z"])
    value = raw_value(client, "m")
    head = fmt.parse_model_header(value)
    assert head == fmt.ModelHeader("TORCH", "GPU:1", 8, 2, 50, "v2", ["x"], ["y", "z"], head.offset)
    assert value[head.offset:] == b"\x00model"
    # the header alone is enough, as the docstring says (GETRANGE key 0 4095)
    assert fmt.parse_model_header(client._one("m", "GETRANGE", "m", 0, 4095)) == head
    client.set_model("d", b"x", "ONNX")
    defaults, data = fmt.decode_model(raw_value(client, "d"))
    assert defaults[:-1] == ("ONNX", "CPU", 0, 0, 0, "", None, None) and data == b"x"


def head_json(value: bytes) -> bytes:
    (size,) = struct.unpack_from("<I", value, 4)
    return value[8:8 + size]


def test_format_as_documented(client: Client) -> None:
    """Values written by hand from the docstring's layout are read; the client's match it."""
    header = {"backend": "ONNX", "device": "CPU", "batch_size": 4, "min_batch_size": 0, "min_batch_timeout": 0,
              "tag": "", "inputs": None, "outputs": ["out"]}
    head = json.dumps(header).encode()
    client._one("hand", "SET", "hand", b"SMM1" + struct.pack("<I", len(head)) + head + b"MODEL")
    assert client.get_model("hand") == b"MODEL" and client.model_exists("hand")
    src = "def f(x):\n    return x\n"
    shead = b'{"device": "GPU"}'
    client._one("hs", "SET", "hs", b"SMS1" + struct.pack("<I", len(shead)) + shead + src.encode())
    assert client.get_script("hs") == src
    client.set_model("mine", b"MODEL", "ONNX", batch_size=4, outputs="out")
    value = raw_value(client, "mine")
    stored = json.loads(head_json(value))
    assert len(stored.pop("id")) == 32  # new each time it is stored (the workers compare it)
    assert value[:4] == b"SMM1" and stored == header and value.endswith(b"MODEL")
    client.set_script("s", src, device="GPU")
    value = raw_value(client, "s")
    stored = json.loads(head_json(value))
    assert value[:4] == b"SMS1" and stored.pop("id") and stored == {"device": "GPU"} and value.endswith(src.encode())


def test_set_model_from_file(client: Client, tmp_path: Path) -> None:
    data = random_bytes(200_000, 7)
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    client.set_model_from_file("f", path, "ONNX", tag="t")
    client.set_model_from_file("g", str(path), "TORCH", device="GPU")
    assert client.get_model("f") == data == client.get_model("g")
    assert fmt.parse_model_header(raw_value(client, "f")).tag == "t"
    with pytest.raises(ConfigError, match=r"set_model_from_file\('x'\): model_file '.*missing.pt' is not a file "
                                          r"\(it does not exist\)"):
        client.set_model_from_file("x", tmp_path / "missing.pt", "TORCH")
    with pytest.raises(ConfigError, match="model_file .* is not a file$"):
        client.set_model_from_file("x", tmp_path, "TORCH")
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"the model is empty \(0 bytes\)"):
        client.set_model_from_file("x", tmp_path / "empty", "TORCH")
    with pytest.raises(ConfigError, match="model_file must be a path, got bytes"):
        client.set_model_from_file("x", data, "TORCH")  # type: ignore[arg-type]
    assert raw_keys(client) == {"f", "g"}


# -- scripts and functions ------------------------------------------------------------------------


def test_scripts_and_functions_round_trip(client: Client, tmp_path: Path) -> None:
    src = "def twice(x):\n    return 2 * x  # é\n"
    client.set_script("s", src)
    assert client.get_script("s") == src
    assert fmt.parse_script_header(raw_value(client, "s")).device == "CPU"
    (tmp_path / "script.py").write_text(src, encoding="utf-8")
    client.set_script_from_file("sf", tmp_path / "script.py", device="GPU:0")
    assert client.get_script("sf") == src
    assert fmt.decode_script(raw_value(client, "sf"))[0].device == "GPU:0"
    client.set_function("fs", "def g(x):\n    return x\n")
    assert client.get_script("fs") == "def g(x):\n    return x\n"
    client.set_function("fn", add_one)
    assert "def add_one(" in client.get_script("fn") and "torch" not in client.get_script("s")
    assert not client.model_exists("s")  # a script is not a model
    client.delete_script("s")
    client.delete_script("s")
    with pytest.raises(StoreKeyError, match="get_script: no script 's'"):
        client.get_script("s")
    assert raw_keys(client) == {"sf", "fs", "fn"}


def test_a_key_holding_another_kind(client: Client) -> None:
    client.put_tensor("t", np.arange(3))
    client.set_model("m", b"bytes", "ONNX")
    client.set_script("s", "def f(x):\n    return x\n")
    with pytest.raises(KindError, match="get_model: key 't' holds a tensor, not an ML model$"):
        client.get_model("t")
    with pytest.raises(KindError, match=r"get_model: key 's' holds a script \(or function\), not an ML model$"):
        client.get_model("s")
    with pytest.raises(KindError, match=r"get_script: key 'm' holds an ML model, not a script \(or function\)$"):
        client.get_script("m")
    with pytest.raises(KindError, match="get_tensor: key 'm' holds an ML model, not a tensor$"):
        client.get_tensor("m")
    client._one("v2", "SET", "v2", b"SMM2" + bytes(20))
    with pytest.raises(FormatError, match=r"a model in format b'SMM2'; this version of simctl reads b'SMM1'"):
        client.get_model("v2")
    client._one("bad", "SET", "bad", b"SMM1" + struct.pack("<I", 2) + b"{}" + b"m")
    with pytest.raises(FormatError, match="damaged simctl model header: no field 'backend'"):
        client.get_model("bad")
    assert not client.model_exists("t") and not client.model_exists("nothing")


# -- prefixing -----------------------------------------------------------------------------------


def test_model_prefixing_follows_the_switch(client: Client) -> None:
    producer = make_client(client.addresses, env={"SSKEYOUT": "p0"})
    consumer = make_client(client.addresses, env={"SSKEYIN": "p0"})
    try:
        producer.set_model("m", b"plain", "ONNX")  # off by default: the name is the key
        producer.set_script("s", "def f(x):\n    return x\n")
        assert raw_keys(client) == {"m", "s"}
        assert consumer.get_model("m") == b"plain" and consumer.model_exists("m")
        producer.use_model_ensemble_prefix(True)
        producer.set_model("m", b"prefixed", "ONNX")
        producer.set_script("s", "def g(x):\n    return x\n")
        producer.set_function("fn", "def h(x):\n    return x\n")
        assert raw_keys(client) == {"m", "s", "p0.m", "p0.s", "p0.fn"}
        assert consumer.get_model("m") == b"plain"  # the consumer's switch is still off
        consumer.use_model_ensemble_prefix(True)
        assert consumer.get_model("m") == b"prefixed" and consumer.get_script("s").startswith("def g")
        assert consumer.poll_model("m", 1, 1) and not consumer.model_exists("s")
        consumer.delete_model("m")
        consumer.delete_script("fn")
        assert raw_keys(client) == {"m", "s", "p0.s"}
        producer.use_model_ensemble_prefix(False)
        assert producer.get_model("m") == b"plain"
        producer.use_tensor_ensemble_prefix(False)  # the tensor switch does not move models
        producer.use_model_ensemble_prefix(True)
        producer.set_model("m2", b"x", "ONNX")
        assert "p0.m2" in raw_keys(client)
    finally:
        producer.close()
        consumer.close()


# -- polling -------------------------------------------------------------------------------------


def test_poll_model(client: Client) -> None:
    assert client.poll_model("m", 5, 3) is False  # never there: False after the tries
    client.put_tensor("m", np.zeros(1))
    assert client.poll_model("m", 0, 2) is False  # a tensor is not a model
    client.delete_tensor("m")  # a model does not replace a tensor unasked
    client.set_model("m", b"x", "ONNX")
    assert client.poll_model("m", 0, 1) is True
    with pytest.raises(ConfigError, match="poll_model: num_tries must be an int >= 1, got 0"):
        client.poll_model("m", 1, 0)
    with pytest.raises(ConfigError, match="poll_model: poll_frequency_ms must be a number >= 0"):
        client.poll_model("m", -1, 1)


# -- bad input: a clear error, nothing written ---------------------------------------------------


BAD_MODEL_ARGS: list[tuple[dict[str, Any], str]] = [
    # the client checks a backend's form only: the worker that runs the model says whether it has it
    ({"backend": 3}, r"backend must be a backend's name \(letters, digits, .*got 3 \(int\)"),
    ({"backend": ""}, r"backend must be a backend's name .*got '' \(str\)"),
    ({"backend": "ON NX"}, r"backend must be a backend's name .*got 'ON NX' \(str\)"),
    ({"device": "gpu"}, r"device must be 'CPU', 'GPU' \(the first GPU\) or 'GPU:n'.*got 'gpu'"),
    ({"device": "CPU:1"}, r"device must be .*got 'CPU:1'"),
    ({"batch_size": -1}, r"batch_size must be an int >= 0 \(0: none\), got -1"),
    ({"batch_size": 2.0}, r"batch_size must be an int >= 0 \(0: none\), got 2.0"),
    ({"min_batch_size": True}, r"min_batch_size must be an int >= 0 \(0: none\), got True"),
    ({"min_batch_timeout": -5}, r"min_batch_timeout must be an int >= 0 \(0: none\), got -5"),
    ({"batch_size": 4, "min_batch_size": 8}, r"min_batch_size \(8\) is larger than batch_size \(4\)"),
    ({"tag": 1}, r"tag must be a str, got 1"),
    ({"inputs": ["x", ""]}, r"inputs must be None, a name or a list of names \(non-empty str\)"),
    ({"outputs": 3}, r"outputs must be None, a name or a list of names"),
    ({"inputs": ["x" * 5000]}, r"its metadata \(inputs, outputs, tag\) take \d+ bytes as JSON; at most 4088"),
]


@pytest.mark.parametrize("kwargs,message", BAD_MODEL_ARGS)
def test_bad_model_arguments(client: Client, tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"backend": "ONNX", **kwargs}
    with pytest.raises(ConfigError, match=r"set_model\('m'\): " + message):
        client.set_model("m", b"model", **args)
    (tmp_path / "m.onnx").write_bytes(b"model")
    with pytest.raises(ConfigError, match=r"set_model_from_file\('m'\): " + message):
        client.set_model_from_file("m", tmp_path / "m.onnx", **args)
    assert raw_keys(client) == set()


def test_min_batch_size_without_batch_size_is_refused(client: Client) -> None:
    """Issue 16: it was silently ignored (batching is off without batch_size)."""
    for arg in ("min_batch_size", "min_batch_timeout"):
        with pytest.raises(ConfigError, match=rf"set_model\('m'\): {arg}=4 without batch_size: it applies only "
                                              "to a batched model"):
            client.set_model("m", b"x", "ONNX", **{arg: 4})
    assert not client.model_exists("m")


def test_the_client_asks_no_plugin_registry_about_a_backend(client: Client, missing_runtime: None) -> None:
    """A backend the driver's process does not have (or has without its runtime) is stored as
    named: the inference worker, which runs it, is the one that needs it and says so
    (test_inference.py: an unknown backend on run_model)."""
    client.set_model("m", b"model", "NOSUCHRT")
    client.set_model("x", b"model", "JAX")
    assert fmt.parse_model_header(raw_value(client, "m")).backend == "NOSUCHRT"
    assert fmt.parse_model_header(raw_value(client, "x")).backend == "JAX"
    assert raw_keys(client) == {"m", "x"}


@pytest.mark.parametrize("model,message", [
    ("text", "model must be bytes .*got str"),
    (np.zeros(3), "model must be bytes .*got ndarray"),
    (None, "model must be bytes .*got NoneType"),
    (b"", r"the model is empty \(0 bytes\)"),
    (memoryview(np.zeros((4, 4))[:, 0]), "model must be a contiguous buffer"),
])
def test_bad_model_bytes(client: Client, model: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=r"set_model\('m'\): " + message):
        client.set_model("m", model, "ONNX")
    assert raw_keys(client) == set()


def test_non_byte_buffers_are_stored_as_their_bytes(client: Client) -> None:
    a = np.arange(6, dtype=np.float32)
    client.set_model("m", memoryview(a), "ONNX")
    assert client.get_model("m") == a.tobytes()


def test_bad_script_arguments(client: Client, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"set_script\('s'\): script must be non-empty TorchScript source text "
                                          r"\(str\), got an empty str"):
        client.set_script("s", "  \n")
    with pytest.raises(ConfigError, match=r"set_script\('s'\): script must be .*got bytes"):
        client.set_script("s", b"def f(x): return x")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"set_script\('s'\): device must be .*got 'TPU'"):
        client.set_script("s", "def f(x):\n    return x\n", device="TPU")
    with pytest.raises(ConfigError, match=r"set_script_from_file\('s'\): cannot read script_file '.*nope.py'"):
        client.set_script_from_file("s", tmp_path / "nope.py")
    (tmp_path / "latin1.py").write_bytes("# \xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"set_script_from_file\('s'\): cannot read script_file .*utf-8"):
        client.set_script_from_file("s", tmp_path / "latin1.py")
    with pytest.raises(ConfigError, match=r"set_script_from_file\('s'\): device must be"):
        client.set_script_from_file("s", tmp_path / "nope.py", device="gpu")
    with pytest.raises(ConfigError, match=r"set_function\('s'\): function must be a Python function or its "
                                          r"TorchScript source \(str\), got int"):
        client.set_function("s", 3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"set_function\('s'\): device must be"):
        client.set_function("s", add_one, device="GPU:x")
    with pytest.raises(ConfigError, match="name"):
        client.set_script("", "def f(x):\n    return x\n")
    assert raw_keys(client) == set()


def test_over_512_mib_is_refused_before_sending(client: Client, kind: str, request: pytest.FixtureRequest,
                                                tmp_path: Path) -> None:
    servers = [request.getfixturevalue("server")] if kind == "standalone" else request.getfixturevalue("cluster")

    def received() -> int:
        return sum(s.raw.info("stats")["total_net_input_bytes"] for s in servers)

    huge = np.zeros(OVER, np.uint8)  # untouched pages: no memory behind them
    sparse = tmp_path / "huge.pt"
    with open(sparse, "wb") as fh:
        fh.truncate(OVER)
    before = received()
    with pytest.raises(ConfigError, match=r"at most 536870912 bytes \(512 MiB"):
        client.set_model("m", memoryview(huge), "ONNX")
    with pytest.raises(ConfigError, match=r"set_model_from_file\('m'\): .*at most 536870912 bytes \(512 MiB"):
        client.set_model_from_file("m", sparse, "TORCH")
    assert received() - before < 10_000  # only the INFO commands themselves
    assert raw_keys(client) == set()
