"""Argument checks shared by the settings, the expansion and the launchers.

Each function returns the value in the form the caller stores (a list, a dict
of str, an int...) or raises :class:`~simctl.ConfigError` naming the argument,
showing what it got and saying what it accepts.
"""

from __future__ import annotations

import math
import numbers
import os
import re
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from typing import Any, Literal, overload

from .errors import ConfigError, ConfigTypeError

#: most items read from an iterable that has no length (a generator, ``map``...);
#: more is taken for an endless iterator and refused. A million, not more: an
#: endless generator of fresh dicts already holds some 200 MB by then
MAX_ITEMS = 1_000_000

#: the values a command-line flag may take (None: a flag without a value)
FlagValue = str | int | float | None


def show(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters, with its type."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"


def _fail(arg_name: str, value: Any, accepts: str, *, wrong_type: bool = False) -> ConfigError:
    cls = ConfigTypeError if wrong_type else ConfigError
    return cls(f"{arg_name} must be {accepts}; got {show(value)}")


@overload
def positive_int(arg_name: str, value: Any, *, allow_none: Literal[False] = False, minimum: int = 1) -> int: ...
@overload
def positive_int(arg_name: str, value: Any, *, allow_none: bool, minimum: int = 1) -> int | None: ...
def positive_int(arg_name: str, value: Any, *, allow_none: bool = False, minimum: int = 1) -> int | None:
    """``value`` if it is an int of ``minimum`` (1) or more (bool is not), or None when allowed."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        cls = ConfigError if isinstance(value, int) and not isinstance(value, bool) else ConfigTypeError
        raise cls(f"{arg_name} must be {what}{' or None' if allow_none else ''}, got {show(value)}")
    return value


def boolean(arg_name: str, value: Any) -> bool:
    """``value`` if it is True or False (not 1, "yes" or None, which would be read as one)."""
    if not isinstance(value, bool):
        raise ConfigTypeError(f"{arg_name} must be True or False; got {show(value)}")
    return value


def number(arg_name: str, value: Any, *, minimum: float | None = None, above: float | None = None,
           allow_none: bool = False) -> int | float | None:
    """A finite int or float (bool is not), at least ``minimum`` and more than
    ``above`` when given."""
    if value is None and allow_none:
        return None
    bounds = "".join([f" >= {minimum}" if minimum is not None else "", f" > {above}" if above is not None else ""])
    accepts = f"a finite number{bounds}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(arg_name, value, accepts, wrong_type=True)
    if (isinstance(value, float) and not math.isfinite(value)) or (minimum is not None and value < minimum) \
            or (above is not None and value <= above):
        raise _fail(arg_name, value, accepts)
    return value


@overload
def string(arg_name: str, value: Any, *, allow_none: Literal[False] = False, path: bool = False) -> str: ...
@overload
def string(arg_name: str, value: Any, *, allow_none: bool, path: bool = False) -> str | None: ...
def string(arg_name: str, value: Any, *, allow_none: bool = False, path: bool = False) -> str | None:
    """A non-empty one-line str (an ``os.PathLike`` too when ``path``), or None when allowed."""
    if value is None and allow_none:
        return None
    if path and isinstance(value, os.PathLike):
        value = os.fspath(value)
    accepts = "a non-empty string" + (" or path" if path else "") + (" or None" if allow_none else "")
    if not isinstance(value, str) or not value.strip():
        raise _fail(arg_name, value, accepts, wrong_type=not isinstance(value, str))
    if any(c in value for c in "\0\n\r"):
        raise _fail(arg_name, value, accepts + " without line breaks or NUL")
    return value


def bounded(arg_name: str, items: Iterable[Any], limit: int | None = None) -> list[Any]:
    """The items of an iterable as a list, read once. Without ``limit``,
    more than :data:`MAX_ITEMS` is refused (an endless iterator cannot be told
    from a long one any other way); with it, at most ``limit`` are read."""
    if limit is not None:
        return list(islice(items, limit))
    out = list(islice(items, MAX_ITEMS + 1))
    if len(out) > MAX_ITEMS:
        raise ConfigError(f"{arg_name} gave more than {MAX_ITEMS:,} items: an endless iterator? "
                          "give a finite list")
    return out


_NOT_A_LIST = (str, bytes, bytearray, memoryview, Mapping, set, frozenset)
STRINGISH: tuple[type, ...] = (str, int, float, os.PathLike)


def string_list(arg_name: str, value: Any, *, split: Callable[[str], list[str]] | None = None,
                items: tuple[type, ...] = STRINGISH, allow_none: bool = False) -> list[str]:
    """A list of str from a str (one item, or ``split(value)`` when given) or
    any finite iterable whose items are of the types ``items`` (int, float and
    ``os.PathLike`` items are turned into str; bool never counts as an int).
    Iterators are consumed. None gives ``[]`` when allowed."""
    kinds = " or ".join("path" if t is os.PathLike else t.__name__ for t in items)
    accepts = f"a string or a list of {kinds}" + (" (or None)" if allow_none else "")
    if value is None and allow_none:
        return []
    if isinstance(value, str):
        if split is None:
            return [value]
        try:
            return split(value)
        except ValueError as exc:  # shlex: an unclosed quote
            raise ConfigError(f"{arg_name}: cannot split {show(value)}: {exc}") from None
    if isinstance(value, _NOT_A_LIST) or not isinstance(value, Iterable):
        why = "; decode bytes first" if isinstance(value, (bytes, bytearray)) else ""
        if isinstance(value, Mapping):
            why = "; a dict is ambiguous (keys? values? both?): spell the items out in a list"
        elif isinstance(value, (set, frozenset)):
            why = "; a set has no order: give a list"
        raise ConfigTypeError(f"{arg_name} must be {accepts}{why}; got {show(value)}")
    out: list[str] = []
    for i, item in enumerate(bounded(arg_name, value)):
        ok = not isinstance(item, bool) and isinstance(item, items)
        text = (os.fspath(item) if isinstance(item, os.PathLike) else str(item)) if ok else None
        if not isinstance(text, str):  # a wrong type, or a path to bytes
            raise ConfigTypeError(f"{arg_name}[{i}] must be a {kinds}; got {show(item)}"
                              + ("; nested lists are not flattened" if isinstance(item, (list, tuple)) else ""))
        if _nonfinite(item):
            raise ConfigError(f"{arg_name}[{i}] must be a finite number, not NaN or an infinity; got {show(item)}")
        out.append(text)
    return out


def _scalar_str(arg_name: str, value: Any, accepts: str) -> str:
    if _nonfinite(value):
        raise _fail(arg_name, value, "a finite number, not NaN or an infinity")
    if isinstance(value, bool) or not isinstance(value, STRINGISH):
        raise _fail(arg_name, value, accepts, wrong_type=True)
    text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    if not isinstance(text, str) or "\0" in text:
        raise _fail(arg_name, value, accepts + " without NUL")
    return text


def _nonfinite(value: Any) -> bool:
    """NaN or an infinity: refused wherever a number becomes text (an argument, a flag, a variable)."""
    return isinstance(value, float) and not math.isfinite(value)


def env_mapping(arg_name: str, value: Any) -> dict[str, str | None]:
    """Environment variables: a mapping of names (non-empty str without ``=``
    or NUL) to str, int, float or path values (made str), or None to unset."""
    if not isinstance(value, Mapping):
        raise _fail(arg_name, value, "a dict of variable name -> value (str, number, path, or None to unset)",
                    wrong_type=True)
    out: dict[str, str | None] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            error = ConfigError if isinstance(key, str) else ConfigTypeError
            raise error(f"{arg_name}: variable name {show(key)} must be a non-empty string without '=' or NUL")
        out[key] = None if val is None else _scalar_str(
            f"{arg_name}[{key!r}]", val, "a str, int, float or path (or None to unset)")
    return out


def flag_key(arg_name: str, key: Any, *, keep_single_dash: bool = False) -> str:
    """A command-line flag's name with its leading dashes removed (``--nodes``
    and ``nodes`` are one flag). ``keep_single_dash`` keeps the dash of a
    multi-letter flag given with one (aprun's ``-cc``)."""
    if not isinstance(key, str):
        raise ConfigTypeError(f"{arg_name}: flag name {show(key)} must be a string, e.g. 'nodes' or 'n'")
    name = key.lstrip("-")
    if not name or re.search(r"[\s=\0]", name):
        raise ConfigError(f"{arg_name}: flag name {key!r} must be a non-empty name without spaces or '='; "
                          "give the value separately, e.g. {'nodes': 2} or set('nodes', 2)")
    if keep_single_dash and len(name) > 1 and key == "-" + name:
        return key
    return name


def flag_value(arg_name: str, value: Any) -> FlagValue:
    """A flag's value: str, int, float (path made str), or None for a flag
    without one. bool, lists and dicts are refused."""
    accepts = "a str, int, float or path, or None for a flag without a value"
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and not _nonfinite(value)):
        return value
    text = _scalar_str(arg_name, value, accepts)
    if "\n" in text or "\r" in text:
        raise _fail(arg_name, value, accepts + " on one line")
    return text


