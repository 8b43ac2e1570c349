"""The ``local`` launcher: each model is a process (in its own process group)
on this machine. All of the machinery is :class:`simctl.ProcessLauncher`,
public so that other launchers (a scheduler's steps inside an allocation, an
ssh launcher) can use it too.

Options (``Experiment(launcher_options={...})``): ``max_concurrent`` (default:
a quarter of the open-file limit, at most 512) and ``stop_grace`` (seconds,
default 3).
"""

from __future__ import annotations

import simctl
from simctl import Launcher, ProcessLauncher


class LocalLauncher(ProcessLauncher):
    """Runs models as local processes."""

    name = "local"

    @classmethod
    def detect(cls) -> tuple[int, str]:
        return 1, "no workload manager found; running processes on this machine"


@simctl.hookimpl
def simctl_register_launchers() -> list[type[Launcher]]:
    return [LocalLauncher]
