"""Making many members fast (issue 20): the copy and build compiled per class
(:mod:`simctl.core.bulk`), the collector paused, and ensemble members made
with the constructor's checks done once. Unit tests: nothing is started."""

from __future__ import annotations

import gc
import inspect
import weakref
from collections.abc import Sequence

import attrs
import pytest

import simctl
import simctl.compat.smartsim.settings as compat_settings
from simctl.core import bulk
from simctl.core.files import MAX_NAME
from simctl.core.settings import RunSettings
from simctl.workflow.model import Model


def _settings_classes(plugs: simctl.Plugins) -> list[type[RunSettings]]:
    """The run settings class of every launcher a plugin registers, and SmartSim's (compat) classes."""
    classes = [plugs.get("launcher", name).run_settings_class for name in plugs.names("launcher")]
    classes += [c for c in vars(compat_settings).values()
                if inspect.isclass(c) and issubclass(c, RunSettings) and c.__module__ == compat_settings.__name__]
    return list(dict.fromkeys(classes))


def _filled(cls: type[RunSettings]) -> RunSettings:
    """An instance (each field its default, made without the class's constructor, which may look
    for its run command on PATH) whose list and dict fields (those None by default too) each hold a value."""
    rs = object.__new__(cls)
    for field in attrs.fields(cls):
        value = field.default
        if isinstance(value, attrs.Factory):  # type: ignore[arg-type]  # attrs.Factory is a class at run time
            value = value.factory(rs) if value.takes_self else value.factory()
        object.__setattr__(rs, field.name, "true" if value is attrs.NOTHING else value)
        kind = value.__class__ if isinstance(value, (list, dict)) else (
            dict if "dict" in str(field.type) else list if "list" in str(field.type) else None)
        if kind is dict:
            object.__setattr__(rs, field.name, {"k": "v", **(value or {})})
        elif kind is list:
            object.__setattr__(rs, field.name, [*(value or []), "x" if field.name != "mpmd" else RunSettings("b")])
    return rs


def test_every_registered_settings_class_copies_each_list_and_dict(plugs):
    classes = _settings_classes(plugs)
    names = {c.__name__ for c in classes}
    assert {"RunSettings", "SrunSettings", "PbsRunSettings", "LsfRunSettings", "MpirunSettings"} <= names
    for cls in classes:
        rs = _filled(cls)
        copy = rs.copy()
        assert type(copy) is cls and copy == rs and copy is not rs
        mutable = [f.name for f in attrs.fields(cls) if isinstance(getattr(rs, f.name), (list, dict))]
        assert {"exe_args", "run_args", "env_vars", "hostlist", "mpmd"} <= set(mutable), cls
        for name in mutable:
            mine, theirs = getattr(copy, name), getattr(rs, name)
            assert mine == theirs and mine is not theirs, (cls, name)
            if isinstance(mine, dict):
                mine["only-copy"] = "1"
            else:
                mine.append("only-copy")
            assert "only-copy" not in theirs, (cls, name)
            assert getattr(rs.copy(), name) == theirs  # and the original's later copies start from it again
        one, two = rs.copies(2)  # what an ensemble gives its members
        assert type(one) is cls and one == rs == two
        for name in mutable:
            assert getattr(one, name) is not getattr(two, name) and getattr(one, name) is not getattr(rs, name)


@attrs.define(slots=False)
class _DictBacked:
    items: list[int] = attrs.field(factory=list)
    table: dict[str, int] = attrs.field(factory=dict)
    label: str = "a"


class _Items(list):  # type: ignore[type-arg]
    """A list subclass: a copy keeps its class."""


@attrs.define
class _Slotted:
    items: list[int] = attrs.field(factory=list, validator=attrs.validators.instance_of(list))
    tag: str = attrs.field(default="t", converter=str.upper)


def test_copier_of_a_class_without_slots_copies_its_lists_too():
    orig = _DictBacked([1], {"a": 1})
    copy = bulk.copy(orig)
    copy.items.append(2)
    copy.table["b"] = 2
    assert orig == _DictBacked([1], {"a": 1}) and copy == _DictBacked([1, 2], {"a": 1, "b": 2})


