"""Shared pieces of the lifecycle tests (issue 3): a recording plugin, an
experiment factory that builds a fresh plugin manager per test, child
programs, and a guard that fails a test which leaves processes behind.

Test modules import it as ``from _lifecycle_helpers import ...`` (pyproject
puts the tests directory on ``sys.path``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

import simctl
from simctl.core import manifest as mf

PY = sys.executable
BIN = os.path.dirname(PY)
SIMCTL = os.path.join(BIN, "simctl")
#: a generous guard against a hang; never a performance assertion
HANG = 60.0


class RecorderPlugin:
    """Records every lifecycle hook call, in order, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.created: list[Any] = []
        self.before: list[tuple[str, simctl.ProcessStep]] = []
        self.changes: list[tuple[str, simctl.JobStatus, simctl.JobStatus]] = []
        self.finished: list[tuple[str, simctl.JobStatus]] = []

    @simctl.hookimpl
    def simctl_entity_created(self, entity, experiment):
        with self.lock:
            self.created.append(entity)

    @simctl.hookimpl
    def simctl_entity_before_launch(self, entity, step, experiment):
        with self.lock:
            self.before.append((entity.name, step))

    @simctl.hookimpl
    def simctl_entity_status_changed(self, entity, old, new, experiment):
        with self.lock:
            self.changes.append((entity.name, old, new))

    @simctl.hookimpl
    def simctl_entity_finished(self, entity, status, experiment):
        with self.lock:
            self.finished.append((entity.name, status))

    def history(self, name: str) -> list[simctl.Status]:
        """The statuses ``name`` went through, starting from NEW."""
        with self.lock:
            ch = [(o, n) for m, o, n in self.changes if m == name]
        return [ch[0][0].status, *(n.status for _, n in ch)] if ch else []


#: experiments made by make_exp in the running test (closed at its end)
_EXPERIMENTS: list[simctl.Experiment] = []


def make_exp(tmp_path: Path, name: str = "x", recorder: RecorderPlugin | None = None,
             **kwargs: Any) -> simctl.Experiment:
    """A fresh plugin manager with the recorder, and an experiment under tmp_path."""
    plugs = simctl.make_plugins()
    plugs.register(recorder or RecorderPlugin(), name="recorder")
    exp = simctl.Experiment(name, exp_path=str(tmp_path / name), launcher="local", plugins=plugs, **kwargs)
    _EXPERIMENTS.append(exp)
    return exp


def recorder_of(exp: simctl.Experiment) -> RecorderPlugin:
    return exp.plugins.pm.get_plugin("recorder")


def write_script(path: Path, body: str) -> Path:
    """Write a Python child program (dedented) and return its path."""
    path.write_text(textwrap.dedent(body).lstrip())
    return path


def py_settings(exp: simctl.Experiment, script: Path | str, *args: str, **kw: Any) -> simctl.RunSettings:
    """Run settings that run ``script`` with this interpreter."""
    return exp.create_run_settings(exe=PY, exe_args=[str(script), *args], **kw)


def code_settings(exp: simctl.Experiment, code: str, **kw: Any) -> simctl.RunSettings:
    """Run settings for ``python -c code``."""
    return exp.create_run_settings(exe=PY, exe_args=["-c", textwrap.dedent(code)], **kw)


def wait_until(cond: Callable[[], Any], what: str, timeout: float = HANG, step: float = 0.02) -> Any:
    """Poll ``cond`` until truthy; fail (naming ``what``) only if the program hangs."""
    end = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(step)


def gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie waiting for its reaper counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def read_pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def kill_pids(pids: Iterable[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def load_manifest(exp: simctl.Experiment) -> mf.Manifest:
    man = mf.load(exp.exp_path)
    assert man is not None, f"no manifest at {mf.path_of(exp.exp_path)}"
    return man


def run_driver(tmp_path: Path, code: str, *, wait: bool = True,
               **kw: Any) -> subprocess.Popen[str] | subprocess.CompletedProcess[str]:
    """Run a tiny driver script in a subprocess (cwd tmp_path, ``python`` = this interpreter)."""
    driver = write_script(tmp_path / "driver.py", code)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""), PYTHONUNBUFFERED="1")
    if wait:
        return subprocess.run([PY, str(driver)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=HANG, **kw)
    return subprocess.Popen([PY, str(driver)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def manifest_statuses(exp_path: Path) -> dict[str, str]:
    """name -> status of each job's latest record, as the manifest (snapshot and journal) says."""
    try:
        man = mf.load(str(exp_path))
    except simctl.ConfigError:
        return {}
    return {} if man is None else {r.name: r.status.value for r in man.jobs}


#: processes that belong to the session, not to one test (the shared stores' servers,
#: supervisors and workers, see _store_helpers.StoreFactory): they and whatever they start
#: later are no test's leftovers
SHARED_PROCESSES: set[int] = set()


def _shared_tree() -> set[int]:
    """The session's processes and their descendants, now."""
    out: set[int] = set()
    for pid in SHARED_PROCESSES:
        try:
            out.add(pid)
            out.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return out


def leftover_guard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process-leak guard (tests/conftest.py applies it to every test as
    ``no_leftover_processes``): run the test in its own directory (a model
    without a path writes its outputs in the current directory); afterwards
    fail a test that left any child process of the test runner behind, and
    clean up so the next test starts clean."""
    monkeypatch.chdir(tmp_path)
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    _EXPERIMENTS.clear()
    yield
    for exp in _EXPERIMENTS:
        exp.launcher.close()
    _EXPERIMENTS.clear()
    def alive() -> list[psutil.Process]:
        out = []
        shared = _shared_tree()
        for p in me.children(recursive=True):
            if p.pid in before or p.pid in shared:
                continue
            try:
                if p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
            except psutil.NoSuchProcess:
                pass
        return out
    left = alive()
    if left:  # a process may be exiting right now: give it a moment before judging
        time.sleep(0.5)
        left = alive()
    described = []
    for p in left:
        try:
            described.append((p.pid, p.cmdline()))
            p.kill()
        except psutil.Error:
            pass
    assert not described, f"test left processes behind: {described}"
