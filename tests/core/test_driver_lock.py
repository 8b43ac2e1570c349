"""The experiment directory's writer lock (issue 16): taken once, seen by a
second driver, released by its holder only, taken over when stale (a holder
gone on this host, or silent too long on another)."""

from __future__ import annotations

import json
import os
import socket
import time

import psutil
import pytest

from simctl.core import driver as drv
from simctl.core.errors import ConfigError


def _plant(tmp_path, **fields) -> str:
    path = tmp_path / ".simctl" / drv.LOCKNAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fields))
    return str(path)


def test_taken_once_and_released_by_its_holder(tmp_path):
    lock = drv.WriterLock(str(tmp_path))
    assert lock.acquire() is None and lock.held
    assert drv.same(json.loads((tmp_path / ".simctl" / drv.LOCKNAME).read_text()), drv.identity())
    assert lock.acquire() is None  # again: still this driver's
    assert drv.same(drv.WriterLock(str(tmp_path)).holder(), drv.identity())
    lock.release()
    assert not (tmp_path / ".simctl" / drv.LOCKNAME).exists()
    assert drv.WriterLock(str(tmp_path)).holder() is None


def test_a_live_holder_on_this_host_is_reported_not_taken_over(tmp_path):
    me = os.getppid()  # a process that runs (the test runner's parent), not this one
    holder = {"pid": me, "create_time": psutil.Process(me).create_time(), "host": socket.gethostname()}
    _plant(tmp_path, **holder)
    lock = drv.WriterLock(str(tmp_path))
    assert lock.acquire() == holder and not lock.held
    lock.release()  # not ours: left alone
    assert (tmp_path / ".simctl" / drv.LOCKNAME).exists()
    assert "driver pid" in drv.describe(holder) and socket.gethostname() in drv.describe(holder)


def test_a_holder_gone_from_this_host_is_stale_and_taken_over(tmp_path):
    _plant(tmp_path, pid=2**22 + 7, create_time=1.0, host=socket.gethostname())
    lock = drv.WriterLock(str(tmp_path))
    assert lock.acquire() is None and lock.held
    assert drv.same(json.loads((tmp_path / ".simctl" / drv.LOCKNAME).read_text()), drv.identity())
    assert [p.name for p in (tmp_path / ".simctl").iterdir()] == [drv.LOCKNAME]  # nothing set aside is left


def test_another_hosts_lock_is_stale_only_after_its_heartbeat_stops(tmp_path):
    path = _plant(tmp_path, pid=1, create_time=1.0, host="elsewhere-" + socket.gethostname())
    assert drv.WriterLock(str(tmp_path)).acquire()["host"].startswith("elsewhere")  # fresh: held
    old = time.time() - drv.STALE_AFTER - 5
    os.utime(path, (old, old))
    assert drv.WriterLock(str(tmp_path)).acquire() is None  # silent too long: taken over


def test_an_unwritable_experiment_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the experiment's writer lock"):
        drv.WriterLock(str(blocker / "exp")).acquire()


def test_a_holder_whose_lock_was_taken_over_while_idle_sees_it(tmp_path):
    lock = drv.WriterLock(str(tmp_path))
    assert lock.acquire() is None
    other = {"pid": 1, "create_time": 1.0, "host": "elsewhere-" + socket.gethostname()}
    _plant(tmp_path, **other)  # another host's driver took it over (this one had been silent too long)
    assert lock.acquire()["host"] == other["host"] and not lock.held
    lock.release()
    assert (tmp_path / ".simctl" / drv.LOCKNAME).exists()  # not ours to remove
