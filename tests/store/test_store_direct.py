"""The client's direct path (simctl.store.direct): one connection per server
kept open, reconnected once after the server restarted, a timeout final,
large replies received into a buffer of their own (one larger than 64 MiB
too), the kinds of keys still guarded, over TCP, TLS and a Unix socket."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from _store_helpers import (
    PASSWORD,
    REDIS_SERVER,
    Server,
    cluster_address,
    free_ports,
    make_client,
    raw_keys,
    start_cluster,
)

from simctl.store import Client, Dataset, KindError, StoreTimeoutError, direct, format as fmt, keyspace, tls


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))


def start_again(s: Server) -> None:
    """Start ``s``'s redis-server again, on its port, with its configuration (empty: no persistence)."""
    with open(s.log, "ab") as out:
        s.proc = subprocess.Popen([REDIS_SERVER, str(s.dir / "redis.conf")], stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    s.raw = redis.Redis(port=s.port, password=PASSWORD, protocol=2)
    for _ in range(200):
        try:
            s.raw.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on {s.port} did not start again")


def connections(s: Server) -> int:
    """Clients connected to ``s``, the asking one not counted."""
    return len(s.raw.client_list()) - 1


def test_one_connection_is_kept_for_every_command(tmp_path: Path) -> None:
    s = Server(tmp_path)
    try:
        c = make_client(s.address)
        c.put_tensor("t", np.arange(10.0))
        first = c._server.direct._sock
        before = connections(s)
        for i in range(50):
            c.put_tensor(f"t{i}", np.full(300, i))  # the script path and the temporary key's path
            assert same(c.get_tensor(f"t{i}"), np.full(300, i))
            assert c.tensor_exists(f"t{i}") and c.get_list_length(f"l{i}") == 0
        assert c._server.direct._sock is first and connections(s) == before
        c.close()
    finally:
        s.kill()


def test_a_cluster_client_keeps_one_connection_per_shard_and_follows_a_moved_slot(tmp_path: Path) -> None:
    nodes = start_cluster(tmp_path)
    try:
        c = make_client(cluster_address(nodes))
        keys = {c._r.get_node_from_key(f"k{i}").port: f"k{i}" for i in range(50)}
        assert len(keys) == 3
        for i in range(3):
            for k in keys.values():
                c.put_tensor(k, np.full(3000, i))  # the temporary key's path: two commands on one shard
                assert same(c.get_tensor(k), np.full(3000, i))
        shards = dict(c._server._direct)
        assert sorted(d.address.port for d in shards.values()) == sorted(keys)
        socks = {name: d._sock for name, d in shards.items()}
        # move one key's slot to another shard: the direct connection answers MOVED, redis-py follows it
        key = keys[nodes[0].port]
        slot = c._r.keyslot(key)
        dst = nodes[1]
        src, dst_id = nodes[0], dst.raw.execute_command("CLUSTER", "MYID").decode()
        dst.raw.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src.raw.execute_command("CLUSTER", "MYID"))
        src.raw.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
        src.raw.execute_command("MIGRATE", "127.0.0.1", dst.port, key, 0, 5000, "AUTH", PASSWORD)
        for n in [dst] + [n for n in nodes if n is not dst]:
            n.raw.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)
        dst.raw.execute_command("CLUSTER", "BUMPEPOCH")
        assert c._r.get_node_from_key(key).port == src.port  # the client's slot map is stale
        assert same(c.get_tensor(key), np.full(3000, 2))  # moved with its slot: MOVED followed
        assert c._r.get_node_from_key(key).port == dst.port
        c.put_tensor(key, np.arange(5000))
        assert dst.raw.execute_command("EXISTS", key) == 1
        assert same(c.get_tensor(key), np.arange(5000))
        assert {name: d._sock for name, d in c._server._direct.items()} == socks  # no new connection
        with pytest.raises(KindError):
            c.append_to_list(key, _dataset("d", c))
        c.close()
    finally:
        for n in nodes:
            n.kill()


