"""``smartsim.settings``: run and batch settings by SmartSim's names.

A settings class whose launcher is installed builds that launcher's own
settings (``SrunSettings`` is the slurm launcher's, with ``srun``); one whose
launcher is not installed is an error naming it. ``RunSettings`` and the MPI
classes (``mpirun``, ``mpiexec``, ``orterun``) are launcher-free, as in SmartSim.
"""

from __future__ import annotations

import datetime as _dt
import shutil
import weakref
from collections.abc import Mapping
from typing import Any

import attrs

import simctl
from simctl.log import get_logger

from . import _setters
from ._adapt import recast, scratch

logger = get_logger("smartsim.settings")
#: SmartSim's RunSettings arguments with no simctl counterpart: accepted, not used
#: (fail_if_missing_exec: simctl checks the executable where it runs, at start)
_IGNORED = ("fail_if_missing_exec", "alloc")

SettingsBase = BatchSettings = simctl.BatchSettings
#: ``smartsim.settings.containers``: simctl's containers (SmartSim's ``Singularity``; also ``Apptainer``, ``Podman``)
Container, Singularity, Apptainer, Podman = simctl.Container, simctl.Singularity, simctl.Apptainer, simctl.Podman


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


def _str_args(value: Any) -> Any:
    """``exe_args`` as SmartSim takes them: a str or a list of str (simctl also
    takes numbers and paths; SmartSim refuses them with a TypeError)."""
    if value and not isinstance(value, str) and not (
            isinstance(value, list) and all(isinstance(a, str) for a in value)):
        raise simctl.ConfigTypeError(f"exe_args must be a str or a list of str (SmartSim's rule); got "
                                     f"{value!r:.80} ({type(value).__name__})")
    return value


class _SmartSimMethods:
    """The run settings methods SmartSim has and simctl names otherwise; the
    per-run-command setters come from :mod:`._setters` (``_family``)."""

    __slots__ = ()
    #: which of SmartSim's settings classes these are (:data:`._setters.FAMILY`); None: SmartSim's base class
    _family: str | None = None

    def set_time(self: Any, hours: int = 0, minutes: int = 0, seconds: int = 0) -> None:
        """The walltime from hours, minutes and seconds (SmartSim's ``set_time``;
        MPI's and aprun's limits are in seconds)."""
        if self._family in ("mpi", "aprun"):
            self.set_walltime(str(int(hours) * 3600 + int(minutes) * 60 + int(seconds)))
        else:
            self.set_walltime(_fmt_walltime(hours, minutes, seconds))

    def add_exe_args(self: Any, args: Any) -> None:
        """simctl's ``add_exe_args``, taking str only, as SmartSim's."""
        simctl.RunSettings.add_exe_args(self, _str_args(args))

    def update_env(self: Any, env_vars: Any) -> None:
        """simctl's ``update_env`` without its None ("unset"), which SmartSim refuses."""
        unset = [k for k, v in dict(env_vars).items() if v is None]
        if unset:
            raise simctl.ConfigTypeError(f"env_vars[{unset[0]!r}] is None: SmartSim's update_env takes str, int, "
                                         "float or bool values")
        simctl.RunSettings.update_env(self, env_vars)

    def format_run_args(self: Any) -> list[str]:
        """``run_args`` as SmartSim formats them for this run command."""
        return _setters.format_run_args(self._family, self.run_args)

    def format_env_vars(self: Any) -> list[str]:
        """``env_vars`` as SmartSim formats them for this run command."""
        return _setters.format_env_vars(self._family, self.env_vars)

    def make_mpmd(self: Any, settings: simctl.RunSettings) -> None:
        """simctl's ``make_mpmd``; refused for settings of a colocated store, as in SmartSim."""
        if self.colocated_db_settings:
            raise simctl.ConfigError("Colocated models cannot be run as a mpmd workload")
        simctl.RunSettings.make_mpmd(self, settings)

    def set(self: Any, arg: str, value: Any = None, condition: bool = True) -> None:
        """Set a run argument, its name stripped of spaces and leading dashes, its
        value a str or None (a flag), as SmartSim's ``set`` (``condition`` False, or a
        flag simctl sets itself such as the working directory: leave it, with a warning)."""
        if not isinstance(arg, str):
            raise TypeError(f"the argument name must be a str, got {arg!r:.80}")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"the value of run argument {arg!r} must be a str or None (a flag), "
                            f"got {value!r:.80} ({type(value).__name__})")
        arg = arg.strip().lstrip("-")
        if not condition:
            return
        if arg in (*self.reserved_run_args, *_setters.RESTRICTED.get(self._family or "", ())):
            logger.warning(f"Can not set reserved argument {arg!r}: simctl sets it itself")
            return
        self.run_args[arg] = value


