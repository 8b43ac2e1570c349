"""SmartSim's public names over simctl: ``simctl.compat.smartsim`` and
``simctl.compat.smartredis``, thin aliases and adapters over simctl's public
API (they import only :mod:`simctl`, as a plugin does).

``import smartsim`` and ``import smartredis`` resolve to them through the
import hook in ``_simctl_compat`` (installed by the wheel's
``simctl-smartsim.pth``): only when no real SmartSim is installed, unless
``SIMCTL_SMARTSIM=force``; ``SIMCTL_SMARTSIM=off`` turns it off. See
``docs/coming-from-smartsim.md``.
"""
