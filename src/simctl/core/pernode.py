"""Once per node: run a command once on each node of a step (a colocated
store beside the ranks of an MPI program), before the step's ranks start
there, and stop it when the last rank on that node ends.

A :class:`~simctl.core.steps.ProcessStep` with ``per_node`` set is started
as ``python -m simctl.core.pernode_run -- <argv>`` inside the launcher's run
command, so every rank runs this wrapper:

* The rank whose node-local index is 0 starts the ``per_node`` command. The
  index comes from the variables the launcher names for its run command
  (``SLURM_LOCALID`` under srun, ``OMPI_COMM_WORLD_LOCAL_RANK`` under Open
  MPI's mpirun...); where none is set, the first rank to take a lock file in
  the node's temporary directory starts it.
* Every rank waits until the command has created the file named by
  ``SIMCTL_READY_FILE`` in its environment (``SIMCTL_PERNODE_TIMEOUT``
  seconds at most, default 60; the wrapper fails if the command exits
  first), then runs ``argv`` and exits with its exit status.
* Ranks hold a shared lock while they run; the starting rank, once its own
  ``argv`` ended, takes the lock exclusively (so it waits for every rank on
  the node), then stops the command (SIGTERM, SIGKILL after 10 s).

The node's state lives in ``$TMPDIR/simctl-pernode-<uid>-<key>``, ``key``
being unique per launch. The wrapper runs with the driver's Python
(``sys.executable``), which must be visible on the compute nodes.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .steps import ProcessStep

ONCE = "SIMCTL_PERNODE_ONCE"
RANK_VARS = "SIMCTL_PERNODE_RANK_VARS"
KEY = "SIMCTL_PERNODE_KEY"
TIMEOUT = "SIMCTL_PERNODE_TIMEOUT"
READY = "SIMCTL_READY_FILE"


def wrap(argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` under this wrapper."""
    return [sys.executable, "-m", "simctl.core.pernode_run", "--", *argv]


def env(step: ProcessStep, rank_vars: Sequence[str]) -> dict[str, str | None]:
    """The variables the wrapper reads, for ``step``."""
    assert step.per_node is not None
    return {ONCE: json.dumps(step.per_node), RANK_VARS: ",".join(rank_vars),
            KEY: f"{step.key.replace('/', '.')}-{uuid.uuid4().hex[:12]}"}


def local_index(rank_vars: Sequence[str], environ: dict[str, str]) -> int | None:
    """This rank's node-local index from the first of ``rank_vars`` that is set."""
    for var in rank_vars:
        value = environ.get(var, "").strip()
        if value.isdigit():
            return int(value)
    return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main(argv: list[str]) -> int:
    """Run ``argv`` as one rank; see the module docstring."""
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv or ONCE not in os.environ:
        print("usage: python -m simctl.core.pernode_run -- ARGV... (with SIMCTL_PERNODE_ONCE set)", file=sys.stderr)
        return 2
    once = json.loads(os.environ[ONCE])
    rank_vars = [v for v in os.environ.get(RANK_VARS, "").split(",") if v]
    timeout = float(os.environ.get(TIMEOUT, "60"))
    node_dir = os.path.join(tempfile.gettempdir(), f"simctl-pernode-{os.getuid()}-{os.environ.get(KEY, 'x')}")
    os.makedirs(node_dir, exist_ok=True)
    ready, failed = os.path.join(node_dir, "ready"), os.path.join(node_dir, "failed")
    users = open(os.path.join(node_dir, "users"), "a+")
    index = local_index(rank_vars, dict(os.environ))
    if index is None:
        election = open(os.path.join(node_dir, "leader"), "a+")
        try:
            fcntl.flock(election, fcntl.LOCK_EX | fcntl.LOCK_NB)
            leader = True
        except BlockingIOError:
            leader = False
    else:
        leader = index == 0
    fcntl.flock(users, fcntl.LOCK_SH)
    helper: subprocess.Popen[bytes] | None = None
    if leader:
        helper = subprocess.Popen(once, env=dict(os.environ, **{READY: ready}), start_new_session=True,
                                  stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not os.path.exists(ready):
        if os.path.exists(failed) or (helper is not None and helper.poll() is not None):
            if helper is not None:
                open(failed, "w").close()
            print(f"simctl pernode: the per-node command {once!r} exited before it was ready", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            if helper is not None:
                open(failed, "w").close()
                _stop(helper)
            print(f"simctl pernode: the per-node command {once!r} was not ready after {timeout:g} s "
                  f"(it must create the file named by ${READY})", file=sys.stderr)
            return 1
        time.sleep(0.02)
    app = subprocess.Popen(argv)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: app.send_signal(s))
    rc = app.wait()
    fcntl.flock(users, fcntl.LOCK_UN)
    if helper is not None:
        fcntl.flock(users, fcntl.LOCK_EX)  # every rank on this node has ended
        _stop(helper)
        shutil.rmtree(node_dir, ignore_errors=True)
    return rc if rc >= 0 else 128 - rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