_WITH_METHODS: dict[tuple[type, str | None], type] = {}


def _smartsim_class(cls: type[simctl.RunSettings], family: str | None) -> Any:
    """``cls`` (a launcher's run settings class) with SmartSim's methods for
    ``family`` and a ``colocated_db_settings`` slot; made once per pair. It
    launches with ``cls``'s own flags (``launch_args``)."""
    key = (cls, family)
    if key not in _WITH_METHODS:
        new: Any = attrs.make_class(cls.__name__, {"colocated_db_settings": attrs.field(default=None, eq=False)},
                               bases=(_SmartSimMethods, cls), eq=True)
        new.__module__, new.__doc__, new._family = cls.__module__, cls.__doc__, family
        new.launch_args = cls.format_run_args
        for name, setter in _setters.SETTERS.get(family or "", {}).items():
            setattr(new, name, setter)
        _WITH_METHODS[key] = new
    return _WITH_METHODS[key]


def with_smartsim_methods(rs: simctl.RunSettings, family: str | None = "") -> simctl.RunSettings:
    """``rs`` (a launcher's run settings) as an object of :func:`_smartsim_class`
    (``family`` "" : the one of its run command); the same fields, not checked again."""
    if isinstance(rs, _SmartSimMethods):
        return rs
    cls = _smartsim_class(type(rs), _setters.FAMILY.get(rs.run_command or "") if family == "" else family)
    new = cls.__new__(cls)
    for field in attrs.fields(type(rs)):
        object.__setattr__(new, field.name, getattr(rs, field.name))
    object.__setattr__(new, "colocated_db_settings", None)
    return new


def _raw_args(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"run_args must be a dict of flag -> value, got {type(value).__name__}")
    return dict(value)


@attrs.define(eq=True, init=False)
class RunSettings(_SmartSimMethods, simctl.RunSettings):
    """SmartSim's ``RunSettings(exe, exe_args=None, run_command="", run_args=None,
    env_vars=None, container=None)``: ``run_args`` are kept as given and formatted literally
    (``{"-np": 2}`` is ``["-np", "2"]``), as SmartSim's base class does."""

    run_args: dict[str, Any] = attrs.field(factory=dict, converter=_raw_args)
    #: SmartSim's colocated store settings of a model (set by ``Model.colocate_db_*``)
    colocated_db_settings: dict[str, Any] | None = attrs.field(default=None, eq=False)

    def __init__(self, exe: str, exe_args: Any = None, run_command: str = "", run_args: Any = None,
                 env_vars: Any = None, container: Any = None, **kwargs: Any) -> None:
        kwargs = {k: v for k, v in kwargs.items() if k not in _IGNORED}
        self.__attrs_init__(exe=exe, exe_args=_str_args(exe_args) or [], run_command=run_command or None,
                            run_args=run_args, env_vars=env_vars or {}, container=container, **kwargs)


#: SmartSim's base class has every setter, each only warning that it is not implemented
for _name in sorted({n for table in _setters.SETTERS.values() for n in table}
                    | {"set_walltime", "set_binding", "set_mpmd_preamble", "make_mpmd"}):
    setattr(RunSettings, _name, _setters.unimplemented(_name))


@attrs.define(eq=True, init=False)
class _MpiSettings(RunSettings):
    """SmartSim's MPI settings (``mpirun``, ``mpiexec``, ``orterun``): ``--flag value``,
    the working directory flags left out; launcher-free, as in SmartSim."""

    _family = "mpi"

    def __init__(self, exe: str, exe_args: Any = None, run_command: str = "mpiexec", run_args: Any = None,
                 env_vars: Any = None, **kwargs: Any) -> None:
        RunSettings.__init__(self, exe, exe_args, run_command, run_args, env_vars, **kwargs)


for _name, _setter in {**_setters.SETTERS["mpi"], "make_mpmd": _SmartSimMethods.make_mpmd}.items():
    setattr(_MpiSettings, _name, _setter)


