"""Implements ``simctl_entity_created`` with an argument the spec does not have."""

import simctl


@simctl.hookimpl
def simctl_entity_created(entity, exp):
    pass
