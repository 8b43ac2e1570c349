"""One controller per experiment: plans entities into launches, runs the
``before_launch`` hook on every process step, starts them through the
launcher, records them, waits for entities that run until stopped to be
ready, and runs the single monitor thread that watches every job.

Per poll cycle the monitor makes ONE ``status`` call for all active jobs. A
launcher that knows at once when a job ends sets the wakeup event, so the
monitor reacts without waiting for its next poll; otherwise the interval
starts short and grows while nothing changes, within ``poll_bounds``.

Everything per cycle costs what changed, not the size of the experiment:
the active jobs are kept apart from the finished ones, ``wait`` follows a
log of the jobs that finished, a lifecycle hook no plugin implements is not
called at all, and a save appends only the records that changed to the
manifest's journal (see :mod:`.manifest`). The records are copied under the
controller's lock and written outside it, so the monitor and the driver
thread are not held up by the disk.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from ..log import logger
from . import driver as drv, logs, manifest as mf
from .entity import Entity, Handoff, PlanContext
from .errors import ConfigError, LaunchError, SimctlError
from .launcher import Launcher
from .plan import LaunchPlan, make_plan
from .plugins import Plugins, call_hook
from .sigint import holding_sigint
from .status import JobStatus, Status
from .steps import BatchJob, ProcessStep
from .watcher import FileWatcher

log = logger("controller")
SAVE_EVERY = 0.25  # seconds between manifest writes while jobs change quickly
#: seconds between two readiness checks when neither a ready file nor a job changed
READY_FALLBACK = 1.0
_NEW, _QUEUED = JobStatus(Status.NEW), JobStatus(Status.QUEUED)


@attrs.define(eq=False)
class Job:
    """A launched process step. Two entities are involved, each with one
    name: ``owner``, the entity that was started (a model, an ensemble, a
    store: what ``start`` was given and what runs until stopped or not), and
    ``entity``, the leaf the step runs (the model, the ensemble's member, the
    store itself: what ``ProcessStep.entity`` and the lifecycle hooks' ``entity``
    argument name)."""

    owner: Entity
    step: ProcessStep
    launcher: Launcher
    record: mf.JobRecord
    status: JobStatus

    @property
    def key(self) -> str:
        return self.step.key

    @property
    def entity(self) -> Any:
        """The leaf the step runs (what the lifecycle hooks receive): the step's
        entity, else the owner."""
        return self.step.entity if self.step.entity is not None else self.owner

    @property
    def done(self) -> bool:
        return self.status.done

    @property
    def ends(self) -> bool:
        """Whether the job ends by itself (False for an entity that runs until stopped)."""
        return not self.owner.runs_until_stopped


def tail(path: str, lines: int = 10) -> str:
    """The last ``lines`` lines of a file (for error messages), or '' if unreadable."""
    return "\n".join(logs.tail(path, lines))


class Controller:
    """Launches, watches and stops the jobs of one experiment."""

    def __init__(self, name: str, exp_path: str, launcher: Launcher, plugins: Plugins,
                 experiment: object) -> None:
        self.launcher, self.plugins, self.experiment = launcher, plugins, experiment
        self.lock = threading.RLock()
        #: the experiment's manifest, its records guarded by this controller's lock
        self.book = mf.ManifestFile(exp_path, name, launcher.name, self.lock)
        self.manifest = self.book.manifest
        self.jobs: dict[str, Job] = {}
        #: the jobs not finished yet, by key (what the monitor watches)
        self._active: dict[str, Job] = {}
        #: every job that finished, in the order it did (``wait`` reads what was added)
        self._finished: list[Job] = []
        #: how many times launch() recorded jobs
        self._launches = 0
        #: records changed since the last save, by id()
        self._pending: dict[int, mf.JobRecord] = {}
        #: highest run of each key, launch times: kept up to date as records are added, so that
        #: recording a launch costs what it launches
        self._runs: dict[str, int] = {}
        self._launch_times: set[float | None] = set()
        for rec in self.manifest.jobs:
            self._count(rec)
        self.changed = threading.Condition(self.lock)
        self.wakeup = threading.Event()
        #: the experiment's one file watcher (the launcher's): readiness files are watched with it
        watcher = getattr(launcher, "watcher", None)
        self.watcher: FileWatcher = watcher if isinstance(watcher, FileWatcher) else FileWatcher()
        #: how many times the watcher saw a ready file change (readiness waits compare it)
        self._notices = 0
        self.hook_errors: list[str] = []
        #: entities whose event files are followed, with their jobs, by watch key
        self._event_watches: dict[str, tuple[Entity, list[Job]]] = {}
        #: what each ready entity that runs until stopped hands to later ones, by its name
        self.handoffs: dict[str, tuple[Entity, Handoff]] = {}
        #: keys of jobs left running on purpose (Ctrl-C with kill_on_interrupt=False): not stopped at exit
        self.detached: set[str] = set()
        self._thread: threading.Thread | None = None
        #: the monitor thread shutdown() asked to end (it does at its next turn; a launch meanwhile
        #: starts a new one rather than keeping this one)
        self._retired: threading.Thread | None = None
        self._last_save = 0.0
        self._save_error: str | None = None
        #: called by the monitor on each turn (the experiment's writer lock shows it is alive)
        self.heartbeat: Callable[[], None] | None = None
        launcher.bind(self.wakeup)

    # -- planning ------------------------------------------------------------------

    def context(self, token: str | None = None) -> PlanContext:
        """The planning context: this launcher, a fresh token, and what the
        running entities that run until stopped hand to new ones."""
        handoff = Handoff()
        with self.lock:
            for entity, given in self.handoffs.values():
                if any(not j.done for j in self.jobs.values() if j.owner is entity):
                    handoff.env.update(given.env)
                    handoff.secret_env.update(given.secret_env)
            # the launch's number: the same for preview() and the start() after it, so the
            # previewed batch directory and script are exactly the ones submitted
            launches = len(self._launch_times)
        return PlanContext(self.launcher, token or str(launches + 1), handoff,
                           worker_plugins=tuple(self.plugins.worker_args()))

    def plan(self, entities: Sequence[Entity]) -> LaunchPlan:
        """The launch plan of ``entities`` (pure: raises ConfigError for bad input)."""
        return make_plan(entities, self.context())

    # -- launching -----------------------------------------------------------------------

    def prepared(self, entities: Sequence[Entity]) -> LaunchPlan:
        """The plan of ``entities`` after the ``before_launch`` hook: what
        :meth:`launch` starts and ``preview`` shows."""
        plan = self.plan(entities)
        self._before_launch(plan)
        return plan

    def launch(self, entities: Sequence[Entity], show: Callable[[LaunchPlan], None] | None = None,
               before_write: Callable[[], None] | None = None) -> list[Job]:
        """Start ``entities``; return their jobs. Bad input raises before
        anything starts or is written. ``show`` receives the plan just before
        it starts; ``before_write`` is called once the plan is checked, before
        the first file is written.
        Entities that run until stopped are waited on until ready before
        this returns. They start first, so that the others, started in the
        same call, receive what they hand off."""
        stores = [e for e in entities if e.runs_until_stopped]
        if stores and len(stores) < len(entities):
            self.plan(entities)  # all of it checked before anything starts
            rest = [e for e in entities if not e.runs_until_stopped]
            return self.launch(stores, show, before_write) + self.launch(rest, show, before_write)
        plan = self.plan(entities)
        with self.lock:
            running = [s.key for s in plan.steps if s.key in self.jobs and not self.jobs[s.key].done]
            other = next((plan.owner[k] for k in running if self.jobs[k].owner is not plan.owner[k]), None)
        if running:
            raise ConfigError(f"already running: {', '.join(running[:5])}"
                              f"{' ...' if len(running) > 5 else ''}; stop them or wait for them first"
                              + (f" (or, if this is another {other.type} with the same name, give it its own "
                                 f"{other.name_argument}=)" if other is not None else ""))
        self._refuse_others_running([s.key for s in plan.steps])
        if before_write is not None:
            before_write()
        self._check_manifest_dir()
        self._before_launch(plan)
        if show is not None:
            show(plan)
        for entity in entities:
            entity.prepare([s for s in plan.steps if plan.owner[s.key] is entity and not s.error])
        to_start = [launch for launch in plan.launches if not _failed(launch)]
        self._keep_previous_outputs([s for s in plan.steps if not s.error])
        error: BaseException | None = None
        with holding_sigint():  # a Ctrl-C comes once what started is recorded (so a stop finds all of it)
            try:
                self.launcher.start(to_start)
            except BaseException as exc:  # record what did start before saying so
                error = exc
            jobs = self._record(plan, error)
        if error is not None:
            if isinstance(error, (KeyboardInterrupt, SystemExit, SimctlError)):
                raise error  # the launcher's own words; what it had started is recorded
            raise LaunchError(f"launcher {self.launcher.name!r} failed while starting: {error}; "
                              f"{sum(not j.done for j in jobs)} job(s) it had started are tracked") from error
        self._watch_events(entities, jobs)
        self._wait_ready(entities, jobs)
        return jobs

    def _refuse_others_running(self, keys: list[str]) -> None:
        """A job another live driver runs (on this exp_path) is not started
        again here: its directory and output files are in use."""
        try:
            added = self.book.sync([])  # what other drivers recorded meanwhile
        except (OSError, SimctlError):
            added = []
        with self.lock:
            for rec in added:
                self._count(rec)
            me, wanted = self.manifest.driver, set(keys)
            theirs = [r for r in self.manifest.jobs if r.key in wanted and not r.status.is_terminal
                      and r.driver and not drv.same(r.driver, me)]
        theirs = [r for r in theirs if drv.alive(r.driver)]
        if theirs:
            raise ConfigError(f"already running under {drv.describe(theirs[0].driver)}: "
                              f"{', '.join(r.key for r in theirs[:5])}{' ...' if len(theirs) > 5 else ''}; "
                              "a second driver may start entities of its own, not another driver's running ones")

    def _keep_previous_outputs(self, steps: Sequence[ProcessStep]) -> None:
        """Each run keeps its own output: before a job starts again, its previous
        run's ``<name>.out``/``.err`` are renamed ``<name>.out.<run>`` (and that
        run's record points there), so the new run's do not overwrite them."""
        with self.lock:
            latest = self.manifest.latest()
        for step in steps:
            prev = latest.get(step.key)
            if prev is None:
                continue
            for field, path in (("out", step.out), ("err", step.err)):
                if path and logs.out_path(prev, field == "err") == path and os.path.isfile(path):
                    kept = f"{path}.{prev.run}"
                    try:
                        os.replace(path, kept)
                    except OSError:
                        continue
                    with self.lock:
                        setattr(prev, field, kept)
                        self._pending[id(prev)] = prev

    def _watch_events(self, entities: Sequence[Entity], jobs: list[Job]) -> None:
        """Follow each entity's event files (:meth:`Entity.event_files`) until its jobs have ended."""
        for entity in entities:
            mine = [j for j in jobs if j.owner is entity and not j.done]
            if not mine:
                continue
            steps = [j.step for j in mine]
            try:
                files = entity.event_files(steps)
            except Exception as exc:  # an entity's bug must not fail a launch that happened
                log.error("%s %r: could not name its event files: %r", entity.type, entity.name, exc)
                continue
            if not files:
                continue
            key = f"events:{id(self):x}:{entity.name}:{self._launches}"
            with self.lock:
                self._event_watches[key] = (entity, mine)
            self.watcher.watch_files(key, files, functools.partial(_read_events, entity, steps))
            _read_events(entity, steps)  # what was written before the watch began

    def _events_ended(self, job: Job) -> None:
        """Stop following the events of ``job``'s entity once all its jobs ended
        (under the lock), reading what they wrote last."""
        for key, (entity, mine) in list(self._event_watches.items()):
            if job in mine and all(j.done for j in mine):
                del self._event_watches[key]
                self.watcher.unwatch(key)
                _read_events(entity, [j.step for j in mine])

    def _before_launch(self, plan: LaunchPlan) -> None:
        """The hook on every process step; a failure fails its whole launch."""
        listened = bool(self.plugins.pm.hook.simctl_entity_before_launch.get_hookimpls())
        for step in plan.steps if listened else ():  # nobody listens: no call per step
            for plugin, exc in call_hook(self.plugins.pm, "simctl_entity_before_launch",
                                         entity=step.entity if step.entity is not None else plan.owner[step.key],
                                         step=step, experiment=self.experiment):
                step.error = f"plugin {plugin!r} failed in simctl_entity_before_launch: {exc!r}"
                self.hook_error(plugin, "simctl_entity_before_launch", exc)
        for launch in plan.launches:
            if isinstance(launch, BatchJob):
                bad = next((m for m in launch.members if m.error), None)
                why = "" if bad is None else (f"not launched: {bad.name!r}, in the same batch job, failed in "
                                              "simctl_entity_before_launch")
                for m in launch.members if bad is not None else ():
                    m.error = m.error or why

    def _record(self, plan: LaunchPlan, error: BaseException | None) -> list[Job]:
        now = time.time()
        jobs: list[Job] = []
        started: list[tuple[Job, JobStatus]] = []
        launcher = self.launcher.name
        with self.lock:
            runs = self._runs
            for step in plan.steps:
                owner = plan.owner[step.key]
                reason = step.error
                if reason is None and step.job_id is None:
                    reason = (f"not started: the launcher failed ({error})" if error is not None else
                              f"launcher {self.launcher.name!r} gave this step no job id; it did not start")
                st = JobStatus(Status.FAILED, None, reason) if reason else _QUEUED
                entity = step.entity
                rec = mf.JobRecord(
                    name=step.name, entity_type=getattr(entity, "type", owner.type),
                    job_id=None if reason else step.job_id, run=runs.get(step.key, 0) + 1, launcher=launcher,
                    status=st.status, reason=st.reason, ensemble=getattr(entity, "ensemble", None), path=step.cwd,
                    launched_at=now, finished_at=now if reason else None, key=step.key,
                    handle=self.launcher.handle(step.job_id) if step.job_id and not reason else {},
                    until_stopped=owner.runs_until_stopped, out=step.out or None, err=step.err or None,
                    argv=list(step.argv), env=dict(step.env), driver=self.manifest.driver)
                job = Job(owner, step, self.launcher, rec, _NEW)
                self.book.add(rec)
                self._count(rec)
                self.jobs[step.key] = job
                self._active[step.key] = job
                jobs.append(job)
                started.append((job, st))
            self._apply_all(started)
            self._launches += 1
            self._ensure_monitor()
        self._save(force=True)
        self.wakeup.set()
        return jobs

    def _count(self, rec: mf.JobRecord) -> None:
        """Keep the run numbers and launch times up to date with a new record."""
        key = rec.key or rec.name
        if rec.run > self._runs.get(key, 0):
            self._runs[key] = rec.run
        self._launch_times.add(rec.launched_at)

    def _wait_ready(self, entities: Sequence[Entity], jobs: list[Job]) -> None:
        """Wait until every entity that runs until stopped is ready, then call
        its ``on_ready`` once; stop it and raise LaunchError if one of its
        jobs ends first, it times out, or ``on_ready`` fails."""
        for entity in entities:
            if not entity.runs_until_stopped:
                continue
            mine = [j for j in jobs if j.owner is entity]
            steps = [j.step for j in mine]
            self._until_ready(entity, mine)
            try:
                entity.on_ready(steps)
            except Exception as exc:
                self.stop(mine, "it did not become ready")
                raise LaunchError(f"{entity.type} {entity.name!r} did not become ready: {exc}; it was stopped"
                                  + "".join(_log_tail(j.step) for j in mine[:1])) from exc
            with self.lock:
                self.handoffs[entity.name] = (entity, entity.handoff(steps))
            log.info("%s %r is ready", entity.type, entity.name)

    def _until_ready(self, entity: Entity, mine: list[Job]) -> None:
        """Ask ``entity.is_ready`` whenever something happened that may make
        it so: one of its steps' ready files appeared or changed (noticed by
        the experiment's file watcher, no poll loop of its own), one of its
        jobs changed, or READY_FALLBACK seconds passed (readiness no file shows)."""
        steps = [j.step for j in mine]
        deadline = time.monotonic() + entity.ready_timeout
        files = [s.ready_file for s in steps if s.ready_file]
        key = f"ready:{id(self):x}:{entity.name}"
        if files:
            self.watcher.watch_files(key, files, self._noticed)
        try:
            while True:
                with self.lock:
                    seen = self._notices
                if entity.is_ready(steps):
                    return
                with self.lock:
                    ended = next((j for j in mine if j.done), None)
                if ended is not None:
                    self.stop(mine)
                    raise LaunchError(f"{entity.type} {entity.name!r} did not become ready: {ended.key} "
                                      f"ended {ended.status.status.value}"
                                      + (f" ({ended.status.reason})" if ended.status.reason else "")
                                      + _log_tail(ended.step))
                left = deadline - time.monotonic()
                if left <= 0:
                    why = _not_ready_reason(entity, steps)
                    self.stop(mine)
                    raise LaunchError(f"{entity.type} {entity.name!r} was not ready after "
                                      f"{entity.ready_timeout:g} s{f': {why}' if why else ''}; it was stopped"
                                      + "".join(_log_tail(j.step) for j in mine[:1]))
                with self.lock:
                    if self._notices == seen and not any(j.done for j in mine):
                        self.changed.wait(min(left, READY_FALLBACK))
        finally:
            if files:
                self.watcher.unwatch(key)

    def _noticed(self) -> None:
        """The file watcher saw a ready file appear or change (its thread)."""
        with self.lock:
            self._notices += 1
            self.changed.notify_all()

    def _check_manifest_dir(self) -> None:
        """The manifest must be writable: found out before anything is launched."""
        directory = os.path.join(self.manifest.exp_path, mf.DIRNAME)
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {directory} for the experiment's manifest: "
                              f"{exc.strerror or exc}; choose an exp_path you can write to") from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"cannot write the experiment's manifest in {directory} (permission denied); "
                              "choose an exp_path you can write to")

    # -- stopping ------------------------------------------------------------------------------

    def jobs_of(self, keys: Iterable[str], what: str = "stop") -> list[Job]:
        """The jobs with these keys; ConfigError for a key never started."""
        with self.lock:
            out = []
            for k in keys:
                if k not in self.jobs:
                    raise ConfigError(f"{k!r} was never started in this experiment; nothing to {what}")
                out.append(self.jobs[k])
            return out

    def active(self, ends: bool | None = None) -> list[Job]:
        """Every job not finished yet; with ``ends``, only those that end by
        themselves (True) or only those that run until stopped (False)."""
        with self.lock:
            if ends is None:
                return list(self._active.values())
            return [j for j in self._active.values() if j.ends is ends]

    def statuses(self, keys: Iterable[str]) -> dict[str, JobStatus]:
        """The last known status of each job of ``keys`` that was started, by
        key (taken at one moment); keys never started are left out."""
        with self.lock:
            jobs = self.jobs
            return {k: jobs[k].status for k in keys if k in jobs}

    def records(self) -> list[mf.JobRecord]:
        """Every launch of the experiment (this driver's and other writers'), oldest first."""
        with self.lock:
            return list(self.manifest.jobs)

    def stop(self, jobs: Sequence[Job], reason: str = "") -> list[Job]:
        """Stop the given jobs; a job already finished is left as it is."""
        with self.lock:
            active = [j for j in jobs if not j.done and j.record.job_id]
        if active:
            result = self.launcher.stop([j.record.job_id for j in active])  # type: ignore[misc]
            with self.lock:
                changes = []
                for j in active:
                    st = result.get(j.record.job_id)  # type: ignore[arg-type]
                    if st is not None:
                        if reason and st.status.is_terminal:
                            st = attrs.evolve(st, reason=f"{st.reason}: {reason}" if st.reason else reason)
                        changes.append((j, st))
                self._apply_all(changes)
                self.changed.notify_all()
            self._save(force=True)
        return list(jobs)

    def shutdown(self, reason: str) -> None:
        """Stop everything still running (the driver is exiting), then end
        every thread this controller caused, and wait for each: the monitor
        (then the last save), and through ``launcher.close()`` the launcher's
        (a process launcher's reaper and its walltime stops) and the file
        watcher's. Jobs left running on purpose (:attr:`detached`) are not
        stopped. The controller can be used again: a new launch starts the
        threads again."""
        active = [j for j in self.active() if j.key not in self.detached]
        if active:
            # said on screen, not only logged: a library's log may go nowhere at exit
            print(f"simctl: {reason}: stopping {len(active)} job(s) still running", file=sys.stderr, flush=True)
            try:
                self.stop(active, reason)
            except Exception as exc:  # at exit, say so rather than die with a traceback
                log.error("could not stop every job at exit: %s", exc)
        with self.lock:
            thread = self._retired = self._thread
        self.wakeup.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._save(force=True)
        self.launcher.close()
        self.watcher.close()  # the launcher's own close() closes it too, unless an override forgot

    # -- watching ----------------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        """Start the monitor thread unless one runs that was not asked to end (under the lock)."""
        if self._thread is None or not self._thread.is_alive() or self._thread is self._retired:
            self._thread = threading.Thread(target=self._monitor, name="simctl-monitor", daemon=True)
            self._thread.start()

    def _monitor(self) -> None:
        low, high = self.launcher.poll_bounds
        interval = low
        while True:
            with self.lock:
                if self._retired is threading.current_thread():  # shutdown() saves after joining it
                    if self._thread is self._retired:
                        self._thread = None
                    self.changed.notify_all()
                    return
                idle = not self._active
                # a change not yet written (saves are spaced SAVE_EVERY apart) is
                # written at the latest SAVE_EVERY from now, even if nothing else changes
                pause = min(interval, SAVE_EVERY) if self._pending else interval
            if idle:
                self._save(force=True)
                with self.lock:
                    if not self._active:  # nothing was started while saving
                        if self._thread is threading.current_thread():
                            self._thread = None
                        self.changed.notify_all()
                        return
                continue
            woke = self.wakeup.wait(pause)
            self.wakeup.clear()
            if self.heartbeat is not None:
                self.heartbeat()
            changed = self.poll_once()  # the jobs active now, including any started while waiting
            if not changed:
                self._save()
            interval = low if (changed or woke) else min(high, interval * 1.5)

    def poll_once(self, active: list[Job] | None = None) -> bool:
        """One poll cycle: one status call for all active jobs. True if any changed."""
        with self.lock:
            active = active if active is not None else [j for j in self._active.values() if j.record.job_id]
        if not active:
            return False
        ids = [j.record.job_id for j in active]
        try:
            result = self.launcher.status(ids)  # type: ignore[arg-type]
        except Exception as exc:  # a scheduler hiccup: report it, keep the jobs tracked
            log.error("status of %d job(s) on %s failed, will retry: %s", len(ids), self.launcher.name, exc)
            with self.lock:
                for j in active:
                    j.record.reason = f"status unknown: {exc}"
                    self._pending[id(j.record)] = j.record
            return False
        with self.lock:
            changes = []
            for j in active:
                st = result.get(j.record.job_id)  # type: ignore[arg-type]
                if st is not None and ((st is not j.status and st != j.status) or j.record.reason != st.reason):
                    changes.append((j, st))
            self._apply_all(changes)
            if changes:
                self.changed.notify_all()
        if changes:
            self._save()
        return bool(changes)

    def _apply_all(self, changes: Sequence[tuple[Job, JobStatus]]) -> None:
        """Give each job its new status (under the lock). The lifecycle hooks
        are looked up once for all of them, and not called if nobody implements them."""
        if not changes:
            return
        hook = self.plugins.pm.hook
        changed = bool(hook.simctl_entity_status_changed.get_hookimpls())
        finished = bool(hook.simctl_entity_finished.get_hookimpls())
        for job, new in changes:
            self._apply(job, new, changed, finished)

    def _apply(self, job: Job, new: JobStatus, hook_changed: bool, hook_finished: bool) -> None:
        old = job.status
        rec = job.record
        if old == new and rec.reason == new.reason:
            return
        if new.done:
            try:  # the entity may know better why it ended (its own records)
                new = job.owner.final_status(job.step, new)
            except Exception as error:  # an entity's bug: keep the launcher's word
                log.error("%s %r: could not read why %s ended: %r", job.owner.type, job.owner.name, job.key, error)
        job.status = new
        rec.status, rec.returncode, rec.reason = new.status, new.returncode, new.reason
        if new.done and rec.finished_at is None:  # a job given up on (final) ends here too
            rec.finished_at = time.time()
        self._pending[id(rec)] = rec
        if new.done and not old.done:
            if self._active.get(job.key) is job:
                del self._active[job.key]
            self._finished.append(job)
            if self._event_watches:
                self._events_ended(job)
        if old.status != new.status or old.returncode != new.returncode:
            if hook_changed:
                for plugin, exc in call_hook(self.plugins.pm, "simctl_entity_status_changed", entity=job.entity,
                                             old=old, new=new, experiment=self.experiment):
                    self.hook_error(plugin, "simctl_entity_status_changed", exc)
            if hook_finished and new.done and not old.done:
                for plugin, exc in call_hook(self.plugins.pm, "simctl_entity_finished", entity=job.entity,
                                             status=new, experiment=self.experiment):
                    self.hook_error(plugin, "simctl_entity_finished", exc)

    def hook_error(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Record (and log) that a plugin's lifecycle hook raised; the experiment goes on."""
        msg = f"plugin {plugin!r} raised in {hook}: {exc!r}"
        self.hook_errors.append(msg)
        log.error("%s (the experiment goes on)", msg)

    def _save(self, force: bool = False) -> None:
        """Write the records that changed (at most every SAVE_EVERY seconds
        unless ``force``) and take in what another writer (a second
        Experiment or driver on this exp_path) saved meanwhile: one
        :meth:`ManifestFile.sync <simctl.core.manifest.ManifestFile.sync>`.
        Never called with the lock held. A failed write is logged and retried
        later: the jobs are still watched, and the driver does not crash over it."""
        with self.book.turn:  # a save finding nothing left to write waits for the one under way
            with self.lock:
                now = time.monotonic()
                if not self._pending or not (force or now - self._last_save >= SAVE_EVERY):
                    return
                self._last_save = now
                changed = list(self._pending.values())
                self._pending.clear()
            try:
                added = self.book.sync(changed)
            except (OSError, SimctlError) as exc:
                with self.lock:
                    for rec in changed:
                        self._pending.setdefault(id(rec), rec)
                if str(exc) != self._save_error:
                    self._save_error = str(exc)
                    log.error("could not write the manifest %s: %s (will retry; jobs are still watched)",
                              self.book.path, exc)
                return
        self._save_error = None
        if added:
            with self.lock:
                for rec in added:
                    self._count(rec)

    def wait(self, jobs: Sequence[Job] | Callable[[], Sequence[Job]], timeout: float | None = None,
             tick: Callable[[int, int], None] | None = None) -> bool:
        """Block until every job in ``jobs`` is done (True) or ``timeout`` passes
        (False). ``jobs`` may be a function, asked again after each launch (to
        include jobs started meanwhile). Each wakeup costs the jobs that
        finished since the last one, not the number of jobs waited for."""
        deadline = None if timeout is None else time.monotonic() + timeout
        asked = -1  # the launch count when ``jobs`` was last asked
        with self.lock:
            while True:
                if asked != self._launches:
                    asked = self._launches
                    current = jobs() if callable(jobs) else jobs
                    waiting = {j for j in current if not j.done}
                    seen = len(self._finished)
                else:
                    waiting.difference_update(self._finished[seen:])
                    seen = len(self._finished)
                if tick:
                    tick(len(current) - len(waiting), len(current))
                if not waiting:
                    break
                self._ensure_monitor()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.changed.wait(0.5 if left is None else min(left, 0.5))
        self._save(force=True)
        return True


def _read_events(entity: Entity, steps: list[ProcessStep]) -> None:
    try:
        entity.on_events(steps)
    except Exception as exc:  # an entity's bug must not stop the watcher
        log.error("%s %r: could not read its events: %r", entity.type, entity.name, exc)


def _not_ready_reason(entity: Entity, steps: list[ProcessStep]) -> str:
    try:
        return entity.not_ready_reason(steps)
    except Exception as exc:  # an entity's bug must not hide the timeout
        log.error("%s %r: could not tell why it is not ready: %r", entity.type, entity.name, exc)
        return ""


def _failed(launch: ProcessStep | BatchJob) -> bool:
    steps = launch.members if isinstance(launch, BatchJob) else [launch]
    return any(s.error for s in steps)


def _log_tail(step: ProcessStep) -> str:
    text = tail(step.err) or tail(step.out)
    return f"; last lines of {step.err if tail(step.err) else step.out}:\n{text}" if text else ""
