"""The launcher protocol: how work is started, watched and stopped on one kind
of workload manager. Launchers are plugins (``simctl_register_launchers``);
``local`` is one of them, registered exactly as a third party's would be.

The controller drives a launcher like this, from two threads::

    launcher = cls(**launcher_options)     # options checked against ``accepted_options``
    launcher.bind(wakeup)                  # once
    launcher.check_settings(rs, bs)        # while planning, for every step and batch job
    launcher.start(launches)               # driver thread: sets job_id (or error) on every step
    launcher.status(job_ids)               # monitor thread, concurrently: ONE call per poll cycle
    launcher.stop(job_ids)                 # driver thread
    launcher.close()                       # when the experiment is closed or the driver exits

``start``, ``stop`` and ``preview`` run in the driver's thread while
``status`` runs in the monitor thread at the same time: guard shared state
with a lock.
"""

from __future__ import annotations

import difflib
import shlex
import threading
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from . import pernode
from .errors import ConfigError, choices
from .settings import BatchSettings, RunSettings
from .status import JobStatus
from .steps import BatchJob, Launch, ProcessStep
from .watcher import FileWatcher


def redact(env: Mapping[str, str | None], secret: Mapping[str, str]) -> str:
    """Environment as ``preview`` shows it: ``K=v`` words, secrets as ``***``."""
    words = [f"-u {k}" if v is None else shlex.quote(f"{k}={v}") for k, v in env.items() if k not in secret]
    return " ".join(words + [f"{k}=***" for k in secret])


