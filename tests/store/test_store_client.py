"""The feature store client (simctl.store) against real redis-server processes:
a password-protected single server and a 3-shard Redis Cluster, the session's
(tests/store/conftest.py: ``client`` is the one of this parametrization, on an
empty store), and private ones for the tests that kill or freeze theirs."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _paths import REPO
from _store_helpers import (
    PASSWORD,
    REDIS_SERVER,
    STORE_ENV,
    Server,
    cluster_address,
    free_ports,
    make_client,
    raw_keys,
    start_cluster,
)
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from simctl import ConfigError
from simctl.store import (
    Client,
    Dataset,
    FormatError,
    KindError,
    LLDebug,
    LLDeveloper,
    LLInfo,
    LLQuiet,
    StoreConnectionError,
    StoreKeyError,
    format as fmt,
    log_data,
)

#: every numeric numpy dtype, in each byte order
NUMERIC = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
           np.float16, np.float32, np.float64, np.longdouble, np.complex64, np.complex128, np.clongdouble]
DTYPES = sorted({np.dtype(t).newbyteorder(o) for t in NUMERIC for o in "<>"}, key=lambda d: d.str)

# a missing server FAILS these tests (scripts/setup.sh installs it), never skips them
assert os.path.exists(REDIS_SERVER), \
    f"{REDIS_SERVER} is missing: run bash scripts/setup.sh (apt-get install redis-server)"


# -- tensors -------------------------------------------------------------------------------


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Exactly the same: dtype (byte order included), shape and every bit."""
    return a.dtype.str == b.dtype.str and a.shape == b.shape and np.ascontiguousarray(a).tobytes() == \
        np.ascontiguousarray(b).tobytes()


@st.composite
def arrays(draw: Any) -> np.ndarray:
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))
    a = draw(hnp.arrays(dtype, shape))
    view = draw(st.sampled_from(["c", "fortran", "reversed", "strided"]))
    if view == "fortran":
        a = np.asfortranarray(a)
    elif view == "reversed" and a.ndim:
        a = a[::-1]
    elif view == "strided" and a.ndim:
        a = a[..., ::2]
    return a


@settings(max_examples=300)
@given(a=arrays())
def test_every_dtype_and_shape_round_trips_exactly(shared: Client, a: np.ndarray) -> None:
    shared.put_tensor("t", a)
    b = shared.get_tensor("t")
    assert same(a, b), (a.dtype, a.shape, b.dtype, b.shape)
    assert b.flags.writeable and b.flags.c_contiguous
    out = np.empty(a.shape, a.dtype.newbyteorder("S"))  # the other byte order: unpack swaps
    shared.unpack_tensor("t", out)
    assert np.array_equal(out, a, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.str)
def test_each_dtype_keeps_its_byte_order_and_values(client: Client, dtype: np.dtype) -> None:
    a = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    client.put_tensor("t", a)
    b = client.get_tensor("t")
    assert b.dtype.str == dtype.str and same(a, b)


def test_scalars_and_empty_tensors(client: Client) -> None:
    for a in (np.float64(2.5), np.array(7, dtype=">i4"), np.zeros((0,), np.float32), np.zeros((3, 0, 2), np.int8),
              np.array([], dtype=np.complex128)):
        client.put_tensor("t", a)
        b = client.get_tensor("t")
        assert same(np.asarray(a), b) and b.shape == np.shape(a)


def test_non_contiguous_and_large_inputs(client: Client) -> None:
    big = np.random.default_rng(1).random((700, 600))  # 3.4 MB: sent from the array's memory, read in one buffer
    views = {"transposed": big.T, "every other": big[::2, ::-3], "broadcast": np.broadcast_to(np.arange(5.0), (4, 5)),
             "large contiguous": big.astype(np.float32)}
    for name, a in views.items():
        client.put_tensor(name, a)
        b = client.get_tensor(name)
        assert same(a, b), name
        assert b.flags.writeable and b.flags.c_contiguous, name
        b[...] = 0  # ours to change
    owner = client.get_tensor("large contiguous")
    while isinstance(owner, memoryview) or isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base if isinstance(owner, np.ndarray) else owner.obj
    # received straight into its own buffer (an uninitialised numpy one, on the direct path), not copied
    assert isinstance(owner, (np.ndarray, bytearray)) and memoryview(owner).nbytes >= big.astype(np.float32).nbytes
    assert same(client.get_tensor("transposed"), big.T)


