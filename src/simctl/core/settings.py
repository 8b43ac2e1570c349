"""Run and batch settings: the launcher-neutral fields every launcher understands.

Launcher plugins subclass :class:`RunSettings` and :class:`BatchSettings` to add
their own setters and to turn the settings into their command-line flags.
Anything a launcher does not model goes through ``run_args`` / ``batch_args``
unchanged, except that a flag's leading dashes are dropped (``--nodes`` and
``nodes`` are one flag).

Every field is checked when the settings are made, when a setter is called and
when a field is assigned: bad input is a :class:`~simctl.ConfigError` naming
the argument, before anything is written or launched.
"""

from __future__ import annotations

import datetime as _dt
import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import attrs

from . import bulk, checks
from .containers import Container
from .errors import ConfigError, choices
from .hosts import expand as expand_hosts

ArgValue = checks.FlagValue

_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d{1,2}))?(?::(\d{1,2}))?$")


def parse_walltime(value: str | int | float | _dt.timedelta) -> _dt.timedelta:
    """Read a walltime the way Slurm does: ``HH:MM:SS``, ``MM:SS``, whole
    minutes (an int or a digit string), ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``,
    or a :class:`datetime.timedelta`; a number may have a fraction of a minute.

    The result is exact (it may hold a fraction of a second); the settings
    store it through :func:`format_hms`, which rounds a fraction of a second
    UP (0.2 s is stored as ``00:00:01``, never as ``00:00:00``, which Slurm
    reads as no limit). Zero, negative, NaN, infinite and values too large for
    a :class:`datetime.timedelta` are refused."""
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
        td = _parse_walltime_text(value)
    else:
        raise ConfigError(f"walltime {checks.show(value)} has the wrong type; expected str, int, float "
                          "(minutes) or datetime.timedelta")
    if td <= _dt.timedelta(0):
        raise ConfigError(f"walltime {value!r} must be positive")
    return td


def _parse_walltime_text(value: str) -> _dt.timedelta:
    m = _WALLTIME.match(value.strip())
    if not m:
        raise ConfigError(
            f"malformed walltime {value!r}: expected 'HH:MM:SS', 'MM:SS', 'D-HH:MM:SS', "
            "a number of minutes, or a datetime.timedelta"
        )
    days, a, b, c = m.groups()
    if (b is not None and int(b) >= 60) or (c is not None and int(c) >= 60):
        raise ConfigError(f"malformed walltime {value!r}: minutes and seconds must be below 60")
    try:
        if b is None and days is not None:  # D-HH, as Slurm reads it
            return _dt.timedelta(days=int(days), hours=int(a))
        if b is None:  # plain minutes
            return _dt.timedelta(minutes=int(a))
        if c is None and days is not None:  # D-HH:MM
            return _dt.timedelta(days=int(days), hours=int(a), minutes=int(b))
        if c is None:  # MM:SS, as Slurm and PBS read two fields
            return _dt.timedelta(minutes=int(a), seconds=int(b))
        return _dt.timedelta(days=int(days or 0), hours=int(a), minutes=int(b), seconds=int(c))
    except (ValueError, OverflowError):  # more days than a timedelta holds, or thousands of digits
        raise ConfigError(f"walltime {checks.show(value)} is too large") from None