def test_copier_keeps_subclasses_and_a_plain_subclass_attributes():
    class Plain(_Slotted):
        pass

    orig = Plain(_Items([1]))
    orig.note = ["shared"]  # type: ignore[attr-defined]  # a plain subclass's own attribute
    copy = bulk.copy(orig)
    assert type(copy) is Plain and type(copy.items) is _Items and copy.items is not orig.items
    assert copy.note is orig.note and copy.tag == "T"  # type: ignore[attr-defined]  # shallow, as copy.copy


def test_copies_decide_once_and_copy_each_kind():
    class Plain(_DictBacked):
        pass

    orig = Plain(_Items([1]), {"a": 1}, "shared")
    orig.note = "own"  # type: ignore[attr-defined]
    made = bulk.copies(orig, 3)
    assert [type(c) for c in made] == [Plain] * 3 and all(c == orig and c.note == "own" for c in made)  # type: ignore[attr-defined]
    assert type(made[0].items) is _Items and len({id(c.items) for c in [orig, *made]}) == 4
    assert len({id(c.table) for c in [orig, *made]}) == 4 and made[0].label is orig.label
    assert bulk.copies(orig, 0) == []


def test_a_settings_subclass_with_its_own_copy_is_copied_its_way():
    class Counted(RunSettings):
        made = 0

        def copy(self) -> RunSettings:
            Counted.made += 1
            return super().copy()

    assert len(Counted("true").copies(3)) == 3 and Counted.made == 3


def test_builder_stores_every_field_as_given_in_the_order_named():
    build = bulk.builder(_Slotted, ("tag", "items"))
    made = build("lower", "not a list")  # no validator, no converter
    assert made.items == "not a list" and made.tag == "lower"
    with pytest.raises(TypeError):
        build("t")  # every field is needed
    with pytest.raises(TypeError, match=r"must name each field of _Slotted once"):
        bulk.builder(_Slotted, ("items",))  # a field the caller does not know of fails at once


@attrs.define
class _Hookless:
    """Slotted, no validator or converter: attrs keeps object.__setattr__ (stored by plain assignments)."""

    items: list[int] = attrs.field(factory=list)
    flag: bool = False


def test_a_class_without_setattr_hooks_is_copied_and_built_alike():
    assert _Hookless.__setattr__ is object.__setattr__
    orig = _Hookless([1], True)
    made = bulk.copies(orig, 2)
    assert made == [orig, orig] and len({id(c.items) for c in [orig, *made]}) == 3
    built = bulk.builder(_Hookless, ("flag", "items"))(False, "as given")
    assert (built.items, built.flag) == ("as given", False) and type(built) is _Hookless


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_paused_restores_the_collector_as_it_was(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with pytest.raises(RuntimeError), bulk.gc_paused():
            assert not gc.isenabled()
            raise RuntimeError
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


class _Node:
    """An object the collector tracks, which may be part of a cycle."""

    def __init__(self) -> None:
        self.other: object = None


def test_gc_paused_moves_what_it_made_to_the_oldest_generation_unwalked():
    gc.collect()
    walked: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start":
            walked.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with bulk.gc_paused():
            kept = [_Node() for _ in range(5000)]
            cycle = _Node()
            cycle.other = cycle  # garbage once dropped: only the collector frees it
            gone = weakref.ref(cycle)
            del cycle
        more = [_Node() for _ in range(100)]  # the next allocations walk nothing: no young pass over the 5,000
    finally:
        gc.callbacks.remove(count)
    # the young count holds the 100 made after the pause (and, before Python 3.11, their dicts), not the 5,000
    assert walked == [] and gc.get_count()[0] < 1000
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(o) in oldest for o in kept) and gc.get_freeze_count() == 0
    assert gone() is not None
    gc.collect()  # the full collection still finds the cycle
    assert gone() is None
    del more


def test_gc_paused_leaves_objects_the_process_froze_frozen():
    gc.collect()
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with bulk.gc_paused():
            kept = [_Node() for _ in range(1000)]
        assert gc.get_freeze_count() == frozen  # not unfrozen by the pause
        oldest = {id(o) for o in gc.get_objects(generation=2)}
        assert not any(id(o) in oldest for o in kept)  # what it made is young, as without the move
    finally:
        gc.unfreeze()


