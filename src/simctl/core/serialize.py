"""The one cattrs converter for everything simctl persists.

Settings are stored with the name of their class (``"__class__":
"module:qualname"``), so a launcher plugin's settings subclass round-trips
like the base classes. Reading never imports what that name says: a file is
data, and a module named in it (a typo, a plugin since removed, or a hostile
``os:system``-like name in a manifest someone else wrote) is not run. The
class is found among:

1. the settings classes of the launcher the data belongs to, looked up by
   its name in the plugin registry (``structure(..., launcher="slurm",
   plugins=...)``; a job record knows its launcher's name);
2. the settings classes already defined in this process (the built-in ones,
   those of every launcher plugin loaded, a driver's own subclass).

A name found nowhere (the launcher is not installed here) gives that
launcher's class, or else the base class (``RunSettings``,
``BatchSettings``), with the fields it does not have dropped and a warning
naming them.
"""

from __future__ import annotations

import contextvars
import warnings
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from .settings import BatchSettings, RunSettings

converter = cattrs.Converter()
_TAG = "__class__"
#: the launcher class the data being structured belongs to (see :func:`structure`)
_LAUNCHER: contextvars.ContextVar[Any] = contextvars.ContextVar("simctl_settings_launcher", default=None)


class UnknownSettingsWarning(UserWarning):
    """Settings named a class this process does not have: read as a base class."""


def _is_settings(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, (RunSettings, BatchSettings))


def _tag(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _unstructure_settings(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    data = make_dict_unstructure_fn(cls, converter)(obj)
    data[_TAG] = _tag(cls)
    return data


def _loaded(root: type) -> list[type]:
    """``root`` and every subclass of it defined so far (nothing is imported)."""
    out, stack = [], [root]
    while stack:
        cls = stack.pop()
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


def _launcher_classes(launcher: Any) -> list[type]:
    found = [getattr(launcher, a, None) for a in ("run_settings_class", "batch_settings_class")]
    return [c for c in found if isinstance(c, type)]


def settings_class(tag: str | None, base: type, launcher: Any = None) -> tuple[type, bool]:
    """The class for settings tagged ``tag`` read as ``base``, and whether the
    tag was found (False: a fallback). Never imports anything. TypeError if
    the tag names a known class that is not a ``base``."""
    if tag is None:
        return base, True
    candidates = _launcher_classes(launcher) + _loaded(RunSettings) + _loaded(BatchSettings)
    for cls in candidates:
        if _tag(cls) == tag:
            if not issubclass(cls, base):
                raise TypeError(f"{tag} is not a {base.__name__} class")
            return cls, True
    own = [c for c in _launcher_classes(launcher) if issubclass(c, base)]
    return (own[0] if own else base), False


def _structure_settings(data: dict[str, Any], base: type) -> Any:
    data = dict(data)
    tag = data.pop(_TAG, None)
    launcher = _LAUNCHER.get()
    cls, found = settings_class(tag, base, launcher)
    if not found:
        names = {f.name for f in attrs.fields(cls)}
        dropped = sorted(k for k in data if k not in names)
        for key in dropped:
            del data[key]
        own = launcher is not None and cls is not base
        where = f"the class of launcher {launcher.name!r}," if own else "the base class"
        warnings.warn(f"settings of class {tag} (not installed here) read as {where} {cls.__name__}"
                      + (f"; dropped the fields it lacks: {', '.join(dropped)}" if dropped else ""),
                      UnknownSettingsWarning, stacklevel=2)
    return make_dict_structure_fn(cls, converter)(data, cls)


converter.register_unstructure_hook_func(_is_settings, _unstructure_settings)
converter.register_structure_hook_func(_is_settings, _structure_settings)


def unstructure(obj: Any) -> Any:
    """Plain data (dicts, lists, strings) for ``obj``."""
    return converter.unstructure(obj)


def structure(data: Any, cls: Any, launcher: Any = None, plugins: Any = None) -> Any:
    """Rebuild a ``cls`` from :func:`unstructure`'s output. ``launcher``: the
    launcher the data belongs to, a class, or its name looked up in
    ``plugins`` (a :class:`~simctl.core.plugins.Plugins`; a name not
    installed there is no launcher): its settings classes are found first."""
    if isinstance(launcher, str):
        launcher = plugins.get("launcher", launcher) if plugins is not None and launcher in plugins.names(
            "launcher") else None
    token = _LAUNCHER.set(launcher)
    try:
        return converter.structure(data, cls)
    finally:
        _LAUNCHER.reset(token)
