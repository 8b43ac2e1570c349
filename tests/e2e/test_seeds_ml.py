"""The reference documents' ML examples, run as written (issue 10, "Done
when", first bullet), on the local launcher: the Model guide's and the
Ensemble guide's "ML Models and Scripts" sections.

The documents' code is below as they write it (``create_tf_cnn``,
``timestwo``, ``torch_script_str`` and the ``add_ml_model`` /
``add_function`` / ``add_script`` calls on ``smartsim_model`` and
``smartsim_ensemble``); every change is marked ``# simctl:``:

* ``from smartsim.ml.tf import serialize_model`` -> ``from simctl.ml.tf import serialize_model``;
* the guides use ``Net``, ``Input`` and ``keras`` without defining or
  importing them: ``keras`` and ``Input`` are imported, and ``Net`` is the
  smallest network the guide's shapes fit (one Conv2D, 1 filter, 3x3 kernel,
  on (3, 3, 1) inputs, named "cnn"), as in tests/_ml_models.py;
* the Model guide's calls say ``device="GPU", devices_per_node=2,
  first_device=0``: this machine has no GPU, so the runs that compute use
  ``device="CPU"`` (the Ensemble guide's own ``add_ml_model``,
  ``add_function`` and ``add_script`` calls already say ``"CPU"``);
  the GPU form, as written, is run too
  (:func:`test_the_model_guides_gpu_form_stores_one_copy_per_gpu_and_says_why_it_cannot_run_here`).

The guides show no application: the one here (``APP``) puts its input
tensor, runs the stored models and scripts on it with
``Client().run_model`` / ``run_script`` and writes the results, which the
test compares with the same network run in this process (Keras, torch).
The guides' network is also stored for ONNX, TORCH and TFLITE (the same
weights: tests/_ml_models.py), and everything runs in a standard store
(``exp.create_database`` + ``exp.start(db)`` before the model) and in
colocated ones (``colocate_db_tcp``, ``colocate_db_uds``), the documents
loading models "to the database (colocated or standard)".
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # simctl: the guides use keras without importing it
import numpy as np
import pytest
import redis
import torch
from _lifecycle_helpers import PY, write_script
from _ml_models import onnx_of, torch_twin
from _store_helpers import free_ports
from keras.layers import Conv2D, Input  # simctl: Input, likewise

import simctl
from simctl import Status
from simctl.ml import tflite as ml_tflite
from simctl.ml.torch import serialize_model as serialize_torch
from simctl.store import format as fmt

#: every Net the guide's create_tf_cnn() made, so that the test can run it in this process
#: (create_tf_cnn returns only the serialized model)
NETS: list[Any] = []


class Net(keras.Model):
    """The guides' ``Net``, which they use without showing (simctl: defined here)."""

    def __init__(self) -> None:
        super().__init__(name="cnn")
        self.conv = Conv2D(1, 3, 1)
        NETS.append(self)

    def call(self, x: Any) -> Any:
        return self.conv(x)


# -- the documents' code, as written ------------------------------------------------------------------


def create_tf_cnn():
    """Create a Keras CNN for model purposes

    """
    # simctl: was `from smartsim.ml.tf import serialize_model`
    from simctl.ml.tf import serialize_model
    n = Net()
    input_shape = (3,3,1)
    inputs = Input(input_shape)
    outputs = n(inputs)
    model = keras.Model(inputs=inputs, outputs=outputs, name=n.name)

    return serialize_model(model)


def timestwo(x):
    return 2*x


torch_script_str = "def negate(x):\n\treturn torch.neg(x)\n"


# -- the application --------------------------------------------------------------------------------

# argv[1]: a JSON spec {"x": .npy file, "runs": [[name, fn or null, output], ...], "save": .npz file or null};
# an optional --scale=S (an ensemble member's parameter) multiplies the input
APP = """
    import json, sys
    import numpy as np
    from simctl import Client

    spec = json.load(open(sys.argv[1]))
    scale = float(sys.argv[2].removeprefix("--scale=")) if len(sys.argv) > 2 else 1.0
    client = Client(cluster=False)
    client.put_tensor("x", scale * np.load(spec["x"]))
    for name, fn, out in spec["runs"]:
        if fn is None:
            client.run_model(name, "x", out)
        else:
            client.run_script(name, fn, "x", out)
    if spec["save"]:
        np.savez(spec["save"], **{out: client.get_tensor(out) for _, _, out in spec["runs"]})
    print("done", flush=True)
"""

