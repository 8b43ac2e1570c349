"""Datasets in format 2, SmartRedis's layout (issue 19): the metadata hash
``<P>{<d>}.meta`` holds the acknowledgement (``.COMPLETE``) and the tensor names,
each tensor is ``<P>{<d>}.<t>``, so a script's input may name a dataset's
tensor as SmartRedis users do; datasets written in format 1 (``{F}``,
``{F}.meta``, ``{F}.tensor.<t>``) are still read, listed and deleted.
Real stores (the session's one server and 3-shard cluster) with their inference workers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from _store_helpers import raw_keys

from simctl.store import Client, Dataset, format as fmt
from simctl.store.base import encode_value


@pytest.fixture(scope="module", params=[1, 3], ids=["standalone", "cluster"])
def store(request: pytest.FixtureRequest, stores: Any) -> Any:
    return stores.orchestrator(request.param).db


@pytest.fixture
def client(store: Any) -> Iterator[Client]:
    c = store.client()
    c.flush_db()
    yield c
    c.close()


def _dataset(name: str) -> Dataset:
    ds = Dataset(name)
    ds.add_tensor("x", np.arange(6, dtype=np.float64).reshape(2, 3))
    ds.add_meta_string("who", "me")
    ds.add_meta_scalar("step", 7)
    return ds


def test_the_layout_is_smartredis_s(client: Client) -> None:
    client.put_dataset(_dataset("ds"))
    assert raw_keys(client) == {"{ds}.meta", "{ds}.x"}
    fields = client._one("{ds}.meta", "HGETALL", "{ds}.meta")
    fields = dict(zip(fields[::2], fields[1::2])) if isinstance(fields, list) else fields  # RESP2 or redis-py
    assert fields[b".COMPLETE"] == b"1" and fields[b".tensor_names"] == b'["x"]'
    assert set(fields) == {b".COMPLETE", b".tensor_names", b"t:who", b"s:step"}
    assert fmt.decode_tensor(client._one("{ds}.x", "GET", "{ds}.x")).tolist() == [[0, 1, 2], [3, 4, 5]]
    if client.is_cluster:
        assert len({client._r.keyslot(k) for k in raw_keys(client)}) == 1


def test_a_script_whose_input_names_a_dataset_s_tensor(store: Any, client: Client,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    client.set_script("s", "def negate(x):\n\treturn torch.neg(x)\n")
    client.put_dataset(_dataset("ds"))
    client.run_script("s", "negate", ["{ds}.x"], ["nx"])  # as a SmartRedis user names it
    assert client.get_tensor("nx").tolist() == [[0, -1, -2], [-3, -4, -5]]
    # with key prefixing the dataset's tensor and the input name meet at '<prefix>.{ds}.x', as in SmartRedis
    monkeypatch.setenv("SSKEYOUT", "member_0")
    monkeypatch.setenv("SSKEYIN", "member_0")
    member = store.client()
    try:
        member.put_dataset(_dataset("ds"))
        assert {"member_0.{ds}.meta", "member_0.{ds}.x"} <= raw_keys(client)
        member.run_script("s", "negate", ["{ds}.x"], ["nx"])
        assert member.get_tensor("nx").tolist() == [[0, -1, -2], [-3, -4, -5]]
        assert member.get_dataset("ds").get_meta_strings("who") == ["me"]
    finally:
        member.close()


def _put_v1(client: Client, full: str) -> None:
    """A dataset as simctl wrote it before format 2."""
    ack, meta, stem = fmt.dataset_keys(full)
    value = encode_value(np.arange(3.0), "t")
    client._one(ack, "SET", stem + "t", value if isinstance(value, bytes) else b"".join(bytes(p) for p in value))
    client._one(ack, "HSET", meta, "t:who", fmt.encode_meta_strings(["old"]))
    client._one(ack, "SET", ack, fmt.dataset_ack(["t"]))


def test_datasets_in_the_old_layout_are_still_read_listed_and_deleted(client: Client) -> None:
    _put_v1(client, "old")
    assert client.dataset_exists("old")
    got = client.get_dataset("old")
    assert got.get_tensor("t").tolist() == [0.0, 1.0, 2.0] and got.get_meta_strings("who") == ["old"]
    client._one("runs", "RPUSH", "runs", "old")  # a format-1 list entry is the name
    client.put_dataset(_dataset("new"))
    client.append_to_list("runs", client.get_dataset("new"))
    assert client._one("runs", "LRANGE", "runs", 0, -1) == [b"old", b"{new}"]  # format 2: the key base
    assert [d.name for d in client.get_datasets_from_list("runs")] == ["old", "new"]
    client.copy_dataset("old", "copied")  # copied into format 2
    assert {"{copied}.meta", "{copied}.t"} <= raw_keys(client)
    # a format-2 dataset of the same name hides the old one; deleting removes both
    client.put_dataset(_dataset("old"))
    assert client.get_dataset("old").get_tensor_names() == ["x"]
    client.delete_dataset("old")
    assert not client.dataset_exists("old") and not any("old" in k for k in raw_keys(client))
    _put_v1(client, "gone")
    client.delete_dataset("gone")
    assert not any("gone" in k for k in raw_keys(client))