def flag_mapping(arg_name: str, value: Any, *, keep_single_dash: bool = False) -> dict[str, FlagValue]:
    """Flags as ``{name: value}``, names as :func:`flag_key` makes them, values
    checked by :func:`flag_value`; two spellings of one flag are refused.
    None is an empty dict."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(arg_name, value, "a dict of flag name -> value, e.g. {'nodes': 2, 'exclusive': None}",
                    wrong_type=True)
    out: dict[str, FlagValue] = {}
    given: dict[str, Any] = {}
    for key, val in value.items():
        name = flag_key(arg_name, key, keep_single_dash=keep_single_dash)
        if name in out:
            raise ConfigError(f"{arg_name}: {given[name]!r} and {key!r} are the same flag; give it once")
        out[name], given[name] = flag_value(f"{arg_name}[{key!r}]", val), key
    return out


def job_name(name: Any, max_len: int = 64, *, letter_first: bool = False, default: str = "simctl") -> str:
    """``name`` as a scheduler takes it: letters, digits and ``_ . -`` only
    (anything else becomes ``_``), at most ``max_len`` characters, starting
    with a letter if ``letter_first`` (PBS); ``default`` if nothing is left."""
    if not isinstance(name, str):
        raise _fail("job name", name, "a string", wrong_type=True)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or default
    if letter_first and not safe[:1].isalpha():
        safe = "j" + safe
    return safe[:max_len]


def param_value(name: str, value: Any) -> Any:
    """A model parameter's value: written into configured files and argv as
    ``str(value)``, so it must be a str, a bool, a real number (numpy scalars
    too), a path, or an object with its own ``__str__``. None (``x = None``,
    ``-x None``), bytes (``b'ab'``), complex numbers, containers and objects
    without their own ``__str__`` (``<object at 0x...>``) are refused."""
    if isinstance(value, (str, bool, numbers.Real, os.PathLike)):
        return value
    if value is None:
        why = "None has no text to write (it would be written 'None'); give a value, or leave the parameter out"
    elif isinstance(value, (bytes, bytearray, memoryview)):
        why = f"bytes would be written as {bytes(value)!r:.40}; give a str, e.g. value.decode()"
    elif isinstance(value, numbers.Number):
        why = "a complex number is not a parameter value; give its parts as two parameters"
    elif isinstance(value, (Mapping, Iterable)):
        why = (f"a {type(value).__name__} is not one value (it would be written {str(value)!r:.40}); give a str "
               "or a number (for an ensemble, a list of them is the parameter's values)")
    elif getattr(type(value), "__str__", None) is object.__str__:
        why = "it has no text of its own (it would be written as its repr); give a str or a number"
    else:
        return value
    raise ConfigTypeError(f"parameter {name!r}: {show(value)} is not a value simctl can write into files and "
                      f"arguments: {why}")