#: what APP runs in the single-model deployments: (stored name, script function or None, output tensor)
RUNS = [
    ("example_script", "negate", "negated"),
    ("example_func", "timestwo", "doubled"),
    ("cnn", None, "y"),
    ("cnn_onnx", None, "y_onnx"),
    ("cnn_torch", None, "y_torch"),
    ("cnn_tflite", None, "y_tflite"),
]
#: the backend of each model in RUNS (the guides' "cnn" is TF)
BACKENDS = {"cnn": "TF", "cnn_onnx": "ONNX", "cnn_torch": "TORCH", "cnn_tflite": "TFLITE"}


class Cnn:
    """The guides' network: what ``create_tf_cnn()`` returns, the Keras model
    it serialized (to run here), and the same network for the other backends."""

    def __init__(self) -> None:
        keras.utils.set_random_seed(0)
        # the guides' lines, as written:
        # Get and save TF model
        model, inputs, outputs = create_tf_cnn()
        self.model, self.inputs, self.outputs = model, inputs, outputs
        self.net = NETS[-1]
        i = Input((3, 3, 1))
        same = keras.Model(inputs=i, outputs=self.net(i), name="cnn")  # the guide's model again, on its Net
        twin = torch_twin(same)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            self.others = {"ONNX": onnx_of(twin, torch.zeros(1, 3, 3, 1)), "TORCH": serialize_torch(twin),
                           "TFLITE": ml_tflite.serialize_model(same)}
        self.x = np.random.default_rng(7).random((4, 3, 3, 1), dtype=np.float32)

    def add_the_other_backends(self, entity: Any) -> None:
        """The same network through ONNX, TORCH and TFLITE."""
        for name, backend in BACKENDS.items():
            if backend != "TF":
                entity.add_ml_model(name=name, backend=backend, model=self.others[backend], device="CPU")

    def expected(self, scale: float = 1.0) -> dict[str, np.ndarray]:
        """Each output of RUNS, computed in this process (Keras for the network, torch for the scripts)."""
        x = scale * self.x
        y = np.asarray(self.net(x))
        xt = torch.from_numpy(x)
        return {"negated": torch.neg(xt).numpy(), "doubled": timestwo(xt).numpy(), "y": y, "y_onnx": y,
                "y_torch": y, "y_tflite": y}


