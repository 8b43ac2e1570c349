"""Writes run directories: ``<exp_path>/<model>/`` and
``<exp_path>/<ensemble>/<member>/``, with copied, symlinked and configured
files and a record of the parameters.

Everything is checked before the first byte is written: names that would
share or nest directories, attached files that would overwrite each other, the
parameters record or a model's ``<name>.out`` / ``<name>.err``, pipes,
sockets and devices among the files to copy or configure (reading one would
block or never end), a directory to copy that contains the experiment
directory (the copy would copy itself), unknown tags, existing directories.

Each entity's directory (a model's, or an ensemble's with all its members) is
built under a temporary name next to it, ``<exp_path>/.<name>.tmp-<token>``.
Once every one is built, each is renamed into place, so a failure anywhere
leaves no part of the new directories and the previous ones as they were, and
an ensemble's directory then holds exactly its current members. An existing
directory is replaced only with ``overwrite=True``: it is renamed aside, and
deleted once every new directory is in place (or put back on failure).

Parameters are recorded once per entity directory, in ``simctl-params.json``:
a model's as ``{"name": ..., "params": {...}}``, an ensemble's as
``{member name: {params}}`` in the ensemble's directory (one record, not one
per member: each file created costs as much as a member's directory).

Files to configure are written byte for byte as rendered (no newline
translation). A to_configure directory keeps its tree, relative to it: its
``sub/in.txt`` goes to ``<member>/sub/in.txt``. A symlink in it that loops or
points nowhere is an error (raised by ``attach_generator_files``, which walks
the directory), not skipped: a missing input file is worse than a stop.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Literal, NamedTuple

from . import checks, templates
from .errors import ConfigError
from .files import EntityFiles, RunUnit

PARAMS_FILE = "simctl-params.json"
UnknownTags = Literal["error", "warn"]


class _Unit(NamedTuple):
    """One entity to write: its directory and its (model, run directory) pairs."""

    entity: Any
    top: str
    runs: list[tuple[RunUnit, str]]


class _Layout(NamedTuple):
    """Where an EntityFiles' files go in a run directory."""

    configure: list[tuple[str, str, int]]  # (source, path relative to the run directory, mode)
    top: dict[str, str]  # top-level name in the run directory -> the source that makes it
    streams: bool  # whether a top-level name ends in .out or .err


def _who(entity: Any) -> str:
    return f"{str(getattr(entity, 'type', type(entity).__name__)).lower()} {entity.name!r}"


def _plan(entities: Iterable[Any], exp_path: str, tag: str) -> list[_Unit]:
    units: list[_Unit] = []
    for entity in entities:
        run_dirs = getattr(entity, "run_dirs", None)
        if not callable(run_dirs):
            raise ConfigError(f"generate() takes models and ensembles, got {type(entity).__name__}")
        member_of = getattr(entity, "ensemble", None)  # a member alone: its own directory in its ensemble's
        top = os.path.join(exp_path, *([member_of] if isinstance(member_of, str) and member_of else []),
                           entity.name)
        runs = run_dirs(exp_path, tag)
        dirs = [d for _, d in runs]
        if any(d != top and d.rpartition(os.sep)[0] != top for d in dirs) or (top in dirs and len(dirs) > 1):
            raise ConfigError(f"{_who(entity)}: its run directories must be {top} or directly inside it")
        if len(set(dirs)) < len(dirs) or os.path.join(top, PARAMS_FILE) in dirs:
            raise ConfigError(f"{_who(entity)}: two members, or a member and {PARAMS_FILE}, would share "
                              "a directory; give its members unique names")
        units.append(_Unit(entity, top, runs))
    order = sorted(units, key=lambda u: os.path.normpath(u.top).split(os.sep))
    for a, b in zip(order, order[1:]):  # a directory is followed by those inside it
        pa, pb = os.path.normpath(a.top).split(os.sep), os.path.normpath(b.top).split(os.sep)
        if pa == pb:
            raise ConfigError(f"{_who(a.entity)} and {_who(b.entity)} would both be generated into "
                              f"{a.top}; give them different names")
        if pb[:len(pa)] == pa:
            raise ConfigError(f"{_who(b.entity)} would be generated into {b.top}, inside the directory of "
                              f"{_who(a.entity)}; give them different names")
    return units


def _inside(path: str, folder: str) -> bool:
    return os.path.commonpath([path, folder]) == folder


def _special_file(tree: str) -> str | None:
    """A pipe, socket or device under ``tree`` (symlinks are copied as links)."""
    stack = [tree]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                elif not (e.is_symlink() or e.is_file(follow_symlinks=False)):
                    return e.path
    return None


