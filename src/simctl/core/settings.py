"""Run and batch settings: the launcher-neutral fields every launcher understands.

Launcher plugins subclass :class:`RunSettings` and :class:`BatchSettings` to add
their own setters and to turn the settings into their command-line flags.
Anything a launcher does not model goes through ``run_args`` / ``batch_args``
unchanged.
"""

from __future__ import annotations

import datetime as _dt
import re
import shlex
from typing import Any, ClassVar, Mapping, Sequence

import attrs

from .errors import ConfigError

ArgValue = str | int | float | None

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")


def parse_walltime(value: str | int | float | _dt.timedelta) -> _dt.timedelta:
    """Read a walltime the way Slurm does: ``HH:MM:SS``, ``MM:SS``, whole
    minutes (an int or a digit string), ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``,
    or a :class:`datetime.timedelta`."""
    if isinstance(value, _dt.timedelta):
        td = value
    elif isinstance(value, bool):
        raise ConfigError(f"walltime {value!r} is not a duration")
    elif isinstance(value, (int, float)):
        try:
            td = _dt.timedelta(minutes=value)
        except (ValueError, OverflowError):  # nan, inf, too large
            raise ConfigError(f"walltime {value!r} is not a usable number of minutes") from None
    elif isinstance(value, str):
        m = _WALLTIME.match(value.strip())
        if not m:
            raise ConfigError(
                f"malformed walltime {value!r}: expected 'HH:MM:SS', 'MM:SS', 'D-HH:MM:SS', "
                "a number of minutes, or a datetime.timedelta"
            )
        days, a, b, c = m.groups()
        if b is None and days is not None:  # D-HH, as Slurm reads it
            td = _dt.timedelta(days=int(days), hours=int(a))
        elif b is None:  # plain minutes
            td = _dt.timedelta(minutes=int(a))
        elif c is None and days is not None:  # D-HH:MM
            td = _dt.timedelta(days=int(days), hours=int(a), minutes=int(b))
        elif c is None:  # MM:SS, as Slurm and PBS read two fields
            td = _dt.timedelta(minutes=int(a), seconds=int(b))
        else:
            td = _dt.timedelta(days=int(days or 0), hours=int(a), minutes=int(b), seconds=int(c))
        if (b is not None and int(b) >= 60) or (c is not None and int(c) >= 60):
            raise ConfigError(f"malformed walltime {value!r}: minutes and seconds must be below 60")
    else:
        raise ConfigError(f"walltime {value!r} has type {type(value).__name__}; expected str, int or timedelta")
    if td.total_seconds() <= 0:
        raise ConfigError(f"walltime {value!r} must be positive")
    return td


