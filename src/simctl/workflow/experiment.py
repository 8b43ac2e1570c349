"""The Experiment facade: the one object a driver script uses to create,
generate, start, watch and stop its entities."""

from __future__ import annotations

import atexit
import contextlib
import difflib
import inspect
import os
import signal
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from ..core import checks, driver as drv, generator, logs, manifest as mf, reattach
from ..core.checks import boolean, number, positive_int, show, string, string_list
from ..core.controller import Controller, Job
from ..core.entity import Entity
from ..core.errors import ConfigError, ConfigTypeError, JobsFailed, SimctlWarning, choices, interrupted, quiet_interrupt
from ..core.expansion import Strategy, check_param_name, param_values
from ..core.files import check_name
from ..core.launcher import Launcher
from ..core.plan import LaunchPlan
from ..core.plugins import Plugins, call_hook, default_plugins
from ..core.progress import progress_ticker
from ..core.settings import BatchSettings, RunSettings
from ..core.sigint import ignoring_sigint
from ..core.status import Status
from ..core.steps import BatchJob
from ..core.table import render_table
from ..log import logger
from ..store import known
from ..store.use import StoreUse, check_start
from .ensemble import Ensemble
from .model import Model

log = logger("experiment")

#: experiments that started work and were not closed since: stopped at driver exit (see Experiment's docstring)
_LIVE: weakref.WeakSet[Experiment] = weakref.WeakSet()
#: guards _LIVE's exit hooks: the atexit handler (registered once, at the first start()) and the SIGTERM
#: handler (installed while an experiment has work, then the previous one is put back)
_HOOKS = threading.Lock()
_exit_handler_registered = False
#: the SIGTERM handler simctl replaced (SIG_DFL), while its own is installed; None when it is not
_previous_sigterm: Any = None
#: the SIGINT handler simctl replaced (Python's default_int_handler) while its own is installed, or None
_previous_sigint: Any = None


def _stop_all_at_exit() -> None:
    for experiment in list(_LIVE):
        experiment.close("the driver is exiting")


def _on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds the driver, then the exit handler stops the jobs


def _on_sigint(signum: int, frame: Any) -> None:
    """Ctrl-C: first the jobs started with ``block=False`` are stopped (those
    started with ``kill_on_interrupt=True``) or left running on purpose (the
    others), saying so, then the KeyboardInterrupt Python would raise, with
    that said (as after Ctrl-C during a blocking start). During a blocking
    start or a poll, which handle Ctrl-C themselves, it is Python's own."""
    live = list(_LIVE)
    said = [] if any(e._waiting for e in live) else [line for e in live for line in e._ctrl_c_unblocked()]
    if not said:
        signal.default_int_handler(signum, frame)
    quiet_interrupt()
    raise interrupted("; ".join(said))