def format_hms(td: _dt.timedelta) -> str:
    """``HH:MM:SS`` with hours past 24 kept as hours (PBS, Slurm both accept it).
    A fraction of a second is rounded UP to the next whole second, so a
    positive walltime never becomes ``00:00:00`` (no limit to Slurm):
    0.2 s gives ``00:00:01``."""
    if not isinstance(td, _dt.timedelta):
        raise ConfigError(f"format_hms takes a datetime.timedelta (parse_walltime makes one); got {checks.show(td)}")
    micro = td // _dt.timedelta(microseconds=1)
    total = -(-micro // 1_000_000)  # whole seconds, rounded up
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _walltime_converter(value: Any) -> str | None:
    return None if value is None else format_hms(parse_walltime(value))


def _exe_args(value: Any) -> list[str]:
    return checks.string_list("exe_args", value, split=shlex.split, allow_none=True)


def _container(value: Any) -> Container | None:
    if value is not None and not isinstance(value, Container):
        raise ConfigError(f"container {checks.show(value)} must be a container (simctl.Singularity, "
                          "simctl.Apptainer, simctl.Podman) or None")
    return value


def _mpmd(value: Any) -> list[RunSettings]:
    items = list(value or ())
    for item in items:
        if not isinstance(item, RunSettings):
            raise ConfigError(f"mpmd holds run settings (see make_mpmd); got {checks.show(item)}")
    return items


def _hostlist(value: Any) -> list[str]:
    """Host names from ``"n1,n2"``, ``"nid[001-003,005]"`` or a list of such
    (expanded by ClusterShell: :func:`simctl.core.hosts.expand`)."""
    return expand_hosts("hostlist", value)


# The converters are named, annotated functions (not lambdas, not made by a
# call): mypy's attrs plugin types the generated __init__ from them.
def _exe(value: Any) -> str:
    return checks.string("exe", value, path=True)


def _run_command(value: Any) -> str | None:
    return checks.string("run_command", value, allow_none=True)


def _env_vars(value: Any) -> dict[str, str | None]:
    return checks.env_mapping("env_vars", value)


def _nodes(value: Any) -> int | None:
    return checks.positive_int("nodes", value, allow_none=True)


def _tasks(value: Any) -> int | None:
    return checks.positive_int("tasks", value, allow_none=True)


def _tasks_per_node(value: Any) -> int | None:
    return checks.positive_int("tasks_per_node", value, allow_none=True)


def _cpus_per_task(value: Any) -> int | None:
    return checks.positive_int("cpus_per_task", value, allow_none=True)


def _queue(value: Any) -> str | None:
    return checks.string("queue", value, allow_none=True)


def _account(value: Any) -> str | None:
    return checks.string("account", value, allow_none=True)


def _array(value: Any) -> bool:
    return checks.boolean("array", value)


def _preamble(lines: Any) -> list[str]:
    return checks.string_list("preamble", lines, items=(str,), allow_none=True)


def _reserved_check(settings: Any, arg_name: str, args: Iterable[str], reserved: tuple[str, ...]) -> None:
    taken = [k for k in args if k.lstrip("-") in reserved]
    if taken:
        raise ConfigError(
            f"{arg_name} {taken[0]!r} cannot be given to {type(settings).__name__}: simctl sets the working "
            f"directory itself (each member runs in its own directory), and the launcher owns "
            f"{', '.join(map(repr, reserved))}; leave {taken[0]!r} out")


def _with_flag(args: Mapping[str, ArgValue], key: str, value: Any) -> dict[str, ArgValue]:
    """A copy of ``args`` with flag ``key`` set to ``value``: in its place if
    given before (under any spelling), else last. The settings check it
    (and refuse reserved keys) when it is assigned."""
    out = {(key if k.lstrip("-") == key.lstrip("-") else k): v for k, v in args.items()}
    out[key] = value
    return out


# attrs.Converter(takes_self=True) converters: attrs' stubs type the instance
# passed as AttrsInstance (python-attrs/attrs#1378), so it is narrowed here
def _run_args(value: Any, self: attrs.AttrsInstance) -> dict[str, ArgValue]:
    assert isinstance(self, RunSettings)
    args = checks.flag_mapping("run_args", value,
                               keep_single_dash=self.run_command in self.single_dash_run_commands)
    _reserved_check(self, "run_args", args, self.reserved_run_args)
    return args


def _batch_args(value: Any, self: attrs.AttrsInstance) -> dict[str, ArgValue]:
    assert isinstance(self, BatchSettings)
    args = checks.flag_mapping("batch_args", value)
    _reserved_check(self, "batch_args", args, self.reserved_batch_args)
    return args


@attrs.define(eq=True)
class RunSettings:
    """How to run one executable: what, with which arguments, where and how wide.

    ``run_command`` is the launcher's command (``srun``, ``mpirun``...) or None
    to run the executable directly. Launcher-specific flags go in ``run_args``
    (``{"exclusive": None, "distribution": "block"}``), spelled as the run
    command spells them; leading dashes are dropped (``"--nodes"`` is stored as
    ``"nodes"``) except one on a multi-letter flag of a command in
    :attr:`single_dash_run_commands` (aprun's ``-cc``).

    ``exe_args`` is a string (split like a shell does) or a finite iterable of
    str, int, float or paths (an iterator is consumed). ``env_vars`` maps names
    to str, int, float or path values (None unsets the variable).
    """

    #: launcher plugins narrow this to the commands they support
    supported_run_commands: ClassVar[tuple[str, ...]] = ()
    #: run_args keys the launcher sets itself (e.g. Slurm ``("chdir", "D")``,
    #: LSF ``("chdir", "h")``): refused, without dashes, by the constructor and :meth:`set`
    reserved_run_args: ClassVar[tuple[str, ...]] = ()
    #: per run command, the flags that size and place a launch (tasks, nodes, hosts, working directory,
    #: output files): what simctl sets itself where it places the steps (a store's shards), so
    #: ``Orchestrator.set_run_arg`` refuses them. Launcher plugins fill it in.
    placement_run_args: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: run commands whose multi-letter flags take one dash: a run_args key given
    #: as ``"-cc"`` keeps its dash for them instead of becoming ``--cc``
    single_dash_run_commands: ClassVar[tuple[str, ...]] = ("aprun",)

    exe: str = attrs.field(converter=_exe)
    exe_args: list[str] = attrs.field(factory=list, converter=_exe_args)
    run_command: str | None = attrs.field(default=None, converter=_run_command)
    # mypy's attrs plugin does not read attrs.Converter (python/mypy#15736); __init__ takes Any here
    run_args: dict[str, ArgValue] = attrs.field(
        factory=dict, converter=attrs.Converter(_run_args, takes_self=True))  # type: ignore[misc]
    env_vars: dict[str, str | None] = attrs.field(factory=dict, converter=_env_vars)
    nodes: int | None = attrs.field(default=None, converter=_nodes)
    tasks: int | None = attrs.field(default=None, converter=_tasks)
    tasks_per_node: int | None = attrs.field(default=None, converter=_tasks_per_node)
    cpus_per_task: int | None = attrs.field(default=None, converter=_cpus_per_task)
    walltime: str | None = attrs.field(default=None, converter=_walltime_converter)
    hostlist: list[str] = attrs.field(factory=list, converter=_hostlist)
    #: the image the program runs in (:mod:`simctl.core.containers`), or None
    container: Container | None = attrs.field(default=None, converter=_container)
    #: the other programs of one MPMD launch (:meth:`make_mpmd`)
    mpmd: list[RunSettings] = attrs.field(factory=list, converter=_mpmd)

    #: run commands that start several programs in one launch, separated by ``:``
    #: (MPI's MPMD form; srun's heterogeneous steps; aprun's)
    mpmd_run_commands: ClassVar[tuple[str, ...]] = ("mpirun", "mpiexec", "orterun", "srun", "aprun")

    def make_mpmd(self, other: RunSettings) -> None:
        """Start ``other``'s program in the same launch as this one's (MPMD):
        one command, ``mpirun -n 2 a : -n 1 b`` (or ``srun ... : ...``, a
        heterogeneous step), each program with its own run arguments. Both
        must have the same run command, one of :attr:`mpmd_run_commands`.
        ``other``'s environment variables are set for the whole launch: a
        variable both set to different values is refused."""
        if not isinstance(other, RunSettings):
            raise ConfigError(f"make_mpmd takes run settings; got {checks.show(other)}")
        if self.run_command not in self.mpmd_run_commands:
            raise ConfigError(f"make_mpmd needs a run command that starts several programs at once "
                              f"({choices(self.mpmd_run_commands)}); these settings have run_command="
                              f"{self.run_command!r}")
        if other.run_command != self.run_command or type(other) is not type(self):
            raise ConfigError(f"make_mpmd joins programs of one run command: these settings are "
                              f"{type(self).__name__} with {self.run_command!r}, the other "
                              f"{type(other).__name__} with {other.run_command!r}")
        if other is self or other.mpmd or any(other is o for o in self.mpmd):
            raise ConfigError("make_mpmd: the other settings must be new to this launch and have no MPMD "
                              "programs of their own (call make_mpmd on these settings for each)")
        if self.container is not None or other.container is not None:
            raise ConfigError("make_mpmd: a program in a container cannot be part of an MPMD launch "
                              "(each rank would start its own container)")
        clash = [k for k, v in other.env_vars.items() if k in self.all_env() and self.all_env()[k] != v]
        if clash:
            raise ConfigError(f"make_mpmd: variable {clash[0]!r} is set to {self.all_env()[clash[0]]!r} in "
                              f"this launch and to {other.env_vars[clash[0]]!r} in the other settings; "
                              "the environment is one for the whole launch")
        self.mpmd.append(other)

    def all_env(self) -> dict[str, str | None]:
        """The environment of the launch: ``env_vars`` and those of the MPMD programs."""
        env = dict(self.env_vars)
        for other in self.mpmd:
            env.update(other.env_vars)
        return env

    def launch_args(self) -> list[str]:
        """The run command's flags as launched (default: :meth:`format_run_args`;
        an adapter that shows another format there launches with this)."""
        return self.format_run_args()

    def launch_line(self, argv: list[str]) -> list[str]:
        """The command that starts ``argv`` with these settings: the run
        command, its flags, ``argv``, then each MPMD program after ``:``."""
        if not self.run_command:
            return list(argv)
        line = [self.run_command, *self.launch_args(), *argv]
        for other in self.mpmd:
            line += [":", *other.launch_args(), other.exe, *other.exe_args]
        return line

    def set_nodes(self, nodes: int) -> None:
        """Number of nodes to run on."""
        self.nodes = checks.positive_int("nodes", nodes)

    def set_tasks(self, tasks: int) -> None:
        """Total number of tasks (processes)."""
        self.tasks = checks.positive_int("tasks", tasks)

    def set_tasks_per_node(self, tasks_per_node: int) -> None:
        """Tasks on each node."""
        self.tasks_per_node = checks.positive_int("tasks_per_node", tasks_per_node)

    def set_cpus_per_task(self, cpus: int) -> None:
        """CPUs given to each task."""
        self.cpus_per_task = checks.positive_int("cpus_per_task", cpus)

    def set_walltime(self, walltime: str | int | float | _dt.timedelta | None) -> None:
        """Time limit: ``HH:MM:SS``, minutes, or a timedelta (see
        :func:`parse_walltime`); None removes the limit."""
        self.walltime = _walltime_converter(walltime)

    def set_hostlist(self, hosts: str | Iterable[str]) -> None:
        """Hosts to run on (a comma-separated string or a list of str)."""
        self.hostlist = _hostlist(hosts)

    def copy(self) -> RunSettings:
        """An independent copy (what each ensemble member gets): changing the
        copy's hosts, arguments or environment changes nothing of this one's."""
        # compiled once per class: every field as it is (no converter or validator to run again), its
        # lists and dicts copied; a plain subclass's own attributes shallowly, as copy.copy
        return bulk.copy(self)

    def copies(self, n: int) -> list[RunSettings]:
        """``n`` independent copies, each as :meth:`copy` makes it (an ensemble's members' own)."""
        if type(self).copy is not RunSettings.copy:  # a subclass that copies its own way
            return [self.copy() for _ in range(n)]
        return bulk.copies(self, n)

    def add_exe_args(self, args: str | Iterable[Any]) -> None:
        """Append arguments for the executable (a string split like a shell
        does, or a list of str, int, float or paths)."""
        self.exe_args.extend(checks.string_list("exe_args", args, split=shlex.split))

    def update_env(self, env: Mapping[str, Any]) -> None:
        """Add environment variables for the process (None unsets one)."""
        self.env_vars.update(checks.env_mapping("env_vars", env))

    def set(self, arg: str, value: ArgValue = None) -> None:
        """Set a launcher flag this class has no setter for (``set("exclusive")``,
        ``set("distribution", "block")``); leading dashes are dropped."""
        key = checks.flag_key("run_args", arg,
                              keep_single_dash=self.run_command in self.single_dash_run_commands)
        self.run_args = _with_flag(self.run_args, key, value)

    def format_run_args(self) -> list[str]:
        """The run command's flags. Plugins override this for their run command."""
        return format_flags(self.run_args)


@attrs.define(eq=True)
class BatchSettings:
    """How to submit a batch job: size, time, queue, account and extra flags
    (``batch_args``, leading dashes dropped as for ``run_args``)."""

    #: batch_args keys the launcher sets itself (e.g. Slurm ``("chdir", "D")``):
    #: refused, without dashes, by the constructor and :meth:`set`
    reserved_batch_args: ClassVar[tuple[str, ...]] = ()
    #: the scheduler's flags that size and place the job (nodes, tasks, hosts, name, output files):
    #: what simctl sets itself for a store's batch job, so ``Orchestrator.set_batch_arg`` refuses them
    placement_batch_args: ClassVar[tuple[str, ...]] = ()

    nodes: int | None = attrs.field(default=None, converter=_nodes)
    time: str | None = attrs.field(default=None, converter=_walltime_converter)
    queue: str | None = attrs.field(default=None, converter=_queue)
    account: str | None = attrs.field(default=None, converter=_account)
    # mypy's attrs plugin does not read attrs.Converter (python/mypy#15736); __init__ takes Any here
    batch_args: dict[str, ArgValue] = attrs.field(
        factory=dict, converter=attrs.Converter(_batch_args, takes_self=True))  # type: ignore[misc]
    hostlist: list[str] = attrs.field(factory=list, converter=_hostlist)
    #: lines run in the batch script before the members start
    preamble: list[str] = attrs.field(factory=list, converter=_preamble)
    #: run members as a job array instead of steps of one job
    array: bool = attrs.field(default=False, converter=_array)

    def set_nodes(self, nodes: int) -> None:
        """Number of nodes for the allocation."""
        self.nodes = checks.positive_int("nodes", nodes)

    def set_walltime(self, walltime: str | int | float | _dt.timedelta | None) -> None:
        """Time limit: ``HH:MM:SS``, minutes, or a timedelta (see
        :func:`parse_walltime`); None removes the limit."""
        self.time = _walltime_converter(walltime)

    def set_queue(self, queue: str) -> None:
        """Queue (PBS, LSF) or partition (Slurm) to submit to."""
        self.queue = checks.string("queue", queue)

    def set_partition(self, partition: str) -> None:
        """Alias of :meth:`set_queue`, in Slurm's words."""
        self.queue = checks.string("partition", partition)

    def set_account(self, account: str) -> None:
        """Account to charge."""
        self.account = checks.string("account", account)

    def set_hostlist(self, hosts: str | Iterable[str]) -> None:
        """Hosts the job may use (a comma-separated string or a list of str)."""
        self.hostlist = _hostlist(hosts)

    def add_preamble(self, lines: str | Iterable[str]) -> None:
        """Shell lines to run in the batch script before the members."""
        self.preamble.extend(checks.string_list("preamble", lines, items=(str,)))

    def set(self, arg: str, value: ArgValue = None) -> None:
        """Set a scheduler flag this class has no setter for; leading dashes are dropped."""
        key = checks.flag_key("batch_args", arg)
        self.batch_args = _with_flag(self.batch_args, key, value)


def format_flags(args: Mapping[str, ArgValue], long_eq: bool = True) -> list[str]:
    """``{"n": 4, "exclusive": None, "distribution": "block"}`` ->
    ``["-n", "4", "--exclusive", "--distribution=block"]``."""
    if not isinstance(args, Mapping):
        raise ConfigError(f"format_flags takes a dict of flag name -> value; got {checks.show(args)}")
    out: list[str] = []
    for key, value in args.items():
        if not isinstance(key, str) or not key.strip("-"):
            raise ConfigError(f"format_flags: flag name {checks.show(key)} must be a non-empty string")
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
