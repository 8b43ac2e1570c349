"""Every hook simctl calls, documented. Plugins implement them with
``@simctl.hookimpl``; the project name of both markers is ``"simctl"``.

Registration hooks return classes (or objects) that carry their own ``name``;
the core collects them into registries keyed by that name, calling each
plugin's implementation on its own (to isolate its errors and know which
plugin provides a name): ``tryfirst``/``trylast`` only order the plugins, and
a wrapper (``wrapper=True`` or ``hookwrapper=True``) would never run, so one
is refused when the plugin is registered. Lifecycle hooks are ordinary
multi-call hooks called through pluggy, so ``tryfirst``, ``trylast`` and
wrappers (``@hookimpl(wrapper=True)``) work: every implementation runs, one
that raises is reported (``Experiment.hook_errors``) without stopping the
others, and results are ignored unless the docstring says otherwise.

An implementation takes any of its hook's arguments, by name, and no other;
one that does not match (an unknown hook, an argument the hook does not
pass, a wrapper on a registration hook) makes ``Plugins.register`` raise
PluginError, and an entry point that does not match is listed as broken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from .backend import Backend
    from .entity import Entity
    from .expansion import Strategy
    from .launcher import Launcher
    from .status import JobStatus
    from .steps import ProcessStep

PROJECT = "simctl"


class Experiment(Protocol):
    """What a hook sees of the experiment it is called for (a
    :class:`simctl.Experiment`): its name, its directory and its launcher's name."""

    name: str
    exp_path: str
    launcher_name: str


hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration ---------------------------------------------------------------


@hookspec
def simctl_register_launchers() -> list[type[Launcher]]:
    """Return launcher classes (subclasses of :class:`simctl.Launcher`).

    Called once when the plugin registries are built. Each class has a unique
    ``name`` (``"local"``, ``"slurm"``...), which users pass as
    ``Experiment(launcher=name)``. Not a wrapper (refused at registration).
    """


@hookspec
def simctl_register_backends() -> list[type[Backend]]:
    """Return ML backend classes (subclasses of :class:`simctl.Backend`).

    Called once when the registries are built. Each class has a unique
    ``name`` (``"ONNX"``, ``"TORCH"``...), the ``backend=`` of ``add_ml_model``.
    Import the ML library lazily, inside the methods that need it. Not a
    wrapper (refused at registration).

    Also called in the store's inference workers, which build their own
    registry: their entry points, plus the in-process plugins implementing
    this hook that were registered on the experiment that started the store,
    imported there by module (``Plugins.worker_args``).
    """


@hookspec
def simctl_register_strategies() -> list[Strategy]:
    """Return permutation strategies: objects or classes with a ``name`` and an
    ``expand(names, values, n_models=None, seed=None)`` method.

    Called once when the registries are built. The name is what users pass as
    ``create_ensemble(perm_strategy=name)``. Not a wrapper (refused at
    registration).
    """


# -- entity lifecycle -------------------------------------------------------------


@hookspec
def simctl_entity_created(entity: Any, experiment: Experiment | None) -> None:
    """An entity (a :class:`Model`, including every ensemble member, or an
    :class:`Ensemble`) was created. Members of a lazily expanded ensemble are
    created when first materialized (iteration, lookup, generate, start).
    ``experiment`` is None for entities made outside an experiment."""


@hookspec
def simctl_entity_before_launch(entity: Entity, step: ProcessStep, experiment: Experiment) -> None:
    """``step`` of ``entity`` (a :class:`Model`, an ensemble member, a store...)
    is about to be launched.

    Called for every process step, members of batch jobs included, after
    planning and before the launcher wraps anything or writes any script:
    what an implementation changes in the step (``step.env``,
    ``step.secret_env``, ``step.argv``, ``step.per_node``...) is what runs.
    ``Experiment.preview`` calls it too (on steps that are then not
    started), so that the preview shows what would run: change the step,
    keep other side effects for ``simctl_entity_status_changed``.
    An exception marks the step FAILED (the reason names the plugin) and
    nothing of its launch (its whole batch job) starts.
    """


@hookspec
def simctl_entity_status_changed(entity: Entity, old: JobStatus, new: JobStatus, experiment: Experiment) -> None:
    """The status of a launched job of ``entity`` changed from ``old`` to ``new``.

    Called once per change, in order: by the experiment's monitor thread, or
    by the driver's thread for changes it makes itself (a launch that failed,
    a stop).
    """


@hookspec
def simctl_entity_finished(entity: Entity, status: JobStatus, experiment: Experiment) -> None:
    """A launched job of ``entity`` reached a final status (completed, failed,
    cancelled, never started), or its launcher gave up on it (``status.final``:
    it vanished). Called once per launch, after ``simctl_entity_status_changed``."""
