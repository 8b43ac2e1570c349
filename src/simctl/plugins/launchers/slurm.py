"""The ``slurm`` launcher: srun steps inside an allocation, sbatch jobs outside.

* Run commands: ``srun`` (default), ``mpirun``, ``mpiexec`` (not Slurm's own wrapper
  of it, ``mpiexec.slurm``: use ``srun``), ``orterun``.
* Status: ONE ``squeue`` per poll cycle for every job (state, reason and exit
  status in one listing, array elements expanded); ``sacct`` for jobs that
  left the queue when accounting is enabled; without accounting, the exit
  status files the batch script writes.
* Cancel: ``scancel``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import re
import time
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
)

from .mpi import MPI_COMMANDS, MPI_PLACEMENTS, MPI_RANK_VARS, mpi_run_args, refuse_slurm_wrapper
from .slurm_nodes import PLACEMENT_FORMAT, SQUEUE_FORMAT, blocked, parse_placements, parse_sinfo, parse_slurm_conf

log = logging.getLogger(__name__)  # simctl.plugins.launchers.slurm: under the "simctl" logger

#: every state squeue or sacct reports, and what it means here
STATES: dict[str, Status] = {
    "PENDING": Status.QUEUED, "CONFIGURING": Status.QUEUED, "REQUEUED": Status.QUEUED,
    "REQUEUE_FED": Status.QUEUED, "REQUEUE_HOLD": Status.QUEUED, "RESV_DEL_HOLD": Status.QUEUED,
    "RUNNING": Status.RUNNING, "COMPLETING": Status.RUNNING, "RESIZING": Status.RUNNING,
    "SIGNALING": Status.RUNNING, "STAGE_OUT": Status.RUNNING,
    "SUSPENDED": Status.PAUSED, "STOPPED": Status.PAUSED,
    "COMPLETED": Status.COMPLETED,
    "FAILED": Status.FAILED, "TIMEOUT": Status.FAILED, "OUT_OF_MEMORY": Status.FAILED,
    "NODE_FAIL": Status.FAILED, "BOOT_FAIL": Status.FAILED, "DEADLINE": Status.FAILED,
    "PREEMPTED": Status.FAILED, "SPECIAL_EXIT": Status.FAILED,
    "CANCELLED": Status.CANCELLED, "REVOKED": Status.CANCELLED,
}
REASONS = {"TIMEOUT": "time limit reached", "OUT_OF_MEMORY": "out of memory", "NODE_FAIL": "node failure",
           "BOOT_FAIL": "node boot failure", "DEADLINE": "deadline reached", "PREEMPTED": "preempted"}


#: characters sbatch's ``#SBATCH`` line parser passes through without quoting
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.,:/=+@%[]")


def sbatch_quote(value: str) -> str:
    """``value`` written so that sbatch's ``#SBATCH`` parser reads it back
    unchanged: that parser splits on whitespace, takes ``'`` and ``"`` as
    quotes, ``\\`` as an escape and an unquoted ``#`` as the start of a comment."""
    if "\n" in value or "\r" in value:
        raise ConfigError(f"a batch directive cannot hold a line break: {value!r}")
    if value and all(c in _PLAIN for c in value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def slurm_filename(path: str) -> str:
    """A path for ``--output``/``--error`` with Slurm's filename patterns
    (``%j``, ``%x``...) disarmed, so a ``%`` in it stays a ``%``."""
    return path.replace("%", "%%")


def sbatch_directives(args: dict[str, Any]) -> list[str]:
    """``{"nodes": 2, "exclusive": None, "output": "/a b"}`` -> the text after
    ``#SBATCH`` on each line: ``--nodes=2``, ``--exclusive``, ``--output="/a b"``."""
    out: list[str] = []
    for key, value in args.items():
        key = key.lstrip("-")
        flag = f"-{key}" if len(key) == 1 else f"--{key}"
        if value is None:
            out.append(flag)
        elif len(key) == 1:
            out.append(f"{flag} {sbatch_quote(str(value))}")
        else:
            out.append(f"{flag}={sbatch_quote(str(value))}")
    return out


#: pending reasons that never clear by themselves: the job as submitted will never start
#: (Slurm's "Job Reason Codes"; see docs/test-slurm.md for which were observed here)
NEVER_STARTS = frozenset({
    "PartitionConfig", "BadConstraints", "DependencyNeverSatisfied", "PartitionTimeLimit", "InvalidAccount",
    "InvalidQOS", "AccountNotAllowed", "QOSNotAllowed", "ReservationDeleted", "DeadLine", "MaxMemPerLimit",
})


def map_state(raw: str, exit_code: int | None = None, reason: str = "") -> JobStatus:
    """A Slurm state (``CANCELLED by 0`` included) as a JobStatus; an unknown
    state is reported as UNKNOWN with the state Slurm printed. A job PENDING
    for a reason that never clears (``PartitionConfig``, ``BadConstraints``...)
    is FAILED: waiting would be forever."""
    word = raw.split()[0].rstrip("+") if raw.strip() else ""
    status = STATES.get(word)
    if status is None:
        return JobStatus(Status.UNKNOWN, exit_code, f"unknown Slurm state {raw!r}", raw=raw)
    if word == "PENDING" and reason.split(",")[0].strip() in NEVER_STARTS:
        return JobStatus(Status.FAILED, None, f"can never start: pending for reason {reason} (the request does not "
                         "fit the partition's nodes or limits; it was cancelled)", raw=word)
    why = REASONS.get(word, "")
    if reason and reason not in ("None", "NonZeroExitCode"):
        why = f"{why}; {reason}" if why else reason
    if status is Status.FAILED and not why and exit_code:
        why = f"exited with code {exit_code}"
    return JobStatus(status, exit_code if status.is_terminal else None, why, raw=word)


def parse_squeue(text: str) -> dict[str, JobStatus]:
    """Parse ``squeue -h -r -t all -O JobArrayID:|,State:|,Reason:|,exit_code:|...``
    (:data:`SQUEUE_FORMAT`; further columns are ignored). The exit code column is
    the raw wait status (exit code << 8 | signal)."""
    out: dict[str, JobStatus] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) < 4 or not parts[0]:
            raise ValueError(f"unexpected squeue line {line!r}")
        job_id, state, reason, code = parts[:4]
        wait = int(code) if code.lstrip("-").isdigit() else None
        rc = None if wait is None else (wait >> 8 if wait & 0x7F == 0 else -(wait & 0x7F))
        out[job_id] = map_state(state, rc, reason)
    return out


