"""Flags for mpirun / mpiexec, shared by the scheduler launchers."""

from __future__ import annotations

from simctl import RunSettings, format_flags

#: where mpirun/mpiexec put a rank's node-local index: Open MPI, MPICH/Hydra, Intel MPI, PMIx
MPI_LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "PMI_LOCAL_RANK", "PMIX_LOCAL_RANK")


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