def _check_source(path: str, kind: str, exp_real: str) -> int:
    """Raise ConfigError for an attached file that is gone or would hang or
    recurse the copy; return its mode."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ConfigError(f"attached file {path} no longer exists or cannot be read "
                          f"({exc.strerror})") from None
    if kind == "symlink":
        return st.st_mode
    if stat.S_ISDIR(st.st_mode) and kind == "copy":
        if _inside(exp_real, os.path.realpath(path)):
            raise ConfigError(f"to_copy directory {path} contains the experiment directory {exp_real}: "
                              "the copy would copy itself; attach the files the run needs instead")
        special = _special_file(path)
        if special is None:
            return st.st_mode
        path, kind = special, "copy (inside a to_copy directory)"
    elif stat.S_ISREG(st.st_mode):
        return st.st_mode
    what = "a regular file" if kind == "configure" else "a regular file or directory"
    raise ConfigError(f"attached file to {kind} {path} is not {what} (a pipe, socket or device?): "
                      "reading it could block or never end; attach regular files only")


def _layout(model: RunUnit, files: EntityFiles, exp_real: str,
            modes: dict[tuple[str, str], int]) -> _Layout:
    """Check an EntityFiles' sources and destinations once (members share
    it); ``modes`` caches each (kind, source) checked."""
    for kind, paths in (("copy", files.to_copy), ("symlink", files.to_symlink),
                        ("configure", files.to_configure)):
        for path in paths:
            if (kind, path) not in modes:
                modes[kind, path] = _check_source(path, kind, exp_real) & 0o777
    roots = {src[: -len(rel)].rstrip(os.sep) or os.sep for src, rel in files.configure_as.items()}
    for root in roots:  # the to_configure directories
        if _inside(exp_real, os.path.realpath(root)):
            raise ConfigError(f"to_configure directory {root} contains the experiment directory {exp_real}; "
                              "attach the files the run needs instead")
    configure = [(src, files.configure_as.get(src) or os.path.basename(src), modes["configure", src])
                 for src in files.to_configure]
    names = [os.path.basename(p) for p in files.to_copy + files.to_symlink] + [rel for _, rel, _ in configure]
    folders = {rel.rsplit(os.sep, i)[0] for _, rel, _ in configure for i in range(1, rel.count(os.sep) + 1)}
    dup = {n for n, count in Counter(names).items() if count > 1} | (folders & set(names))
    if dup:
        raise ConfigError(f"model {model.name!r}: attached files would overwrite each other in its "
                          f"directory: {sorted(dup)} (attach each file once, under unique names)")
    sources = files.to_copy + files.to_symlink + [src for src, _, _ in configure]
    top = {n.split(os.sep)[0]: src for n, src in zip(names, sources)}
    return _Layout(configure, top, any(n.endswith((".out", ".err")) for n in top))


def _check(units: list[_Unit], exp_path: str, tag: str, unknown_tags: UnknownTags,
           overwrite: bool) -> tuple[dict[str, templates.Template], dict[int, _Layout]]:
    exp_real = os.path.realpath(exp_path)
    modes: dict[tuple[str, str], int] = {}
    parsed: dict[str, templates.Template] = {}
    layouts: dict[int, _Layout] = {}  # by id(model.files): an ensemble's members share one
    checked: set[tuple[str, frozenset[str]]] = set()
    for unit in units:
        for model, run in unit.runs:
            layout = layouts.get(id(model.files))
            if layout is None:
                layout = layouts[id(model.files)] = _layout(model, model.files, exp_real, modes)
            taken = [PARAMS_FILE] if run == unit.top else []
            if layout.streams:  # only then can a file be named like a model's output
                taken += [f"{model.name}.out", f"{model.name}.err"]
            for name in taken:
                if name in layout.top:
                    why = ("the parameters record" if name == PARAMS_FILE
                           else "the model's standard output or error, written there at launch")
                    raise ConfigError(f"model {model.name!r}: attached file {layout.top[name]} would be "
                                      f"written to {os.path.join(run, name)}, which is {why}; rename the file")
            keys = frozenset(model.params)
            if layout.configure:  # the values written into files: params changed after creation too
                for key, value in model.params.items():
                    checks.param_value(key, value)
            for src, _, _ in layout.configure:
                if src not in parsed:
                    parsed[src] = templates.load(src, tag)
                if (src, keys) not in checked and unknown_tags == "error":
                    parsed[src].render(model.params, strict=True)  # raises for an unknown tag
                    checked.add((src, keys))
    if not overwrite:
        exists = [u.top for u in units if os.path.lexists(u.top)]
        if exists:
            more = f" and {len(exists) - 3} more" if len(exists) > 3 else ""
            raise ConfigError(f"{len(exists)} director{'y' if len(exists) == 1 else 'ies'} already "
                              f"exist{'s' if len(exists) == 1 else ''}: {', '.join(exists[:3])}{more}; pass "
                              "overwrite=True to replace them, or choose another experiment path")
    return parsed, layouts


def _write_file(path: str, data: bytes, mode: int = 0o644) -> None:
    """Create ``path`` (it must not exist) with ``data``, as is: three system
    calls, where ``open()`` makes twice as many, which shows at 10,000 members."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:  # os.write may write less than asked
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _fill(model: RunUnit, where: str, layout: _Layout, parsed: dict[str, templates.Template],
          strict: bool) -> None:
    """Write one run directory's files into the (existing, empty) ``where``."""
    for src in model.files.to_copy:
        target = os.path.join(where, os.path.basename(src))
        if os.path.isdir(src):
            shutil.copytree(src, target, symlinks=True)
        else:
            shutil.copy2(src, target)
    for src in model.files.to_symlink:
        os.symlink(src, os.path.join(where, os.path.basename(src)))
    for src, rel, mode in layout.configure:
        target = where + os.sep + rel
        if os.sep in rel:
            os.makedirs(os.path.dirname(target), exist_ok=True)
        _write_file(target, parsed[src].render(model.params, strict=strict).encode("utf-8"), mode)


