"""The plugin manager factory, entry-point loading and the registries.

Each entry point of the ``simctl`` group is loaded on its own: one that fails
to import, or whose hooks do not match the specs, is recorded and reported and
every other plugin still works. Two plugins providing one name are both
reported, and using that name is an error naming both; everything else keeps
working. ``SIMCTL_DISABLE_PLUGINS=a,b`` disables plugins by entry-point name.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import threading
import types
from typing import Any, Iterable

import attrs
import pluggy

from . import checks, hookspecs
from .errors import ConfigError, PluginError, choices

GROUP = "simctl"
DISABLE_ENV = "SIMCTL_DISABLE_PLUGINS"
FAMILIES = {
    "launcher": "simctl_register_launchers",
    "backend": "simctl_register_backends",
    "strategy": "simctl_register_strategies",
}


@attrs.define
class PluginRecord:
    """One plugin as ``simctl plugins list`` shows it."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    #: "ok", "broken", "disabled", or "unavailable" (a provided item cannot work here)
    status: str = "ok"
    error: str | None = None
    #: family -> names it provides ("strategy": ["all_perm"])
    provides: dict[str, list[str]] = attrs.field(factory=dict)
    #: provided name -> why it cannot work here ("onnxruntime is not installed: pip install simctl[onnx]")
    unavailable: dict[str, str] = attrs.field(factory=dict)
    hooks: list[str] = attrs.field(factory=list)

    @property
    def families(self) -> list[str]:
        return sorted(f for f, names in self.provides.items() if names) or (
            ["hooks"] if self.hooks else [])


@attrs.define
class Provided:
    """A registered launcher class, backend class or strategy, with its plugin."""

    name: str
    family: str
    obj: Any
    plugin: PluginRecord


