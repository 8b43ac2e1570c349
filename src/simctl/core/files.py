"""What is generic about an entity's files and names, for the generator, the
workflow and the store alike: :func:`check_name` (a name that becomes a
directory), :class:`EntityFiles` (files a run directory receives, checked at
attachment) and :class:`RunUnit`, what the generator needs of a model."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import attrs

from . import checks
from .errors import ConfigError, ConfigFileNotFoundError

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
            raise ConfigFileNotFoundError(f"file to {kind} does not exist: {item!r} (looked at {path})")
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
    #: (directory, the real paths of it and the directories above it)
    stack: list[tuple[str, tuple[str, ...]]] = [(root, (os.path.realpath(root),))]
    while stack:
        folder, above = stack.pop()
        subdirs: list[tuple[str, tuple[str, ...]]] = []
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
    def checked(cls, to_copy: Any = None, to_symlink: Any = None, to_configure: Any = None) -> EntityFiles:
        """Absolute paths, each checked to exist. A to_configure directory is
        walked (symlinks followed) and keeps its tree; a symlink in it that
        loops or points nowhere, or a pipe, socket or device, is a ConfigError."""
        tree: dict[str, str] = {}
        return cls(_paths(to_copy, "copy"), _paths(to_symlink, "symlink"),
                   _paths(to_configure, "configure", tree), tree)


def name_validator(kind: str) -> Callable[[Any, Any, Any], None]:
    """An attrs validator running :func:`check_name` for a ``kind`` of entity."""
    def validate(_inst: Any, _attr: Any, value: Any) -> None:
        check_name(kind, value)
    return validate


class RunUnit(Protocol):
    """What the generator needs of a model it writes a run directory for."""

    name: str
    params: dict[str, Any]
    files: EntityFiles
    #: set by the generator to the run directory it wrote
    path: str | None
