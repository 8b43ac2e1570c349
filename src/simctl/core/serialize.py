"""The one cattrs converter for everything simctl persists.

Settings are stored with the import path of their class (``"__class__"``), so a
launcher plugin's settings subclass round-trips like the base classes.
"""

from __future__ import annotations

import importlib
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn

from .settings import BatchSettings, RunSettings

converter = cattrs.Converter()
_TAG = "__class__"


def _is_settings(cls: Any) -> bool:
    return isinstance(cls, type) and issubclass(cls, (RunSettings, BatchSettings))


def _unstructure_settings(obj: Any) -> dict[str, Any]:
    cls = type(obj)
    data = make_dict_unstructure_fn(cls, converter)(obj)
    data[_TAG] = f"{cls.__module__}:{cls.__qualname__}"
    return data


def _structure_settings(data: dict[str, Any], base: type) -> Any:
    data = dict(data)
    cls: Any = base
    if _TAG in data:
        module, _, qualname = data.pop(_TAG).partition(":")
        cls = importlib.import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise TypeError(f"{module}:{qualname} is not a {base.__name__} class")
    return make_dict_structure_fn(cls, converter)(data, cls)


converter.register_unstructure_hook_func(_is_settings, _unstructure_settings)
converter.register_structure_hook_func(_is_settings, _structure_settings)


def unstructure(obj: Any) -> Any:
    """Plain data (dicts, lists, strings) for ``obj``."""
    return converter.unstructure(obj)


def structure(data: Any, cls: Any) -> Any:
    """Rebuild a ``cls`` from :func:`unstructure`'s output."""
    return converter.structure(data, cls)
