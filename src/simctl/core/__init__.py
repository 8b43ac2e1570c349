"""The simctl core: entities, settings, plugin plumbing and the experiment.

The core knows no plugin by name; launchers, ML backends and permutation
strategies reach it only through the hooks in :mod:`simctl.core.hookspecs`.
"""
