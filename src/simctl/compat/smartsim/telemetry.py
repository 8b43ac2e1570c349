"""SmartSim's ``telemetry`` of an experiment or a store. SmartSim's dashboard
reads what its telemetry monitor (a separate process, enabled per experiment)
writes: each job's status and the store's memory and clients. simctl records
every job in the experiment's manifest always, so the same ``telemetry``
switch is always on and reads it directly: :meth:`ExperimentTelemetry.jobs`
(the manifest, as ``simctl status`` shows it), :meth:`StoreTelemetry.memory`
and :meth:`StoreTelemetry.clients` (each shard's ``INFO``, asked now as the
store's admin), with no monitor to start."""

from __future__ import annotations

import warnings
from typing import Any

import simctl


class TelemetryConfiguration:
    """SmartSim's ``TelemetryConfiguration``: always enabled (simctl's manifest)."""

    __slots__ = ("_owner",)

    def __init__(self, owner: Any = None) -> None:
        self._owner = owner

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


class ExperimentTelemetry(TelemetryConfiguration):
    """An experiment's telemetry: its jobs, from the manifest."""

    __slots__ = ()

    def jobs(self) -> list[dict[str, Any]]:
        """Every launch of the experiment, oldest first: name, entity type, job
        id, status, return code, launch and end times (seconds since the epoch)."""
        return [{"name": r.name, "type": r.entity_type, "job_id": r.job_id, "status": r.status.value,
                 "returncode": r.returncode, "launched_at": r.launched_at, "finished_at": r.finished_at}
                for r in self._owner.summary_data()]


class StoreTelemetry(TelemetryConfiguration):
    """A store's telemetry: what SmartSim's monitor samples of each shard, asked now."""

    __slots__ = ()

    def _info(self) -> list[dict[str, Any]]:
        client = self._owner.client()
        try:
            info: list[dict[str, Any]] = client.get_db_node_info()
        finally:
            client.close()
        return info

    def memory(self) -> list[dict[str, int]]:
        """Each shard's ``used_memory``, ``used_memory_peak`` and ``total_system_memory`` (bytes)."""
        keys = ("used_memory", "used_memory_peak", "total_system_memory")
        return [{k: int(info[k]) for k in keys} for info in self._info()]

    def clients(self) -> list[int]:
        """How many clients each shard has connected now."""
        return [int(info["connected_clients"]) for info in self._info()]
