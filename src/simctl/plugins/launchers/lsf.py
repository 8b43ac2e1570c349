"""The ``lsf`` launcher: IBM Spectrum LSF.

* Run commands: ``jsrun``, ``mpirun``, ``mpiexec``, ``orterun`` (none by default: the job runs its
  executable directly).
* Batch: ``bsub < job.sh``; the script carries ``#BSUB`` directives, which LSF
  reads only from a script given on standard input (``bsub job.sh`` would run
  the file as a plain command and ignore them).
* Status: ONE ``bjobs -a -noheader -o "jobid job_name stat exit_code
  exit_reason delimiter='|'" <ids>`` per poll cycle for every job; an array's
  elements are told apart by their job name (``name[3]``). ``Job <N> is not
  found`` on stderr means the job left LSF's memory.
* Cancel: ``bkill``.
* Walltime: ``-W [HH:]MM``, rounded up to whole minutes.
* MPMD under ``jsrun`` (``make_mpmd``): through an Explicit Resource File
  (ERF) listing every program and its resource set (``set_erf_sets``,
  ``set_mpmd_preamble``), written at start into the step's directory as
  ``.simctl-<hash>.erf`` and given as ``jsrun --erf_input``; ``preview`` shows it.
* ``smts`` (SMT level, ``-alloc_flags smtN`` unless ``alloc_flags`` names one);
  ``project=`` is the account (``-P``).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

import simctl
from simctl import (
    BatchJob,
    BatchSettings,
    ConfigError,
    JobStatus,
    Launch,
    ProcessStep,
    RunSettings,
    SchedulerError,
    SchedulerLauncher,
    Status,
    checks,
    format_flags,
    parse_walltime,
)

from .mpi import MPI_COMMANDS, MPI_PLACEMENTS, MPI_RANK_VARS, mpi_run_args

#: every job state bjobs reports, what it means here, and why
STATES: dict[str, tuple[Status, str]] = {
    "PEND": (Status.QUEUED, "pending"),
    "WAIT": (Status.QUEUED, "chunk job member waiting to run"),
    "PROV": (Status.QUEUED, "waiting for its host to be provisioned"),
    "RUN": (Status.RUNNING, ""),
    "PSUSP": (Status.PAUSED, "suspended while pending"),
    "USUSP": (Status.PAUSED, "suspended by its owner or an administrator"),
    "SSUSP": (Status.PAUSED, "suspended by LSF"),
    "DONE": (Status.COMPLETED, ""),
    "PDONE": (Status.COMPLETED, "done; post-execution processing done"),
    "EXIT": (Status.FAILED, ""),
    "PERR": (Status.FAILED, "post-execution processing failed"),
    "ZOMBI": (Status.FAILED, "zombie: killed while its execution host was unreachable"),
    # LSF itself does not know: mbatchd lost contact with the execution host
    "UNKWN": (Status.UNKNOWN, "LSF lost contact with the job's execution host"),
}
BJOBS_FORMAT = "jobid job_name stat exit_code exit_reason delimiter='|'"
_NOT_FOUND = re.compile(r"^Job <[^>]*> is not found\s*$")
_BKILL_OK = re.compile(r"^Job <[^>]*>: (Job has already finished|No matching job found)\s*$"
                       r"|^Job <[^>]*> is being (terminated|signaled)\s*$|^\s*$")
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted to (?:default )?queue <[^>]*>")
_ELEMENT = re.compile(r"^(.*)\[(\d+)\]$")


def map_state(stat: str, exit_code: int | None = None, exit_reason: str = "") -> JobStatus:
    """A bjobs STAT (with EXIT_CODE and EXIT_REASON) as a JobStatus. An unknown
    state is reported as UNKNOWN with the word bjobs printed."""
    raw = stat.strip()
    entry = STATES.get(raw)
    if entry is None:
        return JobStatus(Status.UNKNOWN, exit_code, f"unknown LSF job state {raw!r}", raw=raw)
    status, why = entry
    reason = exit_reason.strip() if exit_reason.strip() not in ("", "-") else ""
    if status is Status.COMPLETED:
        return JobStatus(status, 0 if exit_code is None else exit_code, why, raw=raw)
    if status is Status.FAILED:
        parts = [p for p in (why, reason) if p]
        if exit_code is not None:
            parts.append(f"exited with code {exit_code}" + (
                f" (above 128: probably killed by signal {exit_code - 128})" if 128 < exit_code < 160 else ""))
        return JobStatus(status, exit_code, "; ".join(parts) or "exited", raw=raw)
    return JobStatus(status, None, "; ".join(p for p in (why, reason) if p), raw=raw)


def parse_bjobs(text: str) -> dict[str, JobStatus]:
    """Parse ``bjobs -noheader -o "jobid job_name stat exit_code exit_reason
    delimiter='|'"``. An array element is keyed ``<id>[<index>]``; the array's
    own id gets a summary of its elements (running while any runs, finished
    when all have)."""
    out: dict[str, JobStatus] = {}
    arrays: dict[str, list[JobStatus]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 4)
        if len(parts) != 5:
            raise ValueError(f"unexpected bjobs line {line!r}")
        job_id, name, stat, code, reason = (p.strip() for p in parts)
        m_id = _ELEMENT.match(job_id)  # LSB_BJOBS_DISPLAY_ENH=Y prints 12[3] as the id
        base = m_id.group(1) if m_id else job_id
        if not base.isdigit():
            raise ValueError(f"unexpected bjobs line {line!r}")
        exit_code = int(code) if code.lstrip("-").isdigit() else None
        if code not in ("-", "") and exit_code is None:
            raise ValueError(f"unexpected exit code in bjobs line {line!r}")
        st = map_state(stat, exit_code, reason)
        m_name = _ELEMENT.match(name)
        index = m_id.group(2) if m_id else (m_name.group(2) if m_name else None)
        if index is None:
            out[base] = st
        else:
            out[f"{base}[{index}]"] = st
            arrays.setdefault(base, []).append(st)
    for base, elements in arrays.items():
        out.setdefault(base, _summary(elements))
    return out


def _summary(elements: list[JobStatus]) -> JobStatus:
    for status in (Status.RUNNING, Status.PAUSED, Status.UNKNOWN, Status.QUEUED):
        hit = [e for e in elements if e.status is status]
        if hit:
            return JobStatus(status, None, f"array: {len(hit)} of {len(elements)} element(s) {status.value.lower()}",
                             raw=hit[0].raw)
    failed = [e for e in elements if e.status is Status.FAILED]
    if failed:
        return JobStatus(Status.FAILED, failed[0].returncode, f"array: {len(failed)} of {len(elements)} "
                         f"element(s) failed", raw=failed[0].raw)
    return JobStatus(Status.COMPLETED, 0, "", raw=elements[0].raw)


def parse_bsub(output: str) -> str:
    """The job id from ``Job <123> is submitted to [default ]queue <normal>.``"""
    m = _SUBMITTED.search(output)
    if not m:
        raise ValueError(output)
    return m.group(1)


def lsf_walltime(value: str) -> str:
    """``-W`` wants ``[HH:]MM``: whole minutes, rounded up."""
    minutes = math.ceil(parse_walltime(value).total_seconds() / 60)
    return f"{minutes // 60}:{minutes % 60:02d}" if minutes >= 60 else str(minutes)


def lsf_job_name(name: str) -> str:
    """A job (array) name LSF takes: letters, digits, ``. - _`` only (no
    spaces or brackets, which would read as an array index list)."""
    return checks.job_name(name, 200)


#: jsrun flags an ERF file replaces (resource sets, ranks, binding, distribution): left out of an ERF launch
ERF_REPLACES = frozenset({
    "tasks_per_rs", "a", "np", "p", "cpu_per_rs", "c", "gpu_per_rs", "g", "latency_priority", "l",
    "memory_per_rs", "m", "nrs", "n", "rs_per_host", "r", "rs_per_socket", "K", "appfile", "f", "allocate_only",
    "A", "launch_node_task", "H", "use_reservation", "J", "use_resources", "bind", "b", "launch_distribution", "d"})
#: keys of a program's resource set in an ERF file (``set_erf_sets``)
ERF_KEYS = ("rank", "rank_count", "host", "cpu", "gpu", "memory")


def _erf_sets(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"erf_sets must be a dict of {', '.join(ERF_KEYS)} -> str, e.g. "
                          f"{{'host': '1', 'cpu': '{{0:21}}'}}; got {checks.show(value)}")
    unknown = [k for k in value if k not in ERF_KEYS]
    if unknown:
        raise ConfigError(f"erf_sets key {unknown[0]!r} is not one of {', '.join(map(repr, ERF_KEYS))}")
    return {k: checks.string(f"erf_sets[{k!r}]", v) for k, v in value.items()}


def _preamble_lines(value: Any) -> list[str]:
    return checks.string_list("mpmd_preamble_lines", value, items=(str,), allow_none=True)


@attrs.define(eq=True)
class LsfRunSettings(RunSettings):
    """Run settings for jsrun or MPI's mpirun / mpiexec / orterun under LSF.

    jsrun works in resource sets: :meth:`set_tasks` is ``--np``,
    :meth:`set_tasks_per_node` is ``--rs_per_host`` (one task per resource
    set), :meth:`set_cpus_per_task` is ``--cpu_per_rs``; ``set_nodes`` with
    tasks per node gives ``--nrs``. The jsrun-specific setters below and
    ``run_args`` cover the rest.
    """

    supported_run_commands: ClassVar[tuple[str, ...]] = ("jsrun", *MPI_COMMANDS)
    reserved_run_args: ClassVar[tuple[str, ...]] = ("chdir", "h")
    mpmd_run_commands: ClassVar[tuple[str, ...]] = ("jsrun", *MPI_COMMANDS)
    #: jsrun's resource set shape (what an ERF file holds), its directory and output files
    placement_run_args: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "jsrun": (*sorted(ERF_REPLACES), "chdir", "h", "stdio_stdout", "o", "stdio_stderr", "k"), **MPI_PLACEMENTS}

    #: this program's resource set in a jsrun ERF file (an MPMD launch): rank or rank_count, host, cpu, gpu, memory
    erf_sets: dict[str, str] = attrs.field(factory=dict, converter=_erf_sets)
    #: lines at the top of the ERF file (``launch_distribution : packed``, ``overlapping-rs : allow``...)
    mpmd_preamble_lines: list[str] = attrs.field(factory=list, converter=_preamble_lines)

    def set_erf_sets(self, erf_sets: Mapping[str, str]) -> None:
        """This program's resource set in the ERF file of a jsrun MPMD launch (a copy of
        ``erf_sets``): ``rank`` (``"1, 2"``) or ``rank_count``, ``host``, ``cpu``, ``gpu``, ``memory``."""
        self.erf_sets = dict(erf_sets) if isinstance(erf_sets, Mapping) else erf_sets

    def set_mpmd_preamble(self, lines: Sequence[str]) -> None:
        """Lines at the top of the ERF file; a ``launch_distribution`` line replaces
        the one taken from ``run_args`` (default ``packed``)."""
        self.mpmd_preamble_lines = lines  # type: ignore[assignment]  # the converter checks and copies

    def uses_erf(self) -> bool:
        """True when this jsrun launch goes through an ERF file (MPMD)."""
        return self.run_command == "jsrun" and bool(self.mpmd)

    def launch_line(self, argv: list[str]) -> list[str]:
        """jsrun MPMD: ``jsrun <flags> --erf_input <ERF file>`` (the file, named by its content,
        is written at start into the step's directory, where the command runs)."""
        if not self.uses_erf():
            return super().launch_line(argv)
        if argv != [self.exe, *self.exe_args]:
            raise ConfigError("a jsrun MPMD launch runs each program of its ERF file as given: it cannot be "
                              "wrapped (a colocated store, a container); launch those on their own")
        return [self.run_command or "jsrun", *self.launch_args(), "--erf_input", erf_name(self)]

    def set_num_rs(self, num_rs: int) -> None:
        """jsrun ``--nrs``: number of resource sets."""
        self.set("nrs", checks.positive_int("num_rs", num_rs))

    def set_tasks_per_rs(self, tasks: int) -> None:
        """jsrun ``--tasks_per_rs``."""
        self.set("tasks_per_rs", checks.positive_int("tasks_per_rs", tasks))

    def set_cpus_per_rs(self, cpus: int) -> None:
        """jsrun ``--cpu_per_rs``."""
        self.set("cpu_per_rs", checks.positive_int("cpus_per_rs", cpus))

    def set_gpus_per_rs(self, gpus: int) -> None:
        """jsrun ``--gpu_per_rs``."""
        self.set("gpu_per_rs", checks.positive_int("gpus_per_rs", gpus, minimum=0))

    def set_rs_per_host(self, rs: int) -> None:
        """jsrun ``--rs_per_host``."""
        self.set("rs_per_host", checks.positive_int("rs_per_host", rs))

    def format_run_args(self) -> list[str]:
        if self.run_command in MPI_COMMANDS:
            return mpi_run_args(self)
        if self.uses_erf() or "erf_input" in self.run_args:  # the ERF file holds the resources
            return format_flags({k: v for k, v in self.run_args.items() if k not in ERF_REPLACES})
        if self.hostlist:
            raise ConfigError("jsrun has no host list option: choose hosts in the batch settings "
                              "(set_hostlist there) or pass an ERF file with run_args={'erf_input': ...}")
        args: dict[str, Any] = {}
        if self.tasks:
            args["np"] = self.tasks
        if self.tasks_per_node:
            args["rs_per_host"] = self.tasks_per_node
            args["tasks_per_rs"] = 1
            if self.nodes:
                args["nrs"] = self.nodes * self.tasks_per_node
        if self.cpus_per_task:
            args["cpu_per_rs"] = self.cpus_per_task
        args.update(self.run_args)
        return format_flags(args)


def erf_text(rs: LsfRunSettings) -> str:
    """The ERF file of a jsrun MPMD launch (pure): the ``launch_distribution`` line
    (from the preamble, else a program's ``launch_distribution``/``d`` run arg, else
    ``packed``), the rest of the preamble, one ``app <i> : <command>`` line per program
    (``rs``'s own first), then each program's resource set from its ``erf_sets``."""
    programs: list[RunSettings] = [rs, *rs.mpmd]
    preamble = list(rs.mpmd_preamble_lines)
    dist = next((ln for ln in preamble if ln.lstrip().startswith("launch_distribution")), None)
    if dist is not None:
        preamble.remove(dist)
    else:
        given = [p.run_args.get("launch_distribution", p.run_args.get("d")) for p in programs]
        dist = f"launch_distribution : {next((g for g in given if g), 'packed')}"
    lines = [dist.strip(), *preamble, ""]
    lines += [f"app {i} : {shlex.join([p.exe, *p.exe_args])}" for i, p in enumerate(programs)]
    lines.append("")
    for i, p in enumerate(programs):
        sets = p.erf_sets if isinstance(p, LsfRunSettings) else {}
        ranks = f"rank: {sets['rank']}" if "rank" in sets else sets.get("rank_count", "1")
        res = [f"host: {sets.get('host', '*')}", f"cpu: {sets.get('cpu', '*')}"]
        res += [f"{k}: {sets[k]}" for k in ("gpu", "memory") if k in sets]
        lines.append(f"{ranks} : {{ {'; '.join(res)} }} : app {i}")
    return "\n".join(lines) + "\n"


def erf_name(rs: LsfRunSettings) -> str:
    """The ERF file's name in the step's directory: named by its content, so the
    command line is a pure function of the settings."""
    return f".simctl-{hashlib.sha256(erf_text(rs).encode()).hexdigest()[:12]}.erf"


def _erf_steps(launch: Launch) -> list[tuple[str, LsfRunSettings]]:
    """(ERF path, settings) of each jsrun MPMD step of ``launch``."""
    steps = [launch] if isinstance(launch, ProcessStep) else launch.members
    return [(os.path.join(s.cwd, erf_name(s.run_settings)), s.run_settings) for s in steps
            if isinstance(s.run_settings, LsfRunSettings) and s.run_settings.uses_erf()]


def _project(value: Any) -> str | None:
    return checks.string("project", value, allow_none=True)


def _smts(value: Any) -> int:
    return checks.positive_int("smts", value, minimum=0)


def alloc_flags(bs: LsfBatchSettings) -> str | None:
    """``alloc_flags`` with ``smt<smts>`` added unless it names an SMT level already."""
    flags = str(bs.batch_args.get("alloc_flags") or "").strip('"').split()
    if bs.smts and not any(f.startswith("smt") for f in flags):
        flags.append(f"smt{bs.smts}")
    return " ".join(flags) or None


def _tasks(value: Any) -> int | None:
    return checks.positive_int("tasks", value, allow_none=True)


@attrs.define(eq=True)
class LsfBatchSettings(BatchSettings):
    """Batch settings for bsub. ``nodes`` is ``-nnodes`` (CSM/jsrun sites),
    ``account`` is the project ``-P``, ``queue`` is ``-q``, ``hostlist`` is
    ``-m``; ``tasks`` is ``-n`` (job slots)."""

    #: what simctl writes for a store's job: its name, output files, host list
    placement_batch_args: ClassVar[tuple[str, ...]] = ("J", "o", "e", "m")

    tasks: int | None = attrs.field(default=None, converter=_tasks)
    #: SMT level of the nodes (``-alloc_flags smtN``; 0: the site's default)
    smts: int = attrs.field(default=0, converter=_smts)
    #: LSF's word for the account (``-P``), taken by the constructor: it sets ``account`` (read that)
    project: str | None = attrs.field(default=None, converter=_project, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.project is not None:
            if self.account is not None and self.account != self.project:
                raise ConfigError(f"bsub batch settings: project={self.project!r} and account={self.account!r} "
                                  "both name the project to charge (-P); give one")
            self.account = self.project

    def set_smts(self, smts: int) -> None:
        """SMT level (``-alloc_flags smt<N>``), unless ``alloc_flags`` in ``batch_args`` names one."""
        self.smts = _smts(smts)

    def set_tasks(self, tasks: int) -> None:
        """Job slots (``-n``)."""
        self.tasks = checks.positive_int("tasks", tasks)

    def set_project(self, project: str) -> None:
        """LSF project to charge (``-P``); the same as :meth:`set_account`."""
        self.account = checks.string("project", project)


class LsfLauncher(SchedulerLauncher):
    """IBM Spectrum LSF: bsub, bjobs, bkill."""

    name = "lsf"
    run_commands = ("jsrun", *MPI_COMMANDS)
    default_run_command = None
    run_settings_class = LsfRunSettings
    batch_settings_class = LsfBatchSettings
    allocation_env = "LSB_JOBID"
    probe_command = "bsub"
    array_index = "${LSB_JOBINDEX}"
    directive_prefix = "#BSUB"
    array_base = 1
    #: bkill exits 255 for a job that already finished; its output says so (see run)
    cancel_ok_codes = (0, 255)
    local_rank_vars = {"jsrun": ("JSM_NAMESPACE_LOCAL_RANK",), **MPI_RANK_VARS, None: ()}

    def job_name(self, name: str) -> str:
        return lsf_job_name(name)

    # -- batch scripts -------------------------------------------------------------------

    def directives(self, job: BatchJob) -> list[str]:
        bs, n_members = job.batch_settings, len(job.members)
        q = shlex.quote
        name = self.job_name(job.name)
        if bs.array:
            name = f'"{name}[{self.array_base}-{self.array_base + n_members - 1}]"'
        out = [f"-J {name}", f"-o {q(job.out)}", f"-e {q(job.err)}"]
        if bs.time:
            out.append(f"-W {lsf_walltime(bs.time)}")
        if bs.nodes:
            out.append(f"-nnodes {bs.nodes}")
        if isinstance(bs, LsfBatchSettings) and bs.tasks:
            out.append(f"-n {bs.tasks}")
        if bs.queue:
            out.append(f"-q {q(bs.queue)}")
        if bs.account:
            out.append(f"-P {q(bs.account)}")
        if bs.hostlist:
            out.append(f'-m "{" ".join(bs.hostlist)}"')
        args = dict(bs.batch_args)
        if isinstance(bs, LsfBatchSettings) and alloc_flags(bs):
            args["alloc_flags"] = alloc_flags(bs)
        for key, value in args.items():
            flag = key if key.startswith("-") else f"-{key}"  # bsub's options all take one dash
            out.append(flag if value is None else f"{flag} {q(str(value))}")
        return out

    # -- jsrun MPMD: the ERF file ---------------------------------------------------------

    def start(self, launches: Sequence[Launch]) -> None:
        """The base's, after writing each jsrun MPMD step's ERF file into its directory."""
        for launch in launches:
            for path, rs in _erf_steps(launch):
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(erf_text(rs))
                os.replace(tmp, path)
        super().start(launches)

    def preview(self, launch: Launch) -> str:
        """The base's, then each jsrun MPMD step's ERF file."""
        erfs = "".join(f"\n# {path}:\n" + "".join(f"#   {ln}".rstrip() + "\n" for ln in erf_text(rs).splitlines())
                       for path, rs in _erf_steps(launch))
        return super().preview(launch) + erfs

    def submit_command(self, job: BatchJob, script_path: str) -> list[str]:
        return ["bsub"]  # the script goes to bsub's standard input: see submit_input

    def submit_input(self, job: BatchJob, script: str) -> str | None:
        return script  # bsub reads #BSUB lines only from standard input

    def parse_submit(self, output: str, argv: Sequence[str]) -> str:
        try:
            return parse_bsub(output)
        except ValueError:
            raise SchedulerError(list(argv), 0, output, "bsub printed no job id") from None

    def killed(self, job: JobStatus) -> bool:
        """EXIT with a termination reason (``TERM_RUNLIMIT``, ``TERM_OWNER``...)
        or ZOMBI: LSF killed the job, and its members' exit statuses are the
        kill's doing."""
        return job.raw == "ZOMBI" or (job.raw == "EXIT" and "TERM_" in job.reason)

    def array_task_id(self, parent: str, index: int) -> str:
        return f"{parent}[{index}]"

    # -- status ------------------------------------------------------------------------------

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        argv = ["bjobs", "-a", "-noheader", "-o", BJOBS_FORMAT, *job_ids]
        proc = self.run(argv, ok_codes=(0, 255))
        unexpected = [ln for ln in proc.stderr.splitlines() if ln.strip() and not _NOT_FOUND.match(ln.strip())]
        if unexpected:
            raise SchedulerError(argv, proc.returncode, (proc.stderr + proc.stdout).strip())
        try:
            return parse_bjobs(proc.stdout)
        except ValueError as exc:
            raise SchedulerError(argv, proc.returncode, (proc.stdout + proc.stderr).strip(),
                                 f"bjobs printed something unexpected ({exc})") from None

    # -- cancel -------------------------------------------------------------------------------

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["bkill", *job_ids]

    def check_cancel(self, proc: subprocess.CompletedProcess[str], argv: Sequence[str]) -> None:
        if proc.returncode != 0:
            # a job that already finished or left LSF is fine; anything else is an error
            if any(not _BKILL_OK.match(ln) for ln in (proc.stdout + proc.stderr).splitlines()):
                raise SchedulerError(list(argv), proc.returncode, (proc.stderr + proc.stdout).strip(),
                                     "bkill could not kill the job(s)")


@simctl.hookimpl
def simctl_register_launchers() -> list[type[SchedulerLauncher]]:
    return [LsfLauncher]
