"""An entity's use of the feature store, in one component: the ML objects it
stores before it starts, the store colocated with it, whether it prefixes its
keys and whose prefixed keys it reads.

A :class:`simctl.Model` holds one :class:`StoreUse`; an
:class:`simctl.Ensemble` holds one for its future members and passes every
change to its members' (:class:`StoreMethods`, the user's methods written
once for both). The component knows how to check itself at plan time
(:meth:`StoreUse.check_plan`), apply itself to the entity's process step
(:meth:`StoreUse.apply`) and prepare the store before the step starts
(:func:`prepare`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..core import bulk, checks
from ..core.entity import Entity, PlanContext
from ..core.errors import ConfigError
from ..core.steps import ProcessStep
from . import contract

if TYPE_CHECKING:  # preload imports the client (redis-py, numpy): imported at first use, for start-up cost
    from .preload import MLObject


def incoming_name(entity: Any) -> str:
    """The name ``register_incoming_entity`` records: an entity's, or a name
    (non-empty, no ',': the names are joined with commas in ``SSKEYIN``)."""
    name = entity.name if isinstance(entity, Entity) else entity
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise ConfigError(f"register_incoming_entity takes a Model, an Ensemble or an entity's name (a non-empty "
                          f"str without ','); got {checks.show(entity)}")
    return name


@attrs.define
class StoreUse:
    """What one entity (a model, or an ensemble's future members) asks of the store."""

    key_prefixing: bool = False
    #: entities whose prefixed keys it reads (``SSKEYIN``)
    incoming: list[str] = attrs.field(factory=list)
    #: ML models, scripts and functions stored before the application starts (:class:`MLObject`;
    #: typed Any so that a model round-trips through the manifest's converter without them)
    ml: list[Any] = attrs.field(factory=list, eq=False, repr=False)
    #: a store started beside the application on each node (a :class:`ColocatedDB`)
    colocated: Any = attrs.field(default=None, eq=False, repr=False)

    def copy(self) -> StoreUse:
        """A member's own component, starting from this one: its own lists (the ML objects in
        them are shared, not copied)."""
        return bulk.copy(self)

    def copies(self, n: int) -> list[StoreUse]:
        """``n`` copies, each as :meth:`copy` makes it (an ensemble's members' own)."""
        return bulk.copies(self, n)

    def check_new(self, owner: str, obj: MLObject, what: str = "") -> None:
        """ConfigError if ``obj`` would take a store key one of this entity's objects takes."""
        from .preload import check_new  # the client (redis-py, numpy): start-up cost

        check_new(owner, self.ml, obj, what)

    @property
    def needs_store(self) -> bool:
        """Whether it has ML objects to store and no colocated store to store them in."""
        return bool(self.ml) and self.colocated is None

    def apply(self, step: ProcessStep, name: str, ctx: PlanContext | None = None) -> None:
        """Set on ``step`` (entity ``name``'s, planned in ``ctx``) the key
        prefixes and the colocated store, whose inference workers load the
        plugins ``ctx`` names."""
        step.env.update(contract.prefix_env(name if self.key_prefixing else None, self.incoming))
        if self.colocated is not None:
            self.colocated.apply(step, ctx.worker_plugins if ctx is not None else ())
            if self.ml and step.per_node is not None:
                from .preload import manifest_path  # start-up cost

                step.per_node += ["--preload", manifest_path(step)]


def check_plan(what: str, uses: Sequence[tuple[str, StoreUse]], ctx: PlanContext) -> None:
    """ConfigError at plan time when ``uses`` (``(entity name, StoreUse)``, the
    members of ``what``) put different ML objects under one key of one store,
    or have ML objects to store and neither a running store nor a colocated one."""
    shared = [(f"member {name!r}" if len(uses) > 1 else what, obj) for name, u in uses if u.needs_store
              for obj in u.ml]
    if not shared:
        return
    if len(uses) > 1:
        from .preload import distinct  # start-up cost

        distinct(shared, f"the store of {what}")
    if ctx.handoff.env.get(contract.ADDRESS) or ctx.starting:
        return
    lost = [name for name, u in uses if u.needs_store]
    objs = sorted({o.describe() for _, u in uses if u.needs_store for o in u.ml})
    who = what
    if len(lost) < len(uses):  # some members of an ensemble: which
        who += f" (member{'s' * (len(lost) > 1)} {', '.join(lost[:5])}{' ...' * (len(lost) > 5)})"
    raise ConfigError(f"{who} has {', '.join(objs)} to load into the feature store before it starts, but no "
                      "store runs: start one first (db = exp.create_database(...); exp.start(db)), or colocate "
                      "one with the model (model.colocate_db_tcp() or model.colocate_db_uds())")


def check_start(entities: Iterable[Any]) -> None:
    """ConfigError, at plan time, when entities started together (each with
    its :class:`StoreMethods`) put different ML objects under one key of the
    running store (those with a colocated store keep theirs apart)."""
    per_entity = [[(owner, obj) for owner, use in ent._store_uses() if use.needs_store for obj in use.ml]
                  for ent in entities if isinstance(ent, StoreMethods)]
    owned = [pair for pairs in per_entity for pair in pairs]
    if sum(bool(pairs) for pairs in per_entity) > 1:  # one entity's own are checked by its plan (check_plan)
        from .preload import distinct  # start-up cost

        distinct(owned, "the store")


def prepare(steps: Sequence[ProcessStep], uses: Iterable[StoreUse]) -> None:
    """Store the ML objects of ``steps`` before they start (into the running
    store now, or into the files a colocated store preloads)."""
    if any(u.ml for u in uses):
        from .preload import prepare as store_objects  # start-up cost

        store_objects(steps)


class StoreMethods:
    """The user's store methods of :class:`simctl.Model` and
    :class:`simctl.Ensemble`, written once. A class using it has a
    ``store_use`` and says which components a change reaches
    (:meth:`_store_uses`: its own and, for an ensemble, its members')."""

    name: str
    store_use: StoreUse

    def _store_uses(self) -> list[tuple[str, StoreUse]]:
        """(owner, component) pairs a change applies to; the first is this entity's own."""
        return [(f"model {self.name!r}", self.store_use)]

    # -- ML models, scripts and functions ------------------------------------------------

    def add_ml_model(self, name: str, backend: str, model: bytes | None = None, model_path: str | None = None,
                     device: str = "CPU", devices_per_node: int = 1, first_device: int = 0, batch_size: int = 0,
                     min_batch_size: int = 0, min_batch_timeout: int = 0, tag: str = "",
                     inputs: list[str] | None = None, outputs: list[str] | None = None, *,
                     replace: bool = False) -> None:
        """Store an ML model (bytes in memory, or a file read now) under ``name``
        in the feature store before the application starts: the experiment's
        store, or the colocated one on every node. ``device='GPU'`` with
        ``devices_per_node=N`` > 1 stores one copy per GPU, ``<name>.GPU:<i>``
        for i from ``first_device``; both are ignored for ``'CPU'``. A name
        already added is a ConfigError. On an ensemble: for every member,
        present and future, which share one copy per store.

        One name holds one model or script in a store: starting this entity
        is a ConfigError, before anything starts, when another entity started
        with it loads different contents under the name, or when the store
        already holds different contents there (an earlier start's, perhaps
        in use), unless ``replace=True`` (then it replaces them; the
        inference workers load the new contents at their next request).
        Identical contents are shared and not stored again. ``batch_size``
        batches requests: the model must treat the rows (first dimension) of
        its inputs independently."""
        from . import preload  # start-up cost

        self._add_ml(preload.ml_model(name, backend, model, model_path, device, devices_per_node, first_device,
                                      batch_size, min_batch_size, min_batch_timeout, tag, inputs, outputs,
                                      replace))

    def add_script(self, name: str, script: str | None = None, script_path: str | None = None,
                   device: str = "CPU", devices_per_node: int = 1, first_device: int = 0, *,
                   replace: bool = False) -> None:
        """Store a TorchScript script (source text, or a file read now) under
        ``name`` before the application starts (see :meth:`add_ml_model`, ``replace`` too)."""
        from . import preload  # start-up cost

        self._add_ml(preload.script(name, script, script_path, device, devices_per_node, first_device, replace))

    def add_function(self, name: str, function: Any = None, device: str = "CPU", devices_per_node: int = 1,
                     first_device: int = 0, *, replace: bool = False) -> None:
        """Store a TorchScript function under ``name`` before the application
        starts: a Python function (serialized now; needs torch) or its
        TorchScript source (see :meth:`add_ml_model`, ``replace`` too)."""
        from . import preload  # start-up cost

        self._add_ml(preload.function(name, function, device, devices_per_node, first_device, replace))

    def _add_ml(self, obj: MLObject) -> None:
        uses = self._store_uses()
        for owner, use in uses:  # every check before any change
            use.check_new(owner, obj)
        for _, use in uses:
            use.ml.append(obj)

    # -- keys -------------------------------------------------------------------------------

    def enable_key_prefixing(self) -> None:
        """Prefix this entity's feature-store keys with its name (each member's with its own)."""
        for _, use in self._store_uses():
            use.key_prefixing = True

    def register_incoming_entity(self, entity: Any) -> None:
        """Let this entity (every member) read the keys ``entity`` wrote with prefixing on."""
        name = incoming_name(entity)
        for _, use in self._store_uses():
            if name not in use.incoming:
                use.incoming.append(name)

    # -- what the earlier API read as attributes ------------------------------------------------

    @property
    def key_prefixing(self) -> bool:
        """Whether :meth:`enable_key_prefixing` was called."""
        return self.store_use.key_prefixing

    @property
    def ml(self) -> list[MLObject]:
        """The ML models, scripts and functions stored before the application starts."""
        return self.store_use.ml

    @property
    def incoming_entities(self) -> list[str]:
        """Entities whose prefixed keys this one reads."""
        return self.store_use.incoming