def format_hms(td: _dt.timedelta) -> str:
    """``HH:MM:SS`` with hours past 24 kept as hours (PBS, Slurm both accept it)."""
    total = int(td.total_seconds())
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _args(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def _walltime_converter(value: Any) -> str | None:
    return None if value is None else format_hms(parse_walltime(value))


@attrs.define(eq=True)
class RunSettings:
    """How to run one executable: what, with which arguments, where and how wide.

    ``run_command`` is the launcher's command (``srun``, ``mpirun``...) or None
    to run the executable directly. Launcher-specific flags go in ``run_args``
    (``{"exclusive": None, "distribution": "block"}``), spelled as the run
    command spells them without the dashes.
    """

    #: launcher plugins narrow this to the commands they support
    supported_run_commands: ClassVar[tuple[str, ...]] = ()

    exe: str
    exe_args: list[str] = attrs.field(factory=list, converter=_args)
    run_command: str | None = None
    run_args: dict[str, ArgValue] = attrs.field(factory=dict, converter=dict)
    env_vars: dict[str, str | None] = attrs.field(factory=dict, converter=dict)
    nodes: int | None = None
    tasks: int | None = None
    tasks_per_node: int | None = None
    cpus_per_task: int | None = None
    walltime: str | None = attrs.field(default=None, converter=_walltime_converter)
    hostlist: list[str] = attrs.field(factory=list)

    def set_nodes(self, nodes: int) -> None:
        """Number of nodes to run on."""
        self.nodes = _positive("nodes", nodes)

    def set_tasks(self, tasks: int) -> None:
        """Total number of tasks (processes)."""
        self.tasks = _positive("tasks", tasks)

    def set_tasks_per_node(self, tasks_per_node: int) -> None:
        """Tasks on each node."""
        self.tasks_per_node = _positive("tasks_per_node", tasks_per_node)

    def set_cpus_per_task(self, cpus: int) -> None:
        """CPUs given to each task."""
        self.cpus_per_task = _positive("cpus_per_task", cpus)

    def set_walltime(self, walltime: str | int | _dt.timedelta) -> None:
        """Time limit: ``HH:MM:SS``, minutes, or a timedelta."""
        self.walltime = _walltime_converter(walltime)

    def set_hostlist(self, hosts: str | Sequence[str]) -> None:
        """Hosts to run on (a comma-separated string or a list)."""
        self.hostlist = hosts.split(",") if isinstance(hosts, str) else list(hosts)

    def add_exe_args(self, args: str | Sequence[str]) -> None:
        """Append arguments for the executable."""
        self.exe_args.extend(_args(args))

    def update_env(self, env: Mapping[str, str | None]) -> None:
        """Add environment variables for the process (None unsets one)."""
        self.env_vars.update(env)

    def set(self, arg: str, value: ArgValue = None) -> None:
        """Set a launcher flag this class has no setter for."""
        self.run_args[arg] = value

    def format_run_args(self) -> list[str]:
        """The run command's flags. Plugins override this for their run command."""
        return format_flags(self.run_args)


@attrs.define(eq=True)
class BatchSettings:
    """How to submit a batch job: size, time, queue, account and extra flags."""

    nodes: int | None = None
    time: str | None = attrs.field(default=None, converter=_walltime_converter)
    queue: str | None = None
    account: str | None = None
    batch_args: dict[str, ArgValue] = attrs.field(factory=dict, converter=lambda v: dict(v or {}))
    hostlist: list[str] = attrs.field(factory=list)
    #: lines run in the batch script before the members start
    preamble: list[str] = attrs.field(factory=list)
    #: run members as a job array instead of steps of one job
    array: bool = False

    def set_nodes(self, nodes: int) -> None:
        """Number of nodes for the allocation."""
        self.nodes = _positive("nodes", nodes)

    def set_walltime(self, walltime: str | int | _dt.timedelta) -> None:
        """Time limit: ``HH:MM:SS``, minutes, or a timedelta."""
        self.time = _walltime_converter(walltime)

    def set_queue(self, queue: str) -> None:
        """Queue (PBS, LSF) or partition (Slurm) to submit to."""
        self.queue = queue

    def set_partition(self, partition: str) -> None:
        """Alias of :meth:`set_queue`, in Slurm's words."""
        self.queue = partition

    def set_account(self, account: str) -> None:
        """Account to charge."""
        self.account = account

    def set_hostlist(self, hosts: str | Sequence[str]) -> None:
        """Hosts the job may use."""
        self.hostlist = hosts.split(",") if isinstance(hosts, str) else list(hosts)

    def add_preamble(self, lines: str | Sequence[str]) -> None:
        """Shell lines to run in the batch script before the members."""
        self.preamble.extend([lines] if isinstance(lines, str) else lines)

    def set(self, arg: str, value: ArgValue = None) -> None:
        """Set a scheduler flag this class has no setter for."""
        self.batch_args[arg] = value


def format_flags(args: Mapping[str, ArgValue], long_eq: bool = True) -> list[str]:
    """``{"n": 4, "exclusive": None, "distribution": "block"}`` ->
    ``["-n", "4", "--exclusive", "--distribution=block"]``."""
    out: list[str] = []
    for key, value in args.items():
        key = key.lstrip("-")
        if len(key) == 1:
            out += [f"-{key}"] if value is None else [f"-{key}", str(value)]
        elif value is None:
            out.append(f"--{key}")
        elif long_eq:
            out.append(f"--{key}={value}")
        else:
            out += [f"--{key}", str(value)]
    return out
