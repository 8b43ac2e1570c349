"""The one mechanism of the layer: a SmartSim class name whose constructor
takes SmartSim's arguments and builds simctl's object through simctl's own
``Experiment.create_*`` (so every check is simctl's), then gives it the
layer's subclass, which adds SmartSim's extra names."""

from __future__ import annotations

import os
from typing import Any

import simctl


def scratch(launcher: str = "local", path: str | None = None) -> simctl.Experiment:
    """An experiment that only builds entities (SmartSim's direct constructors
    have none): nothing is written or started through it."""
    return simctl.Experiment("smartsim", exp_path=path or os.getcwd(), launcher=launcher)


def recast(obj: Any, cls: type) -> Any:
    """``obj`` as an instance of ``cls``, a subclass of its class that adds no state."""
    if not isinstance(obj, cls):
        obj.__class__ = cls
    return obj


class Built(type(simctl.Entity)):  # type: ignore[misc]
    """Metaclass: ``Cls(*args)`` is ``Cls._build(*args)``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._build(*args, **kwargs)
