"""The ``local`` launcher: each model is a process (in its own process group)
on this machine. All of the machinery is :class:`simctl.ProcessLauncher`,
public so that other launchers (a scheduler's steps inside an allocation, an
ssh launcher) can use it too.

A model may run under ``mpirun`` or ``mpiexec`` here (``run_command="mpirun"``,
sized by ``set_tasks``/``tasks=``, flags in ``run_args``), as SmartSim's local
launcher allows. Open MPI refuses to run as root unless told: a driver running
as root has ``OMPI_ALLOW_RUN_AS_ROOT`` (and its ``_CONFIRM``) set for these
steps, unless the run settings' ``env_vars`` already say otherwise.

Options (``Experiment(launcher_options={...})``): ``max_concurrent`` (default:
a quarter of the open-file limit, at most 512) and ``stop_grace`` (seconds,
default 3).
"""

from __future__ import annotations

import os
import warnings
from typing import ClassVar

import simctl
from simctl import BatchSettings, Launcher, ProcessLauncher, ProcessStep, RunSettings, SimctlWarning

from .mpi import MPI_COMMANDS, MPI_RANK_VARS, mpi_run_args

#: Open MPI's switches that let mpirun run as root (it refuses otherwise)
_OMPI_AS_ROOT = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}


class LocalLauncher(ProcessLauncher):
    """Runs models as local processes: one process per model, here, or
    under ``mpirun``/``mpiexec``/``orterun`` given as the run command. Run
    settings without a run command asking for more (``nodes``, ``tasks``, ``tasks_per_node`` above
    1, a ``hostlist``, ``run_args`` set after they were made) are accepted, as the reference
    documents' examples set them, and a :class:`~simctl.SimctlWarning` says they are not used."""

    name = "local"
    #: MPI's launchers start their ranks here (and MPMD programs: ``make_mpmd``)
    run_commands: ClassVar[tuple[str, ...]] = MPI_COMMANDS
    local_rank_vars = {**MPI_RANK_VARS, None: ()}

    def command_env(self, step: ProcessStep) -> dict[str, str | None]:
        """The base's variables; as root, Open MPI's permission to run as root."""
        env = super().command_env(step)
        rs = step.run_settings
        if rs is not None and rs.run_command and os.geteuid() == 0:
            env.update({k: v for k, v in _OMPI_AS_ROOT.items() if k not in rs.env_vars})
        return env

    def command(self, step: ProcessStep) -> list[str]:
        """Under ``mpirun``/``mpiexec``/``orterun``: ``-n`` tasks, ``-npernode``, ``--host``,
        then ``run_args`` (settings whose class formats its own flags keep them; MPMD
        programs after ``:`` keep theirs)."""
        line = super().command(step)
        rs = step.run_settings
        if (rs is None or not rs.run_command or type(rs).format_run_args is not RunSettings.format_run_args
                or type(rs).launch_args is not RunSettings.launch_args):
            return line
        return [rs.run_command, *mpi_run_args(rs), *line[1 + len(rs.launch_args()):]]

    def check_settings(self, run_settings: RunSettings | None, batch_settings: BatchSettings | None) -> None:
        super().check_settings(run_settings, batch_settings)
        if run_settings is None or run_settings.run_command is not None:
            return
        unused = [f"{k}={v}" for k, v in (("nodes", run_settings.nodes), ("tasks", run_settings.tasks),
                                           ("tasks_per_node", run_settings.tasks_per_node)) if v and v > 1]
        unused += [f"hostlist={run_settings.hostlist}"] if run_settings.hostlist else []
        unused += [f"run_args={dict(run_settings.run_args)!r}"] if run_settings.run_args else []
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
