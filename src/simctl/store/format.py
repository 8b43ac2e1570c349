"""The on-Redis format of simctl's feature store: version 1, datasets version 2.

Everything simctl's :class:`~simctl.store.Client` keeps in Redis follows the
layout below, so a client in any language can read and write it with plain
Redis commands (no module, no server-side code of ours). All integers are
little-endian; all names are UTF-8.

Keys
====

A *name* is what the user passes (``put_tensor("t", ...)``). The key is the
name with the entity's prefix applied: ``<prefix>.<name>`` when prefixing
applies (see "Key prefixing" below), else ``<name>``. Names must be non-empty;
every key an operation touches must be at most :data:`MAX_KEY_BYTES` (1024)
bytes once encoded.

The key space is typed: a key holds one *kind* of value (a tensor, a model, a
script, an aggregation list, or one of a dataset's keys), and an operation
of one kind never overwrites, deletes or renames a key of another:

* keys starting with :data:`RESERVED` (``simctl.``) are simctl's own (the
  inference workers' queues, see :mod:`simctl.store.protocol`; the puts'
  temporary keys ``simctl.put{<tag>}.<id>``; the supervisor's
  ``simctl.supervisor.disk-check``); no user name or key may start with it;
* a dataset's keys (below) are ``<P>{<d>}.meta`` and ``<P>{<d>}.<t>`` (format 1:
  ``{F}``, ``{F}.meta`` and ``{F}.tensor.<t>``); a dataset name, prefix applied,
  holds neither ``{`` nor ``}`` (so all its keys share one slot of a cluster),
  and a key of another kind may not have the form of its metadata (nor of a
  format-1 dataset's keys) (:func:`dataset_key_form`); its tensors are
  tensors, read like any other;
* tensors, models and scripts are strings told apart by their magic, lists
  are Redis lists. simctl's client writes, deletes, copies and renames them
  with small Lua scripts (:data:`KIND_LUA`) that look at the key's kind and
  refuse a key of another kind, atomically, in the same round trip. A large
  value is first SET under a temporary key of the same slot (with an expiry)
  and then renamed onto its key by such a script, so it is not copied into
  Lua. A reader in another language should do the same: look before it writes.

Tensors
=======

A tensor is one Redis string, written with one ``SET`` and read with one
``GET``::

    offset  size        field
    0       4           magic  b"SMT1"  ("simctl tensor", format version 1)
    4       1           ndim   number of dimensions, 0..64 (0: a scalar)
    5       1           D      length of the dtype string
    6       2           H      offset of the first data byte (uint16); a multiple of 16
    8       8 * ndim    shape  one uint64 per dimension, outermost first
    8+8*ndim  D         dtype  ASCII, numpy's ``dtype.str``: byte order, kind, item size
    ...     ...         zero padding up to H
    H       N           data   the elements in C (row-major) order, N = prod(shape) * item size

The dtype string is one byte-order character (``<`` little-endian, ``>``
big-endian, ``|`` not applicable: one-byte types), one kind character and the
item size in bytes:

* ``b1`` bool (one byte, 0 or 1)
* ``i1 i2 i4 i8`` signed integers, ``u1 u2 u4 u8`` unsigned integers
* ``f2 f4 f8`` IEEE 754 binary16/32/64, ``c8 c16`` complex (two floats: real, imaginary)
* ``f16`` and ``c32``: the platform's C ``long double`` (x86-64: 80-bit extended
  precision padded to 16 bytes); only meaningful between machines of one kind.

For example ``np.array([[1.5, 2.5]])`` (float64, little-endian) is these 48 bytes::

    53 4d 54 31  02  03  20 00                 b"SMT1", ndim 2, D 3, H 32
    01 00 00 00 00 00 00 00                    shape[0] = 1
    02 00 00 00 00 00 00 00                    shape[1] = 2
    3c 66 38  00 00 00 00 00                   b"<f8", padding to 32
    00 00 00 00 00 00 f8 3f  00 00 00 00 00 00 04 40    1.5, 2.5

The value's length is exactly ``H + N``; a reader rejects anything else. The
data is stored in the byte order the dtype string says: a big-endian array
stays big-endian. A zero-size tensor (a 0 in its shape) has no data bytes; a
0-d tensor has one element. Data starts 16-byte aligned relative to the value,
so a reader that receives the value into an aligned buffer can use the data in
place. To inspect a tensor without fetching it, read its first 1024 bytes with
``GETRANGE key 0 1023``: the header always fits (:func:`parse_header`).

A tensor value is at most :data:`MAX_VALUE_BYTES` (512 MiB, Redis' default
``proto-max-bulk-len``) including the header; a larger tensor is refused before
anything is sent.

Datasets
========

Format version 2 (SmartRedis's key layout, so that names SmartRedis users
write, such as a script's input ``"{ds}.x"``, reach a dataset's tensor). A
dataset ``d`` written with prefix ``p`` has the key base ``B = p.{d}`` (``{d}``
without a prefix): the prefix outside the braces, the name inside, so all its
keys share the Redis Cluster hash tag ``{d}`` and live in one slot::

    B.meta     hash    the metadata, the tensor names and the acknowledgement
    B.<t>      string  tensor ``t`` of the dataset, encoded as above

Fields of ``B.meta``:

* ``.tensor_names``: UTF-8 JSON array of the tensor names, in the order they were added;
* ``.COMPLETE``: ``1``, the acknowledgement, written last (SmartRedis's field);
  a dataset exists when its metadata hash has this field;
* ``s:<field>``: scalars: a 1-d tensor value (as above) of the field's values in the
  order they were added; dtype one of ``<f8 <f4 <i8 <i4 <u8 <u4`` (any byte order is read)
* ``t:<field>``: strings: UTF-8 JSON array of the field's strings in the order added

The key layout and the acknowledgement are SmartRedis's; the values are
simctl's (tensors as above, metadata and tensor names as JSON), not
SmartRedis's binary metadata, so SmartRedis itself cannot read them (it needs
RedisAI's tensors anyway). A writer writes the tensors and the metadata, then
``.tensor_names`` and ``.COMPLETE`` last; simctl does all of it atomically,
in one Lua script, and removes the tensors of a dataset it replaces.

Format version 1 (simctl before issue 19; read, listed and deleted, never
written): a dataset ``F = p.d`` was ``{F}`` (a string, the acknowledgement: UTF-8
JSON ``{"simctl": "dataset", "version": 1, "tensors": [names]}``), ``{F}.meta``
(the metadata fields above) and ``{F}.tensor.<t>``. A reader looks for
``B.meta`` with ``.COMPLETE`` first, then for ``{F}``; a version-2 dataset
hides a version-1 one of the same name until ``delete_dataset`` removes both.

Aggregation lists
=================

An aggregation list is a Redis list whose elements name datasets, appended
with ``RPUSH``: the key base ``B`` (format 2, SmartRedis's), or the name ``F``
without braces (format 1, still read). Its length is ``LLEN``. Deleting a list
does not delete its datasets.

Key prefixing
=============

An entity started with key prefixing gets ``SSKEYOUT=<its name>``; an entity
that registered incoming entities gets ``SSKEYIN=<name>,<name>,...``. Writes
use ``SSKEYOUT`` as the prefix, reads use the *data source*: the first
``SSKEYIN`` name until ``set_data_source`` picks another, none if ``SSKEYIN``
is unset. Prefixing applies to tensors, datasets and lists by default (each
can be switched off by the client), to ML models and scripts only when the
client switches it on, and never to ``key_exists``/``poll_key``,
which take raw keys. A dataset ``d`` written with prefix ``p`` has the key base
``p.{d}`` (format 1: ``F = p.d``).

ML models and scripts
=====================

A model is one Redis string, written with one ``SET`` and read with one
``GET``; its key is the model's name with the prefix applied when the client's
model prefixing is on (``use_model_ensemble_prefix``; off by default)::

    offset  size   field
    0       4      magic  b"SMM1"  ("simctl model", format version 1)
    4       4      J      length of the JSON header (uint32)
    8       J      header UTF-8 JSON object, the fields below
    8+J     N      model  the serialized model as the backend reads it (N >= 1)

Header fields (all present): ``backend`` (the backend plugin's name: ``"ONNX"``,
``"TORCH"``...), ``device`` (``"CPU"``, ``"GPU"`` or ``"GPU:n"``), ``batch_size``,
``min_batch_size``, ``min_batch_timeout`` (integers >= 0, 0 meaning "no
batching", "no minimum" and "no wait"; ``min_batch_timeout`` in milliseconds),
``tag`` (a string, ``""`` when none), ``inputs`` and ``outputs`` (lists of
names, or null when the model does not need them). Optional fields, present
only when the model was stored with them: ``threads_per_queue``,
``inter_op_threads``, ``intra_op_threads`` (integers >= 1; kept, the
runtimes' own thread defaults apply). A reader ignores fields it does not
know. These are the fields of :class:`simctl.store.spec.ModelSpec`, and
``id``: a random string, new each time the model (or script, whose header
has it too) is stored. The inference workers compare the header (``id``
included) of a model they hold loaded with the stored one on every request,
so a writer in another language must give each value it stores a new ``id``
(an older value without one is read; its replacement by an identical header
is not noticed).

A script (TorchScript source holding functions, or one function's source) is
one Redis string in the same key space, under the same prefixing::

    0       4      magic  b"SMS1"  ("simctl script", format version 1)
    4       4      J      length of the JSON header (uint32)
    8       J      header UTF-8 JSON object: ``device``
    8+J     N      source UTF-8 text (N >= 1)

The script header's fields are ``device`` and ``id`` (as a model's).

Models and scripts share the key space with tensors: a key holds one of them,
and the magic says which. :func:`parse_model_header` and
:func:`parse_script_header` read the header (the first 4096 bytes are always
enough, ``GETRANGE key 0 4095``). A model or script value is at most
:data:`MAX_VALUE_BYTES` including its header; a larger one is refused before
anything is sent.

A reader must reject a value whose magic it does not know rather than guess.
"""

