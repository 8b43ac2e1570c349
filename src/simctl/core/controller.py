"""One controller per experiment: turns entities into launch steps, starts
them through their launcher, and runs the single monitor thread that watches
every job.

Per poll cycle the monitor makes ONE ``status`` call per launcher for all of
that launcher's active jobs. A launcher that knows at once when a job ends
(``local``) sets the wakeup event, so the monitor reacts without waiting for
its next poll; otherwise the interval starts short and grows while nothing
changes, within the launcher's ``poll_bounds``.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable, Iterable, Sequence

import attrs

from ..log import get_logger
from . import manifest as mf
from .entities import Ensemble, Model
from .errors import ConfigError
from .launcher import Launcher, LaunchStep
from .plugins import Plugins, call_hook
from .status import JobStatus, Status

log = get_logger("controller")
SAVE_EVERY = 0.25  # seconds between manifest writes while jobs change quickly


@attrs.define(eq=False)
class Job:
    """A launched model: its launcher, record and last known status."""

    model: Model
    launcher: Launcher
    record: mf.JobRecord
    status: JobStatus

    @property
    def done(self) -> bool:
        return self.status.done


@attrs.define(eq=False)
class Unit:
    """What one ``Launcher.start`` entry starts: a model, or a batch job of models."""

    step: LaunchStep
    models: list[Model]
    ensemble: str | None = None


def model_step(model: Model, env_extra: dict[str, str] | None = None,
               default_path: str | None = None) -> LaunchStep:
    """The launcher-neutral step of a model: executable, arguments, directory,
    environment and output files. A model that was not generated runs in its
    ``path``, else ``default_path`` (its ensemble's path), else the current
    directory."""
    rs = model.run_settings
    cwd = model.path or default_path or os.getcwd()
    env: dict[str, str | None] = dict(rs.env_vars)
    if model.key_prefixing:
        env["SSKEYOUT"] = model.name
    if model.incoming_entities:
        env["SSKEYIN"] = ",".join(model.incoming_entities)
    env.update(env_extra or {})
    return LaunchStep(name=model.name, argv=[rs.exe, *rs.exe_args, *model.params_to_args()],
                      cwd=cwd, env=env, out=os.path.join(cwd, f"{model.name}.out"),
                      err=os.path.join(cwd, f"{model.name}.err"), run_settings=rs,
                      batch_settings=model.batch_settings)


class Controller:
    """Launches, watches and stops the jobs of one experiment."""

    def __init__(self, name: str, exp_path: str, launcher: Launcher, plugins: Plugins,
                 experiment: object) -> None:
        self.launcher, self.plugins, self.experiment = launcher, plugins, experiment
        self.manifest = mf.load(exp_path) or mf.Manifest(name, exp_path, launcher.name)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.wakeup = threading.Event()
        self.hook_errors: list[str] = []
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._last_save = 0.0
        self._save_error: str | None = None
        launcher.bind(self.wakeup)

    # -- building steps ------------------------------------------------------------

    def units(self, entities: Sequence[Model | Ensemble]) -> list[Unit]:
        """The launch units for ``entities``: each model alone, or an ensemble (or
        model) with batch settings as one batch job. Raises ConfigError for
        settings the launcher cannot run, before anything starts."""
        out: list[Unit] = []
        for entity in entities:
            if isinstance(entity, Ensemble):
                models = entity.models
                if not models:
                    raise ConfigError(f"ensemble {entity.name!r} has no members to start; give it params, "
                                      "replicas, or add models with add_model")
                for m in models:
                    self.launcher.check_settings(m.run_settings, None)
                if entity.batch_settings is not None:
                    self.launcher.check_settings(None, entity.batch_settings)
                    out.append(self._group(entity.name, entity.path, entity.batch_settings, models,
                                           entity.name))
                else:
                    out += [Unit(model_step(m, default_path=entity.path), [m], entity.name) for m in models]
            elif isinstance(entity, Model):
                self.launcher.check_settings(entity.run_settings, entity.batch_settings)
                if entity.batch_settings is not None:
                    out.append(self._group(entity.name, entity.path, entity.batch_settings, [entity], None))
                else:
                    out.append(Unit(model_step(entity), [entity]))
            else:
                raise ConfigError(f"expected Model or Ensemble entities, got {type(entity).__name__}")
        return out

    def _group(self, name: str, path: str | None, bs: object, models: list[Model],
               ensemble: str | None) -> Unit:
        cwd = path or os.getcwd()
        step = LaunchStep(name=name, argv=[], cwd=cwd, out=os.path.join(cwd, f"{name}.batch.out"),
                          err=os.path.join(cwd, f"{name}.batch.err"), batch_settings=bs,  # type: ignore[arg-type]
                          members=[model_step(m, default_path=path) for m in models])
        return Unit(step, models, ensemble)

    def prepare(self, unit: Unit) -> LaunchStep:
        """Let the launcher wrap the unit's step(s) in its run command / batch script."""
        if unit.step.members:
            unit.step.members = [self.launcher.prepare(s) for s in unit.step.members]
            return self.launcher.prepare_batch(unit.step)
        return self.launcher.prepare(unit.step)

    # -- launching -----------------------------------------------------------------------

    def launch(self, entities: Sequence[Model | Ensemble]) -> list[Job]:
        """Start ``entities``; return their jobs. Bad input raises before anything starts."""
        units = self.units(entities)
        with self.lock:
            names = [m.name for u in units for m in u.models]
            running = [n for n in names if n in self.jobs and not self.jobs[n].done]
            if running:
                raise ConfigError(f"already running: {', '.join(running[:5])}"
                                  f"{' ...' if len(running) > 5 else ''}; stop them or wait for them first")
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ConfigError(f"model name(s) {sorted(dup)} given twice to one start()")
        self._check_manifest_dir()
        for unit in units:
            self.prepare(unit)
        failed: dict[str, str] = {}
        for unit in units:
            steps = unit.step.members or [unit.step]
            for model, step in zip(unit.models, steps):
                for plugin, exc in call_hook(self.plugins.pm, "simctl_entity_before_launch",
                                             model=model, step=step, experiment=self.experiment):
                    failed[model.name] = f"plugin {plugin!r} failed in simctl_entity_before_launch: {exc!r}"
                    self.hook_error(plugin, "simctl_entity_before_launch", exc)
        to_start = [u for u in units if not any(m.name in failed for m in u.models)]
        self.launcher.start([u.step for u in to_start])
        now = time.time()
        jobs: list[Job] = []
        with self.lock:
            runs = {}
            for rec in self.manifest.jobs:
                runs[rec.name] = max(runs.get(rec.name, 0), rec.run)
            for unit in units:
                steps = unit.step.members or [unit.step]
                sibling = next((m.name for m in unit.models if m.name in failed), None)
                for model, step in zip(unit.models, steps):
                    reason = failed.get(model.name)
                    if reason is None and sibling is not None:  # one batch job: none of it started
                        reason = (f"not launched: {sibling!r}, in the same batch job, failed in "
                                  "simctl_entity_before_launch")
                    elif reason is None and step.job_id is None:
                        reason = f"launcher {self.launcher.name!r} gave this step no job id; it did not start"
                    st = JobStatus(Status.FAILED, None, reason) if reason else JobStatus(Status.QUEUED)
                    rec = mf.JobRecord(
                        name=model.name, entity_type="Model", job_id=None if reason else step.job_id,
                        run=runs.get(model.name, 0) + 1, launcher=self.launcher.name, status=st.status,
                        reason=st.reason, ensemble=unit.ensemble, path=step.cwd, launched_at=now,
                        finished_at=now if reason else None)
                    job = Job(model, self.launcher, rec, JobStatus(Status.NEW))
                    self.manifest.jobs.append(rec)
                    self.jobs[model.name] = job
                    jobs.append(job)
                    self._apply(job, st)
            self._save(force=True)
            self._ensure_monitor()
        self.wakeup.set()
        return jobs

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

    def stop(self, models: Iterable[Model]) -> list[Job]:
        """Stop the given models' jobs; a job already finished is left as it is."""
        with self.lock:
            jobs = []
            for m in models:
                if m.name not in self.jobs:
                    raise ConfigError(f"{m.name!r} was never started in this experiment; nothing to stop")
                jobs.append(self.jobs[m.name])
            active = [j for j in jobs if not j.done and j.record.job_id]
        if active:
            result = self.launcher.stop([j.record.job_id for j in active])  # type: ignore[misc]
            with self.lock:
                for j in active:
                    st = result.get(j.record.job_id)  # type: ignore[arg-type]
                    if st is not None:
                        self._apply(j, st)
                self._save(force=True)
                self.changed.notify_all()
        return jobs

    # -- watching ----------------------------------------------------------------------------

    def _ensure_monitor(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._monitor, name="simctl-monitor", daemon=True)
            self._thread.start()

    def _active(self) -> list[Job]:
        return [j for j in self.jobs.values() if not j.done and j.record.job_id]

    def _monitor(self) -> None:
        low, high = self.launcher.poll_bounds
        interval = low
        while True:
            with self.lock:
                if not self._active():
                    self._save(force=True)
                    self._thread = None
                    self.changed.notify_all()
                    return
                # a change not yet written (saves are spaced SAVE_EVERY apart) is
                # written at the latest SAVE_EVERY from now, even if nothing else changes
                pause = min(interval, SAVE_EVERY) if self._dirty else interval
            woke = self.wakeup.wait(pause)
            self.wakeup.clear()
            changed = self.poll_once()  # the jobs active now, including any started while waiting
            if not changed:
                with self.lock:
                    self._save()
            interval = low if (changed or woke) else min(high, interval * 1.5)

    def poll_once(self, active: list[Job] | None = None) -> bool:
        """One poll cycle: one status call for all active jobs. True if any changed."""
        with self.lock:
            active = active if active is not None else self._active()
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
            return False
        changed = False
        with self.lock:
            for j in active:
                st = result.get(j.record.job_id)  # type: ignore[arg-type]
                if st is not None and st != j.status:
                    self._apply(j, st)
                    changed = True
            if changed:
                self._save()
                self.changed.notify_all()
        return changed

    def _apply(self, job: Job, new: JobStatus) -> None:
        old = job.status
        if old == new:
            return
        job.status = new
        rec = job.record
        rec.status, rec.returncode, rec.reason = new.status, new.returncode, new.reason
        if new.status.is_terminal and rec.finished_at is None:
            rec.finished_at = time.time()
        self._dirty = True
        if old.status != new.status or old.returncode != new.returncode:
            for plugin, exc in call_hook(self.plugins.pm, "simctl_entity_status_changed", model=job.model,
                                         old=old, new=new, experiment=self.experiment):
                self.hook_error(plugin, "simctl_entity_status_changed", exc)
            if new.status.is_terminal:
                for plugin, exc in call_hook(self.plugins.pm, "simctl_entity_finished", model=job.model,
                                             status=new, experiment=self.experiment):
                    self.hook_error(plugin, "simctl_entity_finished", exc)

    def hook_error(self, plugin: str, hook: str, exc: BaseException) -> None:
        """Record (and log) that a plugin's lifecycle hook raised; the experiment goes on."""
        msg = f"plugin {plugin!r} raised in {hook}: {exc!r}"
        self.hook_errors.append(msg)
        log.error("%s (the experiment goes on)", msg)

    def _save(self, force: bool = False) -> None:
        """Write the manifest if it changed (at most every SAVE_EVERY seconds
        unless ``force``). A failed write is logged and retried later: the
        jobs are still watched, and the driver does not crash over it."""
        now = time.monotonic()
        if self._dirty and (force or now - self._last_save >= SAVE_EVERY):
            self._last_save = now
            try:
                mf.save(self.manifest)
            except OSError as exc:
                if str(exc) != self._save_error:
                    self._save_error = str(exc)
                    log.error("could not write the manifest %s: %s (will retry; jobs are still watched)",
                              mf.path_of(self.manifest.exp_path), exc)
                return
            self._dirty, self._save_error = False, None

    def wait(self, jobs: Sequence[Job], timeout: float | None = None,
             tick: Callable[[int, int], None] | None = None) -> bool:
        """Block until every job in ``jobs`` is done (True) or ``timeout`` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.lock:
            while True:
                done = sum(j.done for j in jobs)
                if tick:
                    tick(done, len(jobs))
                if done == len(jobs):
                    self._save(force=True)
                    return True
                self._ensure_monitor()
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self.changed.wait(0.5 if left is None else min(left, 0.5))
