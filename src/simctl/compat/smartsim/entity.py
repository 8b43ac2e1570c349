"""``smartsim.entity``: Model, Ensemble, DBNode, DBModel, DBScript and the bases."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import simctl

from ._adapt import Built, recast, scratch
from .telemetry import TelemetryConfiguration

SmartSimEntity = simctl.Entity

EntitySequence = EntityList = simctl.Ensemble
__all__ = ["DBModel", "DBNode", "DBScript", "Ensemble", "EntityList", "EntitySequence", "LaunchedShardData", "Model",
           "SmartSimEntity", "TelemetryConfiguration"]


class DBObject:
    """What SmartSim shows of an ML object after ``add_ml_model`` /
    ``add_script`` / ``add_function``: a view of simctl's stored object."""

    def __init__(self, obj: Any) -> None:
        self._obj = obj
        spec = obj.spec
        self.name: str = obj.name
        self.device: str = spec.device
        self.devices_per_node: int = spec.devices_per_node
        self.first_device: int = spec.first_device

    @property
    def is_file(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, device={self.device!r})"


class DBModel(DBObject):
    """SmartSim's ``DBModel``: ``name``, ``backend``, ``model`` (bytes), devices, batching, inputs/outputs."""

    def __init__(self, obj: Any) -> None:
        super().__init__(obj)
        spec = obj.spec
        self.backend: str = spec.backend
        self.model: bytes = obj.data
        self.batch_size, self.min_batch_size = spec.batch_size, spec.min_batch_size
        self.min_batch_timeout, self.tag = spec.min_batch_timeout, spec.tag
        self.inputs: list[str] = list(spec.inputs or [])
        self.outputs: list[str] = list(spec.outputs or [])


class DBScript(DBObject):
    """SmartSim's ``DBScript``: ``name``, ``script`` (the TorchScript source), devices."""

    def __init__(self, obj: Any) -> None:
        super().__init__(obj)
        self.script: str = obj.data.decode()
        self.func = self.script


class _DBObjects:
    """``_db_models`` and ``_db_scripts``, as SmartSim's entities have them."""

    __slots__ = ()

    @property
    def _db_models(self: Any) -> list[DBModel]:
        return [DBModel(o) for o in self.ml if o.kind == "model"]

    @property
    def _db_scripts(self: Any) -> list[DBScript]:
        return [DBScript(o) for o in self.ml if o.kind == "script"]


