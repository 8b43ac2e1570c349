"""The ``pals`` launcher: PBS Professional with HPE's PALS ``mpiexec`` (HPE
Cray EX machines: Polaris, Aurora), SmartSim's ``launcher="pals"``.

Everything is the ``pbs`` launcher's (qsub, qstat, qdel, its batch settings)
but the run command: ``mpiexec`` (the default), PALS' own, whose flags are
``--np`` (tasks), ``--ppn`` (tasks per node), ``--depth`` (CPUs per task),
``--hosts`` and, from ``run_args``, ``--cpu-bind``, ``--env``... Choose it by
name: it is not auto-detected (a PBS site's ``mpiexec`` may be another MPI's).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import simctl
from simctl import SchedulerLauncher, format_flags

from .pbs import PbsLauncher, PbsRunSettings


class PalsRunSettings(PbsRunSettings):
    """Run settings for PALS' ``mpiexec`` in a PBS job."""

    supported_run_commands: ClassVar[tuple[str, ...]] = ("mpiexec",)
    placement_run_args: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "mpiexec": ("n", "np", "ppn", "depth", "d", "hosts", "host", "hostfile", "wdir")}

    def format_run_args(self) -> list[str]:
        out: list[str] = []
        tasks = self.tasks or ((self.nodes or 1) * self.tasks_per_node if self.tasks_per_node else None)
        for flag, value in (("--np", tasks), ("--ppn", self.tasks_per_node), ("--depth", self.cpus_per_task)):
            if value is not None:
                out += [flag, str(value)]
        if self.hostlist:
            out += ["--hosts", ",".join(self.hostlist)]
        return out + format_flags(self.run_args, long_eq=False)


class PalsLauncher(PbsLauncher):
    """PBS Pro with PALS' ``mpiexec``."""

    name = "pals"
    run_commands = ("mpiexec",)
    default_run_command = "mpiexec"
    run_settings_class = PalsRunSettings
    local_rank_vars = {"mpiexec": ("PALS_LOCAL_RANKID",), None: ()}

    @classmethod
    def detect(cls) -> tuple[int, str]:
        return 0, "not detected: choose launcher='pals' by name on a PBS machine with HPE's PALS mpiexec"


@simctl.hookimpl
def simctl_register_launchers() -> list[type[SchedulerLauncher]]:
    return [PalsLauncher]
