"""``smartsim.database``: the Orchestrator (simctl's feature store)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import simctl
from simctl.log import get_logger

from ._adapt import Built, recast, scratch
from .entity import DBNode
from .telemetry import StoreTelemetry

logger = get_logger("smartsim.database")
# simctl.Orchestrator is imported on first use of simctl's store (redis-py, numpy)
_Base: Any = simctl.Orchestrator


def build(create: Callable[..., Any], port: int | None = None, path: str | None = None, db_nodes: int = 1,
          batch: bool = False, hosts: Any = None, run_command: str = "auto", interface: Any = "lo",
          account: str | None = None, time: Any = None, queue: str | None = None, single_cmd: bool = True,
          db_identifier: str = "orchestrator", **kwargs: Any) -> Orchestrator:
    """SmartSim's store arguments given to ``create`` (simctl's ``create_database``):
    ``path`` is the directory the store's own directory goes in; ``port`` left out
    picks free ports; RedisAI's thread settings are kept (``queue_threads``...), unused."""
    threads = [kwargs.pop(k, None) for k in ("threads_per_queue", "inter_op_threads", "intra_op_threads")]
    for key, value in (("account", account), ("time", time), ("queue", queue)):
        if value is not None:
            kwargs[key] = value
    if path is not None:
        kwargs["path"] = os.path.join(os.path.abspath(path), db_identifier)
    orc = recast(create(port=port, db_nodes=db_nodes, interface=interface, batch=batch, hosts=hosts,
                        run_command=run_command, single_cmd=single_cmd, db_identifier=db_identifier, **kwargs),
                 Orchestrator)
    orc.queue_threads, orc.inter_threads, orc.intra_threads = threads
    return orc


class Orchestrator(_Base, metaclass=Built):
    """SmartSim's ``Orchestrator(path=getcwd(), port=6379, interface="lo",
    launcher="local", run_command="auto", db_nodes=1, batch=False, hosts=None,
    ..., db_identifier="orchestrator")``: simctl's store. ``port`` left out
    picks free ports (SmartSim's 6379 is often taken on shared nodes)."""

    @classmethod
    def _build(cls, path: str | None = None, port: int | None = None, interface: Any = "lo",
               launcher: str = "local", run_command: str = "auto", db_nodes: int = 1, batch: bool = False,
               hosts: Any = None, account: str | None = None, time: str | None = None, alloc: str | None = None,
               single_cmd: bool = False, **kwargs: Any) -> Orchestrator:
        if isinstance(path, int) and not isinstance(path, bool) and port is None:
            path, port = None, path  # Orchestrator(6780, ...): SmartSim's own tests pass the port first
        return build(scratch(launcher, os.getcwd()).create_database, port, path, db_nodes, batch, hosts,
                     run_command, interface, account, time, single_cmd=single_cmd, **kwargs)
    @property
    def entities(self) -> list[DBNode]:
        """One :class:`DBNode` per shard (SmartSim's ``Orchestrator.entities``): the
        same objects on every read, each one's host the shard's once started."""
        try:
            hosts: list[str | None] = [a.rpartition(":")[0] for a in self.get_address()]
        except simctl.SimctlError:
            hosts = [None] * self.db_nodes
        nodes: list[DBNode] = self.__dict__.setdefault("_dbnodes", [])
        if [(n.name, n.path, n.ports[0]) for n in nodes] != [
                (f"{self.name}_{i}", self.path, self.port + i) for i in range(self.db_nodes)]:
            nodes[:] = [DBNode(f"{self.name}_{i}", self.path, self.port + i, None, self.run_settings, self.name)
                        for i in range(self.db_nodes)]
        for node, host in zip(nodes, hosts):
            node._host = host
        return nodes

    @property
    def ports(self) -> list[int]:
        """Each shard's port (simctl gives shards consecutive ports)."""
        return [self.port + i for i in range(self.db_nodes)]

    @property
    def db_identifier(self) -> str:
        return str(self.name)

    @property
    def telemetry(self) -> StoreTelemetry:
        """SmartSim's telemetry, always on: read now, no monitor to start (see :mod:`.telemetry`)."""
        return StoreTelemetry(self)

    @property
    def checkpoint_file(self) -> str:
        """The file a driver reconnects with (``Experiment.reconnect_orchestrator``):
        simctl's ``store.json`` in the store's directory, written when it is ready
        (SmartSim's is ``smartsim_db.dat``)."""
        return os.path.join(self.path, "store.json")

    def set_path(self, path: str) -> None:
        """Where the store's files go (SmartSim's ``set_path``)."""
        self.path = os.path.abspath(path)

    def set_run_arg(self, arg: str, value: Any = None) -> None:
        """simctl's; a flag the store's launch sets itself is ignored with a warning, as SmartSim does
        (simctl refuses it)."""
        if isinstance(arg, str) and arg.strip().lstrip("-") in self.placement_args():
            logger.warning(f"Can not set run argument {arg}: it is a reserved keyword in Orchestrator")
            return
        super().set_run_arg(arg, value)

    def set_batch_arg(self, arg: str, value: Any = None) -> None:
        """simctl's; a flag the store's batch job sets itself is ignored with a warning, as SmartSim does."""
        if isinstance(arg, str) and arg.strip().lstrip("-") in self.placement_args(batch=True):
            logger.warning(f"Can not set batch argument {arg}: it is a reserved keyword in Orchestrator")
            return
        super().set_batch_arg(arg, value)
