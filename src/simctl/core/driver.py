"""Drivers: the processes that run experiments, and the lock that makes one
of them the writer of an experiment directory.

A driver is named by its pid, its start time and its host
(:func:`identity`); every manifest record carries the identity of the
driver that launched it, so several drivers may share one experiment and
``simctl status`` / ``simctl stop`` tell whose jobs are orphans.

The writer lock, ``<exp_path>/.simctl/driver.lock``, is a small JSON file
(the holder's identity, when it was taken). It is made by writing a
temporary file and ``link()``-ing it to the lock's name, which is atomic and
fails if the name exists, also on NFS and the parallel file systems
experiments live on (no ``flock``, no byte-range locks). The holder touches
it (its heartbeat) while it has jobs to watch. A lock is stale, and is taken
over, when its holder is on this host and no longer runs (same pid, same
start time), or is on another host and has not touched it for
:data:`STALE_AFTER` seconds. The takeover renames the stale file to a unique
name first: of two drivers taking it over, only one rename succeeds.

The lock is what makes a driver *the* writer (it is taken by ``generate``
and ``start`` and released by ``close``); a second driver is a guest: it
reads and watches, generates directories that do not exist yet and starts
entities of its own, and whoever overwrites (the writer too) never replaces
a directory a running job of another driver uses (:func:`describe` names
that driver in the error).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any

import psutil

from .errors import ConfigError

LOCKNAME = "driver.lock"
#: seconds between two heartbeats of the writer lock
HEARTBEAT = 10.0
#: a lock held from another host is stale once not touched for this long
STALE_AFTER = 120.0


def identity() -> dict[str, Any]:
    """This process as a driver: pid, start time and host name (a copy)."""
    return dict(_identity(os.getpid()))


@functools.cache
def _identity(pid: int) -> dict[str, Any]:  # by pid: a forked child is another driver
    return {"pid": pid, "create_time": psutil.Process(pid).create_time(), "host": socket.gethostname()}


def same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two identities name one driver."""
    return (a.get("pid") == b.get("pid") and a.get("create_time") == b.get("create_time")
            and a.get("host", b.get("host")) == b.get("host", a.get("host")))


def alive(driver: Mapping[str, Any]) -> bool:
    """Whether the driver ``driver`` names still runs. Only a driver of this
    host (or of no recorded host) can be looked at: one on another host is
    taken as gone (``simctl status`` there looks at its jobs themselves)."""
    pid, started = driver.get("pid"), driver.get("create_time")
    if not isinstance(pid, int) or driver.get("host", socket.gethostname()) != socket.gethostname():
        return False
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and (started is None or abs(p.create_time() - started) < 0.01)
    except psutil.Error:
        return False


def describe(driver: Mapping[str, Any]) -> str:
    """A driver in words: ``driver pid 123 on host n1 (started 2026-12-07 11:42:12)``."""
    started = driver.get("create_time")
    when = (f" (started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))})"
            if isinstance(started, (int, float)) else "")
    return f"driver pid {driver.get('pid', '?')} on host {driver.get('host', '?')}{when}"


class WriterLock:
    """The writer lock of one experiment directory, as one driver sees it."""

    def __init__(self, exp_path: str) -> None:
        self.path = os.path.join(exp_path, ".simctl", LOCKNAME)
        self.held = False
        self._beat = 0.0

    def holder(self) -> dict[str, Any] | None:
        """The identity of the live driver holding the lock, or None (free or stale)."""
        data, mtime = self._read()
        if data is None:
            return None
        return None if self._stale(data, mtime) else data

    def acquire(self) -> dict[str, Any] | None:
        """Take the lock: None once this driver holds it, else the identity of
        the live driver that does (nothing is waited for)."""
        me = identity()
        if self.held:
            data, _ = self._read()
            if data is not None and same(data, me):
                return None
            self.held = False  # taken over while this driver was idle (silent too long): take it again or yield
        for _ in range(20):
            if self._create(me):
                self.held, self._beat = True, time.monotonic()
                return None
            data, mtime = self._read()
            if data is not None and same(data, me):
                self.held = True
                return None
            if data is None and mtime is None:
                continue  # removed meanwhile: try again
            if data is not None and not self._stale(data, mtime):
                return data
            if data is None and mtime is not None and time.time() - mtime < 5:
                return {"pid": "?", "host": "?"}  # being written by another driver that is taking it
            aside = f"{self.path}.stale-{uuid.uuid4().hex[:8]}"
            with contextlib.suppress(FileNotFoundError):  # another driver took it over first
                os.rename(self.path, aside)
                os.unlink(aside)
        raise ConfigError(f"could not take the experiment's writer lock {self.path}: it kept changing")

    def heartbeat(self) -> None:
        """Touch the lock (at most every :data:`HEARTBEAT` seconds) while holding it."""
        now = time.monotonic()
        if self.held and now - self._beat >= HEARTBEAT:
            self._beat = now
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        """Give the lock up (if this driver still holds it)."""
        if not self.held:
            return
        self.held = False
        data, _ = self._read()
        if data is not None and same(data, identity()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def _create(self, me: dict[str, Any]) -> bool:
        directory = os.path.dirname(self.path)
        tmp = os.path.join(directory, f".{LOCKNAME}.{uuid.uuid4().hex[:8]}")
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "w") as fh:
                json.dump({**me, "taken_at": time.time()}, fh)
        except OSError as exc:
            raise ConfigError(f"cannot write the experiment's writer lock and manifest in {directory}: "
                              f"{exc.strerror or exc}; choose an exp_path you can write to") from None
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def _read(self) -> tuple[dict[str, Any] | None, float | None]:
        """The lock's content (None if unreadable) and its mtime (None if there is no lock)."""
        try:
            with open(self.path) as fh:
                mtime = os.fstat(fh.fileno()).st_mtime
                text = fh.read()
        except FileNotFoundError:
            return None, None
        try:
            data = json.loads(text)
        except ValueError:
            return None, mtime
        return (data if isinstance(data, dict) else None), mtime

    @staticmethod
    def _stale(data: Mapping[str, Any], mtime: float | None) -> bool:
        if data.get("host") == socket.gethostname():
            return not alive(data)
        return mtime is None or time.time() - mtime > STALE_AFTER