class _MpiClass(type):
    """Metaclass of ``MpirunSettings``...: a launcher's run settings for that MPI command are instances too
    (SmartSim's ``create_run_settings(launcher, ..., run_command="mpirun")`` returns an ``MpirunSettings``)."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return type.__instancecheck__(cls, obj) or (
            isinstance(obj, _SmartSimMethods) and isinstance(obj, simctl.RunSettings) and obj._family == "mpi"
            and (obj.run_command or "-") in cls.__name__.lower())


def _mpi(command: str) -> type[_MpiSettings]:
    def init(self: Any, exe: str, exe_args: Any = None, run_args: Any = None, env_vars: Any = None,
             **kwargs: Any) -> None:
        if shutil.which(command) is None:
            raise simctl.LaunchError(f"Cannot find {command}. Try passing the full path via run_command.")
        if command == "mpiexec" and "slurm" in simctl.make_plugins().names("launcher"):
            _launcher("slurm", name)().resolve_run_command(command)  # refuses Slurm's wrapper, as SmartSim
        RunSettings.__init__(self, exe, exe_args, command, run_args, env_vars, **kwargs)

    name = {"mpirun": "MpirunSettings", "mpiexec": "MpiexecSettings", "orterun": "OrterunSettings"}[command]
    cls: Any = _MpiClass(name, (_MpiSettings,), {"__slots__": (), "__init__": init, "__module__": __name__,
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
    #: SmartSim's settings family (:data:`._setters.SETTERS`), "" for the run command's
    family: str = ""

    def __call__(cls, exe: str, exe_args: Any = None, run_args: Mapping[str, Any] | None = None,
                 env_vars: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        kwargs = {k: v for k, v in kwargs.items() if k not in _IGNORED}
        launcher = _launcher(cls.launcher, cls.__name__)()
        return with_smartsim_methods(launcher.create_run_settings(exe, exe_args, cls.command, run_args, env_vars,
                                                                  **kwargs), cls.family)

    def __instancecheck__(cls, obj: Any) -> bool:
        return (isinstance(obj, simctl.RunSettings) and obj.run_command == cls.command
                and type(obj).__name__ != "RunSettings")


class _SmartSimBatch:
    """SmartSim's batch settings methods (``format_batch_args``)."""

    __slots__ = ()

    def format_batch_args(self: Any) -> list[str]:
        """The scheduler's flags as SmartSim shows them (in a fixed order, where SmartSim
        keeps the order they were set in): qsub's ``-l nodes=N:ncpus=C`` (or ``select=``),
        the other ``-l`` resources, ``-l walltime=``, ``batch_args``, ``-q``, ``-A``; bsub's
        ``batch_args`` (``alloc_flags`` with ``smt<smts>``), ``-nnodes``, ``-m``, ``-n``, ``-q``;
        sbatch's ``batch_args``, then nodes, account, time, partition (``--flag=value``)."""
        if isinstance(self, QsubBatchSettings):
            return _setters.qsub_args(self)
        if isinstance(self, BsubBatchSettings):
            return _setters.bsub_args(self)
        args = {**self.batch_args}
        fields = {"nodes": self.nodes, "partition": self.queue, "time": self.time, "account": self.account}
        later = _SET_LATER.get(id(self), [])
        for key in [k for k in fields if k not in later] + later:
            if fields[key] is not None:
                args[key] = fields[key]
        return _setters.format_run_args("srun", args)

    def _set_later(self: Any, key: str, setter: str, value: Any) -> None:
        """``setter(value)``; a field that was unset is shown after the others (SmartSim keeps
        its flags in the order they were set; the constructor's first)."""
        was = getattr(self, "queue" if key == "partition" else key)
        getattr(super(), setter)(value)
        if was is None and id(self) not in _SET_LATER:
            _SET_LATER[id(self)] = []
            weakref.finalize(self, _SET_LATER.pop, id(self), None)
        if was is None and key not in _SET_LATER[id(self)]:
            _SET_LATER[id(self)].append(key)

    def set_nodes(self: Any, nodes: int) -> None:
        """The base's, remembering the order (see :meth:`format_batch_args`)."""
        self._set_later("nodes", "set_nodes", nodes)

    def set_account(self: Any, account: str) -> None:
        """The base's, remembering the order (see :meth:`format_batch_args`)."""
        self._set_later("account", "set_account", account)

    def set_walltime(self: Any, walltime: Any) -> None:
        """The base's, remembering the order (see :meth:`format_batch_args`)."""
        self._set_later("time", "set_walltime", walltime)

    def set_queue(self: Any, queue: str) -> None:
        """The base's, remembering the order (see :meth:`format_batch_args`)."""
        self._set_later("partition", "set_queue", queue)

    set_partition = set_queue

    def __str__(self: Any) -> str:
        """As SmartSim shows batch settings: ``Batch Command: <cmd>``, then
        ``Batch arguments:`` one ``key = value`` a line (the node count under the
        scheduler's name for it, LSF's ``nnodes``)."""
        launcher = next((c.launcher for c in (SbatchSettings, QsubBatchSettings, BsubBatchSettings)
                         if isinstance(self, c)), None)
        command, nodes = _SHOWN.get(launcher, (type(self).__name__, "nodes"))
        fields = {nodes: self.nodes, "time": self.time, "queue": self.queue, "account": self.account}
        args = {**self.batch_args, **{k: v for k, v in fields.items() if v is not None}}
        shown = "\n".join(f"\t{k} = {v}" for k, v in args.items())
        return f"Batch Command: {command}" + (f"\nBatch arguments:\n{shown}" if shown else "")


