"""The public base of batch-scheduler launchers (Slurm, PBS, LSF, and a third
party's Flux or HTCondor). A subclass fills template methods; the base does
the rest:

* ``directives(job)``: the scheduler options of a batch job, without prefix;
* ``submit_command(job, script_path)`` (and ``submit_input`` for a scheduler
  that reads the script on standard input) and ``parse_submit(output)``;
* ``query(job_ids)``: the status of jobs from ONE command;
* ``cancel_command(job_ids)`` and ``check_cancel(proc)``;
* the class attributes ``directive_prefix``, ``array_index``, ``array_base``,
  ``allocation_env``, ``probe_command``, and optionally ``killed(job)``,
  ``array_task_id``, ``job_name``.

How work runs:

* Outside an allocation, every launch is a batch job: a model on its own is
  a batch job of one member. The script (:meth:`SchedulerLauncher.render_script`,
  a pure function of the job) runs each member in the background, with its
  environment read from a file of mode 0600 in the job directory (so
  secrets never appear in the script), and records each member's exit status
  in ``<job dir>/<member>.rc``. Member statuses come from those files, read
  without any scheduler command, plus ONE ``query`` per poll cycle for the
  jobs with members still running; the core's :class:`FileWatcher` wakes the
  monitor as soon as a file appears.
* Inside an allocation (``allocation_env`` is set), steps without batch
  settings run as job steps: the run command runs as a local process,
  watched by :class:`ProcessLauncher`, so a step's end is noticed at once
  and costs no scheduler command.

Job ids: a batch job's member is ``<job id>:<member index>``; a step run
inside an allocation is ``step:<n>``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .checks import job_name
from .errors import SchedulerError
from .launcher import Launcher, redact
from .processes import ProcessLauncher
from .settings import BatchSettings
from .status import JobStatus, Status
from .steps import BatchJob, Launch, ProcessStep

STEP = "step:"


def env_file(env: Mapping[str, str | None]) -> str:
    """A member's environment as shell lines (``export K='v'``, ``unset K``),
    read by the batch script from a file of mode 0600."""
    lines = [f"unset {k}" if v is None else f"export {k}={shlex.quote(str(v))}" for k, v in env.items()]
    return "\n".join(lines) + "\n" if lines else ""


def _redirect(step: ProcessStep) -> str:
    """A member's output redirections: truncating, or appending (``append_output``)."""
    to = ">>" if step.append_output else ">"
    return f"{to} {shlex.quote(step.out)} 2{to} {shlex.quote(step.err)}"


