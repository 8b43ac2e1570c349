"""Planning: entities to a launch plan, with no side effects.

The launch of anything goes through four stages, in this order:

1. :func:`make_plan` (here, pure): each entity contributes its process steps
   and batch jobs; settings are checked against the launcher; keys are
   checked to be unique. Nothing is written or started, so a plan can be
   made for ``preview`` and tested without processes.
2. The hook ``simctl_entity_before_launch`` sees every process step, batch
   members included, and may change it.
3. The launcher wraps each step in its run command, renders batch scripts
   (pure functions of the job) and starts them.
4. The controller records the jobs and watches them.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .entity import Entity, PlanContext
from .errors import ConfigError
from .steps import Launch, ProcessStep, process_steps


@attrs.define
class LaunchPlan:
    """Everything one ``start`` launches."""

    launches: list[Launch]
    #: every process step, batch members included, in order
    steps: list[ProcessStep]
    #: step key -> the entity (as given to start) it belongs to
    owner: dict[str, Entity]


def make_plan(entities: Iterable[Entity], ctx: PlanContext) -> LaunchPlan:
    """The launch plan of ``entities``. Raises ConfigError before anything
    happens: settings the launcher cannot run, an entity with nothing to
    launch, or one job key given twice."""
    entities = list(entities)
    ctx = attrs.evolve(ctx, starting=tuple(e for e in entities if e.runs_until_stopped))
    launches: list[Launch] = []
    owner: dict[str, Entity] = {}
    for entity in entities:
        mine = entity.plan(ctx)
        for step in process_steps(mine):
            if step.key in owner:
                raise ConfigError(f"{step.key!r} given twice to one start() (by {owner[step.key].name!r} "
                                  f"and {entity.name!r}); give it once"
                                  + (f", or give the second {entity.type} its own {entity.name_argument}="
                                     if owner[step.key] is not entity else ""))
            owner[step.key] = entity
        launches += mine
    return LaunchPlan(launches, process_steps(launches), owner)
