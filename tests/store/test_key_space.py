"""Issue 16: the typed key space. Tensors, datasets, models, scripts and
aggregation lists cannot overwrite, delete or rename each other; simctl's own
keys are out of the users' reach; a dataset name works on one server and on a
cluster alike, or is refused alike. Each case failed on main before.

Against the session's bare servers (one server and a 3-shard cluster, each
test on an emptied store): the refusals are the client's and the server's
(the checking scripts), no inference worker is needed."""

from __future__ import annotations

import numpy as np
import pytest
from _store_helpers import make_client, raw_keys

from simctl import ConfigError
from simctl.store import Client, Dataset, FormatError, KindError

SCRIPT = "def neg(x):\n    return -x\n"


def dataset(name: str = "ds") -> Dataset:
    ds = Dataset(name)
    ds.add_tensor("t", np.arange(4.0))
    ds.add_meta_string("who", "me")
    return ds


def intact(client: Client, name: str = "ds") -> None:
    got = client.get_dataset(name)
    assert got.get_tensor("t").tolist() == [0.0, 1.0, 2.0, 3.0] and got.get_meta_strings("who") == ["me"]


def test_a_datasets_keys_are_not_a_tensors(client: Client) -> None:
    client.put_dataset(dataset())
    for key in ("{ds}.tensor.t", "{ds}", "{ds}.meta"):
        with pytest.raises(ConfigError, match=r"put_tensor: tensor key '{ds}.*' has the form of dataset "
                                              r"'ds''s keys"):
            client.put_tensor(key, np.zeros(1))
        with pytest.raises(ConfigError, match="delete_tensor: tensor key .* has the form of dataset 'ds'"):
            client.delete_tensor(key)
        with pytest.raises(ConfigError, match="run_model.*tensor key .* has the form of dataset 'ds'"):
            client.run_model("m", "x", key)  # refused before any request is sent
        with pytest.raises(ConfigError, match="rename_tensor: tensor key .* has the form of dataset"):
            client.rename_tensor("x", key)
        with pytest.raises(ConfigError, match="set_model.*model or script key .* has the form of dataset"):
            client.set_model(key, b"m", "ONNX")
        with pytest.raises(ConfigError, match="rename_list: list key .* has the form of dataset"):
            client.rename_list("l", key)
    intact(client)
    # a dataset's tensor is SmartRedis's '{ds}.t' (format 2): read as a tensor, as a script's input names it
    assert client.get_tensor("{ds}.t").tolist() == [0.0, 1.0, 2.0, 3.0]  # reading one is harmless
    assert client.tensor_exists("{ds}.t")
    client.copy_tensor("{ds}.t", "{ds}.mine")
    client.put_tensor("{ds}.other", np.ones(1))  # a hash tag of one's own stays usable
    client.put_tensor("{ds}.tensorx", np.ones(1))
    intact(client)


def test_a_tensor_does_not_replace_or_delete_a_model_script_or_list(client: Client) -> None:
    client.set_script("neg", SCRIPT)
    client.set_model("net", b"MODEL", "ONNX")
    client.put_dataset(dataset())
    client.append_to_list("runs", dataset())
    for key, what in (("neg", r"a script \(or function\)"), ("net", "an ML model"), ("runs", "an aggregation list")):
        for value in (np.zeros(3), np.zeros(1 << 18)):  # small: one script; large: a temporary key renamed
            with pytest.raises(KindError, match=rf"put_tensor: key '{key}' holds {what}, not a tensor; .* "
                                                r"delete it first \(delete_\w+\(\) deletes it\)"):
                client.put_tensor(key, value)
        with pytest.raises(KindError, match=f"delete_tensor: key '{key}' holds {what}, not a tensor"):
            client.delete_tensor(key)
        assert not client.tensor_exists(key)
    assert client.get_script("neg") == SCRIPT and client.get_model("net") == b"MODEL"
    assert client.get_list_length("runs") == 1
    assert not [k for k in raw_keys(client) if k.startswith("simctl.")]  # no temporary key left behind


