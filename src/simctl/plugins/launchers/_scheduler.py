"""What the batch-scheduler launchers (slurm, pbs, lsf) share.

* Every scheduler command goes through :meth:`SchedulerLauncher.run`, which
  turns a missing command, a failure or unexpected output into a
  :class:`simctl.SchedulerError` naming the command and what it printed.
* Work is submitted as batch jobs. A batch job runs its members in the
  background and records each member's exit status in a file
  (``<job dir>/<member>.rc``), so member statuses are known without
  accounting, from ONE queue query per poll cycle plus reading those files.
* Inside an allocation, models without batch settings start as job steps:
  the run command (``srun``, ``mpirun``, ``jsrun``...) runs as a local process,
  watched by the local launcher's process machinery, so a step's end is
  noticed at once and costs no scheduler command at all.

Job ids: a batch job's member is ``<job id>:<member index>``; a step run
inside an allocation is ``step:<n>``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import threading
from typing import Any, ClassVar, Mapping, Sequence

from simctl import BatchSettings, ConfigError, JobStatus, Launcher, LaunchStep, SchedulerError, Status

from .local import LocalLauncher

STEP = "step:"
RC_WATCH = 0.2  # seconds between looks at the batch jobs' exit-status files


class SchedulerLauncher(Launcher):
    """Base of launchers for batch schedulers. Subclasses implement
    :meth:`submit_command`, :meth:`parse_submit`, :meth:`query`,
    :meth:`cancel_command` and :meth:`directives`."""

    #: environment variable that is set inside one of this system's allocations
    allocation_env: ClassVar[str] = ""
    #: the command whose presence on PATH says this system is here
    probe_command: ClassVar[str] = ""
    #: shell expression for the array index inside an array job ("${SLURM_ARRAY_TASK_ID}")
    array_index: ClassVar[str] = ""
    #: directive prefix in batch scripts ("#SBATCH", "#PBS", "#BSUB")
    directive_prefix: ClassVar[str] = ""
    poll_bounds = (0.2, 10.0)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._steps = LocalLauncher(**{k: v for k, v in options.items()
                                       if k in ("max_concurrent", "stop_grace")})
        self._lock = threading.Lock()
        #: scheduler job id -> (job directory, is an array job)
        self._jobs: dict[str, tuple[str, bool]] = {}
        self._cancelled: set[str] = set()
        #: batch job directories whose members have not all left an exit status
        self._watching: dict[str, int] = {}
        self._watcher: threading.Thread | None = None
        self._closing = threading.Event()
        self.commands_run = 0

    # -- discovery ------------------------------------------------------------------

    @classmethod
    def detect(cls) -> tuple[int, str]:
        if cls.allocation_env and os.environ.get(cls.allocation_env):
            return 100, f"inside {cls.name} allocation {os.environ[cls.allocation_env]} (${cls.allocation_env})"
        path = shutil.which(cls.probe_command) if cls.probe_command else None
        if path:
            return 10, f"{cls.probe_command} found at {path}"
        return 0, f"{cls.probe_command} not on PATH"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if cls.probe_command and not shutil.which(cls.probe_command):
            return f"{cls.probe_command} not on PATH (this machine has no {cls.name})"
        return None

    def inside_allocation(self) -> bool:
        return bool(self.allocation_env and os.environ.get(self.allocation_env))

    def bind(self, wakeup: threading.Event) -> None:
        super().bind(wakeup)
        self._steps.bind(wakeup)

    # -- commands ---------------------------------------------------------------------------

    def run(self, argv: Sequence[str], input: str | None = None, ok_codes: Sequence[int] = (0,),
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a scheduler command; raise SchedulerError if it is missing or fails."""
        self.commands_run += 1
        try:
            proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise SchedulerError(argv, None, "", f"{argv[0]} not found on PATH; is {self.name} installed "
                                 "and loaded (module load ...)?") from None
        except subprocess.TimeoutExpired as exc:
            raise SchedulerError(argv, None, str(exc.stderr or ""), f"{argv[0]} did not answer in {timeout} s") from None
        if proc.returncode not in ok_codes:
            raise SchedulerError(argv, proc.returncode, (proc.stderr + proc.stdout).strip())
        return proc

    # -- subclass interface -----------------------------------------------------------------

    def job_name(self, name: str) -> str:
        """A job name the scheduler accepts."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "simctl"

    def directives(self, group: LaunchStep, bs: BatchSettings, n_members: int) -> list[str]:
        """The scheduler options for a batch job, without the prefix."""
        raise NotImplementedError

    def submit_command(self, script_path: str) -> list[str]:
        raise NotImplementedError

    def parse_submit(self, output: str, argv: Sequence[str]) -> str:
        """The job id from the submit command's output."""
        raise NotImplementedError

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Status of scheduler jobs, from one command. Jobs the scheduler no
        longer knows are left out."""
        raise NotImplementedError

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        raise NotImplementedError

    def default_batch_settings(self, step: LaunchStep) -> BatchSettings:
        """Batch settings for a model submitted on its own."""
        assert self.batch_settings_class is not None
        rs = step.run_settings
        return self.batch_settings_class(nodes=rs.nodes if rs else None,
                                         time=rs.walltime if rs else None)

    # -- launching ---------------------------------------------------------------------------

    def prepare_batch(self, group: LaunchStep) -> LaunchStep:
        bs = group.batch_settings
        assert bs is not None
        jobdir = self.job_dir(group)
        members = group.members
        head = ["#!/bin/bash"] + [f"{self.directive_prefix} {d}" for d in self.directives(group, bs, len(members))]
        body = [f"# simctl batch job {group.name}: {len(members)} member(s)", "set -u", *bs.preamble]
        run_lines = []
        for i, m in enumerate(members):
            # unset first, then set; values quoted as they are (no whitespace squeezing)
            words = ([f"-u {shlex.quote(k)}" for k, v in m.env.items() if v is None]
                     + [shlex.quote(f"{k}={v}") for k, v in m.env.items() if v is not None])
            prefix = f"env {' '.join(words)} " if words else ""
            rc = shlex.quote(os.path.join(jobdir, f"{i}.rc"))
            run_lines.append(f"cd {shlex.quote(m.cwd)} && {prefix}{m.command_line()} "
                             f"> {shlex.quote(m.out)} 2> {shlex.quote(m.err)}; echo $? > {rc}")
        if bs.array:
            body.append(f'case "{self.array_index}" in')
            body += [f"  {self.array_base + i}) {line} ;;" for i, line in enumerate(run_lines)]
            body.append("esac")
        else:
            body += [f"( {line} ) &" for line in run_lines] + ["wait"]
        group.script = "\n".join(head + body) + "\n"
        group.argv = self.submit_command(os.path.join(jobdir, "job.sh"))
        group.env = {"SIMCTL_JOB_DIR": jobdir}
        return group

    #: first array index (0 for Slurm, 1 for PBS/LSF)
    array_base: ClassVar[int] = 0

    @staticmethod
    def job_dir(group: LaunchStep) -> str:
        """Where a batch job's script and exit-status files go: the first free
        ``<cwd>/.simctl-batch/<name>-<n>``. Deterministic, so that
        ``Experiment.preview`` shows exactly the script ``start`` submits."""
        base = os.path.join(group.cwd, ".simctl-batch")
        n = 1
        while os.path.exists(os.path.join(base, f"{group.name}-{n}")):
            n += 1
        return os.path.join(base, f"{group.name}-{n}")

    def _submit(self, group: LaunchStep) -> None:
        jobdir = group.env["SIMCTL_JOB_DIR"]
        assert jobdir and group.script is not None
        os.makedirs(jobdir, exist_ok=True)
        path = os.path.join(jobdir, "job.sh")
        with open(path, "w") as fh:
            fh.write(group.script)
        proc = self.run(group.argv, input=self.submit_input(group))
        job_id = self.parse_submit(proc.stdout + proc.stderr, group.argv)
        group.job_id = job_id
        with self._lock:
            self._jobs[job_id] = (jobdir, bool(group.batch_settings and group.batch_settings.array))
            self._watching[jobdir] = len(group.members)
        for i, m in enumerate(group.members):
            m.job_id = f"{job_id}:{i}"
        self._ensure_watcher()

    def submit_input(self, group: LaunchStep) -> str | None:
        """What the submit command reads on standard input (LSF: the script)."""
        return None

    # -- noticing ends at once -------------------------------------------------------------------

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch, name=f"simctl-{self.name}-rc", daemon=True)
                self._watcher.start()

    def _watch(self) -> None:
        """Wake the monitor when a member leaves its exit status, so its end is
        seen within a fraction of a second, without any scheduler command. The
        files are counted every ``RC_WATCH`` seconds: a few directory reads."""
        seen: dict[str, int] = {}
        while not self._closing.wait(RC_WATCH):
            with self._lock:
                dirs = dict(self._watching)
                if not dirs:
                    self._watcher = None  # under the lock: a new job starts a new watcher
                    return
            for jobdir, members in dirs.items():
                try:
                    n = sum(name.endswith(".rc") for name in os.listdir(jobdir))
                except OSError:
                    n = 0
                if n != seen.get(jobdir, 0):
                    seen[jobdir] = n
                    if self.wakeup is not None:
                        self.wakeup.set()
                if n >= members:
                    with self._lock:
                        self._watching.pop(jobdir, None)

    def start(self, steps: Sequence[LaunchStep]) -> None:
        local: list[LaunchStep] = []
        submitted: list[str] = []
        try:
            for step in steps:
                if step.members:
                    self._submit(step)
                    submitted.append(str(step.job_id))
                elif self.inside_allocation():
                    local.append(step)
                else:  # a model on its own outside an allocation: a batch job of one
                    group = self.prepare_batch(self.solo_group(step))
                    self._submit(group)
                    submitted.append(str(group.job_id))
        except BaseException:
            # a submission failed: nothing of this start() may be left running untracked
            self._withdraw(submitted)
            raise
        if local:
            self._steps.start(local)
            for s in local:
                s.job_id = STEP + str(s.job_id)

    def _withdraw(self, job_ids: Sequence[str]) -> None:
        """Cancel jobs submitted by a start() that then failed (best effort)."""
        if not job_ids:
            return
        with self._lock:
            for j in job_ids:
                self._jobs.pop(j, None)
        try:
            self.run(self.cancel_command(job_ids), ok_codes=self.cancel_ok_codes)
        except SchedulerError:
            pass  # the error being raised already says what went wrong

    def solo_group(self, step: LaunchStep) -> LaunchStep:
        """A batch job holding one model, for a model started outside an allocation."""
        return LaunchStep(name=step.name, argv=[], cwd=step.cwd,
                          out=os.path.join(step.cwd, f"{step.name}.batch.out"),
                          err=os.path.join(step.cwd, f"{step.name}.batch.err"),
                          batch_settings=self.default_batch_settings(step), members=[step])

    def preview(self, step: LaunchStep) -> str:
        if step.members or self.inside_allocation():
            return super().preview(step)
        return super().preview(self.prepare_batch(self.solo_group(step)))

    # -- watching ---------------------------------------------------------------------------

    def status(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        steps = [j[len(STEP):] for j in job_ids if j.startswith(STEP)]
        out = {STEP + k: v for k, v in self._steps.status(steps).items()} if steps else {}
        members = [j for j in job_ids if not j.startswith(STEP)]
        if not members:
            return out
        rcs = {m: self._rc(m) for m in members}
        # a member that left exit status 0 is done whatever its job does next, so
        # the queue is asked only about jobs with a member that did not (or failed)
        parents = sorted({m.rpartition(":")[0] for m, rc in rcs.items() if rc != 0})
        known = self.query(parents) if parents else {}
        for m in members:
            parent, _, index = m.rpartition(":")
            # read again what was missing: a member may have ended (and its job with it)
            # between the first read and the query, which would then look like a lost status
            rc = rcs[m] if rcs[m] is not None else self._rc(m)
            out[m] = self._member_status(parent, int(index), known, rc)
        return out

    def _rc(self, member: str) -> int | None:
        """The exit status a batch job's member left, if it ended."""
        parent, _, index = member.rpartition(":")
        with self._lock:
            jobdir = self._jobs.get(parent, ("", False))[0]
        return _read_rc(os.path.join(jobdir, f"{index}.rc")) if jobdir else None

    def killed(self, job: JobStatus) -> bool:
        """Whether the scheduler's state says the job was killed (time limit,
        cancellation, node failure...), so its members' non-zero exit statuses
        are the kill's doing. By default no state says so."""
        return False

    def array_task_id(self, parent: str, index: int) -> str:
        """The scheduler's id of array element ``index`` (from ``array_base``)."""
        return f"{parent}_{index}"

    def _member_status(self, parent: str, index: int, known: dict[str, JobStatus],
                       rc: int | None) -> JobStatus:
        with self._lock:
            is_array = self._jobs.get(parent, ("", False))[1]
        job = known.get(parent)
        if is_array:
            job = known.get(self.array_task_id(parent, self.array_base + index), job)
        if rc is not None:
            if parent in self._cancelled and rc != 0:
                return JobStatus(Status.CANCELLED, rc, "cancelled by the experiment")
            if rc == 0:
                return JobStatus(Status.COMPLETED, 0, raw=job.raw if job else "")
            if job is not None and self.killed(job):
                # killed with its job (time limit, cancelled by someone else, node failure...):
                # the job's fate says more than the exit status the kill left
                return JobStatus(job.status, rc, f"job {parent} ended {job.raw}"
                                 + (f": {job.reason}" if job.reason else "") + f" (exit code {rc})", raw=job.raw)
            return JobStatus(Status.FAILED, rc, f"exited with code {rc}", raw=job.raw if job else "")
        if job is None:
            return JobStatus(Status.UNKNOWN, None, f"job {parent} vanished from the queue and left no exit "
                             "status", final=True)
        if job.status.is_terminal:
            if parent in self._cancelled:
                return JobStatus(Status.CANCELLED, job.returncode, "cancelled by the experiment", raw=job.raw)
            if job.status is Status.COMPLETED:
                return JobStatus(Status.FAILED, None, f"job {parent} ended without this member's exit status",
                                 raw=job.raw)
            return JobStatus(job.status, job.returncode,
                             f"job {parent} ended {job.raw or job.status.value}"
                             + (f": {job.reason}" if job.reason else ""), raw=job.raw)
        return job

    def stop(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        steps = [j[len(STEP):] for j in job_ids if j.startswith(STEP)]
        if steps:
            self._steps.stop(steps)
        parents = sorted({j.rpartition(":")[0] for j in job_ids if not j.startswith(STEP)})
        if parents:
            self._cancelled.update(parents)
            self.run(self.cancel_command(parents), ok_codes=self.cancel_ok_codes)
            self._wait_gone(parents)
        return self.status(job_ids)

    #: exit codes of the cancel command that still mean "done" (a job already gone)
    cancel_ok_codes: ClassVar[tuple[int, ...]] = (0,)

    def _wait_gone(self, parents: Sequence[str], tries: int = 50) -> None:
        """Poll until cancelled jobs leave the running states (bounded)."""
        import time

        delay = 0.05
        for _ in range(tries):
            known = self.query(parents)
            if all(p not in known or known[p].status.is_terminal for p in parents):
                return
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def close(self) -> None:
        self._closing.set()
        self._steps.close()


def _read_rc(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None

