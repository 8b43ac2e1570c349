"""The watcher of files that work on compute nodes leaves behind: exit-status
files of batch members, readiness files, a shard's address. It works the same
on every launcher and costs no scheduler command: one thread lists the
watched directories (and stats the watched files) every ``interval`` seconds
and sets the wakeup event when what is there changed, so the experiment's
monitor polls at once. Each experiment has one: its launcher's
(``Launcher.watcher``), which the controller also uses to notice readiness.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence

import attrs

from ..log import logger

log = logger("watcher")


@attrs.define
class _Watch:
    directory: str
    suffix: str
    expected: int
    seen: int = 0


def stamp(path: str) -> tuple[int, int, int] | None:
    """A file's inode, change time (ns) and size, or None if it is missing
    (a file replaced by a rename has a new inode)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_ctime_ns, st.st_size)


@attrs.define
class _FilesWatch:
    paths: tuple[str, ...]
    on_change: Callable[[], None]
    seen: tuple[tuple[int, int, int] | None, ...]


class FileWatcher:
    """Wakes ``wakeup`` when files ending in a suffix appear in watched
    directories (:meth:`watch`; it ends by itself once ``expected`` files are
    there), or calls a function when given files appear or change
    (:meth:`watch_files`). A watch also ends when :meth:`unwatch` is called
    (for a cancelled job, or a store that is ready)."""

    def __init__(self, wakeup: threading.Event | None = None, interval: float = 0.2) -> None:
        self.wakeup = wakeup
        self.interval = interval
        self._watches: dict[str, _Watch | _FilesWatch] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()

    def watch(self, key: str, directory: str, suffix: str, expected: int) -> None:
        """Watch ``directory`` until ``expected`` files ending in ``suffix`` are there."""
        self._add(key, _Watch(directory, suffix, expected))

    def watch_files(self, key: str, paths: Sequence[str], on_change: Callable[[], None]) -> None:
        """Call ``on_change`` (in the watcher's thread) whenever one of ``paths``
        appears, is replaced or changes, until :meth:`unwatch` ``key``. What is
        there now is the starting point: only later changes count."""
        paths = tuple(paths)
        self._add(key, _FilesWatch(paths, on_change, tuple(stamp(p) for p in paths)))

    def _add(self, key: str, watch: _Watch | _FilesWatch) -> None:
        with self._lock:
            self._watches[key] = watch
            if self._thread is None:
                self._closing.clear()
                self._thread = threading.Thread(target=self._run, name="simctl-file-watcher", daemon=True)
                self._thread.start()

    def unwatch(self, key: str) -> None:
        """Stop watching ``key`` (nothing more will appear there)."""
        with self._lock:
            self._watches.pop(key, None)

    def watching(self) -> list[str]:
        """The keys still watched."""
        with self._lock:
            return list(self._watches)

    @staticmethod
    def count(directory: str, suffix: str) -> int:
        """How many files in ``directory`` end in ``suffix`` (0 if it is missing)."""
        try:
            return sum(name.endswith(suffix) for name in os.listdir(directory))
        except OSError:
            return 0

    def _run(self) -> None:
        while not self._closing.wait(self.interval):
            with self._lock:
                watches = dict(self._watches)
                if not watches:
                    self._thread = None  # under the lock: a new watch starts a new thread
                    return
            changed = False
            for key, w in watches.items():
                if isinstance(w, _FilesWatch):
                    now = tuple(stamp(p) for p in w.paths)
                    if now != w.seen:
                        w.seen = now
                        try:
                            w.on_change()
                        except Exception:  # the watcher goes on for everyone else
                            log.exception("file watcher: the callback of %r raised", key)
                    continue
                n = self.count(w.directory, w.suffix)
                if n != w.seen:
                    w.seen, changed = n, True
                if n >= w.expected:
                    self.unwatch(key)
            if changed and self.wakeup is not None:
                self.wakeup.set()
        with self._lock:
            self._thread = None

    def close(self) -> None:
        """Stop the thread (watches are forgotten)."""
        with self._lock:
            self._watches.clear()
            thread = self._thread
        self._closing.set()
        if thread is not None:
            thread.join(5)
