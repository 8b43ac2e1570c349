"""Fixtures shared by more than one layer. Keep them generic: other test files
build on them. Add fixtures freely; do not remove or change the meaning of
existing ones.

Layout: the tests are grouped by layer, each directory with a conftest.py of
the fixtures only it uses:

* ``core/``: unit tests of the core (planning, expansion, settings, templates,
  generator, checks, manifest, plugins, controller, entities, serialization,
  the plugins CLI). Those that start real processes are marked ``slow``.
* ``launchers/``: local, Slurm, PBS, LSF, scheduler commands.
* ``store/``: the feature store's client, server, orchestrator, inference, CLI.
* ``backends/``: the ML backends' runtimes.
* ``e2e/``: the quick start, the documents' examples, driver exit, plugin
  authors' docs and examples, lifecycle across components.

Everything outside ``core/`` is marked ``slow`` by its directory's conftest:
``pytest -m "not slow" tests/core`` runs the unit tests alone. The shared
helpers (``_*.py``, ``cmd_recorder/slurm_helpers.py``) are imported by name
(pyproject puts ``tests`` and ``tests/cmd_recorder`` on ``sys.path``).

House rules: real parts, no mocks. Every test runs in its own ``tmp_path``
as the current directory and fails if it leaves a process behind
(``no_leftover_processes``, applied to every test). Stores are shared per
session (``stores``) by tests that only read and write data; see
``_store_helpers.py``. In-process plugins are registered on a fresh plugin
manager per test under explicit names (``plugs``, in core/).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _lifecycle_helpers import leftover_guard
from _paths import LSF_STANDIN
from hypothesis import HealthCheck, settings
from slurm_helpers import outside_allocation, require_slurm

from simctl.core.plugins import DISABLE_ENV

# No wall-clock limits in tests: hypothesis' per-example deadline is one, and
# flaky on a loaded machine.
settings.register_profile("simctl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("simctl")

#: the ``simctl`` console script of the environment running the tests
SIMCTL = Path(sys.executable).with_name("simctl")


# -- every test ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_leftover_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process-leak guard, on every test: the test runs in ``tmp_path`` (a
    model without a path writes its outputs in the current directory) and
    fails if it leaves any child process of the test runner behind (they are
    killed, so the next test starts clean). The session's shared stores are
    not a test's leftovers."""
    yield from leftover_guard(tmp_path, monkeypatch)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No plugin blocklist inherited from the shell running the tests."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return monkeypatch


# -- files -------------------------------------------------------------------------


def _snapshot(root: Path) -> dict[str, Any]:
    """Every path under ``root`` with its file content, link target or "<dir>"."""
    out: dict[str, Any] = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = "<dir>"
            else:
                out[rel] = p.read_bytes()
    return out


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, Any]]:
    """``snapshot(path)``: the whole tree under ``path`` (empty if missing),
    to compare before and after an operation that must write nothing."""
    return _snapshot


# -- the command line ----------------------------------------------------------------


@pytest.fixture
def simctl_cli(clean_env: pytest.MonkeyPatch) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``simctl_cli("plugins", "list", env={...})``: run the installed console
    script in a subprocess with this test's environment (plus ``env``)."""

    def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = dict(os.environ, **(env or {}))
        return subprocess.run([str(SIMCTL), *args], capture_output=True, text=True, env=full)

    return _run


# -- the LSF stand-in (launchers and store) ---------------------------------------------


@pytest.fixture
def lsf_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The LSF stand-in first on PATH, its state in a fresh directory; every
    job process it started is gone after the test."""
    state = tmp_path / "lsf-state"
    monkeypatch.setenv("PATH", f"{LSF_STANDIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SIMCTL_LSF_STANDIN_STATE", str(state))
    monkeypatch.setenv("SIMCTL_LSF_STANDIN_PYTHON", sys.executable)
    monkeypatch.delenv("SIMCTL_LSF_STANDIN_GARBAGE", raising=False)
    monkeypatch.delenv("LSB_JOBID", raising=False)
    yield state
    for path in (state / "jobs").glob("*.json") if state.exists() else []:
        for el in json.loads(path.read_text())["elements"].values():
            if el.get("pgid"):
                try:
                    os.killpg(el["pgid"], signal.SIGKILL)
                except ProcessLookupError:
                    pass


# -- the session's shared stores (store, backends, e2e) ---------------------------------


@pytest.fixture(scope="session")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The one store factory (:class:`_store_helpers.StoreFactory`): each kind
    of shared store (bare redis-servers or an experiment's orchestrator; one
    server or a 3-shard cluster) is started the first time a test asks for it,
    shared by the tests that follow, and stopped after the last test of a run
    of consecutive modules that use it (see ``pytest_runtest_teardown``)."""
    from _store_helpers import stores_for_session  # redis, numpy: only for the sessions that use a store

    yield from stores_for_session(tmp_path_factory.mktemp("stores"))


#: the test modules with tests that use the shared stores (known once collected)
_STORE_MODULES: set[Path] = set()


def pytest_collection_finish(session: pytest.Session) -> None:
    _STORE_MODULES.update(item.path for item in session.items if "stores" in getattr(item, "fixturenames", ()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the last test of a run of consecutive modules that use the shared
    stores (and after its fixtures, its module's too, are torn down), stop the
    stores: no test of another module shares the process with them (some count
    the runner's threads: monitors, process reapers). A later module that uses
    them gets new ones."""
    result = yield
    if item.path in _STORE_MODULES and (nextitem is None or nextitem.path not in _STORE_MODULES):
        helpers = sys.modules.get("_store_helpers")
        if helpers is not None:
            helpers.stop_shared_stores()
    return result


@pytest.fixture
def slurm_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real test Slurm, up (a test FAILS without it, never skips), seen from outside any allocation."""
    require_slurm()
    outside_allocation(monkeypatch)
