"""``smartsim.database``: the Orchestrator (simctl's feature store)."""

from __future__ import annotations

import os
from typing import Any

import simctl

from ._adapt import Built, recast, scratch
from .entity import DBNode

# simctl.Orchestrator is imported on first use of simctl's store (redis-py, numpy)
_Base: Any = simctl.Orchestrator


class Orchestrator(_Base, metaclass=Built):
    """SmartSim's ``Orchestrator(path=getcwd(), port=6379, interface="lo",
    launcher="local", run_command="auto", db_nodes=1, batch=False, hosts=None,
    ..., db_identifier="orchestrator")``: simctl's store. ``port`` left out
    picks free ports (SmartSim's 6379 is often taken on shared nodes)."""

    @classmethod
    def _build(cls, path: str | None = None, port: int | None = None, interface: str | list[str] = "lo",
               launcher: str = "local", run_command: str = "auto", db_nodes: int = 1, batch: bool = False,
               hosts: Any = None, account: str | None = None, time: str | None = None, alloc: str | None = None,
               single_cmd: bool = False, **kwargs: Any) -> Orchestrator:
        if isinstance(path, int) and not isinstance(path, bool) and port is None:
            path, port = None, path  # Orchestrator(6780, ...): SmartSim's own tests pass the port first
        threads = {k: kwargs.pop(k, None) for k in ("threads_per_queue", "inter_op_threads", "intra_op_threads")}
        name = kwargs.get("db_identifier", "orchestrator")
        exp = scratch(launcher, os.getcwd())
        if path is not None:
            kwargs["path"] = os.path.join(os.path.abspath(path), name)
        orc = exp.create_database(port=port, db_nodes=db_nodes, interface=interface, batch=batch, hosts=hosts,
                                  run_command=run_command, single_cmd=single_cmd, **kwargs)
        orc = recast(orc, cls)
        # RedisAI's thread settings: kept for what reads them; the ML runtimes' own thread defaults apply
        orc.queue_threads, orc.inter_threads, orc.intra_threads = threads.values()
        return orc

    @property
    def entities(self) -> list[DBNode]:
        """One :class:`DBNode` per shard (SmartSim's ``Orchestrator.entities``)."""
        try:
            hosts: list[str | None] = [a.rpartition(":")[0] for a in self.get_address()]
        except simctl.SimctlError:
            hosts = [None] * self.db_nodes
        return [DBNode(f"{self.name}_{i}", self.path, self.port + i, hosts[i], self.run_settings)
                for i in range(self.db_nodes)]

    @property
    def db_identifier(self) -> str:
        return str(self.name)

    def set_path(self, path: str) -> None:
        """Where the store's files go (SmartSim's ``set_path``)."""
        self.path = os.path.abspath(path)
