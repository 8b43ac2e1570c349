"""The entities of an experiment: :class:`Model` and :class:`Ensemble` (attrs).

An ensemble expands its parameters lazily: ``len(ensemble)`` and
``ensemble.iter_params()`` cost nothing per member, and member
:class:`Model` objects are made the first time they are needed (iteration,
lookup, ``generate``, ``start``) and kept from then on.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable, Iterator, Sequence

import attrs

from . import checks, templates
from .entity import Entity, PlanContext
from .errors import ConfigError
from .expansion import Params, Repeat, as_sequence
from .settings import BatchSettings, RunSettings
from .steps import Launch, ProcessStep

ExpandFn = Callable[[list[str], list[list[Any]], "int | None", "int | None"], Sequence[Params]]
CreatedHook = Callable[..., None]  # called with the entities just made


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


#: longest name: a directory name (255 bytes) less what a staging directory adds around it
MAX_NAME = 200


def check_name(kind: str, name: Any) -> str:
    """An entity name becomes a directory name and a table row: non-empty,
    at most MAX_NAME bytes, no path separators or control characters."""
    if type(name) is str and len(name) <= MAX_NAME and _PLAIN_NAME.fullmatch(name):  # the common case, cheaply
        return name
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{kind} name must be a non-empty string, got {name!r:.80}")
    bad = [c for c in ("/", "\\", "\0") if c in name]
    if bad or name in (".", "..") or name.startswith("."):
        raise ConfigError(f"invalid {kind} name {name!r}: it names a directory, so it may not contain "
                          "'/', '\\\\' or NUL, nor start with '.'")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ConfigError(f"invalid {kind} name {name!r}: control characters (a newline, a tab...) are not "
                          "allowed in names")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise ConfigError(f"{kind} name is {len(name.encode('utf-8', 'surrogateescape'))} bytes long "
                          f"({name[:40]!r}...); names may be at most {MAX_NAME} bytes (they name directories)")
    return name


def _name_validator(kind: str) -> Callable[[Any, Any, Any], None]:
    return lambda _inst, _attr, value: check_name(kind, value)


def _paths(value: str | Iterable[str] | None, kind: str, tree: dict[str, str] | None = None) -> list[str]:
    """The absolute paths (``~`` expanded) of the files to ``kind``: a path,
    or a list (or set) of paths, each of which must exist."""
    if isinstance(value, (set, frozenset)):  # no order, but files need none: sorted, so the layout is stable
        value = sorted(value, key=str)
    items = checks.string_list(f"to_{kind}", value, items=(str, os.PathLike), allow_none=True)
    out = []
    for i, item in enumerate(items):
        if not item.strip():
            raise ConfigError(f"to_{kind}[{i}] is an empty path {item!r}; give a file or directory")
        path = os.path.abspath(os.path.expanduser(item))
        if not os.path.exists(path):
            raise ConfigError(f"file to {kind} does not exist: {item!r} (looked at {path})")
        if kind == "configure" and os.path.isdir(path):
            for src in _walk_configure(path):
                out.append(src)
                if tree is not None:
                    tree[src] = os.path.relpath(src, path)
        elif kind == "configure" and not os.path.isfile(path):
            raise ConfigError(f"file to configure {path} is not a regular file (a pipe, socket or device?); "
                              "files to configure are read as text")
        else:
            out.append(path)
    return out


def _walk_configure(root: str) -> list[str]:
    """The files under a to_configure directory, sorted, symlinks followed. A
    link that loops back to a directory above it, or that cannot be resolved
    (dangling, or a loop of links), and anything but a regular file (a pipe,
    socket or device) is a ConfigError naming it, not something skipped."""
    out: list[str] = []
    stack = [(root, (os.path.realpath(root),))]
    while stack:
        folder, above = stack.pop()
        subdirs = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            try:
                real = os.path.realpath(entry.path, strict=True)
            except OSError as exc:
                raise ConfigError(f"to_configure directory {root}: cannot follow {entry.path} "
                                  f"({exc.strerror}): a symlink that loops or points nowhere") from None
            if entry.is_dir():
                if real in above:
                    raise ConfigError(f"to_configure directory {root}: {entry.path} links back to {real}, "
                                      "which contains it (a symlink loop)")
                subdirs.append((entry.path, above + (real,)))
            elif entry.is_file():
                out.append(entry.path)
            else:
                raise ConfigError(f"to_configure directory {root}: {entry.path} is not a regular file "
                                  "(a pipe, socket or device?); files to configure are read as text")
        stack += reversed(subdirs)
    return out


def _incoming(entity: Any) -> str:
    """The name ``register_incoming_entity`` records: an entity's, or a name
    (non-empty, no ',': the names are joined with commas in ``SSKEYIN``)."""
    name = entity.name if isinstance(entity, Entity) else entity
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise ConfigError(f"register_incoming_entity takes a Model, an Ensemble or an entity's name (a non-empty "
                          f"str without ','); got {checks.show(entity)}")
    return name


@attrs.define
class EntityFiles:
    """Files a generated entity directory receives."""

    to_copy: list[str] = attrs.field(factory=list)
    to_symlink: list[str] = attrs.field(factory=list)
    to_configure: list[str] = attrs.field(factory=list)
    #: where a file found in a to_configure directory goes in the run directory: its path
    #: relative to that directory (``sub/in.txt``); other files go to their base name
    configure_as: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    def checked(cls, to_copy: Any = None, to_symlink: Any = None, to_configure: Any = None) -> "EntityFiles":
        """Absolute paths, each checked to exist. A to_configure directory is
        walked (symlinks followed) and keeps its tree; a symlink in it that
        loops or points nowhere, or a pipe, socket or device, is a ConfigError."""
        tree: dict[str, str] = {}
        return cls(_paths(to_copy, "copy"), _paths(to_symlink, "symlink"),
                   _paths(to_configure, "configure", tree), tree)


def params_to_args(params: dict[str, Any], names: Sequence[str]) -> list[str]:
    """``--name=value`` for long names, ``-n value`` for one-letter names."""
    out: list[str] = []
    for name in names:
        value = params[name]
        out += [f"-{name}", str(value)] if len(name) == 1 else [f"--{name}={value}"]
    return out


def _check_ml_store(what: str, models: Sequence["Model"], ctx: PlanContext) -> None:
    """ConfigError (at plan time) if one of ``models`` has ML models, scripts or
    functions to load and neither a running store nor a colocated one."""
    lost = [m for m in models if m.ml and m.colocated_db is None]
    if not lost or ctx.handoff.env.get("SSDB") or ctx.starting:
        return
    objs = sorted({o.describe() for m in lost for o in m.ml})
    who = what
    if len(lost) < len(models):  # some members of an ensemble: which
        who += f" (member{'s' * (len(lost) > 1)} {', '.join(m.name for m in lost[:5])}{' ...' * (len(lost) > 5)})"
    raise ConfigError(f"{who} has {', '.join(objs)} to load into the feature store before it starts, but no "
                      "store runs: start one first (db = exp.create_database(...); exp.start(db)), or colocate "
                      "one with the model (model.colocate_db_tcp() or model.colocate_db_uds())")


@attrs.define(eq=True)
class Model(Entity):
    """One simulation or application: what to run, with which parameters, where."""

    name: str = attrs.field(validator=_name_validator("model"))
    run_settings: RunSettings
    params: dict[str, Any] = attrs.field(factory=dict)
    path: str | None = None
    batch_settings: BatchSettings | None = None
    params_as_args: list[str] = attrs.field(factory=list)
    files: EntityFiles = attrs.field(factory=EntityFiles)
    key_prefixing: bool = False
    incoming_entities: list[str] = attrs.field(factory=list)
    #: the ensemble this model is a member of (set by the ensemble)
    ensemble: str | None = None
    #: a store started beside the application on each node (``colocate_db_tcp``/``_uds``): an
    #: object whose ``apply(step)`` makes the step start it
    colocated_db: Any = attrs.field(default=None, eq=False, repr=False)
    #: ML models, scripts and functions stored before the application starts
    #: (``add_ml_model``...): :class:`simctl.store.preload.MLObject`
    ml: list[Any] = attrs.field(factory=list, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if type(self.run_settings) is not RunSettings and not isinstance(self.run_settings, RunSettings):
            raise ConfigError(f"model {self.name!r}: run_settings must be a RunSettings (from "
                              f"Experiment.create_run_settings), got {type(self.run_settings).__name__}")
        if self.batch_settings is not None and not isinstance(self.batch_settings, BatchSettings):
            raise ConfigError(f"model {self.name!r}: batch_settings must be a BatchSettings (from "
                              f"Experiment.create_batch_settings) or None, got {checks.show(self.batch_settings)}")
        missing = [n for n in self.params_as_args if n not in self.params] if self.params_as_args else None
        if self.params_as_args and len(set(self.params_as_args)) < len(self.params_as_args):
            raise ConfigError(f"model {self.name!r}: params_as_args {self.params_as_args} names a parameter "
                              "more than once; give each once")
        if missing:
            raise ConfigError(f"model {self.name!r}: params_as_args names {missing}, which are not "
                              f"parameters; parameters are {sorted(self.params) or '(none)'}")

    def attach_generator_files(self, to_copy: Any = None, to_symlink: Any = None,
                               to_configure: Any = None) -> None:
        """Files that ``Experiment.generate`` copies, symlinks or writes with this
        model's parameters into its directory. Replaces earlier attachments."""
        self.files = EntityFiles.checked(to_copy, to_symlink, to_configure)

    def enable_key_prefixing(self) -> None:
        """Prefix this model's feature-store keys with its name."""
        self.key_prefixing = True

    def disable_key_prefixing(self) -> None:
        """Stop prefixing this model's keys."""
        self.key_prefixing = False

    def query_key_prefixing(self) -> bool:
        """Whether keys are prefixed with the model's name."""
        return self.key_prefixing

    def register_incoming_entity(self, entity: "Model | str") -> None:
        """Let this model read the keys ``entity`` wrote with prefixing on."""
        name = _incoming(entity)
        if name not in self.incoming_entities:
            self.incoming_entities.append(name)

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
        output files. A model that was not generated runs in its ``path``, else
        ``default_path`` (its ensemble's path), else the current directory."""
        rs = self.run_settings
        cwd = self.path or default_path or os.getcwd()
        env: dict[str, str | None] = dict(ctx.handoff.env)
        env.update(rs.env_vars)
        if self.key_prefixing:
            env["SSKEYOUT"] = self.name
        if self.incoming_entities:
            env["SSKEYIN"] = ",".join(self.incoming_entities)
        step = ProcessStep(name=self.name, argv=[rs.exe, *rs.exe_args, *self.params_to_args()], cwd=cwd,
                           env=env, secret_env=dict(ctx.handoff.secret_env),
                           out=os.path.join(cwd, f"{self.name}.out"), err=os.path.join(cwd, f"{self.name}.err"),
                           run_settings=rs, key=self.key, entity=self)
        if self.colocated_db is not None:
            self.colocated_db.apply(step)
            if self.ml and step.per_node is not None:
                from ..store.preload import manifest_path

                step.per_node += ["--preload", manifest_path(step)]
        return step

    # -- colocated store -----------------------------------------------------------------

    def colocate_db_tcp(self, port: int = 6780, ifname: str | list[str] = "lo", db_cpus: int = 1,
                        custom_pinning: Any = None, debug: bool = False, **kwargs: Any) -> None:
        """Start a store beside this model on each node it runs on, reachable
        over TCP on ``port`` of ``ifname`` (``SSDB`` tells the application
        where); it stops when the application ends."""
        from ..store import colocated

        self.colocated_db = colocated.tcp(port, ifname, db_cpus, custom_pinning, debug, **kwargs)

    def colocate_db_uds(self, unix_socket: str | None = None, socket_permissions: int = 0o700, db_cpus: int = 1,
                        custom_pinning: Any = None, debug: bool = False, **kwargs: Any) -> None:
        """Like :meth:`colocate_db_tcp`, over a Unix socket that only this
        user can reach (a new one per launch unless ``unix_socket`` is given)."""
        from ..store import colocated

        self.colocated_db = colocated.uds(unix_socket, socket_permissions, db_cpus, custom_pinning, debug,
                                          **kwargs)

    def colocate_db(self, *args: Any, **kwargs: Any) -> None:
        """Deprecated: :meth:`colocate_db_tcp`."""
        import warnings

        warnings.warn("Model.colocate_db is deprecated; use colocate_db_tcp (or colocate_db_uds)",
                      DeprecationWarning, stacklevel=2)
        self.colocate_db_tcp(*args, **kwargs)

    # -- ML models, scripts and functions in the store ----------------------------------

    def add_ml_model(self, name: str, backend: str, model: bytes | None = None, model_path: str | None = None,
                     device: str = "CPU", devices_per_node: int = 1, first_device: int = 0, batch_size: int = 0,
                     min_batch_size: int = 0, min_batch_timeout: int = 0, tag: str = "",
                     inputs: list[str] | None = None, outputs: list[str] | None = None) -> None:
        """Store an ML model (bytes in memory, or a file read now) under ``name``
        in the feature store before the application starts: the experiment's
        store, or the colocated one on every node. ``device='GPU'`` with
        ``devices_per_node=N`` > 1 stores one copy per GPU, ``<name>.GPU:<i>``
        for i from ``first_device``; both are ignored for ``'CPU'``. A name
        already added to this model is a ConfigError."""
        from ..store import preload

        self._add_ml(preload.ml_model(name, backend, model, model_path, device, devices_per_node, first_device,
                                      batch_size, min_batch_size, min_batch_timeout, tag, inputs, outputs))

    def add_script(self, name: str, script: str | None = None, script_path: str | None = None,
                   device: str = "CPU", devices_per_node: int = 1, first_device: int = 0) -> None:
        """Store a TorchScript script (source text, or a file read now) under
        ``name`` before the application starts (see :meth:`add_ml_model`)."""
        from ..store import preload

        self._add_ml(preload.script(name, script, script_path, device, devices_per_node, first_device))

    def add_function(self, name: str, function: Any = None, device: str = "CPU", devices_per_node: int = 1,
                     first_device: int = 0) -> None:
        """Store a TorchScript function under ``name`` before the application
        starts: a Python function (serialized now; needs torch) or its
        TorchScript source (see :meth:`add_ml_model`)."""
        from ..store import preload

        self._add_ml(preload.function(name, function, device, devices_per_node, first_device))

    def _add_ml(self, obj: Any) -> None:
        from ..store.preload import check_new

        check_new(f"model {self.name!r}", self.ml, obj)
        self.ml.append(obj)

    def prepare(self, steps: Sequence[ProcessStep]) -> None:
        """Store the ML objects (:meth:`add_ml_model`...) before the application starts."""
        if self.ml:
            from ..store.preload import prepare

            prepare(steps)

    def plan(self, ctx: PlanContext) -> list[Launch]:
        ctx.check(self.run_settings, None)
        _check_ml_store(f"model {self.name!r}", [self], ctx)
        step = self.process_step(ctx)
        if self.batch_settings is not None:
            return [ctx.batch_job(self.name, step.cwd, self.batch_settings, [step])]
        return [step]

    def run_dirs(self, exp_path: str, tag: str) -> list[tuple["Model", str]]:
        """The run directories generate() writes for this entity: (model, directory)."""
        if self.ensemble:
            raise ConfigError(f"model {self.name!r} is a member of ensemble {self.ensemble!r}, whose directory "
                              f"holds it: generate the ensemble (exp.generate(ensemble)), not the member alone")
        return [(self, os.path.join(exp_path, self.name))]


@attrs.define(eq=False)
class Ensemble(Entity):
    """A group of models: expanded from parameters, replicated, or added by hand."""

    name: str = attrs.field(validator=_name_validator("ensemble"))
    #: parameter -> values; None means "declared inline in a file to configure"
    params: dict[str, list[Any] | None] = attrs.field(factory=dict)
    run_settings: RunSettings | None = None
    batch_settings: BatchSettings | None = None
    params_as_args: list[str] = attrs.field(factory=list)
    #: copies of each parameter set (0: none given; with no params, no members)
    replicas: int = 0
    perm_strategy: str = "all_perm"
    n_models: int | None = None
    seed: int | None = None
    path: str | None = None
    files: EntityFiles = attrs.field(factory=EntityFiles)
    key_prefixing: bool = False
    #: models added by hand with add_model
    added: list[Model] = attrs.field(factory=list)
    #: the tag around inline value lists in its files to configure; generate(tag=) must match
    tag: str = ";"
    #: ML objects every member stores before it starts (``add_ml_model``...)
    ml: list[Any] = attrs.field(factory=list, repr=False)
    _expand: ExpandFn | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _on_created: CreatedHook | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _space: Sequence[Params] | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _members: list[Model] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.batch_settings is not None and not isinstance(self.batch_settings, BatchSettings):
            raise ConfigError(f"ensemble {self.name!r}: batch_settings must be a BatchSettings (from "
                              f"Experiment.create_batch_settings) or None, got {checks.show(self.batch_settings)}")

    def bind(self, expand: ExpandFn, on_created: CreatedHook | None = None) -> "Ensemble":
        """Attach the resolved strategy and the "created" hook (done by the experiment)."""
        self._expand, self._on_created = expand, on_created
        return self

    # -- expansion ----------------------------------------------------------------

    def _inline_params(self) -> list[str]:
        return [n for n, v in self.params.items() if v is None]

    def use_tag(self, tag: str) -> None:
        """Check that ``generate(tag=...)`` matches the tag the inline value lists
        are read with (``ensemble.tag``; set it before attaching the files)."""
        if tag != self.tag and self._inline_params():
            raise ConfigError(
                f"ensemble {self.name!r} reads the inline value lists of its files with tag {self.tag!r}, "
                f"but generate() was given tag={tag!r}; use one tag for both (set ensemble.tag = {tag!r} "
                "before attach_generator_files)")

    def resolved_params(self) -> dict[str, list[Any]]:
        """Every parameter with its values, inline file values filled in."""
        return self._resolve(self.files.to_configure, self.tag)

    def _resolve(self, to_configure: list[str], tag: str) -> dict[str, list[Any]]:
        missing = self._inline_params()
        values = {n: v for n, v in self.params.items() if v is not None}
        if missing:
            inline = templates.inline_values(to_configure, tag)
            still = [n for n in missing if n not in inline]
            if still:
                t = tag
                raise ConfigError(
                    f"ensemble {self.name!r}: parameter(s) {still} have no values; give them in "
                    "params={name: [values]} or inline in a file to configure "
                    f"('NAME = {t}[1,2,3]{t}' or '{t}NAME=[1,2,3]{t}'; a file with another tag needs "
                    "ensemble.tag set before attach_generator_files)")
            values.update({n: list(inline[n]) for n in missing})
        return {n: values[n] for n in self.params}

    def space(self) -> Sequence[Params]:
        """The member parameter sets (lazy), computed once."""
        if self._space is None:
            params = self.resolved_params()
            if not params:
                self._space = Repeat([{}], self.replicas)
            else:
                if self._expand is None:
                    raise ConfigError(f"ensemble {self.name!r} has parameters but no strategy; "
                                      "create it with Experiment.create_ensemble")
                seq = as_sequence(self._expand(list(params), list(params.values()), self.n_models,
                                               self.seed), repr(self.perm_strategy), limit=self.n_models,
                                  names=list(params))
                self._space = Repeat(seq, self.replicas) if self.replicas > 1 else seq
            if len(self._space) and self.run_settings is None:
                raise ConfigError(f"ensemble {self.name!r} has {len(self._space)} members to expand "
                                  "but no run_settings; pass run_settings=")
        return self._space

    def iter_params(self) -> Iterator[Params]:
        """Member parameter sets as dicts, without making Model objects."""
        return iter(self.space())

    def _member(self, i: int, params: Params) -> Model:
        assert self.run_settings is not None
        return Model(f"{self.name}_{i}", self.run_settings, dict(params), None, None,
                     list(self.params_as_args), self.files, self.key_prefixing, ensemble=self.name, ml=list(self.ml))

    @property
    def models(self) -> list[Model]:
        """Every member Model (made on first use)."""
        if self._members is None:
            space = self.space()
            members = [self._member(i, p) for i, p in enumerate(space)]
            names = {m.name for m in members}
            clash = [m.name for m in self.added if m.name in names]
            if clash:
                raise ConfigError(f"ensemble {self.name!r}: member name(s) {clash} are used twice; "
                                  "rename the models you add")
            members += self.added
            if self._on_created is not None:
                self._on_created(*members[: len(space)])
            self._members = members
        return self._members

    # -- the entity protocol ----------------------------------------------------------

    def job_keys(self) -> list[str]:
        return [m.key for m in self.models]

    def plan(self, ctx: PlanContext) -> list[Launch]:
        models = self.models
        if not models:
            raise ConfigError(f"ensemble {self.name!r} has no members to start; give it params, "
                              "replicas, or add models with add_model")
        checked: set[int] = set()
        for m in models:  # members share their run settings: check each object once
            if id(m.run_settings) not in checked:
                checked.add(id(m.run_settings))
                ctx.check(m.run_settings, None)
        if any(m.ml for m in models):
            from ..store.preload import distinct

            distinct(((f"member {m.name!r}", o) for m in models if m.colocated_db is None for o in m.ml),
                     f"the store of ensemble {self.name!r}")
            _check_ml_store(f"ensemble {self.name!r}", models, ctx)
        steps = [m.process_step(ctx, self.path) for m in models]
        if self.batch_settings is not None:
            return [ctx.batch_job(self.name, self.path or os.getcwd(), self.batch_settings, steps)]
        return list(steps)

    def prepare(self, steps: Sequence[ProcessStep]) -> None:
        """Store the members' ML objects before they start, each key once per store."""
        if any(getattr(s.entity, "ml", None) for s in steps):
            from ..store.preload import prepare

            prepare(steps)

    def __len__(self) -> int:
        if self._members is not None:
            return len(self._members)
        return len(self.space()) + len(self.added)

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models)

    def __getitem__(self, key: str | int) -> Model:
        if isinstance(key, int):
            return self.models[key]
        for m in self.models:
            if m.name == key:
                return m
        raise KeyError(f"ensemble {self.name!r} has no member {key!r}")

    def __contains__(self, key: object) -> bool:
        name = key.name if isinstance(key, Model) else key
        return any(m.name == name for m in self.models)

    # -- the user's API ------------------------------------------------------------

    def add_model(self, model: Model) -> None:
        """Add a model made by hand; its name must be new in the ensemble."""
        if not isinstance(model, Model):
            raise ConfigError(f"add_model takes a Model, got {type(model).__name__}")
        if model.ensemble is not None and not any(m is model for m in self.added):
            raise ConfigError(f"model {model.name!r} is already a member of ensemble {model.ensemble!r}; a model "
                              "belongs to one ensemble (make another with create_model)")
        taken = {m.name for m in (self._members if self._members is not None else self.added)}
        prefix, _, index = model.name.rpartition("_")
        if (self._members is None and prefix == self.name and index.isdigit()
                and model.name == f"{self.name}_{int(index)}"):
            try:
                taken |= {model.name} if int(index) < len(self.space()) else set()
            except ConfigError:
                pass  # values still to come from files: checked when members are made
        if model.name in taken:
            raise ConfigError(f"ensemble {self.name!r} already has a member named {model.name!r}; "
                              "member names must be unique")
        if self.ml:
            from ..store.preload import check_new

            for obj in self.ml:  # every check before any change
                check_new(f"model {model.name!r}", model.ml, obj, f"add_model({model.name!r})")
            model.ml.extend(self.ml)
        model.ensemble = self.name
        self.added.append(model)
        if self._members is not None:
            self._members.append(model)

    def attach_generator_files(self, to_copy: Any = None, to_symlink: Any = None,
                               to_configure: Any = None) -> None:
        """Files every member receives (see :meth:`Model.attach_generator_files`)."""
        files = EntityFiles.checked(to_copy, to_symlink, to_configure)
        given = {n for n, v in self.params.items() if v is not None}
        if given and files.to_configure:
            both = sorted(given & set(templates.inline_values(files.to_configure, self.tag)))
            if both:
                raise ConfigError(
                    f"ensemble {self.name!r}: parameter(s) {both} have values in params and also inline in a "
                    "file to configure; give them in one place (params={'NAME'} takes the file's values)")
        if self._inline_params():
            if self._members is not None:
                raise ConfigError(
                    f"ensemble {self.name!r}: its members were already made from the inline values of "
                    "its files; attach the files before using the members")
            self._resolve(files.to_configure, self.tag)  # fail now, before changing anything
            self._space = None
        self.files = files
        added = {id(m) for m in self.added}
        for m in self._members or ():
            if id(m) not in added:
                m.files = self.files

    def add_ml_model(self, name: str, backend: str, model: bytes | None = None, model_path: str | None = None,
                     device: str = "CPU", devices_per_node: int = 1, first_device: int = 0, batch_size: int = 0,
                     min_batch_size: int = 0, min_batch_timeout: int = 0, tag: str = "",
                     inputs: list[str] | None = None, outputs: list[str] | None = None) -> None:
        """:meth:`Model.add_ml_model` for every member, present and future. The
        members share one copy per store (stored once, under ``name``)."""
        from ..store import preload

        self._add_ml(preload.ml_model(name, backend, model, model_path, device, devices_per_node, first_device,
                                      batch_size, min_batch_size, min_batch_timeout, tag, inputs, outputs))

    def add_script(self, name: str, script: str | None = None, script_path: str | None = None,
                   device: str = "CPU", devices_per_node: int = 1, first_device: int = 0) -> None:
        """:meth:`Model.add_script` for every member, present and future."""
        from ..store import preload

        self._add_ml(preload.script(name, script, script_path, device, devices_per_node, first_device))

    def add_function(self, name: str, function: Any = None, device: str = "CPU", devices_per_node: int = 1,
                     first_device: int = 0) -> None:
        """:meth:`Model.add_function` for every member, present and future."""
        from ..store import preload

        self._add_ml(preload.function(name, function, device, devices_per_node, first_device))

    def _add_ml(self, obj: Any) -> None:
        from ..store.preload import check_new

        members = self._members if self._members is not None else self.added
        check_new(f"ensemble {self.name!r}", self.ml, obj)
        for m in members:  # every check before any change
            check_new(f"member {m.name!r} of ensemble {self.name!r}", m.ml, obj)
        self.ml.append(obj)
        for m in members:
            m.ml.append(obj)

    def enable_key_prefixing(self) -> None:
        """Prefix every member's keys with its own name."""
        self.key_prefixing = True
        for m in self._members if self._members is not None else self.added:
            m.enable_key_prefixing()

    def query_key_prefixing(self) -> bool:
        """Whether every member prefixes its keys (without members: whether
        :meth:`enable_key_prefixing` was called)."""
        models = self.models
        return all(m.key_prefixing for m in models) if models else self.key_prefixing

    def register_incoming_entity(self, entity: "Model | str") -> None:
        """Let every member read ``entity``'s prefixed keys."""
        _incoming(entity)
        for m in self.models:
            m.register_incoming_entity(entity)

    def run_dirs(self, exp_path: str, tag: str) -> list[tuple[Model, str]]:
        """The run directories generate() writes: one per member under <exp_path>/<ensemble>."""
        self.use_tag(tag)
        base = os.path.join(exp_path, self.name)
        return [(m, os.path.join(base, m.name)) for m in self.models]
