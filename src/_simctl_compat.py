"""Lets ``import smartsim`` and ``import smartredis`` resolve to simctl's
SmartSim compatibility layer (``simctl.compat.smartsim``,
``simctl.compat.smartredis``), installed at interpreter start by the
``simctl-smartsim.pth`` file of the ``simctl-hpc`` wheel.

The environment variable ``SIMCTL_SMARTSIM`` chooses:

* ``auto`` (the default): only when no real ``smartsim`` / ``smartredis`` can
  be found on ``sys.path``: a real SmartSim installed beside simctl wins;
* ``force``: always, even when a real one is installed;
* ``off``: never (``import smartsim`` finds what it would without simctl).

Standard library only, and nothing of simctl is imported until ``smartsim`` is:
this module runs at every interpreter start, so it imports only what Python has
loaded already (the finder and loader follow the protocols, without
``importlib.abc``, whose import costs 25 ms).
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing's names cost imports at every interpreter start
    from collections.abc import Sequence
    from types import ModuleType

ENV = "SIMCTL_SMARTSIM"
MODES = ("auto", "force", "off")
#: the top-level names the layer provides, and the package each resolves to
TARGETS = {"smartsim": "simctl.compat.smartsim", "smartredis": "simctl.compat.smartredis"}
#: SmartSim's and SmartRedis's inner modules that drivers and tests import by path, and the layer's
#: module that holds their names (``from smartsim.settings.mpiSettings import MpirunSettings``)
INNER = {f"smartsim.{pkg}.{mod}": f"smartsim.{pkg}" for pkg, mods in {
    "error": ("errors",),
    "settings": ("base", "settings", "mpiSettings", "slurmSettings", "lsfSettings", "pbsSettings", "alpsSettings",
                 "palsSettings", "sgeSettings", "containers"),
    "entity": ("model", "ensemble", "entity", "entityList", "dbnode", "dbobject", "files"),
    "database": ("orchestrator",),
}.items() for mod in mods} | {"smartredis.client": "smartredis", "smartredis.dataset": "smartredis",
                               "smartredis.configoptions": "smartredis", "smartredis.logger": "smartredis"}


class _AliasLoader:
    """Loads ``smartsim[.x]`` as the already importable ``simctl.compat.smartsim[.x]``:
    one module object under both names, never a second copy."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        if not hasattr(module, "__path__"):
            module.__path__ = []  # so that its SmartSim inner modules (INNER) can be imported below it
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run: the target module was executed when it was imported."""


class CompatFinder:
    """A meta path finder placed first on ``sys.meta_path``; ``force`` or not
    (``auto``), see the module's docstring."""

    def __init__(self, force: bool = False) -> None:
        self.force = force

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        top, _, rest = fullname.partition(".")
        if top not in TARGETS:
            return None
        if rest:  # a submodule: ours when its top-level package is ours
            parent = sys.modules.get(top)
            if parent is None or not parent.__name__.startswith("simctl.compat."):
                return None
        elif not self.force and importlib.machinery.PathFinder.find_spec(top, sys.path) is not None:
            return None  # a real one is installed: it wins
        name = TARGETS[top] + ("." + rest if rest else "")
        from importlib.util import find_spec  # only once smartsim is imported: 4 ms at interpreter start

        if find_spec(name) is None:
            if fullname not in INNER:
                return None
            inner = INNER[fullname]
            name = TARGETS[top] + inner[len(top):]
        # a Loader by protocol (create_module, exec_module), not by subclassing importlib.abc.Loader
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(name), is_package=True)  # type: ignore[arg-type]


def install(mode: str | None = None) -> CompatFinder | None:
    """Put the finder first on ``sys.meta_path`` (replacing one installed
    before) for ``mode`` (default: ``$SIMCTL_SMARTSIM``, else ``auto``);
    ``off`` removes it. Returns the finder installed, or None. ValueError for
    another mode, naming the valid ones."""
    mode = (mode if mode is not None else os.environ.get(ENV, "") or "auto").strip().lower()
    if mode not in MODES:
        raise ValueError(f"{ENV}={mode!r} is not a mode of simctl's SmartSim layer; valid: {', '.join(MODES)}")
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, CompatFinder)]
    if mode == "off":
        return None
    finder = CompatFinder(force=mode == "force")
    sys.meta_path.insert(0, finder)
    return finder


def _install_at_start() -> None:
    """The ``.pth`` file's call: never stops the interpreter from starting."""
    try:
        install()
    except ValueError as exc:
        print(f"simctl: {exc}; the SmartSim layer is off", file=sys.stderr)
