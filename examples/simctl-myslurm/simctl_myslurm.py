"""A small Slurm launcher for simctl, on its public API only: each launch is one sbatch
job whose members run side by side (no srun); ONE squeue per poll cycle; scancel stops.
``Experiment(..., launcher="myslurm", launcher_options={"partition": "debug"})``."""

from typing import Any, Sequence

import simctl
from simctl import BatchJob, BatchSettings, ConfigError, JobStatus, RunSettings, SchedulerError, Status

#: states in which Slurm killed the job (besides CANCELLED): it failed, whatever its members' exit statuses
KILLED = ("TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE")
#: Slurm's job states (squeue's %T) and what they mean to simctl
STATES = {"PENDING": Status.QUEUED, "CONFIGURING": Status.QUEUED, "REQUEUED": Status.QUEUED,
          "RUNNING": Status.RUNNING, "COMPLETING": Status.RUNNING, "SIGNALING": Status.RUNNING,
          "SUSPENDED": Status.PAUSED, "STOPPED": Status.PAUSED, "COMPLETED": Status.COMPLETED,
          "FAILED": Status.FAILED, "CANCELLED": Status.CANCELLED, **dict.fromkeys(KILLED, Status.FAILED)}


def job_status(state: str, reason: str) -> JobStatus:
    """squeue's state and reason as a JobStatus; an unknown state is UNKNOWN, its text kept."""
    status = STATES.get(state)
    if status is None:
        return JobStatus(Status.UNKNOWN, None, f"unknown Slurm state {state!r}", raw=state)
    return JobStatus(status, None, "" if reason == "None" else reason, raw=state)


def directive(key: str, value: Any) -> str:
    """One #SBATCH option, its value quoted for sbatch's parser: --time="00:10:00"."""
    flag = f"-{key} " if len(key) == 1 else f"--{key}="
    if value is None:
        return flag.rstrip(" =")
    return flag + '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


class MySlurmLauncher(simctl.SchedulerLauncher):
    """Slurm through sbatch, squeue and scancel."""

    name = "myslurm"
    batch_settings_class = BatchSettings
    probe_command = "sbatch"  # not on PATH: `simctl plugins list` shows it unavailable
    directive_prefix = "#SBATCH"
    accepted_options = {"partition": "partition for jobs whose batch settings name no queue"}

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # an unknown option is a ConfigError listing accepted_options
        self.partition = simctl.checks.string("partition", options.get("partition"), allow_none=True)

    @classmethod
    def detect(cls) -> tuple[int, str]:
        return 0, "never picked by launcher='auto': ask for 'myslurm' by name"

    def check_settings(self, run_settings: RunSettings | None, batch_settings: BatchSettings | None) -> None:
        super().check_settings(run_settings, batch_settings)  # keep the built-in checks
        if batch_settings is not None and batch_settings.array:
            raise ConfigError("launcher 'myslurm' runs no job arrays; got array=True: leave it False")

    def directives(self, job: BatchJob) -> list[str]:
        bs = job.batch_settings
        args = {"job-name": self.job_name(job.name), "output": job.out.replace("%", "%%"),
                "error": job.err.replace("%", "%%"), "nodes": bs.nodes, "time": bs.time, "account": bs.account,
                "partition": bs.queue or self.partition, "nodelist": ",".join(bs.hostlist) or None}
        args = {k: v for k, v in args.items() if v is not None} | bs.batch_args
        return [directive(k, v) for k, v in args.items()]

    def submit_command(self, job: BatchJob, script_path: str) -> list[str]:
        return ["sbatch", "--parsable", script_path]

    def parse_submit(self, output: str, argv: Sequence[str]) -> str:
        job_id = (output.split() or [""])[0].split(";")[0]  # stdout comes first: "123" or "123;cluster"
        if not job_id.isdigit():
            raise SchedulerError(argv, 0, output, "sbatch printed no job id")
        return job_id

    def query(self, job_ids: Sequence[str]) -> dict[str, JobStatus]:
        argv = ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i|%T|%r"]
        proc = self.run(argv, ok_codes=(0, 1))
        if proc.returncode == 1 and "Invalid job id" not in proc.stderr:
            raise SchedulerError(argv, 1, proc.stderr)  # (with "Invalid job id": none is known any more)
        rows = (line.split("|", 2) for line in proc.stdout.splitlines() if line.count("|") >= 2)
        return {job_id: job_status(state, reason) for job_id, state, reason in rows}

    def killed(self, job: JobStatus) -> bool:
        return job.raw == "CANCELLED" or job.raw in KILLED

    def cancel_command(self, job_ids: Sequence[str]) -> list[str]:
        return ["scancel", *job_ids]


@simctl.hookimpl
def simctl_register_launchers() -> list[type[simctl.Launcher]]:
    return [MySlurmLauncher]
