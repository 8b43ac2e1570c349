"""Latin-hypercube sampling for simctl ensembles: ``perm_strategy="lhs"``.

Every parameter's value list is an ordered axis cut into ``n_models`` equal
strata. Member ``j`` falls in stratum ``perm_p[j]`` of parameter ``p`` (one
random permutation per parameter), at a random point inside that stratum, and
takes the value under that point. Each stratum of each axis therefore holds
exactly one member: with ``n_models`` equal to the number of values every
value is used once, with a multiple of it every value is used equally often.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import simctl

__version__ = "0.1.0"


class LatinHypercubeDesign(Sequence):
    """The members of one design, computed on demand (``len`` and indexing)."""

    def __init__(self, names: list[str], values: list[list[Any]], n_models: int, seed: int | None):
        self.names, self.values, self.n = list(names), [list(v) for v in values], n_models
        rng = random.Random(seed)
        self._strata: list[list[int]] = []
        self._offsets: list[list[float]] = []
        for _ in self.names:
            perm = list(range(n_models))
            rng.shuffle(perm)
            self._strata.append(perm)
            self._offsets.append([rng.random() for _ in range(n_models)])

    def __len__(self) -> int:
        return self.n

    def value_indices(self, j: int) -> list[int]:
        """The value index of each parameter for member ``j``."""
        out = []
        for vals, strata, offsets in zip(self.values, self._strata, self._offsets):
            x = (strata[j] + offsets[j]) / self.n  # a point in [0, 1)
            out.append(min(int(x * len(vals)), len(vals) - 1))
        return out

    def __getitem__(self, j: int) -> dict[str, Any]:  # type: ignore[override]
        if isinstance(j, slice):
            return [self[k] for k in range(*j.indices(self.n))]  # type: ignore[return-value]
        if j < 0:
            j += self.n
        if not 0 <= j < self.n:
            raise IndexError(j)
        return {name: vals[k] for name, vals, k in zip(self.names, self.values, self.value_indices(j))}


class LatinHypercube:
    """``perm_strategy="lhs"``: ``n_models`` members spread evenly over every parameter."""

    name = "lhs"

    def expand(self, names: list[str], values: list[list[Any]], n_models: int | None = None,
               seed: int | None = None) -> LatinHypercubeDesign:
        if n_models is None:
            raise simctl.ConfigError(
                "perm_strategy 'lhs' needs n_models: how many members the Latin hypercube has")
        if isinstance(n_models, bool) or not isinstance(n_models, int) or n_models < 1:
            raise simctl.ConfigError(f"perm_strategy 'lhs': n_models must be a positive integer, "
                                     f"got {n_models!r}")
        return LatinHypercubeDesign(names, values, n_models, seed)


@simctl.hookimpl
def simctl_register_strategies() -> list[Any]:
    return [LatinHypercube()]