def parse_sacct(text: str) -> dict[str, JobStatus]:
    """Parse ``sacct -n -P -X -o JobID,State,ExitCode`` (``3:0`` = code:signal)."""
    out: dict[str, JobStatus] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 3:
            raise ValueError(f"unexpected sacct line {line!r}")
        job_id, state, code = parts[:3]
        rc_s, _, sig = code.partition(":")
        rc = -int(sig) if sig.isdigit() and int(sig) else (int(rc_s) if rc_s.isdigit() else None)
        out[job_id] = map_state(state, rc)
    return out


def parse_sbatch(output: str) -> str:
    """The job id from ``sbatch --parsable`` (``123`` or ``123;cluster``): the
    first line that is one, wherever sbatch's warnings (``sbatch: warning:
    ...``) are printed around it."""
    for line in output.splitlines():
        job_id = line.split(";")[0].strip()
        if job_id.isdigit():
            return job_id
    raise ValueError(output)


#: what srun prints when Slurm sets a node of its step DOWN (lost past SlurmdTimeout); srun then
#: exits 0 as if its tasks had succeeded (seen with Slurm 22.05, steps and batch members alike)
NODE_FAILURE = re.compile(r"^srun: error: Node failure on (\S+)", re.MULTILINE)


def node_failure(err_path: str, tail: int = 65536) -> str | None:
    """The node srun says was lost, from the end of a step's stderr file; None if none was."""
    try:
        with open(err_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - tail))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    found = NODE_FAILURE.findall(text)
    return found[-1] if found else None


def _member_tasks(rs: RunSettings | None) -> int:
    """How many tasks a member's step runs (what its srun flags ask for; an
    MPMD step's programs together)."""
    if rs is None:
        return 1
    return sum(_own_tasks(r) for r in (rs, *rs.mpmd))


def _own_tasks(rs: RunSettings) -> int:
    if rs.tasks:
        return rs.tasks
    n = rs.run_args.get("ntasks", rs.run_args.get("n"))
    if isinstance(n, int) or (isinstance(n, str) and n.isdigit()):
        return int(n)
    return (rs.nodes or 1) * (rs.tasks_per_node or 1)