def test_one_command_per_put_and_per_get(client: Client, kind: str, request: pytest.FixtureRequest) -> None:
    """A put is one checking script (a small tensor: EVAL, whose Lua looks at the key and SETs it), or
    one SET under a temporary key and the script that renames it (a large one, not copied into Lua),
    sent in one write; a get is one GET. The second put looks at the tensor the first put there."""
    servers = [request.getfixturevalue("server")] if kind == "standalone" else request.getfixturevalue("cluster")
    puts = [{"cmdstat_evalsha": 1, "cmdstat_getrange": 1, "cmdstat_set": 1},
            {"cmdstat_evalsha": 1, "cmdstat_type": 1, "cmdstat_getrange": 1, "cmdstat_set": 1, "cmdstat_rename": 1,
             "cmdstat_persist": 1}]
    for other in ("warm{t}", "t"):  # each server has run the scripts once: EVALSHA finds them
        client.put_tensor(other, np.ones(1 << 20, np.float32))
        client.put_tensor(other, np.ones(1, np.float32))
        client.delete_tensor(other)
    for a, put in zip((np.ones(256, np.float32), np.ones(1 << 20, np.float32)), puts):
        def counts() -> dict[str, int]:
            out: dict[str, int] = {}
            for s in servers:
                for cmd, st_ in s.raw.info("commandstats").items():
                    out[cmd] = out.get(cmd, 0) + st_["calls"]
            return out

        before = counts()
        client.put_tensor("t", a)
        middle = counts()
        client.get_tensor("t")
        after = counts()
        diff1 = {k: middle[k] - before.get(k, 0) for k in middle if middle[k] != before.get(k, 0)}
        diff2 = {k: after[k] - middle.get(k, 0) for k in after if after[k] != middle.get(k, 0)}
        n = len(servers)  # each INFO call counts once per server
        assert diff1 == {**put, "cmdstat_info": n}
        assert diff2 == {"cmdstat_get": 1, "cmdstat_info": n}


def test_tensor_operations(client: Client) -> None:
    a = np.arange(10, dtype=np.int16)
    client.put_tensor("a", a)
    assert client.tensor_exists("a") and client.key_exists("a") and not client.tensor_exists("b")
    client.copy_tensor("a", "b")
    assert same(client.get_tensor("b"), a)
    client.rename_tensor("b", "c")
    assert not client.tensor_exists("b") and same(client.get_tensor("c"), a)
    client.rename_tensor("c", "c")
    assert same(client.get_tensor("c"), a)
    client.delete_tensor("c")
    client.delete_tensor("c")  # deleting what is not there is no error
    assert not client.tensor_exists("c")
    for op in (lambda: client.copy_tensor("nope", "x"), lambda: client.rename_tensor("nope", "x"),
               lambda: client.rename_tensor("nope", "nope")):
        with pytest.raises(StoreKeyError, match="'nope'"):
            op()
    assert not client.tensor_exists("x")


def test_copy_and_rename_across_cluster_slots(client: Client) -> None:
    """Keys that live on different shards are copied through the client."""
    if client.is_cluster:
        assert client._r.keyslot("k0") != client._r.keyslot("k1")
    a = np.arange(6.0).reshape(2, 3)
    client.put_tensor("k0", a)
    client.copy_tensor("k0", "k1")
    client.rename_tensor("k1", "k2")
    assert same(client.get_tensor("k2"), a) and same(client.get_tensor("k0"), a)
    assert not client.tensor_exists("k1")


def test_unpack_tensor_checks_its_result(client: Client) -> None:
    client.put_tensor("t", np.arange(6, dtype=np.float32).reshape(2, 3))
    out = np.zeros((2, 3), np.float32)
    client.unpack_tensor("t", out)
    assert out.tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(ConfigError, match=r"result is float64 of shape \(2, 3\).*float32"):
        client.unpack_tensor("t", np.zeros((2, 3)))
    with pytest.raises(ConfigError, match=r"shape \(3, 2\)"):
        client.unpack_tensor("t", np.zeros((3, 2), np.float32))
    with pytest.raises(ConfigError, match="writable numpy array"):
        client.unpack_tensor("t", [0, 0])
    with pytest.raises(StoreKeyError, match="'missing'"):
        client.unpack_tensor("missing", out)


# -- bad input: refused before anything is sent, nothing stored is lost ------------------------


@pytest.mark.parametrize("bad", [np.array(["a", "b"]), np.array([b"x"]), np.array([object()]),
                                 np.array(["2024-01-01"], dtype="datetime64[D]"), np.zeros(2, dtype="V4"),
                                 np.zeros(2, dtype=[("x", "f4"), ("y", "i4")]), ["text"]],
                         ids=["str", "bytes", "object", "datetime", "void", "structured", "list of str"])
def test_unsupported_dtype_names_it(client: Client, bad: Any) -> None:
    client.put_tensor("t", np.ones(3))
    dtype = np.asarray(bad).dtype
    with pytest.raises(ConfigError, match=f"dtype {__import__('re').escape(str(dtype))}"):
        client.put_tensor("t", bad)
    assert same(client.get_tensor("t"), np.ones(3))
    ds = Dataset("d")
    with pytest.raises(ConfigError, match="cannot be stored"):
        ds.add_tensor("x", bad)


