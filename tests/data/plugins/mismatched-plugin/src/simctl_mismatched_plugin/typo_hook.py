"""Implements ``simctl_register_strategys`` (sic): no such hook."""

import simctl


class Never:
    name = "never"

    def expand(self, names, values, n_models=None, seed=None):
        return []


@simctl.hookimpl
def simctl_register_strategys():
    return [Never()]