class Plugins:
    """A plugin manager with its records and the registries built from it."""

    def __init__(self, pm: pluggy.PluginManager, records: list[PluginRecord]):
        self.pm = pm
        self.hook = pm.hook
        self.records = records
        #: records of the plugins registered in ``pm`` (not broken or disabled when loaded)
        self._loaded = {r.name: r for r in records if pm.has_plugin(r.name) and r.status == "ok"}
        self._registries: dict[str, dict[str, Provided]] | None = None
        self._clashes: dict[tuple[str, str], list[Provided]] = {}

    def register(self, plugin: object, name: str | None = None) -> PluginRecord:
        """Register an in-process plugin (a module or object with hookimpls).

        A plugin whose hooks do not match the specs is not registered; its
        record says "broken" and why. A name already taken is a PluginError."""
        if plugin is None:
            raise ConfigError("register() takes a plugin: a module or an object with @simctl.hookimpl functions; "
                              "got None")
        name = checks.string("name", name, allow_none=True) or getattr(plugin, "__name__", None) \
            or type(plugin).__name__
        taken = next((r for r in self.records if r.name == name), None)
        if taken is not None:
            raise PluginError(f"cannot register plugin {name!r}: {_who(taken)} already has that name; "
                              "pass another name=")
        record = PluginRecord(name=name, distribution=None, builtin=False)
        if _register(self.pm, plugin, record):
            self._loaded[name] = record
        self.records.append(record)
        self._registries = None
        return record

    # -- registries -------------------------------------------------------------

    def _build(self) -> dict[str, dict[str, Provided]]:
        regs: dict[str, dict[str, Provided]] = {f: {} for f in FAMILIES}
        clashes: dict[tuple[str, str], list[Provided]] = {}
        for record in self._loaded.values():  # statuses below are recomputed on every build
            record.status, record.error = "ok", None
            record.provides.clear()
            record.unavailable.clear()
        for family, hook_name in FAMILIES.items():
            hook = getattr(self.pm.hook, hook_name)
            for impl in hook.get_hookimpls():  # in registration order
                record = self._loaded.get(impl.plugin_name) or PluginRecord(impl.plugin_name)
                try:
                    items = list(impl.function() or [])
                except Exception as exc:  # a plugin's own bug: report, keep going
                    _broken(record, f"{hook_name}: {exc!r}")
                    continue
                for obj in items:
                    name = getattr(obj, "name", None)
                    if not isinstance(name, str) or not name:
                        _broken(record, f"{hook_name} returned {obj!r}, which has no 'name'")
                        continue
                    if family == "strategy" and not callable(getattr(obj, "expand", None)):
                        _broken(record, f"{hook_name} returned strategy {name!r} without an "
                                        "expand(names, values, n_models, seed) method")
                        continue
                    provided = Provided(name, family, obj, record)
                    record.provides.setdefault(family, []).append(name)
                    if name in regs[family]:
                        clashes.setdefault((family, name), [regs[family][name]]).append(provided)
                        continue
                    regs[family][name] = provided
                    why = _unavailable(obj)
                    if why:
                        record.unavailable[name] = why
                        if record.status == "ok":
                            record.status = "unavailable"
        # A name two plugins claim cannot be used until one is removed or disabled;
        # both plugins say so, and everything else keeps working.
        for (family, name), claimants in clashes.items():
            for p in claimants:
                others = " and ".join(_who(o.plugin) for o in claimants if o is not p)
                _broken(p.plugin, f"{family} {name!r} is also provided by {others}")
        self._clashes = clashes
        return regs

    @property
    def registries(self) -> dict[str, dict[str, Provided]]:
        """family -> name -> what provides it (the first plugin, for a name two
        plugins claim: :meth:`get` refuses those)."""
        if self._registries is None:
            self._registries = self._build()
        return self._registries

    def names(self, family: str) -> list[str]:
        """Names of every launcher / backend / strategy installed."""
        return sorted(self.registries[_family(family)])

    def get(self, family: str, name: str) -> Any:
        """The launcher class, backend class or strategy called ``name``.

        ConfigError for an unknown name (listing the installed ones),
        PluginError for a name two plugins provide (naming both)."""
        reg = self.registries[_family(family)]
        if not isinstance(name, str):
            raise ConfigError(f"a {family}'s name must be a str; got {checks.show(name)}; installed: {choices(reg)}")
        if name not in reg:
            off = next((r for r in self.records if r.name == name and r.status == "disabled"), None)
            if off is not None:
                raise ConfigError(f"{family} {name!r}: {_who(off)} is disabled by {DISABLE_ENV}; remove it from "
                                  f"that variable to use it (installed and enabled: {choices(reg)})")
            raise ConfigError(f"unknown {family} {name!r}; installed: {choices(reg)}")
        claimants = self._clashes.get((family, name))
        if claimants:
            who = [p.plugin for p in claimants]
            raise PluginError(
                f"{len(who)} plugins provide the {family} {name!r}: "
                f"{' and '.join(_who(r) for r in who)}; uninstall one, or disable one "
                f"with {DISABLE_ENV}={who[-1].name}")
        return reg[name].obj


