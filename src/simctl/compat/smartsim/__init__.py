"""SmartSim's public names over simctl (``import smartsim`` resolves here
through simctl's import hook when no real SmartSim is installed): see
``docs/coming-from-smartsim.md`` for what maps to what."""

import simctl

from .experiment import Experiment

#: the SmartSim release whose public names this layer follows
__version__ = "0.8.0"
#: simctl's own version underneath
simctl_version = simctl.__version__

__all__ = ["Experiment", "__version__"]
