"""The multi-node test cluster (scripts/setup-multinode.sh, issue 18): a head
node and 3 compute nodes (sm1..sm3), each with its own address on interface
``hsn0``, hostname, ``/etc/hosts``, ``/tmp`` and slurmd, on this one machine.

Drivers run on the head node as on a login node (``--exec sm-head``), in
directories under the cluster's shared directory (each node's ``/tmp`` is its
own). The fixture brings the cluster up (idempotent; a test FAILS, never
skips, when it cannot) and leaves it up for the next run. Every test here is
marked ``slow`` and ``multinode``."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from _markers import mark_slow_under
from _paths import REPO

HERE = Path(__file__).resolve().parent
SETUP = REPO / "scripts" / "setup-multinode.sh"
PY = str(REPO / ".venv" / "bin" / "python")
#: a guard against a hung driver; never a performance assertion
HANG = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    mark_slow_under(HERE, items)
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.multinode)


@dataclass
class Cluster:
    """The multi-node test cluster, seen from the tests (which run outside it)."""

    shared: Path
    nodes: list[str]
    iface: str
    net: str

    def address(self, node: str) -> str:
        return f"{self.net}.{10 + int(node[2:])}"

    def workdir(self, name: str) -> Path:
        """A fresh directory on the shared file system (seen by every node)."""
        path = self.shared / "pytest" / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path

    def write(self, where: Path, name: str, code: str) -> str:
        path = where / name
        path.write_text(textwrap.dedent(code).lstrip())
        return str(path)

    def spawn(self, where: Path, code: str, *args: str, salloc: list[str] | None = None) -> subprocess.Popen[str]:
        """Start ``code`` (a driver printing ``RESULT <json>``) with simctl's Python on
        the head node, in ``where``, under ``salloc ARGS`` when given; :meth:`result` ends it."""
        driver = self.write(where, "driver.py", code)
        cmd = [*(["salloc", "-Q", *salloc] if salloc is not None else []), PY, driver, *args]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SSDB", "SSKEY"))}
        return subprocess.Popen(["bash", str(SETUP), "--exec", "sm-head", "--", *cmd], cwd=where, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @staticmethod
    def result(proc: subprocess.Popen[str]) -> dict:
        """The result a driver started by :meth:`spawn` printed."""
        out, err = proc.communicate(timeout=HANG)
        assert proc.returncode == 0, f"the driver failed:\n{out}\n{err}"
        line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
        assert line is not None, f"the driver printed no result:\n{out}\n{err}"
        return json.loads(line[len("RESULT "):])

    def drive(self, where: Path, code: str, *args: str, salloc: list[str] | None = None) -> dict:
        """Run ``code`` (see :meth:`spawn`) to its end; its result."""
        return self.result(self.spawn(where, code, *args, salloc=salloc))

    @staticmethod
    def await_file(path: Path, driver: subprocess.Popen[str]) -> str:
        """The text of ``path`` once the driver wrote it (a failure if the driver ended first)."""
        while not path.exists():
            if driver.poll() is not None:
                out, err = driver.communicate()
                pytest.fail(f"the driver ended before writing {path.name}:\n{out}\n{err}", pytrace=False)
            time.sleep(0.1)
        return path.read_text()

    def node_run(self, *cmd: str) -> str:
        """``cmd`` (a command of the machine: ip, kill...) run as root here; its output."""
        return subprocess.run(list(cmd), capture_output=True, text=True, check=True).stdout

    def start(self) -> str:
        """``setup-multinode.sh --start``: what is missing started again (slurmd, nodes resumed)."""
        proc = subprocess.run(["bash", str(SETUP), "--start"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    """The multi-node test cluster, up (brought up if it is not)."""
    proc = subprocess.run(["bash", str(SETUP), "--start"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"the multi-node test cluster did not come up (bash {SETUP} --start):\n{proc.stderr}",
                    pytrace=False)
    env = dict(line.split("=", 1) for line in subprocess.run(
        ["bash", str(SETUP), "--env"], capture_output=True, text=True, check=True).stdout.splitlines())
    return Cluster(Path(env["SIMCTL_MN_DIR"]) / "shared", env["SIMCTL_MN_NODES"].strip('"').split(),
                   env["SIMCTL_MN_IFACE"], env["SIMCTL_MN_NET"])