#: srun's flags that size and place a launch (``placement_run_args``)
SLURM_PLACEMENT = ("nodes", "N", "ntasks", "n", "ntasks-per-node", "nodelist", "w", "output", "o", "error", "e",
                   "job-name", "J", "jobid", "multi-prog", "chdir", "D")


class SrunSettings(RunSettings):
    """Run settings for srun (and mpirun/mpiexec under Slurm)."""

    supported_run_commands: ClassVar[tuple[str, ...]] = ("srun", *MPI_COMMANDS)
    reserved_run_args: ClassVar[tuple[str, ...]] = ("chdir", "D")
    placement_run_args: ClassVar[Mapping[str, tuple[str, ...]]] = {"srun": SLURM_PLACEMENT, **MPI_PLACEMENTS}

    def set_partition(self, partition: str) -> None:
        """Partition for the step's own allocation."""
        self.set("partition", checks.string("partition", partition))

    def set_exclusive(self) -> None:
        """Do not share nodes with other steps."""
        self.run_args["exclusive"] = None

    def format_run_args(self) -> list[str]:
        if self.run_command in MPI_COMMANDS:
            return mpi_run_args(self)
        args: dict[str, Any] = {}
        for key, value in (("nodes", self.nodes), ("ntasks", self.tasks), ("ntasks-per-node", self.tasks_per_node),
                           ("cpus-per-task", self.cpus_per_task), ("time", self.walltime)):
            if value is not None:
                args[key] = value
        if self.hostlist:
            args["nodelist"] = ",".join(self.hostlist)
        if not any(k in args or k in self.run_args for k in ("ntasks", "n")):
            # srun inside an allocation (a batch job's members, steps under salloc) would
            # otherwise inherit SLURM_NTASKS and run the program once per task of the
            # WHOLE allocation (--ntasks-per-node does not override it): a model without a
            # task count runs once per node, or tasks-per-node times per node
            per_node = self.tasks_per_node or self.run_args.get("ntasks-per-node")
            args["ntasks"] = (self.nodes or 1) * (int(per_node) if per_node and str(per_node).isdigit() else 1)
        if not any(k in args or k in self.run_args for k in ("nodes", "N")):
            # a step inside a multi-node allocation inherits SLURM_NNODES: srun then warns "can't
            # run 1 processes on 3 nodes" into the program's stderr, and a host list only says which
            # nodes to include (srun -w n2 -n2 may add n1): ask for the nodes meant (issue 18)
            tasks = str(args.get("ntasks", self.run_args.get("ntasks", self.run_args.get("n", ""))))
            if self.hostlist:
                args["nodes"] = len(self.hostlist)
            elif tasks == "1":
                args["nodes"] = 1
        if not any(k in self.run_args for k in ("exact", "overlap", "exclusive", "whole")):
            # since Slurm 21.08 a step without --exact takes every CPU of its nodes in the
            # allocation, so the members of one batch job (or steps under salloc) would
            # run one after another instead of side by side
            args["exact"] = None
        args.update(self.run_args)
        return format_flags(args)


class SbatchSettings(BatchSettings):
    """Batch settings for sbatch. ``queue`` is the partition."""

    #: what simctl writes for a store's job: its name, output files, directory, host list, array
    placement_batch_args: ClassVar[tuple[str, ...]] = ("job-name", "J", "output", "o", "error", "e", "chdir", "D",
                                                       "nodelist", "w", "array", "a", "open-mode")

    def set_cpus_per_task(self, cpus: int) -> None:
        """CPUs per task for the allocation."""
        self.set("cpus-per-task", checks.positive_int("cpus_per_task", cpus))