def test_a_restarted_server_is_reconnected_to_once(tmp_path: Path) -> None:
    s = Server(tmp_path)
    try:
        c = make_client(s.address)
        c.put_tensor("t", np.arange(4))
        s.kill()
        start_again(s)
        assert not c.tensor_exists("t")  # the command went out again on a new connection (the data is gone)
        c.put_tensor("t", np.arange(1 << 18))  # a large value on the connection after that
        assert same(c.get_tensor("t"), np.arange(1 << 18))
        s.kill()
        start_again(s)
        c.put_tensor("u", np.arange(1 << 18))  # a put (in parts, two commands) sent again as a whole
        assert same(c.get_tensor("u"), np.arange(1 << 18))
        assert not any(k.startswith(fmt.RESERVED) for k in raw_keys(c))
        c.close()
    finally:
        s.kill()


@pytest.mark.parametrize("what", ["get_tensor 't'", "put_tensor 'big'"])
def test_a_timeout_is_final_and_the_next_call_has_a_new_connection(tmp_path: Path, what: str) -> None:
    """A stopped server's silence ends each exchange at the timeout, the receive
    (a small get) and the send as well (64 MiB fill the socket's buffers: the
    kernel keeps both waits, SO_RCVTIMEO and SO_SNDTIMEO)."""
    s = Server(tmp_path)
    try:
        c = make_client(s.address, timeout=0.5)
        c.put_tensor("t", np.ones(4))
        os.kill(s.proc.pid, signal.SIGSTOP)
        try:
            with pytest.raises(StoreTimeoutError, match=rf"{what}.*did not answer within 0\.5 s"):
                if what.startswith("get"):
                    c.get_tensor("t")
                else:
                    c.put_tensor("big", np.ones(8 << 20))
            assert c._server.direct._sock is None  # a reply may be on its way: that connection is not used again
        finally:
            os.kill(s.proc.pid, signal.SIGCONT)
        assert same(c.get_tensor("t"), np.ones(4))
        c.close()
    finally:
        s.kill()


def test_a_reply_larger_than_64_mib_is_read_into_one_buffer_of_its_own(server: Server) -> None:
    c = make_client(server.address)
    big = np.random.default_rng(3).integers(0, 255, (65 << 20) + 12345, dtype=np.uint8)
    c.put_tensor("big", big)
    got = c.get_tensor("big")
    assert same(got, big) and got.flags.writeable
    owner = got
    while isinstance(owner, np.ndarray) and owner.base is not None:
        owner = owner.base
    assert isinstance(owner, np.ndarray) and owner.nbytes >= big.nbytes  # the reply's buffer, no copy of it
    out = np.empty_like(big)
    c.unpack_tensor("big", out)
    assert same(out, big)
    c.delete_tensor("big")
    c.close()


