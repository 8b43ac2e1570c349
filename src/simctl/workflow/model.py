"""A :class:`Model`: one simulation or application, what to run, with which
parameters, where; and what it asks of the feature store (its
:class:`~simctl.store.use.StoreUse`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..core import bulk, checks
from ..core.entity import Entity, PlanContext
from ..core.errors import ConfigError, ConfigTypeError
from ..core.files import EntityFiles, name_validator
from ..core.generator import PARAMS_FILE
from ..core.settings import BatchSettings, RunSettings
from ..core.status import JobStatus, Status
from ..core.steps import Launch, ProcessStep
from ..store.use import StoreMethods, StoreUse, check_plan, prepare

if TYPE_CHECKING:
    from ..store.colocated import ColocatedDB


def params_to_args(params: dict[str, Any], names: Sequence[str]) -> list[str]:
    """``--name=value`` for long names, ``-n value`` for one-letter names."""
    out: list[str] = []
    for name in names:
        value = checks.param_value(name, params[name])  # also a value set after the model was made
        out += [f"-{name}", str(value)] if len(name) == 1 else [f"--{name}={value}"]
    return out


def placed(inst: Any, attribute: Any, value: Any) -> Any:
    """on_setattr of ``path``: a path set after creation (``generate``, ``set_path``, by hand) is where it runs."""
    object.__setattr__(inst, "placement", "given")
    return value


def make_dirs(steps: Sequence[ProcessStep]) -> None:
    """Create the default path (``<exp_path>/<name>``, its output files' place) of each step's model
    never generated, as SmartSim does. A path given or generated that vanished is not made again:
    the model fails saying so."""
    made = [s for s in steps if isinstance(s.entity, Model) and s.entity.placement != "given" and s.out]
    for cwd in dict.fromkeys(os.path.dirname(s.out) for s in made if s.out):
        if not os.path.isdir(cwd):
            try:
                os.makedirs(cwd, exist_ok=True)
            except OSError as exc:
                raise ConfigError(f"cannot make the run directory {cwd}: {exc.strerror}; give the model a path= "
                                  "you can write to") from None


#: parameter value types checks.param_value takes at once (the common case, tested without a call)
_PLAIN_VALUES = frozenset({str, int, float, bool})


def _check_params(params: Any) -> None:
    if not isinstance(params, dict):
        raise ConfigTypeError(f"params must be a dict of name -> value, got {checks.show(params)}")
    for name, value in params.items():
        if value.__class__ not in _PLAIN_VALUES:
            checks.param_value(name, value)


def _check_params_as_args(name: str, params: dict[str, Any], params_as_args: list[str]) -> None:
    if len(set(params_as_args)) < len(params_as_args):
        raise ConfigError(f"model {name!r}: params_as_args {params_as_args} names a parameter "
                          "more than once; give each once")
    missing = [n for n in params_as_args if n not in params]
    if missing:
        raise ConfigError(f"model {name!r}: params_as_args names {missing}, which are not "
                          f"parameters; parameters are {sorted(params) or '(none)'}")


@attrs.define(eq=True)
class Model(StoreMethods, Entity):
    """One simulation or application: what to run, with which parameters, where."""

    name: str = attrs.field(validator=name_validator("model"))
    run_settings: RunSettings
    #: checked when set, also after the model was made (``model.params = {...}``)
    params: dict[str, Any] = attrs.field(factory=dict, validator=lambda _s, _a, v: _check_params(v))
    #: where it runs and writes ``<name>.out``/``.err``: ``<exp_path>/<name>`` from ``create_model`` unless given
    path: str | None = attrs.field(default=None, on_setattr=[attrs.setters.validate, placed])
    batch_settings: BatchSettings | None = None
    params_as_args: list[str] = attrs.field(factory=list)
    files: EntityFiles = attrs.field(factory=EntityFiles)
    #: what it asks of the feature store: key prefixes, ML objects, a colocated store
    store_use: StoreUse = attrs.field(factory=StoreUse)
    #: the ensemble this model is a member of (set by the ensemble)
    ensemble: str | None = None
    #: where its ``path`` came from: "given" (an existing directory as ``path=``, ``generate``,
    #: ``set_path``: it runs there, and the directory must still exist), "derived" (a ``path=`` to be
    #: made, or ``<ensemble path>/<member>`` of an ensemble given a path: it runs there, made at start)
    #: or "default" (``<exp_path>/<name>`` from ``create_model``, never generated: it runs in the
    #: driver's directory, as the guides' examples expect; its output files go to ``path``, made at start)
    placement: str = attrs.field(default="given", eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if type(self.run_settings) is not RunSettings and not isinstance(self.run_settings, RunSettings):
            raise ConfigTypeError(f"model {self.name!r}: run_settings must be a RunSettings (from "
                              f"Experiment.create_run_settings), got {type(self.run_settings).__name__}")
        if self.batch_settings is not None and not isinstance(self.batch_settings, BatchSettings):
            raise ConfigTypeError(f"model {self.name!r}: batch_settings must be a BatchSettings (from "
                              f"Experiment.create_batch_settings) or None, got {checks.show(self.batch_settings)}")
        if self.params_as_args:
            _check_params_as_args(self.name, self.params, self.params_as_args)

    def attach_generator_files(self, to_copy: Any = None, to_symlink: Any = None,
                               to_configure: Any = None) -> None:
        """Files that ``Experiment.generate`` copies, symlinks or writes with this
        model's parameters into its directory. Replaces earlier attachments."""
        self.files = EntityFiles.checked(to_copy, to_symlink, to_configure)

    def disable_key_prefixing(self) -> None:
        """Stop prefixing this model's keys."""
        self.store_use.key_prefixing = False

    def query_key_prefixing(self) -> bool:
        """Whether keys are prefixed with the model's name."""
        return self.store_use.key_prefixing

    def params_to_args(self) -> list[str]:
        """The command-line arguments made from the ``params_as_args`` parameters."""
        return params_to_args(self.params, self.params_as_args)

    # -- the entity protocol ----------------------------------------------------------

    @property
    def key(self) -> str:
        """Unique within an experiment: ``<ensemble>/<name>`` for a member, else the name."""
        return f"{self.ensemble}/{self.name}" if self.ensemble else self.name

    def job_keys(self) -> list[str]:
        return [self.key]

    def process_step(self, ctx: PlanContext, default_path: str | None = None) -> ProcessStep:
        """This model's step: executable, arguments, directory, environment and
        output files. A model runs in its ``path``; its default path
        (``<exp_path>/<name>``, from ``create_model``) holds its output files and
        becomes where it runs once generated: before, it runs in the driver's
        current directory. A Model made by its constructor without a path runs
        in ``default_path`` (its ensemble's), else the current directory."""
        rs = self.run_settings
        if self.path and self.placement != "given" and self._generated_before():
            self.placement = "given"  # an earlier driver generated it: it runs there
        if self.path and self.placement == "default":
            cwd, where = os.getcwd(), self.path  # a default path, never generated
        else:
            cwd = where = self.path or default_path or os.getcwd()
        files = self.files
        if (files.to_copy or files.to_symlink or files.to_configure) and not os.path.isdir(where):
            raise ConfigError(f"model {self.key!r} has files to copy, symlink or configure, but its directory {where} "
                              "was never generated; call exp.generate(...) on it (or its ensemble) before start")
        env: dict[str, str | None] = dict(ctx.handoff.env)
        env.update(rs.env_vars)
        step = ProcessStep(name=self.name, argv=[rs.exe, *rs.exe_args, *self.params_to_args()], cwd=cwd,
                           env=env, secret_env=dict(ctx.handoff.secret_env),
                           out=os.path.join(where, f"{self.name}.out"), err=os.path.join(where, f"{self.name}.err"),
                           run_settings=rs, key=self.key, entity=self)
        self.store_use.apply(step, self.name, ctx)
        return step

    def _generated_before(self) -> bool:
        """Whether ``generate`` wrote this model's default path (in an earlier
        driver): its directory, or its ensemble's, holds the parameters record."""
        assert self.path is not None
        tops = [self.path, os.path.dirname(self.path)] if self.ensemble else [self.path]
        return any(os.path.isfile(os.path.join(top, PARAMS_FILE)) for top in tops)

    # -- colocated store -----------------------------------------------------------------

    def colocate_db_tcp(self, port: int | None = None, ifname: str | list[str] = "lo", db_cpus: int = 1,
                        custom_pinning: Any = None, debug: bool = False, **kwargs: Any) -> None:
        """Start a store beside this model on each node it runs on, reachable
        over TCP on ``port`` (default: a port free here, picked now) of ``ifname`` (``SSDB`` tells the application
        where); it stops when the application ends. ``db_identifier="name"`` also
        names it to the application as ``SSDB_<name>`` (with its own
        ``SSDB_PASSWORD_<name>``...), for an application that uses another store too:
        ``Client(db_identifier="name")`` connects to it."""
        from ..store import colocated  # its server checks import redis-py: start-up cost

        self.store_use.colocated = colocated.tcp(port, ifname, db_cpus, custom_pinning, debug, **kwargs)

    def colocate_db_uds(self, unix_socket: str | None = None, socket_permissions: int = 0o700, db_cpus: int = 1,
                        custom_pinning: Any = None, debug: bool = False, **kwargs: Any) -> None:
        """Like :meth:`colocate_db_tcp`, over a Unix socket that only this
        user can reach (a new one per launch unless ``unix_socket`` is given)."""
        from ..store import colocated  # its server checks import redis-py: start-up cost

        self.store_use.colocated = colocated.uds(unix_socket, socket_permissions, db_cpus, custom_pinning, debug,
                                                 **kwargs)

    def colocate_db(self, *args: Any, **kwargs: Any) -> None:
        """Deprecated: :meth:`colocate_db_tcp`."""
        import warnings

        warnings.warn("Model.colocate_db is deprecated; use colocate_db_tcp (or colocate_db_uds)",
                      DeprecationWarning, stacklevel=2)
        self.colocate_db_tcp(*args, **kwargs)

    @property
    def colocated_db(self) -> ColocatedDB | None:
        """The store colocated with this model (``colocate_db_tcp``/``_uds``), or None."""
        colocated: ColocatedDB | None = self.store_use.colocated
        return colocated

    def final_status(self, step: ProcessStep, status: JobStatus) -> JobStatus:
        """A model whose colocated store failed says why in its reason (the
        store's error line, from the model's error output)."""
        if status.status is not Status.FAILED or self.colocated_db is None or not step.err:
            return status
        from ..store import colocated  # start-up cost (a colocated model imported it already)

        line = colocated.failure_line(step.err)
        if line is None:
            return status
        return attrs.evolve(status, reason=f"{status.reason}; its colocated store failed: {line}")

    def prepare(self, steps: Sequence[ProcessStep]) -> None:
        """Make its directory if it is missing (a model never generated runs
        in ``<exp_path>/<name>``, as in SmartSim), then store the ML objects
        (:meth:`add_ml_model`...) before the application starts."""
        make_dirs(steps)
        prepare(steps, [self.store_use])

    def plan(self, ctx: PlanContext) -> list[Launch]:
        ctx.check(self.run_settings, None)
        check_plan(f"model {self.name!r}", [(self.name, self.store_use)], ctx)
        step = self.process_step(ctx)
        if self.batch_settings is not None:
            return [ctx.batch_job(self.name, step.cwd, self.batch_settings, [step])]
        return [step]

    def run_dirs(self, exp_path: str, tag: str) -> list[tuple[Model, str]]:
        """The run directories generate() writes for this entity: (model, directory);
        a member of an ensemble alone gets its place in the ensemble's directory."""
        return [(self, os.path.join(exp_path, *([self.ensemble] if self.ensemble else []), self.name))]



#: a member's fields in the order :func:`member` passes them
_build = bulk.builder(Model, ("name", "run_settings", "params", "path", "batch_settings", "params_as_args", "files",
                              "store_use", "ensemble", "placement"))


def member(name: str, run_settings: RunSettings, params: dict[str, Any], path: str | None,
           params_as_args: list[str], files: EntityFiles, store_use: StoreUse, ensemble: str,
           placement: str) -> Model:
    """A member its ensemble makes after one member was made by the
    constructor, whose checks cover what all members share (the run
    settings' type, ``params_as_args`` naming each parameter once), and after
    it checked its longest member name: only what differs per member (its
    parameter values, the parameters ``params_as_args`` names) is checked
    again, with the constructor's errors. The parts are stored as given: the
    caller gives each member its own."""
    _check_params(params)
    if params_as_args:
        _check_params_as_args(name, params, params_as_args)
    return _build(name, run_settings, params, path, None, params_as_args, files, store_use, ensemble, placement)