class Launcher:
    """Base class of launcher plugins.

    Subclasses set ``name`` and the class attributes below, and implement
    :meth:`start`, :meth:`status` and :meth:`stop`. For a batch scheduler,
    subclass :class:`simctl.SchedulerLauncher` instead; for processes on this
    machine, :class:`simctl.ProcessLauncher`.
    """

    #: what users pass as ``Experiment(launcher=...)``
    name: ClassVar[str]
    #: run commands this launcher can wrap a step in (``srun``, ``mpirun``...)
    run_commands: ClassVar[tuple[str, ...]] = ()
    #: what ``run_command="auto"`` means here; None runs the executable directly
    default_run_command: ClassVar[str | None] = None
    run_settings_class: ClassVar[type[RunSettings]] = RunSettings
    batch_settings_class: ClassVar[type[BatchSettings] | None] = None
    #: seconds between status polls: the first after a change, and the most it grows to
    #: while nothing changes (x1.5 per quiet poll). A launcher that sets the wakeup event
    #: when a job may have changed is polled at once instead.
    poll_bounds: ClassVar[tuple[float, float]] = (0.05, 5.0)
    #: ``launcher_options`` this launcher accepts (name -> what it means); any other
    #: option is an error listing these
    accepted_options: ClassVar[Mapping[str, str]] = {}
    #: per run command (None: no run command), environment variables holding a rank's
    #: node-local index, first match wins (used for steps with ``per_node``). Not a
    #: ClassVar: a batch launcher gives its own to the ProcessLauncher running its steps
    local_rank_vars: Mapping[str | None, tuple[str, ...]] = {}
    #: True when every process this launcher starts runs on this very machine (the
    #: ``local`` launcher): a store then checks its ports and interfaces here, and
    #: refuses other hosts. ``ProcessLauncher`` sets it; a subclass that starts its
    #: processes elsewhere (over ssh) sets it back to False.
    runs_on_this_host: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(self.accepted_options))
        if unknown:
            hints = [m for u in unknown for m in difflib.get_close_matches(u, self.accepted_options, 1)]
            raise ConfigError(
                f"launcher {self.name!r} has no option(s) {', '.join(map(repr, unknown))}"
                + (f" (did you mean {', '.join(map(repr, hints))}?)" if hints else "")
                + f"; accepted: {choices(self.accepted_options) if self.accepted_options else '(none)'}")
        self.options = dict(options)
        self.wakeup: threading.Event | None = None
        #: the experiment's one file watcher: the launcher's own files (exit statuses...)
        #: and the readiness files the controller waits for; its thread runs only
        #: while something is watched
        self.watcher = FileWatcher()

    # -- discovery ------------------------------------------------------------

    @classmethod
    def detect(cls) -> tuple[int, str]:
        """How strongly this machine looks like it runs this launcher's system,
        and why: 0 not present, 10 its commands are on PATH, 100 we are inside
        one of its allocations. ``launcher="auto"`` takes the highest."""
        return 0, "not detected"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the launcher can work here, else why not."""
        return None

    def bind(self, wakeup: threading.Event) -> None:
        """Receive the event to set when a job may have changed state, so the
        monitor wakes at once instead of waiting for its next poll."""
        self.wakeup = wakeup
        self.watcher.wakeup = wakeup

    # -- settings ---------------------------------------------------------------

    def resolve_run_command(self, run_command: str | None) -> str | None:
        """Map ``"auto"`` to the default and check the command is supported."""
        if run_command == "auto":
            return self.default_run_command
        if run_command is None or run_command == "":
            return None
        if run_command not in self.run_commands:
            supported = (f"supported: {choices(self.run_commands)} (or None to run the executable directly)"
                         if self.run_commands else "it runs executables directly: use run_command=None")
            raise ConfigError(f"launcher {self.name!r} does not support run command {run_command!r}; "
                              f"{supported}")
        return run_command

    def create_run_settings(self, exe: str, exe_args: str | Sequence[str] | None = None,
                            run_command: str | None = "auto",
                            run_args: Mapping[str, Any] | None = None,
                            env_vars: Mapping[str, str | None] | None = None,
                            **kwargs: Any) -> RunSettings:
        """Make this launcher's run settings."""
        return self.run_settings_class(
            exe=exe, exe_args=exe_args, run_command=self.resolve_run_command(run_command),
            run_args=run_args or {}, env_vars=env_vars or {}, **kwargs)

    def create_batch_settings(self, nodes: int | None = None, time: Any = None,
                              queue: str | None = None, account: str | None = None,
                              batch_args: Mapping[str, Any] | None = None,
                              **kwargs: Any) -> BatchSettings:
        """Make this launcher's batch settings."""
        if self.batch_settings_class is None:
            raise ConfigError(
                f"launcher {self.name!r} has no batch system; batch settings need a launcher "
                "with one (slurm, pbs, lsf)")
        return self.batch_settings_class(nodes=nodes, time=time, queue=queue, account=account,
                                         batch_args=batch_args or {}, **kwargs)

    def check_run_args(self, run_args: Mapping[str, Any], run_command: str | None, runs: str,
                       instead: str) -> None:
        """Raise ConfigError if ``run_args`` are given where no run command
        would carry them (``run_command`` None: the launcher runs ``runs``
        directly, so they would be dropped). ``instead`` says what would work.
        The one check for a model's run settings and a store's run arguments."""
        if run_args and not run_command:
            commands = (f"this launcher's: {', '.join(self.run_commands)}" if self.run_commands
                        else "srun, mpirun...")
            raise ConfigError(f"run_args {dict(run_args)!r} are flags of a run command ({commands}), but launcher "
                              f"{self.name!r} runs {runs} directly, so they would be ignored; {instead}")

    def check_settings(self, run_settings: RunSettings | None,
                       batch_settings: BatchSettings | None) -> None:
        """Raise ConfigError if the settings cannot run on this launcher:
        settings of another launcher's type, an unsupported run command, batch
        settings on a launcher without a batch system. An override must call
        ``super().check_settings(...)`` to keep these checks."""
        if run_settings is not None:
            want_rs = self.run_settings_class
            if not isinstance(run_settings, want_rs):
                raise ConfigError(
                    f"run settings of type {type(run_settings).__name__} cannot be used with launcher "
                    f"{self.name!r}; expected {want_rs.__name__}: make them with this experiment's "
                    "create_run_settings()")
            if run_settings.run_command is not None:
                self.resolve_run_command(run_settings.run_command)
        if batch_settings is not None:
            want = self.batch_settings_class
            if want is None or not isinstance(batch_settings, want):
                raise ConfigError(
                    f"batch settings of type {type(batch_settings).__name__} cannot be used with "
                    f"launcher {self.name!r}; expected "
                    f"{want.__name__ if want else 'none (this launcher has no batch system)'}; "
                    "make them with this experiment's create_batch_settings()")

    # -- launching --------------------------------------------------------------

    def command(self, step: ProcessStep) -> list[str]:
        """What is started for ``step`` (pure): the run command and its flags,
        then the per-node wrapper if the step has ``per_node``, then ``argv``."""
        rs = step.run_settings
        argv = step.argv
        if rs is not None and rs.container is not None:  # innermost: the per-node wrapper runs outside it
            argv = rs.container.wrap(argv, step.cwd, [k for k, v in step.all_env().items() if v is not None])
        if step.per_node is not None:
            from . import pernode  # not at import: ``python -m simctl.core.pernode`` runs it as __main__

            argv = pernode.wrap(argv)
        return rs.launch_line(argv) if rs is not None else list(argv)

    def command_env(self, step: ProcessStep) -> dict[str, str | None]:
        """Variables the launcher adds for ``step`` (the per-node wrapper's)."""
        rs = step.run_settings
        mpmd = {k: v for other in rs.mpmd for k, v in other.env_vars.items()} if rs is not None else {}
        if step.per_node is None:
            return mpmd
        return {**mpmd, **pernode.env(step, self.local_rank_vars.get(rs.run_command if rs else None, ()))}

    def start(self, launches: Sequence[Launch]) -> None:
        """Start the launches. Set ``job_id`` on every process step (batch
        members included), or ``error`` on a step that could not start (it is
        then recorded FAILED with that reason). A failure of the whole system
        raises; steps already given a job id before the raise stay tracked."""
        raise NotImplementedError

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of every job in ``job_ids``, from as few commands as
        possible (one per call for a scheduler). Runs in the monitor thread."""
        raise NotImplementedError

    def stop(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Stop the jobs and return their statuses afterwards."""
        raise NotImplementedError

    def handle(self, job_id: str) -> dict[str, Any]:
        """What to record so that another process can find the job again
        (:meth:`adopt`) after this driver is gone: a pid and start time, a
        scheduler id and job directory... Empty when there is nothing to find."""
        return {}

    def adopt(self, job_id: str, handle: Mapping[str, Any]) -> bool:
        """Know a job started by another (dead) driver again, from what
        :meth:`handle` recorded, so that ``status`` and ``stop`` work on it.
        False if that is not possible."""
        return False

    def preview(self, launch: Launch) -> str:
        """The exact command (or batch script) :meth:`start` would run, with
        secrets hidden. Pure: called without starting anything."""
        if isinstance(launch, BatchJob):
            raise ConfigError(f"launcher {self.name!r} cannot submit batch jobs")
        env = redact({**launch.env, **self.command_env(launch)}, launch.secret_env)
        return (f"(cd {shlex.quote(launch.cwd)} && {'env ' + env + ' ' if env else ''}"
                f"{shlex.join(self.command(launch))})")

    def close(self) -> None:
        """Release threads and files; called when the experiment closes (and
        at driver exit). Jobs still running are stopped by the experiment
        before this. An override calls ``super().close()`` (it stops the
        file watcher's thread)."""
        self.watcher.close()
