"""The ``all_perm`` strategy: every combination of the parameter values."""

from __future__ import annotations

from typing import Any

import simctl
from simctl import Product


class AllPermutations:
    """Every combination, the last parameter varying fastest."""

    name = "all_perm"
    #: which of create_ensemble's n_models / seed this strategy uses
    options = ()

    def expand(self, names: list[str], values: list[list[Any]], n_models: int | None = None,
               seed: int | None = None) -> Product:
        return Product(names, values)


@simctl.hookimpl
def simctl_register_strategies() -> list[Any]:
    return [AllPermutations()]
