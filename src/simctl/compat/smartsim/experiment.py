"""``smartsim.Experiment``: simctl's Experiment, whose ``create_*`` return the
layer's classes (with SmartSim's extra names) and which reconnects to a store."""

from __future__ import annotations

import os
from typing import Any

import simctl

from ._adapt import recast
from .database import Orchestrator
from .entity import Ensemble, Model

_Orchestrator: Any = simctl.Orchestrator


class Experiment(simctl.Experiment):
    """SmartSim's ``Experiment(name, exp_path=None, launcher="local")``: a
    :class:`simctl.Experiment`."""

    def create_model(self, *args: Any, **kwargs: Any) -> Model:
        return recast(super().create_model(*args, **kwargs), Model)

    def create_ensemble(self, *args: Any, **kwargs: Any) -> Ensemble:
        return recast(super().create_ensemble(*args, **kwargs), Ensemble)

    def create_database(self, *args: Any, **kwargs: Any) -> Orchestrator:
        return recast(super().create_database(*args, **kwargs), Orchestrator)

    def reconnect_orchestrator(self, checkpoint: str) -> Orchestrator:
        """The store a driver that died left running, from its directory or the
        file it recorded there (SmartSim passes ``smartsim_db.dat``; simctl
        records ``store.json``)."""
        path = os.fspath(checkpoint)
        return recast(_Orchestrator.attach(path if os.path.isdir(path) else os.path.dirname(path)),
                      Orchestrator)
