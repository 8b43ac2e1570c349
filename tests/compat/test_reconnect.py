"""``Experiment.reconnect_orchestrator(checkpoint)``: a SmartSim driver that
died (killed -9) left its store running; a second driver reconnects to it with
the file the first one printed, uses it, changes its configuration, reads its
status and stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import psutil
from smartredis import Client
from smartsim import Experiment
from smartsim.status import SmartSimStatus

FIRST = textwrap.dedent("""
    import sys, time
    import numpy as np
    from smartsim import Experiment
    from smartsim.database import Orchestrator
    from smartredis import Client

    exp = Experiment("first", exp_path=sys.argv[1], launcher="local")
    db = Orchestrator()
    db.set_path(sys.argv[1] + "/orchestrator")
    exp.start(db)
    Client(address=db.get_address()[0], cluster=False).put_tensor("left", np.arange(4))
    print("CHECKPOINT", db.checkpoint_file, flush=True)
    time.sleep(3600)
""")


def test_a_driver_killed_9_is_reconnected_to_the_store_it_left(tmp_path: Path) -> None:
    first = tmp_path / "first"
    first.mkdir()
    driver = subprocess.Popen([sys.executable, "-c", FIRST, str(first)], stdout=subprocess.PIPE, text=True,
                              cwd=tmp_path)
    try:
        line = ""
        assert driver.stdout is not None
        for line in driver.stdout:
            if line.startswith("CHECKPOINT "):
                break
        checkpoint = line.split(" ", 1)[1].strip()
        assert checkpoint == str(first / "orchestrator" / "store.json")
    finally:
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait()

    exp = Experiment("second", exp_path=str(tmp_path / "second"), launcher="local")
    db = exp.reconnect_orchestrator(checkpoint)
    assert db.is_active()
    assert db.hosts and len(db.hosts) == db.db_nodes == 1  # the shards' hosts, read from what the store recorded
    assert exp.get_status(db) == [SmartSimStatus.STATUS_RUNNING]
    # the second driver's own Client needs no password: the reconnected store knows it
    client = Client(address=db.get_address()[0], cluster=False)
    assert np.array_equal(client.get_tensor("left"), np.arange(4))
    db.set_max_memory("100mb")  # applied to the running store
    assert client.config_get("maxmemory") == {"maxmemory": str(100 * 2**20)}
    pids = [p.pid for p in psutil.process_iter(["cmdline"]) if str(first / "orchestrator") in
            " ".join(p.info["cmdline"] or [])]
    assert pids, "the store's processes were not found"

    exp.stop(db)
    assert not db.is_active()
    assert exp.get_status(db) == [SmartSimStatus.STATUS_CANCELLED]
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