from __future__ import annotations

import json
import math
import re
import struct
import uuid
from typing import Any, NamedTuple

import numpy as np

from ..core.errors import ConfigError, SimctlError
from .spec import ModelSpec

#: the prefix of simctl's own keys; a user's name or key may not start with it
RESERVED = "simctl."
#: what an operation of each kind calls the kind (and the kinds the Lua :data:`KIND_LUA` tells apart)
KIND_NAMES = {"tensor": "a tensor", "model": "an ML model", "script": "a script (or function)",
              "list": "an aggregation list", "dataset": "a dataset", "string": "a Redis string simctl did not write",
              "hash": "a Redis hash", "set": "a Redis set", "zset": "a Redis sorted set", "stream": "a Redis stream"}
#: a Lua function ``kind(key)``: 'none', 'tensor', 'model', 'script', 'string' (another string), or the Redis
#: type ('list', 'hash', ...); the prelude of every script that checks a key's kind
KIND_LUA = """
local function kind(k)
  local t = redis.call('TYPE', k)['ok']
  if t ~= 'string' then return t end
  local m = redis.call('GETRANGE', k, 0, 2)
  if m == 'SMT' then return 'tensor' elseif m == 'SMM' then return 'model' elseif m == 'SMS' then return 'script' end
  return 'string'
end
"""
#: the error a checking script answers when a key holds another kind: ``SIMCTLKIND <kind>``
KIND_ERROR = "SIMCTLKIND"
_DATASET_KEY = re.compile(r"\{[^{}]*\}(\.meta|\.tensor\..*)?|[^{}]*\{[^{}]*\}\.meta", re.DOTALL)


