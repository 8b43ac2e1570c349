"""Every backend's model run by the inference workers, in a standard store
(one server) and in a colocated store: the documents' Keras CNN, and the same
network (same weights) through TFLITE, TORCH and ONNX."""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _ml_models import the_cnn_for_every_backend
from _store_helpers import free_ports

import simctl
from simctl.store import Client, StoreError

BACKENDS = ["TF", "TFLITE", "TORCH", "ONNX"]


@pytest.fixture(scope="module")
def cnn() -> tuple[Any, dict[str, tuple[bytes, dict[str, Any]]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return the_cnn_for_every_backend()


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(7).random((4, 3, 3, 1), dtype=np.float32)


@pytest.fixture
def client(stores: Any) -> Iterator[Client]:
    """A client of the session's one-server store (started by an experiment), emptied for the test."""
    with stores.orchestrator(1).emptied().db.client() as c:
        yield c


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_in_a_standard_store(client: Client, cnn: Any, x: np.ndarray, backend: str) -> None:
    keras_model, models = cnn
    blob, kwargs = models[backend]
    client.set_model(f"cnn-{backend}", blob, backend, **kwargs)
    client.put_tensor("x", x)
    client.run_model(f"cnn-{backend}", "x", f"y-{backend}")
    y = client.get_tensor(f"y-{backend}")
    assert y.shape == (4, 1, 1, 1)
    np.testing.assert_allclose(y, np.asarray(keras_model(x)), rtol=1e-5, atol=1e-6)


def test_a_batched_tf_model_gives_each_caller_its_rows(client: Client, cnn: Any, x: np.ndarray) -> None:
    keras_model, models = cnn
    blob, kwargs = models["TF"]
    client.set_model("cnn-batched", blob, "TF", batch_size=16, min_batch_size=2, min_batch_timeout=20, **kwargs)
    for i in range(3):
        client.put_tensor(f"x{i}", x[i:i + 1 + i])
        client.run_model("cnn-batched", f"x{i}", f"y{i}")
        np.testing.assert_allclose(client.get_tensor(f"y{i}"), np.asarray(keras_model(x[i:i + 1 + i])),
                                   rtol=1e-5, atol=1e-6)


APP = """
import json, sys
import numpy as np
from simctl.store import Client, StoreError
spec = json.load(open(sys.argv[1]))
c = Client()
x = np.load(spec["x"])
c.put_tensor("x", x)
out = {}
for backend, (path, kwargs) in spec["models"].items():
    c.set_model_from_file("cnn", path, backend, **kwargs)
    c.run_model("cnn", "x", "y")
    out[backend] = c.get_tensor("y").tolist()
print(json.dumps(out))
"""


@pytest.mark.parametrize("transport", ["tcp", "uds"])
def test_every_backend_in_a_colocated_store(tmp_path: Path, cnn: Any, x: np.ndarray, transport: str) -> None:
    keras_model, models = cnn
    spec: dict[str, Any] = {"x": str(tmp_path / "x.npy"), "models": {}}
    np.save(tmp_path / "x.npy", x)
    for backend, (blob, kwargs) in models.items():
        (tmp_path / f"cnn.{backend}").write_bytes(blob)
        spec["models"][backend] = [str(tmp_path / f"cnn.{backend}"), kwargs]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "app.py").write_text(APP)
    exp = simctl.Experiment("colocated", exp_path=str(tmp_path), launcher="local")
    rs = exp.create_run_settings(exe=sys.executable, exe_args=[str(tmp_path / "app.py"), str(tmp_path / "spec.json")])
    model = exp.create_model("app", rs, path=str(tmp_path))
    if transport == "tcp":
        model.colocate_db_tcp(port=free_ports(1))
    else:
        model.colocate_db_uds()
    exp.start(model)
    assert exp.get_status(model) == [simctl.Status.COMPLETED], (tmp_path / "app.err").read_text()[-3000:]
    got = json.loads((tmp_path / "app.out").read_text().splitlines()[-1])
    assert sorted(got) == sorted(BACKENDS)
    for backend in BACKENDS:
        np.testing.assert_allclose(np.asarray(got[backend], np.float32), np.asarray(keras_model(x)),
                                   rtol=1e-5, atol=1e-6, err_msg=backend)


@pytest.mark.parametrize("backend, words", [("TF", "not a TF frozen graph"), ("TFLITE", "TFLITE"),
                                            ("TORCH", "not a TorchScript model"), ("ONNX", "not an ONNX model")])
def test_bytes_that_are_not_a_model_of_the_backend(client: Client, backend: str, words: str) -> None:
    client.set_model(f"junk-{backend}", b"these bytes are no model at all", backend,
                     **({"inputs": ["x"], "outputs": ["y"]} if backend == "TF" else {}))
    client.put_tensor("x", np.zeros((1, 3, 3, 1), np.float32))
    with pytest.raises(StoreError, match=rf"model 'junk-{backend}' cannot be loaded: .*{words}"):
        client.run_model(f"junk-{backend}", "x", "y")
    client.set_script("ok", "def f(x):\n    return x\n")
    client.run_script("ok", "f", "x", "y")  # the worker still serves