def _stage(unit: _Unit, tmp: str, parsed: dict[str, templates.Template], layouts: dict[int, _Layout],
           strict: bool) -> None:
    """Build ``unit``'s whole directory at ``tmp``."""
    os.mkdir(tmp)
    record: dict[str, Any] = {}
    for model, run in unit.runs:
        where = tmp + run[len(unit.top):]  # run is unit.top or directly inside it
        if where != tmp:
            os.mkdir(where)
        _fill(model, where, layouts[id(model.files)], parsed, strict)
        record[model.name] = model.params
    if len(unit.runs) == 1 and unit.runs[0][1] == unit.top:
        record = {"name": unit.runs[0][0].name, "params": unit.runs[0][0].params}
    _write_file(os.path.join(tmp, PARAMS_FILE), json.dumps(record, default=str).encode("utf-8"))


def _remove(path: str) -> None:
    shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)


def _swap_in(staged: list[tuple[str, str]], overwrite: bool, token: str) -> list[str]:
    """Rename each staged directory to its destination, the existing one aside
    first; all or none: on failure every destination is put back. Returns the
    set-aside directories, to delete."""
    placed: list[tuple[str, str, str | None]] = []
    try:
        for tmp, dest in staged:
            old = None
            if os.path.lexists(dest):
                if not overwrite:
                    raise ConfigError(f"{dest} appeared while generate() was writing; nothing was replaced")
                parent, leaf = os.path.split(dest)
                old = os.path.join(parent, f".{leaf}.old-{token}")
                os.rename(dest, old)
            placed.append((tmp, dest, old))
            os.rename(tmp, dest)
    except BaseException:
        for tmp, dest, old in reversed(placed):
            if not os.path.lexists(tmp):
                os.rename(dest, tmp)  # the new one back to its temporary name (deleted by the caller)
            if old is not None:
                os.rename(old, dest)
        raise
    return [old for _, _, old in placed if old is not None]


def generate(entities: Iterable[Any], exp_path: str, overwrite: bool = False,
             tag: str = ";", unknown_tags: UnknownTags = "error",
             guard: Callable[[list[str]], None] | None = None,
             before_write: Callable[[], None] | None = None) -> list[str]:
    """Write the run directories of ``entities`` (models and ensembles) under
    ``exp_path``; return them. All are written, or none.

    Once everything is checked, ``guard`` is given the existing directories
    that would be replaced (with ``overwrite``); it raises to refuse. Then
    ``before_write`` is called, just before the first byte is written.

    Models and members get their ``path`` set to their run directory, and each
    entity to ``<exp_path>/<name>``.
    """
    entities = list(entities)
    if not isinstance(tag, str) or not tag or any(c in tag for c in "\n\r\0"):
        raise ConfigError(f"tag must be a non-empty string on one line, such as ';', got {tag!r}")
    if unknown_tags not in ("error", "warn"):
        raise ConfigError(f"unknown_tags must be 'error' or 'warn', got {unknown_tags!r}")
    units = _plan(entities, exp_path, tag)
    parsed, layouts = _check(units, exp_path, tag, unknown_tags, overwrite)
    if guard is not None:
        guard([u.top for u in units if os.path.lexists(u.top)])
    if before_write is not None:
        before_write()
    os.makedirs(exp_path, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    staged: list[tuple[str, str]] = []
    try:
        for unit in units:
            parent, leaf = os.path.split(unit.top)
            os.makedirs(parent, exist_ok=True)  # an ensemble's directory, for a member generated alone
            staged.append((os.path.join(parent, f".{leaf}.tmp-{token}"), unit.top))
            _stage(unit, staged[-1][0], parsed, layouts, unknown_tags == "error")
        old = _swap_in(staged, overwrite, token)
    except BaseException:
        for tmp, _ in staged:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    for unit in units:
        for model, run in unit.runs:
            model.path = run
        unit.entity.path = unit.top
    for path in old:
        _remove(path)
    return [run for unit in units for _, run in unit.runs]
