"""Making many attrs objects at once (an ensemble's members): a copy and a
build compiled once per class, and the cyclic garbage collector paused.

attrs compiles each class's ``__init__`` from its fields; :func:`copies` and
:func:`builder` do the same for what an ensemble does per member, so that a
member costs a few attribute stores instead of a loop over the fields with
converters and validators run again on values already checked.
"""

from __future__ import annotations

import gc
import inspect
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs

T = TypeVar("T")

_BATCHES: dict[tuple[type, tuple[int, ...]], Callable[..., Any]] = {}
_BUILDERS: dict[tuple[type, tuple[str, ...]], Callable[..., Any]] = {}


def _compile(cls: type, name: str, source: str, names: dict[str, Any]) -> Callable[..., Any]:
    scope: dict[str, Any] = dict(names)
    exec(compile(source, f"<simctl.core.bulk {name} of {cls.__module__}.{cls.__qualname__}>", "exec"),
         scope)  # noqa: S102 - source made here from the class's own field names
    fn: Callable[..., Any] = scope[name]
    return fn


def copy(obj: T) -> T:
    """A copy of ``obj`` as :func:`copies` makes each."""
    return copies(obj, 1)[0]


def copies(obj: T, n: int) -> list[T]:
    """``n`` copies of ``obj``: each a new instance with every field of the
    original, a list or dict value (or one of their subclasses) copied
    shallowly so that each copy's can change alone, other values shared as
    they are; no converter, validator or ``on_setattr`` hook runs (the values
    were checked when set). The attributes a plain subclass keeps in its
    ``__dict__`` are copied shallowly, as :func:`copy.copy` does. The code is
    compiled once per class and kind of each field's value (shared, a list,
    a dict, another list or dict class): what to copy is decided once for all
    ``n``, and each copy is only the stores."""
    cls = type(obj)
    names = [field.name for field in attrs.fields(cls)]  # type: ignore[arg-type]  # any attrs class
    values = [getattr(obj, name) for name in names]
    kinds = tuple(_kind(v) for v in values)
    fn = _BATCHES.get((cls, kinds))
    if fn is None:
        made = {0: "{}", 1: "{}[:]", 2: "{}.copy()", 3: "{}.__class__({})", 4: "[]", 5: "{{}}"}
        lines = ["def copies(self, values, n):", *[f"    v{i} = values[{i}]" for i in range(len(names))],
                 "    out = []", "    extra = getattr(self, '__dict__', None)", "    for _ in range(n):",
                 "        new_ = _new(_cls)", *["    " + line for line in _setter(cls, names)],
                 "        if extra:", "            new_.__dict__.update(extra)"]
        lines += [f"        {_store(cls, name, made[kind].format(f'v{i}', f'v{i}'))}"
                  for i, (name, kind) in enumerate(zip(names, kinds))]
        lines += ["        out.append(new_)", "    return out"]
        fn = _compile(cls, "copies", "\n".join(lines) + "\n", _slots(cls, names))
        _BATCHES[(cls, kinds)] = fn
    made_copies: list[T] = fn(obj, values, n)
    return made_copies


def _kind(value: Any) -> int:
    """How :func:`copies` copies a value: 0 shared, 1 a list, 2 a dict, 3 a subclass of either,
    4 an empty list and 5 an empty dict (made new by a literal, the cheapest copy)."""
    if value.__class__ is list:
        return 1 if value else 4
    if value.__class__ is dict:
        return 2 if value else 5
    return 3 if isinstance(value, (list, dict)) else 0


def builder(cls: type[T], order: tuple[str, ...]) -> Callable[..., T]:
    """``cls``'s build function (compiled on first use): it takes every field,
    positionally in the caller's ``order`` (which must name each field once:
    a field added to the class fails here, not silently), and stores each as
    given: no default, converter, validator, ``on_setattr`` hook or
    ``__attrs_post_init__`` runs. For objects made from values the caller
    checked once for all of them."""
    fn = _BUILDERS.get((cls, order))
    if fn is None:
        names = [field.name for field in attrs.fields(cls)]  # type: ignore[arg-type]  # any attrs class
        if sorted(order) != sorted(names):
            raise TypeError(f"bulk.builder: the order {order} must name each field of {cls.__qualname__} once: "
                            f"{names}")
        clash = sorted(set(names) & _LOCALS)
        if clash:
            raise TypeError(f"bulk.builder: {cls.__qualname__} has fields named {clash}, which the built "
                            "function uses itself")
        lines = [f"def build({', '.join(order)}):", "    new_ = _new(_cls)", *_setter(cls, names)]
        lines += [f"    {_store(cls, name, name)}" for name in names]
        lines += ["    return new_"]
        fn = _compile(cls, "build", "\n".join(lines) + "\n", _slots(cls, names))
        _BUILDERS[(cls, order)] = fn
    return fn


_LOCALS = {"new_", "set_", "_new", "_cls", "_setattr"}


def _slots(cls: type, names: list[str]) -> dict[str, Any]:
    """The names the compiled code uses: the class, and each field's slot
    setter (a slotted field is stored through its descriptor, the fastest way)."""
    scope: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_setattr": object.__setattr__}
    for name in names:
        slot = inspect.getattr_static(cls, name, None)
        if isinstance(slot, types.MemberDescriptorType):
            scope[f"_slot_{name}"] = slot.__set__
    return scope


def _setter(cls: type, names: list[str]) -> list[str]:
    """The line defining ``set_``, if a field is stored through ``object.__setattr__``."""
    return ["    set_ = _setattr.__get__(new_)"] if any(_store(cls, n, "").startswith("set_") for n in names) else []


def _store(cls: type, name: str, value: str) -> str:
    """The statement that stores ``value`` (an expression) as field ``name`` of ``new_``: a plain
    assignment where the class keeps ``object.__setattr__`` (no hook to go around: the fastest
    store, 7 ns against 40 through the slot); else through the field's slot, or ``object.__setattr__``."""
    if inspect.getattr_static(cls, "__setattr__") is object.__setattr__:
        return f"new_.{name} = {value}"
    if isinstance(inspect.getattr_static(cls, name, None), types.MemberDescriptorType):
        return f"_slot_{name}(new_, {value})"
    return f"set_({name!r}, {value})"


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off while many long-lived objects are
    made (it would walk them over and over as they are allocated), then
    back to the state it was in. Reference counting still frees everything.

    On the way out, what was made meanwhile is moved to the collector's
    oldest generation at once (``gc.freeze()`` then ``gc.unfreeze()``: two
    list splices), instead of being walked by the next young collection and
    again by the middle one (5.5 ms of the 33 ms that make 10,000 ensemble
    members): the objects are long-lived, and the oldest generation is where
    they would end; its next full collection looks at them, and frees any
    cycle among them that is garbage by then. Skipped when the process keeps
    objects frozen itself (``gc.get_freeze_count()``), which this would undo."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()
