"""Tagged input files: ``;NAME;`` is replaced by a member's value of NAME.

The rules (also in docs/parameters.md):

* A tag is the tag string, a name, and the tag string again, on one line. The
  name is any non-empty text without the tag string or a line break, so every
  parameter name works: ``;THERMO;``, ``;1200;``, ``;solver.tol;``, ``;x(1);``.
* Tags are read left to right, and a tag's closing tag string cannot open the
  next one: with parameters ``a`` and ``b``, ``;a;b;`` becomes ``<a>b;``.
* Text between two tag strings that names no parameter is kept as it is:
  ``x = 1;2;3`` and ``for (i = 0; i < n; i++)`` are plain text unless ``2``
  or ``" i < n"`` is a parameter.
* Except, for the typo check, names that look like identifiers (:data:`NAME`:
  ``[A-Za-z_]``, then letters, digits, ``_``, inner ``.`` or ``-``) and
  inline lists: they are tags even when they name no parameter, and then an
  error (``strict=False``: kept as written, with a warning). So ``a;b;c``
  holds the tag ``b``; a mistyped numeric tag (``;1201;`` for ``1200``) is
  text and stays.
* With a tag of several characters, a name must not end with the tag's first
  characters (``x%`` with ``%%``): ``str.split`` finds the leftmost tag.

A file may also declare a parameter's values inline, as a list between tags:

* ``THERMO = ;[10,11,12];`` binds the list to the name on the left of the
  ``=`` (or ``:``) on the same line (the reference documents' form);
* ``;THERMO=[10,11,12];`` names the parameter explicitly, anywhere.

An inline list's name is made of letters, digits, ``_``, ``.`` and ``-``; the
list holds no tag string and nests at most :data:`MAX_DEPTH` deep. A tag that
reads as an inline list is one. Either form is replaced by the member's value
when the file is written.

A template is parsed once (the text split at the tag string: linear, with C
loops over the pieces), then rendered per member from a plan cached per set
of parameter names. Rendering keeps every byte but the tags: line endings, a
missing final newline, any UTF-8 text.
"""

from __future__ import annotations

import ast
import json
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, compress
from operator import and_, not_, sub
from typing import Any

import attrs

from .errors import ConfigError

#: a name that is a tag even when it names no parameter (the typo check)
NAME = r"[A-Za-z_](?:[\w.-]*\w)?"
#: tag bodies that are tags without any parameter: a NAME or an inline list
_SHAPED = re.compile(rf"{NAME}|(?:\w[\w.-]*=)?\[[^\r\n]*\]")
_EXPLICIT = re.compile(r"(\w[\w.-]*)=(\[.*\])", re.S)
#: ``NAME =`` at the end of a line, read backwards
_LHS_REVERSED = re.compile(r"[^\S\r\n]*[=:][^\S\r\n]*([\w.-]+)")
_MAX_PLANS = 16
#: how deeply an inline value list may nest (values are written with str(), compared, saved as JSON)
MAX_DEPTH = 100


@attrs.frozen
class Ref:
    """A tag in a template: the parameter it names and, for inline lists, its values."""

    name: str
    values: tuple[Any, ...] | None = None
    #: the tag as written in the file
    raw: str | None = attrs.field(default=None, eq=False, repr=False)


