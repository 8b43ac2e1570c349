"""Tagged input files: ``;NAME;`` is replaced by a member's value of NAME.

A file may also declare a parameter's values inline, as a list between tags:

* ``THERMO = ;[10,11,12];`` binds the list to the name on the left of the
  ``=`` (or ``:``) on the same line (the reference documents' form);
* ``;THERMO=[10,11,12];`` names the parameter explicitly, anywhere.

Either form is replaced by the member's value when the file is written.
A template is parsed once into segments, then rendered per member.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import warnings
from typing import Any, Iterable, Mapping

import attrs

from .errors import ConfigError

#: a parameter name in a tag: an identifier, with inner dots and dashes allowed
NAME = r"[A-Za-z_](?:[\w.-]*\w)?"
_LHS = re.compile(rf"({NAME})\s*[=:]\s*$")


@attrs.frozen
class Ref:
    """A tag in a template: the parameter it names and, for inline lists, its values."""

    name: str
    values: tuple[Any, ...] | None = None
    #: the tag as written in the file (kept when an unknown tag is left in place)
    raw: str | None = attrs.field(default=None, eq=False, repr=False)


@functools.lru_cache(maxsize=64)
def _pattern(tag: str) -> re.Pattern[str]:
    t = re.escape(tag)
    # ;NAME;   ;NAME=[...];   ;[...];   (lists stay on one line)
    return re.compile(rf"{t}(?:({NAME})(?:=(\[[^\n]*?\]))?|(\[[^\n]*?\]))(?={t}){t}")


def _literal(text: str, where: str) -> tuple[Any, ...]:
    """A Python literal list, or a JSON one (``true``, ``null``)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        try:
            value = json.loads(text)
        except ValueError:
            raise ConfigError(f"{where}: malformed inline value list {text!r} ({exc.__class__.__name__}); "
                              "expected a Python/JSON list such as [10, 11, 12]") from None
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: inline value list {text!r} must be a non-empty list like [1, 2]")
    return tuple(value)


@attrs.frozen
class Template:
    """A file split into literal text and :class:`Ref` segments."""

    path: str
    segments: tuple[str | Ref, ...]
    tag: str = ";"

    @classmethod
    def parse(cls, text: str, path: str = "<string>", tag: str = ";") -> "Template":
        if not tag:
            raise ConfigError("the tag must be a non-empty string, for example ';'")
        segments: list[str | Ref] = []
        pos = 0
        for m in _pattern(tag).finditer(text):
            lit = text[pos:m.start()]
            name, named_list, bare_list = m.groups()
            line = text.count("\n", 0, m.start()) + 1
            where = f"{path}:{line}"
            if bare_list is not None:
                line_start = text.rfind("\n", 0, m.start()) + 1
                lhs = _LHS.search(text[line_start:m.start()])
                if not lhs:
                    raise ConfigError(
                        f"{where}: inline list {bare_list} has no parameter name; write it as "
                        f"'NAME = {tag}{bare_list}{tag}' or '{tag}NAME={bare_list}{tag}'")
                ref = Ref(lhs.group(1), _literal(bare_list, where), m.group(0))
            elif named_list is not None:
                ref = Ref(name, _literal(named_list, where), m.group(0))
            else:
                ref = Ref(name, None, m.group(0))
            segments += [lit, ref]
            pos = m.end()
        segments.append(text[pos:])
        return cls(path, tuple(s for s in segments if s != ""), tag)

    @property
    def refs(self) -> list[Ref]:
        return [s for s in self.segments if isinstance(s, Ref)]

    def inline_values(self) -> dict[str, tuple[Any, ...]]:
        """Parameter values declared in the file."""
        return {r.name: r.values for r in self.refs if r.values is not None}

    def render(self, params: Mapping[str, Any], strict: bool = True) -> str:
        """The text with every tag replaced by its parameter's value. A tag that
        names no parameter is an error, or (``strict=False``) kept as it is
        with a warning."""
        out: list[str] = []
        for seg in self.segments:
            if isinstance(seg, str):
                out.append(seg)
            elif seg.name in params:
                out.append(str(params[seg.name]))
            elif strict:
                raise ConfigError(
                    f"{self.path}: tag {seg.name!r} names no parameter; parameters are "
                    f"{', '.join(map(repr, params)) or '(none)'}. Pass unknown_tags='warn' to generate() "
                    "to keep such tags as they are")
            else:
                warnings.warn(f"{self.path}: tag {seg.name!r} names no parameter; left as it is",
                              stacklevel=3)
                out.append(seg.raw if seg.raw is not None else f"{self.tag}{seg.name}{self.tag}")
        return "".join(out)


def load(path: str, tag: str = ";") -> Template:
    """Read and parse a tagged file."""
    try:
        with open(path, encoding="utf-8") as fh:
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
