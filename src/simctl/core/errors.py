"""Exceptions a user can cause. Each message says what was wrong, what was
expected and, where there is a closed set, the valid choices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


class SimctlError(Exception):
    """Base class of every error simctl raises on purpose."""


class ConfigError(SimctlError, ValueError):
    """Bad input, detected before anything is launched or written."""


class ConfigTypeError(ConfigError, TypeError):
    """Bad input of the wrong type (a str where an int was expected...): a
    :class:`ConfigError` that ``except TypeError`` catches too, as it would
    catch SmartSim's error for the same mistake."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A file the configuration names (a file to copy, symlink or configure)
    does not exist: a :class:`ConfigError` that ``except FileNotFoundError``
    (and ``OSError``) catches too."""


class PluginError(SimctlError):
    """A plugin is broken, missing or clashes with another one."""


class LaunchError(SimctlError):
    """Starting, watching or stopping work failed."""


class JobsFailed(SimctlError):
    """``start(..., raise_on_failure=True)``: jobs failed. ``jobs`` holds their
    manifest records (``name``, ``key``, ``status``, ``returncode``, ``reason``,
    ``out``, ``err``); the message says which and quotes their logs."""

    def __init__(self, message: str, jobs: Sequence[object]) -> None:
        super().__init__(message)
        self.jobs = list(jobs)


def interrupted(message: str) -> KeyboardInterrupt:
    """What a blocking ``start`` or ``poll`` raises after Ctrl-C, once it has
    stopped (or left running) the jobs it waited for: a plain
    KeyboardInterrupt (so Python still exits with status 130 and ``except
    KeyboardInterrupt`` catches it) whose message says what was done. If
    nothing catches it, a script ends with that one line, without a
    traceback (see :func:`quiet_interrupt`)."""
    exc = KeyboardInterrupt(message)
    exc.simctl_said = True  # type: ignore[attr-defined]
    return exc


def _quiet_hook(previous: object) -> object:
    import sys

    def hook(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        if isinstance(exc, KeyboardInterrupt) and getattr(exc, "simctl_said", False):
            print(f"simctl: {exc}", file=sys.stderr, flush=True)
            return
        previous(kind, exc, tb)  # type: ignore[operator]
    return hook


def quiet_interrupt() -> None:
    """Make an uncaught KeyboardInterrupt from :func:`interrupted` print its
    one line rather than a traceback: ``sys.excepthook`` is wrapped, only
    when it is still Python's own (a program or IPython with its own hook
    keeps it); every other exception goes to Python's hook as before."""
    import sys

    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _quiet_hook(sys.excepthook)  # type: ignore[assignment]


class SimctlWarning(UserWarning):
    """What simctl warns a driver's user about (jobs that failed, ...), through
    :mod:`warnings`: shown on stderr by default; silenced with
    ``warnings.filterwarnings("ignore", category=simctl.SimctlWarning)``."""


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
