"""``smartsim.settings``: run and batch settings by SmartSim's names.

A settings class whose launcher is installed builds that launcher's own
settings (``SrunSettings`` is the slurm launcher's, with ``srun``); one whose
launcher is not installed is an error naming it. ``RunSettings`` and the MPI
classes (``mpirun``, ``mpiexec``, ``orterun``) are launcher-free, as in SmartSim.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from typing import Any

import attrs

import simctl
from simctl.log import get_logger

from ._adapt import scratch

logger = get_logger("smartsim.settings")
#: SmartSim's RunSettings arguments with no simctl counterpart: accepted, not used
#: (fail_if_missing_exec: simctl checks the executable where it runs, at start)
_IGNORED = ("fail_if_missing_exec", "alloc", "container")

SettingsBase = BatchSettings = simctl.BatchSettings


def _launcher(name: str, what: str) -> type[simctl.Launcher]:
    try:
        cls: type[simctl.Launcher] = simctl.make_plugins().get("launcher", name)
    except simctl.ConfigError as exc:
        raise simctl.ConfigError(f"{what} needs simctl's {name!r} launcher, which is not installed here: "
                                 f"{exc}") from None
    return cls


def _fmt_walltime(hours: int, minutes: int, seconds: int) -> str:
    """``HH:MM:SS``, carried over (``minutes=90`` is ``01:30:00``)."""
    return simctl.format_hms(_dt.timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds)))


class _SmartSimMethods:
    """The run settings methods SmartSim has and simctl names otherwise."""

    __slots__ = ()

    def set_time(self: Any, hours: int = 0, minutes: int = 0, seconds: int = 0) -> None:
        """The walltime from hours, minutes and seconds (SmartSim's ``set_time``)."""
        self.set_walltime(_fmt_walltime(hours, minutes, seconds))

    def set_binding(self: Any, binding: str) -> None:
        self.set("bind-to", binding)

    def format_env_vars(self: Any) -> list[str]:
        """``NAME=value`` for each of ``env_vars`` (``NAME=`` for None), as SmartSim formats them."""
        return [f"{k}=" if v is None else f"{k}={v}" for k, v in self.env_vars.items()]


_WITH_METHODS: dict[type, type] = {}


def with_smartsim_methods(rs: simctl.RunSettings) -> simctl.RunSettings:
    """``rs`` (a launcher's run settings) with SmartSim's extra methods
    (``set_time``, ``format_env_vars``...): its class gets a subclass that adds
    only those, made once per launcher class."""
    cls = type(rs)
    if not isinstance(rs, _SmartSimMethods):
        if cls not in _WITH_METHODS:
            _WITH_METHODS[cls] = type(cls.__name__, (_SmartSimMethods, cls),
                                      {"__slots__": (), "__module__": cls.__module__, "__doc__": cls.__doc__})
        rs.__class__ = _WITH_METHODS[cls]
    return rs


def _raw_args(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"run_args must be a dict of flag -> value, got {type(value).__name__}")
    return dict(value)


@attrs.define(eq=True, init=False)
class RunSettings(_SmartSimMethods, simctl.RunSettings):
    """SmartSim's ``RunSettings(exe, exe_args=None, run_command="", run_args=None,
    env_vars=None)``: ``run_args`` are kept as given and formatted literally
    (``{"-np": 2}`` is ``["-np", "2"]``), as SmartSim's base class does."""

    run_args: dict[str, Any] = attrs.field(factory=dict, converter=_raw_args)

    def __init__(self, exe: str, exe_args: Any = None, run_command: str = "", run_args: Any = None,
                 env_vars: Any = None, container: Any = None, **kwargs: Any) -> None:
        if container is not None:
            raise simctl.ConfigError("container= is not supported by simctl's SmartSim layer yet")
        kwargs = {k: v for k, v in kwargs.items() if k not in _IGNORED}
        self.__attrs_init__(exe=exe, exe_args=exe_args or [], run_command=run_command or None, run_args=run_args,
                            env_vars=env_vars or {}, **kwargs)

    def format_run_args(self) -> list[str]:
        """SmartSim's literal form: each flag as given, then its value."""
        return [x for k, v in self.run_args.items() for x in (k, str(v))]

    def set(self, arg: str, value: Any = None, condition: bool = True) -> None:
        """Set a run argument (``condition`` False: leave it)."""
        if condition:
            self.run_args[arg] = value


@attrs.define(eq=True, init=False)
class _MpiSettings(RunSettings):
    """mpirun-style flags: ``--flag value`` (``--flag`` for None), working
    directory flags dropped, as SmartSim's MPI settings format them."""

    def format_run_args(self) -> list[str]:
        out: list[str] = []
        for opt, value in self.run_args.items():
            if opt not in ("wdir", "wd"):
                out += [f"--{opt}"] if not value else [f"--{opt}", str(value)]
        return out

    def set_tasks(self, tasks: int) -> None:
        self.run_args["n"] = int(tasks)

    def set_tasks_per_node(self, tasks_per_node: int) -> None:
        self.run_args["npernode"] = int(tasks_per_node)

    def set_hostlist(self, host_list: Any) -> None:
        hosts = [host_list] if isinstance(host_list, str) else list(host_list)
        self.run_args["host"] = ",".join(hosts)

    def set_walltime(self, walltime: Any) -> None:
        self.run_args["timeout"] = str(int(simctl.parse_walltime(walltime).total_seconds()))


def _mpi(command: str) -> type[_MpiSettings]:
    def init(self: Any, exe: str, exe_args: Any = None, run_args: Any = None, env_vars: Any = None,
             **kwargs: Any) -> None:
        RunSettings.__init__(self, exe, exe_args, command, run_args, env_vars, **kwargs)

    name = {"mpirun": "MpirunSettings", "mpiexec": "MpiexecSettings", "orterun": "OrterunSettings"}[command]
    cls = type(name, (_MpiSettings,), {"__slots__": (), "__init__": init, "__module__": __name__,
                                       "__doc__": f"SmartSim's ``{name}(exe, exe_args, run_args, env_vars)``: "
                                                  f"``{command}``."})
    return cls


_BaseMPISettings = _MpiSettings
MpirunSettings = _mpi("mpirun")
MpiexecSettings = _mpi("mpiexec")
OrterunSettings = _mpi("orterun")


class _LauncherRun(type):
    """Metaclass of the settings classes that belong to one launcher:
    ``Cls(exe, exe_args, run_args, env_vars)`` builds that launcher's run settings."""

    launcher: str
    command: str | None

    def __call__(cls, exe: str, exe_args: Any = None, run_args: Mapping[str, Any] | None = None,
                 env_vars: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if k not in _IGNORED}
        launcher = _launcher(cls.launcher, cls.__name__)()
        return with_smartsim_methods(launcher.create_run_settings(exe, exe_args, cls.command, run_args, env_vars,
                                                                  **kwargs))

    def __instancecheck__(cls, obj: Any) -> bool:
        return (isinstance(obj, simctl.RunSettings) and obj.run_command == cls.command
                and type(obj).__name__ != "RunSettings")


class _LauncherBatch(type):
    """Metaclass of the batch settings classes: ``Cls(nodes, time, account, batch_args, ...)``."""

    launcher: str

    def __call__(cls, nodes: int | None = None, time: Any = None, account: str | None = None,
                 batch_args: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        queue = kwargs.pop("queue", None)
        launcher = _launcher(cls.launcher, cls.__name__)()
        return launcher.create_batch_settings(nodes, time or None, queue, account, batch_args, **kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _launcher(cls.launcher, cls.__name__).batch_settings_class or ())


class SrunSettings(metaclass=_LauncherRun):
    """SmartSim's ``SrunSettings``: the slurm launcher's run settings, ``srun``."""

    launcher, command = "slurm", "srun"


class JsrunSettings(metaclass=_LauncherRun):
    """SmartSim's ``JsrunSettings``: the lsf launcher's run settings, ``jsrun``."""

    launcher, command = "lsf", "jsrun"


class AprunSettings(metaclass=_LauncherRun):
    """SmartSim's ``AprunSettings``: the pbs launcher's run settings, ``aprun``."""

    launcher, command = "pbs", "aprun"


class PalsMpiexecSettings(metaclass=_LauncherRun):
    """SmartSim's ``PalsMpiexecSettings``: the pbs launcher's run settings, ``mpiexec``."""

    launcher, command = "pbs", "mpiexec"


class SbatchSettings(metaclass=_LauncherBatch):
    """SmartSim's ``SbatchSettings``: the slurm launcher's batch settings."""

    launcher = "slurm"


class QsubBatchSettings(metaclass=_LauncherBatch):
    """SmartSim's ``QsubBatchSettings``: the pbs launcher's batch settings."""

    launcher = "pbs"


class BsubBatchSettings(metaclass=_LauncherBatch):
    """SmartSim's ``BsubBatchSettings``: the lsf launcher's batch settings."""

    launcher = "lsf"


class SgeQsubBatchSettings(metaclass=_LauncherBatch):
    """SmartSim's ``SgeQsubBatchSettings``: needs an ``sge`` launcher (none is built in)."""

    launcher = "sge"


def create_run_settings(launcher: str, exe: str, exe_args: Any = None, run_command: str = "auto",
                        run_args: Mapping[str, Any] | None = None, env_vars: Mapping[str, Any] | None = None,
                        container: Any = None, **kwargs: Any) -> simctl.RunSettings:
    """SmartSim's module-level ``create_run_settings(launcher, exe, ...)``: the
    named launcher's run settings (``launcher="auto"``: the one detected here)."""
    if container is not None:
        raise simctl.ConfigError("container= is not supported by simctl's SmartSim layer yet")
    return with_smartsim_methods(_scratch(launcher).create_run_settings(exe, exe_args, run_command, run_args,
                                                                        env_vars, **kwargs))


def create_batch_settings(launcher: str, nodes: int | None = None, time: Any = "", queue: str | None = None,
                          account: str | None = None, batch_args: Mapping[str, Any] | None = None,
                          **kwargs: Any) -> simctl.BatchSettings:
    """SmartSim's module-level ``create_batch_settings(launcher, ...)``."""
    return _scratch(launcher).create_batch_settings(nodes, time or None, queue, account, batch_args, **kwargs)


def _scratch(launcher: str) -> simctl.Experiment:
    return scratch(launcher)


__all__ = ["AprunSettings", "BatchSettings", "BsubBatchSettings", "JsrunSettings", "MpiexecSettings",
           "MpirunSettings", "OrterunSettings", "PalsMpiexecSettings", "QsubBatchSettings", "RunSettings",
           "SbatchSettings", "SettingsBase", "SgeQsubBatchSettings", "SrunSettings", "create_batch_settings",
           "create_run_settings"]