def test_copies_give_each_copy_its_own_empty_list_and_dict():
    orig = RunSettings("true")
    assert orig.hostlist == [] and orig.env_vars == {}
    made = bulk.copies(orig, 3)
    for field in ("hostlist", "mpmd", "env_vars", "run_args"):
        values = [getattr(c, field) for c in [orig, *made]]
        assert len({id(v) for v in values}) == 4 and {type(v) for v in values} == {type(values[0])}, field
    made[0].hostlist.append("n1")
    made[1].env_vars["X"] = "1"
    assert orig.hostlist == [] == made[1].hostlist and orig.env_vars == {} == made[0].env_vars


# -- ensemble members ----------------------------------------------------------------------


def test_a_member_is_what_the_model_constructor_makes(exp, rs, tmp_path):
    ens = exp.create_ensemble("e", params={"x": [1, 2, 3]}, run_settings=rs, params_as_args=["x"],
                              path=str(tmp_path / "ens"))
    ens.enable_key_prefixing()
    for i, m in enumerate(ens):
        want = Model(f"e_{i}", rs.copy(), {"x": i + 1}, str(tmp_path / "ens" / f"e_{i}"), None, ["x"], ens.files,
                     ens.store_use.copy(), ensemble="e", placement="derived")
        assert attrs.asdict(m, recurse=False) == attrs.asdict(want, recurse=False)
        assert m.placement == "derived" and m.params_to_args() == ["-x", str(i + 1)]
    a, b = ens.models[1:]
    assert a.params_as_args is not b.params_as_args and a.store_use is not b.store_use
    assert a.store_use.incoming is not b.store_use.incoming and a.params is not b.params
    assert len({id(u.ml) for u in (a.store_use, b.store_use, ens.store_use)}) == 3
    b.path = str(tmp_path)  # its on_setattr hooks still run on the members built without __init__
    assert b.placement == "given"


def test_ensemble_settings_changed_after_its_members_were_made_change_no_member(exp, rs):
    ens = exp.create_ensemble("e", params={"x": [1, 2]}, run_settings=rs)
    members = ens.models
    rs.update_env({"LATE": "1"})
    rs.add_exe_args(["--late"])
    rs.set_hostlist(["n9"])
    for m in members:
        assert "LATE" not in m.run_settings.env_vars and "--late" not in m.run_settings.exe_args
        assert m.run_settings.hostlist == []


def test_a_later_member_value_is_still_checked(exp, rs):
    def bad_third(names, values, n):
        return [{"x": 1}, {"x": 2}, {"x": None}]

    ens = exp.create_ensemble("e", params={"x": [1]}, run_settings=rs, perm_strategy=bad_third)
    with pytest.raises(simctl.ConfigError, match=r"parameter 'x': None .* None has no text to write"):
        list(ens)
    assert ens._members is None


def test_a_later_member_missing_a_parameter_params_as_args_names_is_refused(exp, rs):
    class Lazy:  # a lazy sequence: only its first member is checked when the strategy returns it
        def __len__(self):
            return 2

        def __getitem__(self, i):
            if i >= 2:
                raise IndexError(i)
            return {"x": 1} if i == 0 else {"y": 1}

    Sequence.register(Lazy)
    ens = exp.create_ensemble("e", params={"x": [1]}, run_settings=rs, perm_strategy=lambda *a: Lazy(),
                              params_as_args=["x"])
    with pytest.raises(simctl.ConfigError, match=r"model 'e_1': params_as_args names \['x'\], which are not"):
        list(ens)


def test_the_longest_member_name_is_checked_before_any_member_is_made(exp, rs):
    name = "e" * (MAX_NAME - 3)
    ok = exp.create_ensemble(name, params={"x": list(range(100))}, run_settings=rs)  # up to e..e_99
    assert len(ok.models[-1].name) == MAX_NAME
    long = exp.create_ensemble(name, params={"x": list(range(101))}, run_settings=rs)  # e..e_100: one byte too long
    with pytest.raises(simctl.ConfigError, match=rf"model name is {MAX_NAME + 1} bytes long"):
        list(long)
    assert long._members is None