def kind_name(kind: str) -> str:
    """``"a tensor"``, ``"an aggregation list"``... for a kind :data:`KIND_LUA` answers."""
    return KIND_NAMES.get(kind, f"a Redis {kind}")


def kind_of_value(value: bytes | bytearray | memoryview) -> str:
    """The kind of a string value by its first bytes: 'tensor', 'model', 'script', 'dataset' or 'string'."""
    head = bytes(value[:3])
    if head in (b"SMT", b"SMM", b"SMS"):
        return {b"SMT": "tensor", b"SMM": "model", b"SMS": "script"}[head]
    return "dataset" if bytes(value[:10]) == b'{"simctl":' else "string"


def dataset_key_form(key: str) -> bool:
    """Whether ``key`` has the form of a dataset's acknowledgement or metadata
    (``<P>{<d>}.meta``; version 1: ``{F}``, ``{F}.meta``, ``{F}.tensor.<t>``).
    A version-2 dataset's tensor ``<P>{<d>}.<t>`` is a tensor like any other."""
    return "{" in key and _DATASET_KEY.fullmatch(key) is not None

#: format version written by this module (tensors: the digit in the magic)
VERSION = 1
TENSOR_MAGIC = b"SMT1"
#: the bytes every tensor starts with, whatever its version
TENSOR_MAGIC_STEM = b"SMT"
#: Redis' default proto-max-bulk-len: the largest value a default server accepts
MAX_VALUE_BYTES = 512 * 1024 * 1024
MAX_KEY_BYTES = 1024
MAX_NDIM = 64
#: numpy dtype kinds that can be stored: bool, signed, unsigned, float, complex
TENSOR_KINDS = "biufc"
#: dtypes a metadata scalar field may have
META_SCALAR_DTYPES = tuple(np.dtype(t) for t in ("<f8", "<f4", "<i8", "<i4", "<u8", "<u4"))
#: the largest header there can be; reading this many bytes is enough for parse_header
MAX_HEADER_BYTES = 1024