def test_models_scripts_and_lists_do_not_replace_one_another_or_a_tensor(client: Client) -> None:
    client.put_tensor("t", np.arange(3))
    client.set_script("neg", SCRIPT)
    client.set_model("net", b"MODEL", "ONNX")
    client.append_to_list("runs", dataset())
    refusals = [
        (lambda: client.set_model("t", b"M" * 100_000, "ONNX"), "set_model\\('t'\\): key 't' holds a tensor"),
        (lambda: client.set_model("neg", b"M", "ONNX"), "key 'neg' holds a script"),
        (lambda: client.set_script("net", SCRIPT), "key 'net' holds an ML model, not a script"),
        (lambda: client.set_script("t", SCRIPT), "key 't' holds a tensor, not a script"),
        (lambda: client.delete_model("neg"), "delete_model: key 'neg' holds a script"),
        (lambda: client.delete_script("net"), "delete_script: key 'net' holds an ML model"),
        (lambda: client.delete_model("t"), "delete_model: key 't' holds a tensor"),
        (lambda: client.delete_list("t"), "delete_list: key 't' holds a tensor, not an aggregation list"),
        (lambda: client.rename_list("runs", "t"), "rename_list: key 't' holds a tensor, not an aggregation list"),
        (lambda: client.copy_list("runs", "net"), "copy_list: key 'net' holds an ML model"),
        (lambda: client.rename_tensor("t", "runs"), "rename_tensor: key 'runs' holds an aggregation list"),
        (lambda: client.copy_tensor("t", "neg"), "copy_tensor: key 'neg' holds a script"),
        (lambda: client.rename_tensor("net", "t2"), "rename_tensor: key 'net' holds an ML model, not a tensor"),
        (lambda: client.rename_list("t", "l2"), "rename_list: key 't' holds a tensor, not an aggregation list"),
        (lambda: client.append_to_list("t", dataset()), "append_to_list: key 't' holds a tensor"),
        (lambda: client.get_list_length("t"), "get_list_length: key 't' holds a tensor"),
        (lambda: client.get_tensor("runs"), "get_tensor: key 'runs' holds an aggregation list"),
        (lambda: client.unpack_tensor("net", np.empty(3)), "unpack_tensor: key 'net' holds an ML model"),
    ]
    for call, message in refusals:
        with pytest.raises(KindError, match=message):
            call()
    assert client.get_tensor("t").tolist() == [0, 1, 2] and client.get_script("neg") == SCRIPT
    assert client.get_model("net") == b"MODEL" and client.get_list_length("runs") == 1
    assert not client.model_exists("neg") and not client.model_exists("runs") and not client.tensor_exists("runs")
    assert raw_keys(client) == {"t", "neg", "net", "runs"}


def test_across_slots_too(client: Client) -> None:
    """Keys of different cluster slots are copied by DUMP and RESTORE: those check the kinds too."""
    client.put_tensor("a", np.arange(3))
    client.set_model("b", b"MODEL", "ONNX")  # 'a' and 'b' are in different slots of a cluster
    with pytest.raises(KindError, match="rename_tensor: key 'b' holds an ML model"):
        client.rename_tensor("a", "b")
    client.rename_tensor("a", "c")
    client.copy_tensor("c", "a")
    assert client.get_tensor("a").tolist() == client.get_tensor("c").tolist() == [0, 1, 2]
    assert client.get_model("b") == b"MODEL"


def test_replacing_another_kind_on_purpose(client: Client) -> None:
    """The way to replace another kind: delete it with its own call first."""
    client.set_script("neg", SCRIPT)
    client.delete_script("neg")
    client.put_tensor("neg", np.ones(2))
    client.delete_tensor("neg")
    client.set_model("neg", b"MODEL", "ONNX")
    assert client.get_model("neg") == b"MODEL"
    client.set_model("neg", b"MODEL2", "ONNX")  # a model replaces a model, as before
    assert client.get_model("neg") == b"MODEL2"


def test_simctls_own_keys_are_out_of_reach(client: Client) -> None:
    for call in (lambda: client.put_tensor("simctl.ml{w}.q.CPU", np.ones(1)),
                 lambda: client.delete_tensor("simctl.ml{w}.f.CPU"),
                 lambda: client.set_script("simctl.x", SCRIPT),
                 lambda: client.append_to_list("simctl.l", dataset()),
                 lambda: client.put_dataset(dataset("simctl.d"))):
        with pytest.raises(ConfigError, match="starts with 'simctl.', the prefix of simctl's own keys"):
            call()
    assert raw_keys(client) == set()


@pytest.mark.parametrize("name", ["}x", "{x", "a{b}c", "x}"])
def test_a_dataset_name_with_a_brace_is_refused_on_every_store(client: Client, name: str) -> None:
    """``}x`` worked on one server and was a raw CROSSSLOT on a cluster; now both refuse it alike."""
    with pytest.raises(ConfigError, match=r"put_dataset: dataset name .* holds '\{' or '\}'"):
        client.put_dataset(dataset(name))
    with pytest.raises(ConfigError, match=r"get_dataset: dataset name .* holds '\{' or '\}'"):
        client.get_dataset(name)
    assert raw_keys(client) == set()


def test_prefixed_keys_follow_the_same_rules(address: str) -> None:
    c = make_client(address, env={"SSKEYOUT": "prod", "SSKEYIN": "prod"})
    try:
        c.flush_db()
        c.put_tensor("{ds}", np.ones(1))  # 'prod.{ds}' is no dataset key
        c.set_script("neg", SCRIPT)  # models are not prefixed by default
        c.use_model_ensemble_prefix(True)
        c.set_script("neg", SCRIPT)  # 'prod.neg'
        with pytest.raises(KindError, match="put_tensor: key 'prod.neg' holds a script"):
            c.put_tensor("neg", np.ones(1))
    finally:
        c.close()


# -- values taken silently, and crashes (issue 16) ---------------------------------------------