def _family(family: Any) -> str:
    """``family`` if it is one of :data:`FAMILIES`, else a ConfigError listing them."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown plugin family {checks.show(family)}; families: {choices(FAMILIES)}")
    return str(family)


def _broken(record: PluginRecord, error: str) -> None:
    record.status = "broken"
    record.error = f"{record.error}; {error}" if record.error else error


def _who(record: PluginRecord) -> str:
    if record.distribution:
        version = f" {record.version}" if record.version else ""
        return f"plugin {record.name!r} (distribution {record.distribution}{version})"
    return f"plugin {record.name!r} (registered in-process)"


def _unavailable(obj: Any) -> str | None:
    check = getattr(obj, "unavailable_reason", None)
    if check is None:
        return None
    try:
        reason: str | None = check()
        return reason
    except Exception as exc:
        return f"availability check failed: {exc!r}"


def _register(pm: pluggy.PluginManager, plugin: object, record: PluginRecord) -> bool:
    """Register one plugin, checking its hooks against the specs. A plugin that
    does not match is unregistered and its record marked broken."""
    try:
        pm.register(plugin, name=record.name)
    except Exception as exc:  # pluggy.PluginValidationError, ValueError for duplicates
        record.status, record.error = "broken", f"{type(exc).__name__}: {exc}"
        return False
    callers = pm.get_hookcallers(plugin) or []
    unknown = [c.name for c in callers if not c.has_spec()]
    if unknown:
        pm.unregister(plugin)
        record.status = "broken"
        record.error = (f"implements unknown hook(s) {', '.join(sorted(unknown))}; "
                        f"known hooks: {', '.join(sorted(hook_names()))}")
        return False
    record.hooks = sorted(c.name for c in callers)
    for caller in callers:
        if caller.name.startswith(LIFECYCLE):
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    # pluggy's stubs mark HookImpl.function Final; simctl wraps it on purpose
                    impl.function = _isolated(record.name, impl.function)  # type: ignore[misc]
    return True


def hook_names() -> list[str]:
    """Every hook the core specifies."""
    return sorted(n for n in dir(hookspecs) if n.startswith("simctl_")
                  and isinstance(getattr(hookspecs, n), types.FunctionType))


def disabled_names(env: dict[str, str] | None = None) -> set[str]:
    raw = (env if env is not None else os.environ).get(DISABLE_ENV, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def _entry_points() -> Iterable[md.EntryPoint]:
    return md.entry_points(group=GROUP)


def make_plugins(load_entrypoints: bool = True, disable: Iterable[str] | None = None) -> Plugins:
    """Build a fresh plugin manager: specs added, every entry point of the
    ``simctl`` group loaded on its own (unless ``load_entrypoints=False``).
    ``disable`` names plugins not to load (a list, or a str of names separated
    by commas, as in ``SIMCTL_DISABLE_PLUGINS``)."""
    checks.boolean("load_entrypoints", load_entrypoints)
    off = checks.string_list("disable", disable, split=lambda s: s.split(","), items=(str,), allow_none=True)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    records: list[PluginRecord] = []
    blocked = disabled_names() | {n.strip() for n in off if n.strip()}
    if load_entrypoints:
        own = __name__.split(".")[0]
        first: dict[str, PluginRecord] = {}
        for ep in sorted(_entry_points(), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            record = PluginRecord(
                name=ep.name, distribution=dist.metadata["Name"] if dist else None,
                version=dist.version if dist else None,
                builtin=dist is not None and dist.metadata["Name"] == own)
            records.append(record)
            if ep.name in blocked:
                record.status = "disabled"
                record.error = f"disabled by {DISABLE_ENV}"
                continue
            if ep.name in first:
                record.status = "broken"
                record.error = (f"entry point name {ep.name!r} is taken by {_who(first[ep.name])}; "
                                "plugin names must be unique")
                continue
            first[ep.name] = record
            try:
                plugin = ep.load()
            except (Exception, SystemExit) as exc:  # a plugin's import-time bug must not kill us
                record.status, record.error = "broken", f"import failed: {type(exc).__name__}: {exc}"
                continue
            _register(pm, plugin, record)
    return Plugins(pm, records)


_default: Plugins | None = None


def default_plugins() -> Plugins:
    """The process-wide plugins, built on first use (never at import time)."""
    global _default
    if _default is None:
        _default = make_plugins()
    return _default


def reset_default_plugins() -> None:
    """Forget the process-wide plugins (the next use reloads entry points)."""
    global _default
    _default = None


#: lifecycle hooks, whose implementations are isolated from each other
LIFECYCLE = "simctl_entity_"
_sink = threading.local()


def _isolated(plugin: str, function: Any) -> Any:
    """``function`` (a lifecycle hookimpl), reporting its exception to the
    running :func:`call_hook` instead of aborting the other implementations."""

    def call(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:
            failures = getattr(_sink, "failures", None)
            if failures is None:
                raise
            failures.append((plugin, exc))
            return None

    return call


def call_hook(pm: pluggy.PluginManager, name: str, **kwargs: Any) -> list[tuple[str, BaseException]]:
    """Call a lifecycle hook through pluggy (so ``tryfirst``/``trylast`` and
    wrappers apply). Each implementation runs on its own: one that raises is
    returned as ``(plugin name, exception)`` and the others still run. A
    wrapper that raises is returned the same way, as ``"(a wrapper)"``."""
    caller = getattr(pm.hook, name)
    if not caller.get_hookimpls():
        return []
    failures: list[tuple[str, BaseException]] = []
    outer = getattr(_sink, "failures", None)
    _sink.failures = failures
    try:
        caller(**kwargs)
    except Exception as exc:
        failures.append(("(a wrapper)", exc))
    finally:
        _sink.failures = outer
    return failures
