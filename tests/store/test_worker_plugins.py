"""A backend registered in-process and given to an experiment runs in the
inference workers of the stores that experiment starts (standalone and
colocated), loaded from its module the way pytest's ``-p module`` loads one:
no process-wide registry in the data plane.

The backend (tests/data/worker-plugins/affine_backend.py) is no installed
entry point, and its directory is on this process's ``sys.path`` only, not on
``PYTHONPATH``: the workers find it through the ``--plugin-path`` the
experiment passes. Real redis-servers, real worker processes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from _lifecycle_helpers import PY, write_script
from _store_helpers import free_ports

import simctl
from simctl import Status
from simctl.core.plugins import default_plugins

WORKER_PLUGINS = Path(__file__).resolve().parent.parent / "data" / "worker-plugins"

# the application: runs the model argv[1] on [[1, 2], [3, 4]] in the store it was given (SSDB), prints the result
APP = """
    import json, sys
    import numpy as np
    from simctl.store import Client
    c = Client()
    c.put_tensor("x", np.array([[1, 2], [3, 4]], np.float32))
    c.run_model(sys.argv[1], inputs="x", outputs="y")
    print(json.dumps(c.get_tensor("y").tolist()), flush=True)
"""


@pytest.fixture
def affine(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """affine_backend, importable in this process only."""
    assert str(WORKER_PLUGINS) not in os.environ.get("PYTHONPATH", "")
    monkeypatch.syspath_prepend(str(WORKER_PLUGINS))
    import affine_backend

    yield affine_backend
    sys.modules.pop("affine_backend", None)


def experiment(tmp_path: Path, plugin: Any, name: str = "affine") -> simctl.Experiment:
    """An experiment given a fresh plugin manager on which ``plugin`` is registered in-process."""
    plugs = simctl.make_plugins()
    plugs.register(plugin, name=name)
    return simctl.Experiment("wp", exp_path=str(tmp_path / "exp"), launcher="local", plugins=plugs)


def app(exp: simctl.Experiment, tmp_path: Path, model_key: str) -> simctl.Model:
    prog = write_script(tmp_path / "app.py", APP)
    rs = exp.create_run_settings(exe=PY, exe_args=[str(prog), model_key])
    return exp.create_model("app", rs, path=str(tmp_path))


def result(tmp_path: Path, model: simctl.Model) -> Any:
    out = (tmp_path / f"{model.name}.out").read_text()
    assert out, (tmp_path / f"{model.name}.err").read_text()
    return json.loads(out.splitlines()[0])


def test_the_standalone_stores_workers_run_the_experiments_backend(tmp_path: Path, affine: ModuleType) -> None:
    assert "AFFINE" not in default_plugins().names("backend")  # not process-wide: the experiment's alone
    exp = experiment(tmp_path, affine.Plugin())
    db = exp.create_database(port=free_ports())
    model = app(exp, tmp_path, "aff")
    model.add_ml_model("aff", "AFFINE", model=affine.model(2, 1))  # not refused: the workers know it
    preview = exp.preview(db, show=False)
    assert f"--plugin 'affine=affine_backend:Plugin()' --plugin-path {WORKER_PLUGINS}" in preview
    try:
        exp.start(db)
        exp.start(model)
        assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / "app.err").read_text()
        assert result(tmp_path, model) == [[3, 5], [7, 9]]
        with db.client() as client:  # the driver's client too
            client.put_tensor("x", np.arange(3, dtype=np.float32))
            client.run_model("aff", "x", "y")
            assert client.get_tensor("y").tolist() == [1, 3, 5]
    finally:
        exp.stop()
        exp.close()


def test_a_colocated_stores_workers_run_the_experiments_backend(tmp_path: Path, affine: ModuleType) -> None:
    exp = experiment(tmp_path, affine)  # the module itself this time
    model = app(exp, tmp_path, "aff")
    model.colocate_db_tcp(port=free_ports())
    model.add_ml_model("aff", "AFFINE", model=affine.model(-1, 0.5))
    preview = exp.preview(model, show=False)
    assert '"--plugin", "affine=affine_backend"' in preview
    try:
        exp.start(model)
        assert exp.get_status(model) == [Status.COMPLETED], (tmp_path / "app.err").read_text()
        assert result(tmp_path, model) == [[-0.5, -1.5], [-2.5, -3.5]]
    finally:
        exp.close()


def test_a_plugin_the_worker_cannot_import_is_named_in_the_callers_error(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a module the driver imports from a directory that is gone when the store starts
    where = tmp_path / "gone"
    where.mkdir()
    shutil.copy(WORKER_PLUGINS / "affine_backend.py", where / "gone_backend.py")
    monkeypatch.syspath_prepend(str(where))
    import gone_backend

    try:
        exp = experiment(tmp_path, gone_backend.Plugin(), name="gone")
    finally:
        sys.modules.pop("gone_backend", None)
    shutil.rmtree(where)
    db = exp.create_database(port=free_ports())
    try:
        exp.start(db)
        with db.client() as client:
            client.set_model("m", gone_backend.model(1, 0), "AFFINE")
            client.put_tensor("x", np.zeros(2, np.float32))
            with pytest.raises(simctl.store.format.StoreError,
                               match=r"run_model\('m'\): .*unknown backend 'AFFINE'; installed: .*'ONNX'.*; plugins "
                                     r"that failed to load in the inference worker: 'gone' \(gone=gone_backend:"
                                     r"Plugin\(\): ModuleNotFoundError: No module named 'gone_backend'\)"):
                client.run_model("m", "x", "y")
    finally:
        exp.stop()
        exp.close()


def test_only_backend_plugins_are_passed_on_and_only_to_workers(tmp_path: Path, affine: ModuleType) -> None:
    class Lifecycle:  # runs in the driver alone
        @simctl.hookimpl
        def simctl_entity_created(self, entity: Any) -> None:
            pass

    exp = experiment(tmp_path, Lifecycle(), name="lifecycle")
    db = exp.create_database(port=free_ports())
    assert "--plugin" not in exp.preview(db, show=False)
    exp.plugins.register(affine, name="affine")  # registered later: the next plan has it
    assert "--plugin affine=affine_backend --plugin-path" in exp.preview(db, show=False)
    without = exp.create_database(port=free_ports(), db_identifier="no-workers", ml_devices=[])
    assert "--plugin" not in exp.preview(without, show=False)  # no inference worker: nothing to load
    exp.close()
