"""Test fixture: importing this plugin fails, as a plugin with a bug would."""

import simctl


@simctl.hookimpl
def simctl_register_strategies():  # never reached
    return []


raise RuntimeError("simctl-broken-plugin exploded on import")
