"""The Experiment facade: the one object a driver script uses to create,
generate, start, watch and stop its entities."""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Iterable, Mapping, Sequence

from ..log import get_logger
from . import generator
from . import manifest as mf
from .controller import Controller, Job
from .entities import Ensemble, Model, check_name
from .errors import ConfigError, choices
from .expansion import Strategy, as_values
from .launcher import Launcher
from .plugins import Plugins, call_hook, default_plugins
from .settings import BatchSettings, RunSettings
from .status import Status
from .table import render_table

log = get_logger("experiment")
Entity = Model | Ensemble


class Generated(list):  # type: ignore[type-arg]
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
        elif isinstance(e, (Model, Ensemble)):
            out.append(e)
        else:
            raise ConfigError(f"expected Model or Ensemble, got {type(e).__name__} ({e!r})")
    return out


class Experiment:
    """A workflow: its entities, where their directories go, and the launcher
    that runs them.

    ``launcher`` is any installed launcher's name (``simctl plugins list``), or
    ``"auto"`` to pick the workload manager present here.
    """

    def __init__(self, name: str, exp_path: str | None = None, launcher: str = "local", *,
                 plugins: Plugins | None = None, launcher_options: Mapping[str, Any] | None = None):
        self.name = check_name("experiment", name)
        self.exp_path = os.path.abspath(exp_path or os.path.join(os.getcwd(), name))
        if os.path.exists(self.exp_path) and not os.path.isdir(self.exp_path):
            raise ConfigError(f"exp_path {self.exp_path} exists and is not a directory")
        self.plugins = plugins or default_plugins()
        self.launcher_name = self._pick_launcher(launcher)
        cls = self.plugins.get("launcher", self.launcher_name)
        self.launcher: Launcher = cls(**dict(launcher_options or {}))
        self._controller: Controller | None = None

    def _pick_launcher(self, launcher: str) -> str:
        names = self.plugins.names("launcher")
        if launcher != "auto":
            if launcher not in names:
                raise ConfigError(f"unknown launcher {launcher!r}; installed: {choices(names)} or 'auto'")
            return launcher
        scored = []
        for n in names:
            score, why = self.plugins.get("launcher", n).detect()
            scored.append((score, n, why))
        score, best, why = max(scored, default=(0, "", ""))
        if score <= 0:
            raise ConfigError(f"launcher='auto' found no workload manager; installed launchers: {choices(names)}")
        log.info("launcher='auto' picked %r: %s", best, why)
        return best

    @property
    def controller(self) -> Controller:
        if self._controller is None:
            self._controller = Controller(self.name, self.exp_path, self.launcher, self.plugins, self)
        return self._controller

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
        if not isinstance(exe, str) or not exe:
            raise ConfigError(f"exe must be a non-empty string (a program name or path), got {exe!r}")
        return self.launcher.create_run_settings(exe, exe_args, run_command, run_args, env_vars, **kwargs)

    def create_batch_settings(self, nodes: int | None = None, time: Any = None, queue: str | None = None,
                              account: str | None = None, batch_args: Mapping[str, Any] | None = None,
                              **kwargs: Any) -> BatchSettings:
        """Settings to submit a batch job with this experiment's launcher."""
        return self.launcher.create_batch_settings(nodes, time, queue, account, batch_args, **kwargs)

    # -- entities -------------------------------------------------------------------------

    def create_model(self, name: str, run_settings: RunSettings, params: Mapping[str, Any] | None = None,
                     path: str | None = None, enable_key_prefixing: bool = False,
                     batch_settings: BatchSettings | None = None,
                     params_as_args: Sequence[str] | None = None) -> Model:
        """A model: one application run. Without ``path`` (and without
        :meth:`generate`) it runs in the current directory."""
        model = Model(name, run_settings, dict(params or {}),
                      os.path.abspath(path) if path else None, batch_settings,
                      list(params_as_args or []), key_prefixing=enable_key_prefixing)
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
        empty to fill with :meth:`Ensemble.add_model`."""
        check_name("ensemble", name)
        expand, label = self._strategy(perm_strategy, n_models, seed)
        if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1):
            raise ConfigError(f"replicas must be a positive integer, got {replicas!r}")
        if run_settings is not None and not isinstance(run_settings, RunSettings):
            raise ConfigError(f"run_settings must come from create_run_settings, got {type(run_settings).__name__}")
        if params is None:
            values: dict[str, list[Any] | None] = {}
        elif isinstance(params, Mapping):
            values = {str(k): as_values(str(k), v) for k, v in params.items()}
        elif isinstance(params, (set, frozenset, list, tuple)):
            # values come from files to configure; sorted, so member order never
            # depends on the hash seed of a set
            values = {str(k): None for k in (sorted(params) if isinstance(params, (set, frozenset)) else params)}
        else:
            raise ConfigError(f"params must be a dict of name -> values (or a set of names whose values are "
                              f"declared in files to configure), got {type(params).__name__}")
        missing = [n for n in params_as_args or [] if n not in values]
        if missing:
            raise ConfigError(f"params_as_args names {missing}, which are not parameters; parameters are "
                              f"{sorted(values) or '(none)'}")
        if (values or replicas) and run_settings is None:
            raise ConfigError(f"ensemble {name!r}: params or replicas need run_settings to run the members with")
        if run_settings is not None and not values and not replicas:
            raise ConfigError(f"ensemble {name!r} has run_settings but no params and no replicas, so no members; "
                              "give params={...} or replicas=N (or leave out run_settings and add_model)")
        ens = Ensemble(name, values, run_settings, batch_settings, list(params_as_args or []), replicas or 0,
                       label, n_models, seed, os.path.abspath(path) if path else None)
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
        dirs = generator.generate(ents, self.exp_path, overwrite, tag, unknown_tags)  # type: ignore[arg-type]
        return Generated(dirs, ents)

    # -- running ---------------------------------------------------------------------------

    def start(self, *entities: Entity, block: bool = True, summary: bool = False,
              kill_on_interrupt: bool = True) -> None:
        """Launch ``entities``. ``block`` waits until they all finish;
        ``summary`` prints what is about to start; Ctrl-C while blocking stops
        what this call launched unless ``kill_on_interrupt=False``."""
        ents = _flatten(entities)
        if not ents:
            raise ConfigError("start() needs at least one Model or Ensemble")
        if summary:
            print(self.preview(*ents, show=False))
        jobs = self.controller.launch(ents)
        log.info("started %d job(s) on %s", len(jobs), self.launcher_name)
        if block:
            self._block(jobs, kill_on_interrupt)

    def _block(self, jobs: list[Job], kill_on_interrupt: bool) -> None:
        from .progress import progress_ticker

        try:
            with progress_ticker(f"{self.name}: running", enabled=sys.stdout.isatty()) as tick:
                self.controller.wait(jobs, tick=tick)
        except KeyboardInterrupt:
            self._interrupted(jobs, kill_on_interrupt, "this start() launched")
            raise
        failed = [j for j in jobs if j.status.status is Status.FAILED]
        if failed:
            log.warning("%d of %d job(s) failed: %s", len(failed), len(jobs),
                        "; ".join(f"{j.model.name}: {j.status.reason or 'exit ' + str(j.status.returncode)}"
                                  for j in failed[:5]))

    def _interrupted(self, jobs: list[Job], kill: bool, what: str) -> None:
        """Ctrl-C while waiting: stop the unfinished ``jobs`` (unless not
        ``kill``), saying so on screen either way."""
        active = [j.model for j in jobs if not j.done]
        if kill:
            print(f"\nInterrupted: stopping {len(active)} job(s) {what} "
                  "(kill_on_interrupt=True)", file=sys.stderr, flush=True)
            self.controller.stop(active)
            print("Stopped.", file=sys.stderr, flush=True)
        else:
            print(f"\nInterrupted: {len(active)} job(s) keep running (kill_on_interrupt=False)",
                  file=sys.stderr, flush=True)

    def stop(self, *entities: Entity) -> None:
        """Stop ``entities`` (ending their whole process trees)."""
        self.controller.stop(self._models(entities))

    def poll(self, interval: float = 10, verbose: bool = True, kill_on_interrupt: bool = True) -> None:
        """Block until every running job of this experiment finishes, logging
        the count of running jobs every ``interval`` seconds."""
        c = self.controller
        with c.lock:
            jobs = [j for j in c.jobs.values() if not j.done]
        try:
            while not c.wait(jobs, timeout=interval):
                if verbose:
                    log.info("%d job(s) running", sum(not j.done for j in jobs))
        except KeyboardInterrupt:
            self._interrupted(jobs, kill_on_interrupt, "poll() was waiting for")
            raise

    def finished(self, entity: Entity) -> bool:
        """Whether ``entity`` (every member of an ensemble) has finished."""
        statuses = self.get_status(entity)
        if any(s is Status.NEW for s in statuses):
            raise ConfigError(f"{entity.name!r} was not started in this experiment")
        return all(s.is_terminal for s in statuses)

    def get_status(self, *entities: Entity) -> list[Status]:
        """The status of each model (each member of an ensemble); NEW if never started."""
        c = self.controller
        with c.lock:
            return [c.jobs[m.name].status.status if m.name in c.jobs else Status.NEW
                    for m in self._models(entities)]

    def _models(self, entities: Iterable[Any]) -> list[Model]:
        out: list[Model] = []
        for e in _flatten(entities):
            out += e.models if isinstance(e, Ensemble) else [e]
        return out

    def preview(self, *entities: Entity, show: bool = True) -> str:
        """The exact commands (and batch scripts) :meth:`start` would run,
        printed (``show``) and returned; nothing is started."""
        c = self.controller
        lines = [f"Experiment {self.name!r} at {self.exp_path} on launcher {self.launcher_name!r}"]
        for unit in c.units(_flatten(entities)):
            step = c.prepare(unit)
            lines.append(f"# {unit.ensemble + ': ' if unit.ensemble else ''}{step.name}")
            lines.append(self.launcher.preview(step))
        text = "\n".join(lines)
        if show:
            print(text)
        return text

    def summary_data(self) -> list[mf.JobRecord]:
        """Every launch of this experiment, oldest first."""
        c = self.controller
        with c.lock:
            return list(c.manifest.jobs)

    def summary(self) -> str:
        """A table of every launch: name, entity type, job id, run, time, status, return code."""
        return render_table(self.summary_data())

    @property
    def hook_errors(self) -> list[str]:
        """Errors raised by plugins' lifecycle hooks (each also logged)."""
        return list(self.controller.hook_errors)
