"""Installing plugin packages for real, for the tests of any layer: pip-install
into a directory of their own, and make that directory visible to the test
(in process and to the processes it starts)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from simctl import Backend, hookimpl


def pip_install_target(site: Path, packages: list[Path]) -> None:
    """pip-install ``packages`` (offline, no build isolation) into ``site``."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
           "--disable-pip-version-check", "--quiet", "--target", str(site), *map(str, packages)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=site)
    assert proc.returncode == 0, f"pip install failed:\n{proc.stdout}\n{proc.stderr}"
    for pkg in packages:  # pip builds in place: leave the sources clean
        shutil.rmtree(pkg / "build", ignore_errors=True)


def make_visible(site: Path, mp: pytest.MonkeyPatch) -> Path:
    """Put ``site`` first on ``sys.path`` and ``PYTHONPATH`` (undone by ``mp``)."""
    mp.syspath_prepend(str(site))
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    return site


class MissingRuntime(Backend):
    """A backend whose runtime is installed nowhere."""

    name = "NOSUCHRT"
    requires = ("simctl_no_such_runtime_module",)
    install_hint = "simctl[nosuchrt]"


class MissingRuntimePlugin:
    """Its plugin, importable by module and class name (a worker loads an in-process plugin so)."""

    @hookimpl
    def simctl_register_backends(self) -> list[type[Backend]]:
        return [MissingRuntime]
