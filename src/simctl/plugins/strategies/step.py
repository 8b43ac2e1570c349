"""The ``step`` strategy: the i-th value of every parameter together."""

from __future__ import annotations

from typing import Any

import simctl
from simctl import Zip


class Step:
    """Member i takes the i-th value of each parameter; lists must be equally long."""

    name = "step"
    #: which of create_ensemble's n_models / seed this strategy uses
    options = ()

    def expand(self, names: list[str], values: list[list[Any]], n_models: int | None = None,
               seed: int | None = None) -> Zip:
        return Zip(names, values)


@simctl.hookimpl
def simctl_register_strategies() -> list[Any]:
    return [Step()]
