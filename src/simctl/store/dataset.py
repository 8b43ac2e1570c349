"""``Dataset``: named tensors plus metadata, stored and fetched as one unit."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import ConfigError
from . import format as fmt
from .format import StoreKeyError


def check_name(name: Any, what: str) -> str:
    """``name`` if it is a non-empty string that UTF-8 can encode, else ConfigError naming ``what``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} must be a non-empty string, got {name!r:.80}")
    if not name.isascii():
        try:
            name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(f"{what} must be text UTF-8 can encode, got {name!r:.80} ({exc.reason})") from None
    return name


class Dataset:
    """A named group of tensors and metadata (scalars and strings) that
    ``Client.put_dataset`` stores together and ``Client.get_dataset`` returns.

    ``add_tensor`` keeps a C-ordered copy of the array, so changing the array
    afterwards does not change the dataset."""

    def __init__(self, name: str) -> None:
        self._name = check_name(name, "Dataset name")
        self._tensors: dict[str, np.ndarray] = {}
        self._scalars: dict[str, np.ndarray] = {}
        self._strings: dict[str, list[str]] = {}

    @property
    def name(self) -> str:
        """The dataset's name (without any key prefix)."""
        return self._name

    def get_name(self) -> str:
        """The dataset's name (without any key prefix)."""
        return self._name

    def __repr__(self) -> str:
        return (f"Dataset({self._name!r}, tensors={list(self._tensors)}, "
                f"meta={list(self._scalars) + list(self._strings)})")

    # -- tensors ----------------------------------------------------------------------

    def add_tensor(self, name: str, data: Any) -> None:
        """Add (or replace) the tensor ``name``: any numeric numpy array."""
        check_name(name, "Dataset.add_tensor: name")
        array = fmt.as_array(data, f"Dataset.add_tensor({name!r})")
        fmt.check_dtype(array.dtype, f"Dataset.add_tensor({name!r})")
        self._tensors[name] = np.array(array, order="C", copy=True)

    def get_tensor(self, name: str) -> np.ndarray:
        """The tensor ``name`` (the dataset's own array, not a copy)."""
        try:
            return self._tensors[name]
        except KeyError:
            raise StoreKeyError(f"dataset {self._name!r} has no tensor {name!r}; it has "
                                f"{sorted(self._tensors) or '(none)'}") from None

    def get_tensor_names(self) -> list[str]:
        """Names of the dataset's tensors, in the order they were added."""
        return list(self._tensors)

    # -- metadata ---------------------------------------------------------------------

    def add_meta_scalar(self, name: str, data: Any) -> None:
        """Append a number to the scalar metadata field ``name``. The field's type
        is set by its first value (Python int: int64, float: float64, or a numpy
        float64/float32/int64/int32/uint64/uint32); later values must fit it exactly."""
        check_name(name, "Dataset.add_meta_scalar: name")
        if name in self._strings:
            raise ConfigError(f"Dataset.add_meta_scalar: {name!r} is already a string field of dataset "
                              f"{self._name!r}")
        value = np.asarray(data)
        if value.ndim != 0 or isinstance(data, (bool, np.bool_)):
            raise ConfigError(f"Dataset.add_meta_scalar({name!r}): data must be one int or float, got "
                              f"{type(data).__name__} {data!r}")
        old = self._scalars.get(name)
        dtype = old.dtype if old is not None else value.dtype.newbyteorder("<")
        if dtype not in fmt.META_SCALAR_DTYPES:
            raise ConfigError(f"Dataset.add_meta_scalar({name!r}): dtype {value.dtype} is not accepted; "
                              f"use float64, float32, int64, int32, uint64 or uint32")
        if dtype.kind == "f":
            fits = value.dtype.kind in "iuf"
        else:
            info = np.iinfo(dtype)
            fits = value.dtype.kind in "iu" and info.min <= int(value) <= info.max
        if not fits:
            raise ConfigError(f"Dataset.add_meta_scalar({name!r}): {data!r} does not fit the field's "
                              f"type {dtype} (set by its first value)")
        new = value.astype(dtype).reshape(1)
        self._scalars[name] = new if old is None else np.concatenate((old, new))

    def add_meta_string(self, name: str, data: str) -> None:
        """Append a string to the string metadata field ``name``."""
        check_name(name, "Dataset.add_meta_string: name")
        if not isinstance(data, str):
            raise ConfigError(f"Dataset.add_meta_string({name!r}): data must be a str, got "
                              f"{type(data).__name__}")
        if name in self._scalars:
            raise ConfigError(f"Dataset.add_meta_string: {name!r} is already a scalar field of dataset "
                              f"{self._name!r}")
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ConfigError(f"Dataset.add_meta_string({name!r}): data is not valid Unicode text ({exc})") from None
        self._strings.setdefault(name, []).append(data)

    def get_meta_scalars(self, name: str) -> np.ndarray:
        """The values of the scalar field ``name``, in the order added (a copy)."""
        if name not in self._scalars:
            raise self._no_field(name, "scalar")
        return np.array(self._scalars[name])  # a copy

    def get_meta_strings(self, name: str) -> list[str]:
        """The values of the string field ``name``, in the order added."""
        if name not in self._strings:
            raise self._no_field(name, "string")
        return list(self._strings[name])

    def get_metadata_field_names(self) -> list[str]:
        """Names of the metadata fields (scalar fields first)."""
        return list(self._scalars) + list(self._strings)

    def _no_field(self, name: str, kind: str) -> StoreKeyError:
        fields = sorted(self._scalars if kind == "scalar" else self._strings)
        return StoreKeyError(f"dataset {self._name!r} has no {kind} metadata field {name!r}; its "
                             f"{kind} fields are {fields or '(none)'}")

    # -- the stored form (see format.py) --------------------------------------------------

    def _meta_items(self) -> list[tuple[bytes, bytes]]:
        items = [(fmt.meta_scalar_field(k), fmt.tensor_bytes(v)) for k, v in self._scalars.items()]
        items += [(fmt.meta_string_field(k), fmt.encode_meta_strings(v)) for k, v in self._strings.items()]
        return items

    @classmethod
    def _from_stored(cls, name: str, tensors: dict[str, np.ndarray], scalars: dict[str, np.ndarray],
                     strings: dict[str, list[str]]) -> Dataset:
        ds = cls(name)
        ds._tensors, ds._scalars, ds._strings = tensors, scalars, strings
        return ds
