"""The ``pbs`` launcher: PBS Professional / OpenPBS and Torque-style PBS.

* Run commands: ``mpirun``, ``mpiexec``, ``orterun``, ``aprun`` (none by default: a PBS
  job runs its executable directly).
* Batch: ``qsub`` with ``#PBS`` directives; ``-o``/``-e`` are also given on
  the command line (Slurm's Torque-compatible ``qsub`` overrides the script's
  with its own defaults otherwise).
* Status: ONE ``qstat`` per poll cycle for every job. PBS Pro's JSON listing
  (``qstat -f -F json -x``) where ``qstat`` offers it, the classic full listing
  (``qstat -f``) otherwise: the first query tries JSON and, when ``qstat``
  rejects the option, remembers that and uses the classic listing from then on.
* Cancel: ``qdel``.
* Flavours (launcher option ``pbs_flavor``): ``"pro"`` (default: ``-J 1-N``
  arrays, ``-l select=N``) or ``"torque"`` (``-t 1-N``, ``-l nodes=N``). The
  array script reads ``PBS_ARRAY_INDEX`` (PBS Pro), ``PBS_ARRAYID`` (Torque) or,
  under Slurm's Torque-compatible wrappers, ``SLURM_ARRAY_TASK_ID``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

import simctl
from simctl import (
    BatchJob,
    BatchSettings,
    ConfigError,
    ConfigTypeError,
    JobStatus,
    RunSettings,
    SchedulerError,
    SchedulerLauncher,
    Status,
    checks,
    format_flags,
)

from .mpi import MPI_COMMANDS, MPI_PLACEMENTS, MPI_RANK_VARS, mpi_run_args

#: every job state qstat reports (PBS Pro and Torque), what it means here, and why
STATES: dict[str, tuple[Status, str]] = {
    "Q": (Status.QUEUED, "queued"),
    "H": (Status.QUEUED, "held"),
    "W": (Status.QUEUED, "waiting for its start time"),
    "T": (Status.QUEUED, "being moved to a new location"),
    "M": (Status.QUEUED, "moved to another server"),
    "R": (Status.RUNNING, ""),
    "E": (Status.RUNNING, "exiting after having run"),
    "B": (Status.RUNNING, "array job: at least one subjob has started"),
    "S": (Status.PAUSED, "suspended"),
    "U": (Status.PAUSED, "suspended: the workstation is busy"),
    # finished; the exit status decides between COMPLETED and FAILED
    "F": (Status.COMPLETED, "finished"),
    "X": (Status.COMPLETED, "subjob finished"),
    "C": (Status.COMPLETED, "completed"),  # Torque
}
FINISHED = frozenset({"F", "X", "C"})

#: PBS's own negative exit statuses (openpbs src/include/job.h)
EXEC_CODES: dict[int, str] = {
    -1: "JOB_EXEC_FAIL1: job exec failed, before files, no retry",
    -2: "JOB_EXEC_FAIL2: job exec failed, after files, no retry",
    -3: "JOB_EXEC_RETRY: job execution failed, do retry",
    -4: "JOB_EXEC_INITABT: job aborted on MOM initialization",
    -5: "JOB_EXEC_INITRST: job aborted on MOM init, checkpoint, no migrate",
    -6: "JOB_EXEC_INITRMG: job aborted on MOM init, checkpoint, ok migrate",
    -7: "JOB_EXEC_BADRESRT: job restart failed",
    -10: "JOB_EXEC_FAILUID: invalid uid/gid for job",
    -11: "JOB_EXEC_RERUN: job rerun",
    -12: "JOB_EXEC_CHKP: job was checkpointed and killed",
    -13: "JOB_EXEC_FAIL_PASSWORD: job failed due to a bad password",
    -14: "JOB_EXEC_RERUN_SIS_FAIL: job rerun",
    -15: "JOB_EXEC_QUERST: requeue job for restart from checkpoint",
    -16: "JOB_EXEC_FAILHOOK_RERUN: a hook rejected the job, requeued for a later retry",
    -17: "JOB_EXEC_FAILHOOK_DELETE: a hook rejected the job, deleted",
    -18: "JOB_EXEC_HOOK_RERUN: a hook requested the job be requeued",
    -19: "JOB_EXEC_HOOK_DELETE: a hook requested the job be deleted",
    -20: "JOB_EXEC_RERUN_MS_FAIL: mother superior connection failed",
    -21: "JOB_EXEC_FAIL_SECURITY: security breach in PBS directory",
    -22: "JOB_EXEC_HOOKERROR: hook raised an exception or timed out",
    -23: "JOB_EXEC_FAIL_KRB5: no kerberos credentials supplied",
    -24: "JOB_EXEC_KILL_NCPUS_BURST: exceeded ncpus (burst)",
    -25: "JOB_EXEC_KILL_NCPUS_SUM: exceeded ncpus (sum)",
    -26: "JOB_EXEC_KILL_VMEM: exceeded vmem",
    -27: "JOB_EXEC_KILL_MEM: exceeded mem",
    -28: "JOB_EXEC_KILL_CPUT: exceeded cput",
    -29: "JOB_EXEC_KILL_WALLTIME: exceeded walltime",
    -30: "JOB_EXEC_JOINJOB: join job error",
}

#: qstat exit codes that still come with a usable listing: some ids unknown
#: (PBSE_UNKJOBID 15001 % 256 = 153) or finished without -x (PBSE_HISTJOBID 15139 % 256 = 35)
QSTAT_PARTIAL = (153, 35)
_GONE_LINE = re.compile(r"unknown job id|job has finished|has finished|already completed|^\s*$", re.I)
_OPTION_REJECTED = re.compile(r"unknown option|invalid option|illegal option|unrecognized option|usage:", re.I)
_ATTR = re.compile(r"^\s+([A-Za-z_][\w.]*) = ?(.*)$")


def _signal_name(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"


def map_state(state: str, exit_status: int | None = None, comment: str = "") -> JobStatus:
    """A PBS job state letter (with its ``Exit_status``) as a JobStatus. An
    unknown state is reported as UNKNOWN with the letter qstat printed."""
    raw = state.strip()
    entry = STATES.get(raw)
    if entry is None:
        return JobStatus(Status.UNKNOWN, exit_status, f"unknown PBS job state {raw!r}", raw=raw)
    status, why = entry
    extra = f": {comment}" if comment else ""
    if status is Status.RUNNING:  # the comment of a running job only says where it started
        return JobStatus(status, None, why, raw=raw)
    if raw not in FINISHED:
        return JobStatus(status, None, why + extra, raw=raw)
    if exit_status is None:
        return JobStatus(Status.FAILED, None, f"{why}; qstat reported no exit status{extra}",
                         raw=raw)
    if exit_status == 0:
        return JobStatus(Status.COMPLETED, 0, "", raw=raw)
    if exit_status > 256:
        sig = exit_status - 256
        return JobStatus(Status.FAILED, -sig, f"killed by signal {sig} ({_signal_name(sig)}); "
                         f"Exit_status {exit_status} = 256 + {sig}{extra}", raw=raw)
    if exit_status < 0:
        what = EXEC_CODES.get(exit_status, f"PBS exit status {exit_status}")
        return JobStatus(Status.FAILED, exit_status, f"PBS could not run the job: {what}{extra}", raw=raw)
    return JobStatus(Status.FAILED, exit_status, f"exited with code {exit_status}", raw=raw)


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _from_attrs(job: Mapping[str, Any]) -> JobStatus:
    state = job.get("job_state")
    if not isinstance(state, str) or not state:
        raise ValueError(f"job record without job_state: {dict(job)!r}"[:300])
    code = job.get("Exit_status", job.get("exit_status"))
    comment = job.get("comment") if isinstance(job.get("comment"), str) else ""
    return map_state(state, _int(code), (comment or "").strip())


def parse_qstat_json(text: str) -> dict[str, JobStatus]:
    """Parse ``qstat -f -F json [-x] [-t] ids`` (PBS Pro 18+). A listing
    without a ``Jobs`` member means none of the ids is known."""
    try:
        data = json.loads(text, strict=False)  # PBS leaves control characters unescaped in some values
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("the JSON listing is not an object")
    jobs = data.get("Jobs", {})
    if not isinstance(jobs, dict):
        raise ValueError("'Jobs' is not an object")
    return {job_id: _from_attrs(job) for job_id, job in jobs.items()}


def parse_qstat_full(text: str) -> dict[str, JobStatus]:
    """Parse the classic full listing ``qstat -f ids`` (PBS Pro, Torque and
    Slurm's Torque-compatible wrapper): ``Job Id: <id>`` then indented
    ``name = value`` lines; long values continue on further indented lines."""
    records: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    last = ""
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("Job Id:"):
            job_id = line[len("Job Id:"):].strip()
            if not job_id:
                raise ValueError(f"'Job Id:' line without an id: {line!r}")
            current = records.setdefault(job_id, {})
            last = ""
            continue
        if current is None or not line[:1].isspace():
            raise ValueError(f"unexpected line {line!r}")
        m = _ATTR.match(line)
        if m:
            last = m.group(1)
            current[last] = m.group(2).strip()
        elif last:  # a wrapped value
            current[last] += line.strip()
        else:
            raise ValueError(f"unexpected line {line!r}")
    return {job_id: _from_attrs(job) for job_id, job in records.items()}


def parse_qsub(output: str) -> str:
    """The job id qsub prints (``1234.server``, ``1234[].server``, or ``1234``)."""
    lines = [ln.strip() for ln in output.strip().splitlines() if ln.strip()]
    job_id = lines[-1] if lines else ""
    if not re.fullmatch(r"\d+(\[\d*\])?(\.[\w.-]+)?", job_id):
        raise ValueError(output)
    return job_id


def _short(job_id: str) -> str:
    return job_id.split(".", 1)[0]


def align_ids(parsed: dict[str, JobStatus], requested: Sequence[str]) -> dict[str, JobStatus]:
    """Key qstat's records by the ids we asked about: qstat may print the
    server's full name where qsub printed a short one, and lists an array's
    subjobs (``12[3].srv``) under the array's id (``12[].srv``)."""
    out = dict(parsed)
    by_short: dict[str, JobStatus] = {_short(k): v for k, v in parsed.items()}
    for r in requested:
        s = _short(r)
        suffix = r[len(s):]
        if r not in out and s in by_short:
            out[r] = by_short[s]
        if s.endswith("[]"):
            seq = s[:-2]
            for k, v in by_short.items():
                m = re.fullmatch(re.escape(seq) + r"\[(\d+)\]", k)
                if m:
                    out.setdefault(k + suffix, v)
    return out


def pbs_job_name(name: str) -> str:
    """A job name every PBS takes: starts with a letter, letters, digits,
    ``_ . -`` only, at most 15 characters (Torque's limit; PBS Pro allows 236)."""
    return checks.job_name(name, 15, letter_first=True)


def _aprun_flags(args: Mapping[str, Any]) -> list[str]:
    """aprun's own multi-letter flags take one dash (``-cc depth``): a key
    given with its dash is kept as it is."""
    out: list[str] = []
    for key, value in args.items():
        if key.startswith("-"):
            out += [key] if value is None else [key, str(value)]
        else:
            out += format_flags({key: value}, long_eq=False)
    return out


class PbsRunSettings(RunSettings):
    """Run settings for mpirun, mpiexec, orterun or aprun in a PBS job."""

    supported_run_commands: ClassVar[tuple[str, ...]] = (*MPI_COMMANDS, "aprun")
    placement_run_args: ClassVar[Mapping[str, tuple[str, ...]]] = {
        **MPI_PLACEMENTS, "aprun": ("n", "pes", "N", "pes-per-node", "S", "pes-per-numa-node", "d", "cpus-per-pe",
                                    "L", "node-list", "l", "node-list-file", "wdir")}

    def set_cpu_binding(self, binding: str) -> None:
        """aprun ``-cc`` (``depth``, ``numa_node``, ``none``, a CPU list or number)."""
        if isinstance(binding, int) and not isinstance(binding, bool) and binding >= 0:
            binding = str(binding)
        self.set("-cc", checks.string("cpu_binding", binding))

    def format_run_args(self) -> list[str]:
        if self.run_command == "aprun":
            out: list[str] = []
            for flag, value in (("-n", self.tasks), ("-N", self.tasks_per_node), ("-d", self.cpus_per_task)):
                if value is not None:
                    out += [flag, str(value)]
            if self.hostlist:
                out += ["-L", ",".join(self.hostlist)]
            return out + _aprun_flags(self.run_args)
        return mpi_run_args(self)


def _resources(resources: Any) -> dict[str, Any]:
    """``-l`` resources: str names, a value each (``None`` would print ``foo=None``)."""
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise ConfigError(f"resources must be a dict of resource name -> value, e.g. {{'mem': '4gb'}}; "
                          f"got {checks.show(resources)}")
    out: dict[str, Any] = {}
    for name, value in resources.items():
        checks.string("resource name", name)
        if value is None or value == "":
            error = ConfigTypeError if value is None else ConfigError
            raise error(f"PBS resource {name!r} needs a value (a str or number), got {value!r:.80}; "
                        "-l takes name=value")
        out[name] = checks.flag_value(f"resources[{name!r}]", value)
    return out


def _export_env(value: Any) -> bool:
    return checks.boolean("export_env", value)


def _ncpus(value: Any) -> int | None:
    return checks.positive_int("ncpus", value, allow_none=True)


def _node_conflict(resources: Mapping[str, Any], **given: Any) -> None:
    """ConfigError if ``resources`` holds ``select`` or ``nodes`` (or both) while
    one of ``given`` (nodes, hostlist) also says how many nodes, or ``ncpus`` the
    CPUs a ``select``/``nodes`` chunk spec already names (``2:ncpus=4``): ``-l
    select=`` would be given twice. ``ncpus`` with a plain count joins it
    (``-l select=10:ncpus=36``, ``-l nodes=10:ppn=36``)."""
    keys = [k for k in ("select", "nodes") if k in resources]
    also = [name for name, value in given.items() if value and name != "ncpus"]
    if given.get("ncpus") and any(re.search(r"ncpus=|ppn=", str(resources[k])) for k in keys):
        also.append("ncpus")
    if len(keys) == 2 or (keys and also):
        both = [f"resources[{k!r}]" for k in keys] + also
        raise ConfigError(f"PBS batch settings: {' and '.join(both)} each say how many nodes (or CPUs per node) "
                          f"the job gets (-l {keys[0]}=...); give the count once: nodes= (or set_nodes), or a "
                          "'select'/'nodes' resource alone")


def _check_nodes(inst: Any, attribute: attrs.Attribute, value: Any) -> Any:
    """on_setattr: refuse a node count that conflicts with the other fields, when it is set."""
    if attribute.name in ("nodes", "hostlist", "resources", "ncpus") and attrs.has(type(inst)):
        fields = {"resources": inst.resources, "nodes": inst.nodes, "hostlist": inst.hostlist, "ncpus": inst.ncpus}
        fields[attribute.name] = value
        resources = fields.pop("resources")
        _node_conflict(resources, **fields)
    return value


@attrs.define(eq=True, on_setattr=[attrs.setters.convert, attrs.setters.validate, _check_nodes])
class PbsBatchSettings(BatchSettings):
    """Batch settings for qsub. ``account`` is ``-A``; ``resources`` are extra
    ``-l name=value`` lines; ``export_env`` adds ``-V`` (the submitting
    environment reaches the job, as sbatch and bsub do by default)."""

    #: what simctl writes for a store's job: its name, output files, array (resources go in ``resources``)
    placement_batch_args: ClassVar[tuple[str, ...]] = ("N", "o", "e", "J", "t")

    resources: dict[str, Any] = attrs.field(factory=dict, converter=_resources)
    export_env: bool = attrs.field(default=True, converter=_export_env)
    ncpus: int | None = attrs.field(default=None, converter=_ncpus)

    def __attrs_post_init__(self) -> None:
        _node_conflict(self.resources, nodes=self.nodes, ncpus=self.ncpus, hostlist=self.hostlist)

    def set_resource(self, name: str, value: Any) -> None:
        """Any ``-l name=value`` resource (``mem``, ``place``, ``filesystems``...)."""
        self.resources = {**self.resources, **_resources({name: value})}

    def set_ncpus(self, ncpus: int) -> None:
        """CPUs per node (``select=N:ncpus=C``; Torque ``nodes=N:ppn=C``)."""
        self.ncpus = checks.positive_int("ncpus", ncpus)

    def set_cpus_per_task(self, cpus: int) -> None:
        """Alias of :meth:`set_ncpus` for one task per node."""
        self.set_ncpus(cpus)


class PbsLauncher(SchedulerLauncher):
    """PBS Pro / OpenPBS / Torque: qsub, qstat, qdel."""

    name = "pbs"
    run_commands: ClassVar[tuple[str, ...]] = (*MPI_COMMANDS, "aprun")
    default_run_command: ClassVar[str | None] = None
    run_settings_class = PbsRunSettings
    batch_settings_class = PbsBatchSettings
    allocation_env = "PBS_JOBID"
    probe_command = "qsub"
    # Torque numbers array elements in PBS_ARRAYID, PBS Pro in PBS_ARRAY_INDEX; Slurm's
    # Torque-compatible wrappers run the job under Slurm, which sets only SLURM_ARRAY_TASK_ID
    array_index = "${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-${SLURM_ARRAY_TASK_ID:-}}}"
    directive_prefix = "#PBS"
    array_base = 1
    #: qdel's exit code counts the jobs it could not delete; its output says why (see run)
    cancel_ok_codes = tuple(range(256))
    FLAVORS: ClassVar[tuple[str, ...]] = ("pro", "torque")
    QSTAT_FORMATS: ClassVar[tuple[str, ...]] = ("auto", "json", "classic")
    accepted_options = {**SchedulerLauncher.accepted_options,
                        "pbs_flavor": "'pro' (default: -J arrays, -l select=) or 'torque' (-t, -l nodes=)",
                        "qstat_format": "'auto' (default), 'json' (PBS Pro) or 'classic' (qstat -f)"}
    local_rank_vars = {**MPI_RANK_VARS, "aprun": ("ALPS_APP_PE",), None: ()}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.flavor = options.get("pbs_flavor", "pro")
        if self.flavor not in self.FLAVORS:
            raise ConfigError(f"pbs_flavor {self.flavor!r} is not one of {', '.join(map(repr, self.FLAVORS))}")
        fmt = options.get("qstat_format", "auto")
        if fmt not in self.QSTAT_FORMATS:
            raise ConfigError(f"qstat_format {fmt!r} is not one of {', '.join(map(repr, self.QSTAT_FORMATS))}")
        #: "json" or "classic" once known (detected on the first query when "auto")
        self.qstat_format: str | None = None if fmt == "auto" else fmt

    @classmethod
    def detect(cls) -> tuple[int, str]:
        score, why = super().detect()
        if score == 10 and shutil.which("sbatch"):
            return 5, f"{why}, but sbatch is here too: this qsub is likely Slurm's Torque-compatible wrapper"
        return score, why

    def job_name(self, name: str) -> str:
        return pbs_job_name(name)

    def check_settings(self, run_settings: RunSettings | None, batch_settings: BatchSettings | None) -> None:
        super().check_settings(run_settings, batch_settings)
        if isinstance(batch_settings, PbsBatchSettings):
            bs = batch_settings
            _node_conflict(bs.resources, nodes=bs.nodes, ncpus=bs.ncpus, hostlist=bs.hostlist)

    # -- batch scripts -------------------------------------------------------------------

    def directives(self, job: BatchJob) -> list[str]:
        bs, n_members = job.batch_settings, len(job.members)
        q = shlex.quote
        out = [f"-N {q(self.job_name(job.name))}", f"-o {q(job.out)}", f"-e {q(job.err)}"]
        if isinstance(bs, PbsBatchSettings) and bs.export_env:
            out.append("-V")
        if bs.time:
            out.append(f"-l walltime={bs.time}")
        ncpus = bs.ncpus if isinstance(bs, PbsBatchSettings) else None
        resources = bs.resources if isinstance(bs, PbsBatchSettings) else {}
        spec = next((k for k in ("select", "nodes") if k in resources), None)
        if bs.hostlist:
            if self.flavor == "torque":
                chunks = "+".join(h + (f":ppn={ncpus}" if ncpus else "") for h in bs.hostlist)
                out.append(f"-l nodes={q(chunks)}")
            else:
                chunks = "+".join(f"1:host={h}" + (f":ncpus={ncpus}" if ncpus else "") for h in bs.hostlist)
                out.append(f"-l select={q(chunks)}")
        elif spec is not None:  # a select/nodes resource: its count, with ncpus in that spec's word
            # (nodes=N:ppn=C; SmartSim's nodes=N:ncpus=C is refused by Slurm's qsub: "Invalid node name")
            cpus = f":{'ppn' if spec == 'nodes' else 'ncpus'}={ncpus}" if ncpus else ""
            out.append(f"-l {q(f'{spec}={resources[spec]}{cpus}')}")
        elif bs.nodes or ncpus:
            n = bs.nodes or 1
            if self.flavor == "torque":
                out.append(f"-l nodes={n}" + (f":ppn={ncpus}" if ncpus else ""))
            else:
                out.append(f"-l select={n}" + (f":ncpus={ncpus}" if ncpus else ""))
        for key, value in resources.items():
            if key != spec:
                out.append(f"-l {q(f'{key}={value}')}")
        if bs.queue:
            out.append(f"-q {q(bs.queue)}")
        if bs.account:
            out.append(f"-A {q(bs.account)}")
        if bs.array:
            flag = "-t" if self.flavor == "torque" else "-J"
            out.append(f"{flag} {self.array_base}-{self.array_base + n_members - 1}")
        for key, value in bs.batch_args.items():
            flag = key if key.startswith("-") else (f"-{key}" if len(key) == 1 else f"--{key}")
            out.append(flag if value is None else f"{flag} {q(str(value))}")
        return out

    def submit_command(self, job: BatchJob, script_path: str) -> list[str]:
        # -o/-e on the command line as well: Slurm's qsub wrapper passes its own defaults to sbatch,
        # which would override the script's directives
        return ["qsub", "-o", job.out, "-e", job.err, script_path]

    def parse_submit(self, output: str, argv: Sequence[str]) -> str:
        try:
            return parse_qsub(output)
        except ValueError:
            raise SchedulerError(list(argv), 0, output, "qsub printed no job id") from None

    def killed(self, job: JobStatus) -> bool:
        """Finished with a signal (Exit_status 256 + N) or PBS's own kill codes
        (walltime, memory... limits, requeue, hook): the members' exit statuses
        are the kill's doing."""
        return job.raw in FINISHED and job.returncode is not None and job.returncode < 0

    def array_task_id(self, parent: str, index: int) -> str:
        s = _short(parent)
        return (s[:-2] if s.endswith("[]") else s) + f"[{index}]" + parent[len(s):]

    # -- status ------------------------------------------------------------------------------

    def _qstat(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        return self.run(argv, ok_codes=range(256))  # judged by _checked, with the output

    def _checked(self, argv: list[str], proc: subprocess.CompletedProcess[str]) -> None:
        if proc.returncode == 0:
            return
        bad = [ln for ln in proc.stderr.splitlines() if not _GONE_LINE.search(ln)]
        if proc.returncode not in QSTAT_PARTIAL or bad:
            raise SchedulerError(argv, proc.returncode, (proc.stderr + proc.stdout).strip())

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        ids = list(job_ids)
        if self.qstat_format in (None, "json"):
            argv = ["qstat", "-f", "-F", "json", "-x", *(["-t"] if any("[]" in j for j in ids) else []), *ids]
            proc = self._qstat(argv)
            out = (proc.stdout + proc.stderr).strip()
            if self.qstat_format is None and proc.returncode not in (0, *QSTAT_PARTIAL) \
                    and _OPTION_REJECTED.search(out):
                self.qstat_format = "classic"  # this qstat has no JSON listing: remember, fall through
            else:
                self._checked(argv, proc)
                if not proc.stdout.strip():
                    return {}  # none of the ids is known (some PBS versions print nothing then)
                try:
                    parsed = parse_qstat_json(proc.stdout)
                except ValueError as exc:
                    raise SchedulerError(argv, proc.returncode, out,
                                         f"qstat printed something unexpected ({exc})") from None
                self.qstat_format = "json"
                return align_ids(parsed, ids)
        argv = ["qstat", "-f", *ids]
        proc = self._qstat(argv)
        self._checked(argv, proc)
        try:
            parsed = parse_qstat_full(proc.stdout)
        except ValueError as exc:
            raise SchedulerError(argv, proc.returncode, (proc.stdout + proc.stderr).strip(),
                                 f"qstat printed something unexpected ({exc})") from None
        return align_ids(parsed, ids)

    # -- cancel -------------------------------------------------------------------------------

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["qdel", *job_ids]

    def check_cancel(self, proc: subprocess.CompletedProcess[str], argv: Sequence[str]) -> None:
        if proc.returncode != 0:
            # a job that already finished or left the queue is fine; anything else is an error
            bad = [ln for ln in (proc.stdout + proc.stderr).splitlines() if not _GONE_LINE.search(ln)]
            if bad:
                raise SchedulerError(list(argv), proc.returncode, (proc.stderr + proc.stdout).strip(),
                                     "qdel could not delete the job(s)")


@simctl.hookimpl
def simctl_register_launchers() -> list[type[SchedulerLauncher]]:
    return [PbsLauncher]
