"""Writes run directories: ``<exp_path>/<model>/`` and
``<exp_path>/<ensemble>/<member>/``, with copied, symlinked and configured
files and a record of each member's parameters.

Everything is checked before the first byte is written. Each member directory
is built under a temporary name and renamed into place, so it appears whole or
not at all; an existing directory is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Iterable, Literal

from . import templates
from .entities import Ensemble, Model
from .errors import ConfigError

PARAMS_FILE = "simctl-params.json"
UnknownTags = Literal["error", "warn"]


def _plan(entities: Iterable[Model | Ensemble], exp_path: str, tag: str) -> list[tuple[Model, str]]:
    plan: list[tuple[Model, str]] = []
    for entity in entities:
        if isinstance(entity, Ensemble):
            base = os.path.join(exp_path, entity.name)
            entity.use_tag(tag)
            plan += [(m, os.path.join(base, m.name)) for m in entity.models]
        elif isinstance(entity, Model):
            plan.append((entity, os.path.join(exp_path, entity.name)))
        else:
            raise ConfigError(f"generate() takes models and ensembles, got {type(entity).__name__}")
    seen: dict[str, str] = {}
    for model, dest in plan:
        if dest in seen:
            raise ConfigError(f"two entities would be generated into {dest}: {seen[dest]!r} and "
                              f"{model.name!r}; give them different names")
        seen[dest] = model.name
    return plan


def _check(plan: list[tuple[Model, str]], tag: str, unknown_tags: UnknownTags,
           overwrite: bool) -> dict[str, templates.Template]:
    if unknown_tags not in ("error", "warn"):
        raise ConfigError(f"unknown_tags must be 'error' or 'warn', got {unknown_tags!r}")
    parsed: dict[str, templates.Template] = {}
    checked: set[tuple[str, frozenset[str]]] = set()
    for model, _ in plan:
        names = [os.path.basename(p) for p in
                 model.files.to_copy + model.files.to_symlink + model.files.to_configure]
        dup = {n for n in names if names.count(n) > 1} | ({PARAMS_FILE} & set(names))
        if dup:
            raise ConfigError(f"model {model.name!r}: attached files would overwrite each other in its "
                              f"directory: {sorted(dup)} (file names must be unique and not {PARAMS_FILE!r})")
        for path in model.files.to_copy + model.files.to_symlink + model.files.to_configure:
            if not os.path.exists(path):
                raise ConfigError(f"model {model.name!r}: attached file {path} no longer exists")
        for path in model.files.to_configure:
            if path not in parsed:
                parsed[path] = templates.load(path, tag)
            key = (path, frozenset(model.params))
            if key not in checked and unknown_tags == "error":
                parsed[path].render(model.params, strict=True)  # raises for an unknown tag
            checked.add(key)
    if not overwrite:
        exists = [dest for _, dest in plan if os.path.lexists(dest)]
        if exists:
            more = f" and {len(exists) - 3} more" if len(exists) > 3 else ""
            raise ConfigError(f"{len(exists)} run director{'y' if len(exists) == 1 else 'ies'} already "
                              f"exist: {', '.join(exists[:3])}{more}; pass overwrite=True to replace "
                              "them, or choose another experiment path")
    return parsed


def _write_file(path: str, text: str, mode: int = 0o644) -> None:
    """Create ``path`` (it must not exist) with ``text``: three system calls,
    where ``open()`` makes twice as many, which shows at 10,000 members."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        data = memoryview(text.encode("utf-8"))
        while data:  # os.write may write less than asked
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def _write_member(model: Model, dest: str, parsed: dict[str, templates.Template], modes: dict[str, int],
                  strict: bool, overwrite: bool, token: str) -> None:
    parent, leaf = os.path.split(dest)
    tmp = os.path.join(parent, f".{leaf}.tmp-{token}")
    os.mkdir(tmp)
    old: str | None = None
    try:
        for src in model.files.to_copy:
            target = os.path.join(tmp, os.path.basename(src))
            if os.path.isdir(src):
                shutil.copytree(src, target, symlinks=True)
            else:
                shutil.copy2(src, target)
        for src in model.files.to_symlink:
            os.symlink(src, os.path.join(tmp, os.path.basename(src)))
        for src in model.files.to_configure:
            _write_file(os.path.join(tmp, os.path.basename(src)),
                        parsed[src].render(model.params, strict=strict), modes[src])
        _write_file(os.path.join(tmp, PARAMS_FILE),
                    json.dumps({"name": model.name, "params": model.params}, default=str))
        if overwrite and os.path.lexists(dest):
            old = os.path.join(parent, f".{leaf}.old-{token}")
            os.rename(dest, old)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not os.path.lexists(dest):
            os.rename(old, dest)  # put the previous directory back
        raise
    if old is not None:
        shutil.rmtree(old) if os.path.isdir(old) and not os.path.islink(old) else os.unlink(old)


def generate(entities: Iterable[Model | Ensemble], exp_path: str, overwrite: bool = False,
             tag: str = ";", unknown_tags: UnknownTags = "error") -> list[str]:
    """Write the run directories of ``entities`` under ``exp_path``; return them.

    Models and members get their ``path`` set to their new directory.
    """
    entities = list(entities)
    if not isinstance(tag, str) or not tag:
        raise ConfigError(f"tag must be a non-empty string such as ';', got {tag!r}")
    plan = _plan(entities, exp_path, tag)
    parsed = _check(plan, tag, unknown_tags, overwrite)
    os.makedirs(exp_path, exist_ok=True)
    for parent in {os.path.dirname(dest) for _, dest in plan}:
        os.makedirs(parent, exist_ok=True)
    strict = unknown_tags == "error"
    modes = {src: os.stat(src).st_mode & 0o777 for src in parsed}
    token = uuid.uuid4().hex[:8]
    for model, dest in plan:
        _write_member(model, dest, parsed, modes, strict, overwrite, token)
        model.path = dest
    for entity in entities:
        if isinstance(entity, Ensemble):
            entity.path = os.path.join(exp_path, entity.name)
    return [dest for _, dest in plan]