_FIXED = struct.Struct("<4sBBH")
_ALIGN = 16


class TensorHeader(NamedTuple):
    """What a tensor value's header says."""

    dtype: np.dtype
    shape: tuple[int, ...]
    #: offset of the first data byte in the value
    offset: int

    @property
    def nbytes(self) -> int:
        """Size of the data that follows the header."""
        return math.prod(self.shape) * self.dtype.itemsize


class StoreError(SimctlError):
    """The store refused or failed an operation (the message says which and why)."""


class StoreConnectionError(StoreError, ConnectionError):
    """The store cannot be reached, refused the credentials, or went away."""


class StoreTimeoutError(StoreConnectionError, TimeoutError):
    """The store, or the inference worker running a request, did not answer within the timeout."""


class StoreKeyError(StoreError, KeyError):
    """A key (or a dataset's tensor or metadata field) does not exist."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class KindError(StoreError):
    """An operation on a key that holds another kind of value (a tensor's on a
    model, a list's on a tensor...): the message names both kinds."""


class FormatError(StoreError, ValueError):
    """A value is not in simctl's format (or in a version this code does not read)."""


def check_dtype(dtype: np.dtype, what: str) -> None:
    """Raise ConfigError unless ``dtype`` can be stored as a tensor."""
    if dtype.kind not in TENSOR_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ConfigError(f"{what}: dtype {dtype} ({dtype.str!r}) cannot be stored; a tensor must be "
                          f"bool, a signed or unsigned integer, a float or a complex number "
                          f"(numpy kinds b, i, u, f, c), not object, string, bytes, void, datetime or structured")


def as_array(data: Any, what: str) -> np.ndarray:
    """``data`` as a numpy array; ConfigError naming ``what`` for a masked
    array (its mask would be lost: the format has none) or None."""
    if isinstance(data, np.ma.MaskedArray):
        raise ConfigError(f"{what}: a masked array cannot be stored (the tensor format keeps no mask, and it "
                          "would be lost); store data.filled(fill_value) and np.ma.getmaskarray(data) as two "
                          "tensors")
    if data is None:
        raise ConfigError(f"{what}: data must be a numeric numpy array, got None")
    try:
        return np.asarray(data)
    except ValueError as exc:  # a ragged list
        raise ConfigError(f"{what}: data must be a numeric numpy array (or a list numpy makes one of); "
                          f"{type(data).__name__} {data!r:.60} is not one: {exc}") from None


_headers: dict[tuple[np.dtype, tuple[int, ...]], bytes] = {}
_parsed: dict[bytes, tuple[np.dtype, tuple[int, ...], int, int, int]] = {}
_CACHE_SIZE = 4096


def tensor_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The header of a tensor of this dtype and shape (the data follows it)."""
    header = _headers.get((dtype, shape))
    if header is None:
        ds = dtype.str.encode("ascii")
        head = _FIXED.size + 8 * len(shape) + len(ds)
        offset = -(-head // _ALIGN) * _ALIGN
        header = b"".join((_FIXED.pack(TENSOR_MAGIC, len(shape), len(ds), offset),
                           struct.pack(f"<{len(shape)}Q", *shape), ds, bytes(offset - head)))
        if len(_headers) >= _CACHE_SIZE:
            _headers.clear()
        _headers[(dtype, shape)] = header
    return header


def encode_tensor(array: Any, what: str = "tensor") -> list[bytes | memoryview]:
    """The value of a tensor holding ``array`` (any numeric array; a copy is made
    only if it is not C-contiguous), as buffers whose concatenation is the value:
    one ``bytes`` for a small array; for a large one, the header and a view of
    the array's memory, so that the caller can send it without copying the data.
    ConfigError (naming ``what``) for a dtype that cannot be stored or a value
    larger than :data:`MAX_VALUE_BYTES`, before anything is copied."""
    a = array if type(array) is np.ndarray else as_array(array, what)
    header = _headers.get((a.dtype, a.shape))
    if header is None:
        check_dtype(a.dtype, what)
        if a.ndim > MAX_NDIM:  # numpy 1.x stops at 32 anyway
            raise ConfigError(f"{what}: {a.ndim} dimensions; at most {MAX_NDIM} can be stored")
        header = tensor_header(a.dtype, a.shape)
    if len(header) + a.nbytes > MAX_VALUE_BYTES:
        raise ConfigError(f"{what}: the tensor ({a.dtype}, shape {a.shape}) takes {len(header) + a.nbytes} bytes "
                          f"stored; a value may be at most {MAX_VALUE_BYTES} bytes (512 MiB, the server's "
                          f"proto-max-bulk-len); store it in several tensors")
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    if a.nbytes <= 65536:
        return [header + a.tobytes()]
    return [header, a.reshape(-1).view(np.uint8).data]


def tensor_bytes(array: Any, what: str = "tensor") -> bytes:
    """The value of a tensor holding ``array``, as one ``bytes``."""
    return b"".join(encode_tensor(array, what))


def parse_header(value: bytes | bytearray | memoryview) -> TensorHeader:
    """Read a tensor header from the start of ``value`` (the whole value or at
    least its first :data:`MAX_HEADER_BYTES` bytes). FormatError if it is not one."""
    if len(value) < _FIXED.size or bytes(value[:3]) != TENSOR_MAGIC_STEM:
        raise FormatError("not a simctl tensor (it does not start with b'SMT')")
    magic, ndim, dlen, offset = _FIXED.unpack_from(value)
    if magic != TENSOR_MAGIC:
        raise FormatError(f"a tensor in format {magic!r}; this version of simctl reads {TENSOR_MAGIC!r}")
    end = _FIXED.size + 8 * ndim
    if ndim > MAX_NDIM or offset < end + dlen or offset % _ALIGN or len(value) < end + dlen:
        raise FormatError("a damaged simctl tensor header")
    shape = struct.unpack_from(f"<{ndim}Q", value, _FIXED.size)
    text = bytes(value[end:end + dlen]).decode("ascii", "replace")
    try:
        dtype = np.dtype(text)
    except (TypeError, ValueError) as exc:
        raise FormatError(f"a simctl tensor with an unknown dtype {text!r}: {exc}") from None
    if dtype.kind not in TENSOR_KINDS or dtype.str != text:
        raise FormatError(f"a simctl tensor with dtype {text!r}, which is not a numeric type's dtype.str")
    return TensorHeader(dtype, shape, offset)


def _parse(value: bytes | bytearray | memoryview) -> tuple[np.dtype, tuple[int, ...], int, int, int]:
    """(dtype, shape, element count, data offset, value size) of a tensor value; cached by header."""
    head = parse_header(value)
    parsed = (head.dtype, head.shape, math.prod(head.shape), head.offset, head.offset + head.nbytes)
    if len(_parsed) >= _CACHE_SIZE:
        _parsed.clear()
    _parsed[bytes(value[:head.offset])] = parsed
    return parsed


def decode_tensor(value: bytes | bytearray | memoryview, copy: bool = True) -> np.ndarray:
    """The array a tensor value holds: a writable array of its own when ``copy``,
    else a (read-only if ``value`` is) view of ``value``. FormatError if ``value``
    is not a tensor."""
    head = value[:32]  # the whole header of most tensors (up to 2-d): a cache hit
    parsed = _parsed.get(head if type(head) is bytes else bytes(head)) or _parse(value)
    dtype, shape, count, offset, size = parsed
    if len(value) != size:
        raise FormatError(f"a damaged simctl tensor: {len(value)} bytes where its header "
                          f"({dtype.str}, shape {shape}) needs {size}")
    if not count:
        return np.empty(shape, dtype)
    a = np.frombuffer(value, dtype, count, offset)
    if len(shape) != 1:
        a = a.reshape(shape)
    return a.copy() if copy else a


# -- datasets ---------------------------------------------------------------------------


#: version 2 datasets: the metadata hash's fields holding the tensor names and the acknowledgement
DATASET_TENSOR_NAMES = ".tensor_names"
DATASET_ACK_FIELD = ".COMPLETE"


def dataset_base(full_name: str, name: str) -> str:
    """The key base ``<P>{<name>}`` of the dataset ``name`` whose name with the
    prefix applied is ``full_name`` (``<P><name>``, ``P`` being ``"<prefix>."`` or empty)."""
    return full_name[: len(full_name) - len(name)] + "{" + name + "}"


def dataset_v1_name(base: str) -> str:
    """``<P><name>`` (the name a version-1 dataset was stored under) of the key base ``<P>{<name>}``."""
    return base.replace("{", "", 1).replace("}", "", 1)


def dataset_keys_v2(base: str) -> tuple[str, str]:
    """(metadata hash, tensor-key stem) of the dataset at key base ``base``;
    the key of tensor ``t`` is ``stem + t`` (``<P>{<name>}.<t>``, SmartRedis's)."""
    return base + ".meta", base + "."


def parse_tensor_names(value: bytes | None) -> list[str]:
    """The tensor names of a version-2 metadata hash's ``.tensor_names`` field."""
    try:
        names = json.loads(value) if value is not None else None
    except (ValueError, UnicodeDecodeError):
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FormatError(f"a damaged dataset: its {DATASET_TENSOR_NAMES!r} field is not a JSON array of names: "
                          f"{(value or b'(absent)')[:80]!r}")
    return names


def dataset_keys(full_name: str) -> tuple[str, str, str]:
    """Version 1 (read and deleted, never written): (acknowledgement, metadata,
    tensor-key stem) of the dataset ``full_name``; the key of tensor ``t`` is ``stem + t``."""
    ack = "{" + full_name + "}"
    return ack, ack + ".meta", ack + ".tensor."


def dataset_ack(tensor_names: list[str]) -> bytes:
    """The acknowledgement value of a dataset holding these tensors."""
    return json.dumps({"simctl": "dataset", "version": VERSION, "tensors": tensor_names},
                      ensure_ascii=False).encode("utf-8")


def parse_dataset_ack(value: bytes) -> list[str]:
    """The tensor names an acknowledgement lists; FormatError if it is not one."""
    try:
        ack = json.loads(value)
        ok = isinstance(ack, dict) and ack.get("simctl") == "dataset"
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise FormatError("not a simctl dataset acknowledgement")
    if ack.get("version") != VERSION:
        raise FormatError(f"a dataset in format version {ack.get('version')!r}; this version of "
                          f"simctl reads version {VERSION}")
    names = ack.get("tensors")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise FormatError("a damaged dataset acknowledgement: 'tensors' is not a list of names")
    return names


def meta_scalar_field(name: str) -> bytes:
    """Hash field of the scalar metadata field ``name``."""
    return b"s:" + name.encode("utf-8")


def meta_string_field(name: str) -> bytes:
    """Hash field of the string metadata field ``name``."""
    return b"t:" + name.encode("utf-8")


def encode_meta_strings(values: list[str]) -> bytes:
    return json.dumps(values, ensure_ascii=False).encode("utf-8")


def decode_meta(fields: dict[bytes, bytes]) -> tuple[dict[str, np.ndarray], dict[str, list[str]]]:
    """(scalars, strings) from a dataset's metadata hash."""
    scalars: dict[str, np.ndarray] = {}
    strings: dict[str, list[str]] = {}
    for field, value in fields.items():
        kind = field[:2]
        try:
            name = field[2:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"field {field[:80]!r}: its name is not UTF-8 ({exc})") from None
        if kind == b"s:":
            try:
                scalars[name] = decode_tensor(value)
            except FormatError as exc:
                raise FormatError(f"scalar field {name!r}: {exc}") from None
        elif kind == b"t:":
            try:
                values = json.loads(value)
            except (ValueError, UnicodeDecodeError) as exc:
                raise FormatError(f"string field {name!r} is not UTF-8 JSON ({exc})") from None
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise FormatError(f"string field {name!r} is not a JSON array of strings: {value[:80]!r}")
            strings[name] = values
        else:
            raise FormatError(f"unknown field {field[:80]!r} (a field is 's:<name>' or 't:<name>')")
    return scalars, strings


# -- ML models and scripts --------------------------------------------------------------

MODEL_MAGIC = b"SMM1"
SCRIPT_MAGIC = b"SMS1"
#: the largest JSON header a model or script may have; reading 8 + this many bytes is enough
MAX_ML_HEADER_BYTES = 4088
_ML_FIXED = struct.Struct("<4sI")
MODEL_FIELDS = ("backend", "device", "batch_size", "min_batch_size", "min_batch_timeout", "tag", "inputs", "outputs")


class ModelHeader(NamedTuple):
    """What a model value's header says."""

    backend: str
    device: str
    batch_size: int
    min_batch_size: int
    min_batch_timeout: int
    tag: str
    inputs: list[str] | None
    outputs: list[str] | None
    #: offset of the first model byte in the value
    offset: int


class ScriptHeader(NamedTuple):
    """What a script value's header says."""

    device: str
    #: offset of the first source byte in the value
    offset: int


def _ml_header(magic: bytes, fields: dict[str, Any], payload: int, what: str) -> bytes:
    """The fixed part and JSON header of a model or script with ``payload`` bytes after it,
    with a fresh ``id``; ConfigError (naming ``what``) if the value would be too large."""
    head = json.dumps({**fields, "id": uuid.uuid4().hex}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(head) > MAX_ML_HEADER_BYTES:
        raise ConfigError(f"{what}: its metadata (inputs, outputs, tag) take {len(head)} bytes as JSON; "
                          f"at most {MAX_ML_HEADER_BYTES} can be stored")
    size = _ML_FIXED.size + len(head) + payload
    if size > MAX_VALUE_BYTES:
        raise ConfigError(f"{what}: {payload} bytes take {size} bytes stored; a value may be at most "
                          f"{MAX_VALUE_BYTES} bytes (512 MiB, the server's proto-max-bulk-len)")
    return _ML_FIXED.pack(magic, len(head)) + head


def model_header(spec: ModelSpec, model_size: int, what: str = "model") -> bytes:
    """The bytes that precede a model of ``model_size`` bytes, stored with
    ``spec`` (checked when it was made), in its value; ConfigError if the
    value would be too large."""
    return _ml_header(MODEL_MAGIC, spec.header_fields(), model_size, what)


def script_header(device: str, source_size: int, what: str = "script") -> bytes:
    """The bytes that precede a script's ``source_size`` bytes of UTF-8 source in its value."""
    return _ml_header(SCRIPT_MAGIC, {"device": device}, source_size, what)


def _parse_ml(value: bytes | bytearray | memoryview, magic: bytes, kind: str) -> tuple[dict[str, Any], int]:
    """(JSON header, payload offset) of a model or script value; FormatError if it is not one."""
    if len(value) < _ML_FIXED.size or bytes(value[:3]) != magic[:3]:
        other = {b"SMT": "a tensor", b"SMM": "a model", b"SMS": "a script"}.get(bytes(value[:3]))
        raise FormatError(f"not a simctl {kind}" + (f": it holds {other}" if other else
                                                    f" (it does not start with {magic[:3]!r})"))
    got, size = _ML_FIXED.unpack_from(value)
    if got != magic:
        raise FormatError(f"a {kind} in format {got!r}; this version of simctl reads {magic!r}")
    end = _ML_FIXED.size + size
    if size > MAX_ML_HEADER_BYTES or len(value) < end:
        raise FormatError(f"a damaged simctl {kind} header")
    try:
        fields = json.loads(bytes(value[_ML_FIXED.size:end]))
    except (ValueError, UnicodeDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise FormatError(f"a damaged simctl {kind} header: not a JSON object")
    return fields, end


def parse_model_header(value: bytes | bytearray | memoryview) -> ModelHeader:
    """Read a model header from the start of ``value`` (the whole value or at
    least its first ``8 + MAX_ML_HEADER_BYTES`` bytes). FormatError if it is not one."""
    fields, offset = _parse_ml(value, MODEL_MAGIC, "model")
    try:
        head = ModelHeader(**{f: fields[f] for f in MODEL_FIELDS}, offset=offset)
    except KeyError as exc:
        raise FormatError(f"a damaged simctl model header: no field {exc}") from None
    ints = (head.batch_size, head.min_batch_size, head.min_batch_timeout)
    names = (head.inputs, head.outputs)
    if (not isinstance(head.backend, str) or not isinstance(head.device, str) or not isinstance(head.tag, str)
            or any(type(i) is not int or i < 0 for i in ints)
            or any(n is not None and (not isinstance(n, list) or not all(isinstance(x, str) for x in n))
                   for n in names)):
        raise FormatError(f"a damaged simctl model header: {fields!r:.200}")
    return head


def parse_script_header(value: bytes | bytearray | memoryview) -> ScriptHeader:
    """Read a script header from the start of ``value``. FormatError if it is not one."""
    fields, offset = _parse_ml(value, SCRIPT_MAGIC, "script")
    if not isinstance(fields.get("device"), str):
        raise FormatError(f"a damaged simctl script header: {fields!r:.200}")
    return ScriptHeader(fields["device"], offset)


def decode_model(value: bytes | bytearray | memoryview) -> tuple[ModelHeader, bytes]:
    """(header, model bytes) of a model value; FormatError if it is not one."""
    head = parse_model_header(value)
    if len(value) <= head.offset:
        raise FormatError("a damaged simctl model: no model bytes after its header")
    return head, bytes(value[head.offset:])


def decode_script(value: bytes | bytearray | memoryview) -> tuple[ScriptHeader, str]:
    """(header, source text) of a script value; FormatError if it is not one."""
    head = parse_script_header(value)
    try:
        source = bytes(value[head.offset:]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"a damaged simctl script: its source is not UTF-8 ({exc})") from None
    if not source:
        raise FormatError("a damaged simctl script: no source after its header")
    return head, source
