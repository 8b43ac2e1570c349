"""The ``local`` launcher: each model is a process (in its own process group)
on this machine. All of the machinery is :class:`simctl.ProcessLauncher`,
public so that other launchers (a scheduler's steps inside an allocation, an
ssh launcher) can use it too.

Options (``Experiment(launcher_options={...})``): ``max_concurrent`` (default:
a quarter of the open-file limit, at most 512) and ``stop_grace`` (seconds,
default 3).
"""

from __future__ import annotations

import warnings
from typing import ClassVar

import simctl
from simctl import BatchSettings, Launcher, ProcessLauncher, RunSettings, SimctlWarning


class LocalLauncher(ProcessLauncher):
    """Runs models as local processes: one process per model, here, or
    under ``mpirun``/``mpiexec``/``orterun`` given as the run command. Run
    settings without a run command asking for more (``nodes``, ``tasks``, ``tasks_per_node`` above
    1, a ``hostlist``) are accepted, as the reference documents' examples
    set them, and a :class:`~simctl.SimctlWarning` says they are not used."""

    name = "local"
    #: MPI's launchers start their ranks here (and MPMD programs: ``make_mpmd``)
    run_commands: ClassVar[tuple[str, ...]] = ("mpirun", "mpiexec", "orterun")

    def check_settings(self, run_settings: RunSettings | None, batch_settings: BatchSettings | None) -> None:
        super().check_settings(run_settings, batch_settings)
        if run_settings is None or run_settings.run_command is not None:
            return
        unused = [f"{k}={v}" for k, v in (("nodes", run_settings.nodes), ("tasks", run_settings.tasks),
                                           ("tasks_per_node", run_settings.tasks_per_node)) if v and v > 1]
        unused += [f"hostlist={run_settings.hostlist}"] if run_settings.hostlist else []
        if unused:
            warnings.warn(f"launcher 'local' runs {run_settings.exe!r} as one process on this machine: "
                          f"{', '.join(unused)} in its run settings are not used (a launcher with a run command, "
                          "such as slurm's srun, uses them)", SimctlWarning, stacklevel=2)

    @classmethod
    def detect(cls) -> tuple[int, str]:
        return 1, "no workload manager found; running processes on this machine"


@simctl.hookimpl
def simctl_register_launchers() -> list[type[Launcher]]:
    return [LocalLauncher]
