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

PUT_DATASET = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, ack = pcall(cjson.decode, old)
  if ok and type(ack) == 'table' and type(ack.tensors) == 'table' then
    for _, t in ipairs(ack.tensors) do redis.call('DEL', KEYS[1] .. '.tensor.' .. t) end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
local n = tonumber(ARGV[2])
for i = 1, n do redis.call('HSET', KEYS[2], ARGV[1 + 2 * i], ARGV[2 + 2 * i]) end
for i = 3, #KEYS do redis.call('SET', KEYS[i], ARGV[i + 2 * n]) end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

GET_DATASET = """
local ack = redis.call('GET', KEYS[1])
if not ack then return false end
local out = {ack, redis.call('HGETALL', KEYS[2])}
local ok, d = pcall(cjson.decode, ack)
if ok and type(d) == 'table' and type(d.tensors) == 'table' then
  for _, t in ipairs(d.tensors) do out[#out + 1] = redis.call('GET', KEYS[1] .. '.tensor.' .. t) end
end
return out
"""

DELETE_DATASET = """
local old = redis.call('GET', KEYS[1])
if old then
  local ok, ack = pcall(cjson.decode, old)
  if ok and type(ack) == 'table' and type(ack.tensors) == 'table' then
    for _, t in ipairs(ack.tensors) do redis.call('DEL', KEYS[1] .. '.tensor.' .. t) end
  end
end
return redis.call('DEL', KEYS[1], KEYS[2])
"""


class DatasetCommands(ClientBase):
    """Datasets and aggregation lists (lists of dataset names)."""

    # -- datasets ---------------------------------------------------------------------------

    def _dataset_name(self, name: str, read: bool, what: str) -> str:
        full = self._key("dataset", name, read, what)
        check_length(fmt.dataset_keys(full)[2], what)
        return full

    def put_dataset(self, dataset: Dataset) -> None:
        """Store ``dataset`` (its tensors and metadata) atomically, replacing any
        dataset of that name; one round trip."""
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"put_dataset: dataset must be a Dataset, got {type(dataset).__name__}")
        self._put_dataset_as(self._dataset_name(dataset.name, False, "put_dataset"), dataset, "put_dataset")

    def _put_dataset_as(self, full: str, dataset: Dataset, what: str) -> None:
        ack, meta, stem = fmt.dataset_keys(full)
        names = dataset.get_tensor_names()
        keys = [stem + t for t in names]
        for k in keys:
            check_length(k, what)
        values = [encode_value(dataset.get_tensor(t), f"{what}({dataset.name!r}): tensor {t!r}") for t in names]
        pairs = dataset._meta_items()
        args = [fmt.dataset_ack(names), len(pairs), *[x for p in pairs for x in p], *values]
        self._key_cmd(what, ack, "EVAL", PUT_DATASET, 2 + len(keys), ack, meta, *keys, *args)

    def get_dataset(self, name: str) -> Dataset:
        """The dataset ``name`` (one round trip)."""
        full = self._dataset_name(name, True, "get_dataset")
        reply = self._key_cmd("get_dataset", "{" + full + "}", "EVAL", GET_DATASET, 2, *fmt.dataset_keys(full)[:2])
        if reply is None:
            raise self._missing("get_dataset", "dataset", full, name)
        return decode_dataset(name, full, reply)

    def delete_dataset(self, name: str) -> None:
        """Delete the dataset ``name`` with its tensors and metadata (nothing happens if there is none)."""
        full = self._dataset_name(name, True, "delete_dataset")
        self._key_cmd("delete_dataset", "{" + full + "}", "EVAL", DELETE_DATASET, 2, *fmt.dataset_keys(full)[:2])

    def dataset_exists(self, name: str) -> bool:
        """Whether the dataset ``name`` exists."""
        full = self._dataset_name(name, True, "dataset_exists")
        return bool(self._key_cmd("dataset_exists", "{" + full + "}", "EXISTS", "{" + full + "}"))

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
                raise self._missing("rename_dataset", "dataset", src, old_name)
            return
        self._put_dataset_as(dest, self.get_dataset(old_name), "rename_dataset")
        self._key_cmd("rename_dataset", "{" + src + "}", "EVAL", DELETE_DATASET, 2, *fmt.dataset_keys(src)[:2])

    # -- aggregation lists --------------------------------------------------------------------

    def append_to_list(self, list_name: str, dataset: Dataset) -> None:
        """Append ``dataset`` (already put, with this client's write prefix) to the list ``list_name``."""
        if not isinstance(dataset, Dataset):
            raise ConfigError(f"append_to_list: dataset must be a Dataset, got {type(dataset).__name__}")
        key = self._key("list", list_name, False, "append_to_list")
        full = self._dataset_name(dataset.name, False, "append_to_list")
        self._key_cmd("append_to_list", key, "RPUSH", key, full, kind="list")

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
            for full in names:
                pipe.execute_command("EVAL", GET_DATASET, 2, *fmt.dataset_keys(full)[:2])
            return pipe.execute()  # type: ignore[no-any-return]

        out = []
        for full, reply in zip(names, self._call(f"{what} {key!r}", fetch)):
            if reply is None:
                raise StoreKeyError(f"{what}: list {key!r} names dataset {full!r}, which is not in the store")
            out.append(decode_dataset(full, full, reply))
        return out


def decode_dataset(name: str, full: str, reply: list[Any]) -> Dataset:
    """The dataset ``name`` (key ``full``) from :data:`GET_DATASET`'s reply."""
    what = f"get_dataset {full!r}"
    try:
        names = fmt.parse_dataset_ack(reply[0])
    except FormatError as exc:
        raise FormatError(f"{what}: {exc}") from None
    values = reply[2:]
    if len(values) != len(names) or any(v is None for v in values):
        missing = [t for t, v in zip(names, values) if v is None]
        raise FormatError(f"{what}: damaged: tensors {missing or names} are listed but not stored")
    meta = {bytes(k): v for k, v in zip(reply[1][::2], reply[1][1::2])}
    tensors = {t: decode_value(v, f"{what} tensor {t!r}") for t, v in zip(names, values)}
    try:
        scalars, strings = fmt.decode_meta(meta)
    except FormatError as exc:
        raise FormatError(f"{what}: metadata {fmt.dataset_keys(full)[1]!r}: {exc}") from None
    return Dataset._from_stored(name, tensors, scalars, strings)
