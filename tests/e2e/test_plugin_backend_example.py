"""docs/plugin-authors.md's ML backend section against the example package
``examples/simctl-npz`` and a real store.

* The doc shows the example's module and pyproject byte for byte; the module
  imports only public names (no runtime at the top either: numpy is imported
  through ``Backend.runtime`` when a model is loaded).
* Pip-installed for real into a directory of its own (as
  test_plugin_authors_doc installs simctl-myslurm), ``simctl plugins list``
  shows it as an external backend.
* A store started by an experiment AFTER the install (its inference worker
  reads entry points when it starts) runs ``NPZ`` models through the
  installed plugin: outputs equal numpy's in-process, a replaced model is
  reloaded, batched requests each get their own rows, and a bad .npz, a
  .npz that is no network, or a wrong input shape is a clear StoreError for
  the caller while the worker goes on.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _paths import REPO
from _plugin_helpers import make_visible, pip_install_target
from _store_helpers import free_ports
from test_plugin_authors_doc import doc_block, non_public_uses

import simctl
from simctl.core.plugins import DISABLE_ENV, reset_default_plugins
from simctl.store import Client, StoreError

EXAMPLE = REPO / "examples" / "simctl-npz"
MODULE = EXAMPLE / "simctl_npz.py"


def npz(**arrays: np.ndarray) -> bytes:
    """What ``numpy.savez`` writes for ``arrays``."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def weights(seed: int, sizes: tuple[int, ...] = (4, 16, 8, 2)) -> dict[str, np.ndarray]:
    """w0, b0, w1, b1... of a dense network with layer widths ``sizes``, float32."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        out[f"w{i}"] = rng.standard_normal((n_in, n_out), dtype=np.float32)
        out[f"b{i}"] = rng.standard_normal(n_out, dtype=np.float32)
    return out


def reference(ws: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The network in numpy, in this process: ReLU between layers, none after the last."""
    n = len(ws) // 2
    for i in range(n):
        x = x @ ws[f"w{i}"] + ws[f"b{i}"]
        if i < n - 1:
            x = np.maximum(x, 0)
    return x


# -- the doc shows the example verbatim; public names only ---------------------------------------


def test_the_doc_shows_the_example_backend_module_byte_for_byte() -> None:
    assert doc_block("examples/simctl-npz/simctl_npz.py") == MODULE.read_text(encoding="utf-8")


def test_the_doc_shows_the_example_pyproject_byte_for_byte() -> None:
    text = (EXAMPLE / "pyproject.toml").read_text(encoding="utf-8")
    assert doc_block("examples/simctl-npz/pyproject.toml") == text
    assert '[project.entry-points.simctl]\nnpz = "simctl_npz"\n' in text  # the group of the built-ins


def test_the_example_backend_stays_small() -> None:
    assert len(MODULE.read_text().splitlines()) < 100


def test_the_example_backend_imports_only_public_names() -> None:
    source = MODULE.read_text()
    assert non_public_uses(source) == []  # also refuses a third-party import (numpy) anywhere in it
    # not vacuous: it builds on the public base, and imports its runtime lazily
    assert "simctl.Backend" in source and 'self.runtime("numpy")' in source
    assert non_public_uses(source + "\nimport numpy\n") == ["import numpy"]