class SlurmLauncher(SchedulerLauncher):
    """Slurm: srun, sbatch, squeue, sacct, scancel."""

    name = "slurm"
    run_commands = ("srun", *MPI_COMMANDS)
    default_run_command = "srun"
    run_settings_class = SrunSettings
    batch_settings_class = SbatchSettings
    allocation_env = "SLURM_JOB_ID"
    probe_command = "sbatch"
    array_index = "${SLURM_ARRAY_TASK_ID}"
    directive_prefix = "#SBATCH"
    array_base = 0
    cancel_ok_codes = (0,)
    accepted_options = {**SchedulerLauncher.accepted_options,
                        "accounting": "whether sacct knows finished jobs (default: asked of scontrol once)"}
    local_rank_vars = {"srun": ("SLURM_LOCALID",), **MPI_RANK_VARS, None: ()}

    def resolve_run_command(self, run_command: str | None) -> str | None:
        """The base's check; ``mpiexec`` that is Slurm's own wrapper refused, as SmartSim does
        (``mpirun`` may be the same wrapper here and is kept: it runs as srun, tested)."""
        command = super().resolve_run_command(run_command)
        if command == "mpiexec":
            refuse_slurm_wrapper(command)
        return command

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._accounting: bool | None = options.get("accounting")
        self._partitions: tuple[dict[str, dict[str, int]], str] | None = None
        self._sinfo: dict[str, dict[str, int]] | None = None
        #: (job id, never) pairs already logged: each wait for the experiment's own nodes is said once
        self._said: set[tuple[str, bool]] = set()
        #: srun steps that end by themselves once signalled (a store's shard saving its data), by job id:
        #: their step names (see step_name) and steps (their stop_grace shortened if their node is lost)
        self._saving: dict[str, tuple[str, ProcessStep]] = {}
        #: those of them the experiment signalled to stop
        self._stopping: set[str] = set()
        #: every srun step's (and batch member's) stderr file, by job id: where srun says a node was lost
        self._errs: dict[str, str] = {}

    # -- srun steps that must finish their own stop (issue 18) ---------------------------------

    @staticmethod
    def step_name(step: ProcessStep) -> str | None:
        """The Slurm step name given to an srun step with a ``stop_grace`` of
        its own (a store's shard, which must finish its final save when
        stopped), so that its tasks can be signalled by name (``scancel
        --signal=TERM <job>.<step>``); None for the others, and for a step
        named by its run settings. Pure: the same for ``preview`` and ``start``."""
        rs = step.run_settings
        if rs is None or rs.run_command != "srun" or step.stop_grace is None:
            return None
        if any(k in rs.run_args for k in ("job-name", "J")):
            return None
        return "simctl-" + hashlib.sha1(f"{step.cwd}\0{step.key}".encode()).hexdigest()[:12]

    #: run arguments that say where a step runs: with any of them, simctl does not place it
    PLACING = ("nodelist", "w", "relative", "r", "exclude", "x", "nodefile", "F")

    def _named(self, step: ProcessStep, nodes: int | None = None) -> RunSettings | None:
        """``step``'s run settings with its step name (:meth:`step_name`), or None
        if it has none. A store's shard (``<store>/shard-<i>``) placed nowhere
        (no ``hosts=``, no host list or node run argument) in a multi-node
        allocation runs on node ``i mod N`` of its N nodes (``--relative``):
        one shard per node when there are as many nodes as shards, where
        Slurm would pack them onto the first node (issue 18). ``nodes``: the
        allocation's node count (a batch job's); by default the allocation
        this process runs in, if any."""
        name = self.step_name(step)
        if name is None or step.run_settings is None:
            return None
        rs = copy.deepcopy(step.run_settings)
        rs.run_args["job-name"] = name
        shard = re.fullmatch(r".+/shard-(\d+)", step.key)
        if nodes is None:
            env = os.environ.get("SLURM_JOB_NUM_NODES", os.environ.get("SLURM_NNODES", ""))
            nodes = int(env) if env.isdigit() and self.inside_allocation() else 1
        if shard and nodes > 1 and not rs.hostlist and not any(k in rs.run_args for k in self.PLACING):
            rs.run_args["relative"] = int(shard.group(1)) % nodes
        return rs

    @staticmethod
    def job_nodes(bs: BatchSettings) -> int:
        """The node count a batch job asks for (``nodes``, ``--nodes``/``-N`` as a
        number, else its host list's length); 1 when it does not say."""
        asked = bs.nodes or bs.batch_args.get("nodes", bs.batch_args.get("N"))
        if isinstance(asked, int) or (isinstance(asked, str) and asked.isdigit()):
            return int(asked)
        return len(bs.hostlist) if bs.hostlist else 1

    def render_script(self, job: BatchJob) -> str:
        """The batch script; a store's shards in a job of N > 1 nodes placed one
        per node (``--relative``, see :meth:`_named`), as steps under salloc are."""
        nodes = self.job_nodes(job.batch_settings)
        if nodes > 1 and not job.batch_settings.array:
            members = []
            for m in job.members:
                named = self._named(m, nodes)
                members.append(m if named is None else attrs.evolve(m, run_settings=named))
            job = attrs.evolve(job, members=members)
        return super().render_script(job)

    def command(self, step: ProcessStep) -> list[str]:
        named = self._named(step)
        return super().command(step if named is None else attrs.evolve(step, run_settings=named))

    def start(self, launches: Sequence[Launch]) -> None:
        for launch in launches:  # steps of an allocation run through the process launcher's own command()
            named = self._named(launch) if isinstance(launch, ProcessStep) else None
            if named is not None and isinstance(launch, ProcessStep):
                launch.run_settings = named
        super().start(launches)
        for launch in launches:
            for step in launch.members if isinstance(launch, BatchJob) else [launch]:
                if step.job_id and step.err and (step.run_settings is None or step.run_settings.run_command == "srun"):
                    self._errs[step.job_id] = step.err
            if isinstance(launch, ProcessStep) and launch.job_id and launch.job_id.startswith("step:"):
                name = str(launch.run_settings.run_args.get("job-name", "")) if launch.run_settings else ""
                if name.startswith("simctl-") and launch.stop_grace is not None:
                    self._saving[launch.job_id] = (name, launch)

    def stop(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Steps that must finish their own stop get SIGTERM in their tasks
        (``scancel --signal=TERM`` of their Slurm steps), not in ``srun``,
        which would kill them at once (``srun: forcing job termination``,
        exit 137: a store's final save lost). They are waited for, as long as
        their ``stop_grace`` allows; then everything is stopped as usual."""
        saving = {j: self._saving[j] for j in job_ids if j in self._saving}
        if saving and self.inside_allocation():
            self._stopping.update(saving)
            self._signal_steps(saving)
        return super().stop(job_ids)

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        out = super().status(job_ids)
        for j in self._stopping.intersection(out):  # ended because the experiment signalled them
            st = out[j]
            if st.done and st.status is not Status.CANCELLED:
                out[j] = JobStatus(Status.CANCELLED, st.returncode, "stopped by the experiment"
                                   + (f" (exit code {st.returncode})" if st.returncode else ""), raw=st.raw)
        for j, st in out.items():
            if st.status in (Status.COMPLETED, Status.FAILED) and j in self._errs and j not in self._stopping:
                node = node_failure(self._errs[j])
                if node is not None:
                    out[j] = JobStatus(Status.FAILED, st.returncode, f"node failure: Slurm lost node {node} "
                                       f"(srun: 'Node failure on {node}'; srun exited {st.returncode}, so the "
                                       "program's own end is unknown)", raw="NODE_FAIL")
        return out

    #: seconds a stop waits for a shard on a node that Slurm says does not respond, before srun is killed
    LOST_GRACE = 3.0

    def _signal_steps(self, saving: dict[str, tuple[str, ProcessStep]]) -> None:
        alloc = os.environ.get(self.allocation_env, "")
        try:
            listing = self.run(["squeue", "-h", "-s", "-j", alloc, "-o", "%i|%j|%N"]).stdout
        except SchedulerError as exc:
            log.warning("could not list the steps of allocation %s (%s): stopping them through srun", alloc, exc)
            return
        rows = [ln.split("|") for ln in listing.splitlines() if ln.count("|") == 2]
        names = {name: j for j, (name, _) in saving.items()}
        steps = {row[0]: (names[row[1]], row[2]) for row in rows if row[1] in names}
        created = {j for j, _ in steps.values()}
        for j, (_, step) in saving.items():
            if j not in created:
                # srun still waits for its step to be created ("Requested nodes are busy"): no task
                # started, nothing to save; SIGTERM makes srun cancel it ("Cancelled pending job
                # step"), SIGKILL follows soon. Waited for, it blocked the stop (issue 18)
                step.stop_grace = min(step.stop_grace or 0.0, self.LOST_GRACE)
        if not steps:
            return
        # Slurm 22.05's scancel signals the steps' tasks, then exits 225 with "Kill job error on job
        # step id J: Invalid job id specified" (seen every time): its exit code says nothing here
        self.run(["scancel", "--signal=TERM", *steps], ok_codes=range(256))
        deadline = time.monotonic() + max(saving[j][1].stop_grace or 0.0 for j in created)
        waiting, asked = sorted(created), time.monotonic()
        while waiting and time.monotonic() < deadline:
            done = self.status(waiting)
            waiting = [j for j in waiting if not done[j].done]
            if waiting and time.monotonic() - asked > 2:
                asked = time.monotonic()
                lost = self._lost_nodes({node for j, node in steps.values() if j in waiting})
                for j, node in steps.values():
                    if j in waiting and node in lost:
                        # the node's slurmd and slurmstepd are gone: srun would wait for its tasks for
                        # ever (seen: "Job step aborted: Waiting up to 32 seconds", still there 10 min
                        # later), and so would a stop with an unlimited grace (issue 18)
                        step = saving[j][1]
                        log.error("Slurm step %s (%s) is on node %s, which Slurm says is %s: its tasks cannot "
                                  "be waited for (their final save, if any, is lost); srun is stopped",
                                  j, step.name, node, lost[node])
                        step.stop_grace = self.LOST_GRACE
                        waiting.remove(j)
            if waiting:
                time.sleep(0.1)

    def _lost_nodes(self, nodes: set[str]) -> dict[str, str]:
        """Those of ``nodes`` that Slurm says are down or not responding, with their state."""
        if not nodes:
            return {}
        try:
            text = self.run(["sinfo", "-h", "-N", "-n", ",".join(sorted(nodes)), "-o", "%N|%T"]).stdout
        except SchedulerError:
            return {}
        out = {}
        for line in text.splitlines():
            node, _, state = line.partition("|")
            if state.endswith("*") or state.startswith(("down", "fail", "drain")):
                out[node] = "not responding" if state.endswith("*") else state
        return out

    def directives(self, job: BatchJob) -> list[str]:
        bs, n_members = job.batch_settings, len(job.members)
        args: dict[str, Any] = {"job-name": self.job_name(job.name), "output": slurm_filename(job.out),
                                "error": slurm_filename(job.err)}
        if bs.nodes:
            args["nodes"] = bs.nodes
        if bs.time:
            args["time"] = bs.time
        if bs.queue:
            args["partition"] = bs.queue
        if bs.account:
            args["account"] = bs.account
        if bs.hostlist:
            args["nodelist"] = ",".join(bs.hostlist)
        if bs.array:
            args["array"] = f"0-{n_members - 1}"
            args["open-mode"] = "append"  # the elements share the job's output files
        elif not any(k in bs.batch_args for k in ("ntasks", "n", "exclusive", "ntasks-per-node")):
            tasks = sum(_member_tasks(m.run_settings) for m in job.members)
            if bs.nodes or bs.hostlist:
                # the user asked for nodes, not tasks: room for every member at once, at most what
                # those nodes have (members beyond it wait their turn inside the allocation, as srun
                # steps queue for CPUs; slurm.conf says how many), and never whole nodes unless asked:
                # the experiment's own store may run on them (issue 21)
                nodes = bs.nodes or len(bs.hostlist)
                cpus = self.node_cpus(bs.queue)
                args["ntasks"] = max(nodes, min(tasks, nodes * cpus) if cpus else tasks)
            else:  # room for every member at once: the sum of the members' tasks
                args["ntasks"] = tasks
        args.update(bs.batch_args)
        return sbatch_directives(args)

    #: states in which Slurm killed a job (its members' exit statuses are the kill's doing)
    KILLED = frozenset({"TIMEOUT", "CANCELLED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
                        "PREEMPTED", "REVOKED"})

    def killed(self, job: JobStatus) -> bool:
        return job.raw in self.KILLED

    def default_batch_settings(self, step: ProcessStep) -> BatchSettings:
        """A model submitted on its own asks for what its step needs (its task
        count), not for whole nodes: its run settings' ``nodes`` say where the
        step runs, not that it owns them."""
        bs = super().default_batch_settings(step)
        bs.set("ntasks", _member_tasks(step.run_settings))
        return bs

    def submit_command(self, job: BatchJob, script_path: str) -> list[str]:
        return ["sbatch", "--parsable", script_path]

    def parse_submit(self, output: str, argv: Sequence[str]) -> str:
        try:
            return parse_sbatch(output)
        except ValueError:
            raise SchedulerError(argv, 0, output, "sbatch printed no job id") from None

    def partitions(self) -> tuple[dict[str, dict[str, int]], str]:
        """The CPUs of every node by partition, and the default partition, as
        the cluster's ``slurm.conf`` (``$SLURM_CONF``, else
        ``/etc/slurm/slurm.conf``) says: read once, without a command (so
        ``preview`` runs none); ``({}, "")`` where there is no such file
        (a configless site)."""
        if self._partitions is None:
            try:
                with open(os.environ.get("SLURM_CONF") or "/etc/slurm/slurm.conf", encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError):
                text = ""
            self._partitions = parse_slurm_conf(text)
        return self._partitions

    def _partitions_now(self) -> dict[str, dict[str, int]]:
        """:meth:`partitions`, else (no slurm.conf here) one ``sinfo``, asked once."""
        parts = self.partitions()[0]
        if not parts and self._sinfo is None:
            try:
                self._sinfo = parse_sinfo(self.run(["sinfo", "-h", "-N", "-o", "%P|%N|%c"]).stdout)
            except SchedulerError:
                self._sinfo = {}
        return parts or self._sinfo or {}

    def node_cpus(self, partition: str | None) -> int:
        """The fewest CPUs a node of ``partition`` (None: the default one) has; 0 if unknown."""
        parts, default = self.partitions()
        cpus = parts.get(partition or default, {}).values()
        return min(cpus) if cpus else 0

    def accounting(self) -> bool:
        """Whether Slurm accounting is on (then sacct knows finished jobs)."""
        if self._accounting is None:
            proc = self.run(["scontrol", "show", "config"])
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("AccountingStorageType")), "")
            self._accounting = "accounting_storage/none" not in line and bool(line)
        return self._accounting

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        argv = ["squeue", "-h", "-r", "-t", "all", "-j", ",".join(job_ids), "-O", f"{SQUEUE_FORMAT},{PLACEMENT_FORMAT}"]
        proc = self.run(argv, ok_codes=(0, 1))
        if proc.returncode == 1:
            if "Invalid job id" not in proc.stderr:
                raise SchedulerError(argv, 1, proc.stderr + proc.stdout)
            known: dict[str, JobStatus] = {}  # none of them is in the queue any more
        else:
            try:
                known = parse_squeue(proc.stdout)
            except ValueError as exc:
                raise SchedulerError(argv, 0, proc.stdout, f"squeue printed something unexpected ({exc})") from None
        known.update(self._waiting_for_own_nodes(proc.stdout if proc.returncode == 0 else ""))
        for job_id, st in list(known.items()):  # an array's own id: take its first element's state
            base = job_id.split("_")[0]
            known.setdefault(base, st)
        never = sorted({j.split("_")[0] for j, st in known.items() if st.raw == "PENDING" and st.status.is_terminal})
        if never:  # pending forever: reported FAILED, so take it out of the queue too
            self.run(self.cancel_command(never), ok_codes=(0, 1))
        gone = [j for j in job_ids if j not in known]
        if gone and self.accounting():
            argv = ["sacct", "-n", "-P", "-X", "-j", ",".join(gone), "-o", "JobID,State,ExitCode"]
            try:
                known.update(parse_sacct(self.run(argv).stdout))
            except ValueError as exc:
                raise SchedulerError(argv, 0, "", f"sacct printed something unexpected ({exc})") from None
        return known

    def _waiting_for_own_nodes(self, listing: str) -> dict[str, JobStatus]:
        """The pending jobs of ``listing`` that wait for nodes this launcher's
        own running jobs hold (issue 21), as statuses saying so: QUEUED, or
        FAILED when jobs that run until stopped leave too little for them
        (the query then cancels them). Each is logged once."""
        places = parse_placements(listing)
        if not any(p.state == "PENDING" for p in places.values()) or not any(
                p.state == "RUNNING" for p in places.values()):
            return {}
        with self._lock:
            names = {j: b.name for j, b in self._jobs.items()}
            forever = {j for j, b in self._jobs.items()
                       if any(getattr(m.entity, "runs_until_stopped", False) for m in b.members)}
        out = {}
        for job_id, b in blocked(places, self._partitions_now(), forever, names).items():
            status = Status.FAILED if b.never else Status.QUEUED
            out[job_id] = JobStatus(status, None, b.message, raw="PENDING")
            if (job_id, b.never) not in self._said:
                self._said.add((job_id, b.never))
                (log.error if b.never else log.warning)("Slurm job %s (%s): %s", job_id, names.get(job_id, "?"),
                                                        b.message)
        return out

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]


@simctl.hookimpl
def simctl_register_launchers() -> list[type[SchedulerLauncher]]:
    return [SlurmLauncher]