def test_empty_and_over_long_keys(client: Client) -> None:
    client.put_tensor("kept", np.ones(2))
    for op in (lambda n: client.put_tensor(n, np.ones(1)), client.get_tensor, client.tensor_exists,
               client.delete_tensor, lambda n: client.poll_tensor(n, 1, 1), client.get_dataset,
               client.get_list_length, client.key_exists):
        with pytest.raises(ConfigError, match="non-empty string, got ''"):
            op("")
        with pytest.raises(ConfigError, match="at most 1024 bytes"):
            op("x" * 1025)
    with pytest.raises(ConfigError, match="non-empty string, got None"):
        client.put_tensor(None, np.ones(1))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Dataset name"):
        Dataset("")
    with pytest.raises(ConfigError, match="at most 1024 bytes"):  # the dataset's metadata key '{d...}.meta'
        client.get_dataset("d" * 1018)
    assert raw_keys(client) == {"kept"}


def test_a_tensor_over_512_mib_is_refused_before_sending(client: Client, kind: str,
                                                         request: pytest.FixtureRequest) -> None:
    servers = [request.getfixturevalue("server")] if kind == "standalone" else request.getfixturevalue("cluster")
    client.put_tensor("t", np.arange(3))
    huge = np.broadcast_to(np.zeros(1, np.uint8), (2 ** 29 + 1,))  # 512 MiB + 1 byte, no memory behind it

    def received() -> int:
        return sum(s.raw.info("stats")["total_net_input_bytes"] for s in servers)

    before = received()
    with pytest.raises(ConfigError, match=r"at most 536870912 bytes \(512 MiB"):
        client.put_tensor("t", huge)
    assert received() - before < 10_000  # only the INFO commands themselves
    with pytest.raises(ConfigError, match="512 MiB"):
        ds = Dataset("d")
        ds.add_tensor("x", np.zeros(1))
        ds._tensors["x"] = huge  # a dataset is checked the same way
        client.put_dataset(ds)
    assert same(client.get_tensor("t"), np.arange(3)) and not client.dataset_exists("d")


def test_a_value_that_is_not_a_tensor(client: Client) -> None:
    r = client._r
    r.execute_command("SET", "text", "hello")
    r.execute_command("SET", "future", b"SMT2" + bytes(12))
    r.execute_command("RPUSH", "alist", "x")
    with pytest.raises(FormatError, match="'text'.*not a simctl tensor"):
        client.get_tensor("text")
    with pytest.raises(FormatError, match="b'SMT2'; this version of simctl reads b'SMT1'"):
        client.get_tensor("future")
    with pytest.raises(KindError, match="get_tensor: key 'alist' holds an aggregation list, not a tensor"):
        client.get_tensor("alist")
    good = fmt.tensor_bytes(np.arange(4, dtype=np.int32))
    r.execute_command("SET", "cut", good[:-1])
    with pytest.raises(FormatError, match="damaged"):
        client.get_tensor("cut")


# -- the documented format, read and written by hand (as another language would) --------------


def test_format_written_by_hand_is_read() -> None:
    shape, dtype = (2, 3), b">i2"
    head = struct.pack("<4sBBH", b"SMT1", len(shape), len(dtype), 32) + struct.pack("<2Q", *shape) + dtype
    value = head + bytes(32 - len(head)) + np.arange(6, dtype=">i2").tobytes()
    a = fmt.decode_tensor(value)
    assert a.dtype.str == ">i2" and a.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_format_as_documented(client: Client) -> None:
    """The bytes and keys the client writes are those the module docstring describes."""
    client.put_tensor("t", np.array([[1.5, 2.5]], dtype="<f8"))
    value = client._r.execute_command("GET", "t")
    magic, ndim, dlen, offset = struct.unpack_from("<4sBBH", value)
    assert (magic, ndim, dlen, offset) == (b"SMT1", 2, 3, 32)
    assert struct.unpack_from("<2Q", value, 8) == (1, 2) and value[24:27] == b"<f8"
    assert value[27:32] == bytes(5) and np.frombuffer(value[32:], "<f8").tolist() == [1.5, 2.5]
    assert fmt.parse_header(value[:fmt.MAX_HEADER_BYTES]) == (np.dtype("<f8"), (1, 2), 32)

    ds = Dataset("d")
    ds.add_tensor("x", np.arange(3, dtype=np.uint8))
    ds.add_meta_scalar("n", 4)
    ds.add_meta_string("who", "me")
    client.put_dataset(ds)
    assert raw_keys(client) >= {"{d}.meta", "{d}.x"}  # format 2: SmartRedis's layout
    meta = client._r.execute_command("HGETALL", "{d}.meta")
    meta = dict(zip(meta[::2], meta[1::2])) if isinstance(meta, list) else meta
    assert meta[b".COMPLETE"] == b"1" and json.loads(meta[b".tensor_names"]) == ["x"]
    assert json.loads(meta[b"t:who"]) == ["me"] and fmt.decode_tensor(meta[b"s:n"]).tolist() == [4]
    assert fmt.decode_tensor(client._r.execute_command("GET", "{d}.x")).tolist() == [0, 1, 2]