def _depth(value: Any) -> int:
    """How deeply containers nest in ``value`` (without recursion)."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [x for v in level if isinstance(v, (list, tuple, set, dict))
                 for x in (chain(v.keys(), v.values()) if isinstance(v, dict) else v)]
    return depth - 1


def _literal(text: str, where: Callable[[], str]) -> tuple[Any, ...]:
    """A Python literal list, or a JSON one (``true``, ``null``)."""
    def too_deep() -> ConfigError:
        return ConfigError(f"{where()}: inline value list {text[:20]}... nests lists more than {MAX_DEPTH} "
                           "deep; expected a list such as [10, 11, 12]")

    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        try:
            value = json.loads(text)
        except RecursionError:
            raise too_deep() from None
        except ValueError:
            raise ConfigError(f"{where()}: malformed inline value list {text!r} ({exc.__class__.__name__}); "
                              "expected a Python/JSON list such as [10, 11, 12]") from None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where()}: inline value list {text!r} must be a non-empty list like [1, 2]")
    if _depth(value) > MAX_DEPTH:
        raise too_deep()
    return tuple(value)


@attrs.frozen
class _Plan:
    """How a template renders for one set of parameter names: ``literals[0]``,
    value of ``slots[0]``, ``literals[1]``, ...; ``unknown``: tags naming no
    parameter (kept in the literals) -> the index of their first piece."""

    literals: tuple[str, ...]
    slots: tuple[str, ...]
    used: frozenset[str]
    unknown: dict[str, int]


@attrs.frozen
class Template:
    """A file split at its tag string: ``pieces[k]`` for ``0 < k < len(pieces) - 1``
    lies between two tag strings and is a tag's name when the scan takes it."""

    path: str
    pieces: tuple[str, ...]
    #: indices of the pieces that are tags without any parameter (NAME-like or inline lists)
    shaped: tuple[int, ...]
    #: the inline lists among them (filled as they are read)
    inline: dict[int, Ref | None] = attrs.field(eq=False, repr=False)
    tag: str = ";"
    _plans: dict[frozenset[str], _Plan] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def parse(cls, text: str, path: str = "<string>", tag: str = ";") -> Template:
        """Split ``text`` at ``tag``; read its inline lists (errors name the file and line)."""
        if not isinstance(tag, str) or not tag or "\n" in tag or "\r" in tag:
            raise ConfigError(f"the tag must be a non-empty string without line breaks, for example ';', "
                              f"got {tag!r}")
        pieces = tuple(text.split(tag))
        # C-level passes over the pieces: ASCII identifiers are NAMEs; the regex checks the rest
        inner, at = pieces[1:-1], range(1, len(pieces) - 1)
        ids = list(map(and_, map(str.isidentifier, inner), map(str.isascii, inner)))
        rest = list(compress(at, map(not_, ids)))
        others = list(compress(rest, map(_SHAPED.fullmatch, map(pieces.__getitem__, rest))))
        inline: dict[int, Ref | None] = dict.fromkeys(k for k in others if pieces[k].endswith("]"))
        shaped = sorted(chain(compress(at, ids), others))
        t = cls(path, pieces, tuple(shaped), inline, tag)
        if inline:  # the file's own inline lists: their errors now, not per member
            for k in t._scan(frozenset()):
                if k in inline:
                    t._ref(k)
        return t

    def _line(self, k: int) -> int:
        return 1 + sum(p.count("\n") for p in self.pieces[:k])

    def _ref(self, k: int) -> Ref:
        """The tag at piece ``k``, its inline list read on first use."""
        body = self.pieces[k]
        if k not in self.inline:
            return Ref(body, None, f"{self.tag}{body}{self.tag}")
        ref = self.inline[k]
        if ref is None:
            def where() -> str:
                return f"{self.path}:{self._line(k)}"
            m = _EXPLICIT.fullmatch(body)
            if m:
                name, text = m.groups()
            else:
                before = self.pieces[k - 1]
                lhs = _LHS_REVERSED.match(before[before.rfind("\n") + 1:][::-1])
                name, text = (lhs.group(1)[::-1].lstrip(".-") if lhs else ""), body
                if not name:
                    t = self.tag
                    raise ConfigError(f"{where()}: inline list {body} has no parameter name; write it as "
                                      f"'NAME = {t}{body}{t}' or '{t}NAME={body}{t}'")
            ref = self.inline[k] = Ref(name, _literal(text, where), f"{self.tag}{body}{self.tag}")
        return ref

    def _scan(self, names: frozenset[str]) -> list[int]:
        """The pieces that are tags, left to right: shaped ones and parameter names.
        A tag uses the tag strings on both sides of its piece."""
        pieces = self.pieces
        found: Sequence[int] = self.shaped
        odd = {n for n in names if not _SHAPED.fullmatch(n)}  # names that can be tags but are not shaped
        if odd:
            extra = list(compress(range(1, len(pieces) - 1), map(odd.__contains__, pieces[1:-1])))
            if extra:
                found = sorted(chain(found, extra))
        if len(found) < 2 or min(map(sub, found[1:], found)) >= 2:  # no tag string is shared
            return list(found)
        tags: list[int] = []
        free = 1  # the first piece whose opening tag string is not used yet
        for k in found:
            if k >= free:
                tags.append(k)
                free = k + 2
        return tags

    def _plan(self, names: frozenset[str]) -> _Plan:
        plan = self._plans.get(names)
        if plan is None:
            pieces, tag = self.pieces, self.tag
            tags = self._scan(names)
            slots = list(map(pieces.__getitem__, tags))
            unknown: dict[str, int] = {}
            # every tag a parameter, no inline list: the literals are slices of the pieces
            if slots and all(map(names.__contains__, slots)) and self.inline.keys().isdisjoint(tags):
                first, last = tags[0], tags[-1]
                if len(tags) == 1 or max(map(sub, tags[1:], tags)) == 2:  # one piece between tags
                    between = list(pieces[first + 1:last:2])
                else:
                    between = [tag.join(pieces[a + 1:b]) for a, b in zip(tags, tags[1:])]
                literals = [tag.join(pieces[:first]), *between, tag.join(pieces[last + 1:])]
            else:
                literals, slots, start = [], [], 0
                for k in tags:
                    name = self._ref(k).name if k in self.inline else pieces[k]
                    if name in names:
                        literals.append(tag.join(pieces[start:k]))
                        slots.append(name)
                        start = k + 1
                    else:
                        unknown.setdefault(name, k)  # left in the literal text, as written
                literals.append(tag.join(pieces[start:]))
            if len(self._plans) >= _MAX_PLANS:
                self._plans.clear()
            plan = self._plans[names] = _Plan(tuple(literals), tuple(slots), frozenset(slots), unknown)
        return plan

    @property
    def refs(self) -> list[Ref]:
        """The tags found without any parameter: NAME-like tags and inline lists."""
        return [self._ref(k) for k in self._scan(frozenset())]

    def inline_values(self) -> dict[str, tuple[Any, ...]]:
        """Parameter values declared in the file."""
        return {r.name: r.values for r in self.refs if r.values is not None}

    def render(self, params: Mapping[str, Any], strict: bool = True) -> str:
        """The text with every tag replaced by its parameter's value. A tag that
        names no parameter is an error, or (``strict=False``) kept as it is
        with a warning."""
        values = {str(k): v for k, v in params.items()}
        plan = self._plan(frozenset(n for n in values if n and "\n" not in n and "\r" not in n))
        for name, k in plan.unknown.items():
            if strict:
                raise ConfigError(
                    f"{self.path}: tag {name!r} names no parameter; parameters are "
                    f"{', '.join(map(repr, params)) or '(none)'} (the tag is on line {self._line(k)}). "
                    "Pass unknown_tags='warn' to generate() to keep such tags as they are")
            warnings.warn(f"{self.path}: tag {name!r} names no parameter; left as it is", stacklevel=3)
        text = {n: str(values[n]) for n in plan.used}
        return "".join(chain.from_iterable(zip(plan.literals, chain(map(text.__getitem__, plan.slots), ("",)))))


def load(path: str, tag: str = ";") -> Template:
    """Read and parse a tagged file (line endings kept as they are)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: files to configure must be UTF-8 text; attach binary files "
                          "with to_copy instead") from None
    return Template.parse(text, path, tag)


def inline_values(paths: Iterable[str], tag: str = ";") -> dict[str, tuple[Any, ...]]:
    """Values declared inline across files; a name declared twice with
    different lists is an error."""
    found: dict[str, tuple[Any, ...]] = {}
    where: dict[str, str] = {}
    for path in paths:
        for name, values in load(path, tag).inline_values().items():
            if name in found and found[name] != values:
                raise ConfigError(f"parameter {name!r} has different inline value lists in "
                                  f"{where[name]} and {path}")
            found[name], where[name] = values, path
    return found
