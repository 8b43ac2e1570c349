"""Shared fixtures. Keep them generic: other test files build on them.
Add fixtures freely; do not remove or change the meaning of existing ones.

House rules: real parts, no mocks. Every test gets a fresh plugin manager
(``plugs``) and an experiment built on it (``exp``); in-process plugins are
registered on that manager under explicit names. Real external plugin
packages are pip-installed once per session (``plugin_site``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, settings

import simctl
from simctl.core.plugins import DISABLE_ENV

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
#: the real example plugin and the deliberately broken test packages
PLUGIN_PACKAGES = {
    "simctl-lhs": REPO / "examples" / "simctl-lhs",
    "simctl-broken-plugin": TESTS / "data" / "plugins" / "broken-plugin",
    "simctl-mismatched-plugin": TESTS / "data" / "plugins" / "mismatched-plugin",
}
# No wall-clock limits in tests: hypothesis' per-example deadline is one, and
# flaky on a loaded machine.
settings.register_profile("simctl", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("simctl")

#: a plugin whose strategy name clashes with a built-in one (installed on its own)
CLASH_PACKAGE = TESTS / "data" / "plugins" / "clash-plugin"
#: the ``simctl`` console script of the environment running the tests
SIMCTL = Path(sys.executable).with_name("simctl")


# -- plugins and experiments ------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No plugin blocklist inherited from the shell running the tests."""
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return monkeypatch


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


def _pip_install_target(site: Path, packages: list[Path]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--quiet", "--target", str(site), *map(str, packages)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=site)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    for pkg in packages:  # pip builds in place: leave the sources clean
        shutil.rmtree(pkg / "build", ignore_errors=True)


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
    _pip_install_target(site, list(PLUGIN_PACKAGES.values()))
    yield site
    shutil.rmtree(site, ignore_errors=True)


def _make_visible(site: Path, mp: pytest.MonkeyPatch) -> Path:
    mp.syspath_prepend(str(site))
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return site


@pytest.fixture
def external_plugins(plugin_site: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """Make the installed external plugins visible to this test: in process
    (``sys.path``) and to subprocesses (``PYTHONPATH``)."""
    return _make_visible(plugin_site, clean_env)


@pytest.fixture(scope="session")
def clash_site(tmp_path_factory: pytest.TempPathFactory):
    """The clashing plugin package, pip-installed on its own like ``plugin_site``."""
    site = tmp_path_factory.mktemp("clash-site")
    _pip_install_target(site, [CLASH_PACKAGE])
    yield site
    shutil.rmtree(site, ignore_errors=True)


@pytest.fixture
def clashing_plugin(clash_site: Path, clean_env: pytest.MonkeyPatch) -> Path:
    """Make the clashing plugin visible to this test (in process and to subprocesses)."""
    return _make_visible(clash_site, clean_env)


@pytest.fixture
def simctl_cli(clean_env: pytest.MonkeyPatch) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``simctl_cli("plugins", "list", env={...})``: run the installed console
    script in a subprocess with this test's environment (plus ``env``)."""

    def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = dict(os.environ, **(env or {}))
        return subprocess.run([str(SIMCTL), *args], capture_output=True, text=True, env=full)

    return _run