def _pinning(kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("custom_pinning") == []:
        kwargs["custom_pinning"] = None
    return kwargs


class Model(_DBObjects, simctl.Model, metaclass=Built):
    """SmartSim's ``Model(name, params, run_settings, path=getcwd(), params_as_args=None,
    batch_settings=None)``, also SmartSim 0.6's positional ``(name, params, path,
    run_settings)``: a :class:`simctl.Model`."""

    __slots__ = ()

    @classmethod
    def _build(cls, name: str, params: Mapping[str, Any] | None, run_settings: simctl.RunSettings,
               path: str | None = None, params_as_args: list[str] | None = None,
               batch_settings: simctl.BatchSettings | None = None) -> Model:
        if isinstance(path, simctl.RunSettings) and isinstance(run_settings, str):  # SmartSim 0.6's order
            run_settings, path = path, run_settings
        path = os.path.abspath(path) if path is not None else os.getcwd()
        model = scratch(path=os.path.dirname(path)).create_model(
            name, run_settings, params=params, path=path, params_as_args=params_as_args,
            batch_settings=batch_settings)
        return recast(model, cls)

    def colocate_db_tcp(self, *args: Any, **kwargs: Any) -> None:
        """simctl's, with SmartSim's ``custom_pinning=[]`` meaning no pinning (simctl's None);
        SmartSim's view of it in ``run_settings.colocated_db_settings``."""
        ident = kwargs.get("db_identifier") or ""
        super().colocate_db_tcp(*args, **_pinning({**kwargs, "db_identifier": ident or None}))
        self._colocated_view(ident)

    def colocate_db_uds(self, *args: Any, **kwargs: Any) -> None:
        """simctl's, with SmartSim's ``custom_pinning=[]`` meaning no pinning (simctl's None);
        SmartSim's view of it in ``run_settings.colocated_db_settings``."""
        ident = kwargs.get("db_identifier") or ""
        kwargs.pop("port", None)  # SmartSim passes it on as a server option; a UDS store listens on its socket only
        if ident and not kwargs.get("unix_socket"):  # SmartSim names a named store's socket at once: shown in the view
            kwargs["unix_socket"] = os.path.join(tempfile.gettempdir(), f"smartsim-{ident}-{uuid.uuid4().hex[:8]}.sock")
        super().colocate_db_uds(*args, **_pinning({**kwargs, "db_identifier": ident or None}))
        self._colocated_view(ident)

    def _colocated_view(self, db_identifier: str) -> None:
        """SmartSim's ``colocated_db_settings`` dict, from simctl's colocated store (run
        settings that are not the layer's have no such attribute: left alone). A store
        with a ``db_identifier`` is named to the model by simctl itself, as SmartSim
        names it (``SSDB_<id>``, ``SR_DB_TYPE_<id>``) and with its own credentials."""
        c: Any = self.colocated_db
        where = ({"port": c.port, "ifname": c.ifnames[0] if len(c.ifnames) == 1 else list(c.ifnames)}
                 if c.transport == "tcp" else
                 {"unix_socket": c.unix_socket, "socket_permissions": c.socket_permissions})
        view = {**where, "cpus": c.db_cpus, "debug": c.debug, "db_identifier": db_identifier,
                "custom_pinning": ",".join(map(str, c.custom_pinning)) if c.custom_pinning else None,
                "rai_args": dict(c.ml_options), "extra_db_args": dict(c.conf),
                "db_models": self._db_models, "db_scripts": self._db_scripts}
        if hasattr(self.run_settings, "colocated_db_settings"):
            self.run_settings.colocated_db_settings = view

    @property
    def colocated(self) -> bool:
        """Whether a store runs beside the model (SmartSim's ``Model.colocated``)."""
        return self.colocated_db is not None

    @property
    def exe(self) -> list[str]:
        """SmartSim's ``Model.exe``: the executable, as a one-item list."""
        return [self.run_settings.exe]

    def set_path(self, path: str) -> None:
        """Where the model runs (SmartSim's ``set_path``)."""
        self.path = os.path.abspath(path)


class Ensemble(_DBObjects, simctl.Ensemble, metaclass=Built):
    """SmartSim's ``Ensemble(name, params, path=getcwd(), params_as_args=None,
    batch_settings=None, run_settings=None, perm_strat="all_perm", replicas=...)``:
    a :class:`simctl.Ensemble`; ``entities`` are its members."""

    __slots__ = ()

    @classmethod
    def _build(cls, name: str, params: Mapping[str, Any] | None, path: str | None = None,
               params_as_args: list[str] | None = None, batch_settings: simctl.BatchSettings | None = None,
               run_settings: simctl.RunSettings | None = None,
               perm_strat: str | Callable[..., Any] = "all_perm", **kwargs: Any) -> Ensemble:
        path = os.path.abspath(path) if path is not None else None
        ens = scratch(path=os.path.dirname(path) if path else None).create_ensemble(
            name, params=params or None, params_as_args=params_as_args, batch_settings=batch_settings,
            run_settings=run_settings, perm_strategy=perm_strat, path=path, **kwargs)
        return recast(ens, cls)

    @property
    def entities(self) -> list[simctl.Model]:
        """The members (SmartSim's ``Ensemble.entities``)."""
        return self.models

    def set_path(self, path: str) -> None:
        """Where the ensemble's members' directories go (SmartSim's ``set_path``)."""
        self.path = os.path.abspath(path)


@dataclasses.dataclass(frozen=True)
class LaunchedShardData:
    """SmartSim's record of a started shard (name, host, port, whether clustered);
    simctl's own is the store's ``store.json``."""

    name: str
    hostname: str
    port: int
    cluster: bool

    def to_dict(self) -> dict[str, Any]:
        """The record as a dict, which ``LaunchedShardData(**d)`` reads back."""
        return dataclasses.asdict(self)


class DBNode:
    """One shard of an :class:`~smartsim.database.Orchestrator` (SmartSim's ``DBNode``)."""

    def __init__(self, name: str, path: str, port: int, host: str | None, run_settings: Any = None,
                 db_identifier: str = "orchestrator") -> None:
        self.name, self.path, self.ports, self._host = name, path, [port], host
        #: hosts given with set_hosts (SmartSim's), which win over the shard's own until clear_hosts
        self._hosts: list[str] = []
        self.db_identifier = db_identifier
        #: shards this node runs: one (simctl launches each shard as its own step, never one MPMD launch)
        self.num_shards = 1
        #: the orchestrator's run settings (one object for every shard, as simctl starts each shard alike)
        self.run_settings = run_settings
        self.type = "DBNode"

    @property
    def host(self) -> str:
        """The host it runs on (known once started), or the one given with :meth:`set_hosts`."""
        if self._hosts:
            return self._hosts[0]
        if self._host is None:
            raise simctl.SimctlError(f"{self.name} has not been started, so it has no host yet")
        return self._host

    @property
    def hosts(self) -> list[str]:
        return list(self._hosts) or [self.host]

    def set_hosts(self, hosts: list[str]) -> None:
        """The hosts this node reports (SmartSim's ``set_hosts``; where the shard runs is the store's
        ``hosts=`` / ``Orchestrator.set_hosts``)."""
        self._hosts = [str(h) for h in hosts]

    def clear_hosts(self) -> None:
        """Forget the hosts given with :meth:`set_hosts`."""
        self._hosts = []

    def __repr__(self) -> str:
        return f"DBNode(name={self.name!r}, port={self.ports[0]}, host={self._host!r})"
