"""The entity protocol: what any kind of entity contributes to a launch.

:class:`Model` and :class:`Ensemble` are its first implementations; a store
(an orchestrator's shards), a colocated store or an inference worker are
further ones. The core never asks what kind an entity is: it asks the entity
for its launch entries (:meth:`Entity.plan`), its job keys, its run
directories, whether it runs until stopped, when it is ready (a pure
question, :meth:`Entity.is_ready`), what to do once it is
(:meth:`Entity.on_ready`), and what it hands to the entities started after
it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .status import JobStatus
from .steps import BatchJob, Launch, ProcessStep

if TYPE_CHECKING:
    from .launcher import Launcher
    from .settings import BatchSettings, RunSettings


@attrs.define
class Handoff:
    """What a running entity gives to every entity started after it:
    environment variables (addresses...) and secret ones (credentials, passed
    only through the environment or a file of mode 0600)."""

    env: dict[str, str] = attrs.field(factory=dict)
    secret_env: dict[str, str] = attrs.field(factory=dict)


@attrs.define
class PlanContext:
    """What planning needs besides the entities: the launcher (to check
    settings against), a token that makes this launch's batch directories
    unique, what running entities hand to new ones, and the experiment's
    plugins that a store's inference workers load. Planning reads it and
    never writes anything."""

    launcher: Launcher
    token: str
    handoff: Handoff = attrs.field(factory=Handoff)
    #: entities that run until stopped planned in the same launch: they start,
    #: and hand off, before the others
    starting: tuple[Any, ...] = ()
    #: the experiment's plugins that a store's inference workers load besides their entry
    #: points, as arguments of the store's supervisor (``Plugins.worker_args``)
    worker_plugins: tuple[str, ...] = ()

    def check(self, run_settings: RunSettings | None, batch_settings: BatchSettings | None) -> None:
        """Raise ConfigError if the launcher cannot run these settings."""
        self.launcher.check_settings(run_settings, batch_settings)

    def batch_job(self, name: str, cwd: str, batch_settings: BatchSettings,
                  members: list[ProcessStep]) -> BatchJob:
        """A batch job of ``members``, with its files under ``cwd``."""
        self.check(None, batch_settings)
        return BatchJob(name=name, cwd=cwd, batch_settings=batch_settings, members=members,
                        out=os.path.join(cwd, f"{name}.batch.out"), err=os.path.join(cwd, f"{name}.batch.err"),
                        job_dir=os.path.join(cwd, ".simctl-batch", f"{name}-{self.token}"))


class Entity:
    """Base class of everything an experiment can generate, start, watch and stop.

    Subclasses implement :meth:`plan` and :meth:`job_keys`; the rest has
    defaults that fit an entity that ends by itself.
    """

    name: str
    #: True for an entity that runs until it is stopped (a store): it is waited on
    #: until ready after it starts, and ``start(block=True)`` does not wait for it
    runs_until_stopped: ClassVar[bool] = False
    #: the argument that names it where it is made (``create_model(name=...)``): what an error about
    #: two entities with one name tells the user to change
    name_argument: ClassVar[str] = "name"
    #: seconds to wait for readiness before giving up (entities that run until stopped)
    ready_timeout: float = 60.0

    @property
    def type(self) -> str:
        """The kind of entity, as records and tables show it (``Model``)."""
        return type(self).__name__

    def plan(self, ctx: PlanContext) -> list[Launch]:
        """The process steps and batch jobs that launch this entity. Pure: no
        files written, nothing started; raise ConfigError for bad settings."""
        raise NotImplementedError

    def job_keys(self) -> list[str]:
        """The keys of the jobs :meth:`plan` makes, in order (without planning)."""
        raise NotImplementedError

    def run_dirs(self, exp_path: str, tag: str) -> list[tuple[Any, str]]:
        """``(leaf, directory)`` for each run directory ``generate`` writes; the
        leaf has ``name``, ``params`` and ``files``. None by default."""
        return []

    def prepare(self, steps: Sequence[ProcessStep]) -> None:
        """Make what the steps need on disk before they start (their working
        directory...). Called by ``start`` after planning and the hooks, just
        before the launcher; never by ``preview``. Nothing by default."""

    def is_ready(self, steps: Sequence[ProcessStep]) -> bool:
        """Whether the started entity is ready. A question, not a step: it
        reads files and may ask the running processes, but changes nothing
        (no file written, no state kept); work to do once ready goes in
        :meth:`on_ready`. By default: every step that names a ``ready_file``
        has written it.

        The controller asks again whenever one of the steps' ready files
        appears or changes (the experiment's file watcher notices it), when
        a job of the entity changes, and every second as a fallback for
        readiness that no file shows."""
        return all(os.path.exists(s.ready_file) for s in steps if s.ready_file)

    def not_ready_reason(self, steps: Sequence[ProcessStep]) -> str:
        """Why the started entity is not ready, as far as it can tell (``""``
        when it cannot): the controller adds it to the error it raises when
        the entity was not ready in time (a server listening where the driver
        cannot reach it...)."""
        return ""

    def on_ready(self, steps: Sequence[ProcessStep]) -> None:
        """Called once by the controller when :meth:`is_ready` first says yes,
        before :meth:`handoff` and before ``start`` returns: the place for
        work that needs every step up (forming a cluster of servers, writing
        a file for tools that attach later). An exception fails the launch:
        the entity's jobs are stopped and ``start`` raises LaunchError with
        its message. Nothing by default."""

    def handoff(self, steps: Sequence[ProcessStep]) -> Handoff:
        """What this (ready) entity gives to entities started after it."""
        return Handoff()

    def event_files(self, steps: Sequence[ProcessStep]) -> list[str]:
        """Files the started entity's processes append news to (a store's
        restarts, saves, disk errors). From the launch until every job of the
        entity has ended, the controller calls :meth:`on_events` whenever one
        of them changes (in the file watcher's thread), and once more after
        the last job ended. None by default."""
        return []

    def on_events(self, steps: Sequence[ProcessStep]) -> None:
        """Read what is new in :meth:`event_files` and report it (the driver's
        log). May be called from two threads at once; must not raise for
        unreadable files. Nothing by default."""

    def final_status(self, step: ProcessStep, status: JobStatus) -> JobStatus:
        """The status to record for ``step``, which has just ended with
        ``status`` as its launcher saw it: an entity that knows better (a
        store whose shard ended while it should run, or whose final save
        failed) gives the status and reason from its own records. A question
        about files only; ``status`` by default."""
        return status
