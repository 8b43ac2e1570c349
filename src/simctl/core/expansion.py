"""Parameter expansion: the lazy sequences strategies return, and the protocol
a permutation strategy follows.

A strategy turns parameter names and their value lists into member parameter
sets. It returns a *sequence* (``len`` and indexing) or any iterable of dicts;
the sequences here compute member ``i`` on demand, so a space of 10**12
combinations costs nothing until members are read.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, overload, runtime_checkable

from . import checks
from .errors import ConfigError, ConfigTypeError

Params = dict[str, Any]


@runtime_checkable
class Strategy(Protocol):
    """A permutation strategy plugin: a ``name`` and an ``expand`` method."""

    name: str
    # optional: ``options = ("n_models", "seed")`` names the create_ensemble
    # arguments the strategy uses; others given by the user are then an error

    def expand(self, names: list[str], values: list[list[Any]], n_models: int | None = None,
               seed: int | None = None) -> Sequence[Params] | Iterable[Params]:
        """Member parameter sets for the given names and values."""
        ...


def as_values(name: str, value: Any) -> list[Any]:
    """A parameter's values as a list: a list, tuple, range, array (``tolist``)
    or any other finite iterable (a generator, ``map``, ``dict.values()``...;
    an iterator is consumed, once, and more than :data:`checks.MAX_ITEMS`
    values are refused, as an endless one would be). A str, bytes or any other
    non-iterable value is a one-value list. A set (no order) and a dict (its
    keys or its values?) are refused."""
    if isinstance(value, (set, frozenset)):
        raise ConfigTypeError(f"parameter {name!r}: values given as a set have no order, so members would "
                          f"change order from run to run; give a list, e.g. {sorted(value, key=repr)!r}")
    if isinstance(value, Mapping):
        raise ConfigTypeError(f"parameter {name!r}: values given as a dict are ambiguous (its keys or its "
                          f"values?); give a list, e.g. list(d.values()); got {checks.show(value)}")
    if isinstance(value, (list, tuple, range)):
        values = list(value)
    elif hasattr(value, "tolist") and hasattr(value, "ndim"):  # numpy and the like; 0-d is one value
        values = value.tolist() if value.ndim >= 1 else [value]
    elif isinstance(value, (str, bytes, bytearray)) or not isinstance(value, Iterable):
        values = [value]
    else:
        values = checks.bounded(f"parameter {name!r}", value)
    if not values:
        raise ConfigError(f"parameter {name!r} has an empty list of values; give at least one")
    for v in values:
        checks.param_value(name, v)
    return values


def check_param_name(name: str) -> None:
    """A parameter name with a line break is refused: no tag in a file can hold one."""
    if any(c in name for c in "\n\r\0"):
        raise ConfigError(f"params: parameter name {name!r} must be on one line (a tag in a file cannot "
                          "hold a line break)")


def param_values(params: Mapping[str, Any] | Iterable[str] | None) -> dict[str, list[Any] | None]:
    """``create_ensemble``'s ``params`` as ``{name: values}``: a dict's values
    through :func:`as_values`; a set, list or tuple of names gives names whose
    values are declared in the files to configure (None; a set sorted, so the
    order never depends on the hash seed). Names must be non-empty str and
    given once."""
    if params is None:
        return {}
    if isinstance(params, Mapping):
        _check_names(list(params.keys()))
        return {k: as_values(k, v) for k, v in params.items()}
    if isinstance(params, (set, frozenset, list, tuple)):
        names = list(params)
        _check_names(names)
        return {n: None for n in (sorted(names) if isinstance(params, (set, frozenset)) else names)}
    raise ConfigTypeError(f"params must be a dict of name -> values (or a set of names whose values are "
                      f"declared in files to configure), got {checks.show(params)}")


def _check_names(names: list[Any]) -> None:
    """Each name a non-empty str (``1`` next to ``"1"`` would be one name), given once."""
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            twin = next((o for o in names if o is not name and str(o) == str(name)), None)
            error = ConfigError if isinstance(name, str) else ConfigTypeError
            raise error(f"params: parameter names must be non-empty strings; got {checks.show(name)}"
                              + (f", which would be the same name as {twin!r}" if twin is not None else ""))
        if name in names[:i]:
            raise ConfigError(f"params: parameter {name!r} is named twice; give it once")
        check_param_name(name)


def _index(i: int, n: int) -> int:
    """``i`` as an index into a sequence of ``n`` (negative counts from the end)."""
    j = i + n if i < 0 else i
    if not 0 <= j < n:
        raise IndexError(i)
    return j


class _Members(Sequence[Params]):
    """A sequence whose members are made on demand by :meth:`_member` (an index
    already counted from the front for Product, Zip and Repeat); a slice is a list."""

    def _member(self, i: int) -> Params:
        raise NotImplementedError

    @overload
    def __getitem__(self, i: int) -> Params: ...
    @overload
    def __getitem__(self, i: slice) -> list[Params]: ...
    def __getitem__(self, i: int | slice) -> Params | list[Params]:
        if isinstance(i, slice):
            return [self._member(j) for j in range(*i.indices(len(self)))]
        return self._member(i)


class Product(_Members):
    """Every combination of the values, the last name varying fastest
    (the order of ``itertools.product``). Member ``i`` is decoded on demand."""

    def __init__(self, names: list[str], values: list[list[Any]]):
        self.names, self.values = list(names), [list(v) for v in values]
        self._len = math.prod(len(v) for v in self.values) if self.names else 0

    def __len__(self) -> int:
        return self._len

    def _member(self, i: int) -> Params:
        i = _index(i, self._len)
        out: Params = {}
        for name, vals in zip(reversed(self.names), reversed(self.values)):
            i, r = divmod(i, len(vals))
            out[name] = vals[r]
        return {n: out[n] for n in self.names}

    def __iter__(self) -> Iterator[Params]:
        names = self.names
        if not names:
            return iter(())
        # each member a new dict; the loop in C (map), not a generator's frame: 10k members 2.8 -> 2.4 ms
        return map(dict, map(zip, itertools.repeat(names), itertools.product(*self.values)))


class Zip(_Members):
    """The i-th value of every parameter together."""

    def __init__(self, names: list[str], values: list[list[Any]]):
        lengths = {n: len(v) for n, v in zip(names, values)}
        if len(set(lengths.values())) > 1:
            raise ConfigError(
                "perm_strategy 'step' needs every parameter to have the same number of values; "
                f"got {', '.join(f'{n}: {k}' for n, k in lengths.items())}")
        self.names, self.values = list(names), [list(v) for v in values]
        self._len = len(self.values[0]) if self.values else 0

    def __len__(self) -> int:
        return self._len

    def _member(self, i: int) -> Params:
        i = _index(i, self._len)
        return {n: v[i] for n, v in zip(self.names, self.values)}

    def __iter__(self) -> Iterator[Params]:
        return map(dict, map(zip, itertools.repeat(self.names), zip(*self.values)))  # as Product's


class Pick(_Members):
    """Chosen indices of another sequence, in the order given."""

    def __init__(self, base: Sequence[Params], indices: Sequence[int]):
        self.base, self.indices = base, indices

    def __len__(self) -> int:
        return len(self.indices)

    def _member(self, i: int) -> Params:
        return self.base[self.indices[i]]

    def __iter__(self) -> Iterator[Params]:
        base = self.base
        return (base[i] for i in self.indices)


class Repeat(_Members):
    """Every member of ``base`` ``times`` times in a row (replicas)."""

    def __init__(self, base: Sequence[Params], times: int):
        self.base, self.times = base, times

    def __len__(self) -> int:
        return len(self.base) * self.times

    def _member(self, i: int) -> Params:
        return dict(self.base[_index(i, len(self)) // self.times])

    def __iter__(self) -> Iterator[Params]:
        for p in self.base:
            for _ in range(self.times):
                yield dict(p)


def as_sequence(result: Sequence[Params] | Iterable[Params], source: str,
                limit: int | None = None, names: Sequence[str] | None = None) -> Sequence[Params]:
    """Accept what a strategy returned: a sequence as it is, any other iterable
    read once: its first ``limit`` members (``n_models``) when given, else at
    most :data:`checks.MAX_ITEMS` (more, an endless iterator perhaps, is
    refused). Check that members are dicts of the parameters ``names`` (when
    given): every one of a list, tuple or iterable read here, the first of
    another sequence, which may be lazy."""
    if not isinstance(result, Sequence):
        if result is None or isinstance(result, Mapping) or not isinstance(result, Iterable):
            raise ConfigError(f"strategy {source} returned {type(result).__name__}; "
                              "expected a sequence or iterable of dicts")
        result = checks.bounded(f"strategy {source}", result, limit)
    members = result if isinstance(result, (list, tuple)) else ([result[0]] if len(result) else [])
    wrong = [m for m in members if not isinstance(m, dict)][:1]
    if wrong:
        raise ConfigError(f"strategy {source} returned members of type "
                          f"{type(wrong[0]).__name__}; expected dicts of parameter values")
    if names is not None:
        want = set(names)
        other = next((m for m in members if m.keys() != want), None)
        if other is not None:
            raise ConfigError(f"strategy {source} returned a member with the parameters {sorted(other)}; "
                              f"expected exactly {sorted(want)}")
    return result