def test_dataset_written_by_hand_is_read(client: Client) -> None:
    r = client._r
    r.execute_command("SET", "{hand}.tensor.v", fmt.tensor_bytes(np.arange(4, dtype=">f4")))
    r.execute_command("HSET", "{hand}.meta", "s:step", fmt.tensor_bytes(np.array([3, 4], "<i4")),
                      "t:note", json.dumps(["é"]))
    r.execute_command("SET", "{hand}", json.dumps({"simctl": "dataset", "version": 1, "tensors": ["v"]}))
    ds = client.get_dataset("hand")
    assert ds.get_tensor("v").dtype.str == ">f4" and ds.get_meta_scalars("step").tolist() == [3, 4]
    assert ds.get_meta_strings("note") == ["é"]


# -- datasets ------------------------------------------------------------------------------


def make_dataset(name: str) -> Dataset:
    ds = Dataset(name)
    ds.add_tensor("u", np.arange(12, dtype=">u2").reshape(3, 4))
    ds.add_tensor("big", np.linspace(0, 1, 200_000))  # over the direct-read size
    ds.add_tensor("scalar", np.complex64(1 + 2j))
    ds.add_meta_scalar("step", 1)
    ds.add_meta_scalar("step", 2)
    ds.add_meta_scalar("dt", np.float32(0.5))
    ds.add_meta_scalar("big", np.uint64(2 ** 63 + 5))
    ds.add_meta_string("label", "first")
    ds.add_meta_string("label", "sécond")
    return ds


def check_dataset(ds: Dataset, name: str) -> None:
    ref = make_dataset(name)
    assert ds.get_name() == name and ds.get_tensor_names() == ref.get_tensor_names()
    for t in ref.get_tensor_names():
        assert same(ds.get_tensor(t), ref.get_tensor(t)), t
    assert ds.get_meta_scalars("step").tolist() == [1, 2] and ds.get_meta_scalars("step").dtype == np.int64
    assert ds.get_meta_scalars("dt").dtype == np.float32
    assert ds.get_meta_scalars("big").tolist() == [2 ** 63 + 5] and ds.get_meta_scalars("big").dtype == np.uint64
    assert ds.get_meta_strings("label") == ["first", "sécond"]
    assert sorted(ds.get_metadata_field_names()) == ["big", "dt", "label", "step"]


def test_dataset_round_trip_with_metadata(client: Client) -> None:
    client.put_dataset(make_dataset("d"))
    assert client.dataset_exists("d") and not client.dataset_exists("e")
    check_dataset(client.get_dataset("d"), "d")
    with pytest.raises(StoreKeyError, match="no dataset 'e'"):
        client.get_dataset("e")


def test_dataset_keys_share_one_cluster_slot(client: Client) -> None:
    for name in ("d", "a.b", "p-q r", "é.ü"):
        client.put_dataset(make_dataset(name))
        keys = [k for k in raw_keys(client) if k.startswith("{" + name)]
        assert len(keys) == 1 + 3, keys  # the metadata (with the acknowledgement), three tensors (format 2)
        if client.is_cluster:
            assert len({client._r.keyslot(k) for k in keys}) == 1, keys
        check_dataset(client.get_dataset(name), name)


def test_replacing_and_deleting_a_dataset_leaves_nothing_behind(client: Client) -> None:
    client.put_dataset(make_dataset("d"))
    small = Dataset("d")
    small.add_tensor("only", np.ones(2))
    client.put_dataset(small)
    assert raw_keys(client) == {"{d}.meta", "{d}.only"}  # the old tensors and metadata fields are gone
    assert set(client._one("{d}.meta", "HKEYS", "{d}.meta")) == {b".tensor_names", b".COMPLETE"}
    got = client.get_dataset("d")
    assert got.get_tensor_names() == ["only"] and got.get_metadata_field_names() == []
    client.delete_dataset("d")
    client.delete_dataset("d")
    assert raw_keys(client) == set() and not client.dataset_exists("d")


