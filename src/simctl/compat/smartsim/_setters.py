"""SmartSim's per-run-command setters and formats, as tables over simctl's
settings: SmartSim keeps sizes in ``run_args`` under the run command's own
flag names (``set_tasks(4)`` is ``run_args["ntasks"] = 4`` for srun,
``run_args["n"]`` for mpirun), and simctl's launchers pass ``run_args`` on as
flags, so each setter is one entry: which flag, and how the value is written.
``format_run_args`` / ``format_env_vars`` show them as SmartSim does; the
launch itself is simctl's (``launch_args``: the launcher's own format)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from simctl.log import get_logger

logger = get_logger("smartsim.settings")
Setter = Callable[..., Any]


def _hosts(value: Any, what: str = "host_list") -> str:
    """SmartSim's host lists: a str or a list of str, joined with commas; TypeError otherwise."""
    if isinstance(value, str):
        value = [value.strip()]
    if not isinstance(value, list) or not all(isinstance(h, str) for h in value):
        raise TypeError(f"{what} argument must be a str or a list of str, got {value!r:.80}")
    return ",".join(value)


def _ints(value: int | Iterable[int]) -> str:
    return ",".join(str(int(v)) for v in ([value] if isinstance(value, int) else value))


def _int_or_str(value: Any) -> int | str:
    """jsrun's counts: ``"ALL_HOSTS"``-style words kept, numbers as int."""
    return value if isinstance(value, str) and not value.isdigit() else int(value)


def flag(key: str, conv: Callable[[Any], Any] = str) -> Setter:
    """A setter writing ``run_args[key] = conv(value)``."""
    def setter(self: Any, value: Any = None) -> None:
        self.run_args[key] = conv(value)
    setter.__doc__ = f"Sets ``{key}`` (SmartSim's setter)."
    return setter


def switch(key: str, on: Any = None) -> Setter:
    """A setter taking a bool: True sets flag ``key`` (to ``on``), False removes it."""
    def setter(self: Any, value: bool) -> None:
        if value:
            self.run_args[key] = on
        else:
            self.run_args.pop(key, None)
    setter.__doc__ = f"Sets or removes ``{key}`` (SmartSim's setter)."
    return setter


def unsupported(name: str, where: str) -> Setter:
    def setter(self: Any, *args: Any) -> None:
        logger.warning(f"{name} not supported under {where}")
    setter.__doc__ = f"Not supported under {where}: logs a warning, as SmartSim does."
    return setter


def unimplemented(name: str) -> Setter:
    def setter(self: Any, *args: Any, **kwargs: Any) -> None:
        logger.warning(f"{name} not implemented for {type(self).__name__}: nothing was set")
    setter.__doc__ = "SmartSim's base class does not implement it: logs a warning, as SmartSim does."
    return setter


def alias(other: str) -> Setter:
    def setter(self: Any, value: Any) -> None:
        getattr(self, other)(value)
    setter.__doc__ = f"SmartSim's alias of ``{other}``."
    return setter


def broadcast(key: str) -> Setter:
    def setter(self: Any, dest_path: str | None = None) -> None:
        if isinstance(dest_path, str):
            logger.warning(f"{type(self).__name__} cannot set a destination path during broadcast. "
                           "Using session directory instead")
        self.run_args[key] = None
    setter.__doc__ = f"Sets ``{key}`` (the destination path is not used, as in SmartSim)."
    return setter


def comma_sep_env_vars(self: Any) -> tuple[str, list[str]]:
    """SmartSim's srun form: ``NAME=value`` pairs and the names of variables
    whose value holds a comma, joined for ``--export``; and those (the MPMD
    programs' too) as ``NAME=value`` for ``env`` before srun."""
    plain = [f"{k}={v}" for k, v in self.env_vars.items() if "," not in str(v)]
    compound = [k for k, v in self.env_vars.items() if "," in str(v)]
    pairs = [f"{k}={v}" for r in (self, *self.mpmd) for k, v in r.env_vars.items() if "," in str(v)]
    return ",".join(plain + compound), pairs


