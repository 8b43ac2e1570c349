"""Exceptions a user can cause. Each message says what was wrong, what was
expected and, where there is a closed set, the valid choices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class SimctlError(Exception):
    """Base class of every error simctl raises on purpose."""


class ConfigError(SimctlError, ValueError):
    """Bad input, detected before anything is launched or written."""


class PluginError(SimctlError):
    """A plugin is broken, missing or clashes with another one."""


class LaunchError(SimctlError):
    """Starting, watching or stopping work failed."""


class SchedulerError(LaunchError):
    """A workload-manager command failed or printed something unexpected."""

    def __init__(self, command: Sequence[str] | str, returncode: int | None, output: str, why: str = "") -> None:
        cmd = command if isinstance(command, str) else " ".join(command)
        self.command, self.returncode, self.output = cmd, returncode, output
        head = why or "scheduler command failed"
        how = "did not run" if returncode is None else f"exited {returncode}"
        super().__init__(f"{head}: `{cmd}` {how}: {output.strip() or '(no output)'}")


def choices(names: Iterable[str]) -> str:
    """Format a set of valid names for an error message."""
    names = sorted(names)
    return ", ".join(repr(n) for n in names) if names else "(none installed)"
