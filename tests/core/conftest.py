"""Fixtures of the core's unit tests: a fresh plugin manager per test
(``plugs``) and an experiment built on it (``exp``); in-process plugins are
registered on that manager under explicit names. Real external plugin
packages are pip-installed once per session (``plugin_site``).

The tests here that start real processes are marked ``slow`` one by one (or
by module); a test that is not marked and starts a process fails, so
``pytest -m "not slow" tests/core`` stays the quick unit run."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _paths import DATA, REPO
from _plugin_helpers import make_visible, pip_install_target

import simctl

#: the real example plugin and the deliberately broken test packages
PLUGIN_PACKAGES = {
    "simctl-lhs": REPO / "examples" / "simctl-lhs",
    "simctl-broken-plugin": DATA / "plugins" / "broken-plugin",
    "simctl-mismatched-plugin": DATA / "plugins" / "mismatched-plugin",
}
#: a plugin whose strategy name clashes with a built-in one (installed on its own)
CLASH_PACKAGE = DATA / "plugins" / "clash-plugin"


# -- unit tests start no process ----------------------------------------------------------

#: the audit events of starting a program or a process
_SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec", "os.system",
                           "os.spawn", "pty.spawn"})
_watch: list[list[str]] = []  # the current unmarked test's record of spawns, while it runs


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _watch and event in _SPAWN_EVENTS:
        _watch[-1].append(f"{event} {args[:2]!r}"[:300])


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _unmarked_tests_start_no_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """A core test that is not marked ``slow`` starts no process (it would make
    the quick unit run slow): fails it, naming what it started."""
    if request.node.get_closest_marker("slow"):
        yield
        return
    spawned: list[str] = []
    _watch.append(spawned)
    try:
        yield
    finally:
        _watch.remove(spawned)
    assert not spawned, f"a core test not marked slow started processes (mark it @pytest.mark.slow): {spawned}"


# -- plugins and experiments ------------------------------------------------------


@pytest.fixture
def plugs(clean_env: pytest.MonkeyPatch) -> simctl.Plugins:
    """A fresh plugin manager with every installed entry point loaded (the
    built-in strategies and launchers). Register in-process plugins on it with
    ``plugs.register(obj, name=...)``."""
    return simctl.make_plugins()


@pytest.fixture
def exp_path(tmp_path: Path) -> Path:
    """Where the test experiment writes (not created in advance)."""
    return tmp_path / "exp"


@pytest.fixture
def exp(exp_path: Path, plugs: simctl.Plugins):
    """An experiment on the local launcher, using this test's ``plugs``."""
    experiment = simctl.Experiment("test-exp", exp_path=str(exp_path), launcher="local", plugins=plugs)
    yield experiment
    experiment.launcher.close()


@pytest.fixture
def rs(exp: simctl.Experiment) -> simctl.RunSettings:
    """Run settings for a trivial local program."""
    return exp.create_run_settings(exe=sys.executable, exe_args=["-c", "pass"])


class Recorder:
    """An in-process plugin that records every lifecycle hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def of(self, hook: str) -> list[dict[str, Any]]:
        return [kw for name, kw in self.calls if name == hook]

    @simctl.hookimpl
    def simctl_entity_created(self, entity: Any, experiment: Any) -> None:
        self.calls.append(("simctl_entity_created", {"entity": entity, "experiment": experiment}))

    @simctl.hookimpl
    def simctl_entity_before_launch(self, entity: Any, step: Any, experiment: Any) -> None:
        self.calls.append(("simctl_entity_before_launch", {"entity": entity, "step": step,
                                                           "experiment": experiment}))

    @simctl.hookimpl
    def simctl_entity_status_changed(self, entity: Any, old: Any, new: Any, experiment: Any) -> None:
        self.calls.append(("simctl_entity_status_changed", {"entity": entity, "old": old, "new": new,
                                                            "experiment": experiment}))

    @simctl.hookimpl
    def simctl_entity_finished(self, entity: Any, status: Any, experiment: Any) -> None:
        self.calls.append(("simctl_entity_finished", {"entity": entity, "status": status,
                                                      "experiment": experiment}))


@pytest.fixture
def recorder(plugs: simctl.Plugins) -> Recorder:
    """A :class:`Recorder` registered on ``plugs`` as "recorder"."""
    rec = Recorder()
    record = plugs.register(rec, name="recorder")
    assert record.status == "ok", record.error
    return rec


# -- files -------------------------------------------------------------------------


@pytest.fixture
def write(tmp_path: Path) -> Callable[..., Path]:
    """``write("in/params.txt", "x = ;x;")``: a file under ``tmp_path/src``."""

    def _write(rel: str, text: str | bytes = "", mode: int | None = None) -> Path:
        path = tmp_path / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        if mode is not None:
            path.chmod(mode)
        return path

    return _write


# -- real external plugin packages --------------------------------------------------


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory):
    """The example and test plugin packages, pip-installed for real (wheels
    built by hatchling, entry points in their dist-info) into a directory of
    their own for this session, removed afterwards.

    A directory of its own rather than the dev venv's site-packages: entry
    points are found the same way (``importlib.metadata`` over ``sys.path``),
    but the shared venv is never left with a broken plugin in it, even when
    the session is killed, and concurrent test runs by others never see them.
    Use ``external_plugins`` to make a test see them.
    """
    site = tmp_path_factory.mktemp("plugin-site")
    pip_install_target(site, list(PLUGIN_PACKAGES.values()))
    yield site
    shutil.rmtree(site, ignore_errors=True)


@pytest.fixture
def external_plugins(plugin_site: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """Make the installed external plugins visible to this test: in process
    (``sys.path``) and to subprocesses (``PYTHONPATH``)."""
    return make_visible(plugin_site, clean_env)


@pytest.fixture(scope="session")
def clash_site(tmp_path_factory: pytest.TempPathFactory):
    """The clashing plugin package, pip-installed on its own like ``plugin_site``."""
    site = tmp_path_factory.mktemp("clash-site")
    pip_install_target(site, [CLASH_PACKAGE])
    yield site
    shutil.rmtree(site, ignore_errors=True)


@pytest.fixture
def clashing_plugin(clash_site: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """Make the clashing plugin visible to this test (in process and to subprocesses)."""
    return make_visible(clash_site, clean_env)