_MPI: dict[str, Setter] = {
    "set_task_map": flag("map-by"), "set_cpus_per_task": flag("cpus-per-proc", int),
    "set_cpu_binding_type": flag("bind-to"), "set_tasks_per_node": flag("npernode", int),
    "set_tasks": flag("n", int), "set_hostlist": flag("host", _hosts), "set_hostlist_from_file": flag("hostfile"),
    "set_verbose_launch": switch("verbose"), "set_quiet_launch": switch("quiet"),
    "set_broadcast": broadcast("preload-binary"), "set_walltime": flag("timeout"),
}
#: setter name -> setter, per SmartSim settings family (see :data:`FAMILY`)
SETTERS: dict[str, dict[str, Setter]] = {
    "srun": {
        "set_nodes": flag("nodes", int), "set_tasks": flag("ntasks", int),
        "set_tasks_per_node": flag("ntasks-per-node", int), "set_cpus_per_task": flag("cpus-per-task", int),
        "set_hostlist": flag("nodelist", _hosts), "set_hostlist_from_file": flag("nodefile"),
        "set_excluded_hosts": flag("exclude", _hosts),
        "set_cpu_bindings": flag("cpu_bind", lambda b: "map_cpu:" + _ints(b)),
        "set_memory_per_node": flag("mem", lambda m: f"{int(m)}M"), "set_verbose_launch": switch("verbose"),
        "set_quiet_launch": switch("quiet"), "set_broadcast": flag("bcast", lambda p: p),
        "set_node_feature": flag("C", lambda f: _hosts(f, "node_feature")), "set_walltime": flag("time"),
        "format_comma_sep_env_vars": comma_sep_env_vars,
    },
    "mpi": _MPI,
    "pals": {
        **_MPI, "set_task_map": unsupported("set_task_map", "PALS"),
        "set_cpus_per_task": unsupported("set_cpus_per_task", "PALS"), "set_cpu_binding_type": flag("cpu-bind"),
        "set_tasks": flag("np", int), "set_tasks_per_node": flag("ppn", int),
        "set_quiet_launch": unsupported("set_quiet_launch", "PALS"), "set_broadcast": broadcast("transfer"),
        "set_walltime": unsupported("set_walltime", "PALS"), "set_hostlist": flag("hosts", _hosts),
    },
    "aprun": {
        "set_cpus_per_task": flag("cpus-per-pe", int), "set_tasks": flag("pes", int),
        "set_tasks_per_node": flag("pes-per-node", int), "set_hostlist": flag("node-list", _hosts),
        "set_hostlist_from_file": flag("node-list-file"), "set_excluded_hosts": flag("exclude-node-list", _hosts),
        "set_cpu_bindings": flag("cpu-binding", _ints), "set_memory_per_node": flag("memory-per-pe", int),
        "set_verbose_launch": switch("debug", 7), "set_quiet_launch": switch("quiet"),
        "set_walltime": flag("cpu-time-limit"),
    },
    "jsrun": {
        "set_num_rs": flag("nrs", _int_or_str), "set_cpus_per_rs": flag("cpu_per_rs", _int_or_str),
        "set_gpus_per_rs": flag("gpu_per_rs", _int_or_str), "set_rs_per_host": flag("rs_per_host", int),
        "set_tasks": flag("np", int), "set_tasks_per_rs": flag("tasks_per_rs", int),
        "set_tasks_per_node": alias("set_tasks_per_rs"), "set_cpus_per_task": flag("cpu_per_rs", int),
        "set_memory_per_rs": flag("memory_per_rs", int), "set_memory_per_node": alias("set_memory_per_rs"),
        "set_binding": flag("bind"), "set_individual_output": lambda self, suffix=None: self.run_args.update(
            stdio_mode="individual"),
    },
}
#: run command -> SmartSim settings family (PALS' mpiexec is told apart by its class, see settings.py)
FAMILY = {"srun": "srun", "mpirun": "mpi", "mpiexec": "mpi", "orterun": "mpi", "aprun": "aprun", "jsrun": "jsrun"}
#: run_args SmartSim never puts on the command line, per family
RESTRICTED = {"mpi": ("wd", "wdir"), "pals": ("wd", "wdir"), "aprun": ("wdir",),
              "jsrun": ("chdir", "h", "stdio_stdout", "o", "stdio_stderr", "k"), "srun": ()}