def _catch_ctrl_c() -> None:
    """A start with ``block=False`` in the main thread, while SIGINT has
    Python's own handler: Ctrl-C stops (or leaves running) its jobs first.
    Python's handler is put back when no experiment has work left."""
    global _previous_sigint
    with _HOOKS:
        if (_previous_sigint is None and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            _previous_sigint = signal.signal(signal.SIGINT, _on_sigint)


def _work_starts(experiment: Experiment) -> None:
    """``experiment`` is about to start jobs: it joins the experiments stopped at
    exit; the exit handler is registered (once per process), and, in the main
    thread while SIGTERM has its default action, SIGTERM is made a normal exit."""
    global _exit_handler_registered, _previous_sigterm
    with _HOOKS:
        _LIVE.add(experiment)
        if not _exit_handler_registered:
            atexit.register(_stop_all_at_exit)
            _exit_handler_registered = True
        if (_previous_sigterm is None and threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL):
            _previous_sigterm = signal.signal(signal.SIGTERM, _on_sigterm)


def _work_ends(experiment: Experiment) -> None:
    """``experiment`` was closed: once no experiment has work left, SIGTERM's
    previous handler is put back, unless the program installed another one
    meanwhile (then that one stays), or this is not the main thread (then it
    is put back by the next close() in the main thread)."""
    global _previous_sigterm, _previous_sigint
    with _HOOKS:
        _LIVE.discard(experiment)
        if _LIVE or threading.current_thread() is not threading.main_thread():
            return
        if _previous_sigterm is not None:
            if signal.getsignal(signal.SIGTERM) is _on_sigterm:
                signal.signal(signal.SIGTERM, _previous_sigterm)
            _previous_sigterm = None
        if _previous_sigint is not None:
            if signal.getsignal(signal.SIGINT) is _on_sigint:
                signal.signal(signal.SIGINT, _previous_sigint)
            _previous_sigint = None


class Generated(list[str]):
    """What :meth:`Experiment.generate` returns: the list of directories it
    wrote, which also remembers the entities it generated, so that the Model
    guide's ``model = exp.generate(model); exp.start(model)`` works as written."""

    def __init__(self, dirs: Iterable[str], entities: Sequence[Entity]):
        super().__init__(dirs)
        self.entities: list[Entity] = list(entities)


def _flatten(entities: Iterable[Any]) -> list[Entity]:
    out: list[Entity] = []
    for e in entities:
        if isinstance(e, Generated):
            out += e.entities
        elif isinstance(e, (list, tuple)):
            out += _flatten(e)
        elif isinstance(e, Entity):
            out.append(e)
        else:
            raise ConfigTypeError(f"expected a Model, an Ensemble or another entity, got {type(e).__name__} "
                              f"({e!r:.80})")
    return out


class Experiment:
    """A workflow: its entities, where their directories go, and the launcher
    that runs them.

    ``launcher`` is any installed launcher's name (``simctl plugins list``), or
    ``"auto"`` to pick the workload manager present here.

    When the driver exits (normally, by an exception, or by SIGTERM), every
    job an experiment started that still runs is stopped and recorded as
    CANCELLED ("the driver is exiting"): nothing is left running untracked.
    The exception: jobs left running on purpose by Ctrl-C with
    ``kill_on_interrupt=False`` keep running, recorded with what finds them.
    A driver killed with SIGKILL cannot do that; ``simctl status EXP_PATH``
    then finds out the truth from what the manifest recorded (pids, job ids,
    exit-status files) and ``simctl stop EXP_PATH`` stops what is left.
    ``close()`` does the same at any time; an experiment is also a context
    manager that closes at the end of its ``with`` block.

    What simctl changes in the host program, and when: nothing at import,
    and nothing for :meth:`preview`, :meth:`get_status` or the other
    questions. The first :meth:`start` registers the exit handler (atexit,
    once per process) and, when it runs in the main thread while SIGTERM has
    its default action, installs a SIGTERM handler that turns SIGTERM into a
    normal exit (``SystemExit(143)``), so the exit handler stops the jobs. A
    program with its own SIGTERM handler keeps it (then it should call
    ``close()`` itself). ``close()`` of the last experiment with work puts
    the previous handler back, unless the program replaced simctl's
    meanwhile. Every thread an experiment starts (the monitor, the
    launcher's reaper, walltime stops, the file watcher) has ended when
    ``close()`` returns.
    """

    def __init__(self, name: str, exp_path: str | None = None, launcher: str = "local", *,
                 plugins: Plugins | None = None, launcher_options: Mapping[str, Any] | None = None):
        self.name = check_name("experiment", name)
        self.exp_path = _path("exp_path", exp_path) or os.path.join(os.getcwd(), name)
        if launcher_options is not None and not isinstance(launcher_options, Mapping):
            raise ConfigError(f"launcher_options must be a dict of option -> value, got "
                              f"{type(launcher_options).__name__} {launcher_options!r:.80}")
        bad = [k for k in launcher_options or {} if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"launcher_options: option name {show(bad[0])} must be a str, e.g. 'max_concurrent'")
        if not isinstance(launcher, str):
            raise ConfigTypeError(f"launcher must be a launcher's name (a str), got {type(launcher).__name__}")
        if plugins is not None and not isinstance(plugins, Plugins):
            raise ConfigError(f"plugins must be what simctl.make_plugins() returns (or None for the installed "
                              f"plugins); got {show(plugins)}")
        self.plugins = plugins or default_plugins()
        self.launcher_name = self._pick_launcher(launcher)
        cls = self.plugins.get("launcher", self.launcher_name)
        self.launcher: Launcher = cls(**dict(launcher_options or {}))
        self._controller: Controller | None = None
        #: the experiment directory's writer lock: taken by generate() and start(), given up by close()
        self._lock = drv.WriterLock(self.exp_path)
        self._waited: set[Job] = set()
        #: jobs that end by themselves started with block=False, not waited for yet: the next blocking start or
        #: poll reports them, also when they ended before it was called
        self._unwaited: set[Job] = set()
        #: jobs started with block=False that Ctrl-C stops (kill_on_interrupt=True: True) or leaves running (False)
        self._on_ctrl_c: dict[Job, bool] = {}
        #: a blocking start or a poll is waiting (it handles Ctrl-C itself)
        self._waiting = False

    def _pick_launcher(self, launcher: str) -> str:
        names = self.plugins.names("launcher")
        if launcher != "auto":
            if launcher not in names:
                raise ConfigError(f"unknown launcher {launcher!r}; installed: {choices(names)} or 'auto'")
            return launcher
        scored = []
        for n in names:
            score, why = self.plugins.get("launcher", n).detect()
            builtin = self.plugins.registries["launcher"][n].plugin.builtin
            scored.append((score, builtin, n, why))
        # a tie goes to a built-in launcher, then to the first name: never to a name sorting later
        score, _, best, why = max(scored, key=lambda t: (t[0], t[1], [-ord(c) for c in t[2]]),
                                  default=(0, False, "", ""))
        if score <= 0:
            raise ConfigError(f"launcher='auto' found no workload manager; installed launchers: {choices(names)}")
        log.info("launcher='auto' picked %r: %s", best, why)
        return best

    @property
    def controller(self) -> Controller:
        """The experiment's controller, made when first needed; making it
        installs nothing in the host program (see the class's docstring)."""
        if self._controller is None:
            self._controller = Controller(self.name, self.exp_path, self.launcher, self.plugins, self)
            self._controller.manifest.driver = drv.identity()
            self._controller.heartbeat = self._lock.heartbeat
        return self._controller

    def close(self, reason: str = "the experiment was closed") -> None:
        """Stop every job still running (recorded CANCELLED with ``reason``),
        end and wait for every thread the experiment started, release the
        launcher's files, and, if no other experiment has work, put back the
        SIGTERM handler :meth:`start` replaced."""
        string("reason", reason)
        try:
            if self._controller is not None:
                self._controller.shutdown(reason)
            else:
                self.launcher.close()
        finally:
            self._lock.release()
            _work_ends(self)

    def __enter__(self) -> Experiment:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _created(self, *entities: Any) -> None:
        if not self.plugins.pm.hook.simctl_entity_created.get_hookimpls():
            return  # nobody listens: skip 10,000 empty calls for a big ensemble
        for entity in entities:
            for plugin, exc in call_hook(self.plugins.pm, "simctl_entity_created", entity=entity, experiment=self):
                self.controller.hook_error(plugin, f"simctl_entity_created for {entity.name!r}", exc)

    # -- settings ---------------------------------------------------------------------

    def create_run_settings(self, exe: str, exe_args: str | Sequence[str] | None = None,
                            run_command: str | None = "auto", run_args: Mapping[str, Any] | None = None,
                            env_vars: Mapping[str, str | None] | None = None, **kwargs: Any) -> RunSettings:
        """Settings to run ``exe`` with this experiment's launcher. ``run_command``
        ``"auto"`` takes the launcher's default (none for ``local``)."""
        if isinstance(exe, os.PathLike):
            exe = os.fspath(exe)
        if not isinstance(exe, str) or not exe:
            error = ConfigError if isinstance(exe, str) else ConfigTypeError
            raise error(f"exe must be a non-empty string (a program name or path), got {exe!r:.80}")
        if os.sep in exe and not os.path.isabs(exe) and os.path.exists(exe):
            exe = os.path.abspath(exe)  # "./sim.sh" means the driver's ./sim.sh, not one in each run directory
        _dicts(("run_args", run_args, checks.flag_mapping), ("env_vars", env_vars, checks.env_mapping))
        _known_kwargs("create_run_settings", kwargs, self.launcher.run_settings_class,
                      ("exe", "exe_args", "run_command", "run_args", "env_vars"))
        rs = self.launcher.create_run_settings(exe, exe_args, run_command, run_args, env_vars, **kwargs)
        self.launcher.check_run_args(rs.run_args, rs.run_command, repr(exe),  # on any launcher (local has mpirun)
                                     "leave run_args out, or pass them to the program in exe_args")
        return rs

    def create_batch_settings(self, nodes: int | None = None, time: Any = None, queue: str | None = None,
                              account: str | None = None, batch_args: Mapping[str, Any] | None = None,
                              **kwargs: Any) -> BatchSettings:
        """Settings to submit a batch job with this experiment's launcher."""
        _dicts(("batch_args", batch_args, checks.flag_mapping))
        _known_kwargs("create_batch_settings", kwargs, self.launcher.batch_settings_class,
                      ("nodes", "time", "queue", "account", "batch_args"))
        return self.launcher.create_batch_settings(nodes, time, queue, account, batch_args, **kwargs)

    def create_database(self, port: int | None = None, db_nodes: int = 1, interface: str | list[str] = "lo",
                        batch: bool = False, hosts: Any = None, run_command: str | None = "auto",
                        db_cpus: int = 1, single_cmd: bool = True, **kwargs: Any) -> Any:
        """A feature store (:class:`simctl.store.Orchestrator`): one server, or
        a Redis Cluster of ``db_nodes`` >= 3 shards, on consecutive ports from
        ``port`` (default: free ones here, with their cluster bus ports),
        bound to ``interface`` only and protected by a generated password.
        ``start`` returns once it answers; entities started after it find it
        through ``SSDB``."""
        from ..store.orchestrator import make_orchestrator  # redis-py: start-up cost

        orc = make_orchestrator(self, port, db_nodes, interface, batch, hosts, run_command, db_cpus, single_cmd,
                                **kwargs)
        self._created(orc)
        return orc

    # -- entities -------------------------------------------------------------------------

    def create_model(self, name: str, run_settings: RunSettings, params: Mapping[str, Any] | None = None,
                     path: str | None = None, enable_key_prefixing: bool = False,
                     batch_settings: BatchSettings | None = None,
                     params_as_args: Sequence[str] | None = None) -> Model:
        """A model: one application run. Its ``path`` is ``<exp_path>/<name>``
        unless given, as in SmartSim, made at :meth:`start` if missing: it holds
        ``<name>.out`` and ``.err``, and it is where the model runs once
        generated (:meth:`generate` sets it to the directory it writes) or
        given; a model never generated runs in the driver's current directory,
        so that files named relative to it (``exe_args="script.py"``) are found."""
        given = _path("path", path)
        model = Model(name, run_settings, _model_params(params),
                      given or os.path.join(self.exp_path, check_name("model", name)), batch_settings,
                      string_list("params_as_args", params_as_args or []),
                      store_use=StoreUse(key_prefixing=boolean("enable_key_prefixing", enable_key_prefixing)),
                      placement=_placement(given))
        self._created(model)
        return model

    def create_ensemble(self, name: str, params: Mapping[str, Any] | Iterable[str] | None = None,
                        params_as_args: Sequence[str] | None = None,
                        batch_settings: BatchSettings | None = None,
                        run_settings: RunSettings | None = None, replicas: int | None = None,
                        perm_strategy: str | Callable[..., Any] = "all_perm",
                        n_models: int | None = None, seed: int | None = None,
                        path: str | None = None) -> Ensemble:
        """A group of models: expanded from ``params`` with ``perm_strategy``
        (an installed strategy's name or a callable
        ``f(names, values, n_models) -> list[dict]``), ``replicas`` copies, or
        empty to fill with :meth:`Ensemble.add_model`. Its ``path`` is
        ``<exp_path>/<name>`` unless given, each member's ``<path>/<member>``;
        members made from ``params`` or ``replicas`` prefix their keys with
        their names (``SSKEYOUT``), as SmartSim's do (``member.disable_key_prefixing()``
        turns one off); models added with :meth:`Ensemble.add_model` keep their own choice."""
        check_name("ensemble", name)
        expand, label = self._strategy(perm_strategy, n_models, seed)
        positive_int("replicas", replicas, allow_none=True)
        if run_settings is not None and not isinstance(run_settings, RunSettings):
            raise ConfigTypeError(f"run_settings must come from create_run_settings, got {type(run_settings).__name__}")
        values = param_values(params)
        params_as_args = string_list("params_as_args", params_as_args or [])
        twice = sorted({n for n in params_as_args if params_as_args.count(n) > 1})
        if twice:
            raise ConfigError(f"params_as_args names {twice} more than once; give each parameter once")
        missing = [n for n in params_as_args if n not in values]
        if missing:
            raise ConfigError(f"params_as_args names {missing}, which are not parameters; parameters are "
                              f"{sorted(values) or '(none)'}")
        if (values or replicas) and run_settings is None:
            raise ConfigError(f"ensemble {name!r}: params or replicas need run_settings to run the members with")
        if run_settings is not None and not values and not replicas:
            raise ConfigError(f"ensemble {name!r} has run_settings but no params and no replicas, so no members; "
                              "give params={...} or replicas=N (or leave out run_settings and add_model)")
        ens = Ensemble(name, values, run_settings, batch_settings, params_as_args, replicas or 0,
                       label, n_models, seed, _path("path", path) or os.path.join(self.exp_path, name),
                       store_use=StoreUse(key_prefixing=bool(values or replicas)),
                       placement=_placement(path and os.path.abspath(os.path.expanduser(path))))
        ens.bind(expand, self._created)
        if all(v is not None for v in values.values()):
            ens.space()  # validate now (step lengths, n_models, ...): it is lazy, so cheap
        self._created(ens)
        return ens

    def _strategy(self, perm_strategy: str | Callable[..., Any], n_models: int | None = None,
                  seed: int | None = None) -> tuple[Callable[..., Any], str]:
        if isinstance(perm_strategy, str):
            strat: Strategy = self.plugins.get("strategy", perm_strategy)
            takes = getattr(strat, "options", None)  # which of n_models / seed it uses, if it says
            if takes is not None:
                unused = [k for k, v in (("n_models", n_models), ("seed", seed)) if v is not None and k not in takes]
                if unused:
                    raise ConfigError(f"perm_strategy {perm_strategy!r} does not use {' or '.join(unused)}; "
                                      f"leave it out, or use a strategy that samples (e.g. 'random')")
            return strat.expand, perm_strategy
        if callable(perm_strategy):
            fn = perm_strategy
            try:
                inspect.signature(fn).bind(["name"], [[1]], n_models)
            except TypeError as exc:
                raise ConfigError(f"perm_strategy {getattr(fn, '__qualname__', fn)!r} cannot be called as "
                                  f"f(names, values, n_models): {exc}") from None
            except ValueError:
                pass  # no signature to check (a builtin): it is called as it is
            label = getattr(fn, "__qualname__", repr(fn))
            return (lambda names, values, n_models, seed: fn(names, values, n_models)), label
        raise ConfigError(f"perm_strategy must be a strategy name or a callable; installed strategies: "
                          f"{choices(self.plugins.names('strategy'))}")

    # -- generation -----------------------------------------------------------------------

    def generate(self, *entities: Entity, overwrite: bool = False, tag: str = ";",
                 unknown_tags: str = "error") -> Generated:
        """Write the run directories of ``entities`` under ``exp_path``.

        ``tag`` is the character(s) around parameter names in files to
        configure; a tag naming no parameter is an error, or a warning with
        ``unknown_tags="warn"``. Existing directories are kept unless
        ``overwrite=True``. Returns the directories written (a list that
        :meth:`start` and the other methods also accept in place of the
        entities, as in ``model = exp.generate(model); exp.start(model)``).
        """
        ents = _flatten(entities)
        if boolean("overwrite", overwrite):
            self._refuse_running(ents)
        _check_writable(self.exp_path)
        guard = self._refuse_others if overwrite else None
        held = self._lock.held
        try:
            dirs = generator.generate(ents, self.exp_path, overwrite, tag, unknown_tags,  # type: ignore[arg-type]
                                      guard=guard, before_write=self._take_lock)
        except BaseException:
            if not held:  # a failed call leaves nothing, not even the lock it took
                self._lock.release()
                with contextlib.suppress(OSError):
                    os.rmdir(os.path.join(self.exp_path, mf.DIRNAME))
            raise
        return Generated(dirs, ents)

    def _take_lock(self) -> None:
        """Become the experiment directory's writer if no other live driver is
        (a second driver goes on as a guest: see :mod:`simctl.core.driver`)."""
        holder = self._lock.acquire()
        if holder is not None:
            log.info("%s is the writer of %s; this driver is a guest", drv.describe(holder), self.exp_path)

    def _refuse_others(self, replaced: list[str]) -> None:
        """overwrite=True must not replace a directory that a running job of
        another driver (alive, or gone and its job still running) uses."""
        man = mf.load(self.exp_path)
        me = drv.identity()
        if man is None:
            return
        # this experiment's running jobs were refused by _refuse_running; its finished ones may not be saved yet
        # (the disk lags its memory); any other job, of another driver or of another Experiment object in this
        # process, is judged by what the disk says
        over: set[mf.Identity] = set()
        if self._controller is not None:
            with self._controller.lock:
                over = {r.identity for r in self._controller.manifest.jobs if r.status.is_terminal}

        def theirs(m: mf.Manifest) -> list[mf.JobRecord]:
            return [r for r in m.jobs if not r.status.is_terminal and r.path and r.identity not in over
                    and any(_within(r.path, top) for top in replaced)]

        found = theirs(man)
        if found and any(not drv.alive(reattach.driver_of(man, r)) for r in found):
            man = reattach.refresh(self.exp_path, self.plugins)  # what their dead drivers left: still running?
            found = theirs(man)
        if not found:
            return
        by: dict[str, list[str]] = {}
        for r in found:
            d = reattach.driver_of(man, r)
            who = drv.describe(d) + (" (this process: another Experiment on this exp_path)" if drv.same(d, me)
                                     else "" if drv.alive(d) else ", which is gone (`simctl stop` ends what it left)")
            by.setdefault(who, []).append(f"{r.entity_type.lower()} {r.key or r.name}")
        said = "; ".join(f"{', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''} of {who}"
                         for who, keys in by.items())
        holder = self._lock.holder()
        raise ConfigError(f"generate(overwrite=True) would replace directories that running jobs of another driver "
                          f"use: {said}"
                          + (f" ({drv.describe(holder)} holds the experiment's writer lock)"
                             if holder and not drv.same(holder, me) else "")
                          + "; wait for them or stop them first, or generate into another exp_path")

    def _refuse_running(self, entities: list[Entity]) -> None:
        """overwrite=True must not delete the directory of a job that runs."""
        if self._controller is None:
            return
        keys = set(self._keys(entities))
        running = [j.key for j in self._controller.active() if j.key in keys]
        if running:
            raise ConfigError(f"generate(overwrite=True) would delete the directories of running jobs: "
                              f"{', '.join(running[:5])}{' ...' if len(running) > 5 else ''}; stop them or "
                              "wait for them first")

    # -- running ---------------------------------------------------------------------------

    def start(self, *entities: Entity, block: bool = True, summary: bool = False,
              kill_on_interrupt: bool = True, raise_on_failure: bool = False, only: str | None = None,
              max_retries: int = 0) -> None:
        """Launch ``entities``. Entities that run until stopped (a store) are
        waited on until ready before the next ones start. ``block`` then waits
        until every job of this experiment that ends by itself has finished
        (also those started earlier with ``block=False``), not for the ones
        that run until stopped; ``summary`` prints what is about to start.

        When jobs it waited for failed, a blocking start says so (a
        :class:`~simctl.SimctlWarning`: how many failed, each one's error log
        and its last lines), or with ``raise_on_failure=True`` raises
        :class:`~simctl.JobsFailed`, which carries their records.

        ``only="failed"`` starts only the members (or models) whose latest
        recorded run, in this driver or an earlier one, ended without
        completing (Failed, Cancelled, Unknown), each in its own run directory.

        Ctrl-C while blocking stops the jobs waited for unless
        ``kill_on_interrupt=False``, then raises a KeyboardInterrupt whose
        message says what was stopped: uncaught, it ends a script with that
        one line, without a traceback (exit status 130, as for any Ctrl-C)."""
        ents = _flatten(entities)
        for arg, value in (("block", block), ("summary", summary), ("kill_on_interrupt", kill_on_interrupt),
                           ("raise_on_failure", raise_on_failure)):
            boolean(arg, value)
        if not ents:
            raise ConfigError("start() needs at least one entity (a Model, an Ensemble...)")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"max_retries must be an int >= 0 (how many times a failed job is started again), "
                              f"got {show(max_retries)}")
        if max_retries and not block:
            raise ConfigError("max_retries needs block=True: the retries are started while start() waits")
        if only is not None:
            if only != "failed":
                raise ConfigError(f"only must be 'failed' (or None for everything), got {show(only)}")
            ents = self._failed_members(ents)
            if not ents:
                print(f"simctl: nothing to re-run: no job of {', '.join(e.name for e in _flatten(entities))} "
                      "ended without completing", file=sys.stderr, flush=True)
                return
        self._place_members(ents)
        self._check_colocated(ents)
        check_start(ents)  # one name, one model or script, across the entities started together
        _work_starts(self)  # also again after a close(): what starts now is stopped at exit too
        # Ctrl-C from here until the wait has begun (while launching, or just after) is handled as during the
        # wait when blocking: what runs already is stopped (or left running), then the KeyboardInterrupt.
        # _waiting: the handler of start(block=False)'s Ctrl-C leaves it to this blocking start throughout
        self._waiting = block
        try:
            jobs = self.controller.launch(ents, show=(lambda plan: print(self._describe(plan))) if summary else None,
                                          before_write=self._take_lock)
            log.info("started %d job(s) on %s", len(jobs), self.launcher_name)
            for ent in ents:  # a Client made in this driver without a password finds a store's here (issue 19)
                if ent.runs_until_stopped:
                    known.remember(ent)
            if block:
                self._block(kill_on_interrupt, raise_on_failure, [j for j in jobs if j.ends], max_retries)
                return
        except KeyboardInterrupt:
            if not block or getattr(sys.exc_info()[1], "simctl_said", False):
                raise
            said = self._interrupted(list(self.controller.active(ends=True)), kill_on_interrupt,
                                     "start() was launching")
            quiet_interrupt()
            raise interrupted(said) from None
        finally:
            self._waiting = False
        self._unwaited.update(j for j in jobs if j.ends)
        self._on_ctrl_c = {j: k for j, k in self._on_ctrl_c.items() if not j.done}
        self._on_ctrl_c.update((j, kill_on_interrupt) for j in jobs if j.ends)
        _catch_ctrl_c()

    def _ctrl_c_unblocked(self) -> list[str]:
        """Ctrl-C after ``start(block=False)``: stop the jobs it started with
        ``kill_on_interrupt=True``, leave the others running (both said on
        screen); one line per group for the KeyboardInterrupt's message."""
        jobs, self._on_ctrl_c = self._on_ctrl_c, {}
        said = []
        for kill in (True, False):
            group = [j for j, k in jobs.items() if k is kill and not j.done]
            if group:
                said.append(self._interrupted(group, kill, "started with block=False"))
        return said

    def _check_colocated(self, entities: list[Entity]) -> None:
        """Colocated stores about to start on this host: checked as create_database's shards are."""
        if not self.launcher.runs_on_this_host:
            return
        models = [m for e in entities for m in (e.models if isinstance(e, Ensemble) else [e] if isinstance(e, Model)
                                                 else [])]
        dbs = [(f"model {m.key!r}", m.colocated_db) for m in models if m.colocated_db is not None]
        if dbs:
            from ..store import colocated  # its checks import redis-py: start-up cost

            colocated.check_here(dbs)

    def _recorded(self, keys: Iterable[str]) -> dict[str, mf.JobRecord]:
        """The latest record of each key that has one (this driver's or an earlier driver's)."""
        with self.controller.lock:
            latest = self.controller.manifest.latest()
        return {k: latest[k] for k in keys if k in latest}

    def _failed_members(self, entities: list[Entity]) -> list[Entity]:
        """The models and members of ``entities`` whose latest run ended without completing."""
        out: list[Entity] = []
        for ent in entities:
            if not isinstance(ent, (Ensemble, Model)):
                raise ConfigError(f"only='failed' re-runs models and ensemble members; {ent.type} {ent.name!r} "
                                  "is neither")
            models: list[Model] = list(ent) if isinstance(ent, Ensemble) else [ent]
            recs = self._recorded(m.key for m in models)
            for m in models:
                rec = recs.get(m.key)
                if rec is not None and rec.status.is_terminal and rec.status is not Status.COMPLETED:
                    out.append(m)
        return out

    def _place_members(self, entities: list[Entity]) -> None:
        """Members run in their own run directories, never in the current one:
        a member started alone takes its ``path``, else the one its last run
        used (an earlier driver's), else its generated place
        ``<exp_path>/<ensemble>/<member>``, and is refused if it has none; so
        do the members of an ensemble that was not generated in this driver
        (and has no ``path``) when an earlier driver generated or ran them."""
        alone = [e for e in entities if isinstance(e, Model) and e.ensemble and not e.path]
        unplaced = [e for e in entities if isinstance(e, Ensemble) and e.path is None]
        if not alone and not unplaced:
            return
        with self.controller.lock:
            latest = self.controller.manifest.latest()  # once: a 10,000-member ensemble costs one pass

        def place(member: Model) -> bool:
            rec = latest.get(member.key)
            for candidate in (rec.path if rec else None,
                              os.path.join(self.exp_path, member.ensemble or "", member.name)):
                if candidate and os.path.isdir(candidate):
                    member.path = candidate
                    return True
            return False

        for member in alone:
            if not place(member):
                raise ConfigError(f"member {member.name!r} of ensemble {member.ensemble!r} has no run directory: "
                                  "generate it (exp.generate(ensemble) or exp.generate(member)) before starting "
                                  "it alone")
        for ens in unplaced:
            members = [m for m in ens if not m.path]
            if members and place(members[0]):  # generated or run before: each member where it was
                for member in members[1:]:
                    place(member)

    def _ending(self) -> list[Job]:
        """The jobs start(block=True) waits for: those waited for from the
        start, and any that end by themselves started meanwhile."""
        return list(dict.fromkeys([*self._waited, *self.controller.active(ends=True)]))

    def _block(self, kill_on_interrupt: bool, raise_on_failure: bool, started: list[Job],
               max_retries: int = 0) -> None:
        c = self.controller
        # those it started (or started earlier without waiting) may have ended already
        self._waited = {*started, *self._unwaited, *c.active(ends=True)}
        self._unwaited.clear()
        retryable = {j.key for j in started if isinstance(j.entity, Model)}
        for attempt in range(max_retries + 1):
            try:
                with progress_ticker(self._progress_rows, enabled=_interactive()) as tick:
                    c.wait(self._ending, tick=tick)
            except KeyboardInterrupt as exc:
                said = self._interrupted(self._ending(), kill_on_interrupt, "start() was waiting for")
                if getattr(exc, "simctl_said", False):
                    raise
                quiet_interrupt()
                raise interrupted(said) from None
            failed = [j for j in self._waited if j.status.status is Status.FAILED and j.key in retryable]
            if attempt == max_retries or not failed:
                break
            print(f"simctl: {len(failed)} job(s) failed, starting them again (retry {attempt + 1} of "
                  f"{max_retries}): {', '.join(j.key for j in failed[:5])}{' ...' if len(failed) > 5 else ''}",
                  file=sys.stderr, flush=True)
            models = []
            for j in failed:
                model = j.entity
                if model.path is None:
                    model.path = j.step.cwd  # where it ran: a retry runs there again
                models.append(model)
            again = c.launch(models)
            self._waited = (self._waited - set(failed)) | set(again)
        self._report(list(self._waited), raise_on_failure)

    def _progress_rows(self) -> list[tuple[str, int, int, int, bool]]:
        """Per entity waited for: (label, done, failed, total, runs until stopped)."""
        by_owner: dict[int, tuple[Entity, list[Job]]] = {}
        for j in list(dict.fromkeys([*self._waited, *self.controller.active()])):
            by_owner.setdefault(id(j.owner), (j.owner, []))[1].append(j)
        out = []
        for owner, jobs in by_owner.values():
            out.append((f"{owner.type} {owner.name}", sum(j.done for j in jobs),
                        sum(j.status.status is Status.FAILED for j in jobs), len(jobs), not all(j.ends for j in jobs)))
        return out

    def _report(self, jobs: list[Job], raise_on_failure: bool, stacklevel: int = 4) -> None:
        """Say which of ``jobs`` failed (a SimctlWarning), or raise JobsFailed."""
        failed = [j.record for j in jobs if j.status.status is Status.FAILED]
        if not failed:
            return
        text = logs.failure_report(failed, len(jobs))
        if raise_on_failure:
            raise JobsFailed(text, failed)
        warnings.warn(text, SimctlWarning, stacklevel=stacklevel)  # the line of the driver that called

    def _interrupted(self, jobs: list[Job], kill: bool, what: str) -> str:
        """Ctrl-C while waiting: stop the unfinished ``jobs`` (unless not
        ``kill``), saying so on screen either way; returns one line saying
        what was done. A second Ctrl-C during the stop does not interrupt it
        (the jobs would be left running untracked)."""
        active = [j for j in jobs if not j.done]
        names = ", ".join(j.key for j in active[:5]) + (" ..." if len(active) > 5 else "")
        if kill:
            print(f"\nInterrupted: stopping {len(active)} job(s) {what} "
                  "(kill_on_interrupt=True; Ctrl-C again is ignored until they are stopped)",
                  file=sys.stderr, flush=True)
            with ignoring_sigint():
                self.controller.stop(active, "interrupted (Ctrl-C)")
            return f"interrupted (Ctrl-C): stopped {len(active)} job(s) {what}" + (f": {names}" if active else "")
        self.controller.detached.update(j.key for j in active)
        print(f"\nInterrupted: {len(active)} job(s) keep running (kill_on_interrupt=False; also after "
              f"the driver exits: `simctl status {self.exp_path}` and `simctl stop` find them)",
              file=sys.stderr, flush=True)
        return f"interrupted (Ctrl-C): {len(active)} job(s) {what} keep running" + (f": {names}" if active else "")

    def stop(self, *entities: Entity) -> None:
        """Stop ``entities`` (ending their whole process trees); with no
        argument, everything this experiment started that still runs."""
        c = self.controller
        jobs = c.jobs_of(self._keys(entities)) if entities else c.active()
        c.stop(jobs)

    def poll(self, interval: float = 10, verbose: bool = True, kill_on_interrupt: bool = True) -> None:
        """Block until every running job of this experiment that ends by itself
        finishes; with ``verbose``, print (on stderr) every ``interval``
        seconds how many run, and at the end how many completed and failed.
        Failures are reported as by :meth:`start`."""
        number("interval", interval, above=0)
        boolean("verbose", verbose)
        boolean("kill_on_interrupt", kill_on_interrupt)
        c = self.controller
        jobs = list(dict.fromkeys([*self._unwaited, *c.active(ends=True)]))
        self._unwaited.clear()
        began = time.monotonic()
        try:
            self._waiting = True
            while not c.wait(jobs, timeout=interval):
                if verbose:
                    print(f"simctl: {self.name}: {sum(not j.done for j in jobs)} of {len(jobs)} job(s) running "
                          f"after {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
            self._waiting = False
        except KeyboardInterrupt as exc:
            self._waiting = False
            said = self._interrupted(jobs, kill_on_interrupt, "poll() was waiting for")
            if getattr(exc, "simctl_said", False):
                raise
            quiet_interrupt()
            raise interrupted(said) from None
        if verbose:
            failed = sum(j.status.status is Status.FAILED for j in jobs)
            print(f"simctl: {self.name}: {len(jobs)} job(s) finished: {len(jobs) - failed} without failing, "
                  f"{failed} failed", file=sys.stderr, flush=True)
        self._report(jobs, False, stacklevel=3)

    def finished(self, entity: Entity) -> bool:
        """Whether ``entity`` (every member of an ensemble) has finished."""
        keys = self._keys([entity])
        if not keys:
            raise ConfigError(f"{entity.name!r} has no jobs (an ensemble without members?), so it cannot have "
                              "finished; give it members and start it first")
        statuses = self.controller.statuses(keys)
        if len(statuses) < len(set(keys)):
            raise ConfigError(f"{entity.name!r} was not started in this experiment")
        return all(st.done for st in statuses.values())  # a job given up on (vanished) is done too

    def get_status(self, *entities: Entity) -> list[Status]:
        """The status of each job of ``entities`` (each member of an ensemble,
        each shard of a store): this driver's, else the one the manifest
        records (an earlier driver's run); NEW if never started."""
        keys = self._keys(entities)
        statuses = self.controller.statuses(keys)
        recorded = self._recorded(k for k in keys if k not in statuses)
        return [statuses[k].status if k in statuses else recorded[k].status if k in recorded else Status.NEW
                for k in keys]

    def logs(self, entity: Entity | str, err: bool = False) -> str:
        """The output (``err``: the error output) of the latest run of
        ``entity`` (a model, a member, an ensemble: each member's, headed by its
        name; or a job's name or key), as :command:`simctl logs` prints it."""
        boolean("err", err)
        name = entity if isinstance(entity, str) else None
        keys = self._keys([entity]) if name is None else None
        with self.controller.lock:
            latest = self.controller.manifest.latest()
        recs = logs.select(latest, name) if name is not None else [latest[k] for k in keys or () if k in latest]
        if not recs:
            raise ConfigError(f"{name or entity.name!r} has no recorded run in this experiment "  # type: ignore[union-attr]
                              f"({self.exp_path})")
        return logs.read_logs(recs, err)

    @staticmethod
    def _keys(entities: Iterable[Any]) -> list[str]:
        return [k for e in _flatten(entities) for k in e.job_keys()]

    def preview(self, *entities: Entity, show: bool = True) -> str:
        """The exact commands (and batch scripts) :meth:`start` would run,
        printed (``show``) and returned; nothing is started."""
        boolean("show", show)
        ents = _flatten(entities)
        if not ents:
            raise ConfigError("preview() needs at least one entity (a Model, an Ensemble...), as start() does")
        text = self._describe(self.controller.prepared(ents))
        if show:
            print(text)
        return text

    def _describe(self, plan: LaunchPlan) -> str:
        lines = [f"Experiment {self.name!r} at {self.exp_path} on launcher {self.launcher_name!r}"]
        for launch in plan.launches:
            key = launch.members[0].key if isinstance(launch, BatchJob) else launch.key
            owner = plan.owner[key]
            lines.append(f"# {owner.type} {owner.name}" + (f": {launch.name}" if launch.name != owner.name else ""))
            failed = [s for s in (launch.members if isinstance(launch, BatchJob) else [launch]) if s.error]
            lines += [f"# not launched: {s.key}: {s.error}" for s in failed] or [self.launcher.preview(launch)]
        return "\n".join(lines)

    def summary_data(self) -> list[mf.JobRecord]:
        """Every launch of this experiment, oldest first."""
        return self.controller.records()

    def summary(self) -> str:
        """A table of every launch: name, entity type, job id, run, time, status,
        return code; then, if the latest run of some jobs failed, how many, with
        each one's error log and last lines."""
        records = self.summary_data()
        latest = [r for r in mf.latest_records(records) if not r.until_stopped]
        report = logs.failure_report([r for r in latest if r.status is Status.FAILED], len(latest))
        return render_table(records) + (f"\n\n{report}" if report else "")

    @property
    def hook_errors(self) -> list[str]:
        """Errors raised by plugins' lifecycle hooks (each also logged)."""
        return list(self.controller.hook_errors)


def _interactive() -> bool:
    """Whether to draw progress: a terminal, or a Jupyter kernel (rich draws a widget there)."""
    if sys.stdout.isatty():
        return True
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _path(arg: str, value: Any) -> str | None:
    """An absolute path (``~`` expanded) that is a directory or does not
    exist yet, or None."""
    if value is None:
        return None
    text = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(text, str) or not text or "\0" in text:
        error = ConfigError if isinstance(text, str) else ConfigTypeError
        raise error(f"{arg} must be a path to a directory (a non-empty str or os.PathLike without NUL), "
                          f"got {show(value)}")
    path = os.path.abspath(os.path.expanduser(text))
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"{arg} {path} exists and is not a directory; give a directory (or a path to create)")
    return path


