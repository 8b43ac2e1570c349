"""The ``random`` strategy: ``n_models`` distinct combinations, drawn without
replacement as indices into the combination space (so a space of 10**12
combinations costs nothing), reproducible with ``seed``."""

from __future__ import annotations

import random as _random
from typing import Any

import simctl
from simctl import Pick, Product, checks


class RandomPick:
    """``n_models`` distinct members of the all_perm space, in draw order."""

    name = "random"
    #: which of create_ensemble's n_models / seed this strategy uses
    options = ("n_models", "seed")

    def expand(self, names: list[str], values: list[list[Any]], n_models: int | None = None,
               seed: int | str | None = None) -> Pick:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
            raise simctl.ConfigError(f"seed must be an int (or a str), or None for a different draw each "
                                     f"time; got {checks.show(seed)}")
        space = Product(names, values)
        if n_models is None:
            raise simctl.ConfigError(
                f"perm_strategy 'random' needs n_models (how many members to draw); the space has "
                f"{len(space)} combinations")
        checks.positive_int("n_models", n_models)
        if n_models > len(space):
            raise simctl.ConfigError(
                f"n_models={n_models} is larger than the parameter space, which has {len(space)} "
                "combinations; random draws without replacement")
        return Pick(space, _random.Random(seed).sample(range(len(space)), n_models))


@simctl.hookimpl
def simctl_register_strategies() -> list[Any]:
    return [RandomPick()]