def test_copy_and_rename_dataset(client: Client) -> None:
    client.put_dataset(make_dataset("d"))
    client.copy_dataset("d", "e")
    check_dataset(client.get_dataset("e"), "e")
    client.rename_dataset("e", "f")
    assert not client.dataset_exists("e") and not any(k.startswith("{e}") for k in raw_keys(client))
    check_dataset(client.get_dataset("f"), "f")
    check_dataset(client.get_dataset("d"), "d")
    with pytest.raises(StoreKeyError, match="'nope'"):
        client.copy_dataset("nope", "x")
    with pytest.raises(StoreKeyError, match="'nope'"):
        client.rename_dataset("nope", "nope")


def test_dataset_object_checks() -> None:
    ds = Dataset("d")
    ds.add_meta_scalar("i", np.int32(3))
    ds.add_meta_scalar("i", 4)
    with pytest.raises(ConfigError, match="does not fit the field's type int32"):
        ds.add_meta_scalar("i", 2 ** 40)
    with pytest.raises(ConfigError, match="does not fit"):
        ds.add_meta_scalar("i", 1.5)
    ds.add_meta_scalar("f", 1.0)
    ds.add_meta_scalar("f", 7)  # an int in a float field
    assert ds.get_meta_scalars("f").tolist() == [1.0, 7.0]
    with pytest.raises(ConfigError, match="int16 is not accepted"):
        ds.add_meta_scalar("s", np.int16(1))
    with pytest.raises(ConfigError, match="one int or float"):
        ds.add_meta_scalar("s", [1, 2])
    with pytest.raises(ConfigError, match="one int or float"):
        ds.add_meta_scalar("s", True)
    with pytest.raises(ConfigError, match="already a scalar field"):
        ds.add_meta_string("i", "x")
    with pytest.raises(ConfigError, match="must be a str"):
        ds.add_meta_string("t", 5)  # type: ignore[arg-type]
    with pytest.raises(StoreKeyError, match="no string metadata field 'nope'"):
        ds.get_meta_strings("nope")
    with pytest.raises(StoreKeyError, match="no tensor 'nope'"):
        ds.get_tensor("nope")
    a = np.zeros(3)
    ds.add_tensor("a", a)
    a[0] = 9  # the dataset kept a copy
    assert ds.get_tensor("a")[0] == 0


# -- aggregation lists -------------------------------------------------------------------------


def test_aggregation_lists(client: Client) -> None:
    names = [f"ds{i}" for i in range(6)]
    for n in names:
        ds = Dataset(n)
        ds.add_tensor("v", np.full(3, int(n[2:])))
        ds.add_tensor("big", np.full(200_000, int(n[2:])))  # large replies inside one pipeline
        client.put_dataset(ds)
        client.append_to_list("L", ds)
    if client.is_cluster:  # the datasets really are spread over the shards
        nodes = {client._r.get_node_from_key("{" + n + "}").name for n in names}
        assert len(nodes) > 1
    assert client.get_list_length("L") == 6 and client.get_list_length("none") == 0
    got = client.get_datasets_from_list("L")
    assert [d.get_name() for d in got] == names and [int(d.get_tensor("v")[0]) for d in got] == list(range(6))
    assert all((d.get_tensor("big") == i).all() for i, d in enumerate(got))
    assert [d.get_name() for d in client.get_dataset_list_range("L", 1, 2)] == ["ds1", "ds2"]
    assert [d.get_name() for d in client.get_dataset_list_range("L", -2, -1)] == ["ds4", "ds5"]
    assert client.get_dataset_list_range("L", 10, 20) == []
    client.copy_list("L", "M")
    client.rename_list("M", "N")
    assert client.get_list_length("M") == 0 and client.get_list_length("N") == 6
    client.delete_list("N")
    assert client.get_list_length("N") == 0 and client.dataset_exists("ds0")  # datasets stay
    with pytest.raises(StoreKeyError, match="'nope'"):
        client.copy_list("nope", "x")
    client.delete_dataset("ds3")
    with pytest.raises(StoreKeyError, match="names dataset 'ds3', which is not in the store"):
        client.get_datasets_from_list("L")
    with pytest.raises(ConfigError, match="start_index must be an int"):
        client.get_dataset_list_range("L", "0", 1)  # type: ignore[arg-type]


def test_polls(client: Client) -> None:
    assert client.poll_tensor("t", 1, 3) is False
    assert client.poll_key("t", 0, 1) is False
    assert client.poll_dataset("d", 1, 2) is False
    assert client.poll_list_length("L", 2, 1, 2) is False
    assert client.poll_list_length_gte("L", 1, 1, 2) is False
    assert client.poll_list_length_lte("L", 0, 1, 2) is True

    def later() -> None:
        time.sleep(0.3)
        c = make_client(client.addresses)
        c.put_tensor("t", np.ones(1))
        ds = Dataset("d")
        c.put_dataset(ds)
        c.append_to_list("L", ds)
        c.append_to_list("L", ds)
        c.close()

    thread = threading.Thread(target=later)
    thread.start()
    try:
        assert client.poll_tensor("t", 20, 500) is True
        assert client.poll_key("t", 20, 500) is True
        assert client.poll_dataset("d", 20, 500) is True
        assert client.poll_list_length("L", 2, 20, 500) is True
    finally:
        thread.join()
    assert client.poll_list_length_gte("L", 1, 1, 1) and not client.poll_list_length_lte("L", 1, 1, 1)
    with pytest.raises(ConfigError, match="num_tries must be an int >= 1, got 0"):
        client.poll_tensor("t", 10, 0)
    with pytest.raises(ConfigError, match="poll_frequency_ms must be a number >= 0, got -1"):
        client.poll_tensor("t", -1, 1)
    with pytest.raises(ConfigError, match="list_length must be an int >= 0"):
        client.poll_list_length("L", -1, 1, 1)