def test_values_are_checked_where_they_enter(client: Client, address: str) -> None:
    with pytest.raises(ConfigError, match="Client: address must be 'host:port'.*got int 12345"):
        Client(address=12345)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Client: address must be.*got list"):
        Client(address=[address, 7])  # type: ignore[list-item]
    for switch in (client.use_tensor_ensemble_prefix, client.use_dataset_ensemble_prefix,
                   client.use_list_ensemble_prefix, client.use_model_ensemble_prefix):
        with pytest.raises(ConfigError, match=r"use_\w+_ensemble_prefix: use_prefix must be True or False, got "
                                              "str 'False'"):
            switch("False")  # type: ignore[arg-type]
    assert client._use_prefix == {"tensor": True, "dataset": True, "list": True, "model": False}
    masked = np.ma.masked_array([1.0, 2.0], mask=[False, True])
    with pytest.raises(ConfigError, match=r"put_tensor\('m'\): a masked array cannot be stored"):
        client.put_tensor("m", masked)
    with pytest.raises(ConfigError, match=r"Dataset.add_tensor\('m'\): a masked array cannot be stored"):
        Dataset("d").add_tensor("m", masked)
    with pytest.raises(ConfigError, match="put_tensor.*data must be a numeric numpy array, got None"):
        client.put_tensor("n", None)
    with pytest.raises(ConfigError, match=r"put_tensor\('r'\): data must be a numeric numpy array .* list"):
        client.put_tensor("r", [[1, 2], [3]])  # ragged: numpy's raw ValueError before
    for call in (lambda: client.put_tensor("\ud800", np.ones(1)), lambda: client.get_dataset("a\ud800"),
                 lambda: client.set_script("\udcff", SCRIPT), lambda: Dataset("\ud800"),
                 lambda: client.key_exists("\ud800")):
        with pytest.raises(ConfigError, match="must be text UTF-8 can encode"):
            call()  # a raw UnicodeEncodeError before
    for call in (lambda: client.flush_db(5), lambda: client.get_db_node_info(addresses=[5])):
        with pytest.raises(ConfigError, match="addresses must be None .*, 'host:port' or a list of them"):
            call()  # a raw TypeError before
    assert raw_keys(client) == set()


def test_metadata_and_list_entries_written_by_another_language(client: Client) -> None:
    """The format invites other languages to write datasets and lists: what is not UTF-8 JSON is a
    FormatError naming the key, not a raw JSONDecodeError or UnicodeDecodeError."""
    client.put_dataset(dataset())
    client._one("{ds}", "HSET", "{ds}.meta", "t:who", b"not json")
    with pytest.raises(FormatError, match=r"get_dataset 'ds': metadata '\{ds\}.meta': string field 'who' is "
                                          "not UTF-8 JSON"):
        client.get_dataset("ds")
    client._one("{ds}", "HSET", "{ds}.meta", "t:who", b'["\xff\xfe"]')
    with pytest.raises(FormatError, match="string field 'who' is not UTF-8 JSON"):
        client.get_dataset("ds")
    client._one("{ds}", "HSET", "{ds}.meta", "t:who", b'[1, 2]')
    with pytest.raises(FormatError, match="string field 'who' is not a JSON array of strings"):
        client.get_dataset("ds")
    client._one("{ds}", "HSET", "{ds}.meta", "t:who", b'["me"]', b"t:\xff", b'["a"]')
    with pytest.raises(FormatError, match="its name is not UTF-8"):
        client.get_dataset("ds")
    client._one("runs", "RPUSH", "runs", b"\xff\xfe")
    with pytest.raises(FormatError, match="get_datasets_from_list: list 'runs' holds an entry that is not a "
                                          "dataset name in UTF-8"):
        client.get_datasets_from_list("runs")
    with pytest.raises(ConfigError, match="add_meta_string.*not valid Unicode text"):
        Dataset("d").add_meta_string("s", "\ud800")


@pytest.mark.parametrize("key", ["a}b", "{tag}.big", "x{y", "{}z", "plain"])
def test_large_and_small_puts_of_any_key_work_on_every_store(client: Client, key: str) -> None:
    """A large value goes through a temporary key of the key's own slot (or, when no name in that slot
    can be made, through the script): on a cluster too, with nothing left behind."""
    for value in (np.arange(1 << 18, dtype=np.float32), np.arange(3.0)):
        client.put_tensor(key, value)
        client.put_tensor(key, value)  # over itself
        assert np.array_equal(client.get_tensor(key), value)
    assert raw_keys(client) == {key}


def test_a_refusal_is_read_from_redis_pys_pipeline_words_too() -> None:
    """The cluster's fallback (redis-py's pipeline, after a slot moved) puts its own words before the reply."""
    from simctl.store import keyspace

    got = keyspace.kind_error("put_tensor", ["tmp", "k"], "tensor",
                              "Command # 2 (EVALSHA abc 2 tmp k tensor) of pipeline caused error: SIMCTLKIND 2 model")
    assert isinstance(got, KindError) and str(got).startswith("put_tensor: key 'k' holds an ML model, not a tensor")
    assert keyspace.kind_error("put_tensor", ["k"], "tensor", "OOM command not allowed") is None
