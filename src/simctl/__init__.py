"""simctl: run simulation and ML workflows on laptops and HPC machines.

The public API::

    from simctl import Experiment
    exp = Experiment("study", launcher="local")
    rs = exp.create_run_settings(exe="python", exe_args="sim.py")
    ens = exp.create_ensemble("sweep", params={"x": [1, 2]}, run_settings=rs)
    exp.generate(ens)
    exp.start(ens)

Plugins use :data:`hookimpl` and the base classes re-exported here.
"""

from importlib.metadata import PackageNotFoundError, version as _version

from .core import checks, reattach
from .core.backend import Backend, parse_device
from .core.containers import Apptainer, Container, Podman, Singularity
from .core.distribution import NAME as _DISTRIBUTION
from .core.entity import Entity, Handoff, PlanContext
from .core.errors import (
    ConfigError,
    ConfigFileNotFoundError,
    ConfigTypeError,
    JobsFailed,
    LaunchError,
    PluginError,
    SchedulerError,
    SimctlError,
    SimctlWarning,
)
from .core.expansion import Pick, Product, Repeat, Strategy, Zip
from .core.files import EntityFiles
from .core.hookspecs import hookimpl
from .core.launcher import Launcher, redact
from .core.plan import LaunchPlan, make_plan
from .core.plugins import Plugins, make_plugins
from .core.processes import ProcessLauncher
from .core.scheduler import SchedulerLauncher, env_file, read_rc
from .core.settings import BatchSettings, RunSettings, format_flags, format_hms, parse_walltime
from .core.status import JobStatus, Status
from .core.steps import BatchJob, Launch, ProcessStep
from .core.watcher import FileWatcher
from .log import configure_logging
from .workflow.ensemble import Ensemble
from .workflow.experiment import Experiment
from .workflow.model import Model

_STORE_NAMES = ("Client", "Dataset", "LLDebug", "LLDeveloper", "LLInfo", "LLQuiet", "StoreConnectionError",
                "StoreError", "StoreKeyError", "StoreTimeoutError", "log_data")


def __getattr__(name: str) -> object:
    """The feature store's names (``Client``, ``Dataset``, ``Orchestrator``, the
    log levels and errors) come from :mod:`simctl.store`, imported on first use
    so that ``import simctl`` does not load redis and numpy."""
    if name in _STORE_NAMES:
        from . import store  # redis-py and numpy: start-up cost

        return getattr(store, name)
    if name == "Orchestrator":
        from .store import orchestrator  # redis-py: start-up cost

        return orchestrator.Orchestrator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


try:
    __version__ = _version(_DISTRIBUTION)
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    __version__ = "0+unknown"

__all__ = [
    "Apptainer", "Backend", "BatchJob", "Container", "checks", "BatchSettings", "Client", "ConfigError",
    "ConfigFileNotFoundError", "ConfigTypeError", "Dataset", "Ensemble", "Entity",
    "EntityFiles", "Experiment",
    "FileWatcher", "Handoff", "JobsFailed", "JobStatus", "Launch", "LaunchError", "LaunchPlan",
    "Launcher", "LLDebug", "LLDeveloper", "LLInfo", "LLQuiet", "Model", "Orchestrator", "Pick",
    "PlanContext", "PluginError", "Plugins", "Podman", "ProcessLauncher", "ProcessStep", "Product", "Repeat",
    "RunSettings",
    "SchedulerError", "SchedulerLauncher", "StoreConnectionError", "StoreError", "StoreKeyError",
    "StoreTimeoutError", "SimctlError", "SimctlWarning", "Singularity", "Status", "Strategy", "Zip",
    "configure_logging", "env_file", "log_data", "format_flags", "format_hms", "hookimpl", "make_plan", "make_plugins",
    "parse_device", "parse_walltime",
    "read_rc", "reattach", "redact", "__version__",
]