# -- key prefixing -------------------------------------------------------------------------------

PRODUCER = """
from simctl import Client
from simctl.store import *
import numpy as np

# Initialize a Client
client = Client(cluster=False)

# Create NumPy array
array = np.array([1, 2, 3, 4])
# Use SmartRedis client to place tensor in single sharded db
client.put_tensor("tensor", array)
"""

CONSUMER = """
from simctl import Client
from simctl.store import *

# Initialize a Client
client = Client(cluster=False)

client.set_data_source("producer_0")
val1 = client.poll_tensor("tensor", 100, 100)

client.set_data_source("producer_1")
val2 = client.poll_tensor("tensor", 100, 100)

client.log_data(LLInfo, f"producer_0.tensor was found: {val1}")
client.log_data(LLInfo, f"producer_1.tensor was found: {val2}")
"""


def run_entity(script: str, address: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` as an entity would be run: the store in its environment."""
    full = {k: v for k, v in os.environ.items() if k not in STORE_ENV}
    full.update(SSDB=address, SSDB_PASSWORD=PASSWORD, **env)
    full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"),
                                                       os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-c", script], env=full, capture_output=True, text=True, cwd=tmp_path)


def test_ensemble_key_prefixing_example(client: Client, address: str, tmp_path: Path) -> None:
    """The Ensemble guide's example: two producers with SSKEYOUT, a consumer with SSKEYIN."""
    for name in ("producer_0", "producer_1"):
        proc = run_entity(PRODUCER, address, {"SSKEYOUT": name}, tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert raw_keys(client) == {"producer_0.tensor", "producer_1.tensor"}
    proc = run_entity(CONSUMER, address, {"SSKEYIN": "producer_0,producer_1"}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    for line, name in zip(lines, ("producer_0", "producer_1")):
        head, _, text = line.partition(":")
        assert head.startswith("Default@") and time.strptime(head[len("Default@"):], "%H-%M-%S")
        assert text == f"{name}.tensor was found: True"


def test_prefixes_apply_as_documented(client: Client) -> None:
    producer = make_client(client.addresses, env={"SSKEYOUT": "p0"})
    consumer = make_client(client.addresses, env={"SSKEYIN": "p0,p1", "SSKEYOUT": "me"})
    try:
        producer.put_tensor("t", np.ones(1))
        ds = Dataset("d")
        ds.add_tensor("x", np.ones(1))
        producer.put_dataset(ds)
        producer.append_to_list("L", ds)
        assert {"p0.t", "p0.{d}.meta", "p0.{d}.x", "p0.L"} <= raw_keys(client)
        assert not producer.tensor_exists("t")  # reads have no prefix until a data source is set
        producer.set_data_source("p0")  # its own name is allowed
        assert producer.tensor_exists("t")
        # the consumer reads from its first SSKEYIN entry by default
        assert same(consumer.get_tensor("t"), np.ones(1)) and consumer.dataset_exists("d")
        assert [d.get_name() for d in consumer.get_datasets_from_list("L")] == ["p0.d"]
        consumer.set_data_source("p1")
        with pytest.raises(StoreKeyError, match=r"no tensor 'p1\.t' in the store \(data source 'p1'\)"):
            consumer.get_tensor("t")
        with pytest.raises(ConfigError, match="'nobody' is not a registered data source; registered: 'p0', "
                                              "'p1', 'me'"):
            consumer.set_data_source("nobody")
        consumer.set_data_source("p0")
        consumer.copy_tensor("t", "mine")  # read with p0, written with me
        assert "me.mine" in raw_keys(client)
        consumer.use_tensor_ensemble_prefix(False)
        consumer.put_tensor("plain", np.ones(1))
        assert consumer.key_exists("plain") and not consumer.key_exists("me.plain")
        assert consumer.key_exists("p0.t")  # key_exists takes raw keys
        consumer.use_dataset_ensemble_prefix(False)
        # format 2 (SmartRedis's): p0's dataset d is 'p0.{d}'; the name 'p0.d' without a prefix is '{p0.d}'
        assert not consumer.dataset_exists("d") and not consumer.dataset_exists("p0.d")
        consumer.use_list_ensemble_prefix(False)
        assert consumer.get_list_length("p0.L") == 1
        consumer.use_model_ensemble_prefix(True)  # kept for ML models (next)
        assert consumer._use_prefix["model"] is True
    finally:
        producer.close()
        consumer.close()
    lone = make_client(client.addresses)
    with pytest.raises(ConfigError, match=r"registered: \(none: SSKEYIN and SSKEYOUT are unset\)"):
        lone.set_data_source("x")
    lone.close()


# -- logging -------------------------------------------------------------------------------------


def test_log_levels_and_destination(client: Client, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c = make_client(client.addresses, logger_name="sim")
    monkeypatch.delenv("SR_LOG_LEVEL", raising=False)
    monkeypatch.delenv("SR_LOG_FILE", raising=False)
    c.log_data(LLInfo, "info")
    c.log_data(LLDebug, "debug")
    log_data(LLInfo, "module")
    log_data("ctx", LLInfo, "with context")
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":", 1)[1] for line in out] == ["info", "module", "with context"]
    assert out[0].startswith("sim@") and out[1].startswith("Default@") and out[2].startswith("ctx@")
    monkeypatch.setenv("SR_LOG_LEVEL", "developer")
    c.log_data(LLDeveloper, "dev")
    monkeypatch.setenv("SR_LOG_LEVEL", "quiet")
    c.log_data(LLQuiet, "never")
    monkeypatch.setenv("SR_LOG_LEVEL", "debug")
    monkeypatch.setenv("SR_LOG_FILE", str(tmp_path / "log.txt"))
    c.log_data(LLDebug, "to file")
    assert [line.split(":", 1)[1] for line in capsys.readouterr().out.splitlines()] == ["dev"]
    assert (tmp_path / "log.txt").read_text().split(":", 1)[1] == "to file\n"
    with pytest.raises(ConfigError, match="level must be one of"):
        c.log_data(7, "x")
    with pytest.raises(ConfigError, match="log_data takes"):
        log_data("only one")
    c.close()


# -- connecting, standalone or cluster ---------------------------------------------------------


def test_connects_from_the_environment(address: str, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSDB", address)
    monkeypatch.setenv("SSDB_PASSWORD", PASSWORD)
    for cluster in (None, False, True):  # the server decides; the argument is accepted for compatibility
        c = Client(cluster=cluster)
        assert c.is_cluster is (kind == "cluster")
        c.put_tensor("env", np.arange(2))
        assert same(c.get_tensor("env"), np.arange(2))
        c.close()
    first = address.split(",")[0]
    with make_client(f"tcp://{first}") as c:  # the documents' spelling
        assert same(c.get_tensor("env"), np.arange(2))
    with Client(first) as c:  # the older Client(address, cluster) order
        assert same(c.get_tensor("env"), np.arange(2))
    if kind == "cluster":  # any one node is enough to find the others
        with Client(address=address.split(",")[1]) as c:
            assert c.is_cluster and same(c.get_tensor("env"), np.arange(2))


def test_driver_helpers(client: Client, kind: str, request: pytest.FixtureRequest) -> None:
    servers = [request.getfixturevalue("server")] if kind == "standalone" else request.getfixturevalue("cluster")
    infos = client.get_db_node_info()
    assert len(infos) == len(servers) and all(i["redis_version"].startswith("7.") for i in infos)
    first = servers[0].address
    assert len(client.get_db_node_info([first])) == 1
    client.config_set("maxmemory-policy", "allkeys-lru", first)
    assert client.config_get("maxmemory-policy", first) == {"maxmemory-policy": "allkeys-lru"}
    client.config_set("maxmemory-policy", "noeviction")
    assert all(s.raw.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction" for s in servers)
    for i in range(20):
        client.put_tensor(f"t{i}", np.ones(1))
    client.save()
    assert all((s.dir / "dump.rdb").exists() for s in servers)
    client.flush_db([first])
    assert 0 < len(raw_keys(client)) <= 20 if kind == "cluster" else raw_keys(client) == set()
    client.flush_db()
    assert raw_keys(client) == set()
    assert client.get_db_node_info(f"localhost:{servers[0].port}")  # another spelling of a known server
    with pytest.raises(ConfigError, match="'127.0.0.1:1' is not a server of this store; its servers are"):
        client.flush_db(["127.0.0.1:1"])


# -- faults --------------------------------------------------------------------------------------


def test_unix_socket(server: Server) -> None:
    with make_client(f"unix://{server.socket}") as c:
        assert not c.is_cluster
        big = np.arange(300_000, dtype=">i8")
        c.put_tensor("uds", big)
        assert same(c.get_tensor("uds"), big)
        assert c.get_db_node_info(f"unix://{server.socket}")[0]["tcp_port"] == server.port
        c.delete_tensor("uds")


def test_stale_cluster_slot_map_is_followed(tmp_path: Path) -> None:
    """A slot that moved after the client read the slot map: the client follows MOVED."""
    nodes = start_cluster(tmp_path)
    try:
        c = make_client(cluster_address(nodes))
        key = "moving"
        slot = c._r.keyslot(key)
        src = next(n for n in nodes if n.port == c._r.get_node_from_key(key).port)
        dst = next(n for n in nodes if n is not src)
        dst_id = dst.raw.execute_command("CLUSTER", "MYID").decode()
        for n in [dst] + [n for n in nodes if n is not dst]:
            n.raw.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        dst.raw.execute_command("CLUSTER", "BUMPEPOCH")
        assert c._r.get_node_from_key(key).port == src.port  # the client does not know yet
        c.put_tensor(key, np.arange(3))
        assert dst.raw.execute_command("EXISTS", key) == 1
        assert same(c.get_tensor(key), np.arange(3))
        assert c._r.get_node_from_key(key).port == dst.port
        c.close()
    finally:
        for n in nodes:
            n.kill()


def test_wrong_or_missing_password(server: Server) -> None:
    with pytest.raises(StoreConnectionError, match="the password was refused") as err:
        make_client(server.address, password="wrong-password")
    assert "wrong-password" not in str(err.value) and PASSWORD not in str(err.value)
    with pytest.raises(StoreConnectionError, match="no password was given"):
        make_client(server.address, password=None)


def test_wrong_password_on_a_cluster(cluster: list[Server]) -> None:
    with pytest.raises(StoreConnectionError, match="the password was refused"):
        make_client(cluster_address(cluster), password="nope")


def test_no_store_reachable() -> None:
    port = free_ports()
    with pytest.raises(StoreConnectionError, match=f"no store answered at 127.0.0.1:{port}.*Is it running"):
        make_client(f"127.0.0.1:{port}")
    with pytest.raises(ConfigError, match="SSDB is not set"):
        make_client(None)
    with pytest.raises(ConfigError, match="not host:port"):
        make_client("localhost")


def test_several_addresses_that_are_not_a_cluster(server: Server) -> None:
    with pytest.raises(ConfigError, match="is not a Redis Cluster; give one address"):
        make_client(f"{server.address},{server.address}")


def test_store_killed_under_a_running_client(tmp_path: Path) -> None:
    s = Server(tmp_path)
    try:
        c = make_client(s.address)
        c.put_tensor("t", np.ones(4))
    finally:
        s.kill()
    with pytest.raises(StoreConnectionError, match=f"get_tensor 't': lost the store at {s.address}"):
        c.get_tensor("t")
    with pytest.raises(StoreConnectionError, match="lost the store"):
        c.put_tensor("t", np.ones(1 << 20))
    with pytest.raises(StoreConnectionError):
        c.poll_tensor("t", 10, 1000)  # a poll does not spin on a dead store
    c.close()


def test_store_frozen_under_a_running_client(tmp_path: Path) -> None:
    """A store that stops answering is an error after command_timeout (the older name of timeout), not a
    hang (tests/store/test_store_waits.py has the rest)."""
    s = Server(tmp_path)
    try:
        c = make_client(s.address, command_timeout=0.5)
        c.put_tensor("t", np.ones(4))
        os.kill(s.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreConnectionError, match=r"did not answer within 0\.5 s.*Timeout"):
                c.get_tensor("t")
        finally:
            os.kill(s.proc.pid, signal.SIGCONT)
        c.close()
    finally:
        s.kill()


def test_cluster_shard_killed_under_a_running_client(tmp_path: Path) -> None:
    nodes = start_cluster(tmp_path)
    try:
        c = make_client(cluster_address(nodes))
        keys = {c._r.get_node_from_key(f"k{i}").port: f"k{i}" for i in range(50)}
        for k in keys.values():
            c.put_tensor(k, np.ones(2))
        nodes[1].kill()
        with pytest.raises(StoreConnectionError, match=f"get_tensor '{keys[nodes[1].port]}': lost the store"):
            c.get_tensor(keys[nodes[1].port])
        c.close()
    finally:
        for n in nodes:
            n.kill()


# -- import cost -----------------------------------------------------------------------------


def test_import_simctl_stays_light() -> None:
    code = ("import sys, simctl; light = 'redis' not in sys.modules and 'numpy' not in sys.modules; "
            "from simctl import Client, Dataset; import simctl.store as s; "
            "print(light, Client is s.Client, Dataset is s.Dataset, 'Client' in simctl.__all__)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"),
                                                                     os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.split() == ["True", "True", "True", "True"], out.stderr
