"""What a launch plan is made of: process steps and batch jobs.

A :class:`ProcessStep` is one thing to run (a model, an ensemble member, a
store shard): its executable and arguments *before* any run command wraps
them, its directory, environment and output files. A :class:`BatchJob` is a
job submitted to a scheduler that runs several process steps (its
``members``). Both are plain data: planning makes them without side effects,
hooks may change process steps, and launchers turn them into commands and
scripts with pure functions.
"""

from __future__ import annotations

import shlex
from typing import Any

import attrs

from .settings import BatchSettings, RunSettings


@attrs.define(eq=False)
class ProcessStep:
    """One process to start (under the launcher's run command, if any).

    ``env`` holds the entity's own variables, added to the driver's
    environment when the step starts (None unsets one). ``secret_env`` holds
    variables that must never appear in a script, a command line or a
    preview (passwords, tokens): launchers pass them through the process
    environment or a file of mode 0600.
    """

    #: the job's display name (``sweep_3``)
    name: str
    #: executable and arguments, without the run command
    argv: list[str]
    #: working directory
    cwd: str
    env: dict[str, str | None] = attrs.field(factory=dict)
    secret_env: dict[str, str] = attrs.field(factory=dict)
    #: files receiving standard output and error
    out: str = ""
    err: str = ""
    run_settings: RunSettings | None = None
    #: unique key of the job within the experiment (``sweep/sweep_3``); defaults to ``name``
    key: str = ""
    #: the entity the lifecycle hooks receive for this step (a Model, an Orchestrator...)
    entity: Any = attrs.field(default=None, repr=False)
    #: a command to run once per node before ``argv`` starts there, stopped when the
    #: last rank on the node ends (e.g. a colocated store); see :mod:`simctl.core.pernode`
    per_node: list[str] | None = None
    #: a file the process writes once it is ready (for entities that run until stopped)
    ready_file: str | None = None
    #: seconds between SIGTERM and SIGKILL when this step is stopped: None for the launcher's
    #: ``stop_grace``; ``math.inf`` to wait until it ends by itself (a store finishing its final save)
    stop_grace: float | None = None
    #: append to ``out`` and ``err`` rather than truncate them at each start (a store's logs
    #: keep the reason an earlier run ended)
    append_output: bool = False
    #: set by ``Launcher.start``: the id to ask ``status`` / ``stop`` about
    job_id: str | None = None
    #: set by ``Launcher.start`` instead of ``job_id`` when the step could not be started
    error: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.key:
            self.key = self.name

    def command_line(self) -> str:
        """``argv`` as a shell would need it typed."""
        return shlex.join(self.argv)

    def all_env(self) -> dict[str, str | None]:
        """``env`` and ``secret_env`` together: what the process receives."""
        return {**self.env, **self.secret_env}


@attrs.define(eq=False)
class BatchJob:
    """One job submitted to a scheduler, running its ``members`` side by side
    (or as a job array with ``batch_settings.array``)."""

    name: str
    #: directory the job is submitted from
    cwd: str
    batch_settings: BatchSettings
    members: list[ProcessStep]
    #: the scheduler's own output files for the job
    out: str = ""
    err: str = ""
    #: where the script, the members' environment files and exit-status files go
    job_dir: str = ""
    #: set by ``Launcher.start`` (the members get ``<job_id>:<index>``)
    job_id: str | None = None


Launch = ProcessStep | BatchJob
"""One entry of a launch plan: a process step on its own, or a batch job."""


def process_steps(launches: list[Launch]) -> list[ProcessStep]:
    """Every process step of ``launches``, batch members included, in order."""
    out: list[ProcessStep] = []
    for launch in launches:
        out += launch.members if isinstance(launch, BatchJob) else [launch]
    return out
