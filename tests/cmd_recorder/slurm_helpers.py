"""Helpers shared by the Slurm test modules (test_slurm, test_scheduler_commands,
test_auto_launcher...). Not a command: it sits beside the recording wrappers
because it reads their log. Import with ``from slurm_helpers import ...``
(pyproject puts tests/cmd_recorder on ``sys.path``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from _lifecycle_helpers import wait_until as _wait_until

import simctl

RECORDER = Path(__file__).resolve().parent
TESTS = RECORDER.parent
REPO = TESTS.parent
PY = sys.executable
#: the scheduler commands the wrappers stand in front of
WRAPPED = ("squeue", "sbatch", "scancel", "sacct", "scontrol", "srun", "salloc")
SQUEUE_FORMAT = "JobArrayID:|,State:|,Reason:|,exit_code:|"
#: a generous guard against a hang; never a performance assertion
HANG = 300.0


def require_slurm() -> None:
    """FAIL (never skip) when the test Slurm is not up."""
    sinfo = shutil.which("sinfo")
    proc = subprocess.run([sinfo], capture_output=True, text=True) if sinfo else None
    if proc is None or proc.returncode != 0:
        pytest.fail("the test Slurm cluster is not usable (sinfo "
                    + ("not on PATH" if proc is None else f"failed: {proc.stderr.strip()}")
                    + "); bring it up with: bash scripts/setup-slurm.sh", pytrace=False)


@dataclass(frozen=True)
class SlurmTarget:
    """The test Slurm a run targets: the single-node one of ``setup-slurm.sh``
    (the default) or the multi-node one of ``setup-multinode.sh``
    (``SIMCTL_TEST_SLURM=multinode``, set by ``scripts/test-slurm-multinode.sh``,
    which runs pytest on the cluster's head node as a driver on a login node).
    Tests read the partitions, nodes, interface and addresses from here instead
    of assuming one node."""

    name: str
    #: the default partition and its compute nodes
    partition: str
    nodes: tuple[str, ...]
    #: a partition whose nodes advertise few CPUs (:meth:`small_cpus`): work bigger than a node
    small: str
    small_nodes: tuple[str, ...]
    #: the interface a store binds so that the driver (and every node) reaches it
    interface: str
    #: node -> its address on ``interface``
    addresses: dict[str, str]

    @property
    def multinode(self) -> bool:
        return len(self.nodes) > 1

    def address(self, node: str | None = None) -> str:
        """The address of ``node`` (default: the first) on :attr:`interface`."""
        return self.addresses[node or self.nodes[0]]

    def small_cpus(self) -> int:
        """The CPUs a node of :attr:`small` advertises (as sinfo says)."""
        return self.node_cpus(self.small_nodes[0])

    @staticmethod
    def node_cpus(node: str) -> int:
        """The CPUs ``node`` advertises (as sinfo says)."""
        out = subprocess.run(["sinfo", "-h", "-N", "-n", node, "-o", "%c"], capture_output=True, text=True,
                             check=True).stdout
        return int(out.split()[0].rstrip("+"))

    def small_total_cpus(self) -> int:
        """The CPUs of every node of :attr:`small` together."""
        out = subprocess.run(["sinfo", "-h", "-p", self.small, "-o", "%C"], capture_output=True, text=True,
                             check=True).stdout
        return int(out.split()[0].split("/")[-1])


def slurm_target(env: dict[str, str] | None = None) -> SlurmTarget:
    """The target named by ``SIMCTL_TEST_SLURM`` (``single``, the default, or
    ``multinode``, whose nodes, interface and network come from the
    ``SIMCTL_MN_*`` settings of ``setup-multinode.sh --env``)."""
    env = dict(os.environ if env is None else env)
    kind = env.get("SIMCTL_TEST_SLURM", "single")
    if kind == "single":
        return SlurmTarget("single-node", "debug", ("vm",), "real", ("vm-real",), "lo", {"vm": "127.0.0.1"})
    if kind != "multinode":
        raise ValueError(f"SIMCTL_TEST_SLURM={kind!r}: expected 'single' or 'multinode'")
    nodes = tuple(env.get("SIMCTL_MN_NODES", "sm1 sm2 sm3").strip('"').split())
    net = env.get("SIMCTL_MN_NET", "10.78.0")
    return SlurmTarget("multi-node", "compute", nodes, "compute", nodes, env.get("SIMCTL_MN_IFACE", "hsn0"),
                       {n: f"{net}.{10 + int(n[2:])}" for n in nodes})


#: the test Slurm this run targets
TARGET = slurm_target()


#: the Slurm variables that say which cluster, not which allocation: kept outside an allocation
CLUSTER_VARS = ("SLURM_CONF",)


def no_allocation_env(env: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> dict[str, str]:
    """``env`` (default: this process's) without the variables of a Slurm
    allocation (``SLURM_*`` but ``SLURM_CONF``, which names the cluster) nor
    those starting with ``drop``."""
    env = dict(os.environ if env is None else env)
    return {k: v for k, v in env.items()
            if not (k.startswith("SLURM_") and k not in CLUSTER_VARS) and not (drop and k.startswith(drop))}


def outside_allocation(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process look like it runs outside any Slurm allocation (of the
    cluster ``SLURM_CONF`` names, if set: a multi-node test cluster's)."""
    for k in list(os.environ):
        if k.startswith("SLURM_") and k not in CLUSTER_VARS:
            monkeypatch.delenv(k)


def slurm_exp(tmp_path: Path, name: str = "x", launcher: str = "slurm", **options: Any) -> simctl.Experiment:
    """An experiment on a fresh plugin manager, under ``tmp_path``."""
    return simctl.Experiment(name, exp_path=str(tmp_path / name), launcher=launcher,
                             plugins=simctl.make_plugins(), launcher_options=options or None)


def script(tmp_path: Path, code: str, name: str = "prog.py") -> str:
    """Write a Python program for models to run; return its path."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(code).lstrip())
    return str(path)


def py_settings(exp: simctl.Experiment, path: str, *args: str, **kwargs: Any) -> simctl.RunSettings:
    """Run settings for ``python <path> args...`` (srun by default on Slurm)."""
    return exp.create_run_settings(exe=PY, exe_args=[path, *args], **kwargs)


def wait_until(cond: Callable[[], Any], what: str, timeout: float = HANG, step: float = 0.1) -> Any:
    """Poll ``cond`` until truthy; fail (naming ``what``) only on a hang."""
    return _wait_until(cond, what, timeout, step)


def squeue_state(job_id: str) -> str:
    """The state squeue lists for ``job_id`` (``""`` once it left the queue)."""
    proc = subprocess.run(["/usr/bin/squeue", "-h", "-t", "all", "-j", job_id, "-O", "State:|"],
                          capture_output=True, text=True)
    return proc.stdout.strip().rstrip("|").splitlines()[0] if proc.stdout.strip() else ""


def squeue_field(job_id: str, field: str) -> str:
    proc = subprocess.run(["/usr/bin/squeue", "-h", "-t", "all", "-j", job_id, "-O", f"{field}:|"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip().rstrip("|")


def scancel_quietly(*job_ids: str) -> None:
    if job_ids:
        subprocess.run(["/usr/bin/scancel", *job_ids], capture_output=True)


class CmdLog:
    """The log the recording wrappers write: one line per command, its name
    then each argument after a TAB."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[list[str]]:
        if not self.path.exists():
            return []
        return [line.split("\t") for line in self.path.read_text().splitlines() if line]

    def of(self, name: str) -> list[list[str]]:
        return [e[1:] for e in self.entries() if e[0] == name]

    def names(self) -> list[str]:
        return [e[0] for e in self.entries()]


def use_recorder(monkeypatch: pytest.MonkeyPatch, log_path: Path) -> CmdLog:
    """Put the recording wrappers first on PATH, logging to ``log_path``."""
    monkeypatch.setenv("PATH", f"{RECORDER}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SIMCTL_CMD_LOG", str(log_path))
    return CmdLog(log_path)


def squeue_ids(argv: list[str]) -> set[str]:
    """The job ids of a logged squeue argv (its ``-j`` list)."""
    return set(argv[argv.index("-j") + 1].split(","))


def fake_command(bindir: Path, name: str, body: str) -> Path:
    """A deliberate fault wrapper: ``bindir/name`` running the bash ``body``."""
    bindir.mkdir(parents=True, exist_ok=True)
    path = bindir / name
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip())
    path.chmod(0o755)
    return path


def path_without(bindir: Path, *missing: str) -> str:
    """A PATH holding the scheduler commands (and what a batch script needs)
    except ``missing``: links to the real ones in ``bindir``."""
    bindir.mkdir(parents=True, exist_ok=True)
    for name in (*WRAPPED, "sinfo", "env", "bash", "sh", "true", "sleep"):
        real = shutil.which(name, path="/usr/bin:/bin")
        if name not in missing and real and not (bindir / name).exists():
            (bindir / name).symlink_to(real)
    return str(bindir)
