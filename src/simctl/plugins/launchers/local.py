"""The ``local`` launcher: each model is a process (in its own process group)
on this machine.

One reaper thread waits on every child's pidfd, so an exit is noticed at once
and the experiment's monitor is woken (where pidfds are missing, as on macOS,
the reaper polls the children every ``fallback_poll`` seconds instead). Only
the reaper reaps, so every exit keeps its real return code. A concurrency
limit keeps a huge ensemble from exhausting processes or file descriptors:
members beyond it stay QUEUED and start as others finish. ``stop`` ends the
whole process tree: SIGTERM to the group and every descendant, SIGKILL after
``stop_grace`` seconds; a member stopped while still queued is NEVER_STARTED.

Options (``Experiment(launcher_options={...})``): ``max_concurrent`` (default:
a quarter of the open-file limit, at most 512) and ``stop_grace`` (seconds,
default 3).
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
from simctl.log import get_logger

log = get_logger("local")


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
        #: descendants of the process, found when it is stopped
        self.tree: list[psutil.Process] = []
        self.stopping = False


def _alive(p: psutil.Process) -> bool:
    """Still running (a zombie waiting for a parent that may never reap it is not)."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class LocalLauncher(Launcher):
    """Runs models as local processes."""

    name = "local"
    run_commands = ()
    default_run_command = None
    poll_bounds = (0.05, 5.0)
    #: how often the reaper polls processes it could not open a pidfd for
    #: (no ``os.pidfd_open`` on this system, or no file descriptor left)
    fallback_poll = 0.02

    def __init__(self, max_concurrent: int | None = None, stop_grace: float = 3.0, **options: Any) -> None:
        super().__init__(**options)
        if max_concurrent is not None and (isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int)
                                           or max_concurrent < 1):
            raise simctl.ConfigError(f"max_concurrent must be a positive integer, got {max_concurrent!r}")
        if isinstance(stop_grace, bool) or not isinstance(stop_grace, (int, float)) or stop_grace < 0:
            raise simctl.ConfigError(f"stop_grace must be a number of seconds >= 0, got {stop_grace!r}")
        self.max_concurrent = max_concurrent or default_max_concurrent()
        self.stop_grace = float(stop_grace)
        #: watch exits with pidfds (Linux >= 5.3); otherwise poll every ``fallback_poll`` seconds
        self.use_pidfd = hasattr(os, "pidfd_open")
        self._ids = itertools.count(1)
        self._procs: dict[str, _Proc] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running = 0
        self._polled: set[str] = set()  # running jobs without a pidfd
        self._lock = threading.RLock()
        self._selector = selectors.DefaultSelector()
        self._rpipe, self._wpipe = os.pipe()
        os.set_blocking(self._wpipe, False)
        self._selector.register(self._rpipe, selectors.EVENT_READ, None)
        self._reaper: threading.Thread | None = None
        self._reaper_lock = threading.Lock()
        self._closed = False

    @classmethod
    def detect(cls) -> tuple[int, str]:
        return 1, "no workload manager found; running processes on this machine"

    # -- starting ------------------------------------------------------------------

    def start(self, steps: Sequence[LaunchStep]) -> None:
        if any(step.members for step in steps):  # check all before taking any
            raise simctl.ConfigError("the local launcher cannot run batch jobs")
        with self._lock:
            for step in steps:
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
        """Start one queued job; any failure to start becomes its FAILED status."""
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
        exe = step.argv[0] if step.argv else ""
        if not exe:
            proc.status = JobStatus(Status.FAILED, None, "nothing to run: the command line is empty")
            return
        if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
            proc.status = JobStatus(Status.FAILED, None, f"executable {exe!r} not found on PATH")
            return
        try:
            out = open(step.out, "wb")
        except OSError as exc:
            proc.status = JobStatus(Status.FAILED, None, f"could not open output file {step.out}: "
                                                         f"{exc.strerror or exc}")
            return
        try:
            with out, open(step.err, "wb") as err:
                proc.popen = subprocess.Popen(step.argv, cwd=step.cwd, env=env, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=err, start_new_session=True, close_fds=True)
        except OSError as exc:
            proc.status = JobStatus(Status.FAILED, None, f"could not start {exe!r}: {exc.strerror or exc}")
            return
        except (ValueError, TypeError) as exc:  # e.g. a NUL byte in an argument or variable
            proc.status = JobStatus(Status.FAILED, None, f"could not start {exe!r}: {exc}")
            return
        self._running += 1
        proc.status = JobStatus(Status.RUNNING)
        if self.use_pidfd:
            try:
                proc.pidfd = os.pidfd_open(proc.popen.pid)
                self._selector.register(proc.pidfd, selectors.EVENT_READ, job_id)
                return
            except OSError:  # no pidfd support or no descriptor left: poll this one instead
                if proc.pidfd is not None:
                    os.close(proc.pidfd)
                    proc.pidfd = None
        self._polled.add(job_id)
        self._poke()

    def _poke(self) -> None:
        """Wake the reaper (to notice a new polled job, or to quit)."""
        try:
            os.write(self._wpipe, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full, so the reaper wakes anyway

    def _ensure_reaper(self) -> None:
        """Start the reaper thread unless it runs (called without ``_lock`` held)."""
        with self._reaper_lock:
            if self._reaper is not None and self._reaper.is_alive() and self._closed:
                self._reaper.join()  # closed but not gone yet: it quits at once
            if self._reaper is None or not self._reaper.is_alive():
                self._closed = False
                self._reaper = threading.Thread(target=self._reap_loop, name="simctl-local-reaper",
                                                daemon=True)
                self._reaper.start()

    def _reap_loop(self) -> None:
        while True:
            try:
                timeout = self.fallback_poll if self._polled else None
                events = self._selector.select(timeout)
                exited = [key.data for key, _ in events if key.data is not None]
                if len(exited) < len(events):
                    os.read(self._rpipe, 4096)
                    if self._closed:
                        return
                with self._lock:
                    exited += [j for j in self._polled if self._procs[j].popen.poll() is not None]  # type: ignore[union-attr]
                    for job_id in exited:
                        self._reap(job_id)
            except Exception:  # never let the reaper die: every later exit would go unnoticed
                log.exception("local launcher: error while reaping; continuing")
                time.sleep(self.fallback_poll)
            if self.wakeup is not None:
                self.wakeup.set()

    def _reap(self, job_id: str) -> None:
        """Record the exit of a job whose process ended (called with the lock held)."""
        proc = self._procs[job_id]
        if proc.popen is None or (proc.pidfd is None and job_id not in self._polled):
            return  # never started, or already reaped
        rc = proc.popen.wait()
        if proc.pidfd is not None:
            self._selector.unregister(proc.pidfd)
            os.close(proc.pidfd)
            proc.pidfd = None
        self._polled.discard(job_id)
        self._running -= 1
        if proc.stopping:
            proc.status = JobStatus(Status.CANCELLED, rc, "stopped by the experiment"
                                    + (f" ({_signal_reason(rc)})" if rc < 0 else f" (exit code {rc})"))
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
        """End each job's whole process tree: SIGTERM to its process group and
        every descendant (found with psutil, so children that left the group
        with setsid are included), then SIGKILL to whatever is left after
        ``stop_grace`` seconds. A job still waiting its turn never starts."""
        victims: list[_Proc] = []
        with self._lock:
            for j in job_ids:
                proc = self._procs.get(j)
                if proc is None or proc.status.status.is_terminal:
                    continue
                if proc.popen is None:  # still queued
                    proc.status = JobStatus(Status.NEVER_STARTED, None, "stopped before it started")
                    continue
                proc.stopping = True
                victims.append(proc)
        self._find_trees(victims)
        for proc in victims:
            self._signal(proc, signal.SIGTERM)
        left = self._wait_ended(victims, time.monotonic() + self.stop_grace)
        self._find_trees(left)  # anything started while they were shutting down
        for proc in left:
            self._signal(proc, signal.SIGKILL)
        left = self._wait_ended(left, time.monotonic() + 10)
        for proc in left:
            log.error("local launcher: job %s (pid %s) did not end after SIGKILL", proc.step.job_id,
                      proc.popen.pid if proc.popen else "?")
        return self.status(job_ids)

    @staticmethod
    def _find_trees(procs: list[_Proc]) -> None:
        """Add every current descendant of each job's process to its ``tree``
        (one scan of the process table for all jobs)."""
        if not procs:
            return
        children: dict[int, list[psutil.Process]] = collections.defaultdict(list)
        for p in psutil.process_iter(["ppid"]):
            children[p.info["ppid"]].append(p)
        for proc in procs:
            assert proc.popen is not None
            known = {p.pid for p in proc.tree}
            stack = [proc.popen.pid]
            while stack:
                for child in children.get(stack.pop(), ()):
                    if child.pid not in known:
                        known.add(child.pid)
                        proc.tree.append(child)
                    stack.append(child.pid)

    def _wait_ended(self, procs: list[_Proc], deadline: float) -> list[_Proc]:
        """Wait until each job's exit is recorded by the reaper (the process is
        never reaped here, so its return code is kept) and its descendants are
        gone; return the jobs for which that did not happen by ``deadline``."""
        delay = 0.002
        while True:
            left = [p for p in procs if not p.status.status.is_terminal or any(map(_alive, p.tree))]
            now = time.monotonic()
            if not left or now >= deadline:
                return left
            time.sleep(min(delay, deadline - now))
            delay = min(delay * 2, 0.05)

    @staticmethod
    def _signal(proc: _Proc, sig: signal.Signals) -> None:
        assert proc.popen is not None
        try:  # the group outlives its leader: Linux does not reuse a pid while its group has members
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
        self._poke()


@simctl.hookimpl
def simctl_register_launchers() -> list[type[Launcher]]:
    return [LocalLauncher]
