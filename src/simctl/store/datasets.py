"""The client's dataset and aggregation-list commands (the
:class:`~simctl.store.Dataset` itself is in :mod:`.dataset`). A dataset is
written, read and deleted in one round trip, by a Lua script over keys that
share one hash tag (the layout is in :mod:`.format`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..core.errors import ConfigError
from . import format as fmt, keyspace
from .base import ClientBase, check_length, decode_value, encode_value, poll
from .dataset import Dataset
from .format import FormatError, StoreKeyError

# -- Lua scripts for datasets (see format.py); all their keys share one hash tag --------
# Version 2 (SmartRedis's layout): KEYS[1] is the metadata hash '<P>{<d>}.meta', the tensors are '<P>{<d>}.<t>'.

#: deletes the tensors the metadata hash KEYS[1] names (its field ARGV[1])
_DELETE_TENSORS = """
local base = string.sub(KEYS[1], 1, -6)
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, names = pcall(cjson.decode, old)
  if ok and type(names) == 'table' then
    for _, t in ipairs(names) do redis.call('DEL', base .. '.' .. t) end
  end
end
"""

PUT_DATASET = _DELETE_TENSORS + """
redis.call('DEL', KEYS[1])
local n = tonumber(ARGV[4])
for i = 1, n do redis.call('HSET', KEYS[1], ARGV[3 + 2 * i], ARGV[4 + 2 * i]) end
for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[3 + 2 * n + i]) end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[1], ARGV[2], '1')
return 1
"""

GET_DATASET = """
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return false end
local base = string.sub(KEYS[1], 1, -6)
local out = {redis.call('HGETALL', KEYS[1])}
local ok, names = pcall(cjson.decode, redis.call('HGET', KEYS[1], ARGV[1]) or '')
if ok and type(names) == 'table' then
  for _, t in ipairs(names) do out[#out + 1] = redis.call('GET', base .. '.' .. t) end
end
return out
"""

DELETE_DATASET = _DELETE_TENSORS + """
return redis.call('DEL', KEYS[1])
"""

# Version 1 (read and deleted only): '{F}' (the acknowledgement), '{F}.meta', '{F}.tensor.<t>'

GET_DATASET_V1 = """
local ack = redis.call('GET', KEYS[1])
if not ack then return false end
local out = {ack, redis.call('HGETALL', KEYS[2])}
local ok, d = pcall(cjson.decode, ack)
if ok and type(d) == 'table' and type(d.tensors) == 'table' then
  for _, t in ipairs(d.tensors) do out[#out + 1] = redis.call('GET', KEYS[1] .. '.tensor.' .. t) end
end
return out
"""

DELETE_DATASET_V1 = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, ack = pcall(cjson.decode, old)
  if ok and type(ack) == 'table' and type(ack.tensors) == 'table' then
    for _, t in ipairs(ack.tensors) do redis.call('DEL', KEYS[1] .. '.tensor.' .. t) end
  end
end
return redis.call('DEL', KEYS[1], KEYS[2])
"""

#: the fields of a version-2 metadata hash the scripts read: its tensor names, its acknowledgement
_FIELDS = (fmt.DATASET_TENSOR_NAMES, fmt.DATASET_ACK_FIELD)


class DatasetCommands(ClientBase):
    """Datasets and aggregation lists (lists of dataset names)."""

    # -- datasets ---------------------------------------------------------------------------

    def _dataset_name(self, name: str, read: bool, what: str) -> str:
        """The dataset's key base ``<P>{<name>}`` (version 2; see :mod:`.format`)."""
        full = self._key("dataset", name, read, what)
        base = fmt.dataset_base(full, name)
        check_length(base + ".meta", what)
        return base

    def put_dataset(self, dataset: Dataset) -> None:
        """Store ``dataset`` (its tensors and metadata) atomically, replacing any
        dataset of that name; one round trip."""
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"put_dataset: dataset must be a Dataset, got {type(dataset).__name__}")
        self._put_dataset_as(self._dataset_name(dataset.name, False, "put_dataset"), dataset, "put_dataset")

    def _put_dataset_as(self, base: str, dataset: Dataset, what: str) -> None:
        meta, stem = fmt.dataset_keys_v2(base)
        names = dataset.get_tensor_names()
        keys = [stem + t for t in names]
        for k in keys:
            check_length(k, what)
        values = [encode_value(dataset.get_tensor(t), f"{what}({dataset.name!r}): tensor {t!r}") for t in names]
        pairs = dataset._meta_items()
        args = [*_FIELDS, fmt.encode_meta_strings(names), len(pairs), *[x for p in pairs for x in p], *values]
        # one round trip; a version-1 dataset of that name is hidden by this one (read first) until deleted
        self._key_cmd(what, meta, "EVAL", PUT_DATASET, 1 + len(keys), meta, *keys, *args)

    def _get_reply(self, base: str, what: str) -> tuple[int, Any]:
        """(format version, GET_DATASET's reply) of the dataset at ``base``, or (0, None)."""
        meta = fmt.dataset_keys_v2(base)[0]
        reply = self._key_cmd(what, meta, "EVAL", GET_DATASET, 1, meta, *_FIELDS)
        if reply is not None:
            return 2, reply
        full = fmt.dataset_v1_name(base)
        reply = self._key_cmd(what, "{" + full + "}", "EVAL", GET_DATASET_V1, 2, *fmt.dataset_keys(full)[:2])
        return (1, reply) if reply is not None else (0, None)

    def _delete_v1(self, base: str, what: str) -> None:
        full = fmt.dataset_v1_name(base)
        self._key_cmd(what, "{" + full + "}", "EVAL", DELETE_DATASET_V1, 2, *fmt.dataset_keys(full)[:2])

    def get_dataset(self, name: str) -> Dataset:
        """The dataset ``name`` (one round trip; two for one written by simctl
        before format version 2)."""
        base = self._dataset_name(name, True, "get_dataset")
        version, reply = self._get_reply(base, "get_dataset")
        if reply is None:
            raise self._missing("get_dataset", "dataset", fmt.dataset_v1_name(base), name)
        return decode_dataset(name, base, reply, version)

    def delete_dataset(self, name: str) -> None:
        """Delete the dataset ``name`` with its tensors and metadata (nothing happens if there is none)."""
        base = self._dataset_name(name, True, "delete_dataset")
        meta = fmt.dataset_keys_v2(base)[0]
        self._key_cmd("delete_dataset", meta, "EVAL", DELETE_DATASET, 1, meta, *_FIELDS)
        self._delete_v1(base, "delete_dataset")

    def dataset_exists(self, name: str) -> bool:
        """Whether the dataset ``name`` exists."""
        base = self._dataset_name(name, True, "dataset_exists")
        meta = fmt.dataset_keys_v2(base)[0]
        if self._key_cmd("dataset_exists", meta, "HEXISTS", meta, fmt.DATASET_ACK_FIELD):
            return True
        full = "{" + fmt.dataset_v1_name(base) + "}"
        return bool(self._key_cmd("dataset_exists", full, "EXISTS", full))

    def poll_dataset(self, name: str, poll_frequency_ms: float, num_tries: int) -> bool:
        """Like :meth:`poll_key` for the dataset ``name``."""
        return poll(lambda: self.dataset_exists(name), poll_frequency_ms, num_tries, "poll_dataset")

    def copy_dataset(self, src_name: str, dest_name: str) -> None:
        """Copy the dataset ``src_name`` (read prefix) to ``dest_name`` (write prefix)."""
        dataset = self.get_dataset(src_name)
        self._put_dataset_as(self._dataset_name(dest_name, False, "copy_dataset"), dataset, "copy_dataset")

    def rename_dataset(self, old_name: str, new_name: str) -> None:
        """Move the dataset ``old_name`` (read prefix) to ``new_name`` (write prefix)."""
        src = self._dataset_name(old_name, True, "rename_dataset")
        dest = self._dataset_name(new_name, False, "rename_dataset")
        if src == dest:
            if not self.dataset_exists(old_name):
                raise self._missing("rename_dataset", "dataset", fmt.dataset_v1_name(src), old_name)
            return
        self._put_dataset_as(dest, self.get_dataset(old_name), "rename_dataset")
        self.delete_dataset(old_name)

    # -- aggregation lists --------------------------------------------------------------------

    def append_to_list(self, list_name: str, dataset: Dataset) -> None:
        """Append ``dataset`` (already put, with this client's write prefix) to the list ``list_name``."""
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"append_to_list: dataset must be a Dataset, got {type(dataset).__name__}")
        key = self._key("list", list_name, False, "append_to_list")
        base = self._dataset_name(dataset.name, False, "append_to_list")
        self._key_cmd("append_to_list", key, "RPUSH", key, base, kind="list")

    def delete_list(self, list_name: str) -> None:
        """Delete the list ``list_name`` (its datasets stay); a key that holds
        another kind is not deleted: KindError."""
        key = self._key("list", list_name, True, "delete_list")
        self._guarded("delete_list", keyspace.DELETE, [key], ["list"], "list")

    def copy_list(self, src_name: str, dest_name: str) -> None:
        """Copy the list ``src_name`` (read prefix) to ``dest_name`` (write prefix); the datasets are shared."""
        src = self._key("list", src_name, True, "copy_list", look=True)
        dest = self._key("list", dest_name, False, "copy_list")
        self._copy_key(src, dest, "copy_list", "list", src_name)

    def rename_list(self, src_name: str, dest_name: str) -> None:
        """Move the list ``src_name`` (read prefix) to ``dest_name`` (write prefix)."""
        src = self._key("list", src_name, True, "rename_list")
        dest = self._key("list", dest_name, False, "rename_list")
        self._rename_key(src, dest, "rename_list", "list", src_name)

    def get_list_length(self, list_name: str) -> int:
        """Number of datasets in the list (0 if there is no such list)."""
        key = self._key("list", list_name, True, "get_list_length", look=True)
        return int(self._key_cmd("get_list_length", key, "LLEN", key, kind="list"))

    def poll_list_length(self, name: str, list_length: int, poll_frequency_ms: float, num_tries: int) -> bool:
        """Poll until the list has exactly ``list_length`` datasets; False if it never did."""
        return self._poll_length(name, list_length, poll_frequency_ms, num_tries, "poll_list_length", int.__eq__)

    def poll_list_length_gte(self, name: str, list_length: int, poll_frequency_ms: float, num_tries: int) -> bool:
        """Poll until the list has at least ``list_length`` datasets; False if it never did."""
        return self._poll_length(name, list_length, poll_frequency_ms, num_tries, "poll_list_length_gte",
                                 int.__ge__)

    def poll_list_length_lte(self, name: str, list_length: int, poll_frequency_ms: float, num_tries: int) -> bool:
        """Poll until the list has at most ``list_length`` datasets; False if it never did."""
        return self._poll_length(name, list_length, poll_frequency_ms, num_tries, "poll_list_length_lte",
                                 int.__le__)

    def _poll_length(self, name: str, n: int, freq: float, tries: int, what: str,
                     test: Callable[[int, int], bool]) -> bool:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"{what}: list_length must be an int >= 0, got {n!r}")
        return poll(lambda: test(self.get_list_length(name), n), freq, tries, what)

    def get_datasets_from_list(self, list_name: str) -> list[Dataset]:
        """Every dataset in the list, in order."""
        return self._list_range(list_name, 0, -1, "get_datasets_from_list")

    def get_dataset_list_range(self, list_name: str, start_index: int, end_index: int) -> list[Dataset]:
        """The datasets at positions ``start_index`` to ``end_index`` (inclusive; negative
        counts from the end, as in Redis' LRANGE)."""
        for arg, v in (("start_index", start_index), ("end_index", end_index)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ConfigError(f"get_dataset_list_range: {arg} must be an int, got {v!r}")
        return self._list_range(list_name, start_index, end_index, "get_dataset_list_range")

    def _list_range(self, list_name: str, start: int, end: int, what: str) -> list[Dataset]:
        key = self._key("list", list_name, True, what, look=True)
        try:
            names = [n.decode("utf-8") for n in self._key_cmd(what, key, "LRANGE", key, start, end, kind="list")]
        except UnicodeDecodeError as exc:
            raise FormatError(f"{what}: list {key!r} holds an entry that is not a dataset name in UTF-8 "
                              f"({exc}); its entries are the names of datasets (see simctl.store.format)") from None
        if not names:
            return []

        def fetch() -> list[Any]:
            pipe = self._server.pipeline()
            for entry in names:  # a version-2 entry is the key base '<P>{<d>}', a version-1 one the name F
                if "{" in entry:
                    meta = fmt.dataset_keys_v2(entry)[0]
                    pipe.execute_command("EVAL", GET_DATASET, 1, meta, *_FIELDS)
                else:
                    pipe.execute_command("EVAL", GET_DATASET_V1, 2, *fmt.dataset_keys(entry)[:2])
            return pipe.execute()  # type: ignore[no-any-return]

        out = []
        for entry, reply in zip(names, self._call(f"{what} {key!r}", fetch)):
            if reply is None:
                raise StoreKeyError(f"{what}: list {key!r} names dataset {fmt.dataset_v1_name(entry)!r}, which is not "
                                    "in the store")
            name = fmt.dataset_v1_name(entry) if "{" in entry else entry
            out.append(decode_dataset(name, entry, reply, 2 if "{" in entry else 1))
        return out


def decode_dataset(name: str, base: str, reply: list[Any], version: int = 2) -> Dataset:
    """The dataset ``name`` (key base ``base``, or the name F of a version-1
    dataset) from :data:`GET_DATASET`'s (or :data:`GET_DATASET_V1`'s) reply."""
    if version == 1:
        return _decode_v1(name, base if "{" not in base else fmt.dataset_v1_name(base), reply)
    what = f"get_dataset {fmt.dataset_v1_name(base)!r}"
    fields = {bytes(k): v for k, v in zip(reply[0][::2], reply[0][1::2])}
    try:
        names = fmt.parse_tensor_names(fields.get(fmt.DATASET_TENSOR_NAMES.encode()))
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    meta = {k: v for k, v in fields.items() if not k.startswith(b".")}
    return _decoded(name, what, names, reply[1:], meta, fmt.dataset_keys_v2(base)[0])


def _decode_v1(name: str, full: str, reply: list[Any]) -> Dataset:
    what = f"get_dataset {full!r}"
    try:
        names = fmt.parse_dataset_ack(reply[0])
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    meta = {bytes(k): v for k, v in zip(reply[1][::2], reply[1][1::2])}
    return _decoded(name, what, names, reply[2:], meta, fmt.dataset_keys(full)[1])


def _decoded(name: str, what: str, names: list[str], values: list[Any], meta: dict[bytes, Any],
             meta_key: str) -> Dataset:
    if len(values) != len(names) or any(v is None for v in values):
        missing = [t for t, v in zip(names, values) if v is None]
        raise FormatError(f"{what}: damaged: tensors {missing or names} are listed but not stored")
    tensors = {t: decode_value(v, f"{what} tensor {t!r}") for t, v in zip(names, values)}
    try:
        scalars, strings = fmt.decode_meta(meta)
    except FormatError as exc:
        raise FormatError(f"{what}: metadata {meta_key!r}: {exc}") from None
    return Dataset._from_stored(name, tensors, scalars, strings)
