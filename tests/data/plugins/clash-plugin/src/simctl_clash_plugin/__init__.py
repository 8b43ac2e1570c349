"""Test fixture: claims the strategy name "random" (taken by simctl's own)."""

import simctl


class MyRandom:
    name = "random"

    def expand(self, names, values, n_models=None, seed=None):
        return simctl.Product(names, values)


class Reverse:
    name = "reverse"

    def expand(self, names, values, n_models=None, seed=None):
        return list(simctl.Product(names, values))[::-1]


@simctl.hookimpl
def simctl_register_strategies():
    return [MyRandom(), Reverse()]
