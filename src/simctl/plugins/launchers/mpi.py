"""Flags for mpirun / mpiexec, shared by the scheduler launchers."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

from simctl import ConfigError, RunSettings, format_flags

#: MPI's launchers, by the names a site has them under (Open MPI's own: ``orterun``)
MPI_COMMANDS = ("mpirun", "mpiexec", "orterun")
#: where mpirun/mpiexec put a rank's node-local index: Open MPI, MPICH/Hydra, Intel MPI, PMIx
MPI_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "PMIX_LOCAL_RANK")
#: MPI launchers' flags that size and place a launch (:attr:`simctl.RunSettings.placement_run_args`)
MPI_PLACEMENT = ("n", "np", "c", "npernode", "N", "host", "H", "hostfile", "output-filename", "wdir", "wd")
MPI_PLACEMENTS: dict[str, tuple[str, ...]] = dict.fromkeys(MPI_COMMANDS, MPI_PLACEMENT)
#: each MPI command's node-local rank variables, for a launcher's ``local_rank_vars``
MPI_RANK_VARS: dict[str | None, tuple[str, ...]] = dict.fromkeys(MPI_COMMANDS, MPI_LOCAL_RANK_VARS)


def mpi_run_args(rs: RunSettings) -> list[str]:
    """``-n`` total tasks, ``-npernode`` tasks per node, ``--host`` the host list,
    then ``run_args`` as given."""
    out: list[str] = []
    tasks = rs.tasks or ((rs.nodes or 1) * rs.tasks_per_node if rs.tasks_per_node else None)
    if tasks:
        out += ["-n", str(tasks)]
    if rs.tasks_per_node:
        out += ["-npernode", str(rs.tasks_per_node)]
    if rs.hostlist:
        out += ["--host", ",".join(rs.hostlist)]
    return out + format_flags(rs.run_args, long_eq=False)


@functools.cache
def _help_names_slurm_wrapper(path: str, mtime: float) -> bool:
    try:
        proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "mpiexec.slurm" in proc.stdout + proc.stderr


def refuse_slurm_wrapper(command: str) -> None:
    """ConfigError if ``command`` on PATH is Slurm's ``mpiexec`` wrapper
    (``mpiexec.slurm``, which its ``--help`` names, as SmartSim checks): it runs
    ``srun`` and takes none of MPI's flags but ``-n`` and ``-host``. Asked once
    per file (and change of it)."""
    path = shutil.which(command)
    if path is None:
        return
    path = os.path.realpath(path)
    if _help_names_slurm_wrapper(path, os.stat(path).st_mtime):
        raise ConfigError(f"{command!r} here is Slurm's mpiexec wrapper ({path}, 'mpiexec.slurm'), which only "
                          "runs srun with fewer options: use run_command='srun' (the same launch, with Slurm's "
                          "own flags), or put an MPI library's mpiexec first on PATH")
