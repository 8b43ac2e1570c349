"""Processes on this machine: the machinery of the ``local`` launcher, public
for any launcher whose steps are processes started here (a scheduler's steps
inside an allocation run ``srun``/``mpirun`` this way; an ssh launcher would).

One reaper thread waits on every child's pidfd, so an exit is noticed at once
(jobs ending in a burst wait up to ``leftover_scan_every`` to share one scan
of the process table for what they left running) and the experiment's
monitor is woken (where pidfds are missing, as on macOS, the reaper polls
the children every ``fallback_poll`` seconds instead). Only
the reaper reaps, so every exit keeps its real return code. A concurrency
limit keeps a huge ensemble from exhausting processes or file descriptors:
steps beyond it stay QUEUED and start as others finish. ``stop`` ends the
whole process tree: SIGTERM to the group and every descendant, SIGKILL after
``stop_grace`` seconds (a step's own ``stop_grace`` overrides it: a store
finishing its final save is given as long as it needs); a step stopped while
still queued is NEVER_STARTED. A step's output files are truncated at its start,
or appended to (``append_output``). A
walltime in a step's run settings is enforced: the step is stopped and
FAILED with the reason.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import math
import os
import resource
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import psutil

from ..log import logger
from .checks import number, positive_int
from .errors import ConfigError
from .launcher import Launcher
from .settings import parse_walltime
from .status import JobStatus, Status
from .steps import BatchJob, Launch, ProcessStep

log = logger("processes")
#: environment variable marking every process of a job, so that ``stop`` finds
#: descendants that left the process tree (double-forked daemons)
MARK = "SIMCTL_JOB_MARK"


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
    __slots__ = ("step", "popen", "pidfd", "status", "tree", "stopping", "deadline", "adopted", "mark", "grace",
                 "started")

    def __init__(self, step: ProcessStep | None) -> None:
        self.step = step
        self.popen: subprocess.Popen[bytes] | None = None
        #: monotonic time at which the walltime is up
        self.deadline: float | None = None
        #: a process started by another (dead) driver: watched with psutil, not reaped
        self.adopted: psutil.Process | None = None
        #: the value of MARK in the environment of the job's processes
        self.mark: str | None = None
        #: an adopted job's own stop grace (its step's, recorded in its handle; None: the launcher's)
        self.grace: float | None = None
        self.pidfd: int | None = None
        #: time.time() just before the process was started (processes of the job are not older)
        self.started = 0.0
        self.status = JobStatus(Status.QUEUED)
        #: descendants of the process, found when it is stopped
        self.tree: list[psutil.Process] = []
        #: why it is being stopped: True (asked to), "walltime", or False
        self.stopping: bool | str = False


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return "?"


def _alive(p: psutil.Process) -> bool:
    """Still running (a zombie waiting for a parent that may never reap it is not)."""
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


#: Linux lists its processes in /proc: reading it directly costs about a fifth of psutil's
#: ``process_iter`` (the scan runs whenever jobs end, see ``ProcessLauncher._marked``)
_PROCFS = os.path.isdir("/proc/self")
_MARK_VAR = b"\0" + MARK.encode() + b"="


def _started_since(since: float) -> list[int]:
    """Pids of the processes running (not zombies) that started at ``since``
    (epoch seconds) or later, except this driver and its children (its jobs'
    own processes: running, so not left behind)."""
    me = os.getpid()
    if not _PROCFS:
        return [p.pid for p in psutil.process_iter(["create_time", "ppid", "status"])
                if p.pid != me and p.info["ppid"] != me and (p.info["create_time"] or 0) >= since
                and p.info["status"] != psutil.STATUS_ZOMBIE]
    ticks = (since - psutil.boot_time()) * os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts clock ticks
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:  # ended meanwhile
            continue
        # after the name in parentheses (which may hold spaces and ')'): state, ppid, ... starttime (the 20th)
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 19 and fields[0] != b"Z" and int(fields[1]) != me and int(fields[19]) >= ticks:
            out.append(int(name))
    return out


def _mark_of(pid: int) -> str | None:
    """The value of ``MARK`` in a process's environment (None: unset, or unreadable)."""
    if not _PROCFS:
        try:
            return psutil.Process(pid).environ().get(MARK)
        except (psutil.Error, OSError):
            return None
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            env = b"\0" + fh.read()
    except OSError:  # ended meanwhile, or another user's
        return None
    at = env.find(_MARK_VAR)
    if at < 0:
        return None
    start = at + len(_MARK_VAR)
    end = env.find(b"\0", start)
    return env[start:end if end >= 0 else len(env)].decode(errors="replace")


