"""An :class:`Ensemble`: a group of models, expanded from parameters,
replicated, or added by hand.

An ensemble expands its parameters lazily: ``len(ensemble)`` and
``ensemble.iter_params()`` cost nothing per member, and member
:class:`~simctl.workflow.model.Model` objects are made the first time they are
needed (iteration, lookup, ``generate``, ``start``) and kept from then on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs

from ..core import checks, templates
from ..core.bulk import gc_paused
from ..core.entity import Entity, PlanContext
from ..core.errors import ConfigError, ConfigTypeError
from ..core.expansion import Params, Repeat, as_sequence
from ..core.files import EntityFiles, check_name, name_validator
from ..core.settings import BatchSettings, RunSettings
from ..core.steps import Launch, ProcessStep
from ..store.use import StoreMethods, StoreUse, check_plan, prepare
from .model import Model, make_dirs, member, placed

ExpandFn = Callable[[list[str], list[list[Any]], "int | None", "int | None"], Sequence[Params]]
CreatedHook = Callable[..., None]  # called with the entities just made


@attrs.define(eq=False)
class Ensemble(StoreMethods, Entity):
    """A group of models: expanded from parameters, replicated, or added by hand."""

    name: str = attrs.field(validator=name_validator("ensemble"))
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
    #: its members' paths are ``<path>/<member>`` (see :attr:`Model.path`)
    path: str | None = attrs.field(default=None, on_setattr=[attrs.setters.validate, placed])
    files: EntityFiles = attrs.field(factory=EntityFiles)
    #: what every member asks of the store (each member has its own copy, made from this one)
    store_use: StoreUse = attrs.field(factory=StoreUse)
    #: models added by hand with add_model
    added: list[Model] = attrs.field(factory=list)
    #: the tag around inline value lists in its files to configure; generate(tag=) must match
    tag: str = ";"
    #: where its ``path`` came from: "given" or "default" (see :attr:`Model.placement`)
    placement: str = attrs.field(default="given", eq=False, repr=False)
    _expand: ExpandFn | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _on_created: CreatedHook | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _space: Sequence[Params] | None = attrs.field(default=None, init=False, eq=False, repr=False)
    _members: list[Model] | None = attrs.field(default=None, init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.batch_settings is not None and not isinstance(self.batch_settings, BatchSettings):
            raise ConfigTypeError(f"ensemble {self.name!r}: batch_settings must be a BatchSettings (from "
                              f"Experiment.create_batch_settings) or None, got {checks.show(self.batch_settings)}")

    def bind(self, expand: ExpandFn, on_created: CreatedHook | None = None) -> Ensemble:
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

    def _make_members(self, space: Sequence[Params]) -> list[Model]:
        """One Model per parameter set, ``<ensemble>_<i>``. Each member has its own copy of the
        run settings (issue 18: pinning one member with set_hostlist pins no other), parameters,
        ``params_as_args`` and store use. The first is made by the Model constructor, with
        every check; the others repeat only the checks that differ per member (see
        :func:`~simctl.workflow.model.member`)."""
        if not len(space):
            return []
        check_name("model", f"{self.name}_{len(space) - 1}")  # the longest: the others are as plain, shorter
        rs = self.run_settings
        assert rs is not None
        ens, pas, files, store_use = self.name, self.params_as_args, self.files, self.store_use
        placement = "default" if self.placement == "default" else "derived"
        base = os.path.join(self.path, "") if self.path else None  # os.path.join(path, name) is base + name
        params, settings, uses = iter(space), iter(rs.copies(len(space))), iter(store_use.copies(len(space)))
        name = f"{ens}_0"
        members = [Model(name, next(settings), dict(next(params)), base and base + name, None, list(pas), files,
                         next(uses), ensemble=ens, placement=placement)]
        make, add = member, members.append  # looked up once: 10k members make a loop hot
        for i, (p, own, use) in enumerate(zip(params, settings, uses), 1):
            name = f"{ens}_{i}"
            add(make(name, own, dict(p), base and base + name, list(pas), files, use, ens, placement))
        return members

    @property
    def models(self) -> list[Model]:
        """Every member Model (made on first use)."""
        if self._members is None:
            space = self.space()
            with gc_paused():  # the collector would walk the new members over and over as they are made
                members = self._make_members(space)
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
        if self.run_settings is not None:
            ctx.check(self.run_settings, None)
        for m in models:  # each member has its own copy: checked again only if it was changed
            if m.run_settings is not self.run_settings and m.run_settings != self.run_settings:
                ctx.check(m.run_settings, None)
        check_plan(f"ensemble {self.name!r}", [(m.name, m.store_use) for m in models], ctx)
        steps = [m.process_step(ctx, self.path) for m in models]
        if self.batch_settings is not None:
            return [ctx.batch_job(self.name, self.path or os.getcwd(), self.batch_settings, steps)]
        return list(steps)

    def prepare(self, steps: Sequence[ProcessStep]) -> None:
        """Make the members' directories (as SmartSim does for members never
        generated), then store their ML objects, each key once per store."""
        make_dirs(steps)
        prepare(steps, [s.entity.store_use for s in steps if isinstance(s.entity, Model)])

    def __len__(self) -> int:
        if self._members is not None:
            return len(self._members)
        return len(self.space()) + len(self.added)

    def __iter__(self) -> Iterator[Model]:
        return iter(self.models)

    def __getitem__(self, key: str | int) -> Model:
        if isinstance(key, int) and not isinstance(key, bool):
            return self.models[key]
        if not isinstance(key, str):
            raise ConfigTypeError(f"ensemble {self.name!r}: a member is found by its name (a str) or its index (an "
                              f"int), got {checks.show(key)}")
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
            raise ConfigTypeError(f"add_model takes a Model, got {type(model).__name__}")
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
        for obj in self.ml:  # every check before any change
            model.store_use.check_new(f"model {model.name!r}", obj, f"add_model({model.name!r})")
        model.store_use.ml.extend(self.ml)
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

    def _store_uses(self) -> list[tuple[str, StoreUse]]:
        members = self._members if self._members is not None else self.added
        return [(f"ensemble {self.name!r}", self.store_use)] + [
            (f"member {m.name!r} of ensemble {self.name!r}", m.store_use) for m in members]

    def query_key_prefixing(self) -> bool:
        """Whether every member prefixes its keys (without members: whether
        :meth:`enable_key_prefixing` was called)."""
        models = self.models
        return all(m.key_prefixing for m in models) if models else self.key_prefixing

    def run_dirs(self, exp_path: str, tag: str) -> list[tuple[Model, str]]:
        """The run directories generate() writes: one per member under <exp_path>/<ensemble>."""
        self.use_tag(tag)
        base = os.path.join(exp_path, self.name)
        return [(m, os.path.join(base, m.name)) for m in self.models]
