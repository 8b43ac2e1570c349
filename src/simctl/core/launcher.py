"""The launcher protocol: how work is started, watched and stopped on one kind
of workload manager. Launchers are plugins (``simctl_register_launchers``);
``local`` is one of them, registered exactly as a third party's would be.

The controller drives a launcher like this::

    launcher.bind(wakeup)                  # once
    step = launcher.prepare(step)          # per model: wrap argv in the run command
    group = launcher.prepare_batch(group)  # per batch job: write its script
    launcher.start([step, group, ...])     # sets step.job_id on every step and member
    launcher.status([ids...])              # ONE call per poll cycle for all jobs
    launcher.stop([ids...])
"""

from __future__ import annotations

import shlex
import threading
from typing import Any, ClassVar, Mapping, Sequence

import attrs

from .errors import ConfigError, choices
from .settings import BatchSettings, RunSettings
from .status import JobStatus


@attrs.define(eq=False)
class LaunchStep:
    """One thing to start: a model's process, or a batch job holding members."""

    name: str
    argv: list[str]
    cwd: str
    #: variables added to the driver's environment (None removes one)
    env: dict[str, str | None] = attrs.field(factory=dict)
    out: str = ""
    err: str = ""
    run_settings: RunSettings | None = None
    batch_settings: BatchSettings | None = None
    #: for a batch job: the member steps it runs
    members: list["LaunchStep"] = attrs.field(factory=list)
    #: for a batch job: the script the launcher submits
    script: str | None = None
    #: set by ``Launcher.start``
    job_id: str | None = None

    def command_line(self) -> str:
        """The argv as a shell would need it typed."""
        return shlex.join(self.argv)


class Launcher:
    """Base class of launcher plugins.

    Subclasses set ``name``, ``run_commands`` and the settings classes, and
    implement :meth:`start`, :meth:`status` and :meth:`stop`. The defaults
    here fit a launcher that runs argv as it is.
    """

    #: what users pass as ``Experiment(launcher=...)``
    name: ClassVar[str]
    #: run commands this launcher can wrap a model in (``srun``, ``mpirun``...)
    run_commands: ClassVar[tuple[str, ...]] = ()
    #: what ``run_command="auto"`` means here; None runs the executable directly
    default_run_command: ClassVar[str | None] = None
    run_settings_class: ClassVar[type[RunSettings]] = RunSettings
    batch_settings_class: ClassVar[type[BatchSettings] | None] = None
    #: how often to poll at most and at least, in seconds
    poll_bounds: ClassVar[tuple[float, float]] = (0.05, 5.0)

    def __init__(self, **options: Any) -> None:
        self.options = options
        self.wakeup: threading.Event | None = None

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

    # -- settings ---------------------------------------------------------------

    def resolve_run_command(self, run_command: str | None) -> str | None:
        """Map ``"auto"`` to the default and check the command is supported."""
        if run_command == "auto":
            return self.default_run_command
        if run_command is None or run_command == "":
            return None
        if run_command not in self.run_commands:
            raise ConfigError(
                f"launcher {self.name!r} does not support run command {run_command!r}; "
                f"supported: {choices(self.run_commands)} (or None to run the executable directly)"
            )
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

    def check_settings(self, run_settings: RunSettings | None,
                       batch_settings: BatchSettings | None) -> None:
        """Raise ConfigError if the settings cannot run on this launcher."""
        if run_settings is not None and run_settings.run_command is not None:
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

    def prepare(self, step: LaunchStep) -> LaunchStep:
        """Turn a model's step (argv = executable and arguments) into what is
        started: by default the run command, its flags, then the argv."""
        rs = step.run_settings
        if rs is not None and rs.run_command:
            step.argv = [rs.run_command, *rs.format_run_args(), *step.argv]
        return step

    def prepare_batch(self, group: LaunchStep) -> LaunchStep:
        """Fill in ``group.script`` and ``group.argv`` for a batch job whose
        ``members`` are prepared steps."""
        raise ConfigError(f"launcher {self.name!r} cannot submit batch jobs")

    def start(self, steps: Sequence[LaunchStep]) -> None:
        """Start the steps, setting ``job_id`` on each step and each member of a
        batch step. A step that cannot start gets a job id whose status says
        FAILED with the reason; only a failure of the whole system raises."""
        raise NotImplementedError

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """The status of every job in ``job_ids``, from as few commands as
        possible (one per call for a scheduler)."""
        raise NotImplementedError

    def stop(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Stop the jobs and return their statuses afterwards."""
        raise NotImplementedError

    def preview(self, step: LaunchStep) -> str:
        """The exact command (and batch script) :meth:`start` would run."""
        if step.script is not None:
            return f"# submitted with: {step.command_line()}\n{step.script}"
        return f"(cd {shlex.quote(step.cwd)} && {step.command_line()})"

    def close(self) -> None:
        """Release threads and files; running jobs are left to ``stop``."""
