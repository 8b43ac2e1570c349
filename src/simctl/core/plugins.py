"""The plugin manager factory, entry-point loading and the registries.

Each entry point of the ``simctl`` group is loaded on its own: one that fails
to import, or whose hooks do not match the specs, is recorded and reported and
every other plugin still works. Two plugins providing one name are both
reported, and using that name is an error naming both; everything else keeps
working. ``SIMCTL_DISABLE_PLUGINS=a,b`` disables plugins by entry-point name.

An in-process plugin (:meth:`Plugins.register`) whose hooks do not match the
specs is refused at once with a PluginError; the same plugin found through an
entry point is listed as broken instead, and the others keep working.

The process-wide :func:`default_plugins` is for the CLI and the programs
started by entry point. The store's inference workers build their own
(:func:`make_plugins` plus the in-process plugins of the experiment that
started them, passed by module as :meth:`Plugins.worker_args`).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as md
import inspect
import os
import re
import site
import sys
import sysconfig
import threading
import types
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from . import checks, hookspecs
from .distribution import NAME as DISTRIBUTION
from .errors import ConfigError, PluginError, choices

GROUP = "simctl"
DISABLE_ENV = "SIMCTL_DISABLE_PLUGINS"
FAMILIES = {
    "launcher": "simctl_register_launchers",
    "backend": "simctl_register_backends",
    "strategy": "simctl_register_strategies",
}
#: hooks whose implementations run in the store's inference workers: an in-process plugin
#: implementing one is passed to the workers an experiment starts (:meth:`Plugins.worker_args`)
WORKER_HOOKS = ("simctl_register_backends",)


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
    #: provided name -> why it cannot work here ("onnxruntime is not installed: pip install 'simctl-hpc[onnx]'")
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
        #: where another process imports each in-process plugin that implements a worker hook, by name
        self._sources: dict[str, Source] = {}

    def register(self, plugin: object, name: str | None = None) -> PluginRecord:
        """Register an in-process plugin (a module, class or object with
        hookimpls); its record.

        PluginError, and nothing registered, when its hooks do not match the
        specs (a hook that does not exist, an argument the hook does not pass,
        a wrapper on a registration hook, a hook function not marked), when
        the name is taken, or when it implements a hook the store's inference
        workers run (:data:`WORKER_HOOKS`: it provides backends) but another
        process cannot import it (see :func:`source_of`)."""
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
        problem = _register(self.pm, plugin, record)
        if problem:
            raise PluginError(f"cannot register plugin {name!r}: {problem}")
        worker_hooks = [h for h in record.hooks if h in WORKER_HOOKS]
        if worker_hooks:
            source = source_of(plugin, name)
            if isinstance(source, str):
                self.pm.unregister(plugin)
                raise PluginError(
                    f"cannot register plugin {name!r}: it implements {', '.join(worker_hooks)}, which runs in the "
                    f"store's inference workers, and a worker loads an in-process plugin by importing it, but "
                    f"{source}")
            self._sources[name] = source
        self._loaded[name] = record
        self.records.append(record)
        self._registries = None
        return record

    def worker_args(self) -> list[str]:
        """Command-line arguments that give a store's inference workers (and
        the supervisor that starts them) the plugins of this manager besides
        their own entry points: ``--plugin name=module[:attr[()]]`` for each
        in-process plugin implementing a hook of :data:`WORKER_HOOKS`,
        ``--plugin-path DIR`` for the directories those modules were imported
        from here (searched after the worker's own path), and
        ``--disable-plugin NAME`` for each entry point disabled here. Empty
        when there is nothing to add (only entry points, none disabled)."""
        out: list[str] = []
        for source in self._sources.values():
            out += ["--plugin", source.spec]
        for path in dict.fromkeys(s.path for s in self._sources.values() if s.path):
            out += ["--plugin-path", path]
        for record in self.records:
            if record.status == "disabled":
                out += ["--disable-plugin", record.name]
        return out

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


def _register(pm: pluggy.PluginManager, plugin: object, record: PluginRecord) -> str | None:
    """Register one plugin, checking its hooks against the specs first. None,
    or what is wrong with it (nothing is registered then)."""
    problems = _mismatches(pm, plugin)
    if problems:
        return "; ".join(problems)
    try:
        pm.register(plugin, name=record.name)
    except Exception as exc:  # pluggy.PluginValidationError (a wrapper that is no generator...), ValueError
        return f"{type(exc).__name__}: {exc}"
    callers = pm.get_hookcallers(plugin) or []
    record.hooks = sorted(c.name for c in callers)
    for caller in callers:
        if caller.name.startswith(LIFECYCLE):
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not (impl.wrapper or impl.hookwrapper):
                    # pluggy's stubs mark HookImpl.function Final; simctl wraps it on purpose
                    impl.function = _isolated(record.name, impl.function)  # type: ignore[misc]
    return None


def _mismatches(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """What keeps ``plugin``'s hooks from running as written: a marked
    function whose hook does not exist, an argument its hook does not pass,
    a wrapper on a registration hook, or a function named after a hook but
    not marked. Found on a manager without specs, which takes every marked
    function as it is (pluggy would refuse the first argument mismatch with a
    message of its own, and accept the rest silently)."""
    scratch = pluggy.PluginManager(hookspecs.PROJECT)
    try:
        scratch.register(plugin, name="checked")
    except Exception:  # refused for a reason of pluggy's own: registering it says which
        return []
    known = hook_names()
    out: list[str] = []
    for caller in scratch.get_hookcallers(plugin) or []:
        spec = getattr(pm.hook, caller.name, None)
        for impl in caller.get_hookimpls():
            shown = f"{caller.name}({', '.join(impl.argnames)})"
            if spec is None or spec.spec is None:
                near = difflib.get_close_matches(caller.name, known, n=1)
                out.append(f"{caller.name} is not a simctl hook"
                           + (f" (did you mean {near[0]}?)" if near else "")
                           + f"; the hooks are {', '.join(known)}")
                continue
            expected = list(spec.spec.argnames) + list(spec.spec.kwargnames)
            extra = [a for a in impl.argnames if a not in expected]
            if extra:
                out.append(f"{shown} takes {', '.join(map(repr, extra))}, which {caller.name} does not pass; "
                           f"its arguments are ({', '.join(expected)}): an implementation takes any of them, "
                           "by these names")
            if caller.name in FAMILIES.values() and (impl.wrapper or impl.hookwrapper):
                out.append(f"{caller.name} is marked as a wrapper (wrapper=True or hookwrapper=True), but a "
                           "registration hook is called once per plugin to collect what each returns, so a "
                           "wrapper would never run: remove the option")
    for name in known:
        value = inspect.getattr_static(plugin, name, None)
        if isinstance(value, (types.FunctionType, types.MethodType, staticmethod, classmethod)) \
                and scratch.parse_hookimpl_opts(plugin, name) is None:
            out.append(f"{name} is not marked @simctl.hookimpl, so simctl would never call it: mark it")
    return out


# -- in-process plugins in other processes (the inference workers) ----------------------------------


@attrs.frozen
class Source:
    """Where another process finds an in-process plugin again: the module
    that defines it and, for a class or an object, the attribute of that
    module holding it (``call``: the other process makes its own object by
    calling that class with no arguments). ``path``: the directory the module
    was imported from here, when it is not one of the interpreter's own."""

    name: str
    module: str
    attr: str | None = None
    call: bool = False
    path: str | None = None

    @property
    def spec(self) -> str:
        """``name=module[:attr[()]]``: a ``--plugin`` argument of the worker."""
        if self.attr is None:
            return f"{self.name}={self.module}"
        return f"{self.name}={self.module}:{self.attr}{'()' if self.call else ''}"

    @classmethod
    def parse(cls, spec: str) -> Source:
        """The source a ``--plugin`` argument names; ValueError saying what is wrong."""
        name, eq, target = spec.partition("=")
        module, colon, attr = target.partition(":")
        call = attr.endswith("()")
        attr = attr[:-2] if call else attr
        if not (eq and name and module) or (colon and not attr):
            raise ValueError(f"a plugin is given as name=module[:attribute[()]], such as "
                             f"'mine=my_backends:Plugin()'; got {spec!r}")
        return cls(name, module, attr or None, call)

    def load(self) -> object:
        """Import the module; the plugin (the module, its attribute, or an object of that class)."""
        obj: Any = importlib.import_module(self.module)
        for part in self.attr.split(".") if self.attr else ():
            obj = getattr(obj, part)
        return obj() if self.call else obj


def source_of(plugin: object, name: str) -> Source | str:
    """Where another process imports ``plugin`` from (registered as ``name``):
    a module by its name; a class by its module and qualified name; an object
    by the module attribute that holds it or, if none does, by its class,
    called with no arguments. Or, as a str, why another process cannot."""
    if isinstance(plugin, types.ModuleType):
        module_name = plugin.__name__
    else:
        cls = plugin if isinstance(plugin, type) else type(plugin)
        module_name = getattr(cls, "__module__", None) or ""
    if module_name == "__main__":
        return ("it is defined in __main__ (the script that was run), which another process cannot import: define "
                "it in a module of its own (a .py file beside the script) and import it from there")
    module = sys.modules.get(module_name)
    if module is None:
        return f"its module {module_name!r} is not an imported module here"
    if isinstance(plugin, types.ModuleType):
        return Source(name, module_name, path=_import_root(module))
    if isinstance(plugin, type):
        if _resolve(module, plugin.__qualname__) is not plugin:
            return (f"class {plugin.__qualname__} is not an attribute of its module {module_name} (defined inside "
                    "a function?): define it at the top level of a module")
        return Source(name, module_name, plugin.__qualname__, path=_import_root(module))
    held = next((k for k, v in vars(module).items() if v is plugin), None)
    if held is not None:
        return Source(name, module_name, held, path=_import_root(module))
    cls = type(plugin)
    if _resolve(module, cls.__qualname__) is not cls:
        return (f"it is an object of class {cls.__qualname__}, which is not an attribute of its module "
                f"{module_name} (defined inside a function?): define the class at the top level of a module")
    try:
        inspect.signature(cls).bind()
    except TypeError:
        return (f"it is an object of {module_name}.{cls.__qualname__}, which no attribute of that module holds, "
                "and that class cannot be called without arguments to make another: give its arguments "
                "defaults, or register an object a module attribute holds")
    except ValueError:  # no signature to read (a class of an extension module): let the worker try
        pass
    return Source(name, module_name, cls.__qualname__, call=True, path=_import_root(module))


def _resolve(module: types.ModuleType, qualname: str) -> Any:
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


def _import_root(module: types.ModuleType) -> str | None:
    """The directory ``module`` was imported from (the entry of ``sys.path``
    holding its top-level package), unless a worker searches it anyway: the
    interpreter's own (the standard library, site-packages) and the one
    simctl is imported from."""
    file = getattr(module, "__file__", None)
    if not file:
        return None
    here = os.path.dirname(os.path.abspath(file))
    parts = module.__name__.split(".")
    for part in reversed(parts if hasattr(module, "__path__") else parts[:-1]):
        if os.path.basename(here) != part:
            return None
        here = os.path.dirname(here)
    simctl_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    own = {os.path.realpath(p) for p in [*sysconfig.get_paths().values(), *site.getsitepackages(),
                                         site.getusersitepackages(), simctl_root]}
    return None if os.path.realpath(here) in own else here


def worker_plugins(specs: Iterable[str] = (), paths: Iterable[str] = (), disable: Iterable[str] = ()) -> Plugins:
    """The plugins of a store's inference worker: its entry points (less
    ``disable``), then each plugin of ``specs`` (``name=module[:attr[()]]``,
    what :meth:`Plugins.worker_args` passes), their modules searched in
    ``paths`` too, after this interpreter's own path. A plugin that fails to
    load is listed as broken, with why; the others still work."""
    plugs = make_plugins(disable=list(disable))
    for path in paths:
        if path not in sys.path:
            sys.path.append(path)
    for spec in specs:
        try:
            source = Source.parse(spec)
            plugs.register(source.load(), name=source.name)
        except (Exception, SystemExit) as exc:  # a plugin's bug, or a module not found here: report, keep going
            name = spec.partition("=")[0] or spec
            if any(r.name == name for r in plugs.records):  # its name was what failed: keep both records apart
                name = spec
            plugs.records.append(PluginRecord(name=name, status="broken",
                                              error=f"{spec}: {type(exc).__name__}: {exc}"))
    return plugs


def hook_names() -> list[str]:
    """Every hook the core specifies."""
    return sorted(n for n in dir(hookspecs) if n.startswith("simctl_")
                  and isinstance(getattr(hookspecs, n), types.FunctionType))


def disabled_names(env: dict[str, str] | None = None) -> set[str]:
    raw = (env if env is not None else os.environ).get(DISABLE_ENV, "")
    return {n.strip() for n in raw.split(",") if n.strip()}


def _entry_points() -> Iterable[md.EntryPoint]:
    return md.entry_points(group=GROUP)


def _normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``Simctl_HPC`` -> ``simctl-hpc``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


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
        own = _normalize(DISTRIBUTION)
        first: dict[str, PluginRecord] = {}
        for ep in sorted(_entry_points(), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            record = PluginRecord(
                name=ep.name, distribution=dist.metadata["Name"] if dist else None,
                version=dist.version if dist else None,
                builtin=dist is not None and _normalize(dist.metadata["Name"]) == own)
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
            problem = _register(pm, plugin, record)
            if problem:
                record.status, record.error = "broken", problem
    return Plugins(pm, records)


_default: Plugins | None = None


def default_plugins() -> Plugins:
    """The process-wide plugins, built on first use (never at import time):
    for the CLI and what a user's ``Experiment`` gets without ``plugins=``.
    The store's processes never use it (see :func:`worker_plugins`)."""
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