def _placement(path: str | None) -> str:
    """``Model.placement`` of a path given to ``create_*`` (None: the default one): a directory
    that exists must still exist at start; one to be made is made then, as SmartSim does."""
    return "default" if path is None else "given" if os.path.isdir(path) else "derived"


def _dicts(*args: tuple[str, Any, Callable[[str, Any], Any]]) -> None:
    """Each ``(name, value, check)``: ``value`` is None or a mapping (``[]``,
    ``""`` or ``False`` are not "nothing": ``check`` says what it accepts)."""
    for arg, value, check in args:
        if value is not None and not isinstance(value, Mapping):
            check(arg, value)


def _known_kwargs(method: str, kwargs: Mapping[str, Any], cls: Any, named: tuple[str, ...]) -> None:
    """The extra keyword arguments of ``create_*_settings`` must be fields of the settings class."""
    if cls is None or not attrs.has(cls):
        return  # no batch system (the launcher says so), or a class that checks its own arguments
    fields = [f for f in attrs.fields_dict(cls) if f not in named]
    unknown = [k for k in kwargs if k not in fields]
    if unknown:
        hints = [m for u in unknown for m in difflib.get_close_matches(u, fields, 1)]
        raise ConfigError(f"{method}() has no argument(s) {', '.join(map(repr, unknown))}"
                          + (f" (did you mean {', '.join(map(repr, hints))}?)" if hints else "")
                          + f"; {cls.__name__} also takes: {choices(fields)}")


def _model_params(params: Any) -> dict[str, Any]:
    """``create_model``'s ``params``: a dict of str name -> value."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ConfigTypeError(f"params must be a dict of name -> value, got {type(params).__name__} {params!r:.80}")
    bad = [k for k in params if not isinstance(k, str) or not k]
    if bad:
        raise ConfigError(f"params names must be non-empty strings, got {show(bad[0])}"
                          + (f"; write {str(bad[0])!r}" if bad[0] != "" else ""))
    for name, value in params.items():
        check_param_name(name)
        checks.param_value(name, value)
    return dict(params)


def _within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or inside it."""
    path, folder = os.path.normpath(path), os.path.normpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _check_writable(path: str) -> None:
    """ConfigError unless ``path`` is (or can be made as) a directory we can
    write in; nothing is created."""
    probe = path
    while not os.path.lexists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        raise ConfigError(f"cannot create the experiment directory {path}: {probe} is not a directory; "
                          "choose another exp_path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write in {probe} (permission denied), so not in the experiment directory "
                          f"{path}; choose an exp_path you can write to")
