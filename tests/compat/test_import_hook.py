"""``import smartsim`` / ``import smartredis`` resolve to simctl's layer only
when no real one is installed, unless SIMCTL_SMARTSIM=force; =off turns it off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = ("import smartsim, smartsim.settings, smartredis, simctl.compat.smartsim.settings as s; "
         "print(smartsim.__name__, smartredis.__name__, smartsim.settings is s)")


def run(code: str, mode: str | None = None, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("SIMCTL_SMARTSIM", "PYTHONPATH")}
    if mode is not None:
        env["SIMCTL_SMARTSIM"] = mode
    if path is not None:
        env["PYTHONPATH"] = str(path)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


@pytest.fixture
def real_smartsim(tmp_path: Path) -> Path:
    """A real-looking SmartSim and SmartRedis earlier on sys.path."""
    for name in ("smartsim", "smartredis"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("REAL = True\n")
        (tmp_path / name / "settings.py").write_text("REAL = True\n")
    return tmp_path


def test_without_a_real_smartsim_the_names_resolve_to_the_layer_as_one_module():
    proc = run(PROBE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["simctl.compat.smartsim", "simctl.compat.smartredis", "True"]


def test_a_real_smartsim_wins_unless_forced(real_smartsim: Path):
    code = "import smartsim, smartsim.settings, smartredis; print(getattr(smartsim, 'REAL', False), " \
           "getattr(smartsim.settings, 'REAL', False), getattr(smartredis, 'REAL', False))"
    auto = run(code, path=real_smartsim)
    assert auto.returncode == 0, auto.stderr
    assert auto.stdout.split() == ["True", "True", "True"]
    forced = run(PROBE, mode="force", path=real_smartsim)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.split() == ["simctl.compat.smartsim", "simctl.compat.smartredis", "True"]


def test_off_turns_the_layer_off_and_a_bad_mode_is_named_without_stopping_python():
    off = run("import smartsim", mode="off")
    assert off.returncode != 0 and "No module named 'smartsim'" in off.stderr
    bad = run("import simctl.compat.smartsim; print('up')", mode="sometimes")
    assert bad.returncode == 0 and bad.stdout.strip() == "up"
    assert "SIMCTL_SMARTSIM='sometimes'" in bad.stderr and "auto, force, off" in bad.stderr
