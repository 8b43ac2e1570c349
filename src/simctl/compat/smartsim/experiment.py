"""``smartsim.Experiment``: simctl's Experiment, whose ``create_*`` return the
layer's classes (with SmartSim's extra names) and which reconnects to a store."""

from __future__ import annotations

import os
from typing import Any

import simctl
from simctl import reattach

from ._adapt import recast
from .database import Orchestrator, build
from .entity import Ensemble, Model
from .error import SSDBIDConflictError
from .settings import with_batch_methods, with_smartsim_methods
from .telemetry import ExperimentTelemetry

_Orchestrator: Any = simctl.Orchestrator


class Experiment(simctl.Experiment):
    """SmartSim's ``Experiment(name, exp_path=None, launcher="local")``: a
    :class:`simctl.Experiment`."""

    @property
    def telemetry(self) -> ExperimentTelemetry:
        """SmartSim's telemetry, always on: read now, no monitor to start (see :mod:`.telemetry`)."""
        return ExperimentTelemetry(self)

    def create_run_settings(self, *args: Any, **kwargs: Any) -> simctl.RunSettings:
        """simctl's, with SmartSim's extra methods (``set_time``...)."""
        return with_smartsim_methods(super().create_run_settings(*args, **kwargs))

    def create_batch_settings(self, *args: Any, **kwargs: Any) -> simctl.BatchSettings:
        """simctl's, with SmartSim's ``format_batch_args``."""
        return with_batch_methods(super().create_batch_settings(*args, **kwargs))

    def create_model(self, *args: Any, **kwargs: Any) -> Model:
        return recast(super().create_model(*args, **kwargs), Model)

    def create_ensemble(self, name: str, params: Any = None, batch_settings: Any = None,  # type: ignore[override]
                        run_settings: Any = None, replicas: int | None = None, perm_strategy: Any = "all_perm",
                        path: str | None = None, **kwargs: Any) -> Ensemble:
        """SmartSim's argument order: ``(name, params, batch_settings, run_settings,
        replicas, perm_strategy, path)``; members made from ``params`` or
        ``replicas`` prefix their keys, as SmartSim's do."""
        return recast(super().create_ensemble(
            name, params=params, batch_settings=batch_settings, run_settings=run_settings, replicas=replicas,
            perm_strategy=perm_strategy, path=path, **kwargs), Ensemble)

    def create_database(self, *args: Any, **kwargs: Any) -> Orchestrator:
        """SmartSim's argument order: ``(port, path, db_nodes, batch, hosts,
        run_command, interface, account, time, queue, single_cmd, db_identifier)``
        (see :func:`~simctl.compat.smartsim.database.build`)."""
        return build(super().create_database, *args, **kwargs)

    def start(self, *entities: Any, **kwargs: Any) -> None:
        """simctl's; a store, or a model's colocated store, whose name (``db_identifier``)
        is a store of this experiment that runs (or starts in this call) is refused before
        anything is launched, as SmartSim refuses it (``SSDBIDConflictError``)."""
        stores = {r.key.partition("/")[0] for r in self.summary_data() if r.until_stopped and not r.status.is_terminal}
        names = [(e.name, f"store {e.name!r}") for e in entities if isinstance(e, _Orchestrator)]
        for model in (m for e in entities for m in (e.models if isinstance(e, simctl.Ensemble) else [e])):
            view = getattr(getattr(model, "run_settings", None), "colocated_db_settings", None) or {}
            if view.get("db_identifier"):
                names.append((view["db_identifier"], f"model {model.name!r}'s colocated store"))
        for i, (name, what) in enumerate(names):  # each colocated store is its model's own: only stores take a name
            taken = stores | {n for n, w in names[:i] if w.startswith("store ")}
            if name in taken:
                raise SSDBIDConflictError(
                    f"Database identifier {name!r} has already been used. Pass in a unique name for db_identifier "
                    f"({what}; the experiment's stores: {', '.join(map(repr, sorted(taken)))})")
        super().start(*entities, **kwargs)

    def reconnect_orchestrator(self, checkpoint: str) -> Orchestrator:
        """The store a driver that died left running, from its directory or the
        file it recorded there (SmartSim passes ``smartsim_db.dat``; simctl
        records ``store.json``): it answers at once (``get_address``,
        ``is_active``, ``set_db_conf``...), and :meth:`get_status` and
        :meth:`stop` reach its shards through the manifest of the experiment
        that started it, as ``simctl status`` / ``simctl stop`` do."""
        path = os.fspath(checkpoint)
        orc = recast(_Orchestrator.attach(path if os.path.isdir(path) else os.path.dirname(path)), Orchestrator)
        orc.left_in = reattach.experiment_of(orc.path)
        return orc

    def get_status(self, *entities: Any) -> list[simctl.Status]:
        """simctl's; a reconnected store's shards as its dead driver's manifest records them, checked now."""
        left = [e for e in entities if getattr(e, "left_in", None)]
        if not left:
            return super().get_status(*entities)
        out: list[simctl.Status] = []
        for e in entities:
            if e in left:
                keys = e.job_keys()
                latest = reattach.refresh(e.left_in, self.plugins, keys).latest()
                out += [latest[k].status if k in latest else simctl.Status.NEW for k in keys]
            else:
                out += super().get_status(e)
        return out

    def stop(self, *entities: Any) -> None:
        """simctl's; a reconnected store is stopped as ``simctl stop`` stops what a dead driver left."""
        for e in entities:
            if getattr(e, "left_in", None):
                reattach.stop_left(e.left_in, self.plugins, e.job_keys())
        rest = [e for e in entities if not getattr(e, "left_in", None)]
        if rest or not entities:
            super().stop(*rest)

