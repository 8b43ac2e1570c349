"""SmartSim's ``telemetry`` of an experiment or a store: SmartSim's dashboard
reads what a telemetry monitor writes when it is enabled; simctl records every
job in the experiment's manifest always (``simctl status``, ``Experiment.summary_data``),
so there is nothing to turn on, and nothing can be turned off."""

from __future__ import annotations

import warnings

import simctl


class TelemetryConfiguration:
    """SmartSim's ``TelemetryConfiguration``: always enabled (simctl's manifest)."""

    __slots__ = ()

    @property
    def is_enabled(self) -> bool:
        """True: simctl records every job in the experiment's manifest."""
        return True

    def enable(self) -> None:
        """Nothing to do: the manifest is always written."""

    def disable(self) -> None:
        """Warns: simctl's manifest cannot be turned off (it is how ``simctl status``
        and ``simctl stop`` find jobs after the driver is gone)."""
        warnings.warn("telemetry.disable(): simctl always records jobs in the experiment's manifest "
                      "(.simctl/ in exp_path); nothing was turned off", simctl.SimctlWarning, stacklevel=2)


TELEMETRY = TelemetryConfiguration()
