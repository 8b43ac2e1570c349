"""The ``local`` launcher: each model is a process (in its own process group)
on this machine.

One reaper thread waits on every child's pidfd, so an exit is noticed at once
and the experiment's monitor is woken. A concurrency limit keeps a huge
ensemble from exhausting processes or file descriptors: members beyond it stay
QUEUED and start as others finish. ``stop`` ends the whole process tree:
SIGTERM to the group and every descendant, SIGKILL after a grace period.
"""

from __future__ import annotations

import collections
import itertools
import os
import resource
import selectors
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Sequence

import psutil

import simctl
from simctl import JobStatus, Launcher, LaunchStep, Status


def default_max_concurrent() -> int:
    """A quarter of the open-file limit, at most 512: each running child costs
    the driver one pidfd while it runs."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1, min(512, (soft if soft != resource.RLIM_INFINITY else 4096) // 4))


def _signal_reason(rc: int) -> str:
    try:
        name = signal.Signals(-rc).name
    except ValueError:
        name = f"signal {-rc}"
    return f"killed by {name} ({-rc})"


class _Proc:
    __slots__ = ("step", "popen", "pidfd", "status", "tree", "stopping")

    def __init__(self, step: LaunchStep) -> None:
        self.step = step
        self.popen: subprocess.Popen[bytes] | None = None
        self.pidfd: int | None = None
        self.status = JobStatus(Status.QUEUED)
        self.tree: list[psutil.Process] = []
        self.stopping = False


class LocalLauncher(Launcher):
    """Runs models as local processes."""

    name = "local"
    run_commands = ()
    default_run_command = None
    poll_bounds = (0.05, 5.0)

    def __init__(self, max_concurrent: int | None = None, stop_grace: float = 3.0, **options: Any) -> None:
        super().__init__(**options)
        self.max_concurrent = max_concurrent or default_max_concurrent()
        self.stop_grace = stop_grace
        self._ids = itertools.count(1)
        self._procs: dict[str, _Proc] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running = 0
        self._lock = threading.RLock()
        self._selector = selectors.DefaultSelector()
        self._rpipe, self._wpipe = os.pipe()
        self._selector.register(self._rpipe, selectors.EVENT_READ, None)
        self._reaper: threading.Thread | None = None

    @classmethod
    def detect(cls) -> tuple[int, str]:
        return 1, "no workload manager found; running processes on this machine"

    # -- starting ------------------------------------------------------------------

    def start(self, steps: Sequence[LaunchStep]) -> None:
        with self._lock:
            for step in steps:
                if step.members:
                    raise simctl.ConfigError("the local launcher cannot run batch jobs")
                job_id = str(next(self._ids))
                step.job_id = job_id
                self._procs[job_id] = _Proc(step)
                self._queue.append(job_id)
            self._fill()
            self._ensure_reaper()

    def _fill(self) -> None:
        while self._queue and self._running < self.max_concurrent:
            job_id = self._queue.popleft()
            proc = self._procs[job_id]
            if proc.status.status is Status.QUEUED:
                self._spawn(job_id, proc)

    def _spawn(self, job_id: str, proc: _Proc) -> None:
        step = proc.step
        if not os.path.isdir(step.cwd):
            proc.status = JobStatus(Status.FAILED, None, f"working directory {step.cwd} does not exist")
            return
        env = dict(os.environ)
        for k, v in step.env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        exe = step.argv[0]
        if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
            proc.status = JobStatus(Status.FAILED, None, f"executable {exe!r} not found on PATH")
            return
        try:
            with open(step.out, "wb") as out, open(step.err, "wb") as err:
                proc.popen = subprocess.Popen(step.argv, cwd=step.cwd, env=env, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=err, start_new_session=True, close_fds=True)
        except OSError as exc:
            proc.status = JobStatus(Status.FAILED, None, f"could not start {exe!r}: {exc.strerror or exc}")
            return
        proc.pidfd = os.pidfd_open(proc.popen.pid)
        self._selector.register(proc.pidfd, selectors.EVENT_READ, job_id)
        proc.status = JobStatus(Status.RUNNING)
        self._running += 1

    def _ensure_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap_loop, name="simctl-local-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        while True:
            for key, _ in self._selector.select():
                if key.data is None:
                    os.read(self._rpipe, 4096)
                    if self._closed:
                        return
                    continue
                self._reap(key.data)
            if self.wakeup is not None:
                self.wakeup.set()

    _closed = False

    def _reap(self, job_id: str) -> None:
        with self._lock:
            proc = self._procs[job_id]
            assert proc.popen is not None and proc.pidfd is not None
            rc = proc.popen.wait()
            self._selector.unregister(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = None
            self._running -= 1
            if proc.stopping:
                proc.status = JobStatus(Status.CANCELLED, rc, "stopped by the experiment")
            elif rc == 0:
                proc.status = JobStatus(Status.COMPLETED, 0)
            elif rc < 0:
                proc.status = JobStatus(Status.FAILED, rc, _signal_reason(rc))
            else:
                proc.status = JobStatus(Status.FAILED, rc, f"exited with code {rc}")
            self._fill()

    # -- watching and stopping --------------------------------------------------------

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        with self._lock:
            return {j: (self._procs[j].status if j in self._procs
                        else JobStatus(Status.UNKNOWN, None, "no such job")) for j in job_ids}

    def stop(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        victims: list[_Proc] = []
        with self._lock:
            for j in job_ids:
                proc = self._procs.get(j)
                if proc is None or proc.status.status.is_terminal:
                    continue
                if proc.popen is None:  # still queued
                    proc.status = JobStatus(Status.CANCELLED, None, "stopped before it started")
                    continue
                proc.stopping = True
                victims.append(proc)
        for proc in victims:
            assert proc.popen is not None
            try:
                root = psutil.Process(proc.popen.pid)
                proc.tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                proc.tree = []
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_grace
        for proc in victims:
            _, alive = psutil.wait_procs(proc.tree, timeout=max(0.0, deadline - time.monotonic()))
            if alive:
                self._signal(proc, signal.SIGKILL)
                psutil.wait_procs(alive, timeout=5)
        for proc in victims:  # make sure the reaper has recorded the exit
            assert proc.popen is not None
            proc.popen.wait()
        end = time.monotonic() + 5
        while time.monotonic() < end and any(not p.status.status.is_terminal for p in victims):
            time.sleep(0.005)
        return self.status(job_ids)

    @staticmethod
    def _signal(proc: _Proc, sig: signal.Signals) -> None:
        assert proc.popen is not None
        try:
            os.killpg(proc.popen.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for p in proc.tree:
            try:
                p.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    def close(self) -> None:
        self._closed = True
        os.write(self._wpipe, b"x")


@simctl.hookimpl
def simctl_register_launchers() -> list[type[Launcher]]:
    return [LocalLauncher]