def read_rc(path: str) -> int | None:
    """The exit status a batch member left in ``path``, or None if it did not end."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.lstrip("-").isdigit() else None


class SchedulerLauncher(Launcher):
    """Base of launchers for batch schedulers. Subclasses implement
    :meth:`directives`, :meth:`submit_command`, :meth:`parse_submit`,
    :meth:`query` and :meth:`cancel_command`."""

    #: environment variable that is set inside one of this system's allocations
    allocation_env: ClassVar[str] = ""
    #: the command whose presence on PATH says this system is here
    probe_command: ClassVar[str] = ""
    #: shell expression for the array index inside an array job ("${SLURM_ARRAY_TASK_ID}")
    array_index: ClassVar[str] = ""
    #: directive prefix in batch scripts ("#SBATCH", "#PBS", "#BSUB")
    directive_prefix: ClassVar[str] = ""
    #: first array index (0 for Slurm, 1 for PBS/LSF)
    array_base: ClassVar[int] = 0
    #: exit codes of the cancel command that may still mean "done" (see check_cancel)
    cancel_ok_codes: ClassVar[tuple[int, ...]] = (0,)
    poll_bounds = (0.2, 10.0)
    accepted_options = dict(ProcessLauncher.accepted_options)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        steps_options = {k: v for k, v in options.items() if k in ProcessLauncher.accepted_options}
        self._steps = ProcessLauncher(**steps_options)
        self._steps.local_rank_vars = self.local_rank_vars
        self._lock = threading.Lock()
        #: scheduler job id -> its batch job
        self._jobs: dict[str, BatchJob] = {}
        self._cancelled: set[str] = set()
        #: member job ids stopped on their own (the rest of their batch job goes on)
        self._stopped: set[str] = set()
        #: scheduler commands run so far (tests and benchmarks count them)
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
        """Whether the driver runs inside one of this scheduler's allocations."""
        return bool(self.allocation_env and os.environ.get(self.allocation_env))

    def bind(self, wakeup: threading.Event) -> None:
        super().bind(wakeup)
        self._steps.bind(wakeup)

    # -- commands ---------------------------------------------------------------------------

    def run(self, argv: Sequence[str], input: str | None = None, ok_codes: Sequence[int] = (0,),
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a scheduler command; raise SchedulerError if it is missing, times
        out or exits with a code not in ``ok_codes``."""
        self.commands_run += 1
        try:
            proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise SchedulerError(argv, None, "", f"{argv[0]} not found on PATH; is {self.name} installed "
                                 "and loaded (module load ...)?") from None
        except subprocess.TimeoutExpired as exc:
            raise SchedulerError(argv, None, str(exc.stderr or ""),
                                 f"{argv[0]} did not answer in {timeout} s") from None
        if proc.returncode not in ok_codes:
            raise SchedulerError(argv, proc.returncode, (proc.stderr + proc.stdout).strip())
        return proc

    # -- template methods ---------------------------------------------------------------------

    def job_name(self, name: str) -> str:
        """A job name the scheduler accepts."""
        return job_name(name)

    def directives(self, job: BatchJob) -> list[str]:
        """The scheduler options of ``job``, without ``directive_prefix``."""
        raise NotImplementedError

    def submit_command(self, job: BatchJob, script_path: str) -> list[str]:
        """The command that submits ``job``, whose script is at ``script_path``."""
        raise NotImplementedError

    def submit_input(self, job: BatchJob, script: str) -> str | None:
        """What the submit command reads on standard input (LSF: the script)."""
        return None

    def parse_submit(self, output: str, argv: Sequence[str]) -> str:
        """The job id from the submit command's output (stdout then stderr)."""
        raise NotImplementedError

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Status of scheduler jobs, from ONE command. Jobs the scheduler no
        longer knows are left out. ``JobStatus.raw`` keeps the scheduler's own
        word for the state; ``killed`` reads it."""
        raise NotImplementedError

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        """The command that cancels ``job_ids``."""
        raise NotImplementedError

    def check_cancel(self, proc: subprocess.CompletedProcess[str], argv: Sequence[str]) -> None:
        """Raise SchedulerError if the cancel command failed for a reason other
        than the job having ended already. By default any code outside
        ``cancel_ok_codes`` was refused by :meth:`run` already."""

    def killed(self, job: JobStatus) -> bool:
        """Whether the scheduler's state says the job was killed (time limit,
        cancellation, node failure...), so its members' non-zero exit statuses
        are the kill's doing. By default no state says so."""
        return False

    def array_task_id(self, parent: str, index: int) -> str:
        """The scheduler's id of array element ``index`` (from ``array_base``)."""
        return f"{parent}_{index}"

    def default_batch_settings(self, step: ProcessStep) -> BatchSettings:
        """Batch settings for a model submitted on its own."""
        assert self.batch_settings_class is not None
        rs = step.run_settings
        return self.batch_settings_class(nodes=rs.nodes if rs else None, time=rs.walltime if rs else None)

    # -- scripts (pure) ----------------------------------------------------------------------

    def render_script(self, job: BatchJob) -> str:
        """The batch script of ``job``: directives, the user's preamble, then each
        member (its environment from ``<job dir>/<i>.env``), recording each exit
        status in ``<job dir>/<i>.rc``. A pure function of the job."""
        bs = job.batch_settings
        q = shlex.quote
        head = ["#!/bin/bash"] + [f"{self.directive_prefix} {d}" for d in self.directives(job)]
        body = [f"# simctl batch job {job.name}: {len(job.members)} member(s)", *bs.preamble, "set -u"]
        jd = q(job.job_dir)
        if bs.array:
            body.append(f'case "{self.array_index}" in')
            for i, m in enumerate(job.members):
                body.append(f"  {self.array_base + i}) ( cd {q(m.cwd)} && . {jd}/{i}.env && exec "
                            f"{shlex.join(self.command(m))} ) {_redirect(m)}; echo $? > {jd}/{i}.rc ;;")
            body.append("esac")
        else:
            for i, m in enumerate(job.members):
                body.append(f"( ( cd {q(m.cwd)} && . {jd}/{i}.env && exec {shlex.join(self.command(m))} ) "
                            f"{_redirect(m)} & echo $! > {jd}/{i}.pid; wait $!; "
                            f"echo $? > {jd}/{i}.rc ) &")
            # stop single members on request (<i>.stop, written by the launcher) until all have ended
            body += ['while [ -n "$(jobs -rp)" ]; do',
                     f"  for s in {jd}/*.stop; do",
                     '    [ -e "$s" ] || continue; i=${s##*/}; i=${i%.stop}',
                     f'    kill -TERM "$(cat {jd}/$i.pid 2>/dev/null)" 2>/dev/null; mv -f "$s" "$s.done"',
                     "  done",
                     "  sleep 1",
                     "done",
                     "wait"]
        return "\n".join(head + body) + "\n"

    def solo_job(self, step: ProcessStep) -> BatchJob:
        """A batch job holding one step, for a step started outside an
        allocation. Its directory is the first free
        ``<cwd>/.simctl-batch/<name>-<n>``: found the same way by ``preview``
        and by the ``start`` after it."""
        base = os.path.join(step.cwd, ".simctl-batch", step.key.replace("/", "."))
        n = 1
        while os.path.exists(f"{base}-{n}"):
            n += 1
        return BatchJob(name=step.name, cwd=step.cwd, batch_settings=self.default_batch_settings(step),
                        members=[step], out=os.path.join(step.cwd, f"{step.name}.batch.out"),
                        err=os.path.join(step.cwd, f"{step.name}.batch.err"), job_dir=f"{base}-{n}")

    def _as_launched(self, launch: Launch) -> Launch:
        if isinstance(launch, ProcessStep) and not self.inside_allocation():
            return self.solo_job(launch)
        return launch

    def preview(self, launch: Launch) -> str:
        launch = self._as_launched(launch)
        if isinstance(launch, ProcessStep):
            return super().preview(launch)
        script_path = os.path.join(launch.job_dir, "job.sh")
        envs = "\n".join(f"# {i}.env: {redact({**m.env, **self.command_env(m)}, m.secret_env) or '(empty)'}"
                         for i, m in enumerate(launch.members))
        sub = shlex.join(self.submit_command(launch, script_path))
        stdin = " < " + shlex.quote(script_path) if self.submit_input(launch, "") is not None else ""
        return f"# submitted with: {sub}{stdin}\n{envs}\n{self.render_script(launch)}"

    # -- launching ---------------------------------------------------------------------------

    def start(self, launches: Sequence[Launch]) -> None:
        local: list[ProcessStep] = []
        submitted: list[BatchJob] = []
        try:
            for launch in launches:
                launch = self._as_launched(launch)
                if isinstance(launch, BatchJob):
                    self._submit(launch)
                    submitted.append(launch)
                else:
                    local.append(launch)
        except BaseException as exc:
            # a submission failed: nothing of this start() may be left running untracked
            self._withdraw(submitted, exc)
            raise
        if local:
            self._steps.start(local)
            for s in local:
                s.job_id = STEP + str(s.job_id)

    def _submit(self, job: BatchJob) -> None:
        os.makedirs(job.job_dir, exist_ok=True)
        for i, m in enumerate(job.members):
            path = os.path.join(job.job_dir, f"{i}.env")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(env_file({**m.all_env(), **self.command_env(m)}))
        script = self.render_script(job)
        path = os.path.join(job.job_dir, "job.sh")
        with open(path, "w") as fh:
            fh.write(script)
        argv = self.submit_command(job, path)
        proc = self.run(argv, input=self.submit_input(job, script))
        try:
            job.job_id = self.parse_submit(proc.stdout + proc.stderr, argv)
        except SchedulerError as exc:
            raise SchedulerError(argv, proc.returncode, exc.output,
                                 f"{argv[0]} accepted the job but printed no job id simctl can read, so the job "
                                 f"(script {path}) may run untracked; check the queue") from None
        with self._lock:
            self._jobs[job.job_id] = job
        for i, m in enumerate(job.members):
            m.job_id = f"{job.job_id}:{i}"
        self.watcher.watch(job.job_id, job.job_dir, ".rc", len(job.members))

    def _withdraw(self, jobs: Sequence[BatchJob], why: BaseException) -> None:
        """Cancel jobs submitted by a start() that then failed (best effort);
        their members are marked as not started, saying why."""
        job_ids = [str(j.job_id) for j in jobs]
        for job in jobs:
            for m in job.members:
                m.job_id = None
                m.error = (f"withdrawn (job {job.job_id} cancelled): another submission of the same start() "
                           f"failed: {why}")
        if not job_ids:
            return
        with self._lock:
            for j in job_ids:
                self._jobs.pop(j, None)
                self.watcher.unwatch(j)
        try:
            self._cancel(job_ids)
        except SchedulerError:
            pass  # the error being raised already says what went wrong

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
            out[m] = self._member_status(m, parent, int(index), known, rc)
        return out

    def _rc(self, member: str) -> int | None:
        parent, _, index = member.rpartition(":")
        with self._lock:
            job = self._jobs.get(parent)
        return read_rc(os.path.join(job.job_dir, f"{index}.rc")) if job else None

    def _member_status(self, member: str, parent: str, index: int, known: dict[str, JobStatus],
                       rc: int | None) -> JobStatus:
        with self._lock:
            batch = self._jobs.get(parent)
        job = known.get(parent)
        if batch is not None and batch.batch_settings.array:
            job = known.get(self.array_task_id(parent, self.array_base + index), job)
        stopped = parent in self._cancelled or member in self._stopped
        if rc is not None:
            if stopped and rc != 0:
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
            if stopped:
                return JobStatus(Status.CANCELLED, job.returncode, "cancelled by the experiment", raw=job.raw)
            if job.status is Status.COMPLETED:
                return JobStatus(Status.FAILED, None, f"job {parent} ended without this member's exit status",
                                 raw=job.raw)
            return JobStatus(job.status, job.returncode,
                             f"job {parent} ended {job.raw or job.status.value}"
                             + (f": {job.reason}" if job.reason else ""), raw=job.raw)
        return job

    # -- stopping ---------------------------------------------------------------------------

    def stop(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        """Stop steps, and batch members: a whole batch job is cancelled when
        all of its members still running are asked for; a member on its own
        is stopped inside its job (its process ends, the others go on)."""
        steps = [j[len(STEP):] for j in job_ids if j.startswith(STEP)]
        if steps:
            self._steps.stop(steps)
        members = [j for j in job_ids if not j.startswith(STEP)]
        by_parent: dict[str, list[str]] = {}
        for m in members:
            by_parent.setdefault(m.rpartition(":")[0], []).append(m)
        whole, single = [], []
        for parent, asked in by_parent.items():
            with self._lock:
                batch = self._jobs.get(parent)
            running = [f"{parent}:{i}" for i in range(len(batch.members))] if batch else asked
            running = [r for r in running if self._rc(r) is None]
            if set(running) <= set(asked):
                whole.append(parent)
            else:
                single += [m for m in asked if self._rc(m) is None]
        if whole:
            self._cancelled.update(whole)
            for p in whole:
                self.watcher.unwatch(p)
            self._cancel(whole)
            self._wait_gone(whole)
        if single:
            self._stop_members(single)
        return self.status(job_ids)

    def _cancel(self, job_ids: Sequence[str]) -> None:
        argv = self.cancel_command(job_ids)
        self.check_cancel(self.run(argv, ok_codes=self.cancel_ok_codes), argv)

    def _stop_members(self, members: Sequence[str]) -> None:
        """Stop members inside their running job, leaving the others running:
        an array element is cancelled by its own id; a member of a job of
        steps is sent SIGTERM by the batch script itself, which looks for
        ``<job dir>/<i>.stop`` every second (see :meth:`render_script`)."""
        elements = []
        for m in members:
            parent, _, index = m.rpartition(":")
            with self._lock:
                batch = self._jobs.get(parent)
            if batch is None:
                continue
            self._stopped.add(m)
            if batch.batch_settings.array:
                elements.append(self.array_task_id(parent, self.array_base + int(index)))
            else:
                open(os.path.join(batch.job_dir, f"{index}.stop"), "w").close()
        if elements:
            self._cancel(elements)
        if self.wakeup is not None:
            self.wakeup.set()

    def _wait_gone(self, parents: Sequence[str], tries: int = 50) -> None:
        """Poll until cancelled jobs leave the running states (bounded)."""
        delay = 0.05
        for _ in range(tries):
            known = self.query(parents)
            if all(p not in known or known[p].status.is_terminal for p in parents):
                return
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    # -- after the driver is gone ---------------------------------------------------------

    def handle(self, job_id: str) -> dict[str, Any]:
        if job_id.startswith(STEP):
            return {"step": self._steps.handle(job_id[len(STEP):])}
        parent, _, index = job_id.rpartition(":")
        with self._lock:
            job = self._jobs.get(parent)
        if job is None:
            return {}
        return {"job_dir": job.job_dir, "members": len(job.members), "array": job.batch_settings.array}

    def adopt(self, job_id: str, handle: Mapping[str, Any]) -> bool:
        if job_id.startswith(STEP):
            return isinstance(handle.get("step"), dict) and self._steps.adopt(job_id[len(STEP):], handle["step"])
        parent = job_id.rpartition(":")[0]
        job_dir, n = handle.get("job_dir"), handle.get("members")
        if not isinstance(job_dir, str) or not isinstance(n, int) or self.batch_settings_class is None:
            return False
        with self._lock:
            if parent not in self._jobs:
                bs = self.batch_settings_class(array=bool(handle.get("array")))
                self._jobs[parent] = BatchJob(name=parent, cwd=job_dir, batch_settings=bs, job_dir=job_dir,
                                              members=[ProcessStep(name=str(i), argv=[], cwd=job_dir)
                                                       for i in range(n)], job_id=parent)
        return True

    def close(self) -> None:
        super().close()
        self._steps.close()