@pytest.mark.parametrize("size", [100, keyspace.MOVE_FROM - 100, keyspace.MOVE_FROM + 100, 1 << 20])
def test_kinds_are_still_guarded_on_either_side_of_the_temporary_key(client: Client, size: int) -> None:
    data = np.zeros(size // 8)
    client.append_to_list("l", _dataset("d", client))
    client.put_tensor("t", data)
    for name, holds in (("l", "an aggregation list"), ("m", "an ML model")):
        if name == "m":
            client.set_model("m", b"a model's bytes", "TORCH")
        with pytest.raises(KindError, match=f"put_tensor: key '{name}' holds {holds}, not a tensor"):
            client.put_tensor(name, data)
    assert client.get_list_length("l") == 1 and client.get_model("m") == b"a model's bytes"
    assert same(client.get_tensor("t"), data)
    client.put_tensor("t", data + 1)  # a tensor replaces a tensor
    assert same(client.get_tensor("t"), data + 1)
    assert not any(k.startswith(fmt.RESERVED) for k in raw_keys(client))  # no temporary key left behind


def _dataset(name: str, client: Client) -> Dataset:
    ds = Dataset(name)
    ds.add_tensor("x", np.arange(3))
    client.put_dataset(ds)
    return ds


def test_the_direct_path_over_a_unix_socket(server: Server) -> None:
    c = make_client(f"unix://{server.socket}")
    big = np.arange(300_000, dtype=">i8")
    c.put_tensor("uds", big)
    assert same(c.get_tensor("uds"), big)
    assert c._server.direct._sock.family == socket.AF_UNIX
    c.delete_tensor("uds")
    c.close()


def test_the_direct_path_over_tls(tmp_path: Path) -> None:
    ca, ca_key, cert, key = (str(tmp_path / n) for n in ("ca.pem", "ca.key", "server.pem", "server.key"))
    tls.make_ca(ca, ca_key, "simctl test")
    tls.make_server_cert(ca, ca_key, cert, key, ["127.0.0.1"])
    port = free_ports()
    conf = tmp_path / "redis.conf"
    conf.write_text("\n".join(["port 0", f"tls-port {port}", "bind 127.0.0.1", f"dir {tmp_path}", 'save ""',
                               f"requirepass {PASSWORD}", f"tls-cert-file {cert}", f"tls-key-file {key}",
                               f"tls-ca-cert-file {ca}", "tls-auth-clients no"]) + "\n")
    proc = subprocess.Popen([REDIS_SERVER, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        c = make_client(f"127.0.0.1:{port}", tls_ca=ca)
        big = np.random.default_rng(5).random(300_000)
        c.put_tensor("big", big)
        c.put_tensor("small", np.arange(3))
        assert same(c.get_tensor("big"), big) and same(c.get_tensor("small"), np.arange(3))
        d = c._server.direct
        assert d._tls and d._sock.version() is not None  # TLS on the direct connection
        with pytest.raises(KindError):
            c.set_model("big", b"m", "TORCH")
        c.close()
        other = tmp_path / "other-ca.pem"
        tls.make_ca(str(other), str(tmp_path / "other-ca.key"), "another")
        untrusting = direct.Direct(c._server.direct.address, PASSWORD, tls_ca=str(other), timeout=5, connect=5)
        with pytest.raises(redis.ConnectionError, match="TLS"):
            untrusting.one(("PING",))  # a server whose certificate the authority did not sign is refused
    finally:
        proc.kill()
        proc.wait()


def test_a_forked_child_opens_its_own_connection(server: Server) -> None:
    c = make_client(server.address)
    c.put_tensor("t", np.arange(5))
    parent_sock = c._server.direct._sock
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the parent's left alone
        ok = c._server.direct._sock is None and same(c.get_tensor("t"), np.arange(5))
        os.write(w, b"1" if ok else b"0")
        os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)
    assert c._server.direct._sock is parent_sock and same(c.get_tensor("t"), np.arange(5))
    c.close()


def test_packing_refuses_what_redis_does_not_take() -> None:
    with pytest.raises(redis.DataError, match="Invalid input of type: 'NoneType'"):
        direct.pack([("SET", "k", None)])
    big = np.arange(100_000, dtype=np.uint8)
    pieces = direct.pack([("SET", "k", memoryview(big)), ("GET", "k")])
    assert b"".join(bytes(p) for p in pieces) == (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$100000\r\n" + big.tobytes() +
                                                   b"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
    assert any(isinstance(p, memoryview) for p in pieces)  # the large argument goes out as it is


def test_commands_on_one_key_packed_once_still_go_to_their_own_keys(server: Server) -> None:
    """A command on one key is packed once and kept (direct._ones): more keys than it keeps (it is
    cleared when full), keys too long to keep, and names of more than one byte a character each
    get their own values, read the same way again."""
    server.raw.flushall()
    keys = [f"one.{i}" for i in range(direct._BULK_MAX + 50)] + ["long." + "k" * 400, "clé.ü"]
    pipe = server.raw.pipeline(transaction=False)
    for i, k in enumerate(keys):
        pipe.set(k, str(i))
    pipe.execute()
    c = make_client(server.address)
    try:
        node = c._server.direct
        for _ in range(2):
            assert [node.one(("GET", k)) for k in keys] == [str(i).encode() for i in range(len(keys))]
        assert len(direct._ones) <= direct._BULK_MAX
        assert ("GET", keys[-2]) not in direct._ones  # too long to keep
    finally:
        c.close()
        server.raw.flushall()