def check_outputs(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert sorted(got) == sorted(want)
    for key, value in want.items():
        assert got[key].shape == value.shape and got[key].dtype == np.float32, (key, got[key].shape, got[key].dtype)
        np.testing.assert_allclose(got[key], value, rtol=1e-5, atol=1e-5, err_msg=key)


@pytest.fixture(scope="module")
def cnn() -> Cnn:
    return Cnn()


@pytest.fixture
def standard(stores: Any) -> tuple[simctl.Experiment, Any]:
    """An experiment and its standard store (one server on the loopback interface), started before any
    model: the session's (tests/conftest.py ``stores``), emptied for the test."""
    shared = stores.orchestrator(1).emptied()
    return shared.exp, shared.db


def app_settings(exp: simctl.Experiment, where: Path, cnn: Cnn, runs: list[tuple[str, str | None, str]],
                 save: str | None) -> simctl.RunSettings:
    """Run settings of APP, written in ``where``, running ``runs`` on ``cnn.x``."""
    np.save(where / "x.npy", cnn.x)
    spec = {"x": str(where / "x.npy"), "runs": runs, "save": save and str(where / save)}
    (where / "spec.json").write_text(json.dumps(spec))
    write_script(where / "app.py", APP)
    return exp.create_run_settings(exe=PY, exe_args=[str(where / "app.py"), str(where / "spec.json")])


def completed(exp: simctl.Experiment, entity: Any, where: Path) -> None:
    # each model's output files are in its path (a member's: <ensemble path>/<member>, issue 19)
    dirs = {m.name: Path(m.path) if m.path else where for m in getattr(entity, "models", [entity])}
    errs = {n: (d / f"{n}.err").read_text()[-3000:] for n, d in dirs.items()}
    assert exp.get_status(entity) == [Status.COMPLETED] * len(dirs), errs
    assert all((d / f"{n}.out").read_text() == "done\n" for n, d in dirs.items()), errs


def add_as_the_model_guide_says_on_cpu(smartsim_model: simctl.Model, cnn: Cnn) -> None:
    """The Model guide's three calls, with device="CPU" (this machine has no GPU; the guide's
    device="GPU", devices_per_node=2, first_device=0 is run in the GPU test)."""
    model, inputs, outputs = cnn.model, cnn.inputs, cnn.outputs
    smartsim_model.add_ml_model(name="cnn", backend="TF", model=model, device="CPU", inputs=inputs,
                                outputs=outputs)  # simctl: was device="GPU", devices_per_node=2, first_device=0
    smartsim_model.add_function(name="example_func", function=timestwo,
                                device="CPU")  # simctl: was device="GPU", devices_per_node=2, first_device=0
    smartsim_model.add_script(name="example_script", script=torch_script_str,
                              device="CPU")  # simctl: was device="GPU", devices_per_node=2, first_device=0


# -- a standard store -----------------------------------------------------------------------------------


def test_the_model_guides_examples_in_a_standard_store(tmp_path, cnn, standard):
    exp, db = standard
    rs = app_settings(exp, tmp_path, cnn, RUNS, "out.npz")
    smartsim_model = exp.create_model("smartsim_model", rs, path=str(tmp_path))
    add_as_the_model_guide_says_on_cpu(smartsim_model, cnn)
    cnn.add_the_other_backends(smartsim_model)
    exp.start(smartsim_model)
    completed(exp, smartsim_model, tmp_path)
    with np.load(tmp_path / "out.npz") as out:
        check_outputs(dict(out), cnn.expected())
    r = _raw(db)  # what was stored: each under its name, with its backend, on the CPU
    headers = {name: fmt.parse_model_header(r.get(name)) for name in BACKENDS}
    assert {name: (h.backend, h.device) for name, h in headers.items()} == {n: (b, "CPU") for n, b in BACKENDS.items()}
    assert fmt.decode_model(r.get("cnn"))[1] == cnn.model
    with db.client() as c:
        assert c.get_script("example_script") == torch_script_str
        assert "def timestwo(x" in c.get_script("example_func")


def _raw(db: Any) -> redis.Redis:
    host, _, port = db.get_address()[0].rpartition(":")
    return redis.Redis(host=host, port=int(port), username=db.username, password=db.password)


def test_the_ensemble_guides_examples_each_member_on_its_own_prefixed_tensors(tmp_path, cnn, standard):
    """The Ensemble guide's three calls as written (device="CPU"), with key
    prefixing on: each member puts its own input ``x`` (its parameter
    ``scale`` times the common input), which its client prefixes with the
    member's name (SSKEYOUT); run_model and run_script read the member's
    ``<member>.x`` and write ``<member>.<output>``, while the model and the
    scripts, stored once for the ensemble, are read unprefixed."""
    exp, db = standard
    rs = app_settings(exp, tmp_path, cnn, RUNS[:3], None)
    smartsim_ensemble = exp.create_ensemble("ensemble", params={"scale": [1.0, -3.0]}, params_as_args=["scale"],
                                            run_settings=rs, path=str(tmp_path))
    smartsim_ensemble.enable_key_prefixing()
    model, inputs, outputs = cnn.model, cnn.inputs, cnn.outputs
    smartsim_ensemble.add_ml_model(name="cnn", backend="TF", model=model, device="CPU", inputs=inputs, outputs=outputs)
    smartsim_ensemble.add_function(name="example_func", function=timestwo, device="CPU")
    smartsim_ensemble.add_script(name="example_script", script=torch_script_str, device="CPU")
    with db.client() as c:  # nothing left from another test under the names the members write
        for key in ("x", "y", "negated", "doubled"):
            c.delete_tensor(key)
    exp.start(smartsim_ensemble)
    completed(exp, smartsim_ensemble, tmp_path)
    members = {m.name: m.params["scale"] for m in smartsim_ensemble}
    assert len(members) == 2
    with db.client() as c:  # the driver's client: no prefix, so the member's prefix is written out
        for member, scale in members.items():
            want = cnn.expected(scale)
            np.testing.assert_allclose(c.get_tensor(f"{member}.x"), scale * cnn.x, rtol=1e-6)
            got = {out: c.get_tensor(f"{member}.{out}") for _, _, out in RUNS[:3]}
            check_outputs(got, {out: want[out] for _, _, out in RUNS[:3]})
        assert not any(c.tensor_exists(k) for k in ("x", "y", "negated", "doubled"))  # every key was prefixed
        assert c.model_exists("cnn") and not any(c.key_exists(f"{m}.cnn") for m in members)


# -- colocated stores -----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["tcp", "uds"])
def test_the_model_guides_examples_in_a_colocated_store(tmp_path, cnn, transport):
    """The same calls and the same application, the model with its own store
    (loaded by the store's supervisor before the application starts)."""
    exp = simctl.Experiment("seeds-ml", exp_path=str(tmp_path / "exp"), launcher="local")
    rs = app_settings(exp, tmp_path, cnn, RUNS, "out.npz")
    smartsim_model = exp.create_model("smartsim_model", rs, path=str(tmp_path))
    if transport == "tcp":
        smartsim_model.colocate_db_tcp(port=free_ports(1))
    else:
        smartsim_model.colocate_db_uds()
    add_as_the_model_guide_says_on_cpu(smartsim_model, cnn)
    cnn.add_the_other_backends(smartsim_model)
    exp.start(smartsim_model)
    completed(exp, smartsim_model, tmp_path)
    with np.load(tmp_path / "out.npz") as out:
        check_outputs(dict(out), cnn.expected())


# -- the Model guide's GPU form ---------------------------------------------------------------------------

GPU_APP = """
    import json
    import numpy as np
    from simctl import Client
    from simctl.store import StoreError

    client = Client(cluster=False)
    client.put_tensor("x", np.ones((1, 3, 3, 1), np.float32))
    errors = {}
    for gpu in (0, 1):  # offset 0 runs the copy on GPU:0, offset 1 the one on GPU:1
        for what, run in [("cnn", lambda: client.run_model_multigpu("cnn", gpu, 0, 2, "x", "y")),
                          ("example_func", lambda: client.run_script_multigpu("example_func", "timestwo", "x", "y",
                                                                              gpu, 0, 2)),
                          ("example_script", lambda: client.run_script_multigpu("example_script", "negate", "x",
                                                                                "y", gpu, 0, 2))]:
            try:
                run()
                errors[f"{what}.GPU:{gpu}"] = None
            except StoreError as exc:
                errors[f"{what}.GPU:{gpu}"] = str(exc)
    print(json.dumps(errors), flush=True)
"""

#: what the GPU form stores: each name once per GPU, and the function GPU_APP runs of each
GPU_KEYS = [f"{name}.GPU:{i}" for name in ("cnn", "example_func", "example_script") for i in (0, 1)]
FN = {"cnn": "", "example_func": "timestwo", "example_script": "negate"}


def gpu_run(key: str) -> str:
    """How the client names the run of ``key`` in its errors: ``run_model('cnn.GPU:0')``..."""
    fn = FN[key.partition(".")[0]]
    return f"run_script({key!r}, {fn!r})" if fn else f"run_model({key!r})"


def add_as_the_model_guide_says(smartsim_model: simctl.Model, cnn: Cnn) -> None:
    """The Model guide's three calls, exactly as written."""
    model, inputs, outputs = cnn.model, cnn.inputs, cnn.outputs
    smartsim_model.add_ml_model(name="cnn", backend="TF", model=model, device="GPU", devices_per_node=2, first_device=0, inputs=inputs, outputs=outputs)  # noqa: E501
    smartsim_model.add_function(name="example_func", function=timestwo, device="GPU", devices_per_node=2, first_device=0)  # noqa: E501
    smartsim_model.add_script(name="example_script", script=torch_script_str, device="GPU", devices_per_node=2, first_device=0)  # noqa: E501


def gpu_errors(tmp_path: Path) -> dict[str, str | None]:
    out = (tmp_path / "smartsim_model.out").read_text()
    assert out, (tmp_path / "smartsim_model.err").read_text()
    return json.loads(out.splitlines()[-1])


def test_the_model_guides_gpu_form_stores_one_copy_per_gpu_and_says_why_it_cannot_run_here(tmp_path, cnn):
    """device="GPU", devices_per_node=2, first_device=0 stores each object
    once per GPU (``cnn.GPU:0``, ``cnn.GPU:1``...; nothing under the bare
    name) for the device GPU:i. This machine has no GPU, so running them
    fails, each run with an error saying why: in a store with only a CPU
    inference worker (the default), no worker serves the GPU; in one started
    with GPU workers (``ml_devices``), TensorFlow and torch see no GPU."""
    exp = simctl.Experiment("seeds-ml", exp_path=str(tmp_path / "exp"), launcher="local")
    write_script(tmp_path / "gpu_app.py", GPU_APP)
    rs = exp.create_run_settings(exe=PY, exe_args=[str(tmp_path / "gpu_app.py")])

    # a standard store, with the default inference worker (CPU)
    db = exp.create_database(port=free_ports(1))
    exp.start(db)
    try:
        smartsim_model = exp.create_model("smartsim_model", rs, path=str(tmp_path))
        add_as_the_model_guide_says(smartsim_model, cnn)
        exp.start(smartsim_model)
        assert exp.get_status(smartsim_model) == [Status.COMPLETED], (tmp_path / "smartsim_model.err").read_text()
        r = _raw(db)
        stored = sorted(k.decode() for k in r.scan_iter() if not k.startswith(b"simctl.ml{"))  # not the workers'
        assert stored == sorted([*GPU_KEYS, "x"]), stored  # one copy per GPU, none under the bare names; no output
        headers = {k: (fmt.parse_model_header if k.startswith("cnn.") else fmt.parse_script_header)(r.get(k))
                   for k in GPU_KEYS}
        assert {k: h.device for k, h in headers.items()} == {k: k.rpartition(".")[2] for k in GPU_KEYS}
        assert fmt.decode_model(r.get("cnn.GPU:1"))[1] == cnn.model
        assert fmt.decode_script(r.get("example_script.GPU:0"))[1] == torch_script_str
        address = db.get_address()[0]
    finally:
        exp.stop(db)
    errors = gpu_errors(tmp_path)
    assert sorted(errors) == sorted(GPU_KEYS)
    for key, error in errors.items():
        kind, device = "model" if key.startswith("cnn.") else "script", key.rpartition(".")[2]
        assert error == (f"{gpu_run(key)}: {kind} {key!r} runs on {device}, and no inference worker serves "
                         f"{device} on the store at {address} (start the store with ml_devices including "
                         f"{device!r})"), error

    # a colocated store with an inference worker for each GPU the guide names
    (tmp_path / "smartsim_model.out").unlink()
    exp = simctl.Experiment("seeds-ml-gpu", exp_path=str(tmp_path / "exp-gpu"), launcher="local")
    smartsim_model = exp.create_model("smartsim_model", rs, path=str(tmp_path))
    smartsim_model.colocate_db_uds(ml_devices=["CPU", "GPU:0", "GPU:1"])
    add_as_the_model_guide_says(smartsim_model, cnn)
    exp.start(smartsim_model)
    assert exp.get_status(smartsim_model) == [Status.COMPLETED], (tmp_path / "smartsim_model.err").read_text()
    errors = gpu_errors(tmp_path)
    assert sorted(errors) == sorted(GPU_KEYS)
    for key, error in errors.items():
        device = key.rpartition(".")[2]
        if key.startswith("cnn."):
            why = "model {key!r} cannot be loaded on {device} (which the worker sees as GPU 0): device 'GPU:0': " \
                  "TensorFlow sees 0 GPU(s) here (tensorflow-cpu, or no GPU)"
        else:
            why = "script {key!r} cannot be loaded on {device} (which the worker sees as GPU 0): device 'GPU:0': " \
                  "torch sees 0 GPU(s) here (a CPU-only torch build, or no GPU)"
        assert error == f"{gpu_run(key)}: {why.format(key=key, device=device)}", error