#: each scheduler's batch command and SmartSim's name of its node count
_SHOWN: dict[str | None, tuple[str, str]] = {"slurm": ("sbatch", "nodes"), "pbs": ("qsub", "nodes"),
                                              "lsf": ("bsub", "nnodes")}


_BATCH: dict[type, type] = {}
#: id of batch settings -> the fields set after construction, in order (cleared when they are freed)
_SET_LATER: dict[int, list[str]] = {}


def with_batch_methods(bs: simctl.BatchSettings) -> simctl.BatchSettings:
    """``bs`` with :class:`_SmartSimBatch`'s methods (a subclass adding no state)."""
    cls = type(bs)
    if cls not in _BATCH:
        _BATCH[cls] = type(cls.__name__, (_SmartSimBatch, cls), {"__slots__": (), "__module__": cls.__module__,
                                                                 "__doc__": cls.__doc__})
    return recast(bs, _BATCH[cls])


class _LauncherBatch(type):
    """Metaclass of the batch settings classes: ``Cls(nodes, time, account, batch_args, ...)``."""

    launcher: str

    def __call__(cls, nodes: int | None = None, time: Any = None, account: str | None = None,
                 batch_args: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        queue = kwargs.pop("queue", None)
        launcher = _launcher(cls.launcher, cls.__name__)()
        return with_batch_methods(launcher.create_batch_settings(nodes, time or None, queue, account, batch_args,
                                                                 **kwargs))

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
    """SmartSim's ``PalsMpiexecSettings``: the pals launcher's run settings, PALS' ``mpiexec``."""

    launcher, command, family = "pals", "mpiexec", "pals"


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
    exp = _scratch(launcher)
    rs = exp.create_run_settings(exe, exe_args, run_command, run_args, env_vars, container=container, **kwargs)
    return with_smartsim_methods(rs, "pals" if exp.launcher_name == "pals" else "")


def create_batch_settings(launcher: str, nodes: int | None = None, time: Any = "", queue: str | None = None,
                          account: str | None = None, batch_args: Mapping[str, Any] | None = None,
                          **kwargs: Any) -> simctl.BatchSettings:
    """SmartSim's module-level ``create_batch_settings(launcher, ...)``."""
    return with_batch_methods(_scratch(launcher).create_batch_settings(nodes, time or None, queue, account,
                                                                       batch_args, **kwargs))


def _scratch(launcher: str) -> simctl.Experiment:
    return scratch(launcher)


__all__ = ["Apptainer", "Container", "Podman", "Singularity",
           "AprunSettings", "BatchSettings", "BsubBatchSettings", "JsrunSettings", "MpiexecSettings",
           "MpirunSettings", "OrterunSettings", "PalsMpiexecSettings", "QsubBatchSettings", "RunSettings",
           "SbatchSettings", "SettingsBase", "SgeQsubBatchSettings", "SrunSettings", "create_batch_settings",
           "create_run_settings"]