class ProcessLauncher(Launcher):
    """Runs process steps as processes on this machine.

    Options: ``max_concurrent`` (default: a quarter of the open-file limit,
    at most 512) and ``stop_grace`` (seconds between SIGTERM and SIGKILL,
    default 3). Job ids are ``"1"``, ``"2"``...; :meth:`handle` records a
    pid and its start time, so :meth:`adopt` finds the process again from
    another driver (``simctl status`` / ``simctl stop`` after a driver died).
    """

    run_commands: ClassVar[tuple[str, ...]] = ()
    default_run_command = None
    poll_bounds = (0.05, 5.0)
    accepted_options = {"max_concurrent": "most processes running at once (default: a quarter of the "
                                          "open-file limit, at most 512)",
                        "stop_grace": "seconds between SIGTERM and SIGKILL when stopping (default 3)"}
    local_rank_vars: Mapping[str | None, tuple[str, ...]] = {None: ()}
    runs_on_this_host = True
    #: how often the reaper polls processes it could not open a pidfd for
    #: (no ``os.pidfd_open`` on this system, or no file descriptor left) and adopted ones
    fallback_poll = 0.02
    #: jobs end in bursts (an ensemble's members started together): after a scan of the process
    #: table for what jobs left running, the next waits this long, so that one scan covers the
    #: jobs ending meanwhile (a job ending alone is seen at once)
    leftover_scan_every = 0.02

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        max_concurrent = options.get("max_concurrent")
        stop_grace = options.get("stop_grace", 3.0)
        positive_int("max_concurrent", max_concurrent, allow_none=True)
        number("stop_grace", stop_grace, minimum=0)
        self.max_concurrent = max_concurrent or default_max_concurrent()
        self.stop_grace = float(stop_grace)
        #: watch exits with pidfds (Linux >= 5.3); otherwise poll every ``fallback_poll`` seconds
        self.use_pidfd = hasattr(os, "pidfd_open")
        self._ids = itertools.count(1)
        self._procs: dict[str, _Proc] = {}
        self._queue: collections.deque[str] = collections.deque()
        self._running = 0
        self._polled: set[str] = set()  # running jobs without a pidfd, and adopted ones
        self._lock = threading.RLock()
        self._selector: selectors.BaseSelector | None = None
        self._rpipe = self._wpipe = -1
        self._reaper: threading.Thread | None = None
        self._reaper_lock = threading.Lock()
        self._closed = False
        #: threads stopping jobs past their walltime (the reaper must not wait out a stop): joined by close()
        self._stoppers: list[threading.Thread] = []
        self._scanned = -math.inf  # time.monotonic() of the last scan for leftovers

    # -- starting ------------------------------------------------------------------

    def start(self, launches: Sequence[Launch]) -> None:
        if any(isinstance(launch, BatchJob) for launch in launches):  # check all before taking any
            raise ConfigError(f"launcher {self.name!r} cannot run batch jobs")
        with self._reaper_lock:  # the reaper quits when idle: it must not quit between these
            self._ensure_reaper()
            with self._lock:
                for step in launches:
                    assert isinstance(step, ProcessStep)
                    job_id = str(next(self._ids))
                    step.job_id = job_id
                    self._procs[job_id] = _Proc(step)
                    self._queue.append(job_id)
                self._fill()

    def _fill(self) -> None:
        while self._queue and self._running < self.max_concurrent:
            job_id = self._queue.popleft()
            proc = self._procs[job_id]
            if proc.status.status is Status.QUEUED:
                self._spawn(job_id, proc)

    def _spawn(self, job_id: str, proc: _Proc) -> None:
        """Start one queued job; any failure to start becomes its FAILED status."""
        step = proc.step
        assert step is not None
        if not os.path.isdir(step.cwd):
            proc.status = JobStatus(Status.FAILED, None, f"working directory {step.cwd} does not exist")
            return
        env = dict(os.environ)
        for k, v in {**step.all_env(), **self.command_env(step)}.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        proc.mark = env[MARK] = self._mark(job_id)
        argv = self.command(step)
        exe = argv[0] if argv else ""
        if not exe:
            proc.status = JobStatus(Status.FAILED, None, "nothing to run: the command line is empty")
            return
        if os.sep not in exe and shutil.which(exe, path=env.get("PATH")) is None:
            proc.status = JobStatus(Status.FAILED, None, f"executable {exe!r} not found on PATH")
            return
        mode = "ab" if step.append_output else "wb"
        try:
            out = open(step.out, mode)
        except OSError as exc:
            proc.status = JobStatus(Status.FAILED, None, f"could not open output file {step.out}: "
                                                         f"{exc.strerror or exc}")
            return
        proc.started = time.time() - 1  # create times are rounded: a second's margin
        try:
            with out, open(step.err, mode) as err:
                proc.popen = subprocess.Popen(argv, cwd=step.cwd, env=env, stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=err, start_new_session=True, close_fds=True)
        except OSError as exc:
            where = (f" (a relative path: looked for in the working directory {step.cwd})"
                     if os.sep in exe and not os.path.isabs(exe) else "")
            proc.status = JobStatus(Status.FAILED, None, f"could not start {exe!r}: {exc.strerror or exc}{where}")
            return
        except (ValueError, TypeError) as exc:  # e.g. a NUL byte in an argument or variable
            proc.status = JobStatus(Status.FAILED, None, f"could not start {exe!r}: {exc}")
            return
        self._running += 1
        proc.status = JobStatus(Status.RUNNING)
        rs = step.run_settings
        if rs is not None and rs.walltime:
            proc.deadline = time.monotonic() + parse_walltime(rs.walltime).total_seconds()
            self._poke()  # the reaper's wait must end by then
        if self.use_pidfd:
            assert self._selector is not None  # start() ran _ensure_reaper under _reaper_lock
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
        """Wake the reaper (to notice a new polled job or deadline, or to quit)."""
        try:
            os.write(self._wpipe, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (so the reaper wakes anyway), or closed

    def _ensure_reaper(self) -> None:
        """Start the reaper thread (and its pipe and selector) unless it runs
        (called with ``_reaper_lock`` held)."""
        if self._reaper is not None and self._reaper.is_alive() and not self._closed:
            return
        if self._reaper is not None:
            self._reaper.join()  # closing: it quits at once
        self._closed = False
        self._selector = selectors.DefaultSelector()
        self._rpipe, self._wpipe = os.pipe()
        os.set_blocking(self._wpipe, False)
        self._selector.register(self._rpipe, selectors.EVENT_READ, None)
        with self._lock:  # processes still running from before a close()
            for job_id, proc in self._procs.items():
                if proc.pidfd is not None:
                    self._selector.register(proc.pidfd, selectors.EVENT_READ, job_id)
        self._reaper = threading.Thread(target=self._reap_loop, args=(self._selector, self._rpipe),
                                        name="simctl-process-reaper", daemon=True)
        self._reaper.start()

    def _timeout(self) -> float | None:
        """How long the reaper may wait: until the next walltime, or the next poll."""
        with self._lock:
            deadlines = [p.deadline for p in self._procs.values() if p.deadline is not None and not p.stopping
                         and not p.status.status.is_terminal]
        waits = [max(0.0, min(deadlines) - time.monotonic())] if deadlines else []
        if self._polled:
            waits.append(self.fallback_poll)
        return min(waits) if waits else None

    def _reap_loop(self, selector: selectors.BaseSelector, rpipe: int) -> None:
        while True:
            try:
                events = selector.select(self._timeout())
                wait = self._scanned + self.leftover_scan_every - time.monotonic()
                if wait > 0 and any(key.data is not None for key, _ in events):
                    time.sleep(wait)  # gather the jobs ending meanwhile: one scan for all of them
                    events = selector.select(0)
                exited = [key.data for key, _ in events if key.data is not None]
                if len(exited) < len(events):
                    os.read(rpipe, 4096)
                    if self._closed:
                        selector.close()
                        os.close(rpipe)
                        return
                with self._lock:
                    exited += [j for j in self._polled if not self._running_still(self._procs[j])]
                    ending = [self._procs[j] for j in exited if self._procs[j].popen is not None
                              and not self._procs[j].stopping]
                left = self._marked(ending)  # one scan of the process table for all of them, outside the lock
                if ending:
                    self._scanned = time.monotonic()
                with self._lock:
                    for job_id in exited:
                        self._reap(job_id, left.get(self._procs[job_id].mark or ""))
                self._enforce_walltimes()
                if self._quit_if_idle(selector, rpipe):
                    if self.wakeup is not None:
                        self.wakeup.set()
                    return
            except Exception:  # never let the reaper die: every later exit would go unnoticed
                log.exception("process launcher: error while reaping; continuing")
                time.sleep(self.fallback_poll)
            if self.wakeup is not None:
                self.wakeup.set()

    def _quit_if_idle(self, selector: selectors.BaseSelector, rpipe: int) -> bool:
        """With nothing running or queued, release the thread, pipe and selector
        (a new ``start`` makes them again), so a finished launcher holds none."""
        if not self._reaper_lock.acquire(blocking=False):
            return False  # a start() is under way
        try:
            with self._lock:
                if self._running or self._polled or self._queue or any(
                        p.stopping and not p.status.done for p in self._procs.values()):
                    return False
                self._closed = True
                selector.close()
                os.close(rpipe)
                os.close(self._wpipe)
                self._wpipe = -1
                self._selector = None
                self._reaper = None
                return True
        finally:
            self._reaper_lock.release()

    @staticmethod
    def _running_still(proc: _Proc) -> bool:
        if proc.adopted is not None:
            return _alive(proc.adopted)
        return proc.popen is not None and proc.popen.poll() is None

    def _enforce_walltimes(self) -> None:
        now = time.monotonic()
        with self._lock:
            late = [j for j, p in self._procs.items() if p.deadline is not None and p.deadline <= now
                    and not p.stopping and not p.status.status.is_terminal]
        if late:
            with self._lock:
                for j in late:
                    self._procs[j].stopping = "walltime"
            self._spawn_stopper(functools.partial(self._stop, late, "walltime"), "simctl-walltime-stop")

    def _spawn_stopper(self, target: Callable[[], None], name: str) -> None:
        """Run a stop in a thread of its own (the reaper must not wait out a grace), joined by close()."""
        stopper = threading.Thread(target=target, name=name, daemon=True)
        with self._lock:
            self._stoppers = [t for t in self._stoppers if t.is_alive()] + [stopper]
        stopper.start()

    def _marked(self, procs: list[_Proc]) -> dict[str, list[psutil.Process]]:
        """The processes still running that carry the mark of one of ``procs``
        (jobs whose own process just ended), by mark: what a job left behind
        (a double-forked daemon). Only processes started since the earliest
        of those jobs, and not children of this driver, are looked into."""
        marks = {p.mark: p.popen.pid for p in procs if p.mark and p.popen is not None}
        if not marks:
            return {}
        out: dict[str, list[psutil.Process]] = collections.defaultdict(list)
        for pid in _started_since(min(p.started for p in procs)):
            m = _mark_of(pid)
            if m in marks and pid != marks[m]:
                with contextlib.suppress(psutil.Error):
                    out[m].append(psutil.Process(pid))
        return out

    def _end_leftovers(self, job_id: str, proc: _Proc, final: JobStatus) -> None:
        """A job's own process ended leaving others running (``proc.tree``):
        stop them (SIGTERM, SIGKILL after the job's grace), then give the job
        ``final``, saying what was stopped (a thread of its own: the reaper
        does not wait out a grace)."""
        left = proc.tree
        said = ", ".join(f"{p.pid} ({_name(p)})" for p in left[:5]) + (" ..." if len(left) > 5 else "")
        log.warning("process launcher: job %s ended leaving %d process(es) running: %s; stopping them",
                    job_id, len(left), said)
        self._end(left, self._grace(proc))
        reason = (f"{final.reason}; " if final.reason else "") + (
            f"it left {len(left)} process(es) running when it exited, stopped then: {said}")
        with self._lock:
            proc.status = attrs.evolve(final, reason=reason)
        if self.wakeup is not None:
            self.wakeup.set()

    def _reap(self, job_id: str, left: list[psutil.Process] | None = None) -> None:
        """Record the exit of a job whose process ended (called with the lock
        held); ``left``: the processes it left running, stopped before the job
        counts as ended."""
        proc = self._procs[job_id]
        if proc.adopted is not None:
            self._polled.discard(job_id)
            proc.status = (JobStatus(Status.CANCELLED, None, "stopped") if proc.stopping else
                           JobStatus(Status.UNKNOWN, None, "ended while no driver watched it; exit status "
                                     "not recorded", final=True))
            return
        if proc.popen is None or (proc.pidfd is None and job_id not in self._polled):
            return  # never started, or already reaped
        rc = proc.popen.wait()
        if proc.pidfd is not None:
            if self._selector is not None:
                try:
                    self._selector.unregister(proc.pidfd)
                except (KeyError, ValueError):
                    pass
            os.close(proc.pidfd)
            proc.pidfd = None
        self._polled.discard(job_id)
        self._running -= 1
        if proc.stopping == "walltime":
            rs = proc.step.run_settings if proc.step else None
            proc.status = JobStatus(Status.FAILED, rc, f"walltime {rs.walltime if rs else ''} exceeded: stopped "
                                    + (f"({_signal_reason(rc)})" if rc < 0 else f"(exit code {rc})"))
        elif proc.stopping:
            proc.status = JobStatus(Status.CANCELLED, rc, "stopped by the experiment"
                                    + (f" ({_signal_reason(rc)})" if rc < 0 else f" (exit code {rc})"))
        elif rc == 0:
            proc.status = JobStatus(Status.COMPLETED, 0)
        elif rc < 0:
            proc.status = JobStatus(Status.FAILED, rc, _signal_reason(rc))
        else:
            proc.status = JobStatus(Status.FAILED, rc, f"exited with code {rc}")
        if left and not proc.stopping:  # it is not over while what it started runs
            final, proc.tree, proc.stopping = proc.status, list(left), "leftovers"
            proc.status = JobStatus(Status.RUNNING, None, f"its process exited ({final.status.value}); stopping "
                                    f"the {len(left)} process(es) it left running")
            self._spawn_stopper(functools.partial(self._end_leftovers, job_id, proc, final), "simctl-leftover-stop")
        self._fill()

    # -- watching and stopping --------------------------------------------------------

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        with self._lock:
            return {j: (self._procs[j].status if j in self._procs
                        else JobStatus(Status.UNKNOWN, None, "no such job")) for j in job_ids}

    def stop(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """End each job's whole process tree: SIGTERM to its process group and
        every descendant (found with psutil by parentage and by the job's mark
        in the environment, so children that left the group with setsid, or
        double-forked daemons, are included), then SIGKILL to whatever is left
        after ``stop_grace`` seconds. A job still waiting its turn never starts."""
        self._stop(job_ids, True)
        return self.status(job_ids)

    def _stop(self, job_ids: Sequence[str], reason: bool | str) -> None:
        victims: list[_Proc] = []
        #: jobs already being stopped for another reason (their walltime): that stop is waited for
        under_way: list[_Proc] = []
        orphans: list[_Proc] = []  # adopted jobs whose own process is gone: what they left is still stopped
        with self._lock:
            for j in job_ids:
                proc = self._procs.get(j)
                if proc is not None and proc.status.done and proc.popen is None and proc.adopted is None \
                        and proc.mark and reason is True:
                    orphans.append(proc)
                if proc is None or proc.status.done:
                    continue
                if proc.stopping and proc.stopping != reason:
                    under_way.append(proc)
                    continue
                if proc.popen is None and proc.adopted is None:  # still queued
                    proc.status = JobStatus(Status.NEVER_STARTED, None, "stopped before it started")
                    continue
                proc.stopping = reason
                victims.append(proc)
        if orphans:
            self._stop_orphans(orphans)
        if victims:
            with self._reaper_lock:  # their exits must be seen, even after a close()
                self._ensure_reaper()
        self._find_trees(victims)
        for proc in victims:
            self._signal(proc, signal.SIGTERM)
        start = time.monotonic()
        deadline = {id(p): start + self._grace(p) for p in victims}
        waiting, killed = victims, []
        while waiting:  # each job gets its own grace (math.inf: until it ends by itself)
            left = self._wait_ended(waiting, min(deadline[id(p)] for p in waiting))
            now = time.monotonic()
            late = [p for p in left if deadline[id(p)] <= now]
            self._find_trees(late)  # anything started while they were shutting down
            for proc in late:
                self._signal(proc, signal.SIGKILL)
            killed += late
            waiting = [p for p in left if deadline[id(p)] > now]
        left = self._wait_ended(killed, time.monotonic() + 10)
        for proc in left:
            log.error("process launcher: job %s (pid %s) did not end after SIGKILL",
                      proc.step.job_id if proc.step else "?", self._pid(proc))
        if under_way:
            self._wait_ended(under_way, time.monotonic() + max(map(self._grace, under_way)) + 10)

    def _stop_orphans(self, procs: list[_Proc]) -> None:
        """Stop what jobs whose own process died left running (found by the
        mark in their environment: a server whose supervisor was killed),
        SIGTERM then SIGKILL after the job's grace."""
        self._find_trees(procs)
        left = [p for proc in procs for p in proc.tree if _alive(p)]
        if not left:
            return
        log.warning("process launcher: stopping %d process(es) left by job(s) whose own process had ended: %s",
                    len(left), ", ".join(str(p.pid) for p in left))
        self._end(left, max(map(self._grace, procs)))
        for proc in procs:
            proc.status = attrs.evolve(proc.status, reason=f"{proc.status.reason}; the {len(proc.tree)} "
                                       "process(es) it left running were stopped")

    @staticmethod
    def _end(left: list[psutil.Process], grace: float) -> None:
        """SIGTERM to each of ``left``, SIGKILL to what still runs ``grace`` seconds later; wait until gone."""
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.terminate()
        deadline = time.monotonic() + grace
        while any(map(_alive, left)) and time.monotonic() < deadline:
            time.sleep(0.02)
        for p in left:
            if _alive(p):
                with contextlib.suppress(psutil.Error):
                    p.kill()
        deadline = time.monotonic() + 10
        while any(map(_alive, left)) and time.monotonic() < deadline:
            time.sleep(0.02)

    def _grace(self, proc: _Proc) -> float:
        """Seconds between SIGTERM and SIGKILL for this job: its step's own, else the launcher's."""
        own = proc.step.stop_grace if proc.step is not None else proc.grace
        return self.stop_grace if own is None else own

    def _mark(self, job_id: str) -> str:
        return f"{id(self):x}:{os.getpid()}:{job_id}"

    @staticmethod
    def _pid(proc: _Proc) -> int | None:
        return proc.popen.pid if proc.popen is not None else (proc.adopted.pid if proc.adopted else None)

    def _find_trees(self, procs: list[_Proc]) -> None:
        """Add every current descendant of each job's process, and every
        process carrying the job's mark in its environment, to its ``tree``
        (one scan of the process table for all jobs)."""
        if not procs:
            return
        children: dict[int, list[psutil.Process]] = collections.defaultdict(list)
        marked: dict[str, list[psutil.Process]] = collections.defaultdict(list)
        marks = {proc.mark for proc in procs if proc.mark}
        me = os.getpid()
        for p in psutil.process_iter(["ppid"]):
            children[p.info["ppid"]].append(p)
            if marks and p.pid != me:
                try:
                    m = p.environ().get(MARK)
                except (psutil.Error, OSError):
                    continue
                if m in marks:
                    marked[m].append(p)
        for proc in procs:
            known = {p.pid for p in proc.tree} | {self._pid(proc)}  # the job's own process is signalled by group
            found = list(marked.get(proc.mark or "", ()))
            stack = [pid for pid in (self._pid(proc),) if pid is not None]
            while stack:
                for child in children.get(stack.pop(), ()):
                    found.append(child)
                    stack.append(child.pid)
            for p in found:
                if p.pid not in known:
                    known.add(p.pid)
                    proc.tree.append(p)

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

    def _signal(self, proc: _Proc, sig: signal.Signals) -> None:
        pid = self._pid(proc)
        if proc.popen is not None and pid is not None:
            try:  # the group outlives its leader: Linux does not reuse a pid while its group has members
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        for p in proc.tree + ([proc.adopted] if proc.adopted is not None else []):
            try:
                p.send_signal(sig)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass

    # -- after the driver is gone ---------------------------------------------------------

    def handle(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            proc = self._procs.get(job_id)
            pid = self._pid(proc) if proc else None
            if proc is None or pid is None:
                return {}
            try:
                ctime = psutil.Process(pid).create_time()
            except psutil.Error:
                ctime = None
            out = {"pid": pid, "create_time": ctime, "mark": proc.mark}
            grace = proc.step.stop_grace if proc.step is not None else None
            if grace is not None:  # JSON has no infinity: -1 means "until it ends by itself"
                out["stop_grace"] = -1 if math.isinf(grace) else grace
            return out

    def adopt(self, job_id: str, handle: Mapping[str, Any]) -> bool:
        pid, ctime = handle.get("pid"), handle.get("create_time")
        if not isinstance(pid, int):
            return False
        proc = _Proc(None)
        proc.mark = handle.get("mark")
        grace = handle.get("stop_grace")
        if isinstance(grace, (int, float)) and not isinstance(grace, bool):
            proc.grace = math.inf if grace < 0 else float(grace)
        try:
            p = psutil.Process(pid)
            alive = _alive(p) and (ctime is None or abs(p.create_time() - ctime) < 0.01)
        except psutil.Error:
            alive = False
        if alive:
            proc.adopted = p
            proc.status = JobStatus(Status.RUNNING)
        else:
            proc.status = JobStatus(Status.UNKNOWN, None, "ended while no driver watched it; exit status "
                                    "not recorded", final=True)
        with self._reaper_lock:
            self._ensure_reaper()
            with self._lock:
                self._procs[job_id] = proc
                if alive:
                    self._polled.add(job_id)
        self._poke()
        return True

    def close(self) -> None:
        """Stop the reaper and release its pipe and selector (started again
        on the next ``start``). Stops of jobs past their walltime still under
        way are finished first (they need the reaper to see the exits)."""
        super().close()
        while True:
            with self._lock:
                stoppers, self._stoppers = self._stoppers, []
            if not stoppers:
                break
            for stopper in stoppers:
                stopper.join()
        with self._reaper_lock:
            reaper = self._reaper
            if reaper is None:
                return
            self._closed = True
            self._poke()
            reaper.join(5)
            if not reaper.is_alive():
                os.close(self._wpipe)
                self._wpipe = -1
                self._reaper = None
