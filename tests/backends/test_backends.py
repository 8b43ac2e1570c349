"""The ML backend plugins ONNX and TORCH, each with a real small model through
its real runtime (onnxruntime, torch: CPU builds, installed by scripts/setup.sh),
the device strings, bytes that are not a model, the serialization helpers,
and how ``simctl plugins list`` shows the backends with and without their
runtime."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from _paths import REPO

import simctl
from simctl.core.backend import parse_device
from simctl.ml import read_model
from simctl.ml.torch import serialize_function, serialize_model
from simctl.plugins.backends import onnx as onnx_plugin, torch as torch_plugin
from simctl.plugins.backends.onnx import OnnxBackend
from simctl.plugins.backends.torch import TorchBackend

#: a batch of 5 rows of 4 features, the MLP's input
X = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).eval()


def _expected(net: torch.nn.Module) -> np.ndarray:
    """The MLP's output on X, run in-process by torch."""
    with torch.no_grad():
        return net(torch.from_numpy(X)).numpy()


def _onnx_bytes(net: torch.nn.Module) -> bytes:
    """The MLP exported to ONNX the way users do it (the TorchScript-based exporter;
    the default dynamo exporter needs onnxscript, which simctl does not install)."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.from_numpy(X),), buf, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    return buf.getvalue()


# -- device strings -------------------------------------------------------------------


@pytest.mark.parametrize("device, parsed", [("CPU", ("CPU", None)), ("GPU", ("GPU", None)),
                                            ("GPU:0", ("GPU", 0)), ("GPU:12", ("GPU", 12))])
def test_device_strings_accepted(device, parsed):
    assert parse_device(device) == parsed


@pytest.mark.parametrize("device", ["cpu", "gpu", "CPU:0", "GPU:", "GPU:-1", "GPU:x", "GPU0", "TPU", " CPU", "",
                                    None, 0, b"CPU"])
def test_bad_device_strings_are_config_errors_listing_the_forms(device):
    with pytest.raises(simctl.ConfigError) as err:
        parse_device(device)
    msg = str(err.value)
    assert msg.startswith("device must be") and "'CPU'" in msg and "'GPU:n'" in msg and repr(device) in msg


@pytest.mark.parametrize("backend", [OnnxBackend, TorchBackend])
def test_backends_check_the_device_before_loading(backend):
    with pytest.raises(simctl.ConfigError, match="device must be .*got 'GPU:one'"):
        backend().load(b"whatever", device="GPU:one")


def test_a_gpu_on_a_cpu_only_runtime_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")  # CI's torch is the CPU build: never skipped there
    net = _mlp()
    with pytest.raises(simctl.ConfigError, match=r"device 'GPU:0': torch sees 0 GPU\(s\)"):
        TorchBackend().load(serialize_model(net), device="GPU:0")
    with pytest.raises(simctl.ConfigError, match="device 'GPU': this onnxruntime runs on .*onnxruntime-gpu"):
        OnnxBackend().load(_onnx_bytes(net), device="GPU")


# -- ONNX -----------------------------------------------------------------------------------


def test_onnx_runs_the_mlp_like_torch_does():
    net = _mlp()
    backend = OnnxBackend()
    handle = backend.load(_onnx_bytes(net), "CPU")
    (y,) = backend.run(handle, [X])
    assert isinstance(y, np.ndarray) and y.shape == (5, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, _expected(net), rtol=0, atol=1e-6)
    (one,) = backend.run(handle, [X[:1]])  # another batch size: the exported axis is dynamic
    np.testing.assert_allclose(one, _expected(net)[:1], rtol=0, atol=1e-6)


def test_onnx_model_from_a_file_with_named_inputs_and_outputs(tmp_path):
    net = _mlp()
    path = tmp_path / "mlp.onnx"
    path.write_bytes(_onnx_bytes(net))
    backend = OnnxBackend()
    handle = backend.load(read_model(model_path=path), "CPU", inputs=["x"], outputs=["y"])
    np.testing.assert_allclose(backend.run(handle, [X])[0], _expected(net), rtol=0, atol=1e-6)
    with pytest.raises(simctl.ConfigError, match=r"inputs \['z'\]: the ONNX model has no 'z'; its inputs are \['x'\]"):
        backend.load(path.read_bytes(), inputs=["z"])
    with pytest.raises(simctl.ConfigError, match=r"outputs .*no 'out'; its outputs are \['y'\]"):
        backend.load(path.read_bytes(), outputs=["out"])


def test_onnx_run_errors_say_what_was_given():
    backend = OnnxBackend()
    handle = backend.load(_onnx_bytes(_mlp()))
    with pytest.raises(simctl.ConfigError, match=r"takes 1 input\(s\) \['x'\]; got 2"):
        backend.run(handle, [X, X])
    with pytest.raises(simctl.ConfigError, match=r"failed on inputs \(x: float32\[5, 7\]\)"):
        backend.run(handle, [np.zeros((5, 7), np.float32)])
    # the session still serves after a failed run
    np.testing.assert_allclose(backend.run(handle, [X])[0], _expected(_mlp()), rtol=0, atol=1e-6)


# -- TORCH ----------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["script", "trace", "jit.save"])
def test_torch_runs_the_mlp_like_torch_does(how, tmp_path):
    net = _mlp()
    if how == "script":
        blob = serialize_model(net)
    elif how == "trace":
        blob = serialize_model(net, example_inputs=torch.from_numpy(X))
    else:  # made with torch's own tools and given as a file
        torch.jit.save(torch.jit.script(net), str(tmp_path / "mlp.pt"))
        blob = read_model(model_path=tmp_path / "mlp.pt")
    backend = TorchBackend()
    handle = backend.load(blob, "CPU")
    (y,) = backend.run(handle, [X])
    assert isinstance(y, np.ndarray) and y.shape == (5, 3) and y.dtype == np.float32
    np.testing.assert_allclose(y, _expected(net), rtol=0, atol=1e-6)


def test_torch_takes_read_only_arrays_and_returns_every_output():
    class Two(torch.nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return a + b, a * b

    a = np.frombuffer(np.arange(6, dtype=np.float64).tobytes(), dtype=np.float64).reshape(2, 3)  # read-only
    assert not a.flags.writeable
    backend = TorchBackend()
    s, p = backend.run(backend.load(serialize_model(Two())), [a, np.full((2, 3), 2.0)])
    np.testing.assert_array_equal(s, a + 2)
    np.testing.assert_array_equal(p, a * 2)


def test_torch_run_errors_say_what_was_given():
    backend = TorchBackend()
    handle = backend.load(serialize_model(_mlp()))
    with pytest.raises(simctl.ConfigError, match=r"TORCH model failed on 1 input\(s\) \['float32\[5, 7\]'\]"):
        backend.run(handle, [np.zeros((5, 7), np.float32)])
    np.testing.assert_allclose(backend.run(handle, [X])[0], _expected(_mlp()), rtol=0, atol=1e-6)


def negate(x):
    return torch.neg(x)


def timestwo(x):
    return torch.mul(x, 2)


def test_torch_scripts_and_functions():
    backend = TorchBackend()
    source = "def negate(x):\n    return torch.neg(x)\n\ndef plus(a, b):\n    return a + b\n"
    script = backend.load_script(source, "CPU")
    np.testing.assert_array_equal(backend.run_script(script, "negate", [X])[0], -X)
    np.testing.assert_array_equal(backend.run_script(script, "plus", [X, X])[0], X + X)

    text = serialize_function(timestwo)
    assert isinstance(text, str) and text.startswith("def timestwo(")
    fn = backend.load_script(text.encode())  # bytes are accepted too
    np.testing.assert_array_equal(backend.run_script(fn, "timestwo", [X])[0], X * 2)

    with pytest.raises(simctl.ConfigError, match=r"no function 'times3'; it has \['timestwo'\]"):
        backend.run_script(fn, "times3", [X])
    with pytest.raises(simctl.ConfigError, match="not TorchScript it can compile"):
        backend.load_script("def broken(x:\n")
    with pytest.raises(simctl.ConfigError, match="must be TorchScript source text"):
        backend.load_script("")


def test_onnx_has_no_scripts():
    with pytest.raises(simctl.ConfigError, match="backend 'ONNX' runs no scripts or functions; TORCH does"):
        OnnxBackend().load_script("def negate(x):\n    return -x\n")


def test_serialization_helpers_reject_what_they_cannot_serialize():
    class Untraceable(torch.nn.Module):
        def forward(self, x):
            return x.numpy()  # not TorchScript

    with pytest.raises(simctl.ConfigError, match="torch.jit.script failed on Untraceable .*example_inputs="):
        serialize_model(Untraceable())
    with pytest.raises(simctl.ConfigError, match="takes a torch.nn.Module; got function"):
        serialize_model(timestwo)
    with pytest.raises(simctl.ConfigError, match="takes a Python function; got 3"):
        serialize_function(3)


def test_read_model_takes_bytes_or_a_file_not_both(tmp_path):
    assert read_model(b"abc") == b"abc"
    with pytest.raises(simctl.ConfigError, match="not both"):
        read_model(b"abc", model_path=tmp_path / "m")
    with pytest.raises(simctl.ConfigError, match="not neither"):
        read_model()
    with pytest.raises(simctl.ConfigError, match="model_path .*missing.onnx' cannot be read"):
        read_model(model_path=tmp_path / "missing.onnx")


# -- bytes that are not a model of the backend -----------------------------------------------


@pytest.mark.parametrize("backend, what", [(OnnxBackend, "an ONNX model"), (TorchBackend, "a TorchScript model")])
def test_bytes_that_are_not_a_model_name_the_backend(backend, what):
    net = _mlp()
    other = serialize_model(net) if backend is OnnxBackend else _onnx_bytes(net)  # the other backend's model
    for blob in (b"", b"not a model at all", other):
        with pytest.raises(simctl.ConfigError) as err:
            backend().load(blob)
        assert f"backend '{backend.name}': the {len(blob)} bytes given are not {what}" in str(err.value)
    with pytest.raises(simctl.ConfigError, match=f"{backend.name} model must be bytes"):
        backend().load("mlp.onnx")


# -- plugins list ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tree_metadata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding simctl's installed metadata as ``pip install -e .``
    writes it from this tree's pyproject.toml (name, version, entry points), put
    first on the subprocess' path: the shared test venv may hold another
    checkout's metadata. Where the tree itself is installed this changes nothing."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    root = tmp_path_factory.mktemp("meta")
    info = root / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = ["[simctl]"] + [f"{k} = {v}" for k, v in project["entry-points"]["simctl"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return root


def _plugins_list(meta: Path, *args: str, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``simctl plugins list ARGS`` in a fresh interpreter where the modules in
    ``hide`` cannot be imported (as if not installed)."""
    code = ("import sys\n"
            f"for m in {list(hide)!r}: sys.modules[m] = None  # import fails, find_spec says absent\n"
            "from simctl.cli import main\n"
            "sys.argv[0] = 'simctl'\n"
            "main()\n")
    env = {k: v for k, v in os.environ.items() if k != "SIMCTL_DISABLE_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(meta), str(REPO / "src")])
    return subprocess.run([sys.executable, "-c", code, "plugins", "list", *args], capture_output=True, text=True,
                          env=env)


def test_entry_points_register_each_backend_from_its_own_module():
    eps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["simctl"]
    assert eps["onnx"] == "simctl.plugins.backends.onnx" and eps["torch"] == "simctl.plugins.backends.torch"
    assert eps["tf"] == "simctl.plugins.backends.tf" and eps["tflite"] == "simctl.plugins.backends.tflite"
    assert onnx_plugin.simctl_register_backends() == [OnnxBackend]
    assert torch_plugin.simctl_register_backends() == [TorchBackend]


def test_plugins_list_shows_every_backend_built_in_and_available(tree_metadata):
    proc = _plugins_list(tree_metadata, "--json", "--family", "backend")
    assert proc.returncode == 0, proc.stderr
    data = {r["name"]: r for r in json.loads(proc.stdout)}
    for name in ("onnx", "torch", "tf", "tflite"):
        assert data[name]["provides"] == {"backend": [name.upper()]}
        assert (data[name]["builtin"], data[name]["status"], data[name]["distribution"]) == (True, "ok", "simctl-hpc")
    table = _plugins_list(tree_metadata, "--family", "backend")
    assert table.returncode == 0, table.stderr
    rows = {line.split()[1]: line for line in table.stdout.splitlines() if line.startswith("│")}
    for name in ("onnx", "torch", "tf", "tflite"):
        assert name.upper() in rows[name] and "built-in" in rows[name] and " ok " in rows[name]


@pytest.mark.parametrize("hidden, plugin, extra", [("onnxruntime", "onnx", "'simctl-hpc[onnx]'"),
                                                   ("torch", "torch", "'simctl-hpc[torch]'"),
                                                   ("tensorflow", "tf", "'simctl-hpc[tf]'"),
                                                   ("ai_edge_litert", "tflite", "'simctl-hpc[tflite]'")])
def test_plugins_list_names_the_extra_when_the_runtime_is_missing(tree_metadata, hidden, plugin, extra):
    proc = _plugins_list(tree_metadata, "--json", hide=(hidden,))
    assert proc.returncode == 0, proc.stderr
    data = {r["name"]: r for r in json.loads(proc.stdout)}
    rec = data[plugin]
    assert rec["status"] == "unavailable" and rec["builtin"] is True
    assert rec["unavailable"] == {plugin.upper(): f"{hidden} is not installed: pip install {extra}"}
    other = data["torch" if plugin == "onnx" else "onnx"]
    assert other["status"] == "ok"  # the other backend is not affected
    table = _plugins_list(tree_metadata, "--family", "backend", hide=(hidden,))
    row = next(line for line in table.stdout.splitlines() if line.startswith(f"│ {plugin} "))
    assert "built-in" in row and f"unavailable: {plugin.upper()}: {hidden} is not installed: pip install" in row


def test_plugins_list_table_shows_the_extra(tree_metadata):
    table = _plugins_list(tree_metadata, "--family", "backend", hide=("onnxruntime",))
    assert "pip install 'simctl-hpc[onnx]'" in table.stdout


def test_load_without_the_runtime_names_the_extra():
    code = ("import sys; sys.modules['onnxruntime'] = None\n"
            "import simctl\n"
            "from simctl.plugins.backends.onnx import OnnxBackend\n"
            "reason = \"onnxruntime is not installed: pip install 'simctl-hpc[onnx]'\"\n"
            "assert OnnxBackend.unavailable_reason() == reason\n"
            "try:\n"
            "    OnnxBackend().load(b'x')\n"
            "except simctl.ConfigError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "backend 'ONNX' cannot be used here: onnxruntime does not import" in proc.stdout
    assert "pip install 'simctl-hpc[onnx]'" in proc.stdout


def test_listing_plugins_imports_no_runtime(tree_metadata):
    code = ("import sys\nimport simctl\n"
            "p = simctl.make_plugins(); p.registries\n"
            "assert {'ONNX', 'TORCH', 'TF', 'TFLITE'} <= set(p.names('backend')), p.names('backend')\n"
            "print(sorted(m for m in ('torch', 'onnxruntime', 'onnx', 'tensorflow', 'keras', 'ai_edge_litert')"
            " if m in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree_metadata), str(REPO / "src")]))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