def format_run_args(family: str | None, run_args: dict[str, Any]) -> list[str]:
    """``run_args`` as SmartSim's class of ``family`` formats them: MPI's
    ``--flag value``; srun's, aprun's and jsrun's ``--flag=value`` and
    ``-f value``; a flag whose value is falsy alone. No family (SmartSim's
    base ``RunSettings``): each key as given, then its value."""
    if family is None:
        return [x for k, v in run_args.items() for x in (k, str(v))]
    out: list[str] = []
    for opt, value in run_args.items():
        if opt in RESTRICTED[family]:
            continue
        prefix = "-" if family not in ("mpi", "pals") and len(opt) == 1 else "--"
        if not value:
            out.append(prefix + opt)
        elif family in ("mpi", "pals") or len(opt) == 1:
            out += [prefix + opt, str(value)]
        else:
            out.append(f"{prefix}{opt}={value}")
    return out


def format_env_vars(family: str | None, env: dict[str, Any]) -> list[str]:
    """``env_vars`` as SmartSim's class of ``family`` formats them."""
    if family == "pals":  # valued ones with --env, the others exported by name with --envlist
        bare = [k for k, v in env.items() if not v]
        return ([x for k, v in env.items() if v for x in ("--env", f"{k}={v}")]
                + (["--envlist", ",".join(bare)] if bare else []))
    if family in ("mpi", "aprun", "jsrun"):
        opt = {"mpi": "-x", "aprun": "-e", "jsrun": "-E"}[family]
        out = []
        for k, v in env.items():
            out += [opt, f"{k}={v}" if (v or family == "aprun") else k]
        return out
    if family == "srun":
        return [f"{k}={v}" for k, v in env.items() if "," not in str(v)]
    return [f"{k}=" if v is None else f"{k}={v}" for k, v in env.items()]


def _dash(args: dict[str, Any]) -> list[str]:
    """``-flag value`` (one string each, as SmartSim's qsub and bsub previews), ``-flag`` alone."""
    return [f"-{k}" if v is None else f"-{k} {v}" for k, v in args.items()]


def qsub_args(bs: Any) -> list[str]:
    """SmartSim's qsub flags: ``-l select=`` / ``nodes=`` with ``:ncpus=`` and hosts, the
    other resources, ``-l walltime=``, then ``batch_args``, ``-q``, ``-A``."""
    res = dict(bs.resources)
    spec = next((k for k in ("select", "nodes") if k in res), None)
    out = []
    count = res.pop(spec) if spec else bs.nodes
    if count or bs.hostlist:
        line = f"-l {spec or 'nodes'}={count or len(bs.hostlist)}" + (f":ncpus={bs.ncpus}" if bs.ncpus else "")
        out.append(line + (":" + "+".join(f"host={h}" for h in bs.hostlist) if bs.hostlist else ""))
    out += [f"-l {k}={v}" for k, v in res.items()]
    out += [f"-l walltime={bs.time}"] if bs.time else []
    return out + _dash({**bs.batch_args, **{k: v for k, v in (("q", bs.queue), ("A", bs.account)) if v}})


def bsub_args(bs: Any) -> list[str]:
    """SmartSim's bsub flags: ``batch_args`` (``alloc_flags`` in double quotes when
    several, ``smt<smts>`` added), ``-nnodes``, ``-m "hosts"``, ``-n``, ``-q``."""
    args = dict(bs.batch_args)
    flags = str(args.get("alloc_flags") or "").strip('"').split()
    if bs.smts and not any(f.startswith("smt") for f in flags):
        flags.append(f"smt{bs.smts}")
    if flags:
        args["alloc_flags"] = f'"{" ".join(flags)}"' if len(flags) > 1 else flags[0]
    for key, value in (("nnodes", bs.nodes), ("m", f'"{" ".join(bs.hostlist)}"' if bs.hostlist else None),
                       ("n", bs.tasks), ("q", bs.queue)):
        if value:
            args[key] = value
    return _dash(args)