# -- pip-installed for real ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def npz_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """examples/simctl-npz pip-installed into a directory of its own, visible
    to this module's tests and to the processes they start (PYTHONPATH);
    this process's plugins are read again with it, and again without it after."""
    site = tmp_path_factory.mktemp("npz-site")
    pip_install_target(site, [EXAMPLE])
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(DISABLE_ENV, raising=False)
        make_visible(site, mp)
        sys.modules.pop("simctl_npz", None)
        reset_default_plugins()
        yield site
    sys.modules.pop("simctl_npz", None)
    reset_default_plugins()
    shutil.rmtree(site, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(npz_site: Path) -> Any:
    """The installed example module (imported from the installed copy)."""
    import simctl_npz

    assert Path(simctl_npz.__file__).parent == npz_site
    return simctl_npz


def test_plugins_list_shows_npz_as_an_external_backend(npz_site: Path, simctl_cli: Any) -> None:
    proc = simctl_cli("plugins", "list", "--json", "--family", "backend")
    assert proc.returncode == 0, proc.stderr
    rec = {r["name"]: r for r in json.loads(proc.stdout)}["npz"]
    assert (rec["distribution"], rec["version"], rec["builtin"]) == ("simctl-npz", "0.1.0", False)
    assert rec["provides"] == {"backend": ["NPZ"]}
    assert rec["hooks"] == ["simctl_register_backends"]
    assert (rec["status"], rec["unavailable"], rec["error"]) == ("ok", {}, None)
    table = simctl_cli("plugins", "list", "--family", "backend")
    row = next(r for r in table.stdout.splitlines() if r.startswith("│") and r.split()[1] == "npz")
    assert [c.strip() for c in row.split("│")[1:-1]] == ["npz", "backend", "NPZ", "0.1.0", "simctl-npz",
                                                         "external", "ok"]


def test_the_installed_backend_is_the_registered_one_and_refuses_a_gpu(installed: Any) -> None:
    cls = simctl.make_plugins().get("backend", "NPZ")
    assert cls is installed.NpzBackend and issubclass(cls, simctl.Backend)
    assert cls.unavailable_reason() is None
    backend = cls()
    ws = weights(3)
    x = np.random.default_rng(4).standard_normal((5, 4), dtype=np.float32)
    (y,) = backend.run(backend.load(npz(**ws)), [x])
    np.testing.assert_allclose(y, reference(ws, x), rtol=1e-6, atol=1e-6)
    with pytest.raises(simctl.ConfigError, match=r"device 'GPU:0': backend 'NPZ' runs on the CPU only"):
        backend.load(npz(**ws), "GPU:0")
    with pytest.raises(simctl.ConfigError, match=r"one unnamed input and one output; got inputs=\['x'\]"):
        backend.load(npz(**ws), "CPU", ["x"], None)


# -- in a real store started by an experiment after the install ------------------------------------


@pytest.fixture(scope="module")
def store(npz_site: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A one-server store with its CPU inference worker, started (after the
    install, so the worker finds the plugin) by an experiment on the local launcher."""
    exp = simctl.Experiment("npz-store", exp_path=str(tmp_path_factory.mktemp("npz-store")), launcher="local")
    db = exp.create_database(port=free_ports(1))
    exp.start(db)
    try:
        yield db
    finally:
        exp.stop(db)


@pytest.fixture
def client(store: Any) -> Iterator[Client]:
    c = store.client()
    c.flush_db()
    yield c
    c.close()


def test_the_worker_runs_an_npz_model_like_numpy_in_process(client: Client) -> None:
    ws = weights(0)
    client.set_model("mlp", npz(**ws), "NPZ")
    x = np.random.default_rng(1).standard_normal((7, 4), dtype=np.float32)
    client.put_tensor("x", x)
    client.run_model("mlp", inputs="x", outputs="y")
    y = client.get_tensor("y")
    assert y.dtype == np.float32 and y.shape == (7, 2)
    np.testing.assert_allclose(y, reference(ws, x), rtol=1e-6, atol=1e-6)


def test_a_replaced_model_is_loaded_again(client: Client) -> None:
    x = np.random.default_rng(2).standard_normal((3, 4), dtype=np.float32)
    client.put_tensor("x", x)
    first, second = weights(10), weights(11, (4, 5, 2))
    client.set_model("mlp", npz(**first), "NPZ")
    client.run_model("mlp", "x", "y")
    np.testing.assert_allclose(client.get_tensor("y"), reference(first, x), rtol=1e-6, atol=1e-6)
    client.set_model("mlp", npz(**second), "NPZ")
    client.run_model("mlp", "x", "y")
    np.testing.assert_allclose(client.get_tensor("y"), reference(second, x), rtol=1e-6, atol=1e-6)


def test_requests_batched_together_each_get_their_own_rows(store: Any, client: Client) -> None:
    ws = weights(5)
    client.set_model("mlp", npz(**ws), "NPZ", batch_size=16, min_batch_size=3, min_batch_timeout=2000)
    xs = [np.random.default_rng(20 + i).standard_normal((i + 1, 4), dtype=np.float32) for i in range(3)]
    results: dict[int, Any] = {}

    def one(i: int) -> None:
        c = store.client()
        try:
            c.put_tensor(f"x{i}", xs[i])
            c.run_model("mlp", f"x{i}", f"y{i}")
            results[i] = c.get_tensor(f"y{i}")
        except Exception as exc:  # reported by the assertion below
            results[i] = exc
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in enumerate(xs):
        assert isinstance(results[i], np.ndarray), results[i]
        np.testing.assert_allclose(results[i], reference(ws, x), rtol=1e-6, atol=1e-6)


def test_bad_models_and_inputs_are_clear_store_errors_and_the_worker_goes_on(client: Client) -> None:
    client.put_tensor("x", np.ones((2, 4), np.float32))
    client.set_model("junk", b"not a zip", "NPZ")
    with pytest.raises(StoreError, match=r"run_model\('junk'\): model 'junk' cannot be loaded: backend 'NPZ': "
                                         r"the 9 bytes given are not a \.npz file \(numpy\.savez writes one"):
        client.run_model("junk", "x", "y")
    cut = npz(**weights(0))[:200]  # a zip header, then nothing readable
    client.set_model("cut", cut, "NPZ")
    with pytest.raises(StoreError, match=r"model 'cut' cannot be loaded: backend 'NPZ': the 200 bytes given are "
                                         r"not a \.npz file numpy can read: BadZipFile"):
        client.run_model("cut", "x", "y")
    client.set_model("odd", npz(weights=np.ones((4, 2))), "NPZ")
    with pytest.raises(StoreError, match=r"a model is a \.npz of arrays w0, b0, w1, b1\.\.\.; got \['weights'\]"):
        client.run_model("odd", "x", "y")
    client.set_model("skew", npz(w0=np.ones((4, 3)), b0=np.ones(2)), "NPZ")
    with pytest.raises(StoreError, match=r"layer 0 has w0 float64\[4, 3\] and b0 float64\[2\]; "
                                         r"accepted: w0 \[4, n\] and b0 \[n\]"):
        client.run_model("skew", "x", "y")
    ws = weights(6)
    client.set_model("mlp", npz(**ws), "NPZ")
    client.put_tensor("wide", np.ones((2, 5), np.float32))
    with pytest.raises(StoreError, match=r"the NPZ model takes one input of shape \[n, 4\]; got 1: float32\[2, 5\]"):
        client.run_model("mlp", "wide", "y")
    client.run_model("mlp", "x", "y")  # the worker still serves
    np.testing.assert_allclose(client.get_tensor("y"), reference(ws, np.ones((2, 4), np.float32)),
                               rtol=1e-6, atol=1e-6)


def test_the_docs_usage_example_runs_as_written(client: Client) -> None:
    ns: dict[str, Any] = {"np": np, "client": client}
    exec(compile(doc_block("npz-usage"), "plugin-authors.md#npz-usage", "exec"), ns)
    ws = {k: ns[k] for k in ("w0", "b0", "w1", "b1")}
    assert ns["y"].shape == (8, 2) and ns["y"].dtype == np.float32
    np.testing.assert_allclose(ns["y"], reference(ws, ns["x"]), rtol=1e-6, atol=1e-6)
